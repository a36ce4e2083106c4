//! medgate-ingest: pushed bodies to validated reports of observations. Pure: no I/O, no
//! clock, no HTTP types.
//!
//! One entry point, [`parse`]: a `Content-Type`, the body bytes and an [`IngestContext`] in,
//! either every [`Report`] of the body (in body order, each with its core
//! [`Observation`]s) or an [`IngestError`] out: 415 for a media type this crate does not
//! read, 400 for a body that is not well-formed or whose fields are invalid (every bad
//! field with its path, up to [`MAX_ISSUES`]), 413 for more reports, items or segments than
//! one request may carry. A request is all-or-nothing: one bad field refuses the body.
//!
//! Formats ([`MediaType`]):
//! - [`report`]: medgate's report JSON (`application/json`), described for OpenAPI by the
//!   types in [`schema`].
//! - [`bundle`]: FHIR R4 JSON (`application/fhir+json`), a Bundle or one Observation, read
//!   with [`fhir`], a FHIR R4 JSON → [`Observation`] reader other crates may reuse.
//! - [`hl7`]: HL7 v2.x ORU^R01 in ER7 (`x-application/hl7-v2+er7`, `application/hl7-v2`),
//!   with a small strict ER7 parser of its own ([`hl7::er7`]; the module docs say why no
//!   published crate was used).
//!
//! Design decisions:
//! - The body is read once into a borrowed view (JSON: [`json`]; ER7: [`hl7::er7`]) with a
//!   limit on every count, so hostile bodies (deep nesting, huge arrays, one huge field,
//!   invalid UTF-8) end in a clear error after bounded work, never a panic.
//! - Numbers keep their written digits ([`medgate_core::Decimal`]); times keep precision and
//!   offset ([`medgate_core::DateTime`]); a time without offset is never given one.
//! - Errors never quote the body: they carry patient data.
//! - Observation ids are made from [`IngestContext::id_prefix`], the report's index and the
//!   observation's index (`<prefix>-<report>-<n>`), so references between observations of
//!   one body (an HL7 OBR panel's `hasMember`) are final and need no rewriting by the store.
//!   FHIR observations that carry their own `id` keep it.

use std::sync::Arc;

use medgate_core::{DateTime, Observation};
use serde::{Deserialize, Serialize};

pub mod bundle;
mod error;
pub mod fhir;
pub mod hl7;
pub mod json;
pub mod report;
pub mod schema;
pub mod validate;

pub use error::{IngestError, Issue, Issues, MAX_ISSUES};

/// Most reports one body may hold.
pub const MAX_REPORTS: usize = 1_000;
/// Most observations one body may produce (all reports together).
pub const MAX_OBSERVATIONS: usize = 20_000;

/// The body formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// medgate's report JSON: `application/json`.
    ReportJson,
    /// FHIR R4 JSON: `application/fhir+json` (`fhirVersion`, if given, must be 4.0).
    FhirJson,
    /// HL7 v2 ER7: `x-application/hl7-v2+er7`, `application/hl7-v2`,
    /// `application/hl7-v2+er7`.
    Hl7v2,
}

impl MediaType {
    /// The media types accepted, for `415` answers and `Accept-Post`.
    pub const SUPPORTED: &'static [&'static str] = &[
        "application/json",
        "application/fhir+json",
        "x-application/hl7-v2+er7",
        "application/hl7-v2",
    ];

    /// The format of a `Content-Type` header value: the essence is compared without case;
    /// a `charset` parameter must be UTF-8; `fhirVersion` (FHIR only) must be 4.0 (R4).
    pub fn from_content_type(content_type: &str) -> Option<MediaType> {
        let mut parts = content_type.split(';');
        let essence = parts.next()?.trim().to_ascii_lowercase();
        let media = match essence.as_str() {
            "application/json" => MediaType::ReportJson,
            "application/fhir+json" | "application/json+fhir" => MediaType::FhirJson,
            "x-application/hl7-v2+er7" | "application/hl7-v2" | "application/hl7-v2+er7" => {
                MediaType::Hl7v2
            }
            _ => return None,
        };
        for param in parts {
            let (name, value) = param.split_once('=')?;
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().trim_matches('"').to_ascii_lowercase();
            match name.as_str() {
                "charset" if value != "utf-8" && value != "utf8" => return None,
                "fhirversion" if media == MediaType::FhirJson && !value.starts_with("4.0") => {
                    return None
                }
                _ => {}
            }
        }
        Some(media)
    }
}

