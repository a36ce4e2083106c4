//! The HTTP API: [`app`] builds the router every test and the binary use.

mod alerts;
mod data;
mod export;
pub mod fhir;
mod ingest;
pub mod jobs;
pub mod openapi;
mod request_id;
mod sources;

use std::any::Any;

use axum::extract::MatchedPath;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::problem::ApiError;
use crate::state::AppState;

pub use request_id::RequestId;

/// The medgate router over `state`.
///
/// Layers, outermost first: request id → trace span → panic guard → HTTP metrics; `/v1/*`
/// routes additionally pass the partner guard (auth, rate limit, concurrency cap).
pub fn app(state: AppState) -> Router {
    // Install the recorder before the first request records anything.
    crate::observe::prometheus();
    let v1 = Router::new()
        .route("/v1/sources", get(sources::list))
        .route("/v1/data/{source}", get(data::one_source))
        .route(
            "/v1/patients/{patient_id}/observations",
            get(data::all_sources),
        )
        .route(
            "/v1/export",
            get(export::download).post(export::download_post),
        )
        .route("/v1/ingest/{source}", axum::routing::post(ingest::upload))
        .route("/v1/ingest/{source}/receipts/{id}", get(ingest::receipt))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/exports", axum::routing::post(jobs::kick_off))
        .route("/v1/exports/{id}", get(jobs::status).delete(jobs::delete))
        .route("/v1/exports/{id}/files/{n}", get(jobs::file))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::guard::partner_guard,
        ));
    let fhir_guarded = Router::new()
        .route("/fhir/Observation", get(fhir::search))
        .route("/fhir/Patient/$export", get(jobs::patient_export))
        .route("/fhir/Group/{cohort}/$export", get(jobs::group_export))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::guard::partner_guard,
        ));
    let fhir = Router::new()
        .merge(fhir_guarded)
        .route("/fhir/metadata", get(fhir::metadata))
        .layer(middleware::from_fn(fhir::fhir_errors));
    Router::new()
        .merge(v1)
        .merge(fhir)
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(crate::observe::render_with_token))
        .route("/healthz", get(crate::observe::healthz))
        .route("/readyz", get(crate::observe::readyz))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
        .layer(middleware::from_fn(crate::observe::http_metrics))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(middleware::from_fn(request_id::assign))
        .layer(middleware::from_fn(crate::edge::limits))
}

/// The operators' router (`[server] ops_listen`): health, readiness and metrics, open.
pub fn ops_app(state: AppState) -> Router {
    crate::observe::prometheus();
    Router::new()
        .route("/metrics", get(crate::observe::render))
        .route("/healthz", get(crate::observe::healthz))
        .route("/readyz", get(crate::observe::readyz))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
        .layer(middleware::from_fn(crate::edge::limits))
}

/// The request's span: method, matched route (never the raw URI, which may hold a patient id)
/// and request id.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    let id = request
        .extensions()
        .get::<RequestId>()
        .map_or("", |r| r.as_str());
    tracing::info_span!("request", method = %request.method(), route, request_id = id)
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    metrics::counter!("medgate_panics_total").increment(1);
    ApiError::Panic.into_response()
}
