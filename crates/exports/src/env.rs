//! What export jobs need from the running gateway: one consistent [`Snapshot`] of the current
//! configuration, and a hook for the audit trail ([`ExportEnv`]).
//!
//! A job takes one snapshot when it starts and keeps it to its end, so a SIGHUP in the middle
//! of a job never mixes two configurations in one file; the next job sees the new one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use medgate_core::config::{CohortConfig, ExportsConfig};
use medgate_core::{Catalog, Config, Exporter, ObservationStore, SourceHandle};
use medgate_deid::Profiles;
use medgate_pipeline::Pipeline;

use crate::report::JobReport;

/// The configuration a job runs with: sources, formats, profiles, cohorts, limits.
#[derive(Clone)]
pub struct Snapshot {
    /// Every configured source (the partner's grant is checked at kick-off).
    pub sources: Vec<SourceHandle>,
    /// Every enabled exporter.
    pub exporters: Vec<Arc<dyn Exporter>>,
    /// The shared pipeline (per-source transforms, the gateway's shutdown).
    pub pipeline: Pipeline,
    /// De-identification profiles by name.
    pub profiles: Profiles,
    /// `[[cohorts]]`.
    pub cohorts: Vec<CohortConfig>,
    /// `[exports]`.
    pub exports: ExportsConfig,
    /// Time allowed for each (patient, source) fetch (`[server] request_timeout_ms`).
    pub fetch_budget: Duration,
    /// Fetches in flight at once within one job (`[server] export_concurrency`).
    pub fetch_concurrency: usize,
    /// Most patients an explicit `patients` list may name (`[server] max_export_patients`).
    pub max_patients: usize,
    /// Lists the patients of `store` sources, for `"patients": "all"`; `None` without a
    /// `[store]`.
    pub patient_index: Option<Arc<dyn ObservationStore>>,
}

impl Snapshot {
    /// The snapshot of a built configuration: the catalog's sources and enabled exporters,
    /// `config`'s `[exports]`, `[[cohorts]]` and `[server]` export limits.
    pub fn new(
        catalog: &Catalog,
        pipeline: Pipeline,
        profiles: Profiles,
        config: &Config,
        patient_index: Option<Arc<dyn ObservationStore>>,
    ) -> Snapshot {
        Snapshot {
            sources: catalog.sources().to_vec(),
            exporters: catalog
                .formats()
                .into_iter()
                .filter_map(|f| catalog.exporter(f).cloned())
                .collect(),
            pipeline,
            profiles,
            cohorts: config.cohorts.clone(),
            exports: config.exports.clone(),
            fetch_budget: Duration::from_millis(config.server.request_timeout_ms),
            fetch_concurrency: config.server.export_concurrency.max(1),
            max_patients: config.server.max_export_patients,
            patient_index,
        }
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceHandle> {
        self.sources.iter().find(|s| s.info.name == name)
    }

    /// The enabled exporter for `format`.
    pub fn exporter(&self, format: &str) -> Option<&Arc<dyn Exporter>> {
        self.exporters.iter().find(|e| e.format() == format)
    }

    /// Enabled formats, sorted.
    pub fn formats(&self) -> Vec<&'static str> {
        let mut formats: Vec<_> = self.exporters.iter().map(|e| e.format()).collect();
        formats.sort_unstable();
        formats
    }

    /// The cohort named `name`.
    pub fn cohort(&self, name: &str) -> Option<&CohortConfig> {
        self.cohorts.iter().find(|c| c.name == name)
    }
}

/// The gateway as export jobs see it. The server implements it over its swappable runtime.
///
/// Implementors write [`snapshot`](ExportEnv::snapshot); [`job_ended`](ExportEnv::job_ended)
/// defaults to doing nothing.
#[async_trait]
pub trait ExportEnv: Send + Sync + 'static {
    /// The configuration in force now (after the latest reload).
    fn snapshot(&self) -> Arc<Snapshot>;

    /// A job this gateway ran has ended (completed, failed, or cancelled while it ran): the
    /// server writes the audit entry from `report`. Called once per job and attempt that
    /// reached an end here; not called for a job interrupted by shutdown (it is resumed).
    async fn job_ended(&self, report: &JobReport) {
        let _ = report;
    }
}
