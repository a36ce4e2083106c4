//! Start-up: load and validate the config, start demo upstreams, build the catalog, serve.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medgate_core::registry::Plan;
use medgate_core::{Config, ConfigIssue, ConfigIssues, SourceCommon, Upstream};
use medgate_pipeline::{CodeMaps, Pipeline, Transforms};
use medgate_upstream::{HttpUpstream, UpstreamPolicy};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::state::{AppState, Runtime, Services};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The config file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config is invalid; one line per problem, each prefixed with the file.
    #[error("{}", prefixed(path, issues))]
    Invalid { path: PathBuf, issues: ConfigIssues },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The shared HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// A source failed to build.
    #[error("cannot build sources: {0}")]
    Build(#[from] medgate_core::Error),
    /// The audit trail could not be opened.
    #[error("audit trail: {0}")]
    Audit(#[from] medgate_audit::AuditError),
    /// The rate limiter's backend could not be reached.
    #[error("rate_limit: {0}")]
    RateLimit(#[from] medgate_ratelimit::RateLimitError),
}

fn prefixed(path: &Path, issues: &ConfigIssues) -> String {
    issues
        .0
        .iter()
        .map(|i| format!("{}: {i}", path.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A validated config and the files it names, loaded.
pub struct Loaded {
    /// The validated config, ready to build.
    pub plan: Plan,
    /// The `[[code_maps]]` dictionaries.
    pub code_maps: CodeMaps,
}

/// Phase 1 (what `medgate check` runs, and exactly what `serve` and a reload run before
/// building): read, parse and validate the file, and load and check the files it names
/// (code maps). No network I/O.
///
/// # Errors
/// The file cannot be read, or every problem in it, each naming its key (and for a named
/// file, its line and column).
pub fn load(path: &Path) -> Result<Loaded, StartupError> {
    let text = std::fs::read_to_string(path).map_err(|source| StartupError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |issues| StartupError::Invalid {
        path: path.to_owned(),
        issues,
    };
    let config = Config::from_toml(&text).map_err(invalid)?;
    let maps = CodeMaps::load(&config.code_maps);
    let plan = crate::registry().validate(config);
    let mut issues = Vec::new();
    if let Ok(plan) = &plan {
        // The files a source names (CA bundles, client certificates) are read and checked
        // exactly as start-up will load them, so `check` and `serve` agree.
        for (i, common) in plan.sources().enumerate() {
            for issue in medgate_upstream::check_tls(common) {
                issues.push(ConfigIssue::new(
                    format!("sources[{i}] ({}).{}", common.name, issue.key),
                    issue.message,
                ));
            }
        }
    }
    match (plan, maps) {
        (Ok(plan), Ok(code_maps)) if issues.is_empty() => Ok(Loaded { plan, code_maps }),
        (plan, maps) => {
            issues.extend(plan.err().into_iter().flat_map(|i| i.0));
            issues.extend(maps.err().into_iter().flat_map(|i| i.0));
            Err(invalid(ConfigIssues(issues)))
        }
    }
}

/// A built gateway, ready to serve.
pub struct Gateway {
    /// The handlers' state.
    pub state: AppState,
    /// Cancelled to stop the demo upstreams and background work.
    pub shutdown: CancellationToken,
    /// Where the demo upstreams listen, when the config has `[demo]`.
    pub demo: Option<(SocketAddr, SocketAddr)>,
    client: reqwest::Client,
}

/// Phase 2: starts the demo upstreams (if configured), opens the audit trail and the rate
/// limiter, and builds every source.
///
/// # Errors
/// A demo listener cannot bind, the audit file cannot be opened, Redis is unreachable, or a
/// source fails to build.
pub async fn build(loaded: Loaded) -> Result<Gateway, StartupError> {
    let plan = &loaded.plan;
    // Metrics recorded while building (breaker gauges) must reach the recorder.
    crate::observe::prometheus();
    let shutdown = CancellationToken::new();
    let config = &plan.config;
    if !config.auth.required {
        tracing::warn!("AUTHENTICATION IS DISABLED ([auth] required = false): any caller can read patient data. Demo use only.");
    }
    let demo = match &config.demo {
        Some(demo) => Some(start_demo(demo, &shutdown).await?),
        None => None,
    };
    let durability = if config.audit.fsync {
        medgate_audit::Durability::Fsync
    } else {
        medgate_audit::Durability::Flush
    };
    let audit = medgate_audit::AuditLog::open(&config.audit.path, durability)?;
    let limiter = rate_limiter(&config.rate_limit).await?;
    let services = Services {
        limiter,
        fail_open: config.rate_limit.fail_open,
        audit,
    };
    let client =
        medgate_upstream::shared_client().map_err(|e| StartupError::Client(e.to_string()))?;
    let runtime = build_runtime(&loaded, &client, &shutdown)?;
    Ok(Gateway {
        state: AppState::new(runtime, services),
        shutdown,
        demo,
        client,
    })
}

fn build_runtime(
    loaded: &Loaded,
    client: &reqwest::Client,
    shutdown: &CancellationToken,
) -> Result<Runtime, StartupError> {
    let plan = &loaded.plan;
    // Sources with TLS options get their own client, built here once per config (a reload
    // re-reads rotated certificates); the rest share the pooled client.
    let mut upstreams: HashMap<String, Arc<dyn Upstream>> = HashMap::new();
    for common in plan.sources() {
        let upstream = HttpUpstream::for_source(common, client)
            .map_err(|e| StartupError::Client(e.to_string()))?;
        upstreams.insert(common.name.clone(), upstream);
    }
    let upstream_for = |common: &SourceCommon| -> Arc<dyn Upstream> {
        upstreams.get(&common.name).cloned().unwrap_or_else(|| {
            HttpUpstream::new(
                common.name.clone(),
                client.clone(),
                UpstreamPolicy::from(common),
            )
        })
    };
    let catalog = plan.build(&upstream_for, None, shutdown)?;
    let transforms = Transforms::build(&catalog, &loaded.code_maps)
        .map_err(|e| StartupError::Build(medgate_core::Error::Internal(e)))?;
    Ok(Runtime {
        pipeline: Pipeline::new(Arc::new(transforms), shutdown.clone()),
        catalog,
        server: plan.config.server.clone(),
        access: Access::from_config(&plan.config),
    })
}

async fn rate_limiter(
    config: &medgate_core::config::RateLimitConfig,
) -> Result<Arc<dyn medgate_ratelimit::RateLimiter>, StartupError> {
    match config.backend {
        medgate_core::config::RateLimitBackend::Memory => {
            Ok(Arc::new(medgate_ratelimit::InProcessLimiter::new()))
        }
        medgate_core::config::RateLimitBackend::Redis => {
            let url = std::env::var("MEDGATE_REDIS_URL")
                .ok()
                .or_else(|| config.redis_url.clone())
                .unwrap_or_default();
            Ok(Arc::new(
                medgate_ratelimit::RedisLimiter::connect(&url, "medgate:rl").await?,
            ))
        }
    }
}

impl Gateway {
    /// Re-reads `path` and swaps in the new sources, partners and limits if the file is valid;
    /// otherwise logs why and keeps serving the old ones. `[demo]`, `[audit]`, `[rate_limit]`
    /// and `[server].listen` take effect only on restart.
    pub fn reload(&self, path: &Path) -> Result<(), StartupError> {
        let loaded = load(path)?;
        let runtime = build_runtime(&loaded, &self.client, &self.shutdown)?;
        self.state.replace(runtime);
        Ok(())
    }
}

async fn start_demo(
    demo: &medgate_core::config::DemoConfig,
    shutdown: &CancellationToken,
) -> Result<(SocketAddr, SocketAddr), StartupError> {
    let workload = Arc::new(medgate_demo::Workload {
        patients: demo.patients,
        observations: demo.observations,
        ..medgate_demo::Workload::default()
    });
    let upstreams = medgate_demo::spawn_demo(
        demo.his_listen,
        demo.wearable_listen,
        workload,
        shutdown.clone(),
    )
    .await
    .map_err(|e| StartupError::Bind {
        addr: e.addr,
        source: e.source,
    })?;
    Ok((upstreams.his, upstreams.wearable))
}

/// Binds `[server].listen`.
///
/// # Errors
/// The address is in use or not available.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

/// Serves until `stop` completes, then lets in-flight requests finish for at most
/// `[server].shutdown_grace_ms`.
///
/// # Errors
/// The accept loop failed.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = std::time::Duration::from_millis(gateway.state.runtime().server.shutdown_grace_ms);
    let stopping = CancellationToken::new();
    let app = crate::app(gateway.state.clone());
    let signal = {
        let stopping = stopping.clone();
        async move {
            stop.await;
            stopping.cancel();
        }
    };
    gateway.state.set_ready(true);
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let result = tokio::select! {
        result = server => result,
        () = async { stopping.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; exiting with requests still in flight");
            Ok(())
        }
    };
    gateway.state.set_ready(false);
    gateway.shutdown.cancel();
    result
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
