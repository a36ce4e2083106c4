//! `GET /v1/data/{source}` and `GET /v1/patients/{patient_id}/observations`.
//!
//! Both run the shared pipeline (time zones, code maps) and answer the flat JSON shape by
//! default — one object per row of the tabular projection, the ten original keys first — or a
//! FHIR R4 searchset Bundle when the partner asks for `application/fhir+json` (`Accept` header
//! or `?_format=fhir+json`).

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use medgate_core::{Error, Filter, Observation, SourceHandle, Warning};
use medgate_pipeline::{Request, Summary};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::access::Partner;
use crate::audit::Access;
use crate::fetch::validate_patient_id;
use crate::problem::{problem_response, ApiError};
use crate::routes::fhir::{self, Representation};
use crate::routes::RequestId;
use crate::state::{AppState, Runtime};

/// Query of `/v1/data/{source}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DataQuery {
    /// The patient's id in the source (1-128 of A-Z a-z 0-9 - . _ : @ ~).
    patient_id: Option<String>,
    /// `fhir+json` for a FHIR R4 Bundle (same as `Accept: application/fhir+json`), `json`
    /// for the flat shape (the default).
    #[serde(rename = "_format")]
    #[param(rename = "_format")]
    format: Option<String>,
}

/// Query of `/v1/patients/{patient_id}/observations`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FanOutQuery {
    /// `fhir+json` for a FHIR R4 Bundle, `json` for the flat shape (the default).
    #[serde(rename = "_format")]
    #[param(rename = "_format")]
    format: Option<String>,
}

/// Observations as flat rows (a panel's components are rows of their own).
pub(crate) struct FlatRows<'a>(pub &'a [Observation]);

impl Serialize for FlatRows<'_> {
    /// The rows' JSON array is written by [`Row::write_json`](medgate_core::Row::write_json)
    /// (constant keys, no serializer calls per cell) and handed to serde_json as a raw value,
    /// which it copies verbatim: the same bytes serializing each row would give, a third of
    /// the work. Only serde_json knows the raw-value name; this type is only ever written
    /// by [`json_response`].
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        /// serde_json writes a struct of this name, with one string field of this name,
        /// verbatim (it is how `serde_json::value::RawValue` serializes itself).
        const RAW_JSON: &str = "$serde_json::private::RawValue";
        // A flat row of the FHIR workload is about 400 bytes.
        let mut json = String::with_capacity(64 + self.0.len() * 512);
        json.push('[');
        for o in self.0 {
            for row in medgate_core::rows(o) {
                if json.len() > 1 {
                    json.push(',');
                }
                row.write_json(&mut json);
            }
        }
        json.push(']');
        let mut raw = s.serialize_struct(RAW_JSON, 1)?;
        raw.serialize_field(RAW_JSON, json.as_str())?;
        raw.end()
    }
}

/// Data-quality warnings of an answer: how many, and the first few with their positions.
#[derive(Serialize)]
pub(crate) struct Warnings<'a> {
    count: u64,
    first: &'a [Warning],
}

#[derive(Serialize)]
struct OneSource<'a> {
    source: &'a str,
    patient_id: &'a str,
    observations: FlatRows<'a>,
    warnings: Warnings<'a>,
}

