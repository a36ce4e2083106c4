//! The `medgate` command: `serve`, `check`, `export`, `audit`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use medgate::startup;

/// mimalloc instead of glibc malloc: the data path allocates many short-lived strings per row,
/// and glibc's allocator showed up as ~15% of CPU in the pull-path profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "medgate", version, about = "A gateway for clinical data")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "MEDGATE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (TOML).
        #[arg(long, default_value = "config/medgate.toml")]
        config: PathBuf,
    },
    /// Validate a config file and exit: 0 when valid, 1 with one line per problem otherwise.
    Check {
        /// Config file (TOML).
        #[arg(long, default_value = "config/medgate.toml")]
        config: PathBuf,
    },
    /// Export observations of a cohort to files: locally over the config's sources (the same
    /// pipeline, profiles and exporters as the gateway), or as a job on a gateway (--server).
    ///
    /// Exit status: 0 complete; 1 failed; 2 bad arguments or a refused request; 3 complete
    /// but some patients failed (listed on stderr, and in --errors as FHIR OperationOutcome).
    #[command(
        after_help = "Examples:\n  medgate export --config config/medgate.toml --source his,wearable --patients P000001,P000002 -o out.xlsx\n  medgate export --source his --patients @ids.txt --profile research -o study.parquet\n  MEDGATE_API_KEY=... medgate export --server https://gw.example --cohort study-a --format csv -o study.csv"
    )]
    Export(Box<ExportCommand>),
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(clap::Args)]
struct ExportCommand {
    /// Config file (TOML), for a local export.
    #[arg(long, default_value = "config/medgate.toml")]
    config: PathBuf,
    /// Drive a job on this gateway instead (e.g. https://medgate.example.org).
    #[arg(long)]
    server: Option<String>,
    /// With --server: the environment variable holding your partner API key.
    #[arg(long, default_value = "MEDGATE_API_KEY")]
    api_key_env: String,
    /// Source names, comma-separated (default: the cohort's, or every source).
    #[arg(long, value_delimiter = ',')]
    source: Vec<String>,
    /// `all`, `@FILE` (one patient id per line), or ids separated by commas.
    #[arg(long)]
    patients: Option<String>,
    /// A configured cohort ([[cohorts]]) instead of --patients.
    #[arg(long)]
    cohort: Option<String>,
    /// csv, json, ndjson, fhir-ndjson, xlsx, parquet (default: from the output's extension).
    #[arg(long)]
    format: Option<String>,
    /// A de-identification profile ([[profiles]]).
    #[arg(long)]
    profile: Option<String>,
    /// Only observations effective at or after this RFC 3339 instant.
    #[arg(long)]
    since: Option<String>,
    /// Only these codes (`code` or `system|code`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    codes: Vec<String>,
    /// The output file; split parts are named out-0001.csv, out-0002.csv … beside it.
    #[arg(short, long)]
    output: PathBuf,
    /// Split into files of about this many bytes, each a whole file of its format.
    #[arg(long)]
    max_file_bytes: Option<u64>,
    /// Write failed (patient, source) pairs here as FHIR OperationOutcome NDJSON.
    #[arg(long)]
    errors: Option<PathBuf>,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

impl From<ExportCommand> for medgate::researcher::ExportArgs {
    fn from(c: ExportCommand) -> Self {
        medgate::researcher::ExportArgs {
            config: c.config,
            server: c.server,
            api_key_env: c.api_key_env,
            sources: c.source,
            patients: c.patients,
            cohort: c.cohort,
            format: c.format,
            profile: c.profile,
            since: c.since,
            codes: c.codes,
            output: c.output,
            max_file_bytes: c.max_file_bytes,
            errors: c.errors,
            quiet: c.quiet,
        }
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify a hash-chained audit file: 0 when intact, 1 naming the first bad entry.
    Verify {
        /// The audit file (JSON Lines).
        file: PathBuf,
        /// Environment variable with the checkpoint key: also check the signed checkpoint.
        #[arg(long)]
        key_env: Option<String>,
    },
    /// Print the chain's head (last sequence number and hash) and its last checkpoint.
    Head {
        /// The audit file (JSON Lines).
        file: PathBuf,
    },
    /// Truncate a torn final line (a crash mid-write), saving the removed bytes beside the
    /// file, and report what was removed. Refuses a file that is tampered with or in use.
    Repair {
        /// The audit file (JSON Lines).
        file: PathBuf,
    },
    /// Sign the current head of an existing file (to start using checkpoints on it).
    Sign {
        /// The audit file (JSON Lines).
        file: PathBuf,
        /// Environment variable with the checkpoint key.
        #[arg(long)]
        key_env: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    // A researcher's export shows progress and a summary; the gateway's info lines (demo
    // upstreams listening, migrations) would only bury them. RUST_LOG still wins.
    let default_level = match cli.command {
        Command::Export(_) => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config } => serve(&config),
        Command::Export(export) => medgate::researcher::main((*export).into()),
        Command::Audit { command } => audit(command),
    }
}

/// Help and version as clap prints them; a bad argument as one line (clap's first) with a
/// pointer to `--help`, exit status 2.
fn usage(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        _ => {}
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("medgate: {first} (see medgate --help)");
    ExitCode::from(2)
}

fn audit(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify { file, key_env } => verify(&file, key_env.as_deref()),
        AuditCommand::Head { file } => match medgate_audit::head(&file) {
            Ok(head) => {
                println!("{}: seq {} hash {}", file.display(), head.seq, head.hash);
                match head.checkpoint {
                    Some(c) => println!(
                        "last checkpoint: seq {} hash {} at {}",
                        c.seq, c.hash, c.time
                    ),
                    None => println!("no checkpoint"),
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&file, &e),
        },
        AuditCommand::Repair { file } => match medgate_audit::repair(&file) {
            Ok(report) => {
                println!("{}: {report}", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&file, &e),
        },
        AuditCommand::Sign { file, key_env } => {
            let signed = medgate_audit::CheckpointKey::from_env(&key_env)
                .and_then(|key| medgate_audit::sign_head(&file, &key));
            match signed {
                Ok(c) => {
                    println!(
                        "{}: signed head seq {} hash {}",
                        file.display(),
                        c.seq,
                        c.hash
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&file, &e),
            }
        }
    }
}

fn fail(file: &std::path::Path, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{}: {e}", file.display());
    ExitCode::FAILURE
}

fn verify(file: &std::path::Path, key_env: Option<&str>) -> ExitCode {
    let report = match key_env {
        None => medgate_audit::verify(file),
        Some(var) => match medgate_audit::CheckpointKey::from_env(var) {
            Ok(key) => medgate_audit::verify_with_key(file, &key),
            Err(e) => return fail(file, &e),
        },
    };
    match report {
        Ok(report) => {
            println!(
                "{}: ok ({} entries, last hash {})",
                file.display(),
                report.entries,
                report.last_hash
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match startup::load(path) {
        Ok(loaded) => {
            let names: Vec<_> = loaded.plan.sources().map(|s| s.name.as_str()).collect();
            println!(
                "{}: ok ({} sources: {})",
                path.display(),
                names.len(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &std::path::Path) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let loaded = startup::load(path)?;
    let server = loaded.plan.config.server.clone();
    let demo_key = loaded
        .plan
        .config
        .demo
        .as_ref()
        .and_then(|d| d.api_key.clone());
    let gateway = std::sync::Arc::new(startup::build(loaded).await?);
    let listeners = startup::Listeners::bind(&server).await?;
    let addr = listeners.api.local_addr()?;
    let ops = listeners.ops.as_ref().and_then(|l| l.local_addr().ok());
    print_banner(addr, ops, &gateway, demo_key.as_deref());
    tokio::spawn(reload_on_sighup(gateway.clone(), path.to_owned()));
    startup::serve(gateway, listeners, startup::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: validate the file again and swap the registry atomically, or keep the old one.
async fn reload_on_sighup(gateway: std::sync::Arc<startup::Gateway>, path: PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            // A reload must never end this loop: a panic while building is caught and
            // reported like any other refused config, and the next SIGHUP is still heard.
            let attempt =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gateway.reload(&path)));
            let result = attempt.unwrap_or_else(|_| {
                Err(startup::StartupError::Client(
                    "the reload panicked; see the log".into(),
                ))
            });
            match result {
                Ok(()) => tracing::info!(config = %path.display(), "configuration reloaded"),
                Err(e) => {
                    tracing::error!(config = %path.display(), error = %e, "configuration rejected; still serving the previous one")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (gateway, path);
}

fn print_banner(
    addr: std::net::SocketAddr,
    ops: Option<std::net::SocketAddr>,
    gateway: &startup::Gateway,
    demo_key: Option<&str>,
) {
    let runtime = gateway.state.runtime();
    let catalog = &runtime.catalog;
    let scheme = if gateway.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("medgate listening on {scheme}://{addr}");
    if let Some(ops) = ops {
        println!("operators' listener (healthz, readyz, metrics) on http://{ops}");
    }
    for s in catalog.sources() {
        println!(
            "  source {:<12} kind {:<14} format {}",
            s.info.name,
            s.info.kind,
            s.info.format.as_deref().unwrap_or("-")
        );
    }
    if let Some((his, wearable)) = gateway.demo {
        println!("DEMO MODE: simulated upstreams with synthetic patients P000001.. (HIS FHIR XML on {his}, wearable Open mHealth on {wearable})");
    }
    let auth = match demo_key {
        Some(key) if runtime.access.required() => {
            println!(
                "Demo partner API key (demo only, printed because [demo] api_key is set): {key}"
            );
            format!("-H 'Authorization: Bearer {key}' ")
        }
        _ if !runtime.access.required() => {
            println!("WARNING: authentication is disabled ([auth] required = false)");
            String::new()
        }
        _ => "-H 'Authorization: Bearer <your API key>' ".to_owned(),
    };
    let first = catalog
        .sources()
        .first()
        .map_or("his", |s| s.info.name.as_str());
    println!("Try:");
    println!("  curl -s {auth}'{scheme}://{addr}/v1/data/{first}?patient_id=P000001'");
    println!("  curl -s {auth}'{scheme}://{addr}/v1/patients/P000001/observations'");
    println!("  curl -s {auth}'{scheme}://{addr}/fhir/Observation?patient=P000001'");
    println!("  curl -sOJ {auth}'{scheme}://{addr}/v1/export?source={first}&patient_id=P000001,P000002&format=csv'");
    if let Some(store) = catalog.sources().iter().find(|s| s.info.kind == "store") {
        let name = &store.info.name;
        println!(
            "  curl -s {auth}-H 'Content-Type: application/json' -d '{{\"patient_id\": \"P000001\", \"reported_at\": \"2026-03-01T08:00:00+08:00\", \"kind\": \"epro\", \"items\": [{{\"code\": \"8867-4\", \"code_system\": \"http://loinc.org\", \"display\": \"Heart rate\", \"value\": 72, \"unit\": \"/min\", \"effective\": \"2026-03-01T07:58:00+08:00\"}}]}}' '{scheme}://{addr}/v1/ingest/{name}'"
        );
        println!("  curl -s {auth}'{scheme}://{addr}/v1/data/{name}?patient_id=P000001'");
    }
}
