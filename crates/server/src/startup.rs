//! Start-up: load and validate the config, start demo upstreams, build the catalog, serve.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medgate_core::config::ServerConfig;
use medgate_core::registry::Plan;
use medgate_core::{Config, ConfigIssue, ConfigIssues, SourceCommon, Upstream};
use medgate_pipeline::{CodeMaps, Pipeline, Transforms};
use medgate_upstream::{HttpUpstream, UpstreamPolicy};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::Access;
use crate::listen;
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
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(String),
    /// The server certificate could not be loaded.
    #[error("server TLS: {0}")]
    Tls(String),
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
    /// `[[rules]]`, `[[webhooks]]` and SAE routing, with the webhooks' secrets.
    pub alerting: medgate_alerts::Alerting,
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
        issues.extend(listen::check_tls(&plan.config.server));
        if let Err(e) = checkpoint_policy(&plan.config.audit) {
            issues.push(ConfigIssue::new("audit.checkpoint_key_env", e.to_string()));
        }
        issues.extend(check_ingest_grants(plan));
        if let Err(e) = medgate_deid::Profiles::from_process_env(&plan.config.profiles) {
            issues.extend(e.0);
        }
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
    let alerting = match &plan {
        Ok(plan) => match alerting(plan) {
            Ok(a) => Some(a),
            Err(e) => {
                issues.extend(e);
                None
            }
        },
        Err(_) => None,
    };
    match (plan, maps, alerting) {
        (Ok(plan), Ok(code_maps), Some(alerting)) if issues.is_empty() => Ok(Loaded {
            plan,
            code_maps,
            alerting,
        }),
        (plan, maps, _) => {
            issues.extend(plan.err().into_iter().flat_map(|i| i.0));
            issues.extend(maps.err().into_iter().flat_map(|i| i.0));
            Err(invalid(ConfigIssues(issues)))
        }
    }
}

/// Rules, webhooks (their secrets read from the environment) and SAE routing.
fn alerting(plan: &Plan) -> Result<medgate_alerts::Alerting, Vec<ConfigIssue>> {
    let config = &plan.config;
    let stores: Vec<String> = plan
        .sources()
        .filter(|s| s.kind == medgate_source_store::KIND)
        .map(|s| s.name.clone())
        .collect();
    medgate_alerts::Alerting::build(
        &config.rules,
        &config.webhooks,
        config.ingest.sae_notify.as_deref(),
        &stores,
        |var| std::env::var(var).ok(),
    )
}

/// A partner's `ingest` grant names `store` sources only.
fn check_ingest_grants(plan: &Plan) -> Vec<ConfigIssue> {
    let kinds: HashMap<&str, &str> = plan
        .sources()
        .map(|s| (s.name.as_str(), s.kind.as_str()))
        .collect();
    let mut issues = Vec::new();
    for (i, p) in plan.config.partners.iter().enumerate() {
        for (j, name) in p.ingest.iter().enumerate() {
            let kind = kinds.get(name.as_str());
            if let Some(kind) = kind.filter(|k| **k != medgate_source_store::KIND) {
                issues.push(ConfigIssue::new(
                    format!("partners[{i}] ({}).ingest[{j}]", p.name),
                    format!(
                        "source `{name}` is of kind `{kind}`; only `store` sources take uploads"
                    ),
                ));
            }
        }
    }
    issues
}

/// A built gateway, ready to serve.
pub struct Gateway {
    /// The handlers' state.
    pub state: AppState,
    /// The server certificate when medgate terminates TLS (swapped on reload).
    pub tls: Option<listen::Tls>,
    /// Report workers and webhook delivery; taken at shutdown to stop them in order.
    background: std::sync::Mutex<Option<medgate_alerts::Background>>,
    /// The export job runner; taken at shutdown (its jobs resume at the next start).
    runner: std::sync::Mutex<Option<medgate_exports::Runner>>,
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
    let options = medgate_audit::AuditOptions {
        durability,
        checkpoints: checkpoint_policy(&config.audit)?,
    };
    let audit = medgate_audit::AuditLog::open_with(&config.audit.path, options)?;
    let limiter = rate_limiter(&config.rate_limit).await?;
    let store = open_store(&config.store).await?;
    let backlog = Arc::new(crate::backlog::Backlog::default());
    let services = Services {
        limiter,
        fail_open: config.rate_limit.fail_open,
        audit,
        store: store.clone(),
        backlog: backlog.clone(),
    };
    let client =
        medgate_upstream::shared_client().map_err(|e| StartupError::Client(e.to_string()))?;
    let runtime = build_runtime(&loaded, &client, &store, &shutdown)?;
    apply_body_budget(&config.server);
    let tls = listen::Tls::from_config(&config.server)
        .map_err(|issues| StartupError::Tls(issues.to_string()))?;
    let background = medgate_alerts::Background::start(
        store.clone(),
        loaded.alerting,
        client.clone(),
        medgate_alerts::BackgroundOptions {
            pool: medgate_alerts::PoolOptions {
                workers: config.ingest.workers,
                ..Default::default()
            },
            ..Default::default()
        },
        &shutdown,
    );
    let state = AppState::new(runtime, services, background.wake());
    {
        let poll_store = store.clone();
        let state = state.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let capacity = {
                let state = state.clone();
                move || state.runtime().ingest.queue_capacity
            };
            backlog.poll(poll_store, capacity, stop).await;
        });
    }
    let exports = medgate_exports::Exports::new(
        store.clone(),
        Arc::new(crate::routes::jobs::ServerExportEnv(state.clone())),
        medgate_exports::RunnerOptions::default(),
    );
    let runner = exports.start(shutdown.clone());
    state.set_exports(exports);
    Ok(Gateway {
        state,
        tls,
        background: std::sync::Mutex::new(Some(background)),
        runner: std::sync::Mutex::new(Some(runner)),
        shutdown,
        demo,
        client,
    })
}

