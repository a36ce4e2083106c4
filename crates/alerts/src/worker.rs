//! [`ReportWorkers`]: the pool that processes the outbox's report jobs.
//!
//! Each worker loops: claim up to `batch` jobs (SAE first, then oldest) → for each, read
//! the report, evaluate the rules, and [`Store::complete`] the job with the alerts it fired
//! (recorded in the same transaction, so a job that dies before that line records nothing
//! and its retry cannot alert twice). A failed evaluation is retried with back-off
//! ([`Store::retry`]) while the error is transient and attempts remain, else dead-lettered
//! ([`Store::dead`]). While a job runs its lease is renewed every third of the lease; a
//! [`StoreError::LeaseLost`] (another worker took the job after our lease lapsed) drops
//! the work unrecorded.
//!
//! Throughput scales with workers, not batches: workers' writes share the store's group
//! commits (README figures), while one worker's jobs run one after the other (the store
//! counts completions in one row per worker id).
//!
//! Shutdown: once the token is cancelled a worker claims nothing more, finishes the job in
//! hand, and hands the rest of its batch back to the queue (due at once). Whatever is cut
//! off harder (the process killed) keeps its lease until it expires; then
//! [`Store::reclaim_expired`] (run every `reclaim_every`, and by every claim) returns it to
//! the queue for any worker or replica.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::FutureExt as _;
use jiff::Timestamp;
use medgate_store::{Job, NewAlert, Store, StoreError};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::rules::Rules;

/// Tuning of the report worker pool; [`Default`] suits a gateway.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Workers (`[ingest] workers`); each processes one job at a time.
    pub workers: usize,
    /// Jobs one worker claims at once (fewer claims under load; an SAE still goes first in
    /// every claim, and idle workers take the rest of the queue).
    pub batch: usize,
    /// Lease on claimed jobs; a running job's lease is renewed every third of it.
    pub lease: Duration,
    /// Attempts before a failing job is dead-lettered (its report becomes `failed`).
    pub max_attempts: u32,
    /// Back-off before a failed job's next attempt.
    pub retry: Backoff,
    /// An idle worker polls the queue this often (it also wakes at once on
    /// [`Wake::notify`], which only reaches this process's workers).
    pub idle_poll: Duration,
    /// How often expired leases are returned to the queue.
    pub reclaim_every: Duration,
    /// Worker ids are `<worker_prefix>-<n>`; leases name them. Unique per process (the
    /// default is the pid and a random suffix).
    pub worker_prefix: String,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            workers: 4,
            batch: 8,
            lease: Duration::from_secs(60),
            max_attempts: 5,
            retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            idle_poll: Duration::from_millis(250),
            reclaim_every: Duration::from_secs(10),
            worker_prefix: default_prefix("reports"),
        }
    }
}

/// `<what>-<pid>-<random>`: unique across the replicas that share a database.
pub(crate) fn default_prefix(what: &str) -> String {
    format!(
        "{what}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Wakes idle workers at once (call it after a report is stored); cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// A new waker.
    pub fn new() -> Wake {
        Wake::default()
    }

    /// Wakes one idle worker (or the next one to go idle).
    pub fn notify(&self) {
        self.0.notify_one();
    }

    pub(crate) async fn notified(&self) {
        self.0.notified().await;
    }
}

/// What this pool's workers did since they started (every replica has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs completed (alerts recorded).
    pub completed: u64,
    /// Failed attempts put back for a retry.
    pub retried: u64,
    /// Jobs dead-lettered.
    pub dead: u64,
    /// Jobs dropped because another worker had taken them over.
    pub lease_lost: u64,
    /// Claimed jobs handed back unstarted at shutdown.
    pub released: u64,
    /// Failures that could not even be recorded (they return after their lease).
    pub abandoned: u64,
}

#[derive(Debug, Default)]
struct Counters {
    claimed: AtomicU64,
    completed: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    lease_lost: AtomicU64,
    released: AtomicU64,
    abandoned: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Completed => &self.completed,
            Outcome::Retried => &self.retried,
            Outcome::Dead => &self.dead,
            Outcome::LeaseLost => &self.lease_lost,
            Outcome::Abandoned => &self.abandoned,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> PoolStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PoolStats {
            claimed: get(&self.claimed),
            completed: get(&self.completed),
            retried: get(&self.retried),
            dead: get(&self.dead),
            lease_lost: get(&self.lease_lost),
            released: get(&self.released),
            abandoned: get(&self.abandoned),
        }
    }
}

