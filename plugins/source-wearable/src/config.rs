//! The `wearable-json` source config: its own keys of a `[[sources]]` entry.

use std::sync::Arc;

use medgate_core::config::check_url_template;
use medgate_core::{
    BuildContext, ConfigIssue, DataSource, Decimal, Error, Result, SourceConfig, Status,
};
use serde::Deserialize;

use crate::json::is_valid_pointer;
use crate::parse::{DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT};
use crate::source::WearableSource;
use crate::units;
use crate::PayloadFormat;

/// Config of one `wearable-json` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WearableConfig {
    /// Upstream URL template containing `{patient_id}`.
    pub url: String,
    /// Payload format.
    pub format: Format,
    /// Largest JSON nesting depth accepted (1..=128).
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Required iff `format = "mapping"`.
    #[serde(default)]
    pub mapping: Option<Mapping>,
}

fn default_max_depth() -> usize {
    DEFAULT_MAX_DEPTH
}

/// `format = "openmhealth" | "mapping"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Open mHealth data points.
    #[serde(rename = "openmhealth")]
    OpenMHealth,
    /// Arbitrary JSON described by `[mapping]`.
    Mapping,
}

impl Format {
    /// The name used in the config and in `GET /v1/sources`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::OpenMHealth => "openmhealth",
            Format::Mapping => "mapping",
        }
    }
}

/// `[mapping]`: where records and their fields are, as RFC 6901 JSON Pointers.
///
/// Every record (an element of the array at `records`) becomes one observation. Each field
/// is read through a pointer relative to the record; where a field has no pointer, or its
/// pointer finds nothing, the constant of the same name is used (if the table has one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Pointer to the array of records (`""` = the root array).
    pub records: String,
    /// Pointers relative to each record.
    pub fields: Fields,
    /// Constant strings used where a field has no pointer or the pointer finds nothing.
    #[serde(default)]
    pub constants: Constants,
}

/// `[mapping.fields]`: JSON Pointers relative to a record. Only `value` is required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// Observation id (defaults to the record's own pointer, e.g. `/weight/2`).
    pub id: Option<String>,
    /// FHIR status code (`final`, `preliminary`, …); another text is a warning.
    pub status: Option<String>,
    /// Category: a FHIR observation-category code (`vital-signs`, `activity`, …) gets
    /// FHIR's category system; any other text is kept as a code without a system.
    pub category: Option<String>,
    /// Code system of `code`.
    pub code_system: Option<String>,
    /// Code.
    pub code: Option<String>,
    /// Display of `code` (the concept's text when there is no code).
    pub display: Option<String>,
    /// The value (required; `Option` only so that its absence is reported by `validate`). A
    /// JSON number, or a string holding a number in any lexical form (`"64.2"`, `"+5"`,
    /// `".5"`, optionally after `<`, `<=`, `>=` or `>`), is a quantity; another string is
    /// text; a boolean is a boolean.
    pub value: Option<String>,
    /// The comparator of a numeric value (`<`, `<=`, `>=`, `>`).
    pub comparator: Option<String>,
    /// Unit as written. Without `unit_system` it goes through the unit table: a known unit
    /// gets its UCUM code, an unknown one is kept as text with a warning.
    pub unit: Option<String>,
    /// Code system of `unit`: when set, `unit` is taken as a code of that system as is.
    pub unit_system: Option<String>,
    /// Interpretation: a HL7 v3 ObservationInterpretation code (`H`, `L`, `N`, `A` …) gets
    /// that system; any other text is kept as text.
    pub interpretation: Option<String>,
    /// Low bound of the normal range (a number, in the value's unit).
    pub reference_low: Option<String>,
    /// High bound of the normal range (a number, in the value's unit).
    pub reference_high: Option<String>,
    /// The normal range as text.
    pub reference_text: Option<String>,
    /// Effective date or date-time (a time without an offset stays local).
    pub effective: Option<String>,
    /// A time of day joined to a date-only `effective`.
    pub effective_time: Option<String>,
    /// End of the effective period (date or date-time).
    pub effective_end: Option<String>,
    /// A time of day joined to a date-only `effective_end`.
    pub effective_end_time: Option<String>,
    /// Length of the effective period, in `constants.duration_unit`; gives the end when
    /// `effective_end` does not.
    pub duration: Option<String>,
    /// When the result was made available (`issued`).
    pub issued: Option<String>,
    /// The device's name.
    pub device: Option<String>,
}

/// `[mapping.constants]`: fixed strings per field (there is deliberately no constant value,
/// comparator or interpretation: those belong to each result).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constants {
    /// Status, e.g. `final`.
    pub status: Option<String>,
    /// Category, e.g. `vital-signs`.
    pub category: Option<String>,
    /// Code system, e.g. `http://loinc.org`.
    pub code_system: Option<String>,
    /// Code, e.g. `29463-7`.
    pub code: Option<String>,
    /// Display, e.g. `Body weight`.
    pub display: Option<String>,
    /// Unit, e.g. `kg`.
    pub unit: Option<String>,
    /// Code system of the unit, e.g. `http://unitsofmeasure.org` (see `fields.unit_system`).
    pub unit_system: Option<String>,
    /// Low bound of the normal range, e.g. `60`.
    pub reference_low: Option<String>,
    /// High bound of the normal range, e.g. `100`.
    pub reference_high: Option<String>,
    /// The normal range as text.
    pub reference_text: Option<String>,
    /// Unit of `fields.duration`: `ms`, `s` (or `sec`), `min`, `h`, `d`, `wk`, `mo`, `a`.
    pub duration_unit: Option<String>,
    /// The device's name, e.g. `Fitbit Charge 2`.
    pub device: Option<String>,
}

