//! The simulated upstreams: a FHIR XML HIS and an Open mHealth wearable cloud.
//!
//! Error bodies never echo the requested patient id, and nothing here logs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Workload;

const FHIR_XML: &str = "application/fhir+xml";
const JSON: &str = "application/json";

/// A FHIR `OperationOutcome` with one error issue (`code` from the FHIR issue-type value set).
fn operation_outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <OperationOutcome xmlns=\"http://hl7.org/fhir\"><issue><severity value=\"error\"/>\
         <code value=\"{code}\"/><diagnostics value=\"{diagnostics}\"/></issue></OperationOutcome>\n"
    );
    (status, [(header::CONTENT_TYPE, FHIR_XML)], body).into_response()
}

/// The HIS: `GET /fhir/Observation?patient=ID` answers the patient's FHIR XML bundle;
/// an unknown patient is a 404 and a missing or empty `patient` a 400, both as
/// `OperationOutcome`s.
pub fn his_router(workload: Arc<Workload>) -> Router {
    Router::new()
        .route("/fhir/Observation", get(his))
        .with_state(workload)
}

async fn his(
    State(w): State<Arc<Workload>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return operation_outcome(StatusCode::BAD_REQUEST, "invalid", "Malformed query string");
    };
    let Some(id) = query.get("patient").filter(|id| !id.is_empty()) else {
        return operation_outcome(
            StatusCode::BAD_REQUEST,
            "required",
            "The patient search parameter is required",
        );
    };
    match w.contains(id) {
        Some(index) => ([(header::CONTENT_TYPE, FHIR_XML)], w.fhir_bundle(index)).into_response(),
        None => operation_outcome(StatusCode::NOT_FOUND, "not-found", "Unknown patient"),
    }
}

/// The wearable cloud: `GET /omh/{id}` answers the patient's Open mHealth data points; an
/// unknown patient is a 404 with a JSON error.
pub fn wearable_router(workload: Arc<Workload>) -> Router {
    Router::new()
        .route("/omh/{id}", get(wearable))
        .with_state(workload)
}

async fn wearable(State(w): State<Arc<Workload>>, Path(id): Path<String>) -> Response {
    match w.contains(&id) {
        Some(index) => ([(header::CONTENT_TYPE, JSON)], w.omh_json(index)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, JSON)],
            "{\"error\":\"not_found\",\"message\":\"unknown user\"}",
        )
            .into_response(),
    }
}

/// Where the simulated upstreams listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoUpstreams {
    /// The FHIR XML HIS.
    pub his: SocketAddr,
    /// The Open mHealth wearable cloud.
    pub wearable: SocketAddr,
}

/// A simulated upstream could not listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Starts both simulated upstreams (port 0 picks a free port) and returns the addresses they
/// actually listen on; they stop accepting and drain when `shutdown` is cancelled.
///
/// # Errors
/// An address cannot be bound. Both are bound before either serves, so a failure leaves
/// nothing running.
pub async fn spawn_demo(
    his: SocketAddr,
    wearable: SocketAddr,
    workload: Arc<Workload>,
    shutdown: CancellationToken,
) -> Result<DemoUpstreams, BindError> {
    let (his_listener, his) = bind(his).await?;
    let (wearable_listener, wearable) = bind(wearable).await?;
    serve(
        his_listener,
        his,
        his_router(workload.clone()),
        shutdown.clone(),
    );
    serve(
        wearable_listener,
        wearable,
        wearable_router(workload),
        shutdown,
    );
    tracing::info!(%his, %wearable, "demo upstreams listening");
    Ok(DemoUpstreams { his, wearable })
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BindError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| BindError { addr, source })?;
    Ok((listener, bound))
}

fn serve(listener: TcpListener, bound: SocketAddr, router: Router, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let stop = shutdown.cancelled_owned();
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, %bound, "demo upstream stopped");
        }
    });
}
