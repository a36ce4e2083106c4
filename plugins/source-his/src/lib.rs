//! HIS XML source (kind `his-xml`): FHIR R4 XML bundles, HL7 CDA documents and
//! config-described XML, parsed with quick-xml in one streaming pass.
//!
//! The payload is hostile until proven otherwise: DOCTYPE declarations are refused (so no
//! entity is ever declared or expanded), only the predefined entities and character
//! references are decoded, element nesting is bounded without recursion, and every error
//! names its line and column — never a patient identifier.
//!
//! [`register`] adds the kind to a [`Registry`]; [`parse`] is the pure parser, usable without
//! HTTP (benches, tests).

mod cda;
mod config;
mod error;
mod fhir;
mod mapping;
mod source;
mod xml;

use std::sync::Arc;

use medgate_core::{Observation, Registry};

pub use cda::{code_system_uri, hl7_ts_to_rfc3339};
pub use config::{HisConfig, HisFormat, MappingConfig, MappingConstants, MappingFields};
pub use error::{ParseError, Position};
pub use mapping::CompiledMapping;
pub use source::{HisSource, INLINE_PARSE_LIMIT};
pub use xml::DEFAULT_MAX_DEPTH;

/// The source kind name.
pub const KIND: &str = "his-xml";

/// Registers source kind `his-xml`.
pub fn register(registry: &mut Registry) {
    registry.add_source_kind::<HisConfig>(KIND);
}

/// A ready parser for one format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parser {
    /// FHIR R4 XML.
    FhirR4,
    /// HL7 CDA R2 / C-CDA.
    Cda,
    /// Config-described XML.
    Mapping(Arc<CompiledMapping>),
}

/// Who the parsed rows belong to and how deep the XML may nest.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext<'a> {
    /// The configured source name, written to every row.
    pub source: &'a str,
    /// The requested patient id, written to every row (never read from the payload).
    pub patient_id: &'a str,
    /// Maximum element nesting depth.
    pub max_depth: usize,
}

/// Parses one payload into observations.
///
/// # Errors
/// [`ParseError`] for malformed, hostile or wrong-format input, with line and column.
pub fn parse(
    parser: &Parser,
    bytes: &[u8],
    ctx: &ParseContext<'_>,
) -> Result<Vec<Observation>, ParseError> {
    match parser {
        Parser::FhirR4 => fhir::parse(bytes, ctx),
        Parser::Cda => cda::parse(bytes, ctx),
        Parser::Mapping(mapping) => mapping::parse(mapping, bytes, ctx),
    }
}
