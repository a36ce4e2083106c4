//! Operations endpoints and HTTP metrics: `/metrics` (Prometheus), `/healthz`, `/readyz`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Latency buckets in seconds: 1 ms to 30 s.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed (then that one receives the metrics).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Middleware: requests, latency and in-flight gauge by route template and status.
pub async fn http_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let in_flight = metrics::gauge!("medgate_http_requests_in_flight", "route" => route.clone());
    in_flight.increment(1.0);
    let response = next.run(request).await;
    in_flight.decrement(1.0);
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("status", status)];
    metrics::counter!("medgate_http_requests_total", &labels).increment(1);
    metrics::histogram!("medgate_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics` on the API listener: only with the bearer token of
/// `[server] metrics_token_env` (the metrics name every source and partner); otherwise 404
/// pointing at the operators' listener.
pub async fn render_with_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::access::bearer_token);
    match (&runtime.metrics_token, presented) {
        (Some(expected), Some(token)) if crate::access::same_secret(expected, token) => {
            render(State(state.clone())).await
        }
        (Some(_), _) => crate::problem::ApiError::Unauthorized(
            "/metrics on this listener needs the metrics bearer token",
        )
        .into_response(),
        (None, _) => crate::problem::ApiError::NotFoundDetail(
            "metrics are served on the operators' listener ([server] ops_listen), or here with [server] metrics_token_env",
        )
        .into_response(),
    }
}

/// `GET /metrics`
pub async fn render(State(state): State<AppState>) -> Response {
    for s in state.runtime().catalog.sources() {
        if let Some(circuit) = s.upstream.circuit() {
            let value = match circuit {
                medgate_core::CircuitState::Closed => 0.0,
                medgate_core::CircuitState::HalfOpen => 1.0,
                medgate_core::CircuitState::Open => 2.0,
            };
            metrics::gauge!("medgate_breaker_state", "source" => s.info.name.clone()).set(value);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: config loaded and listener up.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        let runtime = state.runtime();
        let backlog = state.backlog().view();
        Json(serde_json::json!({
            "status": "ready",
            "sources": runtime.catalog.sources().len(),
            "ingest": {
                "depth": backlog.depth,
                "capacity": runtime.ingest.queue_capacity,
                "high_water": runtime.ingest.high_water,
                "drain_per_second": backlog.drain_per_second,
                "oldest_job_age_seconds": backlog.oldest_job_age_seconds,
                "dead": backlog.dead,
            },
        }))
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "starting"})),
        )
            .into_response()
    }
}
