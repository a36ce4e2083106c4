//! The `his-xml` source kind's own config keys.

use std::sync::Arc;

use medgate_core::config::check_url_template;
use medgate_core::{BuildContext, ConfigIssue, DataSource, SourceConfig};
use serde::Deserialize;

use crate::mapping::{record_path, CompiledMapping, Field, FieldPath, FIELD_COUNT, FIELD_NAMES};
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
///
/// ```toml
/// [sources.mapping]
/// record = "LabResponse/Results/Result"   # the repeating element, from the root
/// [sources.mapping.fields]                # `Elem/Elem`, `Elem/@attr` or `@attr`
/// id = "@id"
/// code = "Test/@loinc"
/// display = "Test"
/// value = "Value"                         # number → Quantity (`<5` keeps its comparator)
/// unit = "Value/@unit"
/// status = "@status"                      # FHIR status code (`final`, `preliminary` …)
/// interpretation = "Flag"                 # `H`, `L`, `N` … (v3 ObservationInterpretation)
/// reference_low = "Range/@low"
/// reference_high = "Range/@high"
/// reference_text = "Range"
/// effective = "CollectedAt"               # RFC 3339 or HL7 TS
/// effective_end = "CollectedUntil"
/// issued = "ReleasedAt"
/// [sources.mapping.constants]             # used where no path gave a value
/// code_system = "http://loinc.org"
/// unit_system = "http://unitsofmeasure.org"
/// category = "laboratory"
/// ```
///
/// How each field's text becomes part of the record is documented on
/// [`MappingFields`]'s keys; nothing in the payload can fail the document except XML that
/// is not well-formed or hostile: an unreadable value or time becomes a warning.
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

/// `[mapping.fields]`: element path, `@attr` or `Elem/@attr` per record field. Every key
/// but `value` is optional; the first occurrence in a record wins.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFields {
    /// Observation id (else the record's index).
    pub id: Option<String>,
    /// Category: a FHIR category code (`laboratory`, `vital-signs` …) gets FHIR's category
    /// system; any other text is kept as a code without system.
    pub category: Option<String>,
    /// Code system URI of `code`.
    pub code_system: Option<String>,
    /// Code.
    pub code: Option<String>,
    /// Display text of the code (the concept's text when there is no code).
    pub display: Option<String>,
    /// Value (required): a number in any lexical form (`00`, `+5`, `.5`, `1E3`) is a
    /// Quantity, a number led by `<`, `<=`, `>=` or `>` a Quantity with that comparator,
    /// anything else a string.
    pub value: String,
    /// Unit of the value (and of the reference range bounds).
    pub unit: Option<String>,
    /// Effective time: RFC 3339/FHIR, else HL7 TS (`20240101083000+0100`); anything else is
    /// left out with a warning.
    pub effective: Option<String>,
    /// Status: a FHIR observation status code; anything else is left out with a warning.
    pub status: Option<String>,
    /// Code system of `unit` (e.g. `http://unitsofmeasure.org`); with it, the unit is also
    /// the quantity's code.
    pub unit_system: Option<String>,
    /// Comparator of a numeric value (`<`, `<=`, `>=`, `>`), overriding one written before
    /// the number; anything else makes the value unreadable.
    pub comparator: Option<String>,
    /// Interpretation: a v3 ObservationInterpretation code (`H`, `LL`, `N`, `POS` …) is
    /// coded in that system; other text is kept as text.
    pub interpretation: Option<String>,
    /// Low bound of the normal range (a number, in `unit`).
    pub reference_low: Option<String>,
    /// High bound of the normal range (a number, in `unit`).
    pub reference_high: Option<String>,
    /// The normal range as text (`3.5-5.1`, `negative`).
    pub reference_text: Option<String>,
    /// End of the effective period (read like `effective`); with it, effective is a period.
    pub effective_end: Option<String>,
    /// When the result was released (read like `effective`).
    pub issued: Option<String>,
}

impl MappingFields {
    pub(crate) fn entries(&self) -> [(Field, Option<&str>); FIELD_COUNT] {
        [
            (Field::Id, self.id.as_deref()),
            (Field::Category, self.category.as_deref()),
            (Field::CodeSystem, self.code_system.as_deref()),
            (Field::Code, self.code.as_deref()),
            (Field::Display, self.display.as_deref()),
            (Field::Value, Some(self.value.as_str())),
            (Field::Unit, self.unit.as_deref()),
            (Field::Effective, self.effective.as_deref()),
            (Field::Status, self.status.as_deref()),
            (Field::UnitSystem, self.unit_system.as_deref()),
            (Field::Comparator, self.comparator.as_deref()),
            (Field::Interpretation, self.interpretation.as_deref()),
            (Field::ReferenceLow, self.reference_low.as_deref()),
            (Field::ReferenceHigh, self.reference_high.as_deref()),
            (Field::ReferenceText, self.reference_text.as_deref()),
            (Field::EffectiveEnd, self.effective_end.as_deref()),
            (Field::Issued, self.issued.as_deref()),
        ]
    }
}

/// `[mapping.constants]`: fixed values for fields that describe the whole source (not
/// `value`, times, or anything else that can only differ per record).
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
    /// Status (e.g. `final` for a source that only sends released results).
    pub status: Option<String>,
    /// Code system of the unit (e.g. `http://unitsofmeasure.org`).
    pub unit_system: Option<String>,
    /// Low bound of the normal range, for a source whose results share one range.
    pub reference_low: Option<String>,
    /// High bound of the normal range.
    pub reference_high: Option<String>,
    /// The normal range as text.
    pub reference_text: Option<String>,
}

impl MappingConstants {
    pub(crate) fn entries(&self) -> [(Field, Option<&str>); 12] {
        [
            (Field::Id, self.id.as_deref()),
            (Field::Category, self.category.as_deref()),
            (Field::CodeSystem, self.code_system.as_deref()),
            (Field::Code, self.code.as_deref()),
            (Field::Display, self.display.as_deref()),
            (Field::Unit, self.unit.as_deref()),
            (Field::Effective, self.effective.as_deref()),
            (Field::Status, self.status.as_deref()),
            (Field::UnitSystem, self.unit_system.as_deref()),
            (Field::ReferenceLow, self.reference_low.as_deref()),
            (Field::ReferenceHigh, self.reference_high.as_deref()),
            (Field::ReferenceText, self.reference_text.as_deref()),
        ]
    }
}

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
    if let Some(status) = &mapping.constants.status {
        if medgate_core::Status::from_fhir(status).is_none() {
            issues.push(ConfigIssue::new(
                "mapping.constants.status",
                "must be a FHIR observation status (registered, preliminary, final, amended, \
                 corrected, cancelled, entered-in-error, unknown)",
            ));
        }
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
