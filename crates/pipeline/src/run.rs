//! The fetch-many stage: patients × sources, fetched with bounded concurrency and emitted in
//! request order, each observation passed through the transforms.
//!
//! Every (patient, source) pair is one fetch with its own deadline. What a fetch yields is
//! counted into the run's [`Summary`](crate::Summary) when it ends; a failed fetch is recorded
//! there and, by default, the run goes on with the next one ([`OnError::Skip`]). Dropping the
//! stream drops every fetch in flight (their upstream requests are cancelled with them); the
//! gateway's shutdown token ends the stream with [`Error::Interrupted`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{FutureExt, Stream, StreamExt};
use medgate_core::{
    Error, FetchRequest, Filter, Observation, ObservationStream, SourceHandle, Warning,
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::summary::{Failure, Outcome, OutcomeListener, SummaryHandle, MAX_WARNINGS};
use crate::transform::{Transform, Transforms};

/// What a failed fetch does to the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnError {
    /// Record it and go on with the next (patient, source).
    #[default]
    Skip,
    /// Record it and end the stream with the error.
    Stop,
}

/// One run: which patients from which sources, and how.
pub struct Request {
    /// Sources, in the order their observations are emitted for each patient.
    pub sources: Vec<SourceHandle>,
    /// Patients, in output order.
    pub patients: Vec<String>,
    /// Which observations to keep (also passed to the sources as a hint).
    pub filter: Filter,
    /// Correlates logs and upstream calls.
    pub request_id: String,
    /// Time allowed for each fetch.
    pub fetch_budget: Duration,
    /// Overall deadline (interactive requests); `None` for downloads and jobs.
    pub deadline: Option<Instant>,
    /// Fetches in flight at once.
    pub concurrency: usize,
    /// What a failed fetch does.
    pub on_error: OnError,
    /// Further transforms after the sources' own (de-identification plugs in here).
    pub transforms: Vec<Arc<dyn Transform>>,
    /// Receives every (patient, source) outcome as it completes.
    pub listener: Option<OutcomeListener>,
}

impl Request {
    /// A request with defaults: no filter, 10 s per fetch, 8 in flight, failures skipped.
    pub fn new(
        sources: Vec<SourceHandle>,
        patients: Vec<String>,
        request_id: impl Into<String>,
    ) -> Self {
        Request {
            sources,
            patients,
            filter: Filter::default(),
            request_id: request_id.into(),
            fetch_budget: Duration::from_secs(10),
            deadline: None,
            concurrency: 8,
            on_error: OnError::Skip,
            transforms: Vec::new(),
            listener: None,
        }
    }
}

/// A running pipeline: the observations, and the live summary of what happened.
pub struct Run {
    /// Observations in request order (patient, then source).
    pub rows: ObservationStream,
    /// Counts and failures so far; final once `rows` has ended.
    pub summary: SummaryHandle,
}

impl Run {
    /// Waits for the first observation so that a run with no result at all can be answered
    /// as one error: `Err` when every fetch failed (the first failure that is not "patient
    /// not found", else that one), or when the stream itself failed first. Otherwise the run
    /// with its first observation put back.
    ///
    /// # Errors
    /// As described.
    pub async fn ready(mut self) -> Result<Run, Error> {
        match self.rows.next().await {
            Some(Ok(first)) => Ok(Run {
                rows: stream::once(async { Ok(first) }).chain(self.rows).boxed(),
                summary: self.summary,
            }),
            Some(Err(e)) => Err(e),
            None => {
                let summary = self.summary.snapshot();
                let all_failed = summary.failed > 0 && summary.sources.values().all(|s| s.ok == 0);
                match self.summary.take_first_error().filter(|_| all_failed) {
                    Some(e) => Err(e),
                    None => Ok(Run {
                        rows: stream::empty().boxed(),
                        summary: self.summary,
                    }),
                }
            }
        }
    }

