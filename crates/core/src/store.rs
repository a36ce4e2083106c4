//! The [`ObservationStore`] port: how a `store` source reads observations pushed into medgate.
//!
//! The store itself (SQLite or PostgreSQL, ingestion, outbox) lives in `medgate-store`; core
//! only names what a source needs from it, so the `store` source kind stays a plugin that
//! depends on core alone, like every other source.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{FetchRequest, ObservationStream, Result};

/// Read access to pushed observations.
///
/// Implementors write both methods.
#[async_trait]
pub trait ObservationStore: Send + Sync + 'static {
    /// The observations of `request.patient_id` pushed to `source`, narrowed by
    /// `request.filter` with the store's indexes (the pipeline applies the filter again, so a
    /// store may return more, never less).
    ///
    /// # Errors
    /// The store is unreachable or a stored record cannot be read.
    async fn observations(&self, source: &str, request: &FetchRequest)
        -> Result<ObservationStream>;

    /// Every patient with observations in `source`, in a stable order (for "all" exports).
    ///
    /// # Errors
    /// The store is unreachable.
    async fn patients(&self, source: &str) -> Result<BoxStream<'static, Result<String>>>;
}
