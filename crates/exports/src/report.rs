//! What the audit trail needs about a job and its files ([`JobReport`], [`FileFacts`]).
//!
//! The server writes the entries; this crate gives it the facts: who, which sources, the
//! cohort and its size, the profile and its key id, the format, the row count and the
//! SHA-256 of every file. No patient identifier is in a report.

use serde::Serialize;

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobOutcome {
    /// Every file written; the manifest is served.
    Completed,
    /// Given up; `error` says why.
    Failed,
    /// The partner cancelled it while it ran; its files were removed.
    Cancelled,
}

impl JobOutcome {
    /// `completed`, `failed` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Completed => "completed",
            JobOutcome::Failed => "failed",
            JobOutcome::Cancelled => "cancelled",
        }
    }
}

/// One file of a job, for the audit trail and downloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileFacts {
    /// `Observation` (data) or `OperationOutcome` (errors).
    pub kind: String,
    /// 1-based index in the job's file list (`…/files/{index}`).
    pub index: u32,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Observations (or outcomes) in it.
    pub count: u64,
}

/// A job that ended on this gateway, for its audit entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobReport {
    /// The job id.
    pub job_id: String,
    /// The partner that kicked it off.
    pub partner: String,
    /// How it ended.
    pub outcome: JobOutcome,
    /// Why it failed.
    pub error: Option<String>,
    /// Sources, in request order.
    pub sources: Vec<String>,
    /// The cohort, when the request named one.
    pub cohort: Option<String>,
    /// Patients in the job (the cohort size).
    pub patients: u64,
    /// Patients with at least one failed fetch.
    pub patients_failed: u64,
    /// Observations written.
    pub rows: u64,
    /// The format key.
    pub format: String,
    /// The de-identification profile.
    pub profile: Option<String>,
    /// The profile key's public id ([`medgate_deid::PseudonymKey::key_id`]).
    pub key_id: Option<String>,
    /// Files written (none for a failed or cancelled job: they were removed).
    pub files: Vec<FileFacts>,
    /// Which attempt this was (1 unless a worker died before).
    pub attempt: u32,
    /// Seconds this attempt ran.
    pub seconds: f64,
}