/// What the caller knows that the body does not say.
#[derive(Debug, Clone)]
pub struct IngestContext {
    /// The `store` source the body is pushed to: every observation's `source`.
    pub source: Arc<str>,
    /// When the server received the body: a report's `reported_at` when the format has no
    /// time of its own (a FHIR Bundle without `timestamp`, a single Observation).
    pub received_at: DateTime,
    /// Unique per request (e.g. 16 hex digits the server draws): observation ids are
    /// `<id_prefix>-<report index>-<observation index>`. Characters outside
    /// `A-Z a-z 0-9 - .` are replaced by `-`.
    pub id_prefix: String,
    /// Which PID-3 identifier is the patient id in HL7 v2 messages.
    pub hl7_patient_id: PatientIdRule,
}

impl IngestContext {
    /// A context with the default [`PatientIdRule`].
    pub fn new(source: &str, received_at: DateTime, id_prefix: &str) -> IngestContext {
        IngestContext {
            source: Arc::from(source),
            received_at,
            id_prefix: id_prefix.to_owned(),
            hl7_patient_id: PatientIdRule::default(),
        }
    }

    pub(crate) fn observation_id(&self, report: usize, n: usize) -> String {
        let prefix: String = self
            .id_prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{prefix}-{report}-{n}")
    }
}

/// How to choose the patient id among the identifiers of HL7 v2 PID-3 (a repeating CX).
///
/// The first repetition that matches both given criteria wins; with neither given, the
/// first repetition whose identifier type (CX-5) is `MR` (medical record number), else the
/// first non-empty one. When PID-3 is empty, PID-2 (the v2.3 external id) is used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientIdRule {
    /// CX-5 identifier type code to match (`MR`, `PI`, `PT` …).
    pub type_code: Option<String>,
    /// CX-4 assigning authority to match: its namespace id (HD-1) or universal id (HD-2).
    pub assigning_authority: Option<String>,
}

/// What a report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// Patient-reported outcomes: diaries, questionnaires, self-measurements from the app.
    Epro,
    /// Measurements sent by a connected device (cuff, scale, wearable) through the app.
    Device,
    /// Laboratory results (HL7 v2 ORU^R01 is always `lab`).
    Lab,
    /// Entered by site staff or taken from a clinical system (an investigator's SAE
    /// report, a hospital's FHIR observations).
    Clinical,
}

impl ReportKind {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Epro => "epro",
            ReportKind::Device => "device",
            ReportKind::Lab => "lab",
            ReportKind::Clinical => "clinical",
        }
    }

    /// The kind of a JSON name.
    pub fn parse(name: &str) -> Option<ReportKind> {
        Some(match name {
            "epro" => ReportKind::Epro,
            "device" => ReportKind::Device,
            "lab" => ReportKind::Lab,
            "clinical" => ReportKind::Clinical,
            _ => return None,
        })
    }
}

/// Software that produced a report (the ePRO app, the sending LIS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Software {
    /// Its id, e.g. `org.example.diary` or HL7 MSH-3.
    pub id: String,
    /// Its version, e.g. `3.2.1`.
    pub version: Option<String>,
}

/// The device that measured a report's values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Its id (serial number, Bluetooth address, UDI …).
    pub id: String,
    /// Its model, e.g. `Omron HEM-7361T`.
    pub model: Option<String>,
}

