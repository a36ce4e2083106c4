//! medgate-core: the contracts every other medgate crate is written against.
//!
//! - [`model`]: the record, a typed lossless subset of the FHIR R4 Observation that every
//!   source produces and every exporter consumes; [`Decimal`] and [`DateTime`] keep numbers
//!   and times exactly as written.
//! - [`row`]: the one tabular projection ([`Row`]) that CSV, Excel and the flat JSON API write.
//! - [`fhir`]: the record as FHIR R4 JSON.
//! - [`source`]: the [`DataSource`] trait (one required method) and the stream it returns.
//! - [`export`]: the [`Exporter`] trait, a streaming sink over that stream.
//! - [`store`]: the [`ObservationStore`] port through which `store` sources read pushed data.
//! - [`upstream`]: the [`Upstream`] port through which sources reach their HTTP upstream; the
//!   implementation (timeouts, body caps, retries, breakers) lives in `medgate-upstream`, so
//!   protection is written once and not per plugin.
//! - [`config`]: the typed TOML config and its pure validation.
//! - [`registry`]: plugin kinds and formats, and the [`Catalog`] built from the config that the
//!   server dispatches every request through.
//! - [`error`]: the one error enum, each variant classified so the server can map it to HTTP.
//!
//! Design decision: this crate knows nothing of axum or of any HTTP library. Data flows as
//! `Stream<Item = Result<Observation>>`, so nothing here assumes a result fits in memory.

pub mod bounds;
pub mod config;
pub mod datetime;
pub mod decimal;
pub mod error;
pub mod export;
pub mod fhir;
pub mod model;
pub mod registry;
pub mod row;
pub mod source;
pub mod store;
pub mod upstream;

pub use config::{Config, ConfigIssue, ConfigIssues, SourceCommon};
pub use datetime::{DateTime, Precision, Zone};
pub use decimal::Decimal;
pub use error::{Error, ErrorClass, Result};
pub use export::{ExportSummary, Exporter};
pub use model::{
    CodeableConcept, Coding, Comparator, Component, Effective, Observation, Period, Quantity,
    Range, Ratio, Reference, ReferenceRange, Status, Value, Warning,
};
pub use registry::{BuildContext, Catalog, Registry, SourceConfig, SourceHandle, SourceInfo};
pub use row::{rows, Cell, Row, COLUMNS};
pub use source::{CodeFilter, DataSource, FetchRequest, Filter, ObservationStream};
pub use store::ObservationStore;
pub use upstream::{CircuitState, Upstream, UpstreamBody};