/// What `medgate export` runs locally: a config's sources, pipeline, profiles and cohorts
/// (and its demo upstreams and store), without listeners, audit trail or background work.
pub struct LocalRuntime {
    /// Sources, exporters, pipeline, profiles and cohorts, as a job on the server sees them.
    pub snapshot: Arc<medgate_exports::Snapshot>,
    /// Cancel to stop the demo upstreams; [`LocalRuntime::close`] does it.
    pub shutdown: CancellationToken,
    store: medgate_store::Store,
}

impl LocalRuntime {
    /// Stops the demo upstreams and closes the store.
    pub async fn close(self) {
        self.shutdown.cancel();
        self.store.close().await;
    }
}

/// Builds a [`LocalRuntime`] from a validated config.
///
/// # Errors
/// A demo upstream cannot bind (a gateway on the same config already holds its port), the
/// store cannot be opened, or a source fails to build.
pub async fn build_local(loaded: &Loaded) -> Result<LocalRuntime, StartupError> {
    let shutdown = CancellationToken::new();
    let config = &loaded.plan.config;
    if let Some(demo) = &config.demo {
        start_demo(demo, &shutdown).await?;
    }
    let store = open_store(&config.store).await?;
    let client =
        medgate_upstream::shared_client().map_err(|e| StartupError::Client(e.to_string()))?;
    let runtime = build_runtime(loaded, &client, &store, &shutdown)?;
    apply_body_budget(&config.server);
    Ok(LocalRuntime {
        snapshot: runtime.jobs,
        shutdown,
        store,
    })
}

/// Sets the process-wide budget for upstream bodies in flight (shared by every source, kept
/// across reloads so bodies in flight stay counted) to `[server] max_inflight_body_bytes`.
fn apply_body_budget(server: &medgate_core::config::ServerConfig) {
    let limit = server.max_inflight_body_bytes;
    medgate_upstream::body_budget().set_limit(limit);
    metrics::gauge!("medgate_upstream_body_bytes_limit").set(limit as f64);
}

fn build_runtime(
    loaded: &Loaded,
    client: &reqwest::Client,
    store: &medgate_store::Store,
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
    let port: Arc<dyn medgate_core::ObservationStore> = Arc::new(store.clone());
    let catalog = plan.build(&upstream_for, Some(port.clone()), shutdown)?;
    let transforms = Transforms::build(&catalog, &loaded.code_maps)
        .map_err(|e| StartupError::Build(medgate_core::Error::Internal(e)))?;
    let pipeline = Pipeline::new(Arc::new(transforms), shutdown.clone());
    let profiles = medgate_deid::Profiles::from_process_env(&plan.config.profiles)
        .map_err(|e| StartupError::Build(medgate_core::Error::Internal(e.to_string())))?;
    let jobs = Arc::new(medgate_exports::Snapshot::new(
        &catalog,
        pipeline.clone(),
        profiles.clone(),
        &plan.config,
        Some(port),
    ));
    Ok(Runtime {
        pipeline,
        jobs,
        profiles,
        catalog,
        server: plan.config.server.clone(),
        access: Access::from_config(&plan.config),
        exports: Arc::new(tokio::sync::Semaphore::new(
            plan.config.server.max_concurrent_exports,
        )),
        metrics_token: plan
            .config
            .server
            .metrics_token_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok()),
        ingest: plan.config.ingest.clone(),
        audit_max_rejected_ids: plan.config.audit.max_rejected_patient_ids,
    })
}

