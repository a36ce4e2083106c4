//! HIS XML source (kind `his-xml`): FHIR R4 XML bundles, HL7 CDA documents and
//! config-described XML, parsed with quick-xml in one streaming pass into medgate's
//! lossless [`Observation`] record.
//!
//! The payload is hostile until proven otherwise: DOCTYPE declarations are refused (so no
//! entity is ever declared or expanded), only the predefined entities and character
//! references are decoded, element nesting is bounded without recursion, and every error
//! names its line and column — never a patient identifier.
//!
//! Data quality: one bad value never costs the document. A value that cannot be read becomes
//! "no value" with `dataAbsentReason = error` and a [`Warning`](medgate_core::Warning) with
//! its line and column (just after the element that held it); an unreadable time is left out
//! with a warning. Only XML that is not well-formed, is hostile, or is not the configured
//! format is an error. Numbers are never routed through `f64`: they keep their written digits
//! (every `xs:decimal` form is accepted and canonicalized by `Decimal::parse_lenient`).
//!
//! Layout: `xml` is the hardened reader; `fhir`, `cda` and `mapping` are the three formats;
//! `config` the `[[sources]]` keys; `source` the [`DataSource`](medgate_core::DataSource).
//! [`register`] adds the kind to a [`Registry`]; [`parse`] is the pure parser, usable without
//! HTTP (benches, tests).

mod cda;
mod config;
mod error;
mod fhir;
mod lex;
mod mapping;
mod source;
mod text;
mod xml;

use std::sync::Arc;

use medgate_core::{Observation, Registry};

pub use cda::code_system_uri;
pub use config::{HisConfig, HisFormat, MappingConfig, MappingConstants, MappingFields};
pub use error::{ParseError, Position};
pub use mapping::CompiledMapping;
pub use source::{HisSource, INLINE_PARSE_LIMIT, STREAM_PARSE_MIN};
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

/// Who the parsed observations belong to and how deep the XML may nest.
///
/// The two names are shared strings: every observation of a payload holds a clone of the
/// same two, which costs a reference count, not an allocation.
#[derive(Debug, Clone)]
pub struct ParseContext {
    /// The configured source name, written to every observation.
    pub source: Arc<str>,
    /// The requested patient id, written to every observation (never read from the payload).
    pub patient_id: Arc<str>,
    /// Maximum element nesting depth.
    pub max_depth: usize,
}

impl ParseContext {
    /// A context for `patient_id` from `source` with the default depth limit.
    pub fn new(source: &str, patient_id: &str) -> ParseContext {
        ParseContext {
            source: Arc::from(source),
            patient_id: Arc::from(patient_id),
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Parses one payload into observations.
///
/// # Errors
/// [`ParseError`] for malformed, hostile or wrong-format input, with line and column.
pub fn parse(
    parser: &Parser,
    bytes: &[u8],
    ctx: &ParseContext,
) -> Result<Vec<Observation>, ParseError> {
    let mut rows = Vec::new();
    parse_into(parser, bytes, ctx, &mut rows)?;
    Ok(rows)
}

/// Parses one payload, handing each observation to `rows` as soon as it is read.
pub(crate) fn parse_into(
    parser: &Parser,
    bytes: &[u8],
    ctx: &ParseContext,
    rows: &mut impl Sink,
) -> Result<(), ParseError> {
    let parsed = match parser {
        Parser::FhirR4 => fhir::parse(bytes, ctx, rows),
        Parser::Cda => cda::parse(bytes, ctx, rows),
        Parser::Mapping(mapping) => mapping::parse(mapping, bytes, ctx, rows),
    };
    parsed.map_err(|e| *e)
}

/// Where a parser puts the observations it reads, in document order: a `Vec`, or the
/// source's stream (see `source`).
pub(crate) trait Sink {
    /// Takes the next observation.
    ///
    /// # Errors
    /// Nobody wants more (the stream was dropped): the parse stops with this error, which
    /// no one reads.
    fn emit(&mut self, observation: Observation) -> Result<(), error::Fail>;

    /// Observations taken so far.
    fn count(&self) -> usize;

    /// The payload announces about `n` observations (already bounded by its size).
    fn expect(&mut self, _n: usize) {}
}

impl Sink for Vec<Observation> {
    fn emit(&mut self, observation: Observation) -> Result<(), error::Fail> {
        self.push(observation);
        Ok(())
    }

    fn count(&self) -> usize {
        self.len()
    }

    fn expect(&mut self, n: usize) {
        self.reserve(n);
    }
}

/// Reads every event of an XML payload with the hardened reader and builds nothing: the
/// tokenizer's share of a parse, for the S5 bench and profiling.
///
/// # Errors
/// [`ParseError`] for malformed or hostile input.
#[doc(hidden)]
pub fn scan_only(bytes: &[u8]) -> Result<u64, ParseError> {
    let mut xml = xml::Xml::new(bytes, DEFAULT_MAX_DEPTH).trim_text();
    let mut events = 0;
    while xml.next().map_err(|e| *e)?.is_some() {
        events += 1;
    }
    Ok(events)
}
