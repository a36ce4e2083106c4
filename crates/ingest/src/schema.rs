//! medgate's report JSON as Rust types, for the OpenAPI document (`utoipa::ToSchema`) and for
//! clients and tests that build bodies in Rust (`serde`).
//!
//! These types *describe* the body; [`crate::report`] *reads* it (by hand, so that every bad
//! field is reported, not only the first). A test keeps the two in step: the properties of
//! every schema here are exactly the fields the reader knows, and every code the reader
//! accepts is listed in the schema's description.
//!
//! Unknown fields are refused (`additionalProperties: false`); `null` means absent.
//!
//! For the server: register [`ReportBody`] as the `application/json` request body of
//! `POST /v1/ingest/{source}` (its `oneOf` is one report or an array of 1–1000), and the
//! components with
//! `components(schemas(ReportBody, ReportJson, ItemJson, ComponentJson, ItemValue, CodedValue, EffectiveJson, PeriodJson, RangeJson, AppJson, DeviceJson, QuestionnaireJson, ReportKind, Issue))`.

use medgate_core::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ReportKind;

/// The body of `POST /v1/ingest/{source}` as `application/json`: one report, or an array of
/// 1 to 1000 reports (each gets its own receipt, in order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ReportBody {
    /// One report.
    One(Box<ReportJson>),
    /// Several reports.
    Many(Vec<ReportJson>),
}

/// One patient's report: questionnaire answers, self-measurements, device readings, lab
/// results, or an adverse event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "report_id": "2f1c9a7e-0b7d-4a55-9d1e-1c0f5b9b6d21",
    "patient_id": "P000001",
    "reported_at": "2026-03-01T08:00:00+08:00",
    "kind": "epro",
    "app": {"id": "org.example.diary", "version": "3.2.1"},
    "device": {"id": "00-1B-63-84-45-E6", "model": "Omron HEM-7361T"},
    "items": [
        {"code": "8867-4", "code_system": "http://loinc.org", "display": "Heart rate",
         "value": 72, "unit": "/min", "effective": "2026-03-01T07:58:00+08:00"},
        {"code": "85354-9", "code_system": "http://loinc.org", "display": "Blood pressure",
         "effective": "2026-03-01T07:58:00+08:00", "components": [
            {"code": "8480-6", "code_system": "http://loinc.org", "value": 128, "unit": "mm[Hg]"},
            {"code": "8462-4", "code_system": "http://loinc.org", "value": 84, "unit": "mm[Hg]"}]},
        {"code": "q3", "code_system": "urn:example:questionnaire:sleep", "display": "Slept well?",
         "value": true}
    ]
}))]
pub struct ReportJson {
    /// The app's own id of this report (1-64 of `A-Z a-z 0-9 - .`, e.g. a UUID), kept with
    /// the report. Retries are recognised by the `Idempotency-Key` header, not by this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    /// The patient: 1-128 of `A-Z a-z 0-9 - . _ : @ ~`, not `.` or `..`.
    pub patient_id: String,
    /// When the report was made: RFC 3339 with seconds and an offset
    /// (`2026-03-01T08:00:00+08:00`, `…Z`); a time without offset is refused.
    pub reported_at: String,
    /// What the report is; decides the default category of its items.
    pub kind: ReportKind,
    /// `true` marks a serious adverse event: the safety monitor is notified before other work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub serious_adverse_event: bool,
    /// Default FHIR status of the items: `registered`, `preliminary`, `final`, `amended`,
    /// `corrected`, `cancelled`, `entered-in-error`, `unknown`. Absent: no status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The app that sent the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppJson>,
    /// The device that measured the values (becomes each observation's `device`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceJson>,
    /// The questionnaire the answers belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questionnaire: Option<QuestionnaireJson>,
    /// 1 to 500 items; each becomes one observation.
    pub items: Vec<ItemJson>,
}

/// The sending app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppJson {
    /// Its id, e.g. `org.example.diary` (1-1024 characters, no control characters).
    pub id: String,
    /// Its version, e.g. `3.2.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The measuring device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceJson {
    /// Its id (serial number, Bluetooth address, UDI). When it is a valid FHIR id it becomes
    /// the reference `Device/<id>`.
    pub id: String,
    /// Its model, e.g. `Omron HEM-7361T`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The questionnaire answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionnaireJson {
    /// Its canonical URL or id, e.g. `http://loinc.org/q/44249-1` (PHQ-9).
    pub id: String,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One observation: a measurement, an answer, or a panel of components.
