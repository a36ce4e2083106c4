//! One run of a resolved request: patients in batches through the shared pipeline, into
//! split files, failures into error files. Jobs and the CLI's local mode both run this.
//!
//! Each batch of [`BATCH`](crate::patients::BATCH) patients is one
//! [`Pipeline::run`](medgate_pipeline::Pipeline::run): bounded concurrency, the sources'
//! upstream protection (bulkheads, breakers, retries), per-source transforms, the filter,
//! then the profile. A failed (patient, source) is recorded and the run goes on
//! ([`OnError::Skip`]); only the end of the stream itself (shutdown, a store listing that
//! fails) or a write error ends a run early.
//!
//! A job is not interactive, so it is polite to its sources: it never has more fetches in
//! flight than the narrowest of their bulkheads admits (`max_concurrency`), and a fetch that
//! a source's protection refused (bulkhead full because of other traffic, breaker open) is
//! tried again up to three times after the source's `Retry-After` (jittered, at most 5 s,
//! within the fetch's deadline) instead of leaving a hole in a study's data.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use medgate_core::{DataSource, Error, FetchRequest, ObservationStream, SourceHandle};
use medgate_pipeline::{OnError, Outcome, Request, Transform};
use medgate_store::ExportProgress;
use tokio_util::sync::CancellationToken;

use crate::env::Snapshot;
use crate::files::{Splitter, WrittenFile};
use crate::outcomes::Tracker;
use crate::patients::Batches;
use crate::request::Resolved;

/// Where a run writes.
pub(crate) struct Target {
    /// Path of data part `n` (1-based).
    pub part: Box<dyn Fn(u32) -> PathBuf + Send + Sync>,
    /// Parts of at most about this many bytes; `None`: one file.
    pub limit: Option<u64>,
    /// Keep a data file with no observation (the CLI asked for a file); jobs list none.
    pub keep_empty: bool,
}

/// Told of each data part as soon as it is complete on disk.
#[async_trait]
pub(crate) trait PartSink: Send {
    /// Records a finished part.
    ///
    /// # Errors
    /// The run must stop (a job's lease was lost).
    async fn part(&mut self, file: &WrittenFile) -> Result<(), RunError>;
}

/// Why a run ended early.
#[derive(Debug)]
pub(crate) enum RunError {
    /// Stopped from outside: shutdown, cancellation, a lost lease.
    Interrupted,
    /// Failed; the message names no patient.
    Failed(String),
}

impl From<Error> for RunError {
    fn from(e: Error) -> Self {
        match e {
            Error::Interrupted(_) => RunError::Interrupted,
            other => RunError::Failed(other.to_string()),
        }
    }
}

/// What a run wrote.
pub(crate) struct Executed {
    pub parts: Vec<WrittenFile>,
    pub errors: Vec<WrittenFile>,
    pub progress: ExportProgress,
}

/// Runs `resolved` into `target`. Files of a failed run are removed; the error files are
/// the tracker's.
pub(crate) async fn execute(
    snapshot: &Snapshot,
    resolved: &Resolved,
    request_id: &str,
    target: &Target,
    tracker: &Arc<Tracker>,
    sink: &mut dyn PartSink,
    stop: &CancellationToken,
) -> Result<Executed, RunError> {
    let (batches, total) = Batches::open(&resolved.patients).await?;
    tracker.set_total(total);
    let rows = pipeline_rows(snapshot, resolved, batches, tracker.clone(), request_id);
    let mut splitter = Splitter::new(
        rows,
        resolved.exporter.clone(),
        target.limit,
        tracker.rows.clone(),
    );
    let mut parts: Vec<WrittenFile> = Vec::new();
    let result = write_parts(&mut splitter, target, sink, stop, &mut parts).await;
    if let Err(e) = result {
        for part in &parts {
            let _ = tokio::fs::remove_file(&part.path).await;
        }
        return Err(e);
    }
    let errors = tracker
        .finish_errors()
        .map_err(|e| RunError::Failed(format!("the error file could not be written: {e}")))?;
    Ok(Executed {
        parts,
        errors,
        progress: tracker.progress(),
    })
}

