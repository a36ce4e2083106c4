//! What a run did: per-(patient, source) outcomes, aggregated with bounded memory.
//!
//! A run over a million patients must not keep a million outcomes: the [`Summary`] keeps
//! counts, per-source totals, the first few warnings and the first [`MAX_FAILURES`] failures.
//! Callers that need every outcome (an export job writing its error file) register an
//! [`OutcomeListener`] and receive each one as it completes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use medgate_core::{Error, Warning};
use serde::Serialize;

/// Failures kept in a [`Summary`].
pub const MAX_FAILURES: usize = 100;
/// Warnings kept per source in a [`Summary`].
pub const MAX_WARNINGS: usize = 5;

/// How one (patient, source) fetch ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Position of the patient in the request (0-based).
    pub patient_index: usize,
    /// The patient id as asked for. Goes to the audit trail and the caller, never to logs.
    #[serde(skip)]
    pub patient_id: Arc<str>,
    /// The source.
    pub source: String,
    /// Observations that passed the transforms.
    pub rows: u64,
    /// Warnings on those observations.
    pub warnings: u64,
    /// Why it failed, if it did (rows before a mid-stream failure still count).
    pub error: Option<Failure>,
}

/// Why a fetch failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Stable kind (`patient-not-found`, `timeout`, …), as [`Error::kind`].
    pub kind: &'static str,
    /// The message (never contains a patient id).
    pub message: String,
    /// The error itself, for callers that map it (to an HTTP status, an OperationOutcome).
    #[serde(skip)]
    pub error: Arc<Error>,
}

impl Failure {
    /// The failure for `error`.
    pub fn of(error: Error) -> Failure {
        Failure {
            kind: error.kind(),
            message: error.to_string(),
            error: Arc::new(error),
        }
    }
}

/// Receives every outcome as it completes, in request order.
pub type OutcomeListener = Arc<dyn Fn(&Outcome) + Send + Sync>;

/// One source's totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceSummary {
    /// Fetches that completed.
    pub ok: u64,
    /// Fetches that failed.
    pub failed: u64,
    /// Observations produced.
    pub rows: u64,
    /// Warnings on them.
    pub warnings: u64,
    /// The first few warnings, with positions.
    pub first_warnings: Vec<Warning>,
}

/// A failed fetch, kept in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct FailedFetch {
    /// Position of the patient in the request.
    pub patient_index: usize,
    /// The source.
    pub source: String,
    /// Why.
    #[serde(flatten)]
    pub failure: Failure,
}

/// Totals of a run so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Patients in the request.
    pub patients: u64,
    /// Patients whose every source has finished.
    pub patients_done: u64,
    /// Observations produced.
    pub rows: u64,
    /// Warnings on them.
    pub warnings: u64,
    /// Fetches that failed.
    pub failed: u64,
    /// Per source.
    pub sources: BTreeMap<String, SourceSummary>,
    /// The first [`MAX_FAILURES`] failures.
    pub failures: Vec<FailedFetch>,
    /// Whether the run was stopped before the end.
    pub interrupted: bool,
}

#[derive(Default)]
struct State {
    summary: Summary,
    completed_pairs: u64,
    sources_per_patient: u64,
    first_error: Option<Error>,
    /// The first error that is not "patient not found": a run whose every fetch failed is
    /// reported by it, since an outage matters more than an unknown patient.
    first_other_error: Option<Error>,
}

/// A live view of a run's summary, shared with the stream that fills it.
#[derive(Clone)]
pub struct SummaryHandle {
    state: Arc<Mutex<State>>,
    listener: Option<OutcomeListener>,
}

impl SummaryHandle {
    pub(crate) fn new(patients: usize, sources: usize, listener: Option<OutcomeListener>) -> Self {
        let state = State {
            summary: Summary {
                patients: patients as u64,
                ..Summary::default()
            },
            sources_per_patient: sources.max(1) as u64,
            ..State::default()
        };
        SummaryHandle {
            state: Arc::new(Mutex::new(state)),
            listener,
        }
    }

    /// A copy of the totals so far.
    pub fn snapshot(&self) -> Summary {
        self.lock().summary.clone()
    }

    /// The error that best describes the failures so far, taken out (for callers that turn
    /// a run with no result into one error response): the first one that is not "patient not
    /// found", else the first.
    pub fn take_first_error(&self) -> Option<Error> {
        let mut state = self.lock();
        state
            .first_other_error
            .take()
            .or_else(|| state.first_error.take())
    }

    pub(crate) fn interrupted(&self) {
        self.lock().summary.interrupted = true;
    }

    pub(crate) fn record(&self, outcome: Outcome, warnings: Vec<Warning>, error: Option<Error>) {
        if let Some(listener) = &self.listener {
            listener(&outcome);
        }
        let mut state = self.lock();
        state.completed_pairs += 1;
        state.summary.patients_done = state.completed_pairs / state.sources_per_patient;
        let summary = &mut state.summary;
        summary.rows += outcome.rows;
        summary.warnings += outcome.warnings;
        let source = summary.sources.entry(outcome.source.clone()).or_default();
        source.rows += outcome.rows;
        source.warnings += outcome.warnings;
        let room = MAX_WARNINGS.saturating_sub(source.first_warnings.len());
        source
            .first_warnings
            .extend(warnings.into_iter().take(room));
        match outcome.error {
            None => source.ok += 1,
            Some(failure) => {
                source.failed += 1;
                summary.failed += 1;
                if summary.failures.len() < MAX_FAILURES {
                    summary.failures.push(FailedFetch {
                        patient_index: outcome.patient_index,
                        source: outcome.source,
                        failure,
                    });
                }
                match error {
                    Some(e @ Error::PatientNotFound { .. }) if state.first_error.is_none() => {
                        state.first_error = Some(e);
                    }
                    Some(e)
                        if !matches!(e, Error::PatientNotFound { .. })
                            && state.first_other_error.is_none() =>
                    {
                        state.first_other_error = Some(e);
                    }
                    _ => {}
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent counters; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
