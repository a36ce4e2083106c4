//! `GET /v1/alerts`: rule firings and SAE notifications with their delivery state.
//!
//! The payloads name patients, so the route needs the partner's `read_alerts` grant and every
//! listing is audited like any other data access.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::Extension;
use medgate_alerts::{list_alerts, AlertListParams};

use crate::access::Partner;
use crate::audit::Access;
use crate::problem::ApiError;
use crate::routes::RequestId;
use crate::state::AppState;

/// Lists alerts newest first, with their webhook delivery state (dead-lettered ones
/// included).
#[utoipa::path(get, path = "/v1/alerts", tag = "ingest",
    params(AlertListParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of alerts; `next_before_id` pages on", body = medgate_alerts::AlertList),
        (status = 400, description = "Invalid query", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The partner may not read alerts", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    query: Result<Query<AlertListParams>, QueryRejection>,
) -> Response {
    let access = Access::new(&state, &request_id, &partner, "/v1/alerts");
    let result = async {
        if !partner.read_alerts {
            return Err(ApiError::Forbidden(format!(
                "partner {} may not read alerts",
                partner.name
            )));
        }
        let Query(params) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let page = list_alerts(&state.services().store, &params)
            .await
            .map_err(|e| {
                if e.is_client_error() {
                    ApiError::BadRequest(e.to_string())
                } else {
                    tracing::error!(error = %e, "listing alerts failed");
                    ApiError::Core(medgate_core::Error::Internal(
                        "listing alerts failed".into(),
                    ))
                }
            })?;
        let patients: Vec<String> = page
            .alerts
            .iter()
            .filter_map(|a| {
                let payload: serde_json::Value = serde_json::from_str(a.payload.get()).ok()?;
                payload["data"]["patient_id"].as_str().map(str::to_owned)
            })
            .collect();
        let records = page.alerts.len() as u64;
        Ok((
            (StatusCode::OK, axum::Json(page)).into_response(),
            records,
            patients,
        ))
    }
    .await;
    match result {
        Ok((response, records, patients)) => {
            access
                .patients(patients)
                .respond(Ok((response, records)))
                .await
        }
        Err(e) => access.respond(Err(e)).await,
    }
}