/// The questionnaire a report answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Questionnaire {
    /// Its canonical URL or id.
    pub id: String,
    /// Its version.
    pub version: Option<String>,
}

/// One patient's report: the unit that gets a receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The patient (validated by the server's patient id rule; never log it).
    pub patient_id: Arc<str>,
    /// What the report is.
    pub kind: ReportKind,
    /// When it was reported: report JSON `reported_at` (always with offset), FHIR
    /// `Bundle.timestamp` or the receive time, HL7 MSH-7 (local when MSH-7 has no offset).
    pub reported_at: DateTime,
    /// A serious adverse event: notify the safety monitor first.
    pub serious_adverse_event: bool,
    /// The sender's id of the report: report JSON `report_id`, FHIR `Bundle.id` (or the
    /// single Observation's id), HL7 MSH-10 message control id.
    pub report_id: Option<String>,
    /// The sending software.
    pub app: Option<Software>,
    /// The measuring device (also each observation's `device`).
    pub device: Option<Device>,
    /// The questionnaire answered.
    pub questionnaire: Option<Questionnaire>,
    /// Where the report is in the body, for receipts and logs: report JSON `/3` (`""` for a
    /// single-object body), FHIR the JSON Pointer of the patient's first entry (`/entry/4`,
    /// `""` for a single Observation), HL7 `PID[1]` or `MSH[2]/PID[1]`.
    pub at: String,
    /// Its observations, in body order.
    pub observations: Vec<Observation>,
}

/// Reads a pushed body.
///
/// # Errors
/// [`IngestError::UnsupportedMediaType`] (415) for a `Content-Type` not in
/// [`MediaType::SUPPORTED`]; [`IngestError::Malformed`] (400) for a body that is not
/// well-formed; [`IngestError::Invalid`] (400) listing every bad field;
/// [`IngestError::TooLarge`] (413) for more reports, items or segments than allowed.
pub fn parse(
    content_type: &str,
    body: &[u8],
    ctx: &IngestContext,
) -> Result<Vec<Report>, IngestError> {
    let media =
        MediaType::from_content_type(content_type).ok_or(IngestError::UnsupportedMediaType)?;
    parse_as(media, body, ctx)
}

/// Reads a body whose format is already known.
///
/// # Errors
/// As [`parse`], without the 415.
pub fn parse_as(
    media: MediaType,
    body: &[u8],
    ctx: &IngestContext,
) -> Result<Vec<Report>, IngestError> {
    match media {
        MediaType::ReportJson => report::parse(body, ctx),
        MediaType::FhirJson => bundle::parse(body, ctx),
        MediaType::Hl7v2 => hl7::parse(body, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let m = MediaType::from_content_type;
        assert_eq!(m("application/json"), Some(MediaType::ReportJson));
        assert_eq!(
            m("Application/JSON; charset=UTF-8"),
            Some(MediaType::ReportJson)
        );
        assert_eq!(
            m("application/fhir+json; fhirVersion=4.0"),
            Some(MediaType::FhirJson)
        );
        assert_eq!(m("application/fhir+json; fhirVersion=5.0"), None);
        assert_eq!(m("x-application/hl7-v2+er7"), Some(MediaType::Hl7v2));
        assert_eq!(m("application/hl7-v2"), Some(MediaType::Hl7v2));
        assert_eq!(m("application/json; charset=latin1"), None);
        assert_eq!(m("text/plain"), None);
        assert_eq!(m(""), None);
        assert_eq!(m("application/json; garbage"), None);
    }

    #[test]
    fn observation_ids_are_fhir_safe() {
        let ctx = IngestContext::new(
            "epro",
            DateTime::parse("2026-03-01T08:00:00Z").unwrap(),
            "ab/c_d",
        );
        assert_eq!(ctx.observation_id(2, 7), "ab-c-d-2-7");
    }
}