/// The running pool.
#[derive(Debug)]
pub struct ReportWorkers {
    tasks: JoinSet<()>,
    wake: Wake,
    counters: Arc<Counters>,
}

/// What one worker shares with the others.
struct Shared {
    store: Store,
    rules: Arc<ArcSwap<Rules>>,
    options: PoolOptions,
    wake: Wake,
    deliveries: Wake,
    shutdown: CancellationToken,
    counters: Arc<Counters>,
}

/// How one job ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Completed,
    Retried,
    Dead,
    LeaseLost,
    /// Retry or dead-letter failed too: the lease will expire and the job come back.
    Abandoned,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Retried => "retried",
            Outcome::Dead => "dead",
            Outcome::LeaseLost => "lease_lost",
            Outcome::Abandoned => "abandoned",
        }
    }
}

impl ReportWorkers {
    /// Starts `options.workers` workers and the lease reclaimer on the current runtime.
    /// `rules` may be swapped at any time (a reload); each job reads the current rules once.
    /// `deliveries` is woken when a job records alerts (pass the delivery loop's
    /// [`Wake`]).
    pub fn spawn(
        store: Store,
        rules: Arc<ArcSwap<Rules>>,
        options: PoolOptions,
        deliveries: Wake,
        shutdown: CancellationToken,
    ) -> ReportWorkers {
        let wake = Wake::new();
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            store,
            rules,
            options,
            wake: wake.clone(),
            deliveries,
            shutdown,
            counters: counters.clone(),
        });
        let mut tasks = JoinSet::new();
        for n in 0..shared.options.workers.max(1) {
            let id = format!("{}-{n}", shared.options.worker_prefix);
            tasks.spawn(work(shared.clone(), id));
        }
        tasks.spawn(reclaim(shared));
        ReportWorkers {
            tasks,
            wake,
            counters,
        }
    }

    /// What the workers did so far.
    pub fn stats(&self) -> PoolStats {
        self.counters.snapshot()
    }

    /// The waker to call after storing a report.
    pub fn wake(&self) -> Wake {
        self.wake.clone()
    }

    /// Waits until every worker has stopped (after the shutdown token was cancelled, each
    /// finishes its job in hand). Bound it with the shutdown grace period; dropping the
    /// pool aborts what is left, whose jobs are reclaimed after their lease.
    pub async fn join(mut self) -> PoolStats {
        while self.tasks.join_next().await.is_some() {}
        self.counters.snapshot()
    }

    /// Stops every worker at once, mid-job if need be (what a crash does): their jobs stay
    /// leased until the lease expires.
    pub async fn abort(mut self) -> PoolStats {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.counters.snapshot()
    }
}

/// One worker's loop.
async fn work(shared: Arc<Shared>, id: String) {
    let o = &shared.options;
    let mut failures = 0u32;
    while !shared.shutdown.is_cancelled() {
        // A claim is never cancelled midway: its leases would be taken but unknown.
        let jobs = match shared.store.claim(&id, o.batch.max(1), o.lease).await {
            Ok(jobs) => {
                failures = 0;
                jobs
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(worker = %id, error = %e, "claiming report jobs failed");
                pause(&shared, o.retry.delay(failures).max(o.idle_poll)).await;
                continue;
            }
        };
        if jobs.is_empty() {
            pause(&shared, o.idle_poll).await;
            continue;
        }
        shared
            .counters
            .claimed
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        // One job at a time: the store counts completions in one row per worker id, so
        // concurrent jobs of one worker would contend for it (more workers scale instead).
        let mut jobs = jobs.into_iter();
        for job in jobs.by_ref() {
            process(&shared, job).await;
            if shared.shutdown.is_cancelled() {
                break;
            }
        }
        release(&shared, jobs).await;
    }
}

/// Waits `d`, or less when woken or stopped.
async fn pause(shared: &Shared, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = shared.wake.notified() => {}
        () = shared.shutdown.cancelled() => {}
    }
}

/// Hands claimed jobs that were not started back to the queue, due now.
async fn release(shared: &Shared, jobs: impl Iterator<Item = Job>) {
    for job in jobs {
        let result = shared
            .store
            .retry(
                &job,
                "not started: its worker was stopping",
                Timestamp::now(),
            )
            .await;
        match result {
            Ok(()) => {
                shared.counters.released.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(worker = %job.worker, error = %e, "handing a job back failed; it returns when its lease expires");
            }
        }
    }
}

