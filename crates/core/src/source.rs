//! The [`DataSource`] trait: where observations come from.

use std::time::Instant;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{Observation, Result};

/// Observations as they are produced; an `Err` item ends the stream.
pub type ObservationStream = BoxStream<'static, Result<Observation>>;

/// One fetch for one patient.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The patient's id in the source's own namespace.
    pub patient_id: String,
    /// Correlates logs and is forwarded upstream as `X-Request-Id`.
    pub request_id: String,
    /// The caller's overall deadline; sources must not work past it.
    pub deadline: Option<Instant>,
}

impl FetchRequest {
    /// A request with no deadline.
    pub fn new(patient_id: impl Into<String>, request_id: impl Into<String>) -> Self {
        FetchRequest {
            patient_id: patient_id.into(),
            request_id: request_id.into(),
            deadline: None,
        }
    }
}

/// A configured place observations come from: a hospital system, a wearable cloud, a store.
///
/// Implementors write **one** method, [`fetch`](DataSource::fetch); [`health_check`](DataSource::health_check)
/// has a default. Name, kind and format are kept by the registry, not by the source.
#[async_trait]
pub trait DataSource: Send + Sync + 'static {
    /// Fetches one patient's observations as a stream.
    ///
    /// # Errors
    /// Errors that are known before the first observation (patient unknown, upstream down,
    /// timeout) are returned here; a payload that turns out malformed midway ends the stream
    /// with an `Err` item.
    async fn fetch(&self, request: &FetchRequest) -> Result<ObservationStream>;

    /// Checks that the source can serve at all. Defaults to healthy.
    ///
    /// # Errors
    /// The reason the source cannot serve.
    async fn health_check(&self) -> Result<()> {
        Ok(())
    }
}
