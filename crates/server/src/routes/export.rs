//! `GET /v1/export`: streaming downloads in any enabled format.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::body::Body;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use futures::{stream, FutureExt, StreamExt};
use medgate_core::{Error, Exporter, FetchRequest, ObservationStream, SourceHandle};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::access::Partner;
use crate::audit::Access;
use crate::fetch::{fetch, stop_after_error, validate_patient_id};
use crate::problem::ApiError;
use crate::routes::RequestId;
use crate::state::AppState;

/// Bytes buffered between the exporter and the socket.
const PIPE_BYTES: usize = 64 * 1024;

/// Query of `/v1/export`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// Configured source name.
    source: Option<String>,
    /// One or more patient ids, comma-separated, exported in this order.
    patient_id: Option<String>,
    /// An enabled export format (see `GET /v1/sources`).
    format: Option<String>,
}

/// Downloads observations of one or more patients from one source as a file.
///
/// The body streams as rows arrive. Errors found before the first byte are problem responses;
/// an upstream failing midway aborts the transfer, so a partial file never looks complete.
#[utoipa::path(get, path = "/v1/export", tag = "export",
    params(ExportQuery),
    responses(
        (status = 200, description = "The file, as an attachment in the format's content type"),
        (status = 400, description = "Missing parameter, invalid patient id or unsupported format (the problem lists enabled formats)", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown source, or a patient not found in it", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 502, description = "Upstream failed", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 504, description = "Upstream timed out", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn download(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Response {
    let mut access = Access::new(&state, &request_id, &partner, "/v1/export");
    if let Ok(Query(q)) = &query {
        if let Some(source) = &q.source {
            access = access.source(source);
        }
        if let Some(ids) = &q.patient_id {
            access = access.patients(ids.split(',').map(|s| s.trim().to_owned()).collect());
        }
    }
    match start_export(&state, &partner, &request_id, query).await {
        Ok((handle, exporter, rows)) => attachment(&handle, exporter, rows, access),
        Err(e) => access.respond(Err(e)).await,
    }
}

/// Everything up to the first row: checks, permissions, and the first fetch.
async fn start_export(
    state: &AppState,
    partner: &Partner,
    request_id: &RequestId,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<(SourceHandle, Arc<dyn Exporter>, ObservationStream), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let source = required(query.source, "source")?;
    let format = required(query.format, "format")?;
    let patients = required(query.patient_id, "patient_id")?;
    let runtime = state.runtime();
    let exporter =
        runtime
            .catalog
            .exporter(&format)
            .cloned()
            .ok_or_else(|| ApiError::UnsupportedFormat {
                format: format.clone(),
                enabled: runtime
                    .catalog
                    .formats()
                    .into_iter()
                    .map(String::from)
                    .collect(),
            })?;
    let handle = runtime.source(&source)?.clone();
    partner.check_source(&source)?;
    partner.check_format(&format)?;
    let patients = parse_patients(&patients, runtime.server.max_export_patients)?;
    let budget = Duration::from_millis(runtime.server.request_timeout_ms);
    let mut rows = rows_of(
        handle.clone(),
        patients,
        request_id.clone(),
        runtime.server.export_concurrency,
        budget,
    );
    // Surface an early failure (unknown patient, upstream down) as a proper problem response.
    let first = rows.next().await;
    if let Some(Err(e)) = first {
        return Err(e.into());
    }
    Ok((handle, exporter, stream::iter(first).chain(rows).boxed()))
}

fn required(value: Option<String>, name: &str) -> Result<String, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("query parameter {name} is required")))
}

fn parse_patients(list: &str, max: usize) -> Result<Vec<String>, ApiError> {
    let ids: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
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

/// All patients' rows in the order asked, fetching up to `concurrency` patients ahead; each
/// patient's fetch has `budget`.
fn rows_of(
    handle: SourceHandle,
    patients: Vec<String>,
    request_id: RequestId,
    concurrency: usize,
    budget: Duration,
) -> ObservationStream {
    let per_patient = stream::iter(patients)
        .map(move |patient_id| {
            let handle = handle.clone();
            let request = FetchRequest {
                patient_id,
                request_id: request_id.as_str().to_owned(),
                deadline: Some(Instant::now() + budget),
            };
            async move { fetch(&handle, &request).await }
        })
        .buffered(concurrency.max(1))
        .flat_map(|fetched| match fetched {
            Ok(rows) => rows,
            Err(e) => stream::once(async { Err(e) }).boxed(),
        });
    stop_after_error(per_patient.boxed())
}

/// Runs the exporter in its own task, writing into a pipe that becomes the response body.
fn attachment(
    handle: &SourceHandle,
    exporter: Arc<dyn Exporter>,
    rows: ObservationStream,
    access: Access,
) -> Response {
    let (mut writer, reader) = tokio::io::duplex(PIPE_BYTES);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), Error>>();
    let export = exporter.clone();
    tokio::spawn(async move {
        let counted = CountRows::new(rows);
        let counter = counted.counter();
        let outcome = match AssertUnwindSafe(export.export(counted.boxed(), &mut writer))
            .catch_unwind()
            .await
        {
            Ok(Ok(summary)) => {
                tracing::info!(
                    rows = summary.rows,
                    format = export.format(),
                    "export finished"
                );
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Internal(format!(
                "exporter {} failed unexpectedly",
                export.format()
            ))),
        };
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, format = export.format(), "export aborted");
        }
        // The entry is written before the body's end is released to the client.
        let (status, kind) = match &outcome {
            Ok(()) => (StatusCode::OK, "ok"),
            Err(e) => (ApiError::status_of(e), e.kind()),
        };
        let records = counter.load(std::sync::atomic::Ordering::Relaxed);
        let outcome = match access.finish(status, kind, records).await {
            Ok(()) => outcome,
            Err(_) => Err(Error::Internal("audit trail unavailable".into())),
        };
        let _ = writer.shutdown().await;
        drop(writer);
        let _ = done_tx.send(outcome);
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

    let filename = format!("medgate-{}.{}", handle.info.name, exporter.extension());
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

/// Counts the rows that pass through, for the audit entry.
struct CountRows {
    inner: ObservationStream,
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl CountRows {
    fn new(inner: ObservationStream) -> Self {
        CountRows {
            inner,
            count: Arc::default(),
        }
    }

    fn counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.count.clone()
    }
}

impl futures::Stream for CountRows {
    type Item = medgate_core::Result<medgate_core::Observation>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(Some(Ok(_))) = &polled {
            self.count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }
}
