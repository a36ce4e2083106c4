//! [`AlertsError`]: the one error enum of the crate.
//!
//! Messages never carry a patient identifier, a stored value, a webhook secret or a
//! response body (which may echo the payload): only names, counts and HTTP statuses.

use medgate_store::StoreError;

/// What can go wrong in background processing or the alert listing.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The store failed (the caller may retry [`StoreError::is_transient`] ones).
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A query the caller sent is wrong (`GET /v1/alerts?state=…`): a client error (400).
    #[error("{0}")]
    BadQuery(String),
}

impl AlertsError {
    /// Whether the caller sent something wrong (HTTP 400) rather than the store failing.
    pub fn is_client_error(&self) -> bool {
        matches!(self, AlertsError::BadQuery(_))
    }
}
