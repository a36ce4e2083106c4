//! medgate-exports: FHIR Bulk Data export jobs over whole cohorts, and the same run for the
//! CLI's local mode.
//!
//! A job is a row in the store's export table ([`medgate_store::Store::create_export`] and
//! friends) plus files under `[exports] dir/<job id>/<attempt>/`. This crate owns
//! everything between the HTTP layer and that table:
//!
//! - [`request`]: the kick-off body [`ExportRequest`] (and [`BulkQuery`] for
//!   `GET /fhir/Patient/$export`, `/fhir/Group/{cohort}/$export`), the partner's [`Grant`],
//!   and validation with messages a partner can act on.
//! - [`env`](mod@env): [`ExportEnv`], what the server implements: one consistent [`Snapshot`] of the
//!   current configuration (sources, exporters, pipeline, profiles, cohorts, `[exports]`),
//!   and a hook called when a job ends, for the audit trail.
//! - [`jobs`]: [`Exports`], the façade the routes call: `kick_off`, `status` (progress, or
//!   the [`Manifest`]), `open_file`, `delete`, `list`.
//! - [`runner`]: claims jobs (up to `[exports] concurrency`), heartbeats with progress,
//!   resumes jobs whose worker died or fails them after [`RunnerOptions::max_attempts`],
//!   deletes expired jobs.
//! - [`run`]: one run — patients in batches through the shared pipeline
//!   (`OnError::Skip`, the profile as a transform, `since`/`codes` as the filter) into
//!   [`files`], split at `max_file_bytes` at observation boundaries, each part a whole file
//!   of its format, SHA-256 and size computed while writing; failures into
//!   [`outcomes`] (FHIR `OperationOutcome` NDJSON).
//! - [`local`]: [`run_local`], the CLI's `medgate export … -o out.xlsx`.
//!
//! # What the server does
//! At start, after the store is open: build `Exports::new(store, env, RunnerOptions::default())`
//! and call [`Exports::start`] with the gateway's shutdown token (the runner resumes
//! interrupted jobs at once). At shutdown: cancel that token, `runner.stopped().await`,
//! then close the store. Routes:
//! - `POST /v1/exports` (body [`ExportRequest`]) and `GET /fhir/…/$export` ([`BulkQuery`]):
//!   check `export_jobs`, build a [`Grant`] from the partner, [`Exports::kick_off`] → 202
//!   with `Content-Location: {base}/v1/exports/{id}`; audit the kick-off from [`KickedOff`].
//! - `GET /v1/exports/{id}`: [`Exports::status`] → 202 with `X-Progress`
//!   ([`progress_text`]) and `Retry-After`, or 200 with the manifest and `Expires`, or the
//!   failure; `DELETE`: [`Exports::delete`] → 202.
//! - `GET /v1/exports/{id}/files/{n}`: [`Exports::open_file`] → stream it with its content
//!   type, `Digest`/`ETag` from its SHA-256, audit the download.
//! - [`ExportEnv::job_ended`]: audit the job (who, cohort size, profile and key id, format,
//!   rows, each file's SHA-256).
//!
//! Invariants: no patient identifier in logs, job errors or manifests (the error files name
//! patients — by pseudonym under a pseudonymizing profile — and are served to the owner
//! only); memory does not grow with the rows of a job (rows stream from the pipeline into
//! the exporter; patients are taken in batches).

pub mod env;
pub mod error;
pub mod files;
pub mod jobs;
pub mod local;
pub mod manifest;
pub mod outcomes;
pub mod patients;
pub mod report;
pub mod request;
pub mod run;
pub mod runner;

pub use env::{ExportEnv, Snapshot};
pub use error::{ExportError, Result};
pub use files::WrittenFile;
pub use jobs::{
    progress_text, Deleted, Download, Exports, JobStatus, KickedOff, ERRORS_CONTENT_TYPE,
    OBSERVATION, OPERATION_OUTCOME,
};
pub use local::{run_local, LocalOptions, LocalProgress, LocalSummary};
pub use manifest::{FileEntry, FileExtension, Manifest, ManifestExtension};
pub use outcomes::{operation_outcome, FailedPatient};
pub use report::{FileFacts, JobOutcome, JobReport};
pub use request::{BulkQuery, ExportRequest, Grant, Patients, Resolved};
pub use runner::{Runner, RunnerOptions};
