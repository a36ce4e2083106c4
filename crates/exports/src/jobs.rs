//! [`Exports`]: export jobs as the HTTP layer uses them — kick-off, status (progress or the
//! Bulk Data manifest), file downloads, cancel, list — over the store's job table.
//!
//! Ownership: every call takes the partner; a job of another partner is "not found", so the
//! server cannot leak one partner's job to another by forgetting a check.
//!
//! Files on disk: `[exports] dir/<job id>/<attempt>/part-0001.<ext>` and
//! `errors-0001.ndjson`. A job restarted after its worker died writes into a new attempt
//! directory; the manifest lists the files of the attempt that completed only, so a file
//! recorded by a dead attempt is never served.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use medgate_store::{ExportFile, ExportJob, ExportProgress, ExportState, NewExport, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::env::ExportEnv;
use crate::error::{ExportError, Result};
use crate::manifest::{FileEntry, Manifest, ManifestExtension};
use crate::report::FileFacts;
use crate::request::{resolve, ExportRequest, Grant};
use crate::runner::RunnerOptions;

/// `kind` of a data file (the FHIR resource type in it).
pub const OBSERVATION: &str = "Observation";
/// `kind` of an error file.
pub const OPERATION_OUTCOME: &str = "OperationOutcome";
/// Content type of error files.
pub const ERRORS_CONTENT_TYPE: &str = "application/fhir+ndjson";

/// What the job table keeps as a job's `request` (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobSpec {
    /// The request with the grant applied (sources filled in, forced profile put in).
    pub request: ExportRequest,
    /// The kick-off URL, for the manifest's `request`.
    pub kickoff: String,
}

impl JobSpec {
    pub fn of(job: &ExportJob) -> Result<JobSpec> {
        serde_json::from_str(&job.request).map_err(|e| {
            ExportError::Internal(format!(
                "export job {} has an unreadable request: {e}",
                job.id
            ))
        })
    }
}

/// A job accepted at kick-off, with what its audit entry needs.
#[derive(Debug, Clone)]
pub struct KickedOff {
    /// The queued job (its `id` goes into `Content-Location`).
    pub job: ExportJob,
    /// The request as it will run (sources filled in, forced profile put in).
    pub request: ExportRequest,
    /// Patients, when known before running (a list or a cohort; not `"all"`).
    pub patients: Option<u64>,
    /// The profile's key id, when the profile has a key.
    pub key_id: Option<String>,
}

/// Where a job is, for `GET` on its status URL.
#[derive(Debug, Clone)]
pub enum JobStatus {
    /// Waiting for a worker: 202 with `X-Progress` and `Retry-After`.
    Queued {
        /// Suggested `Retry-After`.
        retry_after: Duration,
    },
    /// A worker runs it: 202 with `X-Progress` ([`progress_text`]) and `Retry-After`.
    Running {
        /// Counters of the last heartbeat.
        progress: ExportProgress,
        /// Suggested `Retry-After`.
        retry_after: Duration,
    },
    /// Done: 200 with the manifest; `Expires` is `expires`.
    Completed {
        /// The Bulk Data manifest.
        manifest: Box<Manifest>,
        /// When the files are deleted.
        expires: Timestamp,
    },
    /// Failed (a 500 with an OperationOutcome, per Bulk Data).
    Failed {
        /// Why (names no patient).
        error: String,
    },
    /// Cancelled by the partner (404 per Bulk Data).
    Cancelled,
}

/// `X-Progress`: `"412/1000 patients, 3 failed, 41200 rows"`.
pub fn progress_text(p: &ExportProgress) -> String {
    format!(
        "{}/{} patients, {} failed, {} rows",
        p.patients_done, p.patients_total, p.patients_failed, p.rows_written
    )
}

/// A file ready to stream.
#[derive(Debug)]
pub struct Download {
    /// The file, opened for reading.
    pub file: tokio::fs::File,
    /// Bytes (checked against the file on disk).
    pub size: u64,
    /// Hex SHA-256 recorded when it was written.
    pub sha256: String,
    /// `Content-Type`.
    pub content_type: String,
    /// A file name for `Content-Disposition`, e.g. `medgate-<job>-0001.csv`.
    pub filename: String,
    /// `Observation` or `OperationOutcome`.
    pub kind: String,
    /// Observations (or outcomes) in it.
    pub count: u64,
    /// The job's format and profile, for the audit entry.
    pub format: String,
    /// The profile, if the job had one.
    pub profile: Option<String>,
    /// When the file is deleted.
    pub expires: Timestamp,
}

