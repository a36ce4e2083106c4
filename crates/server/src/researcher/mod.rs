//! `medgate export`: a researcher's export of a cohort to files.
//!
//! Two modes over one request ([`medgate_exports::ExportRequest`], the body of
//! `POST /v1/exports`):
//! - local (`--config FILE`): the config's sources, pipeline, profiles and cohorts run in
//!   this process ([`medgate_exports::run_local`]), exactly as a job runs on the gateway;
//! - remote (`--server URL`): a job on a gateway, polled until complete, its files
//!   downloaded and checked against the manifest's SHA-256 ([`remote`]).
//!
//! Progress goes to stderr (a bar on a terminal, a line every few seconds otherwise), the
//! summary to stdout. Exit status: 0 complete, 1 the export failed, 2 bad arguments or a
//! request the configuration refuses, 3 complete but some patients failed (named, by the
//! output's id, on stderr and in `--errors`).

pub mod progress;
pub mod remote;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use medgate_exports::{ExportError, ExportRequest, LocalOptions, LocalSummary, Patients};

use crate::startup;
use progress::Progress;

/// Exit status: complete, nothing failed.
pub const EXIT_OK: u8 = 0;
/// Exit status: the export could not run or did not finish.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: bad arguments, or a request the configuration (or the gateway) refuses.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: complete, but some (patient, source) pairs failed.
pub const EXIT_PARTIAL: u8 = 3;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct ExportArgs {
    /// The config file (local mode).
    pub config: PathBuf,
    /// A gateway's base URL (remote mode).
    pub server: Option<String>,
    /// Environment variable holding the partner API key (remote mode).
    pub api_key_env: String,
    /// Source names.
    pub sources: Vec<String>,
    /// `all`, `@FILE` or comma-separated ids.
    pub patients: Option<String>,
    /// A configured cohort.
    pub cohort: Option<String>,
    /// A format key; `None`: from the output's extension.
    pub format: Option<String>,
    /// A de-identification profile.
    pub profile: Option<String>,
    /// RFC 3339 lower bound on effective time.
    pub since: Option<String>,
    /// Codes to keep.
    pub codes: Vec<String>,
    /// The output file.
    pub output: PathBuf,
    /// Split into parts of about this many bytes.
    pub max_file_bytes: Option<u64>,
    /// Where failed patients go as FHIR `OperationOutcome` NDJSON.
    pub errors: Option<PathBuf>,
    /// No progress output.
    pub quiet: bool,
}

/// A failure of the command, with its exit status; printed as one line.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: u8,
    /// What went wrong, naming the argument, file or field.
    pub message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    pub(crate) fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }

    /// Refusals of the request are usage errors; the rest are failures.
    pub(crate) fn from_export(e: ExportError) -> Failure {
        match e {
            ExportError::Invalid(m) | ExportError::Forbidden(m) | ExportError::NotFound(m) => {
                Failure::usage(m)
            }
            other => Failure::failed(other.to_string()),
        }
    }
}

/// What a finished export reports.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Files written, with rows and SHA-256.
    pub files: Vec<(PathBuf, u64, String)>,
    /// Observations written.
    pub rows: u64,
    /// Patients exported.
    pub patients: u64,
    /// (patient, source) pairs that failed.
    pub patients_failed: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// One line per failure (the output's patient id, source, kind), at most 100.
    pub failures: Vec<String>,
    /// The error file, when one was written.
    pub errors: Option<PathBuf>,
}

/// Runs `medgate export`; prints progress, the summary and any failure; returns the exit
/// status.
pub fn main(args: ExportArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("medgate export: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(summary) => {
            print_summary(&summary);
            if summary.patients_failed > 0 {
                ExitCode::from(EXIT_PARTIAL)
            } else {
                ExitCode::from(EXIT_OK)
            }
        }
        Err(f) => {
            eprintln!("medgate export: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(args: &ExportArgs) -> Result<Summary, Failure> {
    let request = request(args)?;
    let progress = Progress::auto(args.quiet);
    let stop = interrupt_token();
    match &args.server {
        Some(server) => remote::run(server, args, request, &progress, &stop).await,
        None => local(args, request, &progress, &stop).await,
    }
}

/// Cancelled at Ctrl-C (and SIGTERM), so a run stops cleanly: local files are removed, a
/// remote job is cancelled.
fn interrupt_token() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        startup::shutdown_signal().await;
        stop.cancel();
    });
    token
}

/// The request the arguments describe.
///
/// # Errors
/// Contradictory or unreadable arguments, naming the argument.
pub fn request(args: &ExportArgs) -> Result<ExportRequest, Failure> {
    let format = match &args.format {
        Some(f) => f.clone(),
        None => format_of(&args.output)?,
    };
    let patients = match (&args.patients, &args.cohort) {
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "give either --patients or --cohort, not both",
            ))
        }
        (None, None) => {
            return Err(Failure::usage(
                "give --patients (all, @FILE or ids separated by commas) or --cohort NAME",
            ))
        }
        (Some(p), None) => Some(patients(p)?),
        (None, Some(_)) => None,
    };
    Ok(ExportRequest {
        sources: args.sources.clone(),
        patients,
        cohort: args.cohort.clone(),
        format,
        profile: args.profile.clone(),
        since: args.since.clone(),
        codes: args.codes.clone(),
    })
}

