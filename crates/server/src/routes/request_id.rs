//! `X-Request-Id`: accepted when well-formed, generated otherwise, returned on every response.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

const HEADER: &str = "x-request-id";

/// The current request's id.
#[derive(Debug, Clone)]
pub struct RequestId(String);

impl RequestId {
    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(generate))
    }
}

/// Middleware: accept or generate the id, expose it to handlers and logs, echo it back.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
        .map(|v| RequestId(v.to_owned()))
        .unwrap_or_else(generate);
    let value = HeaderValue::from_str(&id.0).ok();
    request.extensions_mut().insert(id);
    let mut response = next.run(request).await;
    if let Some(value) = value {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// Up to 128 visible ASCII characters: safe to log and to forward.
fn well_formed(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn generate() -> RequestId {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 40)
    });
    RequestId(format!(
        "{prefix:016x}-{:08x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}
