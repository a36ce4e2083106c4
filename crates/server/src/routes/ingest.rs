//! `POST /v1/ingest/{source}` and `GET /v1/ingest/{source}/receipts/{id}`: pushed reports.
//!
//! A report is acknowledged (202 with its receipt) only after the store has committed it
//! durably; a request is all-or-nothing. The handler never waits on the background work: when
//! the backlog is above its high-water mark it answers 503 with a `Retry-After` computed from
//! the observed drain rate, and accepted data is never dropped.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use medgate_core::{DateTime, Error};
use medgate_store::{IdempotencyKey, IngestBatch, Ingested, NewReport};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::access::Partner;
use crate::audit::Access;
use crate::problem::ApiError;
use crate::routes::RequestId;
use crate::state::AppState;

/// Bodies at least this large are parsed on the blocking pool.
const INLINE_PARSE_BYTES: usize = 64 * 1024;
/// Longest `Idempotency-Key` accepted.
const MAX_KEY_LEN: usize = 255;

/// One accepted report.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReceiptView {
    /// The receipt id.
    id: String,
    /// Where its processing state is: `GET` this.
    location: String,
    /// When the gateway received the request (RFC 3339, UTC).
    received_at: String,
    /// Where the report was in the body (`/0`, `/entry/4`, `PID[1]`).
    at: String,
}

/// The answer to an upload: one receipt per report, in body order.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Receipts {
    receipts: Vec<ReceiptView>,
}

/// Stores pushed reports: medgate report JSON, a FHIR R4 Bundle or Observation, or HL7 v2
/// ORU^R01 messages.
#[utoipa::path(post, path = "/v1/ingest/{source}", tag = "ingest",
    params(("source" = String, Path, description = "A source of kind `store` the partner may push to"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body return the original receipts and store nothing twice; the same key with another body is 422")),
    request_body(description = "Report JSON (application/json), FHIR R4 JSON (application/fhir+json) or HL7 v2 ER7 (x-application/hl7-v2+er7)", content(
        (medgate_ingest::schema::ReportBody = "application/json"),
        (crate::routes::openapi::FhirResource = "application/fhir+json"),
        (String = "x-application/hl7-v2+er7"))),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Durably stored; one receipt per report, in order (Location: the first receipt)", body = Receipts),
        (status = 400, description = "Invalid body: the problem's `errors` lists every bad field with its path", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The partner may not push to this source", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No store source with this name", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over [ingest] max_body_bytes, or too many reports or items", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content type not supported", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with a different body", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Backlog above its high-water mark (see Retry-After); nothing was stored", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    request_id: RequestId,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> Response {
    let mut access = Access::new(&state, &request_id, &partner, "/v1/ingest/{source}");
    if let Ok(Path(source)) = &path {
        access = access.source(source);
    }
    let result = async {
        let Path(source) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        check_target(&state, &partner, &source)?;
        let ingest = state.runtime().ingest.clone();
        // Refuse before reading the body when the backlog is already full.
        state
            .backlog()
            .admit(0, ingest.high_water, ingest.queue_capacity)?;
        let limit = ingest.max_body_bytes;
        let bytes = read_limited(&headers, body, limit).await?;
        let idempotency = idempotency_key(&headers, &bytes)?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let reports = parse(&source, &content_type, bytes).await?;
        state.backlog().admit(
            reports.len() as u64,
            ingest.high_water,
            ingest.queue_capacity,
        )?;
        let patients: Vec<String> = reports.iter().map(|r| r.patient_id.to_string()).collect();
        let observations: u64 = reports.iter().map(|r| r.observations.len() as u64).sum();
        let at: Vec<String> = reports.iter().map(|r| r.at.clone()).collect();
        let batch = IngestBatch {
            partner: partner.name.clone(),
            source: source.clone(),
            idempotency,
            reports: reports.into_iter().map(new_report).collect(),
        };
        let store = state.services().store.clone();
        let (receipts, replayed) = match store.ingest(batch).await.map_err(store_error)? {
            Ingested::Stored(r) => {
                state.wake_workers();
                (r, false)
            }
            Ingested::Replayed(r) => (r, true),
            Ingested::KeyConflict => return Err(ApiError::IdempotencyConflict),
        };
        let views: Vec<ReceiptView> = receipts
            .iter()
            .zip(&at)
            .map(|(r, at)| ReceiptView {
                location: format!("/v1/ingest/{source}/receipts/{}", r.id),
                id: r.id.clone(),
                received_at: DateTime::from_timestamp(r.received_at).to_string(),
                at: at.clone(),
            })
            .collect();
        let ids: Vec<&str> = views.iter().map(|v| v.id.as_str()).collect();
        let details =
            serde_json::json!({ "receipts": ids, "reports": ids.len(), "replayed": replayed });
        let mut response = (
            StatusCode::ACCEPTED,
            axum::Json(Receipts { receipts: views }),
        )
            .into_response();
        if let Some(first) = receipts.first() {
            let location = format!("/v1/ingest/{source}/receipts/{}", first.id);
            if let Ok(v) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, v);
            }
        }
        if replayed {
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        Ok((response, observations, patients, details))
    }
    .await;
    match result {
        Ok((response, records, patients, details)) => {
            access
                .patients(patients)
                .with_details(details)
                .respond(Ok((response, records)))
                .await
        }
        Err(e) => access.respond(Err(e)).await,
    }
}

/// The partner's grant first (403 whether or not the name exists), then the source must be
/// one of kind `store`.
fn check_target(state: &AppState, partner: &Partner, source: &str) -> Result<(), ApiError> {
    partner.check_ingest(source)?;
    let runtime = state.runtime();
    let handle = runtime.source(source)?;
    if handle.info.kind != medgate_source_store::KIND {
        return Err(ApiError::NotFoundDetail(
            "this source is not a store: only sources of kind `store` take uploads",
        ));
    }
    Ok(())
}

/// The body, refusing more than `limit` bytes (by `Content-Length` at once, or as it arrives).
async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the body is larger than {limit} bytes ([ingest] max_body_bytes)"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

fn idempotency_key(headers: &HeaderMap, body: &[u8]) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some(IdempotencyKey {
        key: key.to_owned(),
        body_sha256: Sha256::digest(body).into(),
    }))
}

