//! Limits checked before routing: request-target and header sizes.
//!
//! hyper refuses oversized requests with an empty `431`; a partner deserves the same
//! `application/problem+json` as for every other error. So hyper's own limits are set well
//! above medgate's ([`MAX_BUF_BYTES`], [`MAX_HEADERS`]) and this layer, first in line,
//! answers `414` / `431` problems at medgate's limits. Requests beyond even hyper's buffer are
//! closed by hyper (see README).

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use crate::problem::problem_response;

/// Longest request target (path and query) accepted, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most bytes of header names and values accepted.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields accepted.
pub const MAX_HEADER_FIELDS: usize = 100;
/// hyper's read buffer: room for a request above medgate's limits, so they are reached first.
pub const MAX_BUF_BYTES: usize = 256 * 1024;
/// hyper's header-count limit, above [`MAX_HEADER_FIELDS`].
pub const MAX_HEADERS: usize = 400;

/// Middleware: 414 for a long target, 431 for large or many headers, as problems.
pub async fn limits(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return refuse(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            format!("the request target is longer than {MAX_URI_BYTES} bytes; send large requests as a POST body (e.g. POST /v1/export)"),
        );
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADER_FIELDS || bytes > MAX_HEADER_BYTES {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            format!(
                "the request headers exceed {MAX_HEADER_FIELDS} fields or {MAX_HEADER_BYTES} bytes"
            ),
        );
    }
    next.run(request).await
}

fn refuse(status: StatusCode, kind: &str, detail: String) -> Response {
    metrics::counter!("medgate_problems_total", "kind" => kind.to_owned()).increment(1);
    let body = json!({
        "type": format!("urn:medgate:problem:{kind}"),
        "title": status.canonical_reason(),
        "status": status.as_u16(),
        "detail": detail,
    });
    problem_response(status, body, None)
}
