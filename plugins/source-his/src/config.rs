//! The `his-xml` source kind's own config keys.

use std::sync::Arc;

use medgate_core::config::check_url_template;
use medgate_core::{BuildContext, ConfigIssue, DataSource, SourceConfig};
use serde::Deserialize;

use crate::mapping::{record_path, CompiledMapping, Field, FieldPath};
use crate::source::HisSource;
use crate::xml::DEFAULT_MAX_DEPTH;
use crate::Parser;

/// Payload format of a `his-xml` source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HisFormat {
    /// FHIR R4 XML (`Bundle` or `Observation`).
    FhirR4,
    /// HL7 CDA R2 / C-CDA document.
    Cda,
    /// Config-described XML (`[mapping]`).
    Mapping,
}

impl HisFormat {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HisFormat::FhirR4 => "fhir-r4",
            HisFormat::Cda => "cda",
            HisFormat::Mapping => "mapping",
        }
    }
}

/// One `[[sources]]` entry of kind `his-xml` (common keys already stripped).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HisConfig {
    /// URL template containing `{patient_id}`.
    pub url: String,
    /// Payload format.
    pub format: HisFormat,
    /// Maximum element nesting depth (default 64).
    #[serde(default)]
    pub max_depth: Option<usize>,
    /// Required iff `format = "mapping"`.
    #[serde(default)]
    pub mapping: Option<MappingConfig>,
}

/// `[mapping]`: where records and fields are in a custom XML payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Slash path of the repeating record element, from the root.
    pub record: String,
    /// Field paths relative to the record.
    pub fields: MappingFields,
    /// Constant field values, used where no path gave a value.
    #[serde(default)]
    pub constants: MappingConstants,
}

/// `[mapping.fields]`: element path, `@attr` or `Elem/@attr` per Observation field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFields {
    /// Observation id (else the record index).
    pub id: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Code system.
    pub code_system: Option<String>,
    /// Code.
    pub code: Option<String>,
    /// Display.
    pub display: Option<String>,
    /// Value (required).
    pub value: String,
    /// Unit.
    pub unit: Option<String>,
    /// Effective time.
    pub effective: Option<String>,
}

impl MappingFields {
    pub(crate) fn entries(&self) -> [(Field, Option<&str>); 8] {
        [
            (Field::Id, self.id.as_deref()),
            (Field::Category, self.category.as_deref()),
            (Field::CodeSystem, self.code_system.as_deref()),
            (Field::Code, self.code.as_deref()),
            (Field::Display, self.display.as_deref()),
            (Field::Value, Some(self.value.as_str())),
            (Field::Unit, self.unit.as_deref()),
            (Field::Effective, self.effective.as_deref()),
        ]
    }
}

/// `[mapping.constants]`: fixed values for fields (not `value`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConstants {
    /// Observation id.
    pub id: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Code system.
    pub code_system: Option<String>,
    /// Code.
    pub code: Option<String>,
    /// Display.
    pub display: Option<String>,
    /// Unit.
    pub unit: Option<String>,
    /// Effective time.
    pub effective: Option<String>,
}

impl MappingConstants {
    pub(crate) fn entries(&self) -> [(Field, Option<&str>); 7] {
        [
            (Field::Id, self.id.as_deref()),
            (Field::Category, self.category.as_deref()),
            (Field::CodeSystem, self.code_system.as_deref()),
            (Field::Code, self.code.as_deref()),
            (Field::Display, self.display.as_deref()),
            (Field::Unit, self.unit.as_deref()),
            (Field::Effective, self.effective.as_deref()),
        ]
    }
}

const FIELD_NAMES: [&str; 8] = [
    "id",
    "category",
    "code_system",
    "code",
    "display",
    "value",
    "unit",
    "effective",
];

impl HisConfig {
    /// The effective nesting limit.
    pub fn max_depth(&self) -> usize {
        self.max_depth.unwrap_or(DEFAULT_MAX_DEPTH)
    }

    /// The parser this config describes; `None` if the config does not validate.
    pub fn parser(&self) -> Option<Parser> {
        match (self.format, &self.mapping) {
            (HisFormat::FhirR4, None) => Some(Parser::FhirR4),
            (HisFormat::Cda, None) => Some(Parser::Cda),
            (HisFormat::Mapping, Some(mapping)) => {
                CompiledMapping::compile(mapping).map(|m| Parser::Mapping(Arc::new(m)))
            }
            _ => None,
        }
    }
}

fn mapping_issues(mapping: &MappingConfig) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    if mapping.record.trim().is_empty() {
        issues.push(ConfigIssue::new("mapping.record", "must not be empty"));
    } else if record_path(&mapping.record).is_none() {
        issues.push(ConfigIssue::new(
            "mapping.record",
            "must be a slash path of element names with no empty segments and no attributes",
        ));
    }
    for (field, path) in mapping.fields.entries() {
        if path.is_some_and(|p| FieldPath::parse(p).is_none()) {
            issues.push(ConfigIssue::new(
                format!("mapping.fields.{}", FIELD_NAMES[field as usize]),
                "must be `Elem/Elem`, `@attr` or `Elem/@attr` with no empty segments",
            ));
        }
    }
    issues
}

impl SourceConfig for HisConfig {
    fn format(&self) -> Option<&str> {
        Some(self.format.as_str())
    }

    fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = check_url_template("url", &self.url);
        if self.max_depth == Some(0) {
            issues.push(ConfigIssue::new("max_depth", "must be at least 1"));
        }
        match (self.format, &self.mapping) {
            (HisFormat::Mapping, None) => issues.push(ConfigIssue::new(
                "mapping",
                "is required when format = \"mapping\"",
            )),
            (HisFormat::Mapping, Some(mapping)) => issues.extend(mapping_issues(mapping)),
            (_, Some(_)) => issues.push(ConfigIssue::new(
                "mapping",
                "is only allowed when format = \"mapping\"",
            )),
            (_, None) => {}
        }
        issues
    }

    fn build(&self, ctx: BuildContext) -> medgate_core::Result<Arc<dyn DataSource>> {
        let parser = self.parser().ok_or_else(|| {
            medgate_core::Error::Internal(format!(
                "source {}: his-xml config did not validate",
                ctx.source_name
            ))
        })?;
        Ok(Arc::new(HisSource::new(
            self.url.clone(),
            parser,
            self.max_depth(),
            ctx,
        )))
    }
}
