//! `GET /v1/export`: streaming downloads in any enabled format, through the shared pipeline.
//!
//! The download waits for the run's first observation, so a request that cannot produce
//! anything (unknown patient everywhere, upstream down) is still a problem response. After
//! that, one patient failing is recorded in the audit entry and the download goes on; with
//! `on_error=fail` the transfer is cut at the first failure instead. The exporter runs in its
//! own task, writing into a bounded pipe whose read side is the response body.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use futures::{stream, StreamExt};
use medgate_core::{Error, Exporter, ObservationStream, SourceHandle};
use medgate_pipeline::{OnError, SummaryHandle};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::access::Partner;
use crate::audit::Access;
use crate::fetch::validate_patient_id;
use crate::guard::hold_until_sent;
use crate::problem::ApiError;
use crate::routes::RequestId;
use crate::state::AppState;

/// Bytes buffered between the exporter and the socket.
const PIPE_BYTES: usize = 64 * 1024;

/// Query of `/v1/export`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// One or more configured source names, comma-separated; each patient's observations
    /// come from them in this order.
    source: Option<String>,
    /// One or more patient ids, comma-separated, exported in this order.
    patient_id: Option<String>,
    /// An enabled export format (see `GET /v1/sources`).
    format: Option<String>,
    /// `skip` (default): a patient that fails is left out and recorded in the audit trail;
    /// `fail`: the transfer is cut at the first failure.
    on_error: Option<String>,
    /// A de-identification profile (`[[profiles]]`) applied before the exporter. A partner
    /// bound to a profile always gets that one; naming another is refused (403).
    profile: Option<String>,
}

