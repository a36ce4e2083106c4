//! The time budget of a request: `Request-Timeout` from the partner, capped by config.

use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use medgate_core::config::ServerConfig;

use crate::problem::ApiError;

/// The header a partner uses to ask for a shorter budget: `1500`, `1500ms` or `2s`.
pub const HEADER: &str = "request-timeout";

/// The instant by which the request must be answered.
///
/// # Errors
/// 400 when the header is not a duration.
pub fn deadline(headers: &HeaderMap, server: &ServerConfig) -> Result<Instant, ApiError> {
    let cap = Duration::from_millis(server.max_request_timeout_ms);
    let budget = match headers.get(HEADER) {
        None => Duration::from_millis(server.request_timeout_ms),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(parse)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "Request-Timeout must be a positive duration such as 1500, 1500ms or 2s".into(),
                )
            })?
            .min(cap),
    };
    Ok(Instant::now() + budget)
}

fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.trim().parse().ok().map(Duration::from_millis);
    }
    if let Some(s) = text.strip_suffix('s') {
        return s.trim().parse::<u64>().ok().map(Duration::from_secs);
    }
    text.parse().ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("-1"), None);
    }
}