/// What `DELETE` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// A queued or running job was cancelled (its worker removes its files).
    Cancelled,
    /// A finished job and its files were removed.
    Removed,
}

pub(crate) struct Inner {
    pub store: Store,
    pub env: Arc<dyn ExportEnv>,
    pub options: RunnerOptions,
    /// Wakes this gateway's runner when a job is kicked off here.
    pub wake: Notify,
}

/// Export jobs of one gateway: cheap to clone.
#[derive(Clone)]
pub struct Exports {
    pub(crate) inner: Arc<Inner>,
}

impl Exports {
    /// Jobs in `store`, run with the configuration `env` gives.
    pub fn new(store: Store, env: Arc<dyn ExportEnv>, options: RunnerOptions) -> Exports {
        Exports {
            inner: Arc::new(Inner {
                store,
                env,
                options,
                wake: Notify::new(),
            }),
        }
    }

    /// The store the jobs live in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Validates `request` for the partner of `grant` and queues the job. `kickoff` is the
    /// full URL of the kick-off request (the manifest's `request`).
    ///
    /// # Errors
    /// Any problem of the request ([`ExportError::Invalid`], `Forbidden`, `NotFound`), or
    /// the store's.
    pub async fn kick_off(
        &self,
        grant: &Grant<'_>,
        request: ExportRequest,
        kickoff: &str,
    ) -> Result<KickedOff> {
        let snapshot = self.inner.env.snapshot();
        let request = grant.apply(&snapshot, request)?;
        let resolved = resolve(&snapshot, &request).await?;
        let spec = JobSpec {
            request: request.clone(),
            kickoff: kickoff.to_owned(),
        };
        let json = serde_json::to_value(&spec)
            .map_err(|e| ExportError::Internal(format!("encoding the job: {e}")))?;
        let expires_at = Timestamp::now()
            .checked_add(expire_after(snapshot.exports.expire_after_s))
            .map_err(|e| ExportError::Internal(format!("expiry time: {e}")))?;
        let job = self
            .inner
            .store
            .create_export(NewExport {
                partner: grant.partner.to_owned(),
                request: json,
                expires_at,
            })
            .await?;
        self.inner.wake.notify_one();
        Ok(KickedOff {
            job,
            patients: resolved.patient_count(),
            key_id: resolved.profile().and_then(|(_, k)| k),
            request,
        })
    }

    /// The partner's job `id`. A finished job past its `Expires` is gone even before the
    /// runner's next sweep deletes it: it is deleted here, with its files, and not found.
    ///
    /// # Errors
    /// [`ExportError::NotFound`] for an unknown job, another partner's, or an expired one.
    pub async fn job(&self, partner: &str, id: &str) -> Result<ExportJob> {
        match self.inner.store.export(id).await? {
            Some(job) if job.partner == partner => {
                let expires = self.expires(&job);
                if job.state.is_final() && expires < Timestamp::now() {
                    if let Err(e) = self.remove(&job.id).await {
                        tracing::warn!(error = %e, "deleting an expired export job failed");
                    }
                    return Err(ExportError::NotFound(format!(
                        "export job {id} expired at {expires}; its files were deleted"
                    )));
                }
                Ok(job)
            }
            _ => Err(ExportError::NotFound(format!("no export job {id}"))),
        }
    }

    /// The partner's jobs, newest first.
    ///
    /// # Errors
    /// The store's.
    pub async fn list(&self, partner: &str, limit: u32) -> Result<Vec<ExportJob>> {
        Ok(self.inner.store.list_exports(partner, limit).await?)
    }

    /// Where job `id` is: progress while it runs, the manifest when complete, with file
    /// URLs `{base}/v1/exports/{id}/files/{n}` (`base` without a trailing slash, e.g.
    /// `https://gw.example.org`).
    ///
    /// # Errors
    /// [`ExportError::NotFound`], or the store's.
    pub async fn status(&self, partner: &str, id: &str, base: &str) -> Result<JobStatus> {
        let job = self.job(partner, id).await?;
        Ok(match job.state {
            ExportState::Queued => JobStatus::Queued {
                retry_after: Duration::from_secs(5),
            },
            ExportState::Running => JobStatus::Running {
                progress: job.progress,
                retry_after: Duration::from_secs(2),
            },
            ExportState::Failed => JobStatus::Failed {
                error: job
                    .error
                    .clone()
                    .unwrap_or_else(|| "the export failed".into()),
            },
            ExportState::Cancelled => JobStatus::Cancelled,
            ExportState::Completed => {
                let expires = self.expires(&job);
                let manifest = self.manifest(&job, base)?;
                JobStatus::Completed {
                    manifest: Box::new(manifest),
                    expires,
                }
            }
        })
    }