    /// Collects every observation (interactive paths, whose size is bounded by the sources'
    /// body caps).
    ///
    /// # Errors
    /// The stream's error under [`OnError::Stop`] or at shutdown.
    pub async fn collect(mut self) -> Result<(Vec<Observation>, SummaryHandle), Error> {
        let mut rows = Vec::new();
        while let Some(item) = self.rows.next().await {
            rows.push(item?);
        }
        Ok((rows, self.summary))
    }
}

/// The pipeline of one configuration: its per-source transforms and the gateway's shutdown.
#[derive(Clone)]
pub struct Pipeline {
    transforms: Arc<Transforms>,
    shutdown: CancellationToken,
}

impl Pipeline {
    /// A pipeline applying `transforms`, stopping when `shutdown` is cancelled.
    pub fn new(transforms: Arc<Transforms>, shutdown: CancellationToken) -> Self {
        Pipeline {
            transforms,
            shutdown,
        }
    }

    /// The token that stops every run of this pipeline (the gateway's shutdown).
    pub fn stopping(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Starts `request`. Nothing is fetched until the stream is polled.
    pub fn run(&self, request: Request) -> Run {
        let summary = SummaryHandle::new(
            request.patients.len(),
            request.sources.len(),
            request.listener.clone(),
        );
        let plan = Arc::new(Plan {
            request_id: request.request_id,
            filter: request.filter,
            fetch_budget: request.fetch_budget,
            deadline: request.deadline,
            on_error: request.on_error,
            extra: request.transforms,
            transforms: self.transforms.clone(),
            summary: summary.clone(),
        });
        let sources = request.sources;
        let pairs = request
            .patients
            .into_iter()
            .enumerate()
            .flat_map(move |(index, patient)| {
                let patient: Arc<str> = Arc::from(patient);
                sources
                    .clone()
                    .into_iter()
                    .map(move |handle| (index, patient.clone(), handle))
            });
        let on_error = plan.on_error;
        let mut fetches = stream::iter(pairs)
            .map(move |(index, patient, handle)| plan.clone().fetch(index, patient, handle))
            .buffered(request.concurrency.max(1))
            .flatten()
            .boxed();
        if on_error == OnError::Stop {
            fetches = crate::guard::stop_after_error(fetches);
        }
        let rows = Stoppable {
            inner: fetches,
            cancelled: Box::pin(self.shutdown.clone().cancelled_owned()),
            summary: summary.clone(),
            done: false,
        };
        Run {
            rows: rows.boxed(),
            summary,
        }
    }
}

/// What every fetch of one run shares.
struct Plan {
    request_id: String,
    filter: Filter,
    fetch_budget: Duration,
    deadline: Option<Instant>,
    on_error: OnError,
    extra: Vec<Arc<dyn Transform>>,
    transforms: Arc<Transforms>,
    summary: SummaryHandle,
}

impl Plan {
    fn fetch(
        self: Arc<Self>,
        index: usize,
        patient: Arc<str>,
        handle: SourceHandle,
    ) -> BoxFuture<'static, SourceRows> {
        async move {
            let mut deadline = Instant::now() + self.fetch_budget;
            if let Some(overall) = self.deadline {
                deadline = deadline.min(overall);
            }
            let request = FetchRequest {
                patient_id: patient.to_string(),
                request_id: self.request_id.clone(),
                deadline: Some(deadline),
                filter: self.filter.clone(),
            };
            let name = handle.info.name.clone();
            let fetched = match tokio::time::timeout_at(
                deadline.into(),
                crate::guard::fetch(&handle, &request),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(timeout(&name, self.fetch_budget)),
            };
            let mut transforms: Vec<Arc<dyn Transform>> = Vec::new();
            if let Some(t) = self.transforms.for_source(&name) {
                transforms.push(t);
            }
            if !self.filter.is_empty() {
                transforms.push(Arc::new(self.filter.clone()));
            }
            transforms.extend(self.extra.iter().cloned());
            let outcome = Outcome {
                patient_index: index,
                patient_id: patient,
                source: name,
                rows: 0,
                warnings: 0,
                error: None,
            };
            let (inner, pending) = match fetched {
                Ok(rows) => (Some(rows), None),
                Err(e) => (None, Some(e)),
            };
            SourceRows {
                inner,
                pending,
                transforms,
                outcome: Some(outcome),
                warnings: Vec::new(),
                // Interactive requests end a slow stream at the deadline too; downloads do not
                // (their pace is the client's).
                deadline: self
                    .deadline
                    .map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
                plan: self,
            }
        }
        .boxed()
    }
}

