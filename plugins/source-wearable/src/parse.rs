//! The payload parser, usable without a running source (benches, tools, tests).

use medgate_core::Observation;
use serde_json::value::RawValue;

use crate::config::Mapping;
use crate::json;

/// Default and largest allowed nesting depth of a payload.
///
/// 128 is serde_json's own recursion limit; the default stays well below it.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// The largest `max_depth` a config may set (serde_json's hard recursion limit).
pub const MAX_DEPTH_LIMIT: usize = 128;

/// Why a payload could not be turned into observations.
///
/// Messages name JSON positions and pointers, never payload content, so they are safe to log.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The body is not JSON; serde_json's message carries `line L column C`.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// The body nests deeper than the configured limit.
    #[error("recursion limit exceeded: nesting deeper than {max_depth} levels at line {line} column {column}")]
    TooDeep {
        /// The limit that was exceeded.
        max_depth: usize,
        /// 1-based line of the bracket that went too deep.
        line: usize,
        /// 1-based column (in bytes) of that bracket.
        column: usize,
    },

    /// Valid JSON of the wrong shape; `pointer` (RFC 6901) names the offending node.
    #[error("{pointer}: {message}")]
    Shape {
        /// JSON Pointer of the node, e.g. `/3/header/schema_id`.
        pointer: String,
        /// What was expected there.
        message: String,
    },
}

impl ParseError {
    /// A shape error at `pointer`. The root is written `/` in messages so it is never blank.
    pub(crate) fn shape(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        let pointer = pointer.into();
        ParseError::Shape {
            pointer: if pointer.is_empty() {
                "/".into()
            } else {
                pointer
            },
            message: message.into(),
        }
    }

    /// The data-path error for source `source`: [`medgate_core::Error::Malformed`].
    pub fn into_core(self, source: &str) -> medgate_core::Error {
        medgate_core::Error::malformed(source, self.to_string())
    }
}

/// How a payload is laid out.
#[derive(Debug, Clone)]
pub enum PayloadFormat {
    /// Open mHealth data points.
    OpenMHealth,
    /// Any JSON, described by a [`Mapping`] of JSON Pointers.
    Mapping(Box<Mapping>),
}

/// Who the parsed observations belong to, and how deep a payload may nest.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext<'a> {
    /// The configured source name (goes into `Observation::source` and error messages).
    pub source: &'a str,
    /// The requested patient id; the payload's own ids are not trusted for this.
    pub patient_id: &'a str,
    /// Largest nesting depth accepted (at most [`MAX_DEPTH_LIMIT`]).
    pub max_depth: usize,
}

impl<'a> ParseContext<'a> {
    /// A context with [`DEFAULT_MAX_DEPTH`].
    pub fn new(source: &'a str, patient_id: &'a str) -> Self {
        ParseContext {
            source,
            patient_id,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// A row skeleton for this patient and source; parsers fill in the rest.
    pub(crate) fn observation(&self, id: String) -> Observation {
        Observation {
            patient_id: self.patient_id.to_owned(),
            source: self.source.to_owned(),
            id,
            category: None,
            code_system: None,
            code: None,
            display: None,
            value: medgate_core::Value::Null,
            unit: None,
            effective: None,
        }
    }
}

/// Parses one upstream body into observations.
///
/// # Errors
/// [`ParseError::Json`] for text that is not JSON, [`ParseError::TooDeep`] for nesting beyond
/// `ctx.max_depth`, [`ParseError::Shape`] for JSON of the wrong shape.
pub fn parse(
    format: &PayloadFormat,
    bytes: &[u8],
    ctx: &ParseContext<'_>,
) -> Result<Vec<Observation>, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let max_depth = ctx.max_depth.min(MAX_DEPTH_LIMIT);
    if let Some((line, column)) = json::too_deep(bytes, max_depth) {
        return Err(ParseError::TooDeep {
            max_depth,
            line,
            column,
        });
    }
    let root: &RawValue = serde_json::from_slice(bytes)?;
    match format {
        PayloadFormat::OpenMHealth => crate::omh::parse(root, ctx),
        PayloadFormat::Mapping(mapping) => crate::mapping::parse(mapping, root, ctx),
    }
}
