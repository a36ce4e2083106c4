//! The one place where errors become HTTP responses: RFC 9457 `application/problem+json`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use medgate_core::Error;
use serde_json::{json, Map, Value};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An error from a source, an exporter or the data path.
    #[error(transparent)]
    Core(#[from] Error),
    /// `{source}` names no configured source.
    #[error("unknown source `{0}`")]
    UnknownSource(String),
    /// `format` is not an enabled export format.
    #[error("unsupported format `{format}`; enabled formats: {}", enabled.join(", "))]
    UnsupportedFormat {
        format: String,
        enabled: Vec<String>,
    },
    /// `profile` names no configured de-identification profile.
    #[error("no profile is named `{name}`; configured profiles: {configured}")]
    UnknownProfile { name: String, configured: String },
    /// A parameter is missing or invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The body's media type is not one the route takes.
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    /// The body is larger than the route takes.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// No or an unknown API key.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The partner may not use this source or format.
    #[error("{0}")]
    Forbidden(String),
    /// Over the partner's rate or concurrency limit.
    #[error("{detail}; retry after {retry_after} s")]
    RateLimited {
        detail: &'static str,
        retry_after: u64,
    },
    /// A pushed body was refused (415, 400 with every bad field, 413).
    #[error("{0}")]
    Ingest(medgate_ingest::IngestError),
    /// An export job request or operation that cannot be done.
    #[error("{0}")]
    Export(medgate_exports::ExportError),
    /// An `Idempotency-Key` reused with a different body.
    #[error("this Idempotency-Key was used before with a different body; nothing was stored")]
    IdempotencyConflict,
    /// The audit trail could not record the access, so the data is not served.
    #[error("the access could not be recorded in the audit trail; no data was served")]
    AuditUnavailable,
    /// No route matches.
    #[error("no such resource; see /openapi.json for the API")]
    NotFound,
    /// Not here, with a pointer to where.
    #[error("{0}")]
    NotFoundDetail(&'static str),
    /// A handler or plugin panicked.
    #[error("an internal error occurred; it has been logged")]
    Panic,
}

impl ApiError {
    /// HTTP status of a core error.
    pub fn status_of(e: &Error) -> StatusCode {
        core_status(e)
    }

    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Core(e) => core_status(e),
            ApiError::UnknownSource(_)
            | ApiError::UnknownProfile { .. }
            | ApiError::NotFound
            | ApiError::NotFoundDetail(_) => StatusCode::NOT_FOUND,
            ApiError::UnsupportedFormat { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Ingest(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::IdempotencyConflict => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Export(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Panic | ApiError::AuditUnavailable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable problem kind, used in the `type` URI and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Core(e) => e.kind(),
            ApiError::UnknownSource(_) => "unknown-source",
            ApiError::UnknownProfile { .. } => "unknown-profile",
            ApiError::UnsupportedFormat { .. } => "unsupported-format",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Ingest(e) => e.kind(),
            ApiError::IdempotencyConflict => "idempotency-key-reused",
            ApiError::Export(e) => e.kind(),
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::NotFound | ApiError::NotFoundDetail(_) => "not-found",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::AuditUnavailable => "audit-unavailable",
            ApiError::Panic => "internal",
        }
    }

    /// The problem document (also embedded per source in fan-out responses).
    pub fn problem(&self) -> Value {
        let status = self.status();
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:medgate:problem:{}", self.kind())),
        );
        body.insert(
            "title".into(),
            json!(status.canonical_reason().unwrap_or("Error")),
        );
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(self.to_string()));
        if let ApiError::UnsupportedFormat { enabled, .. } = self {
            body.insert("formats".into(), json!(enabled));
        }
        if let ApiError::Ingest(e) = self {
            if let medgate_ingest::IngestError::Invalid { issues, truncated } = e {
                body.insert("errors".into(), json!(issues));
                if *truncated > 0 {
                    body.insert("errors_not_listed".into(), json!(truncated));
                }
            }
            if matches!(e, medgate_ingest::IngestError::UnsupportedMediaType) {
                body.insert(
                    "accepted_media_types".into(),
                    json!(medgate_ingest::MediaType::SUPPORTED),
                );
            }
        }
        if let Some(secs) = self.retry_after() {
            body.insert("retry_after_seconds".into(), json!(secs));
        }
        Value::Object(body)
    }
}

/// A JSON body that axum could not take, as the problem a partner can act on: 415 for a
/// wrong content type, 413 for too large, 400 for invalid JSON or a wrong shape.
pub fn json_rejection(rejection: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection as R;
    match rejection {
        R::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("send the body as Content-Type: application/json")
        }
        R::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(e.body_text())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

fn core_status(e: &Error) -> StatusCode {
    match e {
        Error::PatientNotFound { .. } => StatusCode::NOT_FOUND,
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        Error::UpstreamStatus { .. }
        | Error::Unreachable { .. }
        | Error::Malformed { .. }
        | Error::BodyTooLarge { .. } => StatusCode::BAD_GATEWAY,
        Error::Unavailable { .. } | Error::Interrupted(_) | Error::Overloaded { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Export(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("medgate_problems_total", "kind" => self.kind()).increment(1);
        let mut response = problem_response(self.status(), self.problem(), self.retry_after());
        if matches!(self, ApiError::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"medgate\""),
            );
        }
        response
    }
}

impl ApiError {
    /// Seconds for `Retry-After`, when the client should come back later.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Core(
                Error::Unavailable {
                    retry_after: Some(d),
                    ..
                }
                | Error::Overloaded {
                    retry_after: Some(d),
                    ..
                },
            ) => Some(d.as_secs_f64().ceil().max(1.0) as u64),
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A problem+json response with `status` and `body`.
pub fn problem_response(status: StatusCode, body: Value, retry_after: Option<u64>) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