/// Downloads observations of one or more patients from one or more sources as a file.
///
/// The body streams as rows arrive. Errors found before the first row are problem responses;
/// a failure after it either skips the patient (default) or cuts the transfer, so a partial
/// file never looks complete.
#[utoipa::path(get, path = "/v1/export", tag = "export",
    params(ExportQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The file, as an attachment in the format's content type"),
        (status = 400, description = "Missing parameter, invalid patient id or unsupported format (the problem lists enabled formats)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The partner may not read a source or download the format, or asked for a profile other than its own", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown source or profile, or no patient found", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the partner's rate limit (see Retry-After)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Upstream failed", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Source unavailable (see Retry-After)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 504, description = "Upstream timed out", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn download(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Response {
    let asked = query
        .map_err(|e| ApiError::BadRequest(e.body_text()))
        .and_then(|Query(q)| ExportRequest::from_query(q));
    run(state, partner, request_id, asked).await
}

/// Body of `POST /v1/export`: the same download as the GET, for patient lists too long for a
/// URL (10,000 ids do not fit in a request line).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    /// Configured source names; each patient's observations come from them in this order.
    sources: Vec<String>,
    /// Patient ids, exported in this order.
    patients: Vec<String>,
    /// An enabled export format (see `GET /v1/sources`).
    format: String,
    /// `skip` (default) or `fail`, as for the GET.
    #[serde(default)]
    on_error: Option<String>,
    /// A de-identification profile, as for the GET.
    #[serde(default)]
    profile: Option<String>,
}

/// The same download as `GET /v1/export`, with the request in a JSON body.
#[utoipa::path(post, path = "/v1/export", tag = "export",
    request_body(content = ExportBody, content_type = "application/json"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The file, as an attachment in the format's content type"),
        (status = 400, description = "Invalid body, patient id or format", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The partner may not read a source or download the format, or asked for a profile other than its own", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown source or profile, or no patient found", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the partner's rate limit (see Retry-After)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Upstream failed", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many downloads running, or source unavailable (see Retry-After)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 504, description = "Upstream timed out", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn download_post(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    body: Result<axum::Json<ExportBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let asked = body
        .map_err(crate::problem::json_rejection)
        .and_then(|axum::Json(b)| ExportRequest::from_body(b));
    run(state, partner, request_id, asked).await
}

/// What a download asks for, from the query or the body.
struct ExportRequest {
    sources: Vec<String>,
    patients: Vec<String>,
    format: String,
    on_error: OnError,
    profile: Option<String>,
}

impl ExportRequest {
    fn from_query(q: ExportQuery) -> Result<ExportRequest, ApiError> {
        let sources = required(q.source, "source")?;
        let patients = required(q.patient_id, "patient_id")?;
        Ok(ExportRequest {
            sources: sources.split(',').map(|s| s.trim().to_owned()).collect(),
            patients: patients.split(',').map(|s| s.trim().to_owned()).collect(),
            format: required(q.format, "format")?,
            on_error: on_error(q.on_error.as_deref())?,
            profile: q.profile,
        })
    }

    fn from_body(b: ExportBody) -> Result<ExportRequest, ApiError> {
        if b.sources.is_empty() || b.patients.is_empty() {
            return Err(ApiError::BadRequest(
                "sources and patients must each name at least one".into(),
            ));
        }
        Ok(ExportRequest {
            sources: b.sources,
            patients: b.patients,
            format: b.format,
            on_error: on_error(b.on_error.as_deref())?,
            profile: b.profile,
        })
    }
}

fn on_error(value: Option<&str>) -> Result<OnError, ApiError> {
    match value {
        None | Some("skip") => Ok(OnError::Skip),
        Some("fail") => Ok(OnError::Stop),
        Some(_) => Err(ApiError::BadRequest("on_error must be skip or fail".into())),
    }
}

/// A download from a parsed request: permissions, the first fetch, then the stream.
async fn run(
    state: AppState,
    partner: Arc<Partner>,
    request_id: RequestId,
    asked: Result<ExportRequest, ApiError>,
) -> Response {
    let mut access = Access::new(&state, &request_id, &partner, "/v1/export");
    if let Ok(r) = &asked {
        access = access.source(&r.sources.join(","));
        // Only valid ids, and no more than an export may name: the audit line stays bounded
        // whatever a rejected request sent.
        let max = state.runtime().server.max_export_patients;
        let valid: Vec<String> = r
            .patients
            .iter()
            .filter(|id| validate_patient_id(id).is_ok())
            .take(max)
            .cloned()
            .collect();
        access = access.patients(valid);
    }
    let Ok(permit) = state.runtime().exports.clone().try_acquire_owned() else {
        let busy = Error::Overloaded {
            reason: "too many downloads are running; try again shortly".into(),
            retry_after: Some(Duration::from_secs(5)),
        };
        return access.respond(Err(busy.into())).await;
    };
    let started = match asked {
        Ok(r) => start_export(&state, &partner, &request_id, r).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(started) => {
            if let Some(details) = crate::deid::audit_details(started.profile.as_ref()) {
                access = access.with_details(details);
            }
            hold_until_sent(attachment(&state, started, access), permit)
        }
        Err(e) => access.respond(Err(e)).await,
    }
}

/// A download ready to stream.
struct Started {
    stop: tokio_util::sync::CancellationToken,
    filename: String,
    exporter: Arc<dyn Exporter>,
    rows: ObservationStream,
    summary: SummaryHandle,
    profile: Option<Arc<medgate_deid::Profile>>,
}

/// Everything up to the first row: checks, permissions, and the first fetch.
async fn start_export(
    state: &AppState,
    partner: &Partner,
    request_id: &RequestId,
    asked: ExportRequest,
) -> Result<Started, ApiError> {
    let runtime = state.runtime();
    let exporter = runtime
        .catalog
        .exporter(&asked.format)
        .cloned()
        .ok_or_else(|| ApiError::UnsupportedFormat {
            format: asked.format.clone(),
            enabled: runtime
                .catalog
                .formats()
                .into_iter()
                .map(String::from)
                .collect(),
        })?;
    let handles = parse_sources(&runtime, partner, &asked.sources)?;
    partner.check_format(&asked.format)?;
    let patients = check_patients(asked.patients, runtime.server.max_export_patients)?;
    let profile = crate::deid::profile_for(
        &runtime,
        partner,
        asked.profile.as_deref(),
        &Default::default(),
    )?;
    let names: Vec<&str> = handles.iter().map(|h| h.info.name.as_str()).collect();
    let filename = format!("medgate-{}.{}", names.join("-"), exporter.extension());
    let mut request = medgate_pipeline::Request::new(handles, patients, request_id.as_str());
    request.fetch_budget = Duration::from_millis(runtime.server.request_timeout_ms);
    request.concurrency = runtime.server.export_concurrency;
    request.on_error = asked.on_error;
    request.transforms = crate::deid::transforms(profile.as_ref());
    let run = runtime.pipeline.run(request).ready().await?;
    Ok(Started {
        stop: runtime.pipeline.stopping().clone(),
        filename,
        exporter,
        rows: run.rows,
        summary: run.summary,
        profile,
    })
}

fn required(value: Option<String>, name: &str) -> Result<String, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("query parameter {name} is required")))
}