/// `--patients`: `all`, `@FILE` (one id per line, `#` comments), or `P1,P2`.
fn patients(text: &str) -> Result<Patients, Failure> {
    if text == "all" {
        return Ok(Patients::All);
    }
    let ids = match text.strip_prefix('@') {
        Some(file) => medgate_core::config::read_cohort_file(Path::new(file))
            .map_err(|e| Failure::usage(format!("--patients @{file}: {e}")))?,
        None => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    if ids.is_empty() {
        return Err(Failure::usage("--patients names no patient"));
    }
    Ok(Patients::List(ids))
}

/// The format a file name implies.
fn format_of(output: &Path) -> Result<String, Failure> {
    let name = output.to_string_lossy();
    let format = if name.ends_with(".fhir.ndjson") {
        "fhir-ndjson"
    } else {
        match output.extension().and_then(|e| e.to_str()) {
            Some("csv") => "csv",
            Some("json") => "json",
            Some("ndjson" | "jsonl") => "ndjson",
            Some("xlsx") => "xlsx",
            Some("parquet") => "parquet",
            _ => {
                return Err(Failure::usage(format!(
                    "give --format: the output name {name} does not say which (.csv, .json, .ndjson, .fhir.ndjson, .xlsx, .parquet)"
                )))
            }
        }
    };
    Ok(format.to_owned())
}

async fn local(
    args: &ExportArgs,
    request: ExportRequest,
    progress: &Progress,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Summary, Failure> {
    let loaded = startup::load(&args.config).map_err(|e| Failure::usage(e.to_string()))?;
    let runtime = startup::build_local(&loaded).await.map_err(|e| match e {
        startup::StartupError::Bind { addr, .. } => Failure::failed(format!(
            "{}: the demo upstream address {addr} is in use (is a gateway running on this config? then use --server URL)",
            args.config.display()
        )),
        other => Failure::failed(format!("{}: {other}", args.config.display())),
    })?;
    let mut options = LocalOptions::new(&args.output);
    options.max_file_bytes = args.max_file_bytes;
    options.errors = args.errors.clone();
    let result = medgate_exports::run_local(
        &runtime.snapshot,
        request,
        options,
        |p| progress.update(p.patients_done, p.patients_total, p.patients_failed, p.rows),
        stop,
    )
    .await;
    progress.finish();
    runtime.close().await;
    result.map(summary).map_err(Failure::from_export)
}

fn summary(s: LocalSummary) -> Summary {
    Summary {
        files: s
            .files
            .into_iter()
            .map(|f| (f.path, f.count, f.sha256))
            .collect(),
        rows: s.rows,
        patients: s.patients,
        patients_failed: s.patients_failed,
        seconds: s.seconds,
        failures: s
            .failures
            .iter()
            .map(|f| {
                format!(
                    "{} from {}: {} ({})",
                    f.patient, f.source, f.message, f.kind
                )
            })
            .collect(),
        errors: s.errors.map(|e| e.path),
    }
}

fn print_summary(s: &Summary) {
    for (path, rows, sha256) in &s.files {
        println!("{}: {rows} rows, sha256 {sha256}", path.display());
    }
    let rate = if s.seconds > 0.0 {
        s.rows as f64 / s.seconds
    } else {
        0.0
    };
    println!(
        "exported {} rows for {} patients in {:.1} s ({:.0} rows/s); {} failed",
        s.rows, s.patients, s.seconds, rate, s.patients_failed
    );
    for line in &s.failures {
        eprintln!("failed: {line}");
    }
    if let Some(errors) = &s.errors {
        eprintln!("failures written to {}", errors.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ExportArgs {
        ExportArgs {
            config: "c.toml".into(),
            server: None,
            api_key_env: "K".into(),
            sources: vec!["his".into()],
            patients: Some("P1, P2,,".into()),
            cohort: None,
            format: None,
            profile: None,
            since: None,
            codes: vec![],
            output: "out.xlsx".into(),
            max_file_bytes: None,
            errors: None,
            quiet: true,
        }
    }

    #[test]
    fn the_format_follows_the_output_name_unless_given() {
        assert_eq!(request(&args()).unwrap().format, "xlsx");
        let mut a = args();
        a.output = "x.fhir.ndjson".into();
        assert_eq!(request(&a).unwrap().format, "fhir-ndjson");
        a.format = Some("csv".into());
        assert_eq!(request(&a).unwrap().format, "csv");
        a.format = None;
        a.output = "x.dat".into();
        let f = request(&a).unwrap_err();
        assert_eq!(f.code, EXIT_USAGE);
        assert!(f.message.contains("give --format"), "{}", f.message);
    }

    #[test]
    fn patients_are_listed_read_from_a_file_or_all() {
        assert_eq!(
            request(&args()).unwrap().patients,
            Some(Patients::List(vec!["P1".into(), "P2".into()]))
        );
        let dir = std::env::temp_dir().join(format!("medgate-researcher-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ids.txt");
        std::fs::write(&file, "# study A\nP7\n\nP8\n").unwrap();
        let mut a = args();
        a.patients = Some(format!("@{}", file.display()));
        assert_eq!(
            request(&a).unwrap().patients,
            Some(Patients::List(vec!["P7".into(), "P8".into()]))
        );
        a.patients = Some("all".into());
        assert_eq!(request(&a).unwrap().patients, Some(Patients::All));
        a.patients = Some("@/nonexistent/ids.txt".into());
        let f = request(&a).unwrap_err();
        assert!(
            f.message.starts_with("--patients @/nonexistent/ids.txt"),
            "{}",
            f.message
        );
        a.patients = Some(",".into());
        assert!(request(&a).is_err());
    }

    #[test]
    fn patients_and_cohort_exclude_each_other_and_one_is_needed() {
        let mut a = args();
        a.cohort = Some("study-a".into());
        assert!(request(&a).unwrap_err().message.contains("not both"));
        a.patients = None;
        let r = request(&a).unwrap();
        assert_eq!(r.cohort.as_deref(), Some("study-a"));
        assert_eq!(r.patients, None);
        a.cohort = None;
        assert!(request(&a).unwrap_err().message.contains("--cohort"));
    }
}
