//! The [`Upstream`] port: how a source reaches its remote system.
//!
//! Sources never build HTTP clients of their own. The server hands each one an `Upstream`
//! bound to that source's policy (timeouts, body cap, later retries and breakers), implemented
//! once in `medgate-upstream`. This keeps core free of any HTTP library.

use async_trait::async_trait;
use bytes::Bytes;

use crate::{FetchRequest, Result};

/// A whole upstream response body, already bounded by the source's size cap.
#[derive(Debug, Clone)]
pub struct UpstreamBody {
    /// The body bytes.
    pub bytes: Bytes,
    /// The upstream's `Content-Type`, if any.
    pub content_type: Option<String>,
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    /// Calls flow; failures are counted.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// One trial call decides between closed and open.
    HalfOpen,
}

/// A policy-bound HTTP client for one source.
///
/// Implementors write [`get`](Upstream::get); [`circuit`](Upstream::circuit) defaults to none.
#[async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// The circuit breaker's state, if this upstream has one.
    fn circuit(&self) -> Option<CircuitState> {
        None
    }

    /// GETs `url` on behalf of `request`.
    ///
    /// # Errors
    /// Upstream 404 is [`Error::PatientNotFound`](crate::Error::PatientNotFound); other
    /// non-2xx statuses, connection failures, timeouts and oversized bodies map to their
    /// [`Error`](crate::Error) variants, all naming the source.
    async fn get(&self, url: &str, request: &FetchRequest) -> Result<UpstreamBody>;
}