/// One patient's observations from one source.
#[utoipa::path(get, path = "/v1/data/{source}", tag = "data",
    params(("source" = String, Path, description = "Configured source name"), DataQuery,
        ("Request-Timeout" = Option<String>, Header, description = "Shorter time budget, e.g. 1500ms or 2s (capped by config)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Normalized observations (flat rows), or a FHIR R4 searchset Bundle for application/fhir+json", 
            content((crate::routes::openapi::SourceData = "application/json"), (crate::routes::openapi::FhirBundle = "application/fhir+json"))),
        (status = 400, description = "Missing or invalid patient_id or _format", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The partner may not read this source", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown source, or patient not found in the source", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the partner's rate limit (see Retry-After)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Upstream failed or sent a payload that is not well-formed", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Source unavailable: circuit open or too many calls (see Retry-After)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 504, description = "Upstream timed out", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn one_source(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DataQuery>, QueryRejection>,
) -> Response {
    let mut access = Access::new(&state, &request_id, &partner, "/v1/data/{source}");
    if let Some(details) = crate::deid::forced_audit_details(&state.runtime(), &partner) {
        access = access.with_details(details);
    }
    if let Ok(Path(source)) = &path {
        access = access.source(source);
    }
    if let Ok(Query(DataQuery {
        patient_id: Some(id),
        ..
    })) = &query
    {
        if validate_patient_id(id).is_ok() {
            access = access.patients(vec![id.clone()]);
        }
    }
    let result = async {
        let Path(source) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let runtime = state.runtime();
        // The grant first: a name outside it is 403 whether or not it exists, so a partner
        // cannot probe which sources are configured.
        partner.check_source(&source)?;
        let handle = runtime.source(&source)?;
        let representation = fhir::representation(&headers, query.format.as_deref())?;
        let patient_id = query
            .patient_id
            .ok_or_else(|| ApiError::BadRequest("query parameter patient_id is required".into()))?;
        validate_patient_id(&patient_id)?;
        let deadline = crate::budget::deadline(&headers, &runtime.server)?;
        let profile = crate::deid::profile_for(&runtime, &partner, None, &Filter::default())?;
        let (observations, summary) = fetch_one_patient(
            &runtime,
            vec![handle.clone()],
            &patient_id,
            &request_id,
            deadline,
            profile.as_ref(),
        )
        .await?;
        // One source: a failure, even after some rows, means the answer would be incomplete.
        if summary.failed > 0 {
            return Err(first_failure(&summary));
        }
        let records = observations.len() as u64;
        let response = match representation {
            Representation::Fhir => fhir::search_bundle(
                &headers,
                &runtime,
                uri.path_and_query().map_or("", |p| p.as_str()),
                &observations,
                &fhir::issues_of(&summary),
            ),
            Representation::Flat => {
                let first = first_warnings(&summary);
                json_response(
                    StatusCode::OK,
                    &OneSource {
                        source: &handle.info.name,
                        patient_id: &crate::deid::output_patient_id(profile.as_ref(), &patient_id),
                        observations: FlatRows(&observations),
                        warnings: Warnings {
                            count: summary.warnings,
                            first: &first,
                        },
                    },
                )
            }
        };
        Ok((response, records))
    }
    .await;
    access.respond(result).await
}

/// Runs the pipeline for one patient over `sources` within `deadline` and collects, under
/// the partner's de-identification profile if it has one.
pub(crate) async fn fetch_one_patient(
    runtime: &Runtime,
    sources: Vec<SourceHandle>,
    patient_id: &str,
    request_id: &RequestId,
    deadline: std::time::Instant,
    profile: Option<&Arc<medgate_deid::Profile>>,
) -> Result<(Vec<Observation>, Summary), ApiError> {
    let concurrency = sources.len();
    let mut request = Request::new(sources, vec![patient_id.to_owned()], request_id.as_str());
    request.deadline = Some(deadline);
    request.fetch_budget = deadline.saturating_duration_since(std::time::Instant::now());
    request.concurrency = concurrency;
    request.transforms = crate::deid::transforms(profile);
    let (observations, summary) = runtime.pipeline.run(request).collect().await?;
    Ok((observations, summary.snapshot()))
}

/// The error of the first failed fetch.
fn first_failure(summary: &Summary) -> ApiError {
    summary.failures.first().map_or_else(
        || ApiError::Core(Error::Internal("the fetch failed without a reason".into())),
        |f| ApiError::Core(Error::clone(&f.failure.error)),
    )
}

/// The first warnings of every source, in source order.
pub(crate) fn first_warnings(summary: &Summary) -> Vec<Warning> {
    summary
        .sources
        .values()
        .flat_map(|s| s.first_warnings.iter().cloned())
        .take(medgate_pipeline::summary::MAX_WARNINGS)
        .collect()
}

#[derive(Serialize)]
struct SourceStatus<'a> {
    source: &'a str,
    status: &'static str,
    observations: u64,
    warnings: u64,
    #[serde(skip_serializing_if = "<[Warning]>::is_empty")]
    first_warnings: &'a [Warning],
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

#[derive(Serialize)]
struct AllSources<'a> {
    patient_id: &'a str,
    sources: Vec<SourceStatus<'a>>,
    observations: FlatRows<'a>,
}

