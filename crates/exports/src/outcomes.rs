//! What a run's outcomes turn into: progress counters, and one FHIR `OperationOutcome` per
//! failed (patient, source) in NDJSON error files.
//!
//! The pipeline calls its outcome listener synchronously, in request order, from inside the
//! stream the exporter polls; the error lines are therefore written through a small
//! buffered std file (one `write` per 64 KiB), not handed to another task: nothing queues up,
//! whatever the number of failures.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use medgate_core::fhir::is_fhir_id;
use medgate_deid::Profile;
use medgate_pipeline::Outcome;
use medgate_store::ExportProgress;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::files::WrittenFile;

/// Failures kept in memory for a summary (every one is in the error file).
pub const FIRST_FAILURES: usize = 100;

/// Extension naming the patient an `OperationOutcome` is about.
pub const PATIENT_EXTENSION: &str = "urn:medgate:fhir:extension:patient";
/// Extension naming the source an `OperationOutcome` is about.
pub const SOURCE_EXTENSION: &str = "urn:medgate:fhir:extension:source";
/// Code system of medgate's error kinds (`patient-not-found`, `timeout`, …).
pub const ERROR_KIND_SYSTEM: &str = "urn:medgate:error-kind";

/// One failed (patient, source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedPatient {
    /// The patient as the output names it (its pseudonym under a pseudonymizing profile).
    pub patient: String,
    /// The source.
    pub source: String,
    /// medgate's error kind (`patient-not-found`, `timeout`, `unavailable`, …).
    pub kind: String,
    /// What went wrong (never names a patient).
    pub message: String,
}

/// Live counters of a run and the error files it writes.
pub(crate) struct Tracker {
    sources: u64,
    total: AtomicU64,
    pairs: AtomicU64,
    failed: AtomicU64,
    /// Observations handed to the exporter.
    pub rows: Arc<AtomicU64>,
    profile: Option<Arc<Profile>>,
    state: Mutex<State>,
}

struct State {
    last_failed: Option<u64>,
    first: Vec<FailedPatient>,
    errors: Option<ErrorFiles>,
    io_error: Option<String>,
}

impl Tracker {
    /// A tracker for `sources` sources per patient, writing error files with `errors`
    /// (`None`: count only).
    pub fn new(sources: usize, profile: Option<Arc<Profile>>, errors: Option<ErrorFiles>) -> Self {
        Tracker {
            sources: sources.max(1) as u64,
            total: AtomicU64::new(0),
            pairs: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rows: Arc::default(),
            profile,
            state: Mutex::new(State {
                last_failed: None,
                first: Vec::new(),
                errors,
                io_error: None,
            }),
        }
    }

    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// The counters as the store keeps them.
    pub fn progress(&self) -> ExportProgress {
        let done = self.pairs.load(Ordering::Relaxed) / self.sources;
        ExportProgress {
            patients_total: self.total.load(Ordering::Relaxed).max(done),
            patients_done: done,
            patients_failed: self.failed.load(Ordering::Relaxed),
            rows_written: self.rows.load(Ordering::Relaxed),
        }
    }

