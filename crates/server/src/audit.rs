//! Recording data accesses in the audit trail before the response completes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use medgate_audit::AuditEntry;

use crate::access::Partner;
use crate::problem::ApiError;
use crate::routes::RequestId;
use crate::state::AppState;

/// Who asked for what; completed with the outcome by [`Access::finish`].
pub struct Access {
    state: AppState,
    request_id: String,
    partner: String,
    route: &'static str,
    source: Option<String>,
    patient_ids: Vec<String>,
}

impl Access {
    /// An access by `partner` on `route`.
    pub fn new(
        state: &AppState,
        request_id: &RequestId,
        partner: &Partner,
        route: &'static str,
    ) -> Self {
        Access {
            state: state.clone(),
            request_id: request_id.as_str().to_owned(),
            partner: partner.name.clone(),
            route,
            source: None,
            patient_ids: Vec::new(),
        }
    }

    /// Names the source.
    pub fn source(mut self, source: &str) -> Self {
        self.source = Some(source.to_owned());
        self
    }

    /// Names the patients.
    pub fn patients(mut self, ids: Vec<String>) -> Self {
        self.patient_ids = ids;
        self
    }

    /// Appends the entry; the data may be served only if this succeeds.
    ///
    /// # Errors
    /// [`ApiError::AuditUnavailable`] when the trail cannot be written.
    pub async fn finish(
        self,
        status: StatusCode,
        outcome: &str,
        records: u64,
    ) -> Result<(), ApiError> {
        let entry = AuditEntry {
            request_id: self.request_id,
            partner: self.partner,
            route: self.route.to_owned(),
            source: self.source,
            patient_ids: self.patient_ids,
            records,
            status: status.as_u16(),
            outcome: outcome.to_owned(),
        };
        self.state
            .services()
            .audit
            .append(entry)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "audit trail write failed; refusing to serve data");
                metrics::counter!("medgate_audit_failures_total").increment(1);
                ApiError::AuditUnavailable
            })
    }

    /// Records the outcome of a handler that answers in one piece, then answers.
    pub async fn respond(self, result: Result<(Response, u64), ApiError>) -> Response {
        let (status, outcome, records) = match &result {
            Ok((response, records)) if response.status().is_success() => {
                (response.status(), "ok", *records)
            }
            Ok((response, records)) => (response.status(), "error", *records),
            Err(e) => (e.status(), e.kind(), 0),
        };
        match self.finish(status, outcome, records).await {
            Ok(()) => result.map_or_else(IntoResponse::into_response, |(response, _)| response),
            Err(e) => e.into_response(),
        }
    }
}
