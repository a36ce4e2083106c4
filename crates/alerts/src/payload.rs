//! The JSON an alert sends: stable, versioned by its `type`, documented here.
//!
//! The envelope is the Standard Webhooks one, `{"type", "timestamp", "data"}`:
//!
//! ```json
//! {
//!   "type": "medgate.rule.fired",
//!   "timestamp": "2026-03-01T00:00:01.5Z",
//!   "data": {
//!     "rule": "tachycardia",
//!     "description": "Heart rate above 120/min",
//!     "source": "epro",
//!     "receipt": "0195…",
//!     "patient_id": "P1",
//!     "report": {"kind": "epro", "partner": "app", "reported_at": "2026-03-01T08:00:00+08:00",
//!                "received_at": "2026-03-01T00:00:00.912Z", "serious_adverse_event": false},
//!     "test": {"code": "8867-4", "above": 120},
//!     "matches": 1,
//!     "observation": {"patient_id": "P1", "source": "epro", "id": "rq1-0-0", "category": "vital-signs",
//!                     "code_system": "http://loinc.org", "code": "8867-4", "display": "Heart rate",
//!                     "value": 121.50, "unit": "/min", "effective": "2026-03-01T07:58:00+08:00", …}
//!   }
//! }
//! ```
//!
//! - `type`: `medgate.rule.fired` ([`RULE_FIRED`]) or `medgate.sae.reported`
//!   ([`SAE_REPORTED`]). A change that could break a receiver gets a new type.
//! - `timestamp`: when the rule fired (RFC 3339, UTC). The HTTP `webhook-timestamp` header
//!   is the time of each attempt instead.
//! - `data.rule`: the rule's name (`sae` for SAEs); `description` only when configured.
//! - `data.source`, `data.receipt`: where the report was posted and its receipt id
//!   (`GET /v1/ingest/{source}/receipts/{receipt}`); `data.patient_id`: the patient.
//! - `data.report`: the report's `kind`, sending `partner`, `reported_at` as written (or
//!   `null`), `received_at`, `serious_adverse_event`.
//! - `data.test`: the rule's `code` token and one of `above`/`below` (a JSON number with
//!   the configured digits) or `equals` (a string).
//! - `data.window` (window rules only): `count`, `within_s`, `observed` (passing readings
//!   found, at least `count`), `since`, `until` (the window counted, RFC 3339 UTC).
//! - `data.matches`: passing readings in this report.
//! - `data.observation`: the reading that fired, in medgate's flat row shape (README,
//!   "The record and its one tabular projection"): `value` is a JSON number with its
//!   written digits, `unit` the UCUM code or unit as written, `effective` RFC 3339 with the
//!   sender's offset; a component's row has `id` `<observation id>#<index>` and the
//!   component's code.
//! - SAE: `data.meta` (what the report carried besides observations: app, device,
//!   questionnaire; only when present), `data.observation_count`, and
//!   `data.observations`: the report's rows in the same flat shape, at most
//!   [`MAX_SAE_ROWS`] (`data.observations_truncated: true` when cut).

use jiff::Timestamp;
use medgate_core::{rows, Row};
use medgate_store::{StoredReport, ValueTest};
use serde_json::{json, Map, Value};

use crate::rules::{Firing, Hit, Rule};

/// `type` of a rule's alert.
pub const RULE_FIRED: &str = "medgate.rule.fired";
/// `type` of a serious adverse event's alert.
pub const SAE_REPORTED: &str = "medgate.sae.reported";
/// Most observation rows an SAE payload carries.
pub const MAX_SAE_ROWS: usize = 100;

/// The payload of `rule` firing on `report`.
pub(crate) fn rule(
    rule: &Rule,
    report: &StoredReport,
    firing: &Firing<'_>,
    now: Timestamp,
) -> Value {
    let mut data = Map::new();
    data.insert("rule".into(), json!(rule.name));
    if let Some(d) = &rule.description {
        data.insert("description".into(), json!(d));
    }
    insert_report(&mut data, report);
    data.insert("test".into(), test(rule));
    if let (Some(w), Some(counted)) = (rule.window, firing.window) {
        data.insert(
            "window".into(),
            json!({
                "count": w.count,
                "within_s": w.within.as_secs(),
                "observed": counted.observed,
                "since": counted.since.to_string(),
                "until": counted.until.to_string(),
            }),
        );
    }
    data.insert("matches".into(), json!(firing.matches));
    data.insert("observation".into(), hit_row(firing.hit));
    envelope(RULE_FIRED, now, data)
}

/// The payload of a serious adverse event.
pub(crate) fn sae(report: &StoredReport, now: Timestamp) -> Value {
    let mut data = Map::new();
    data.insert("rule".into(), json!(crate::rules::SAE_RULE));
    insert_report(&mut data, report);
    if let Some(meta) = &report.meta {
        data.insert("meta".into(), meta.clone());
    }
    data.insert("observation_count".into(), json!(report.observations.len()));
    let all = report.observations.iter().flat_map(rows);
    let mut shown: Vec<Value> = Vec::new();
    let mut truncated = false;
    for row in all {
        if shown.len() == MAX_SAE_ROWS {
            truncated = true;
            break;
        }
        shown.push(row_json(&row));
    }
    data.insert("observations".into(), Value::Array(shown));
    if truncated {
        data.insert("observations_truncated".into(), json!(true));
    }
    envelope(SAE_REPORTED, now, data)
}

fn envelope(kind: &str, now: Timestamp, data: Map<String, Value>) -> Value {
    json!({"type": kind, "timestamp": now.to_string(), "data": Value::Object(data)})
}

fn insert_report(data: &mut Map<String, Value>, report: &StoredReport) {
    data.insert("source".into(), json!(report.source));
    data.insert("receipt".into(), json!(report.receipt));
    data.insert("patient_id".into(), json!(report.patient_id));
    data.insert(
        "report".into(),
        json!({
            "kind": report.kind,
            "partner": report.partner,
            "reported_at": report.reported_at.as_ref().map(ToString::to_string),
            "received_at": report.received_at.to_string(),
            "serious_adverse_event": report.serious_adverse_event,
        }),
    );
}

fn test(rule: &Rule) -> Value {
    let (name, value) = match &rule.test {
        ValueTest::Above(d) => ("above", number(d)),
        ValueTest::Below(d) => ("below", number(d)),
        ValueTest::Equals(s) => ("equals", json!(s)),
    };
    let mut test = Map::new();
    test.insert("code".into(), json!(rule.code_token));
    test.insert(name.into(), value);
    Value::Object(test)
}

/// A decimal as a JSON number with its written digits.
fn number(d: &medgate_core::Decimal) -> Value {
    serde_json::to_value(d).unwrap_or_else(|_| json!(d.as_str()))
}

/// The flat row of the reading that fired.
fn hit_row(hit: Hit<'_>) -> Value {
    let id = match hit.component {
        None => hit.obs.id.clone(),
        Some(i) => format!("{}#{i}", hit.obs.id),
    };
    rows(hit.obs)
        .find(|r| r.get(medgate_core::row::col::ID).as_text() == id.as_str())
        .map(|r| row_json(&r))
        .unwrap_or(Value::Null)
}

fn row_json(row: &Row<'_>) -> Value {
    // Serializing a row cannot fail (strings, numbers and booleans only); `null` if it did.
    serde_json::to_value(row).unwrap_or(Value::Null)
}