/// Processes one job to its end; never panics (a panic in evaluation is a failed attempt).
async fn process(shared: &Shared, job: Job) {
    let started = Instant::now();
    let outcome = if job.attempt > shared.options.max_attempts {
        // Its workers died on every attempt (a crash, or a job that kills them).
        let why = format!(
            "gave up after {} attempts whose workers stopped",
            shared.options.max_attempts
        );
        settle(shared, &job, &why, false).await
    } else {
        let evaluated = tokio::select! {
            biased;
            r = std::panic::AssertUnwindSafe(evaluate(shared, &job)).catch_unwind() => r,
            lost = keep_leased(shared, &job) => Ok(Err(lost)),
        };
        match evaluated {
            Ok(Ok(alerts)) => complete(shared, &job, alerts).await,
            Ok(Err(StoreError::LeaseLost { .. })) => Outcome::LeaseLost,
            Ok(Err(e)) => {
                let transient = e.is_transient();
                settle(shared, &job, &e.to_string(), transient).await
            }
            Err(_panic) => settle(shared, &job, "rule evaluation panicked", true).await,
        }
    };
    shared.counters.count(outcome);
    metrics::counter!("medgate_report_jobs_total", "outcome" => outcome.as_str()).increment(1);
    metrics::histogram!("medgate_report_job_seconds").record(started.elapsed().as_secs_f64());
    if outcome != Outcome::Completed {
        tracing::info!(worker = %job.worker, attempt = job.attempt, sae = job.serious_adverse_event, outcome = outcome.as_str(), "report job not completed");
    }
}

/// The report's alerts under the current rules.
async fn evaluate(shared: &Shared, job: &Job) -> Result<Vec<NewAlert>, StoreError> {
    let Some(report) = shared.store.report(&job.receipt).await? else {
        return Err(StoreError::NotFound {
            what: "report",
            id: job.receipt.clone(),
        });
    };
    let rules = shared.rules.load_full();
    rules
        .evaluate(&shared.store, &report, Timestamp::now())
        .await
}

/// Renews the job's lease every third of it; returns only when the lease is lost.
async fn keep_leased(shared: &Shared, job: &Job) -> StoreError {
    let every = (shared.options.lease / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        match shared.store.renew(job, shared.options.lease).await {
            Ok(_) => {}
            Err(e @ StoreError::LeaseLost { .. }) => return e,
            // The lease still holds for two more thirds: try again next time.
            Err(e) => {
                tracing::warn!(worker = %job.worker, error = %e, "renewing a job lease failed")
            }
        }
    }
}

async fn complete(shared: &Shared, job: &Job, alerts: Vec<NewAlert>) -> Outcome {
    match shared.store.complete(job, &alerts).await {
        Ok(()) => {
            for alert in &alerts {
                metrics::counter!("medgate_alerts_total", "rule" => alert.rule.clone())
                    .increment(1);
            }
            if !alerts.is_empty() {
                shared.deliveries.notify();
            }
            Outcome::Completed
        }
        Err(StoreError::LeaseLost { .. }) => Outcome::LeaseLost,
        Err(e) => {
            let transient = e.is_transient();
            settle(shared, job, &e.to_string(), transient).await
        }
    }
}

/// A failed attempt: retry later while it may help and attempts remain, else dead-letter.
async fn settle(shared: &Shared, job: &Job, error: &str, retryable: bool) -> Outcome {
    let o = &shared.options;
    let result = if retryable && job.attempt < o.max_attempts {
        let at = Timestamp::now() + o.retry.delay(job.attempt);
        shared
            .store
            .retry(job, error, at)
            .await
            .map(|()| Outcome::Retried)
    } else {
        shared.store.dead(job, error).await.map(|()| Outcome::Dead)
    };
    match result {
        Ok(outcome) => {
            tracing::warn!(worker = %job.worker, attempt = job.attempt, error = %error, outcome = outcome.as_str(), "report job failed");
            outcome
        }
        Err(StoreError::LeaseLost { .. }) => Outcome::LeaseLost,
        Err(e) => {
            tracing::warn!(worker = %job.worker, error = %e, "recording a failed job failed; it returns when its lease expires");
            Outcome::Abandoned
        }
    }
}

/// Returns expired leases to the queue now and every `reclaim_every`.
async fn reclaim(shared: Arc<Shared>) {
    loop {
        match shared.store.reclaim_expired().await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("medgate_report_jobs_reclaimed_total").increment(n);
                tracing::info!(
                    jobs = n,
                    "report jobs whose worker stopped are queued again"
                );
                shared.wake.notify();
            }
            Err(e) => tracing::warn!(error = %e, "reclaiming expired report jobs failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(shared.options.reclaim_every) => {}
            () = shared.shutdown.cancelled() => return,
        }
    }
}