fn parse_sources(
    runtime: &crate::state::Runtime,
    partner: &Partner,
    names: &[String],
) -> Result<Vec<SourceHandle>, ApiError> {
    let mut handles: Vec<SourceHandle> = Vec::new();
    for name in names {
        let name = name.as_str();
        // The grant first: a name outside it is 403 whether or not it exists.
        partner.check_source(name)?;
        let handle = runtime.source(name)?;
        if handles.iter().any(|h| h.info.name == name) {
            return Err(ApiError::BadRequest(format!(
                "source {name} is listed twice"
            )));
        }
        handles.push(handle.clone());
    }
    Ok(handles)
}

fn check_patients(ids: Vec<String>, max: usize) -> Result<Vec<String>, ApiError> {
    if ids.len() > max {
        return Err(ApiError::BadRequest(format!(
            "at most {max} patients per export; got {}",
            ids.len()
        )));
    }
    for (i, id) in ids.iter().enumerate() {
        validate_patient_id(id)
            .map_err(|e| ApiError::BadRequest(format!("patient_id #{}: {e}", i + 1)))?;
    }
    Ok(ids)
}

/// Runs the exporter in its own task, writing into a pipe that becomes the response body.
fn attachment(state: &AppState, started: Started, access: Access) -> Response {
    let Started {
        stop,
        filename,
        exporter,
        rows,
        summary,
        profile: _,
    } = started;
    let (mut writer, reader) = tokio::io::duplex(PIPE_BYTES);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), Error>>();
    let export = exporter.clone();
    // Tracked, so shutdown waits for its audit entry before the process exits.
    state.tasks().spawn(async move {
        let exported = medgate_pipeline::export(&export, rows, &mut writer, &stop).await;
        let totals = summary.snapshot();
        // The client already has a 200; the entry records how the transfer really ended.
        let (status, outcome) = match &exported.result {
            Ok(()) if totals.failed > 0 => (StatusCode::OK, "partial"),
            Ok(()) => (StatusCode::OK, "ok"),
            Err(e) => (StatusCode::OK, e.kind()),
        };
        match &exported.result {
            Ok(()) => tracing::info!(
                observations = exported.observations,
                rows = exported.rows.unwrap_or(0),
                patients = totals.patients,
                failed_fetches = totals.failed,
                format = export.format(),
                "export finished"
            ),
            Err(e) => tracing::warn!(error = %e, format = export.format(), "export aborted"),
        }
        // The entry is written before the body's end is released to the client.
        let result = match access
            .with_summary(&totals)
            .finish(status, outcome, exported.observations)
            .await
        {
            Ok(()) => exported.result,
            Err(_) => Err(Error::Internal("audit trail unavailable".into())),
        };
        let _ = writer.shutdown().await;
        drop(writer);
        let _ = done_tx.send(result);
    });
    // After the pipe drains, a failed export turns into a body error: the connection is cut
    // instead of ending cleanly, so clients cannot mistake a partial file for a whole one.
    let tail = stream::once(async move {
        match done_rx.await {
            Ok(Ok(())) => None,
            _ => Some(Err(io::Error::other("export aborted"))),
        }
    })
    .filter_map(|item| async move { item });
    let body = Body::from_stream(ReaderStream::new(reader).chain(tail));

    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(exporter.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
