//! [`ExportError`]: the crate's one error enum, classified for the HTTP layer.
//!
//! Messages say what to change ("give either patients or cohort, not both") and name
//! sources, formats, profiles, cohorts and positions in the request, never a patient id.

use medgate_store::StoreError;

/// What can go wrong kicking off, inspecting or running an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The request is malformed or contradicts the configuration (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The partner may not do this: a source or format outside its grant, a profile other
    /// than the one forced on it (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// No such job, file, source, cohort or profile — or the job belongs to another
    /// partner (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The job exists but is not complete, so it has no files yet (HTTP 409).
    #[error("{0}")]
    NotReady(String),
    /// The file was removed (expired, or lost from the exports directory) (HTTP 410).
    #[error("{0}")]
    Gone(String),
    /// The store is unreachable or busy; try again (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an I/O failure on the gateway's side (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

impl ExportError {
    /// The HTTP status the server should answer with.
    pub fn status(&self) -> u16 {
        match self {
            ExportError::Invalid(_) => 400,
            ExportError::Forbidden(_) => 403,
            ExportError::NotFound(_) => 404,
            ExportError::NotReady(_) => 409,
            ExportError::Gone(_) => 410,
            ExportError::Unavailable(_) => 503,
            ExportError::Internal(_) => 500,
        }
    }

    /// A short stable name (`invalid`, `forbidden`, …) for problem types and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ExportError::Invalid(_) => "invalid",
            ExportError::Forbidden(_) => "forbidden",
            ExportError::NotFound(_) => "not-found",
            ExportError::NotReady(_) => "not-ready",
            ExportError::Gone(_) => "gone",
            ExportError::Unavailable(_) => "unavailable",
            ExportError::Internal(_) => "internal",
        }
    }

    pub(crate) fn io(what: &str, e: std::io::Error) -> ExportError {
        // io::Error's text names no path here: paths are never put into it by this crate.
        ExportError::Internal(format!("{what}: {e}"))
    }
}

impl From<StoreError> for ExportError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, .. } => ExportError::NotFound(format!("{what} not found")),
            e if e.is_transient() => ExportError::Unavailable(e.to_string()),
            other => ExportError::Internal(other.to_string()),
        }
    }
}

impl From<medgate_core::Error> for ExportError {
    fn from(e: medgate_core::Error) -> Self {
        match e {
            medgate_core::Error::BadRequest(m) => ExportError::Invalid(m),
            medgate_core::Error::Unavailable { .. } | medgate_core::Error::Overloaded { .. } => {
                ExportError::Unavailable(e.to_string())
            }
            other => ExportError::Internal(other.to_string()),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ExportError> = std::result::Result<T, E>;