/// Opens `[store] url` (`MEDGATE_STORE_URL` wins), creating what is missing and running the
/// migrations.
async fn open_store(
    config: &medgate_core::config::StoreConfig,
) -> Result<medgate_store::Store, StartupError> {
    let url = std::env::var("MEDGATE_STORE_URL").unwrap_or_else(|_| config.url.clone());
    medgate_store::Store::open(&url)
        .await
        .map_err(|e| StartupError::Store(e.to_string()))
}

/// `[audit] checkpoint_key_env` and cadence as the audit log's policy.
fn checkpoint_policy(
    audit: &medgate_core::config::AuditConfig,
) -> Result<Option<medgate_audit::CheckpointPolicy>, medgate_audit::AuditError> {
    let Some(var) = &audit.checkpoint_key_env else {
        return Ok(None);
    };
    let key = medgate_audit::CheckpointKey::from_env(var)?;
    Ok(Some(medgate_audit::CheckpointPolicy {
        key,
        every_entries: audit.checkpoint_every_entries,
        interval: std::time::Duration::from_millis(audit.checkpoint_interval_ms),
    }))
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
        let store = self.state.services().store.clone();
        let runtime = build_runtime(&loaded, &self.client, &store, &self.shutdown)?;
        if let Some(tls) = &self.tls {
            tls.reload(&loaded.plan.config.server)
                .map_err(|issues| StartupError::Tls(issues.to_string()))?;
        }
        if let Some(background) = self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            background.reload(loaded.alerting);
        }
        apply_body_budget(&loaded.plan.config.server);
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

/// The listeners a gateway serves on.
pub struct Listeners {
    /// The API (and, without `ops`, the operators' routes).
    pub api: TcpListener,
    /// `[server] ops_listen`: health, readiness and metrics on their own connections.
    pub ops: Option<TcpListener>,
}

impl Listeners {
    /// Binds `[server] listen` and, if set, `ops_listen`.
    ///
    /// # Errors
    /// An address is in use or not available.
    pub async fn bind(server: &ServerConfig) -> Result<Listeners, StartupError> {
        let api = bind(server.listen).await?;
        let ops = match server.ops_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Listeners { api, ops })
    }
}

/// Serves until `stop` completes, then shuts down in order: stop accepting and mark not
/// ready; let in-flight requests finish for at most `[server].shutdown_grace_ms`; then stop
/// what is still running (downloads end as `interrupted` and are audited as such), wait
/// briefly for their audit entries, and close the audit trail (fsync, signed checkpoint).
///
/// # Errors
/// The TLS certificate could not be loaded.
pub async fn serve(
    gateway: Arc<Gateway>,
    listeners: Listeners,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let runtime = gateway.state.runtime();
    let server = runtime.server.clone();
    let grace = std::time::Duration::from_millis(server.shutdown_grace_ms);
    let accepting = CancellationToken::new();
    let connections = TaskTracker::new();
    let api = crate::app(gateway.state.clone());
    tokio::spawn(listen::serve(
        listeners.api,
        api,
        gateway.tls.clone(),
        listen::Limits::from_config(&server),
        accepting.clone(),
        connections.clone(),
    ));
    if let Some(ops) = listeners.ops {
        tokio::spawn(listen::serve(
            ops,
            crate::routes::ops_app(gateway.state.clone()),
            None,
            listen::Limits::ops(),
            accepting.clone(),
            connections.clone(),
        ));
    }
    gateway.state.set_ready(true);
    stop.await;
    tracing::info!("stopping: no new connections; letting requests in flight finish");
    gateway.state.set_ready(false);
    accepting.cancel();
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "grace period over; interrupting what is still running"
        );
    }
    gateway.shutdown.cancel();
    let tasks = gateway.state.tasks();
    tasks.close();
    if tokio::time::timeout(std::time::Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::error!("background work did not stop within 5 s after the grace period");
    }
    let background = gateway
        .background
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(background) = background {
        if !background.stop(std::time::Duration::from_secs(5)).await {
            tracing::warn!(
                "report workers did not stop in time; their jobs return after the lease"
            );
        }
    }
    let runner = gateway
        .runner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(runner) = runner {
        if tokio::time::timeout(std::time::Duration::from_secs(5), runner.stopped())
            .await
            .is_err()
        {
            tracing::warn!("export jobs did not stop in time; they resume after their lease");
        }
    }
    gateway.state.services().store.close().await;
    if let Err(e) = gateway.state.services().audit.close() {
        tracing::error!(error = %e, "closing the audit trail failed");
    }
    Ok(())
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