    /// The Bulk Data manifest of a completed job.
    fn manifest(&self, job: &ExportJob, base: &str) -> Result<Manifest> {
        let spec = JobSpec::of(job)?;
        let snapshot = self.inner.env.snapshot();
        let format = spec.request.format.clone();
        let content_type = snapshot
            .exporter(&format)
            .map_or("application/octet-stream", |e| e.content_type());
        let key_id = spec
            .request
            .profile
            .as_deref()
            .and_then(|p| snapshot.profiles.get(p))
            .and_then(|p| p.key_id());
        let base = base.trim_end_matches('/');
        let (mut output, mut error) = (Vec::new(), Vec::new());
        for (index, file) in current_files(job).iter().enumerate() {
            let data = file.kind == OBSERVATION;
            let entry = FileEntry::new(
                &file.kind,
                format!("{base}/v1/exports/{}/files/{}", job.id, index + 1),
                file,
                if data {
                    content_type
                } else {
                    ERRORS_CONTENT_TYPE
                },
            );
            if data {
                output.push(entry);
            } else {
                error.push(entry);
            }
        }
        let transaction_time = job.transaction_time.unwrap_or(job.created_at);
        Ok(Manifest {
            transaction_time: transaction_time.to_string(),
            request: spec.kickoff,
            requires_access_token: true,
            output,
            error,
            extension: ManifestExtension {
                format,
                profile: spec.request.profile,
                key_id,
                sources: spec.request.sources,
                cohort: spec.request.cohort,
                patients: job.progress.patients_total,
                patients_failed: job.progress.patients_failed,
                rows: job.progress.rows_written,
                expires: self.expires(job).to_string(),
            },
        })
    }

    /// When a job's files are deleted: `[exports] expire_after_s` after it finished (at
    /// the earliest that long after kick-off).
    pub fn expires(&self, job: &ExportJob) -> Timestamp {
        let after = expire_after(self.inner.env.snapshot().exports.expire_after_s);
        let from_end = job.updated_at.checked_add(after).unwrap_or(job.expires_at);
        if job.state.is_final() {
            from_end.max(job.expires_at)
        } else {
            job.expires_at
        }
    }

    /// Opens file `index` (1-based, as in the manifest URLs) of the partner's completed job.
    ///
    /// # Errors
    /// [`ExportError::NotFound`] (job or index), [`ExportError::NotReady`] (not complete),
    /// [`ExportError::Gone`] (the file is missing or was changed on disk).
    pub async fn open_file(&self, partner: &str, id: &str, index: u32) -> Result<Download> {
        let job = self.job(partner, id).await?;
        if job.state != ExportState::Completed {
            return Err(ExportError::NotReady(format!(
                "export job {id} is {}; files are served once it is completed",
                job.state.as_str()
            )));
        }
        let files = current_files(&job);
        let file = index
            .checked_sub(1)
            .and_then(|i| files.get(i as usize))
            .ok_or_else(|| {
                ExportError::NotFound(format!(
                    "export job {id} has {} files; no file {index}",
                    files.len()
                ))
            })?;
        let spec = JobSpec::of(&job)?;
        let path = self.dir().join(&file.path);
        let opened = tokio::fs::File::open(&path)
            .await
            .map_err(|_| ExportError::Gone(format!("file {index} of export job {id} is gone")))?;
        let size = opened
            .metadata()
            .await
            .map_err(|e| ExportError::io("reading an export file", e))?
            .len();
        if size != file.size {
            return Err(ExportError::Gone(format!(
                "file {index} of export job {id} was changed on disk"
            )));
        }
        let snapshot = self.inner.env.snapshot();
        let data = file.kind == OBSERVATION;
        let (content_type, extension) = match (data, snapshot.exporter(&spec.request.format)) {
            (true, Some(e)) => (e.content_type().to_owned(), e.extension()),
            (true, None) => ("application/octet-stream".to_owned(), "bin"),
            (false, _) => (ERRORS_CONTENT_TYPE.to_owned(), "ndjson"),
        };
        let stem = if data { "" } else { "errors-" };
        Ok(Download {
            file: opened,
            size,
            sha256: file.sha256.clone(),
            content_type,
            filename: format!("medgate-{id}-{stem}{index:04}.{extension}"),
            kind: file.kind.clone(),
            count: file.count,
            format: spec.request.format,
            profile: spec.request.profile,
            expires: self.expires(&job),
        })
    }

