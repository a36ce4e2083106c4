//! The CLI's local mode: `medgate export --config FILE --source his --patients @ids.txt
//! --format xlsx --profile research -o out.xlsx` runs the same pipeline and writers as a
//! job, in this process, to files the user names — no job row, no store needed (except for
//! `store` sources and `"all"`).
//!
//! Files are written as `<name>.partial` and renamed when the run succeeded, so a run that
//! failed or was interrupted never leaves a file that looks complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::env::Snapshot;
use crate::error::{ExportError, Result};
use crate::files::WrittenFile;
use crate::outcomes::{ErrorFiles, FailedPatient, Tracker};
use crate::request::{resolve, ExportRequest, Grant};
use crate::run::{execute, PartSink, RunError, Target};

/// Where and how a local export writes.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The output file, e.g. `out.xlsx`. With `max_file_bytes` the parts are
    /// `out-0001.xlsx`, `out-0002.xlsx` … beside it.
    pub output: PathBuf,
    /// Split into parts of about this many bytes (each a whole file of its format).
    pub max_file_bytes: Option<u64>,
    /// Write each failed (patient, source) as a FHIR `OperationOutcome` line here (created
    /// only when something failed); `None`: the failures are in the summary only.
    pub errors: Option<PathBuf>,
    /// Correlates upstream calls and logs.
    pub request_id: String,
    /// How often the progress callback is called while running.
    pub progress_every: Duration,
}

impl LocalOptions {
    /// Options writing one file to `output`, progress every 200 ms.
    pub fn new(output: impl Into<PathBuf>) -> LocalOptions {
        LocalOptions {
            output: output.into(),
            max_file_bytes: None,
            errors: None,
            request_id: "cli-export".into(),
            progress_every: Duration::from_millis(200),
        }
    }
}

/// Progress of a local export, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalProgress {
    /// Patients to export.
    pub patients_total: u64,
    /// Patients done (exported or failed).
    pub patients_done: u64,
    /// Patients with a failed fetch.
    pub patients_failed: u64,
    /// Observations written.
    pub rows: u64,
}

/// What a local export did.
#[derive(Debug, Clone)]
pub struct LocalSummary {
    /// Observations written.
    pub rows: u64,
    /// Patients exported.
    pub patients: u64,
    /// Patients with at least one failed fetch.
    pub patients_failed: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The data files, in order, with size and SHA-256.
    pub files: Vec<WrittenFile>,
    /// The error file, when there were failures and `errors` was given.
    pub errors: Option<WrittenFile>,
    /// The first failures (up to 100); patients as the output names them.
    pub failures: Vec<FailedPatient>,
    /// The format key.
    pub format: String,
    /// The profile and its key id.
    pub profile: Option<(String, Option<String>)>,
}

