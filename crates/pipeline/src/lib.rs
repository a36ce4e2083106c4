//! medgate-pipeline: the one path data takes from sources to outputs.
//!
//! ```text
//! Request (sources × patients, filter, budgets)
//!   └─ run: fetch each (patient, source) with bounded concurrency, in request order
//!        └─ transform: source time zone → code maps → filter → request transforms
//!             └─ Run { rows: stream of observations, summary: live outcomes }
//!                  └─ export: an Exporter writes the rows (downloads, jobs)
//! ```
//!
//! Every route that returns patient data — one source, fan-out, downloads, FHIR search —
//! and export jobs go through [`Pipeline::run`], so code maps, time zones and (later)
//! de-identification apply to all of them alike. One failed patient is recorded in the
//! [`Summary`], not the end of a download; the caller decides what a run with no result means
//! ([`Run::ready`]). Dropping the stream cancels the fetches in flight; the gateway's shutdown
//! ends it with an `Interrupted` error.
//!
//! - [`codemap`]: the terminology dictionary loaded from CSV files.
//! - [`transform`]: per-source and per-request transforms.
//! - [`run`]: the fetch-many stage and the run's stream.
//! - [`summary`]: outcomes, aggregated with bounded memory.
//! - [`export`]: the export stage with panic isolation.
//! - [`guard`]: panic-safe plugin calls.

pub mod codemap;
pub mod export;
pub mod guard;
pub mod run;
pub mod summary;
pub mod transform;

pub use codemap::{CodeMap, CodeMapError, CodeMaps};
pub use export::{export, Exported};
pub use run::{OnError, Pipeline, Request, Run};
pub use summary::{
    FailedFetch, Failure, Outcome, OutcomeListener, SourceSummary, Summary, SummaryHandle,
};
pub use transform::{SourceTransform, Transform, Transforms};
