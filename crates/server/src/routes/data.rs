//! `GET /v1/data/{source}` and `GET /v1/patients/{patient_id}/observations`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::future::join_all;
use medgate_core::{Error, FetchRequest, Observation, SourceHandle};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::access::Partner;
use crate::audit::Access;
use crate::fetch::{collect, validate_patient_id};
use crate::problem::{problem_response, ApiError};
use crate::routes::RequestId;
use crate::state::AppState;

/// Query of `/v1/data/{source}`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct DataQuery {
    /// The patient's id in the source (1-128 of A-Z a-z 0-9 - . _ : @ ~).
    patient_id: Option<String>,
}

#[derive(Serialize)]
struct OneSource<'a> {
    source: &'a str,
    patient_id: &'a str,
    observations: &'a [Observation],
}

/// One patient's observations from one source.
#[utoipa::path(get, path = "/v1/data/{source}", tag = "data",
    params(("source" = String, Path, description = "Configured source name"), DataQuery,
        ("Request-Timeout" = Option<String>, Header, description = "Shorter time budget, e.g. 1500ms or 2s (capped by config)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Normalized observations", body = crate::routes::openapi::SourceData),
        (status = 400, description = "Missing or invalid patient_id", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The partner may not read this source", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown source, or patient not found in the source", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the partner's rate limit (see Retry-After)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Upstream failed or sent a malformed payload", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Source unavailable: circuit open or too many calls (see Retry-After)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 504, description = "Upstream timed out", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn one_source(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DataQuery>, QueryRejection>,
) -> Response {
    let mut access = Access::new(&state, &request_id, &partner, "/v1/data/{source}");
    if let Ok(Path(source)) = &path {
        access = access.source(source);
    }
    if let Ok(Query(DataQuery {
        patient_id: Some(id),
    })) = &query
    {
        access = access.patients(vec![id.clone()]);
    }
    let result = async {
        let Path(source) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let runtime = state.runtime();
        let handle = runtime.source(&source)?;
        partner.check_source(&source)?;
        let patient_id = query
            .patient_id
            .ok_or_else(|| ApiError::BadRequest("query parameter patient_id is required".into()))?;
        validate_patient_id(&patient_id)?;
        let deadline = crate::budget::deadline(&headers, &runtime.server)?;
        let request = FetchRequest {
            patient_id,
            request_id: request_id.as_str().to_owned(),
            deadline: Some(deadline),
        };
        let observations = collect_by(handle, &request, deadline).await?;
        let body = OneSource {
            source: &handle.info.name,
            patient_id: &request.patient_id,
            observations: &observations,
        };
        Ok((
            json_response(StatusCode::OK, &body),
            observations.len() as u64,
        ))
    }
    .await;
    access.respond(result).await
}

/// Collects, ending at `deadline` even if a plugin ignores it.
async fn collect_by(
    handle: &SourceHandle,
    request: &FetchRequest,
    deadline: Instant,
) -> Result<Vec<Observation>, Error> {
    match tokio::time::timeout_at(deadline.into(), collect(handle, request)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            name: handle.info.name.clone(),
            after: deadline.saturating_duration_since(Instant::now()),
        }),
    }
}

#[derive(Serialize)]
struct SourceStatus {
    source: String,
    status: &'static str,
    observations: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

#[derive(Serialize)]
struct AllSources<'a> {
    patient_id: &'a str,
    sources: Vec<SourceStatus>,
    observations: Vec<Observation>,
}

/// One patient's observations from every source the partner may read, fetched concurrently.
#[utoipa::path(get, path = "/v1/patients/{patient_id}/observations", tag = "data",
    params(("patient_id" = String, Path, description = "The patient's id"),
        ("Request-Timeout" = Option<String>, Header, description = "Shorter time budget, e.g. 1500ms or 2s (capped by config)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Observations from every source that answered within the budget, with each source's status; a failing source gives partial results", body = crate::routes::openapi::PatientData),
        (status = 400, description = "Invalid patient_id", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No source knows the patient", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the partner's rate limit", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Every source failed", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn all_sources(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let mut access = Access::new(
        &state,
        &request_id,
        &partner,
        "/v1/patients/{patient_id}/observations",
    );
    if let Ok(Path(id)) = &path {
        access = access.patients(vec![id.clone()]);
    }
    let result = async {
        let Path(patient_id) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        validate_patient_id(&patient_id)?;
        let runtime = state.runtime();
        let deadline = crate::budget::deadline(&headers, &runtime.server)?;
        let request = FetchRequest {
            patient_id,
            request_id: request_id.as_str().to_owned(),
            deadline: Some(deadline),
        };
        let readable: Vec<&SourceHandle> = runtime
            .catalog
            .sources()
            .iter()
            .filter(|h| partner.check_source(&h.info.name).is_ok())
            .collect();
        let results = join_all(readable.iter().map(|h| collect_by(h, &request, deadline))).await;
        Ok(merge(&request.patient_id, &readable, results))
    }
    .await;
    access.respond(result).await
}

/// Builds the fan-out answer: 200 with partial results unless every source failed.
fn merge(
    patient_id: &str,
    handles: &[&SourceHandle],
    results: Vec<Result<Vec<Observation>, Error>>,
) -> (Response, u64) {
    let mut sources = Vec::with_capacity(results.len());
    let mut observations = Vec::new();
    let mut errors = Vec::new();
    for (handle, result) in handles.iter().zip(results) {
        let name = handle.info.name.clone();
        match result {
            Ok(rows) => {
                sources.push(SourceStatus {
                    source: name,
                    status: "ok",
                    observations: rows.len(),
                    error: None,
                });
                observations.extend(rows);
            }
            Err(e) => {
                let e = ApiError::from(e);
                sources.push(SourceStatus {
                    source: name,
                    status: "error",
                    observations: 0,
                    error: Some(e.problem()),
                });
                errors.push(e);
            }
        }
    }
    if errors.len() == sources.len() {
        return (all_failed(&errors, &sources), 0);
    }
    let records = observations.len() as u64;
    let body = AllSources {
        patient_id,
        sources,
        observations,
    };
    (json_response(StatusCode::OK, &body), records)
}

/// Every source failed: 404 when none knows the patient, else 502, with each source's status.
fn all_failed(errors: &[ApiError], sources: &[SourceStatus]) -> Response {
    let not_found =
        !errors.is_empty() && errors.iter().all(|e| e.status() == StatusCode::NOT_FOUND);
    let (status, kind, detail) = if not_found {
        (
            StatusCode::NOT_FOUND,
            "patient-not-found",
            "patient not found in any source",
        )
    } else if errors.is_empty() {
        (
            StatusCode::FORBIDDEN,
            "forbidden",
            "the partner may not read any source",
        )
    } else {
        (
            StatusCode::BAD_GATEWAY,
            "all-sources-failed",
            "every source failed; see sources for each one's error",
        )
    };
    let body = serde_json::json!({
        "type": format!("urn:medgate:problem:{kind}"),
        "title": status.canonical_reason(),
        "status": status.as_u16(),
        "detail": detail,
        "sources": sources,
    });
    problem_response(status, body, None)
}

/// Serializes `body` straight into the response buffer.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => ApiError::Core(Error::Internal(format!(
            "serializing the response failed: {e}"
        )))
        .into_response(),
    }
}
