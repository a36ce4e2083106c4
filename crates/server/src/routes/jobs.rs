//! Export jobs over whole cohorts, with FHIR Bulk Data Access semantics.
//!
//! - kick-off: `POST /v1/exports` (JSON), `GET /fhir/Patient/$export`,
//!   `GET /fhir/Group/{cohort}/$export` → 202 with `Content-Location`;
//! - status: `GET /v1/exports/{id}` → 202 with `X-Progress` and `Retry-After` while it runs,
//!   200 with the manifest (and `Expires`) when complete;
//! - `DELETE /v1/exports/{id}` cancels or removes it and its files;
//! - `GET /v1/exports/{id}/files/{n}` streams one file (same partner's key).
//!
//! The work happens in `medgate-exports`' runner; every kick-off, job end and file download
//! is audited (who, cohort size, profile, format, rows, SHA-256 of each file).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use medgate_exports::{BulkQuery, Deleted, ExportError, ExportRequest, Grant, JobStatus};
use tokio_util::io::ReaderStream;

use crate::access::Partner;
use crate::audit::Access;
use crate::problem::ApiError;
use crate::routes::RequestId;
use crate::state::AppState;

fn export_error(e: ExportError) -> ApiError {
    ApiError::Export(e)
}

fn check_grant(partner: &Partner) -> Result<(), ApiError> {
    if partner.export_jobs {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "partner {} may not start export jobs",
            partner.name
        )))
    }
}