/// One patient's observations from every source the partner may read, fetched concurrently.
#[utoipa::path(get, path = "/v1/patients/{patient_id}/observations", tag = "data",
    params(("patient_id" = String, Path, description = "The patient's id"), FanOutQuery,
        ("Request-Timeout" = Option<String>, Header, description = "Shorter time budget, e.g. 1500ms or 2s (capped by config)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Observations from every source that answered within the budget, with each source's status and warnings; a failing source gives partial results", 
            content((crate::routes::openapi::PatientData = "application/json"), (crate::routes::openapi::FhirBundle = "application/fhir+json"))),
        (status = 400, description = "Invalid patient_id or _format", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The partner may not read any source", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No source knows the patient", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the partner's rate limit", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Every source failed", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn all_sources(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<FanOutQuery>, QueryRejection>,
) -> Response {
    let mut access = Access::new(
        &state,
        &request_id,
        &partner,
        "/v1/patients/{patient_id}/observations",
    );
    if let Some(details) = crate::deid::forced_audit_details(&state.runtime(), &partner) {
        access = access.with_details(details);
    }
    if let Ok(Path(id)) = &path {
        if validate_patient_id(id).is_ok() {
            access = access.patients(vec![id.clone()]);
        }
    }
    let result = async {
        let Path(patient_id) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        validate_patient_id(&patient_id)?;
        let representation = fhir::representation(&headers, query.format.as_deref())?;
        let runtime = state.runtime();
        let deadline = crate::budget::deadline(&headers, &runtime.server)?;
        let readable: Vec<SourceHandle> = runtime
            .catalog
            .sources()
            .iter()
            .filter(|h| partner.check_source(&h.info.name).is_ok())
            .cloned()
            .collect();
        if readable.is_empty() {
            return Ok((all_failed(&Summary::default(), &[]), 0));
        }
        let names: Vec<String> = readable.iter().map(|h| h.info.name.clone()).collect();
        let profile = crate::deid::profile_for(&runtime, &partner, None, &Filter::default())?;
        let (observations, summary) = fetch_one_patient(
            &runtime,
            readable,
            &patient_id,
            &request_id,
            deadline,
            profile.as_ref(),
        )
        .await?;
        let statuses = statuses(&summary, &names);
        if statuses.iter().all(|s| s.status == "error") {
            return Ok((all_failed(&summary, &statuses), 0));
        }
        let records = observations.len() as u64;
        let response = match representation {
            Representation::Fhir => fhir::search_bundle(
                &headers,
                &runtime,
                uri.path_and_query().map_or("", |p| p.as_str()),
                &observations,
                &fhir::issues_of(&summary),
            ),
            Representation::Flat => json_response(
                StatusCode::OK,
                &AllSources {
                    patient_id: &crate::deid::output_patient_id(profile.as_ref(), &patient_id),
                    sources: statuses,
                    observations: FlatRows(&observations),
                },
            ),
        };
        Ok((response, records))
    }
    .await;
    access.respond(result).await
}

/// Each source's status, in the order asked.
fn statuses<'a>(summary: &'a Summary, names: &'a [String]) -> Vec<SourceStatus<'a>> {
    names
        .iter()
        .map(|name| {
            let totals = summary.sources.get(name);
            let failure = summary
                .failures
                .iter()
                .find(|f| &f.source == name)
                .map(|f| ApiError::Core(Error::clone(&f.failure.error)).problem());
            SourceStatus {
                source: name,
                status: if failure.is_some() { "error" } else { "ok" },
                observations: totals.map_or(0, |t| t.rows),
                warnings: totals.map_or(0, |t| t.warnings),
                first_warnings: totals.map_or(&[], |t| t.first_warnings.as_slice()),
                error: failure,
            }
        })
        .collect()
}

/// Every source failed: 404 when none knows the patient, 403 when the partner may read none,
/// else 502, with each source's status.
fn all_failed(summary: &Summary, sources: &[SourceStatus<'_>]) -> Response {
    let not_found = !summary.failures.is_empty()
        && summary
            .failures
            .iter()
            .all(|f| matches!(*f.failure.error, Error::PatientNotFound { .. }));
    let (status, kind, detail) = if sources.is_empty() {
        (
            StatusCode::FORBIDDEN,
            "forbidden",
            "the partner may not read any source",
        )
    } else if not_found {
        (
            StatusCode::NOT_FOUND,
            "patient-not-found",
            "patient not found in any source",
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

/// Serializes `body` into this thread's scratch buffer (its capacity kept from answer to
/// answer, so a large answer is not built through a dozen reallocations) and answers an
/// exact-size copy of it.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    /// A scratch buffer larger than this after an answer is dropped, not kept.
    const KEEP_SCRATCH: usize = 1 << 20;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let written = SCRATCH.with(|scratch| {
        let mut buf = scratch.take();
        buf.clear();
        let written = serde_json::to_writer(&mut buf, body).map(|()| buf.as_slice().to_vec());
        if buf.capacity() <= KEEP_SCRATCH {
            scratch.replace(buf);
        }
        written
    });
    match written {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => ApiError::Core(Error::Internal(format!(
            "serializing the response failed: {e}"
        )))
        .into_response(),
    }
}
