//! medgate: the gateway binary's library — HTTP API, start-up and the plugin list.
//!
//! - [`registry`]: the one visible list of plugins compiled into this binary.
//! - [`startup`]: load → validate (what `medgate check` runs) → start demo upstreams → build
//!   the catalog → serve with graceful shutdown.
//! - [`routes`]: the axum handlers; they dispatch through the catalog and never name a concrete
//!   source or exporter type. [`routes::app`] is what tests drive.
//! - [`problem`]: the one place errors become `application/problem+json` responses.
//! - [`fetch`]: calling plugins safely (panics become 500s, not crashes).
//!
//! Invariant: no patient identifier is written to application logs; spans carry the matched
//! route, never the raw URI.

pub mod access;
pub mod audit;
pub mod backlog;
pub mod budget;
pub mod deid;
pub mod edge;
pub mod fetch;
pub mod guard;
pub mod listen;
pub mod observe;
pub mod problem;
pub mod researcher;
pub mod routes;
pub mod startup;
pub mod state;

pub use routes::app;
pub use state::AppState;

/// Every plugin this binary knows. Adding a source kind or an export format is one line here.
pub fn registry() -> medgate_core::Registry {
    let mut registry = medgate_core::Registry::new();
    medgate_source_his::register(&mut registry);
    medgate_source_wearable::register(&mut registry);
    medgate_export_csv::register(&mut registry);
    medgate_export_json::register(&mut registry);
    medgate_export_xlsx::register(&mut registry);
    medgate_export_parquet::register(&mut registry);
    medgate_export_fhir_ndjson::register(&mut registry);
    medgate_source_store::register(&mut registry);
    registry
}