async fn write_parts(
    splitter: &mut Splitter,
    target: &Target,
    sink: &mut dyn PartSink,
    stop: &CancellationToken,
    parts: &mut Vec<WrittenFile>,
) -> Result<(), RunError> {
    let mut n = 0u32;
    loop {
        n += 1;
        let path = (target.part)(n);
        let file = match splitter.write_part(&path, stop).await {
            Ok(file) => file,
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(if stop.is_cancelled() {
                    RunError::Interrupted
                } else {
                    e.into()
                });
            }
        };
        if file.count == 0 && n == 1 && !splitter.more() && !target.keep_empty {
            // No observation at all: Bulk Data lists no output file.
            let _ = tokio::fs::remove_file(&path).await;
            return Ok(());
        }
        parts.push(file);
        if let Some(file) = parts.last() {
            sink.part(file).await?;
        }
        if !splitter.more() {
            return Ok(());
        }
    }
}

/// Every batch's pipeline run, one after the other, as one stream.
fn pipeline_rows(
    snapshot: &Snapshot,
    resolved: &Resolved,
    batches: Batches,
    tracker: Arc<Tracker>,
    request_id: &str,
) -> ObservationStream {
    struct State {
        batches: Option<Batches>,
        base: u64,
    }
    let pipeline = snapshot.pipeline.clone();
    let sources: Vec<SourceHandle> = resolved.sources.iter().map(patient_source).collect();
    let filter = resolved.filter.clone();
    let transforms: Vec<Arc<dyn Transform>> = resolved
        .profile
        .iter()
        .map(|p| p.clone() as Arc<dyn Transform>)
        .collect();
    let budget = snapshot.fetch_budget;
    // A job alone never trips a source's bulkhead: at most its `max_concurrency` in flight.
    let concurrency = resolved
        .sources
        .iter()
        .map(|s| s.common.max_concurrency)
        .fold(snapshot.fetch_concurrency, usize::min)
        .max(1);
    let request_id = request_id.to_owned();
    let start = State {
        batches: Some(batches),
        base: 0,
    };
    stream::unfold(start, move |mut state| {
        let (pipeline, sources, filter, transforms, tracker, request_id) = (
            pipeline.clone(),
            sources.clone(),
            filter.clone(),
            transforms.clone(),
            tracker.clone(),
            request_id.clone(),
        );
        async move {
            let batches = state.batches.as_mut()?;
            let batch = match batches.next().await {
                Ok(Some(batch)) => batch,
                Ok(None) => return None,
                Err(e) => {
                    state.batches = None;
                    return Some((stream::once(async { Err(e) }).boxed(), state));
                }
            };
            let base = state.base;
            state.base += batch.len() as u64;
            let mut request = Request::new(sources, batch, request_id);
            request.filter = filter;
            request.fetch_budget = budget;
            request.concurrency = concurrency;
            request.on_error = OnError::Skip;
            request.transforms = transforms;
            request.listener = Some(Arc::new(move |o: &Outcome| tracker.record(base, o)));
            Some((pipeline.run(request).rows, state))
        }
    })
    .flatten()
    .boxed()
}

/// Retries a fetch refused by the source's own protection (bulkhead full, breaker open,
/// gateway overloaded) a few times within its deadline instead of failing the patient:
/// a job is not interactive, waiting is better than a hole in a study's data.
pub(crate) struct Patient {
    inner: Arc<dyn DataSource>,
}

/// Attempts for a refused fetch.
const REFUSED_ATTEMPTS: u32 = 4;
/// Longest wait between them.
const REFUSED_MAX_WAIT: Duration = Duration::from_secs(5);

fn patient_source(handle: &SourceHandle) -> SourceHandle {
    let mut handle = handle.clone();
    handle.source = Arc::new(Patient {
        inner: handle.source.clone(),
    });
    handle
}

#[async_trait]
impl DataSource for Patient {
    async fn fetch(&self, request: &FetchRequest) -> medgate_core::Result<ObservationStream> {
        let mut attempt = 1;
        loop {
            let (error, retry_after) = match self.inner.fetch(request).await {
                Err(
                    e @ (Error::Unavailable { retry_after, .. }
                    | Error::Overloaded { retry_after, .. }),
                ) if attempt < REFUSED_ATTEMPTS => (e, retry_after),
                other => return other,
            };
            // Jittered (0.5-1.5×), so fetches refused together do not come back together.
            let wait = retry_after
                .unwrap_or(Duration::from_millis(250))
                .min(REFUSED_MAX_WAIT)
                .mul_f64(rand::random_range(0.5..1.5));
            if request.deadline.is_some_and(|d| Instant::now() + wait >= d) {
                return Err(error);
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn health_check(&self) -> medgate_core::Result<()> {
        self.inner.health_check().await
    }
}
