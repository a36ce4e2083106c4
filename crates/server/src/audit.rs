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
    /// Fetches that failed in a multi-patient run: (patient id, source, error kind).
    failed: Vec<(String, String, &'static str)>,
    /// Anything else the route records (receipt ids, files).
    extra: Option<serde_json::Value>,
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
            failed: Vec::new(),
            extra: None,
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

    /// Records which fetches of a run failed (the first ones the summary kept).
    pub fn with_summary(mut self, summary: &medgate_pipeline::Summary) -> Self {
        self.failed = summary
            .failures
            .iter()
            .map(|f| {
                let patient = self
                    .patient_ids
                    .get(f.patient_index)
                    .cloned()
                    .unwrap_or_default();
                (patient, f.source.clone(), f.failure.kind)
            })
            .collect();
        self
    }

    /// Records `details` (an object) in the entry.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.extra = Some(details);
        self
    }

    /// The failed fetches and the route's own details as the entry's details.
    fn details(&self) -> Option<serde_json::Value> {
        let mut details = match &self.extra {
            Some(serde_json::Value::Object(map)) => map.clone(),
            _ => serde_json::Map::new(),
        };
        if !self.failed.is_empty() {
            let failed: Vec<serde_json::Value> = self
                .failed
                .iter()
                .map(|(patient, source, kind)| {
                    serde_json::json!({ "patient_id": patient, "source": source, "error": kind })
                })
                .collect();
            details.insert("failed_fetches".into(), failed.into());
        }
        (!details.is_empty()).then_some(serde_json::Value::Object(details))
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
        let details = self.details();
        let entry = AuditEntry {
            request_id: self.request_id,
            partner: self.partner,
            route: self.route.to_owned(),
            source: self.source,
            patient_ids: self.patient_ids,
            records,
            status: status.as_u16(),
            outcome: outcome.to_owned(),
            details,
        };
        let audit = &self.state.services().audit;
        // A refused request sent no data: its line keeps a bounded number of the ids it named.
        let appended = if status.is_client_error() {
            let max = self.state.runtime().audit_max_rejected_ids;
            audit.append_bounded(entry, max).await
        } else {
            audit.append(entry).await
        };
        appended.map_err(|e| {
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