/// Runs `request` to `options.output`, calling `progress` now and then and at the end.
/// Cancelling `stop` ends it as [`ExportError::Unavailable`] ("interrupted") with the files
/// removed.
///
/// # Errors
/// Problems of the request (as at kick-off), or the run failing (a write error, the store's
/// listing); files written so far are removed.
pub async fn run_local(
    snapshot: &Snapshot,
    request: ExportRequest,
    options: LocalOptions,
    progress: impl Fn(&LocalProgress) + Send + Sync,
    stop: &CancellationToken,
) -> Result<LocalSummary> {
    let started = Instant::now();
    let request = Grant::unrestricted().apply(snapshot, request)?;
    let resolved = resolve(snapshot, &request).await?;
    let errors = options.errors.as_ref().map(|path| {
        let path = partial(path);
        ErrorFiles::new(move |_| path.clone(), None)
    });
    let tracker = Arc::new(Tracker::new(
        resolved.sources.len(),
        resolved.profile.clone(),
        errors,
    ));
    let names = PartNames::new(&options.output, options.max_file_bytes.is_some());
    let target = Target {
        part: Box::new({
            let names = names.clone();
            move |n| partial(&names.of(n))
        }),
        limit: options.max_file_bytes,
        keep_empty: true,
    };
    let mut sink = Collect;
    let done = CancellationToken::new();
    let running = async {
        let result = execute(
            snapshot,
            &resolved,
            &options.request_id,
            &target,
            &tracker,
            &mut sink,
            stop,
        )
        .await;
        done.cancel();
        result
    };
    let ticking = async {
        let mut tick = tokio::time::interval(options.progress_every);
        loop {
            tokio::select! {
                () = done.cancelled() => return,
                _ = tick.tick() => progress(&local(&tracker)),
            }
        }
    };
    let (result, ()) = tokio::join!(running, ticking);
    progress(&local(&tracker));
    let executed = match result {
        Ok(executed) => executed,
        Err(e) => {
            if let Some(path) = &options.errors {
                let _ = tokio::fs::remove_file(partial(path)).await;
            }
            return Err(match e {
                RunError::Interrupted => {
                    ExportError::Unavailable("the export was interrupted".into())
                }
                RunError::Failed(m) => ExportError::Internal(m),
            });
        }
    };
    let mut files = Vec::with_capacity(executed.parts.len());
    for (i, part) in executed.parts.into_iter().enumerate() {
        files.push(publish(part, &names.of(i as u32 + 1)).await?);
    }
    let errors = match (executed.errors.into_iter().next(), &options.errors) {
        (Some(file), Some(path)) => Some(publish(file, path).await?),
        _ => None,
    };
    Ok(LocalSummary {
        rows: executed.progress.rows_written,
        patients: executed.progress.patients_total,
        patients_failed: executed.progress.patients_failed,
        seconds: started.elapsed().as_secs_f64(),
        files,
        errors,
        failures: tracker.first_failures(),
        format: resolved.format().to_owned(),
        profile: resolved.profile(),
    })
}

fn local(tracker: &Tracker) -> LocalProgress {
    let p = tracker.progress();
    LocalProgress {
        patients_total: p.patients_total,
        patients_done: p.patients_done,
        patients_failed: p.patients_failed,
        rows: p.rows_written,
    }
}

/// `out.csv` → `out.csv.partial`.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

async fn publish(mut file: WrittenFile, to: &Path) -> Result<WrittenFile> {
    tokio::fs::rename(&file.path, to)
        .await
        .map_err(|e| ExportError::io("moving the finished file into place", e))?;
    file.path = to.to_owned();
    Ok(file)
}

/// The final names of the parts.
#[derive(Clone)]
struct PartNames {
    output: PathBuf,
    split: bool,
}

impl PartNames {
    fn new(output: &Path, split: bool) -> Self {
        PartNames {
            output: output.to_owned(),
            split,
        }
    }

    /// Part `n`: see [`part_path`].
    fn of(&self, n: u32) -> PathBuf {
        part_path(&self.output, n, self.split)
    }
}

/// Part `n` of an output: the output itself, or `<stem>-<nnnn>.<ext>` beside it when
/// splitting. The CLI's remote mode names downloaded parts the same way.
pub fn part_path(output: &Path, n: u32, split: bool) -> PathBuf {
    if !split {
        return output.to_owned();
    }
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let name = match output.extension() {
        Some(ext) => format!("{stem}-{n:04}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n:04}"),
    };
    output.with_file_name(name)
}

/// Local parts need no recording.
struct Collect;

#[async_trait]
impl PartSink for Collect {
    async fn part(&mut self, _file: &WrittenFile) -> Result<(), RunError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_numbered_beside_the_output() {
        let one = PartNames::new(Path::new("/d/out.xlsx"), false);
        assert_eq!(one.of(1), Path::new("/d/out.xlsx"));
        let split = PartNames::new(Path::new("/d/out.xlsx"), true);
        assert_eq!(split.of(1), Path::new("/d/out-0001.xlsx"));
        assert_eq!(split.of(12), Path::new("/d/out-0012.xlsx"));
        let bare = PartNames::new(Path::new("out"), true);
        assert_eq!(bare.of(2), Path::new("out-0002"));
        assert_eq!(
            partial(Path::new("/d/out.csv")),
            Path::new("/d/out.csv.partial")
        );
    }
}
