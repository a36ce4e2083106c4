//! The one error enum of medgate's data path.
//!
//! Every variant says whose fault it is ([`ErrorClass`]); the server turns errors into HTTP
//! responses in exactly one place. Messages are written for a partner to act on and never
//! contain a patient identifier (the caller knows which patient it asked for).

use std::time::Duration;

/// Result alias for the data path.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The caller sent something wrong (4xx).
    Client,
    /// An upstream system failed or is unavailable (5xx at the gateway, not its own fault).
    Upstream,
    /// medgate itself failed (500).
    Internal,
}

/// What can go wrong between a request and its answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The upstream does not know the patient (its 404). `name` is always the source name.
    #[error("patient not found in source {name}")]
    PatientNotFound { name: String },

    /// The upstream did not answer within the time allowed.
    #[error("source {name} did not answer within {} ms", after.as_millis())]
    Timeout { name: String, after: Duration },

    /// The upstream answered with an unexpected HTTP status.
    #[error("source {name} answered HTTP {status}")]
    UpstreamStatus { name: String, status: u16 },

    /// The upstream could not be reached.
    #[error("source {name} is unreachable: {detail}")]
    Unreachable { name: String, detail: String },

    /// The upstream's payload could not be understood.
    #[error("source {name} sent a malformed payload: {detail}")]
    Malformed { name: String, detail: String },

    /// The upstream's body was larger than the source allows.
    #[error("source {name} sent more than {limit} bytes")]
    BodyTooLarge { name: String, limit: u64 },

    /// The source refuses calls for now (open circuit breaker or full bulkhead).
    #[error("source {name} is unavailable: {reason}")]
    Unavailable {
        name: String,
        reason: String,
        retry_after: Option<Duration>,
    },

    /// The request itself is invalid (bad patient id, bad parameter).
    #[error("{0}")]
    BadRequest(String),

    /// Writing an export failed (the client went away, the disk is full).
    #[error("export failed: {0}")]
    Export(String),

    /// A bug or a panic inside medgate or a plugin.
    #[error("internal error: {0}")]
    Internal(String),

    /// The gateway itself is out of a resource (file descriptors, memory budget, queue
    /// room): not the upstream's fault, not counted against any source; retry later.
    #[error("the gateway is overloaded: {reason}")]
    Overloaded {
        reason: String,
        retry_after: Option<Duration>,
    },

    /// The work was stopped before it finished (the gateway is shutting down, or the job was
    /// cancelled); what was produced before is valid but incomplete.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl Error {
    /// Whose fault this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::PatientNotFound { .. } | Error::BadRequest(_) => ErrorClass::Client,
            Error::Timeout { .. }
            | Error::UpstreamStatus { .. }
            | Error::Unreachable { .. }
            | Error::Malformed { .. }
            | Error::BodyTooLarge { .. }
            | Error::Unavailable { .. } => ErrorClass::Upstream,
            Error::Export(_)
            | Error::Internal(_)
            | Error::Interrupted(_)
            | Error::Overloaded { .. } => ErrorClass::Internal,
        }
    }

    /// A short stable name for metrics and problem `type`s, e.g. `timeout`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::PatientNotFound { .. } => "patient-not-found",
            Error::Timeout { .. } => "timeout",
            Error::UpstreamStatus { .. } => "upstream-status",
            Error::Unreachable { .. } => "unreachable",
            Error::Malformed { .. } => "malformed-payload",
            Error::BodyTooLarge { .. } => "body-too-large",
            Error::Unavailable { .. } => "unavailable",
            Error::BadRequest(_) => "bad-request",
            Error::Export(_) => "export-failed",
            Error::Internal(_) => "internal",
            Error::Interrupted(_) => "interrupted",
            Error::Overloaded { .. } => "overloaded",
        }
    }

    /// Shorthand for a payload error of `source`.
    pub fn malformed(source: &str, detail: impl Into<String>) -> Error {
        Error::Malformed {
            name: source.to_owned(),
            detail: detail.into(),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Export(e.to_string())
    }
}