fn timeout(source: &str, after: Duration) -> Error {
    Error::Timeout {
        name: source.to_owned(),
        after,
    }
}

/// The observations of one (patient, source) fetch, transformed and counted; records the
/// outcome when it ends.
struct SourceRows {
    inner: Option<ObservationStream>,
    pending: Option<Error>,
    transforms: Vec<Arc<dyn Transform>>,
    outcome: Option<Outcome>,
    warnings: Vec<Warning>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    plan: Arc<Plan>,
}

impl SourceRows {
    /// Records the outcome; under [`OnError::Stop`] a failure is also yielded.
    fn finish(&mut self, error: Option<Error>) -> Option<Result<Observation, Error>> {
        self.inner = None;
        let mut outcome = self.outcome.take()?;
        let warnings = std::mem::take(&mut self.warnings);
        match (error, self.plan.on_error) {
            (Some(e), OnError::Stop) => {
                // The error goes to the caller through the stream; the summary keeps a copy.
                outcome.error = Some(Failure::of(e.clone()));
                self.plan.summary.record(outcome, warnings, None);
                Some(Err(e))
            }
            (Some(e), OnError::Skip) => {
                outcome.error = Some(Failure::of(e.clone()));
                self.plan.summary.record(outcome, warnings, Some(e));
                None
            }
            (None, _) => {
                self.plan.summary.record(outcome, warnings, None);
                None
            }
        }
    }

    fn keep(&mut self, o: &mut Observation) -> bool {
        if !self.transforms.iter().all(|t| t.apply(o)) {
            return false;
        }
        if let Some(outcome) = &mut self.outcome {
            outcome.rows += 1;
            outcome.warnings += o.warnings.len() as u64;
        }
        let room = MAX_WARNINGS.saturating_sub(self.warnings.len());
        self.warnings.extend(o.warnings.iter().take(room).cloned());
        true
    }
}

impl Stream for SourceRows {
    type Item = Result<Observation, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(e) = this.pending.take() {
            return Poll::Ready(this.finish(Some(e)));
        }
        loop {
            let Some(inner) = &mut this.inner else {
                return Poll::Ready(None);
            };
            match inner.poll_next_unpin(cx) {
                // What is ready is taken even past the deadline: only waiting stops there.
                Poll::Pending => {
                    let expired = this
                        .deadline
                        .as_mut()
                        .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                    if !expired {
                        return Poll::Pending;
                    }
                    let name = this
                        .outcome
                        .as_ref()
                        .map_or(String::new(), |o| o.source.clone());
                    return Poll::Ready(this.finish(Some(timeout(&name, this.plan.fetch_budget))));
                }
                Poll::Ready(None) => return Poll::Ready(this.finish(None)),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(this.finish(Some(e))),
                Poll::Ready(Some(Ok(mut o))) => {
                    if this.keep(&mut o) {
                        return Poll::Ready(Some(Ok(o)));
                    }
                }
            }
        }
    }
}

impl Drop for SourceRows {
    fn drop(&mut self) {
        // A fetch dropped before its end (client gone, run abandoned) is not an outcome: the
        // caller stopped asking. Nothing to record.
        self.outcome = None;
    }
}

/// Ends the run with [`Error::Interrupted`] when the gateway shuts down.
struct Stoppable {
    inner: BoxStream<'static, Result<Observation, Error>>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    summary: SummaryHandle,
    done: bool,
}

impl Stream for Stoppable {
    type Item = Result<Observation, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.cancelled.as_mut().poll(cx).is_ready() {
            self.done = true;
            self.summary.interrupted();
            return Poll::Ready(Some(Err(Error::Interrupted(
                "the gateway is shutting down".into(),
            ))));
        }
        let polled = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }
}
