//! The job runner: claims queued jobs (up to `[exports] concurrency` at once in this
//! gateway), runs each with heartbeats, resumes jobs whose worker died, and deletes expired
//! jobs.
//!
//! Crash safety, step by step:
//! - A worker holds a job by a lease it renews every [`RunnerOptions::heartbeat`] with the
//!   job's progress. A worker that dies stops renewing.
//! - Every [`RunnerOptions::sweep`] (and at start) a runner takes over running jobs whose
//!   lease passed (`claim_interrupted_exports`, which counts an attempt). Each is restarted
//!   from scratch in a new attempt directory, the dead attempts' files removed — or, once it
//!   has had [`RunnerOptions::max_attempts`] attempts, marked failed. No job stays
//!   "running" forever.
//! - A file is recorded only once it is complete and synced, and the manifest serves the
//!   files of the attempt that completed only, so a job completes exactly once, with no
//!   file of a dead attempt in it.
//! - A worker that lost its lease (it stalled, another took over) learns it at its next
//!   heartbeat or file record, stops, and removes only its own attempt's files.
//! - At shutdown, running jobs stop where they are and stay `running` with their lease given
//!   up: this gateway after its restart (or another replica at its next sweep) resumes them at
//!   once. The jobs of a worker that crashed are resumed once their lease has passed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::Timestamp;
use medgate_store::{
    ExportControl, ExportFile, ExportJob, ExportProgress, ExportState, StoreError,
};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::error::ExportError;
use crate::files::WrittenFile;
use crate::jobs::{attempt_prefix, remove_dir, Exports, JobSpec, OBSERVATION, OPERATION_OUTCOME};
use crate::outcomes::{ErrorFiles, Tracker};
use crate::report::{FileFacts, JobOutcome, JobReport};
use crate::request::{resolve, Resolved};
use crate::run::{execute, Executed, PartSink, RunError, Target};

/// How a runner works; [`Default`] suits a gateway.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// This worker's name in the job table: unique per process (several replicas share a
    /// PostgreSQL store).
    pub worker: String,
    /// How long a claimed job stays this worker's without a heartbeat.
    pub lease: Duration,
    /// How often a running job records its progress and renews its lease.
    pub heartbeat: Duration,
    /// How often the runner looks for queued jobs kicked off on other replicas (jobs kicked
    /// off here start at once).
    pub poll: Duration,
    /// How often it takes over interrupted jobs and deletes expired ones.
    pub sweep: Duration,
    /// Attempts a job gets before it is failed (each interrupted run is one).
    pub max_attempts: u32,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            worker: default_worker(),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            poll: Duration::from_secs(1),
            sweep: Duration::from_secs(30),
            max_attempts: 3,
        }
    }
}

/// `<host>-<pid>-<random>`: unique per process.
fn default_worker() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "medgate".into());
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[20..])
}

/// A started runner. Dropping it leaves it running until the shutdown token passed to
/// [`Exports::start`] is cancelled.
pub struct Runner {
    task: JoinHandle<()>,
}

impl Runner {
    /// Waits until the runner has stopped (after its shutdown token was cancelled): every
    /// job it ran has stopped, and left its job to be resumed.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }

