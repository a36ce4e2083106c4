//! The `wearable-json` source config: its own keys of a `[[sources]]` entry.

use std::sync::Arc;

use medgate_core::config::check_url_template;
use medgate_core::{BuildContext, ConfigIssue, DataSource, Error, Result, SourceConfig};
use serde::Deserialize;

use crate::json::is_valid_pointer;
use crate::parse::{DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT};
use crate::source::WearableSource;
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

/// `[mapping.fields]`: JSON Pointers relative to a record.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// Observation id (defaults to the record's own pointer, e.g. `/weight/2`).
    pub id: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Code system.
    pub code_system: Option<String>,
    /// Code.
    pub code: Option<String>,
    /// Display.
    pub display: Option<String>,
    /// The value (required; `Option` only so that its absence is reported by `validate`).
    pub value: Option<String>,
    /// Unit.
    pub unit: Option<String>,
    /// Effective date or date-time.
    pub effective: Option<String>,
    /// A time of day joined to a date-only `effective`.
    pub effective_time: Option<String>,
}

/// `[mapping.constants]`: fixed strings per field (there is deliberately no constant value).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constants {
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
}

impl Fields {
    /// `(name, pointer)` of every field that is set, in a fixed order.
    pub(crate) fn set(&self) -> Vec<(&'static str, &str)> {
        [
            ("id", &self.id),
            ("category", &self.category),
            ("code_system", &self.code_system),
            ("code", &self.code),
            ("display", &self.display),
            ("value", &self.value),
            ("unit", &self.unit),
            ("effective", &self.effective),
            ("effective_time", &self.effective_time),
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