///
/// Exactly one of `value`, `components` or `data_absent_reason` says what was observed
/// (`components` may come with a `value`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemJson {
    /// The code, e.g. LOINC `8867-4`, or a questionnaire item's linkId (non-empty, at most
    /// 256 characters, no surrounding whitespace).
    pub code: String,
    /// The code's system as an absolute URI: `http://loinc.org`, `http://snomed.info/sct`,
    /// or the questionnaire's own URI for its items.
    pub code_system: String,
    /// Human-readable name of the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// FHIR observation category: `vital-signs`, `laboratory`, `survey`, `activity`,
    /// `social-history`, `imaging`, `procedure`, `exam`, `therapy`. Absent: `laboratory`
    /// in `lab` reports; `vital-signs` / `activity` for known LOINC codes; `survey` for
    /// answers (text, coded, boolean) and for numbers in `epro` reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The result: a number (kept with its written digits: `98.60` stays `98.60`), a text,
    /// a boolean, or a coded answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ItemValue>,
    /// UCUM unit of a numeric value (`/min`, `mm[Hg]`, `kg`, `Cel`, `{score}`); `mmHg`,
    /// `bpm`, `lbs` and other non-UCUM spellings are refused with the UCUM code to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// For a numeric value beyond a limit: `<`, `<=`, `>=`, `>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparator: Option<String>,
    /// Why there is no value (FHIR data-absent-reason): `unknown`, `asked-unknown`,
    /// `temp-unknown`, `not-asked`, `asked-declined`, `masked`, `not-applicable`,
    /// `unsupported`, `as-text`, `error`, `not-a-number`, `negative-infinity`,
    /// `positive-infinity`, `not-performed`, `not-permitted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_absent_reason: Option<String>,
    /// When it was true: a date (`2026-03-01`, `2026-03`, `2026`), an RFC 3339 date-time
    /// with offset, or a period. Absent: unknown (the observation's `issued` is
    /// `reported_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<EffectiveJson>,
    /// FHIR status of this item, overriding the report's `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// v3 ObservationInterpretation code: `N`, `A`, `AA`, `H`, `HH`, `HU`, `L`, `LL`, `LU`,
    /// `<`, `>`, `POS`, `NEG`, `IND`, `DET`, `ND`, `U`, `D`, `B`, `W`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpretation: Option<String>,
    /// Normal range of a numeric value, in the value's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_range: Option<RangeJson>,
    /// Parts of a panel (blood pressure's systolic and diastolic), at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentJson>,
}

/// One part of a panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentJson {
    /// The code, e.g. LOINC `8480-6` (systolic).
    pub code: String,
    /// The code's system URI.
    pub code_system: String,
    /// Name of the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// The result (required unless `data_absent_reason` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ItemValue>,
    /// UCUM unit of a numeric value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `<`, `<=`, `>=`, `>` for a numeric value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparator: Option<String>,
    /// Why there is no value (codes as for items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_absent_reason: Option<String>,
    /// v3 ObservationInterpretation code (codes as for items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpretation: Option<String>,
}

/// A value: number, text, boolean or coded answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ItemValue {
    /// A number, kept as written.
    #[schema(value_type = f64)]
    Number(Decimal),
    /// A text answer (1 to 10,000 characters).
    Text(String),
    /// A yes/no answer.
    Boolean(bool),
    /// A coded answer.
    Coded(CodedValue),
}

/// A coded answer, e.g. `{"code": "LA6568-5", "system": "http://loinc.org", "display": "Not at all"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodedValue {
    /// The answer's code.
    pub code: String,
    /// The answer code's system URI.
    pub system: String,
    /// Its display text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// When an item was true: a date-time text or a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EffectiveJson {
    /// `2026-03-01T07:58:00+08:00`, `2026-03-01`, `2026-03` or `2026`.
    At(String),
    /// A span of time.
    Period(PeriodJson),
}

/// A span of time (sleep, a day's steps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodJson {
    /// Start (a date or an RFC 3339 date-time with offset).
    pub start: String,
    /// End, not before the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A normal range in the value's unit; at least one of the three.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeJson {
    /// Low bound, inclusive.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_decimal"
    )]
    #[schema(value_type = Option<f64>)]
    pub low: Option<Decimal>,
    /// High bound, inclusive.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_decimal"
    )]
    #[schema(value_type = Option<f64>)]
    pub high: Option<Decimal>,
    /// The range as text, e.g. `<200 mg/dL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

// Untagged enums (`ReportBody`) buffer their input, which a `RawValue` cannot be read from;
// `serde_json::Value` can (with `arbitrary_precision` its numbers keep their text), so
// numbers are read through it.

impl<'de> Deserialize<'de> for ItemValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => Decimal::parse(&n.to_string())
                .map(ItemValue::Number)
                .ok_or_else(|| D::Error::custom("expected a number")),
            serde_json::Value::String(s) => Ok(ItemValue::Text(s)),
            serde_json::Value::Bool(b) => Ok(ItemValue::Boolean(b)),
            object @ serde_json::Value::Object(_) => serde_json::from_value(object)
                .map(ItemValue::Coded)
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(
                "expected a number, a string, a boolean or a coded object",
            )),
        }
    }
}

fn optional_decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    use serde::de::Error as _;
    match Option::<serde_json::Number>::deserialize(d)? {
        Some(n) => Decimal::parse(&n.to_string())
            .map(Some)
            .ok_or_else(|| D::Error::custom("expected a number")),
        None => Ok(None),
    }
}