    /// `DELETE`: cancels a queued or running job (its worker stops at its next heartbeat
    /// and removes its files), or removes a finished job with its files.
    ///
    /// # Errors
    /// [`ExportError::NotFound`], or the store's.
    pub async fn delete(&self, partner: &str, id: &str) -> Result<Deleted> {
        let job = self.job(partner, id).await?;
        match job.state {
            ExportState::Queued | ExportState::Running => {
                let now = self.inner.store.cancel_export(id).await?;
                match now {
                    Some(j) if j.state == ExportState::Cancelled => Ok(Deleted::Cancelled),
                    // It finished in between: remove it as a finished job.
                    Some(_) => self.remove(id).await.map(|()| Deleted::Removed),
                    None => Err(ExportError::NotFound(format!("no export job {id}"))),
                }
            }
            ExportState::Cancelled => Ok(Deleted::Cancelled),
            ExportState::Completed | ExportState::Failed => {
                self.remove(id).await.map(|()| Deleted::Removed)
            }
        }
    }

    /// Removes a job's directory, then its row.
    pub(crate) async fn remove(&self, id: &str) -> Result<()> {
        remove_dir(&self.job_dir(id)).await?;
        self.inner.store.delete_export(id).await?;
        Ok(())
    }

    /// The facts of a completed job's files (those the manifest lists), for audit entries.
    pub fn file_facts(job: &ExportJob) -> Vec<FileFacts> {
        current_files(job)
            .iter()
            .enumerate()
            .map(|(i, f)| FileFacts {
                kind: f.kind.clone(),
                index: i as u32 + 1,
                size: f.size,
                sha256: f.sha256.clone(),
                count: f.count,
            })
            .collect()
    }

    pub(crate) fn dir(&self) -> PathBuf {
        self.inner.env.snapshot().exports.dir.clone()
    }

    pub(crate) fn job_dir(&self, id: &str) -> PathBuf {
        self.dir().join(safe_id(id))
    }
}

/// The files of the attempt that completed (a job restarted from scratch keeps the records
/// of its dead attempts; their files were removed).
pub(crate) fn current_files(job: &ExportJob) -> Vec<&ExportFile> {
    let prefix = attempt_prefix(&job.id, job.attempts);
    job.files
        .iter()
        .filter(|f| f.path.starts_with(&prefix))
        .collect()
}

/// `<id>/<attempt>/`: where an attempt's files are, relative to the exports directory.
pub(crate) fn attempt_prefix(id: &str, attempt: u32) -> String {
    format!("{}/{attempt}/", safe_id(id))
}

/// Job ids are the store's UUIDs; anything else cannot name a path outside the directory.
pub(crate) fn safe_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn expire_after(seconds: u64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX / 2))
}

/// Removes `dir` and everything in it; a missing directory is fine.
pub(crate) async fn remove_dir(dir: &Path) -> Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ExportError::io("removing export files", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> ExportFile {
        ExportFile {
            kind: OBSERVATION.into(),
            url: String::new(),
            path: path.into(),
            size: 1,
            sha256: String::new(),
            count: 1,
        }
    }

    #[test]
    fn only_the_completing_attempts_files_are_served() {
        let now = Timestamp::now();
        let job = ExportJob {
            id: "j1".into(),
            partner: "p".into(),
            request: "{}".into(),
            state: ExportState::Completed,
            owner: None,
            lease_until: None,
            attempts: 2,
            progress: ExportProgress::default(),
            created_at: now,
            updated_at: now,
            expires_at: now,
            transaction_time: None,
            error: None,
            files: vec![
                file("j1/1/part-0001.csv"),
                file("j1/2/part-0001.csv"),
                file("j1/22/x"),
            ],
        };
        let paths: Vec<&str> = current_files(&job)
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(paths, ["j1/2/part-0001.csv"]);
    }

    #[test]
    fn ids_cannot_leave_the_exports_directory() {
        assert_eq!(safe_id("01a2-ff"), "01a2-ff");
        assert_eq!(safe_id("../../etc"), "______etc");
    }

    #[test]
    fn progress_reads_as_text() {
        let p = ExportProgress {
            patients_total: 1000,
            patients_done: 412,
            patients_failed: 3,
            rows_written: 41200,
        };
        assert_eq!(progress_text(&p), "412/1000 patients, 3 failed, 41200 rows");
    }
}