    /// Stops the runner and its jobs at once, as a crash would: nothing is recorded and
    /// no file is removed (tests of crash recovery).
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Exports {
    /// Starts the runner: spawn once at start-up, after the store is open; cancel
    /// `shutdown` and await [`Runner::stopped`] before closing the store.
    pub fn start(&self, shutdown: CancellationToken) -> Runner {
        let exports = self.clone();
        Runner {
            task: tokio::spawn(dispatch(exports, shutdown)),
        }
    }

    /// Deletes the jobs whose files expired (`[exports] expire_after_s` after they
    /// finished) with their files; returns how many. The runner calls it every sweep.
    ///
    /// # Errors
    /// The store's, or a directory that cannot be removed.
    pub async fn expire(&self, now: Timestamp) -> Result<u64, ExportError> {
        let mut n = 0;
        for job in self.inner.store.expired_exports(now).await? {
            if job.state.is_final() && self.expires(&job) < now {
                self.remove(&job.id).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

async fn dispatch(exports: Exports, shutdown: CancellationToken) {
    let options = exports.inner.options.clone();
    let mut jobs: JoinSet<()> = JoinSet::new();
    let mut next_sweep = Instant::now();
    loop {
        while let Some(done) = jobs.try_join_next() {
            if let Err(e) = done {
                if e.is_panic() {
                    tracing::error!("an export job panicked");
                }
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        if Instant::now() >= next_sweep {
            sweep(&exports, &mut jobs, &shutdown).await;
            next_sweep = Instant::now() + options.sweep;
        }
        let capacity = exports.inner.env.snapshot().exports.concurrency.max(1);
        while jobs.len() < capacity && !shutdown.is_cancelled() {
            match exports
                .inner
                .store
                .claim_export(&options.worker, options.lease)
                .await
            {
                Ok(Some(job)) => {
                    jobs.spawn(run_job(exports.clone(), job, shutdown.clone()));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming an export job failed");
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(options.poll) => {}
            () = exports.inner.wake.notified() => {}
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
        }
    }
    // Jobs see the same token: they stop and leave their jobs running for a resume.
    while jobs.join_next().await.is_some() {}
}

/// Takes over interrupted jobs (they are run at once, whatever the concurrency: their
/// lease is ours now) and deletes expired ones.
async fn sweep(exports: &Exports, jobs: &mut JoinSet<()>, shutdown: &CancellationToken) {
    let options = &exports.inner.options;
    match exports
        .inner
        .store
        .claim_interrupted_exports(&options.worker, options.lease)
        .await
    {
        Ok(interrupted) => {
            for job in interrupted {
                tracing::warn!(attempt = job.attempts, "resuming an interrupted export job");
                jobs.spawn(run_job(exports.clone(), job, shutdown.clone()));
            }
        }
        Err(e) => tracing::warn!(error = %e, "looking for interrupted export jobs failed"),
    }
    match exports.expire(Timestamp::now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "expired export jobs deleted"),
        Err(e) => tracing::warn!(error = %e, "deleting expired export jobs failed"),
    }
}

/// Why a job stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// The partner cancelled (or deleted) it.
    Cancelled,
    /// Another worker holds it now.
    Lost,
}

/// What one job run shares with its heartbeat and file sink.
struct Ctx {
    exports: Exports,
    job: ExportJob,
    /// `[exports] dir/<id>` as configured when the job started (a reload may move `dir`
    /// for later jobs; this one finishes where it began).
    job_dir: PathBuf,
    worker: String,
    stop: CancellationToken,
    why: Mutex<Option<Stopped>>,
    started: Instant,
}

impl Ctx {
    fn stopped(&self, why: Stopped) {
        let mut slot = self.why.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(why);
        self.stop.cancel();
    }

    fn why(&self) -> Option<Stopped> {
        *self.why.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn attempt_dir(&self) -> PathBuf {
        self.job_dir.join(self.job.attempts.to_string())
    }

    /// A store error that means "not ours any more": cancelled, or taken over.
    async fn lost(&self, e: &StoreError) -> Option<Stopped> {
        match e {
            StoreError::NotFound { .. } => Some(Stopped::Cancelled),
            StoreError::LeaseLost { .. } => {
                let now = self.exports.inner.store.export(&self.job.id).await;
                Some(match now {
                    Ok(Some(j)) if j.state == ExportState::Cancelled => Stopped::Cancelled,
                    Ok(None) => Stopped::Cancelled,
                    _ => Stopped::Lost,
                })
            }
            _ => None,
        }
    }
}

async fn run_job(exports: Exports, job: ExportJob, shutdown: CancellationToken) {
    let ctx = Arc::new(Ctx {
        worker: exports.inner.options.worker.clone(),
        stop: shutdown.child_token(),
        why: Mutex::new(None),
        started: Instant::now(),
        job_dir: exports.job_dir(&job.id),
        exports,
        job,
    });
    let max = ctx.exports.inner.options.max_attempts;
    if ctx.job.attempts > max {
        let error = format!(
            "the job was interrupted {} times (its worker stopped each time); giving up after \
             {max} attempts",
            ctx.job.attempts - 1
        );
        let _ = remove_dir(&ctx.job_dir).await;
        fail(&ctx, None, ctx.job.progress, error).await;
        return;
    }
    let prepared = prepare(&ctx).await;
    let (resolved, snapshot) = match prepared {
        Ok(p) => p,
        Err(error) => {
            fail(&ctx, None, ExportProgress::default(), error).await;
            return;
        }
    };
    let tracker = Arc::new(Tracker::new(
        resolved.sources.len(),
        resolved.profile.clone(),
        Some(error_files(&ctx, snapshot.exports.max_file_bytes)),
    ));
    if let Some(total) = resolved.patient_count() {
        // Known before the first heartbeat, so no status ever shows "0/0 patients".
        tracker.set_total(total);
    }
    let extension = resolved.exporter.extension();
    let dir = ctx.attempt_dir();
    let target = Target {
        part: Box::new(move |n| dir.join(format!("part-{n:04}.{extension}"))),
        limit: Some(snapshot.exports.max_file_bytes),
        keep_empty: false,
    };
    let mut sink = StoreSink {
        ctx: ctx.clone(),
        added: 0,
    };
    let done = CancellationToken::new();
    let request_id = format!("export-{}", ctx.job.id);
    let running = async {
        let result = execute(
            &snapshot,
            &resolved,
            &request_id,
            &target,
            &tracker,
            &mut sink,
            &ctx.stop,
        )
        .await;
        done.cancel();
        result
    };
    // Both in this task: aborting the job stops its heartbeat too.
    let (result, ()) = tokio::join!(running, heartbeat(&ctx, &tracker, &done));
    let added = sink.added;
    conclude(&ctx, &resolved, &tracker, result, added, &shutdown).await;
}

/// Cleans dead attempts' files, reads the job's request and resolves it against the
/// configuration in force now.
async fn prepare(ctx: &Ctx) -> Result<(Resolved, Arc<crate::env::Snapshot>), String> {
    remove_other_attempts(&ctx.job_dir, ctx.job.attempts)
        .await
        .map_err(|e| e.to_string())?;
    tokio::fs::create_dir_all(ctx.attempt_dir())
        .await
        .map_err(|e| format!("the exports directory cannot be written: {e}"))?;
    let spec = JobSpec::of(&ctx.job).map_err(|e| e.to_string())?;
    let snapshot = ctx.exports.inner.env.snapshot();
    let resolved = resolve(&snapshot, &spec.request)
        .await
        .map_err(|e| format!("the request cannot run with the current configuration: {e}"))?;
    Ok((resolved, snapshot))
}

fn error_files(ctx: &Ctx, limit: u64) -> ErrorFiles {
    let dir = ctx.attempt_dir();
    ErrorFiles::new(
        move |n| dir.join(format!("errors-{n:04}.ndjson")),
        Some(limit),
    )
}

/// Renews the lease with the progress until `done`; stops the job when it was cancelled or
/// taken over.
async fn heartbeat(ctx: &Ctx, tracker: &Tracker, done: &CancellationToken) {
    let options = &ctx.exports.inner.options;
    let mut tick = tokio::time::interval(options.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = done.cancelled() => return,
            _ = tick.tick() => {}
        }
        let beat = ctx
            .exports
            .inner
            .store
            .export_heartbeat(&ctx.job.id, &ctx.worker, tracker.progress(), options.lease)
            .await;
        match beat {
            Ok(ExportControl::Continue) => {}
            Ok(ExportControl::Cancelled) => {
                ctx.stopped(Stopped::Cancelled);
                return;
            }
            Err(e) => match ctx.lost(&e).await {
                Some(why) => {
                    ctx.stopped(why);
                    return;
                }
                // The store is busy or down: the lease has room for a few misses.
                None => tracing::warn!(error = %e, "export heartbeat failed; retrying"),
            },
        }
    }
}

/// Records each finished data part in the job.
struct StoreSink {
    ctx: Arc<Ctx>,
    added: u32,
}

impl StoreSink {
    async fn add(&mut self, kind: &str, file: &WrittenFile) -> Result<(), RunError> {
        let ctx = &self.ctx;
        let name = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let record = ExportFile {
            kind: kind.to_owned(),
            url: format!("v1/exports/{}/files/{}", ctx.job.id, self.added + 1),
            path: format!("{}{name}", attempt_prefix(&ctx.job.id, ctx.job.attempts)),
            size: file.size,
            sha256: file.sha256.clone(),
            count: file.count,
        };
        match ctx
            .exports
            .inner
            .store
            .add_export_file(&ctx.job.id, &ctx.worker, record)
            .await
        {
            Ok(()) => {
                self.added += 1;
                Ok(())
            }
            Err(e) => match ctx.lost(&e).await {
                Some(why) => {
                    ctx.stopped(why);
                    Err(RunError::Interrupted)
                }
                None => Err(RunError::Failed(format!("recording a file failed: {e}"))),
            },
        }
    }
}

#[async_trait]
impl PartSink for StoreSink {
    async fn part(&mut self, file: &WrittenFile) -> Result<(), RunError> {
        self.add(OBSERVATION, file).await
    }
}

/// Records how the run ended.
async fn conclude(
    ctx: &Arc<Ctx>,
    resolved: &Resolved,
    tracker: &Tracker,
    result: Result<Executed, RunError>,
    added: u32,
    shutdown: &CancellationToken,
) {
    let attempt_dir = ctx.attempt_dir();
    match (ctx.why(), result) {
        (Some(Stopped::Cancelled), _) => {
            let _ = remove_dir(&ctx.job_dir).await;
            tracing::info!("export job cancelled; its files were removed");
            let report = report(
                ctx,
                Some(resolved),
                tracker.progress(),
                JobOutcome::Cancelled,
            );
            ctx.exports.inner.env.job_ended(&report).await;
        }
        (Some(Stopped::Lost), _) => {
            let _ = remove_dir(&attempt_dir).await;
            tracing::warn!("export job taken over by another worker; this attempt stopped");
        }
        (None, Err(RunError::Interrupted)) => {
            // Shutdown: the job stays running, its lease given up so that the next start
            // resumes it at once instead of after the lease.
            let _ = shutdown;
            let released = ctx
                .exports
                .inner
                .store
                .export_heartbeat(&ctx.job.id, &ctx.worker, tracker.progress(), Duration::ZERO)
                .await;
            if let Err(e) = released {
                tracing::warn!(error = %e, "an interrupted export job keeps its lease");
            }
        }
        (None, Err(RunError::Failed(error))) => {
            let _ = remove_dir(&attempt_dir).await;
            fail(ctx, Some(resolved), tracker.progress(), error).await;
        }
        (None, Ok(executed)) => complete(ctx, resolved, executed, added).await,
    }
}

async fn complete(ctx: &Arc<Ctx>, resolved: &Resolved, executed: Executed, added: u32) {
    let mut sink = StoreSink {
        ctx: ctx.clone(),
        added,
    };
    for file in &executed.errors {
        if let Err(e) = sink.add(OPERATION_OUTCOME, file).await {
            match e {
                RunError::Interrupted => {
                    let _ = remove_dir(&ctx.attempt_dir()).await;
                }
                RunError::Failed(error) => {
                    let _ = remove_dir(&ctx.attempt_dir()).await;
                    fail(ctx, Some(resolved), executed.progress, error).await;
                }
            }
            return;
        }
    }
    let store = &ctx.exports.inner.store;
    match store
        .finish_export(&ctx.job.id, &ctx.worker, executed.progress, None)
        .await
    {
        Ok(()) => {
            tracing::info!(
                rows = executed.progress.rows_written,
                patients = executed.progress.patients_total,
                failed = executed.progress.patients_failed,
                files = executed.parts.len() + executed.errors.len(),
                "export job completed"
            );
            let mut report = report(
                ctx,
                Some(resolved),
                executed.progress,
                JobOutcome::Completed,
            );
            report.files = facts(&executed);
            ctx.exports.inner.env.job_ended(&report).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "an export job could not be completed");
            if ctx.lost(&e).await.is_some() {
                let _ = remove_dir(&ctx.attempt_dir()).await;
            }
        }
    }
}

/// Fails the job (the message names no patient) and reports it.
async fn fail(ctx: &Ctx, resolved: Option<&Resolved>, progress: ExportProgress, error: String) {
    tracing::warn!(error = %error, "export job failed");
    let finished = ctx
        .exports
        .inner
        .store
        .finish_export(&ctx.job.id, &ctx.worker, progress, Some(&error))
        .await;
    if let Err(e) = finished {
        tracing::warn!(error = %e, "an export job could not be marked failed");
        return;
    }
    let mut report = report(ctx, resolved, progress, JobOutcome::Failed);
    report.error = Some(error);
    ctx.exports.inner.env.job_ended(&report).await;
}

fn facts(executed: &Executed) -> Vec<FileFacts> {
    let data = executed.parts.iter().map(|f| (OBSERVATION, f));
    let errors = executed.errors.iter().map(|f| (OPERATION_OUTCOME, f));
    data.chain(errors)
        .enumerate()
        .map(|(i, (kind, f))| FileFacts {
            kind: kind.to_owned(),
            index: i as u32 + 1,
            size: f.size,
            sha256: f.sha256.clone(),
            count: f.count,
        })
        .collect()
}

fn report(
    ctx: &Ctx,
    resolved: Option<&Resolved>,
    progress: ExportProgress,
    outcome: JobOutcome,
) -> JobReport {
    let spec = JobSpec::of(&ctx.job).ok();
    let request = spec.as_ref().map(|s| &s.request);
    let (profile, key_id) = match resolved.and_then(Resolved::profile) {
        Some((name, key)) => (Some(name), key),
        None => (request.and_then(|r| r.profile.clone()), None),
    };
    JobReport {
        job_id: ctx.job.id.clone(),
        partner: ctx.job.partner.clone(),
        outcome,
        error: None,
        sources: resolved.map_or_else(
            || request.map(|r| r.sources.clone()).unwrap_or_default(),
            Resolved::source_names,
        ),
        cohort: request.and_then(|r| r.cohort.clone()),
        patients: progress.patients_total,
        patients_failed: progress.patients_failed,
        rows: progress.rows_written,
        format: request.map(|r| r.format.clone()).unwrap_or_default(),
        profile,
        key_id,
        files: Vec::new(),
        attempt: ctx.job.attempts,
        seconds: ctx.started.elapsed().as_secs_f64(),
    }
}

/// Removes every attempt directory of a job but `keep`'s.
async fn remove_other_attempts(job_dir: &Path, keep: u32) -> Result<(), ExportError> {
    let mut entries = match tokio::fs::read_dir(job_dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ExportError::io("reading the job's directory", e)),
    };
    let keep = keep.to_string();
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| ExportError::io("reading the job's directory", e))?
    {
        if entry.file_name().to_string_lossy() != keep.as_str() {
            let path = entry.path();
            let removed = if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                tokio::fs::remove_dir_all(&path).await
            } else {
                tokio::fs::remove_file(&path).await
            };
            removed.map_err(|e| ExportError::io("removing an interrupted attempt's files", e))?;
        }
    }
    Ok(())
}
