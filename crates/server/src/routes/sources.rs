//! `GET /v1/sources`

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};

use crate::access::Partner;
use serde::Serialize;

use crate::state::AppState;

/// One configured source.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SourceView {
    /// Name used in URLs.
    name: String,
    /// Plugin kind, e.g. `his-xml`.
    kind: String,
    /// Payload format, e.g. `fhir-r4`.
    format: Option<String>,
    /// Time allowed per upstream attempt.
    timeout_ms: u64,
    /// Circuit breaker state: `closed`, `open` or `half-open`.
    #[schema(value_type = Option<String>)]
    circuit: Option<medgate_core::CircuitState>,
}

/// The list answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SourceList {
    /// Sources in config order.
    sources: Vec<SourceView>,
    /// Enabled export formats.
    formats: Vec<String>,
}

/// Lists the sources the partner may read (with circuit state) and the enabled export formats.
#[utoipa::path(get, path = "/v1/sources", tag = "sources", security(("api_key" = [])),
    responses(
        (status = 200, description = "Configured sources", body = SourceList),
        (status = 401, description = "Missing or unknown API key", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the partner's rate or concurrency limit (see Retry-After)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
) -> Json<SourceList> {
    let runtime = state.runtime();
    let catalog = &runtime.catalog;
    let sources = catalog
        .sources()
        .iter()
        .filter(|s| partner.check_source(&s.info.name).is_ok())
        .map(|s| SourceView {
            name: s.info.name.clone(),
            kind: s.info.kind.clone(),
            format: s.info.format.clone(),
            timeout_ms: s.common.timeout_ms,
            circuit: s.upstream.circuit(),
        })
        .collect();
    let formats = catalog.formats().into_iter().map(String::from).collect();
    Json(SourceList { sources, formats })
}