    /// Records one outcome of the batch starting at patient `base`.
    pub fn record(&self, base: u64, outcome: &Outcome) {
        self.pairs.fetch_add(1, Ordering::Relaxed);
        let Some(failure) = &outcome.error else {
            return;
        };
        let patient = base + outcome.patient_index as u64;
        let mut state = self.lock();
        if state.last_failed != Some(patient) {
            state.last_failed = Some(patient);
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let shown = match &self.profile {
            Some(p) => p.output_patient_id(&outcome.patient_id).into_owned(),
            None => outcome.patient_id.to_string(),
        };
        let failed = FailedPatient {
            patient: shown,
            source: outcome.source.clone(),
            kind: failure.kind.to_owned(),
            message: failure.message.clone(),
        };
        if let Some(errors) = state.errors.as_mut() {
            if let Err(e) = errors.write(&failed) {
                state.io_error.get_or_insert(e.to_string());
            }
        }
        if state.first.len() < FIRST_FAILURES {
            state.first.push(failed);
        }
    }

    /// The first failures (at most [`FIRST_FAILURES`]).
    pub fn first_failures(&self) -> Vec<FailedPatient> {
        self.lock().first.clone()
    }

    /// Closes the error files; their list, or why they could not be written.
    pub fn finish_errors(&self) -> Result<Vec<WrittenFile>, String> {
        let mut state = self.lock();
        if let Some(e) = state.io_error.take() {
            return Err(e);
        }
        match state.errors.as_mut() {
            Some(errors) => errors.finish().map_err(|e| e.to_string()),
            None => Ok(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Error NDJSON files, split at a byte limit at line boundaries; created on the first
/// failure only.
pub(crate) struct ErrorFiles {
    name: Box<dyn Fn(u32) -> PathBuf + Send>,
    limit: Option<u64>,
    open: Option<OpenFile>,
    done: Vec<WrittenFile>,
}

struct OpenFile {
    path: PathBuf,
    out: BufWriter<File>,
    hash: Sha256,
    size: u64,
    count: u64,
}

impl ErrorFiles {
    /// Files named by `name(1)`, `name(2)` …, each at most `limit` bytes (but one line).
    pub fn new(name: impl Fn(u32) -> PathBuf + Send + 'static, limit: Option<u64>) -> Self {
        ErrorFiles {
            name: Box::new(name),
            limit,
            open: None,
            done: Vec::new(),
        }
    }

    fn write(&mut self, failed: &FailedPatient) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&operation_outcome(failed))?;
        line.push(b'\n');
        let full = match (&self.open, self.limit) {
            (Some(open), Some(limit)) => open.count > 0 && open.size + line.len() as u64 > limit,
            _ => false,
        };
        if full {
            self.close()?;
        }
        if self.open.is_none() {
            let path = (self.name)(self.done.len() as u32 + 1);
            let file = File::create(&path)?;
            self.open = Some(OpenFile {
                path,
                out: BufWriter::with_capacity(64 * 1024, file),
                hash: Sha256::new(),
                size: 0,
                count: 0,
            });
        }
        if let Some(open) = self.open.as_mut() {
            open.out.write_all(&line)?;
            open.hash.update(&line);
            open.size += line.len() as u64;
            open.count += 1;
        }
        Ok(())
    }

    fn close(&mut self) -> std::io::Result<()> {
        if let Some(open) = self.open.take() {
            let file = open.out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            self.done.push(WrittenFile {
                path: open.path,
                size: open.size,
                sha256: hex::encode(open.hash.finalize()),
                count: open.count,
            });
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<Vec<WrittenFile>> {
        self.close()?;
        Ok(std::mem::take(&mut self.done))
    }
}

/// A failed (patient, source) as a FHIR R4 `OperationOutcome`.
pub fn operation_outcome(failed: &FailedPatient) -> serde_json::Value {
    let patient = if is_fhir_id(&failed.patient) {
        json!({ "reference": format!("Patient/{}", failed.patient) })
    } else {
        json!({ "identifier": { "system": "urn:medgate:patient-id", "value": failed.patient } })
    };
    json!({
        "resourceType": "OperationOutcome",
        "extension": [
            { "url": PATIENT_EXTENSION, "valueReference": patient },
            { "url": SOURCE_EXTENSION, "valueString": failed.source },
        ],
        "issue": [{
            "severity": "error",
            "code": issue_code(&failed.kind),
            "details": {
                "coding": [{ "system": ERROR_KIND_SYSTEM, "code": failed.kind }],
                "text": failed.message,
            },
            "diagnostics": format!("source {}: {}", failed.source, failed.message),
        }],
    })
}

/// The FHIR issue type (`IssueType` value set) of a medgate error kind.
pub fn issue_code(kind: &str) -> &'static str {
    match kind {
        "patient-not-found" => "not-found",
        "timeout" => "timeout",
        "upstream-status" | "unreachable" | "unavailable" | "overloaded" => "transient",
        "malformed-payload" => "structure",
        "body-too-large" => "too-costly",
        "bad-request" => "invalid",
        "interrupted" => "incomplete",
        _ => "exception",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(patient: &str, kind: &str) -> FailedPatient {
        FailedPatient {
            patient: patient.into(),
            source: "his".into(),
            kind: kind.into(),
            message: "source his timed out after 10s".into(),
        }
    }

    #[test]
    fn each_error_kind_has_a_fhir_issue_type() {
        for (kind, code) in [
            ("patient-not-found", "not-found"),
            ("timeout", "timeout"),
            ("unavailable", "transient"),
            ("upstream-status", "transient"),
            ("malformed-payload", "structure"),
            ("body-too-large", "too-costly"),
            ("internal", "exception"),
        ] {
            assert_eq!(issue_code(kind), code, "{kind}");
        }
    }

    #[test]
    fn a_patient_id_that_is_no_fhir_id_becomes_an_identifier() {
        let o = operation_outcome(&failed("P1", "timeout"));
        assert_eq!(
            o["extension"][0]["valueReference"]["reference"],
            "Patient/P1"
        );
        assert_eq!(o["issue"][0]["code"], "timeout");
        assert_eq!(
            o["issue"][0]["diagnostics"],
            "source his: source his timed out after 10s"
        );
        let o = operation_outcome(&failed("site:1@x", "timeout"));
        let id = &o["extension"][0]["valueReference"]["identifier"];
        assert_eq!(id["system"], "urn:medgate:patient-id");
        assert_eq!(id["value"], "site:1@x");
    }

    #[test]
    fn error_files_split_at_line_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_owned();
        let line = serde_json::to_vec(&operation_outcome(&failed("P1", "timeout")))
            .unwrap()
            .len() as u64
            + 1;
        let mut files = ErrorFiles::new(move |n| base.join(format!("e{n}.ndjson")), Some(line * 2));
        for _ in 0..5 {
            files.write(&failed("P1", "timeout")).unwrap();
        }
        let done = files.finish().unwrap();
        let counts: Vec<u64> = done.iter().map(|f| f.count).collect();
        assert_eq!(counts, [2, 2, 1]);
        for f in &done {
            let bytes = std::fs::read(&f.path).unwrap();
            assert_eq!(bytes.len() as u64, f.size);
            assert_eq!(hex::encode(Sha256::digest(&bytes)), f.sha256);
        }
    }
}
