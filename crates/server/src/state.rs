//! Shared application state.
//!
//! Everything built from one config file is a [`Runtime`], held in an `ArcSwap`: a reload
//! (SIGHUP) validates and builds a new one and swaps it in atomically, while requests in flight
//! keep the `Arc` of the runtime they started with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use medgate_audit::AuditLog;
use medgate_core::config::ServerConfig;
use medgate_core::{Catalog, SourceHandle};
use medgate_pipeline::Pipeline;
use medgate_ratelimit::RateLimiter;
use tokio_util::task::TaskTracker;

use crate::access::Access;
use crate::problem::ApiError;

/// What one config builds.
pub struct Runtime {
    /// Sources and exporters.
    pub catalog: Catalog,
    /// The data path every route takes: fetch-many → transforms (time zones, code maps) →
    /// output. Built with this config's code maps, so a reload swaps them atomically too.
    pub pipeline: Pipeline,
    /// `[server]`.
    pub server: ServerConfig,
    /// Partners.
    pub access: Access,
    /// Downloads streaming at once (`[server].max_concurrent_exports`); each holds a permit
    /// until its last byte is sent.
    pub exports: Arc<tokio::sync::Semaphore>,
    /// The bearer token that opens `/metrics` on the API listener (`metrics_token_env`).
    pub metrics_token: Option<String>,
    /// `[ingest]`.
    pub ingest: medgate_core::config::IngestConfig,
    /// `[audit] max_rejected_patient_ids`.
    pub audit_max_rejected_ids: usize,
    /// What export jobs started now run with (sources, exporters, profiles, cohorts).
    pub jobs: Arc<medgate_exports::Snapshot>,
    /// De-identification profiles.
    pub profiles: medgate_deid::Profiles,
}

impl Runtime {
    /// The source named `name`, or the 404 problem.
    pub fn source(&self, name: &str) -> Result<&SourceHandle, ApiError> {
        self.catalog
            .source(name)
            .ok_or_else(|| ApiError::UnknownSource(name.to_owned()))
    }
}

/// Services that live as long as the process, whatever the config.
pub struct Services {
    /// Partner rate limits.
    pub limiter: Arc<dyn RateLimiter>,
    /// Let requests through when the limiter's backend fails.
    pub fail_open: bool,
    /// The audit trail.
    pub audit: AuditLog,
    /// medgate's own store (pushed reports, outbox, export jobs).
    pub store: medgate_store::Store,
    /// The outbox backlog as last observed (admission control for uploads).
    pub backlog: Arc<crate::backlog::Backlog>,
}

struct Shared {
    runtime: ArcSwap<Runtime>,
    services: Services,
    wake: medgate_alerts::Wake,
    exports: std::sync::OnceLock<medgate_exports::Exports>,
    ready: AtomicBool,
    tasks: TaskTracker,
}

/// What handlers see; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// State over a first runtime.
    pub fn new(runtime: Runtime, services: Services, wake: medgate_alerts::Wake) -> Self {
        AppState(Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            services,
            wake,
            exports: std::sync::OnceLock::new(),
            ready: AtomicBool::new(false),
            tasks: TaskTracker::new(),
        }))
    }

    /// The current runtime; hold it for the whole request.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.0.runtime.load_full()
    }

    /// Swaps in a new runtime (config reload).
    pub fn replace(&self, runtime: Runtime) {
        self.0.runtime.store(Arc::new(runtime));
    }

    /// Export jobs (set once at start-up, after the state exists: their environment reads it).
    ///
    /// # Panics
    /// Before [`AppState::set_exports`]; start-up sets it before serving.
    pub fn exports(&self) -> &medgate_exports::Exports {
        self.0
            .exports
            .get()
            .expect("export jobs are set up before serving")
    }

    /// Sets the export jobs (once).
    pub fn set_exports(&self, exports: medgate_exports::Exports) {
        let _ = self.0.exports.set(exports);
    }

    /// Wakes a report worker (after a report is stored, so its job is claimed at once).
    pub fn wake_workers(&self) {
        self.0.wake.notify();
    }

    /// The outbox backlog.
    pub fn backlog(&self) -> &crate::backlog::Backlog {
        &self.0.services.backlog
    }

    /// Process-wide services.
    pub fn services(&self) -> &Services {
        &self.0.services
    }

    /// Work that outlives its request (a download's exporter task): shutdown waits for it,
    /// so its audit entry is written before the process exits.
    pub fn tasks(&self) -> &TaskTracker {
        &self.0.tasks
    }

    /// Marks the gateway ready (listener up).
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }
}