/// Starts an export job (Bulk Data kick-off with a JSON body).
#[utoipa::path(post, path = "/v1/exports", tag = "export",
    request_body(content = medgate_exports::ExportRequest, content_type = "application/json"),
    params(("Prefer" = Option<String>, Header, description = "respond-async (the only mode)")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Accepted; poll Content-Location"),
        (status = 400, description = "Invalid request", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No export grant, or a source, format or profile not allowed", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown source, cohort or profile", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn kick_off(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    headers: HeaderMap,
    body: Result<Json<ExportRequest>, JsonRejection>,
) -> Response {
    let asked = body
        .map(|Json(r)| r)
        .map_err(crate::problem::json_rejection);
    start(state, partner, request_id, headers, asked, "/v1/exports").await
}

/// FHIR Bulk Data: every patient of the partner's (or the named) sources.
#[utoipa::path(get, path = "/fhir/Patient/$export", tag = "fhir",
    params(BulkQuery, ("Prefer" = Option<String>, Header, description = "respond-async")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Accepted; poll Content-Location"),
        (status = 400, description = "Invalid parameter", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
        (status = 403, description = "No export grant", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
        (status = 404, description = "Unknown source or profile", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
    ))]
pub async fn patient_export(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    headers: HeaderMap,
    query: Result<Query<BulkQuery>, QueryRejection>,
) -> Response {
    let asked = query
        .map_err(|e| ApiError::BadRequest(e.body_text()))
        .and_then(|Query(q)| q.to_request(None).map_err(export_error));
    start(
        state,
        partner,
        request_id,
        headers,
        asked,
        "/fhir/Patient/$export",
    )
    .await
}

/// FHIR Bulk Data: the patients of a configured cohort.
#[utoipa::path(get, path = "/fhir/Group/{cohort}/$export", tag = "fhir",
    params(("cohort" = String, Path, description = "A [[cohorts]] name"), BulkQuery,
        ("Prefer" = Option<String>, Header, description = "respond-async")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Accepted; poll Content-Location"),
        (status = 400, description = "Invalid parameter", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
        (status = 403, description = "No export grant", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
        (status = 404, description = "Unknown cohort, source or profile", body = crate::routes::openapi::FhirResource, content_type = "application/fhir+json"),
    ))]
pub async fn group_export(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<BulkQuery>, QueryRejection>,
) -> Response {
    let asked = match (path, query) {
        (Ok(Path(cohort)), Ok(Query(q))) => q.to_request(Some(&cohort)).map_err(export_error),
        (Err(e), _) => Err(ApiError::BadRequest(e.body_text())),
        (_, Err(e)) => Err(ApiError::BadRequest(e.body_text())),
    };
    start(
        state,
        partner,
        request_id,
        headers,
        asked,
        "/fhir/Group/{cohort}/$export",
    )
    .await
}

async fn start(
    state: AppState,
    partner: Arc<Partner>,
    request_id: RequestId,
    headers: HeaderMap,
    asked: Result<ExportRequest, ApiError>,
    route: &'static str,
) -> Response {
    let mut access = Access::new(&state, &request_id, &partner, route);
    if let Ok(r) = &asked {
        access = access.source(&r.sources.join(","));
    }
    let result = async {
        check_grant(&partner)?;
        let request = asked?;
        let exports = state.exports();
        let kickoff = format!("{}{}", base_url(&headers), route);
        let may_read = |s: &str| partner.check_source(s).is_ok();
        let may_export = |f: &str| partner.check_format(f).is_ok();
        let grant = Grant {
            partner: &partner.name,
            may_read: &may_read,
            may_export: &may_export,
            profile: partner.profile.as_deref(),
        };
        let started = exports
            .kick_off(&grant, request, &kickoff)
            .await
            .map_err(export_error)?;
        let location = format!("/v1/exports/{}", started.job.id);
        let mut response = StatusCode::ACCEPTED.into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::CONTENT_LOCATION, v);
        }
        let details = serde_json::json!({
            "job": started.job.id,
            "format": started.request.format,
            "profile": started.request.profile,
            "key_id": started.key_id,
            "cohort": started.request.cohort,
            "cohort_size": started.patients,
            "sources": started.request.sources,
        });
        Ok::<_, ApiError>((response, details))
    }
    .await;
    match result {
        Ok((response, details)) => {
            access
                .with_details(details)
                .respond(Ok((response, 0)))
                .await
        }
        Err(e) => access.respond(Err(e)).await,
    }
}

/// The base URL the client reached (for manifest URLs).
fn base_url(headers: &HeaderMap) -> String {
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Where an export job is.
#[utoipa::path(get, path = "/v1/exports/{id}", tag = "export",
    params(("id" = String, Path, description = "The job id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Complete: the Bulk Data manifest (Expires: when files are deleted)", body = medgate_exports::Manifest),
        (status = 202, description = "Queued or running: X-Progress and Retry-After"),
        (status = 404, description = "No such job for this partner, or cancelled", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "The job failed", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn status(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let Path(id) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let status = state
            .exports()
            .status(&partner.name, &id, &base_url(&headers))
            .await
            .map_err(export_error)?;
        Ok::<_, ApiError>(match status {
            JobStatus::Queued { retry_after } => progress(None, retry_after),
            JobStatus::Running {
                progress: p,
                retry_after,
            } => progress(Some(&p), retry_after),
            JobStatus::Completed { manifest, expires } => {
                let mut response = Json(manifest).into_response();
                if let Ok(v) = HeaderValue::from_str(&http_date(expires)) {
                    response.headers_mut().insert(header::EXPIRES, v);
                }
                response
            }
            JobStatus::Failed { error } => {
                return Err(ApiError::Core(medgate_core::Error::Internal(format!(
                    "the export job failed: {error}"
                ))))
            }
            JobStatus::Cancelled => {
                return Err(ApiError::NotFoundDetail("the export job was cancelled"))
            }
        })
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn progress(
    p: Option<&medgate_store::ExportProgress>,
    retry_after: std::time::Duration,
) -> Response {
    let text = p.map_or_else(|| "queued".to_owned(), medgate_exports::jobs::progress_text);
    let mut response = StatusCode::ACCEPTED.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&text) {
        headers.insert("x-progress", v);
    }
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after.as_secs().max(1)),
    );
    response
}

/// An HTTP date (RFC 9110 IMF-fixdate).
fn http_date(at: jiff::Timestamp) -> String {
    at.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Cancels a running job (its files are removed) or deletes a finished one.
#[utoipa::path(delete, path = "/v1/exports/{id}", tag = "export",
    params(("id" = String, Path, description = "The job id")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Cancelled or removed"),
        (status = 404, description = "No such job for this partner", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let access = Access::new(&state, &request_id, &partner, "/v1/exports/{id}");
    let result = async {
        let Path(id) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let deleted = state
            .exports()
            .delete(&partner.name, &id)
            .await
            .map_err(export_error)?;
        let what = match deleted {
            Deleted::Cancelled => "cancelled",
            Deleted::Removed => "removed",
        };
        Ok::<_, ApiError>((
            StatusCode::ACCEPTED.into_response(),
            serde_json::json!({ "job": id, "deleted": what }),
        ))
    }
    .await;
    match result {
        Ok((response, details)) => {
            access
                .with_details(details)
                .respond(Ok((response, 0)))
                .await
        }
        Err(e) => access.respond(Err(e)).await,
    }
}

/// Downloads one file of a completed job.
#[utoipa::path(get, path = "/v1/exports/{id}/files/{n}", tag = "export",
    params(("id" = String, Path, description = "The job id"), ("n" = u32, Path, description = "The file's index in the manifest")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The file (ETag: its SHA-256)"),
        (status = 400, description = "The file index is not a whole number", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job or file for this partner", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not complete", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 410, description = "The file expired or was removed", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn file(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    path: Result<Path<(String, u32)>, PathRejection>,
) -> Response {
    let access = Access::new(&state, &request_id, &partner, "/v1/exports/{id}/files/{n}");
    let result = async {
        let Path((id, n)) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let download = state
            .exports()
            .open_file(&partner.name, &id, n)
            .await
            .map_err(export_error)?;
        let details = serde_json::json!({
            "job": id, "file": n, "kind": download.kind, "format": download.format,
            "profile": download.profile, "size": download.size, "sha256": download.sha256,
        });
        let count = download.count;
        let mut response = Response::new(Body::from_stream(ReaderStream::new(download.file)));
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&download.content_type) {
            headers.insert(header::CONTENT_TYPE, v);
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
        if let Ok(v) =
            HeaderValue::from_str(&format!("attachment; filename=\"{}\"", download.filename))
        {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", download.sha256)) {
            headers.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&http_date(download.expires)) {
            headers.insert(header::EXPIRES, v);
        }
        Ok::<_, ApiError>((response, count, details))
    }
    .await;
    match result {
        Ok((response, count, details)) => {
            access
                .with_details(details)
                .respond(Ok((response, count)))
                .await
        }
        Err(e) => access.respond(Err(e)).await,
    }
}

/// The audit entry of a job that ended in this gateway.
pub(crate) async fn job_ended(state: &AppState, report: &medgate_exports::JobReport) {
    let files: Vec<serde_json::Value> = report
        .files
        .iter()
        .map(|f| serde_json::json!({ "kind": f.kind, "index": f.index, "size": f.size, "sha256": f.sha256, "count": f.count }))
        .collect();
    let details = serde_json::json!({
        "job": report.job_id, "outcome": format!("{:?}", report.outcome).to_lowercase(),
        "error": report.error, "sources": report.sources, "cohort": report.cohort,
        "cohort_size": report.patients, "patients_failed": report.patients_failed,
        "format": report.format, "profile": report.profile, "key_id": report.key_id,
        "files": files, "attempt": report.attempt, "seconds": report.seconds,
    });
    let entry = medgate_audit::AuditEntry {
        request_id: format!("job-{}", report.job_id),
        partner: report.partner.clone(),
        route: "export-job".into(),
        source: Some(report.sources.join(",")),
        patient_ids: Vec::new(),
        records: report.rows,
        status: 200,
        outcome: format!("{:?}", report.outcome).to_lowercase(),
        details: Some(details),
    };
    if let Err(e) = state.services().audit.append(entry).await {
        tracing::error!(error = %e, "writing an export job's audit entry failed");
    }
}

/// The gateway as export jobs see it: the current runtime's snapshot, and audit at job end.
pub struct ServerExportEnv(pub AppState);

#[async_trait::async_trait]
impl medgate_exports::ExportEnv for ServerExportEnv {
    fn snapshot(&self) -> Arc<medgate_exports::Snapshot> {
        self.0.runtime().jobs.clone()
    }

    async fn job_ended(&self, report: &medgate_exports::JobReport) {
        job_ended(&self.0, report).await;
    }
}
