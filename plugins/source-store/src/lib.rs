//! Store source, kind `store`: serves the observations partners pushed into medgate.
//!
//! `POST /v1/ingest/{source}` writes reports into medgate's own store (`[store]`, crate
//! `medgate-store`); this source reads them back through the
//! [`ObservationStore`] port the server puts in the
//! [`BuildContext`], so `/v1/data`, the fan-out, FHIR output and every exporter work on
//! pushed data unchanged. The store narrows by patient, time and code with its indexes.
//!
//! The entry has no keys of its own:
//! ```toml
//! [[sources]]
//! name = "epro"
//! kind = "store"
//! ```
//! Building fails, naming the source, when no `[store]` is configured.
//!
//! Design decision: this crate depends on core only, like every plugin; the store is reached
//! through the port, not through `medgate-store`.

use std::sync::Arc;

use async_trait::async_trait;
use medgate_core::registry::SourceConfig;
use medgate_core::{
    BuildContext, DataSource, Error, FetchRequest, ObservationStore, ObservationStream, Registry,
    Result,
};

/// The source kind this crate registers.
pub const KIND: &str = "store";

/// Registers the `store` source kind.
pub fn register(registry: &mut Registry) {
    registry.add_source_kind::<StoreSourceConfig>(KIND);
}

/// The keys of a `kind = "store"` entry beyond the common ones: none.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSourceConfig {}

impl SourceConfig for StoreSourceConfig {
    fn build(&self, ctx: BuildContext) -> Result<Arc<dyn DataSource>> {
        let store = ctx.store.ok_or_else(|| {
            Error::Internal(format!(
                "source {} is of kind `store` but no [store] is configured; add \
                 [store] url = \"sqlite://data/medgate.db\" (or postgres://…)",
                ctx.source_name
            ))
        })?;
        Ok(Arc::new(StoreSource {
            name: ctx.source_name,
            store,
        }))
    }
}

/// Reads one source's pushed observations from the store.
pub struct StoreSource {
    name: String,
    store: Arc<dyn ObservationStore>,
}

impl StoreSource {
    /// A source named `name` over `store` (tools and tests; the registry builds it from
    /// config).
    pub fn new(name: impl Into<String>, store: Arc<dyn ObservationStore>) -> Self {
        StoreSource {
            name: name.into(),
            store,
        }
    }
}

#[async_trait]
impl DataSource for StoreSource {
    /// A patient with nothing stored gets an empty stream (pushed data has no upstream that
    /// could say "unknown patient").
    async fn fetch(&self, request: &FetchRequest) -> Result<ObservationStream> {
        self.store.observations(&self.name, request).await
    }
}
