//! `GET /v1/alerts`: the query, the JSON answer ([`AlertList`] of [`AlertView`]) and
//! [`list_alerts`].
//!
//! Alerts are listed newest first; a page ends with `next_before_id` when more may follow
//! (pass it as `before_id`). The `payload` is the JSON sent to the webhook, embedded as is;
//! it names the patient, so the route serving it is a data access (audit it).

use medgate_store::{Alert, AlertQuery, AlertState, Store};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::AlertsError;

/// Most alerts one page may hold.
pub const MAX_LIMIT: u32 = 1000;
/// Alerts on a page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 100;

/// The query string of `GET /v1/alerts`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertListParams {
    /// Only alerts in this delivery state.
    #[param(inline)]
    pub state: Option<AlertStateView>,
    /// Only alerts older than this id (the `next_before_id` of the previous page).
    #[param(minimum = 1)]
    pub before_id: Option<i64>,
    /// Most alerts to return (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Delivery state of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertStateView {
    /// Waiting for its first or next attempt.
    Pending,
    /// An attempt is under way.
    Delivering,
    /// The webhook answered 2xx.
    Delivered,
    /// Dead-lettered: the last attempt failed.
    Dead,
}

impl From<AlertState> for AlertStateView {
    fn from(s: AlertState) -> Self {
        match s {
            AlertState::Pending => AlertStateView::Pending,
            AlertState::Delivering => AlertStateView::Delivering,
            AlertState::Delivered => AlertStateView::Delivered,
            AlertState::Dead => AlertStateView::Dead,
        }
    }
}

impl From<AlertStateView> for AlertState {
    fn from(s: AlertStateView) -> Self {
        match s {
            AlertStateView::Pending => AlertState::Pending,
            AlertStateView::Delivering => AlertState::Delivering,
            AlertStateView::Delivered => AlertState::Delivered,
            AlertStateView::Dead => AlertState::Dead,
        }
    }
}

/// One alert and how its delivery went.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    /// Its id (newer alerts have larger ids); also part of the `webhook-id` header.
    pub id: i64,
    /// The rule that fired (`sae` for a serious adverse event).
    pub rule: String,
    /// The webhook it goes to.
    pub webhook: String,
    /// The source of the report that fired it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// That report's receipt id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// Delivery state.
    pub state: AlertStateView,
    /// Attempts made so far.
    pub attempts: u32,
    /// HTTP status of the last attempt, when the webhook answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it fired (RFC 3339, UTC).
    pub created_at: String,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
    /// When the next attempt is due (pending alerts only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// When the webhook accepted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// The JSON sent (see the crate docs, `payload` module, for its fields).
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
}

impl AlertView {
    /// The view of a stored alert.
    pub fn from_alert(a: Alert) -> AlertView {
        // Stored payloads are JSON written by this crate; a damaged one is shown as `null`.
        let payload =
            RawValue::from_string(a.payload).unwrap_or_else(|_| RawValue::NULL.to_owned());
        AlertView {
            id: a.id,
            rule: a.rule,
            webhook: a.webhook,
            source: a.source,
            receipt: a.receipt,
            state: a.state.into(),
            attempts: a.attempts,
            last_status: a.last_status,
            last_error: a.last_error,
            created_at: a.created_at.to_string(),
            updated_at: a.updated_at.to_string(),
            next_attempt_at: (a.state == AlertState::Pending)
                .then(|| a.next_attempt_at.to_string()),
            delivered_at: a.delivered_at.map(|t| t.to_string()),
            payload,
        }
    }
}

/// The answer of `GET /v1/alerts`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertList {
    /// Newest first.
    pub alerts: Vec<AlertView>,
    /// Pass as `before_id` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before_id: Option<i64>,
}

/// One page of alerts.
///
/// # Errors
/// [`AlertsError::BadQuery`] for a `limit` outside 1..=1000 or a `before_id` below 1 (400);
/// store errors.
pub async fn list_alerts(
    store: &Store,
    params: &AlertListParams,
) -> Result<AlertList, AlertsError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AlertsError::BadQuery(format!(
            "limit must be in 1..={MAX_LIMIT}"
        )));
    }
    if params.before_id.is_some_and(|id| id < 1) {
        return Err(AlertsError::BadQuery("before_id must be at least 1".into()));
    }
    let alerts = store
        .alerts(AlertQuery {
            state: params.state.map(Into::into),
            before_id: params.before_id,
            limit,
        })
        .await?;
    let full = alerts.len() == limit as usize;
    let next_before_id = if full {
        alerts.last().map(|a| a.id)
    } else {
        None
    };
    Ok(AlertList {
        alerts: alerts.into_iter().map(AlertView::from_alert).collect(),
        next_before_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::{IntoParams, PartialSchema};

    #[test]
    fn the_openapi_schema_describes_the_answer() {
        let view = serde_json::to_value(AlertView::schema()).unwrap();
        let props = &view["properties"];
        assert_eq!(props["payload"]["type"], "object");
        assert_eq!(props["id"]["type"], "integer");
        let required: Vec<&str> = view["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(required.contains(&"state") && !required.contains(&"last_status"));
        let state = serde_json::to_value(AlertStateView::schema()).unwrap();
        assert_eq!(
            state["enum"],
            serde_json::json!(["pending", "delivering", "delivered", "dead"])
        );
        let params = AlertListParams::into_params(|| None);
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["state", "before_id", "limit"]);
    }

    #[test]
    fn a_view_embeds_the_payload_and_shows_only_what_applies() {
        let t = jiff::Timestamp::from_second(1_772_323_200).unwrap();
        let alert = Alert {
            id: 7,
            rule: "tachycardia".into(),
            webhook: "safety".into(),
            receipt: Some("r1".into()),
            source: Some("epro".into()),
            payload: r#"{"value":121.50}"#.into(),
            state: AlertState::Delivered,
            attempts: 2,
            last_status: Some(200),
            last_error: None,
            created_at: t,
            updated_at: t,
            next_attempt_at: t,
            delivered_at: Some(t),
        };
        let json = serde_json::to_string(&AlertView::from_alert(alert)).unwrap();
        assert_eq!(
            json,
            r#"{"id":7,"rule":"tachycardia","webhook":"safety","source":"epro","receipt":"r1","state":"delivered","attempts":2,"last_status":200,"created_at":"2026-03-01T00:00:00Z","updated_at":"2026-03-01T00:00:00Z","delivered_at":"2026-03-01T00:00:00Z","payload":{"value":121.50}}"#
        );
    }
}