impl Fields {
    /// `(name, pointer)` of every field that is set, in a fixed order.
    pub(crate) fn set(&self) -> Vec<(&'static str, &str)> {
        [
            ("id", &self.id),
            ("status", &self.status),
            ("category", &self.category),
            ("code_system", &self.code_system),
            ("code", &self.code),
            ("display", &self.display),
            ("value", &self.value),
            ("comparator", &self.comparator),
            ("unit", &self.unit),
            ("unit_system", &self.unit_system),
            ("interpretation", &self.interpretation),
            ("reference_low", &self.reference_low),
            ("reference_high", &self.reference_high),
            ("reference_text", &self.reference_text),
            ("effective", &self.effective),
            ("effective_time", &self.effective_time),
            ("effective_end", &self.effective_end),
            ("effective_end_time", &self.effective_end_time),
            ("duration", &self.duration),
            ("issued", &self.issued),
            ("device", &self.device),
        ]
        .into_iter()
        .filter_map(|(name, p)| p.as_deref().map(|p| (name, p)))
        .collect()
    }
}

impl WearableConfig {
    /// The parser's view of `format` + `mapping`; `None` when a mapping is required but absent.
    pub fn payload_format(&self) -> Option<PayloadFormat> {
        match self.format {
            Format::OpenMHealth => Some(PayloadFormat::OpenMHealth),
            Format::Mapping => self
                .mapping
                .clone()
                .map(|m| PayloadFormat::Mapping(Box::new(m))),
        }
    }

    fn mapping_issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        match (self.format, &self.mapping) {
            (Format::Mapping, None) => issues.push(ConfigIssue::new(
                "mapping",
                "required when format = \"mapping\"",
            )),
            (Format::OpenMHealth, Some(_)) => issues.push(ConfigIssue::new(
                "mapping",
                "only allowed when format = \"mapping\"",
            )),
            (Format::Mapping, Some(m)) => issues.extend(pointer_issues(m)),
            (Format::OpenMHealth, None) => {}
        }
        issues
    }
}

const POINTER_RULE: &str = "must be a JSON Pointer: \"\" or starting with \"/\" (escape ~ as ~0)";

fn pointer_issues(m: &Mapping) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    if !is_valid_pointer(&m.records) {
        issues.push(ConfigIssue::new("mapping.records", POINTER_RULE));
    }
    for (name, pointer) in m.fields.set() {
        if !is_valid_pointer(pointer) {
            issues.push(ConfigIssue::new(
                format!("mapping.fields.{name}"),
                POINTER_RULE,
            ));
        }
    }
    if m.fields.value.is_none() {
        issues.push(ConfigIssue::new("mapping.fields.value", "is required"));
    }
    issues.extend(constant_issues(m));
    issues
}

/// Constants are checked once here instead of warning on every record.
fn constant_issues(m: &Mapping) -> Vec<ConfigIssue> {
    let c = &m.constants;
    let mut issues = Vec::new();
    if let Some(status) = &c.status {
        if Status::from_fhir(status).is_none() {
            issues.push(ConfigIssue::new(
                "mapping.constants.status",
                "must be a FHIR observation status (registered, preliminary, final, amended, \
                 corrected, cancelled, entered-in-error, unknown)",
            ));
        }
    }
    for (name, bound) in [
        ("reference_low", &c.reference_low),
        ("reference_high", &c.reference_high),
    ] {
        if bound
            .as_deref()
            .is_some_and(|b| Decimal::parse_lenient(b).is_none())
        {
            issues.push(ConfigIssue::new(
                format!("mapping.constants.{name}"),
                "must be a number",
            ));
        }
    }
    match (&m.fields.duration, &c.duration_unit) {
        (Some(_), None) => issues.push(ConfigIssue::new(
            "mapping.constants.duration_unit",
            "is required when fields.duration is set",
        )),
        (_, Some(unit)) if units::duration_code(unit).is_none() => issues.push(ConfigIssue::new(
            "mapping.constants.duration_unit",
            "must be a duration unit: ms, s, min, h, d, wk, mo or a",
        )),
        _ => {}
    }
    issues
}

impl SourceConfig for WearableConfig {
    fn format(&self) -> Option<&str> {
        Some(self.format.as_str())
    }

    fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = check_url_template("url", &self.url);
        if !(1..=MAX_DEPTH_LIMIT).contains(&self.max_depth) {
            issues.push(ConfigIssue::new(
                "max_depth",
                format!("must be between 1 and {MAX_DEPTH_LIMIT}"),
            ));
        }
        issues.extend(self.mapping_issues());
        issues
    }

    fn build(&self, ctx: BuildContext) -> Result<Arc<dyn DataSource>> {
        let format = self.payload_format().ok_or_else(|| {
            Error::Internal(format!(
                "source {} has format = \"mapping\" but no [mapping]",
                ctx.source_name
            ))
        })?;
        Ok(Arc::new(WearableSource::new(
            ctx,
            &self.url,
            format,
            self.max_depth,
        )))
    }
}