/// Parses on the blocking pool when the body is large: parsing is CPU work.
async fn parse(
    source: &str,
    content_type: &str,
    bytes: bytes::Bytes,
) -> Result<Vec<medgate_ingest::Report>, ApiError> {
    let prefix = hex::encode(rand::random::<[u8; 8]>());
    let ctx = medgate_ingest::IngestContext::new(
        source,
        DateTime::from_timestamp(jiff::Timestamp::now()),
        &prefix,
    );
    let content_type = content_type.to_owned();
    let parsed = if bytes.len() < INLINE_PARSE_BYTES {
        medgate_ingest::parse(&content_type, &bytes, &ctx)
    } else {
        tokio::task::spawn_blocking(move || medgate_ingest::parse(&content_type, &bytes, &ctx))
            .await
            .map_err(|_| ApiError::Core(Error::Internal("the body parser failed".into())))?
    };
    parsed.map_err(ApiError::Ingest)
}

fn new_report(r: medgate_ingest::Report) -> NewReport {
    let meta = serde_json::json!({
        "report_id": r.report_id,
        "app": r.app,
        "device": r.device,
        "questionnaire": r.questionnaire,
    });
    NewReport {
        patient_id: r.patient_id.to_string(),
        kind: r.kind.as_str().to_owned(),
        reported_at: Some(r.reported_at),
        serious_adverse_event: r.serious_adverse_event,
        meta: Some(meta),
        observations: r.observations,
    }
}

/// A store failure as the gateway's own error (never echoing stored values).
pub(crate) fn store_error(e: medgate_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store operation failed");
    ApiError::Core(Error::Overloaded {
        reason: "the store could not take the request; nothing was stored".into(),
        retry_after: Some(Duration::from_secs(1)),
    })
}

/// What a receipt says.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReceiptState {
    /// The receipt id.
    id: String,
    /// `accepted`, `processing`, `processed` or `failed`.
    state: String,
    /// The report kind.
    kind: String,
    /// Observations the report carried.
    observations: u32,
    /// A serious adverse event.
    serious_adverse_event: bool,
    /// When it was received.
    received_at: String,
    /// Processing attempts so far.
    attempts: u32,
    /// Why processing failed, if it did.
    error: Option<String>,
}

/// The processing state of one accepted report.
#[utoipa::path(get, path = "/v1/ingest/{source}/receipts/{id}", tag = "ingest",
    params(("source" = String, Path, description = "The store source"), ("id" = String, Path, description = "The receipt id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The report's processing state", body = ReceiptState),
        (status = 403, description = "The partner may not push to this source", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such receipt for this partner", body = crate::routes::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn receipt(
    State(state): State<AppState>,
    Extension(partner): Extension<Arc<Partner>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let result = async {
        let Path((source, id)) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        check_target(&state, &partner, &source)?;
        let status = state
            .services()
            .store
            .receipt(&source, &id)
            .await
            .map_err(store_error)?
            // Another partner's receipt is as unknown as a missing one.
            .filter(|r| r.partner == partner.name)
            .ok_or(ApiError::NotFoundDetail(
                "no such receipt for this partner and source",
            ))?;
        Ok::<_, ApiError>(axum::Json(ReceiptState {
            id: status.id,
            state: status.state.as_str().to_owned(),
            kind: status.kind,
            observations: status.observations,
            serious_adverse_event: status.serious_adverse_event,
            received_at: DateTime::from_timestamp(status.received_at).to_string(),
            attempts: status.attempts,
            error: status.error,
        }))
    }
    .await;
    match result {
        Ok(json) => json.into_response(),
        Err(e) => e.into_response(),
    }
}
