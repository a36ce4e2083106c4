//! The payload parser, usable without a running source (benches, tools, tests).
//!
//! Only a payload that cannot be read at all is an error: text that is not JSON, nesting
//! beyond the depth limit, or an envelope of the wrong shape (an Open mHealth body that is
//! neither an array nor an object, a mapping whose `records` pointer finds no array).
//! Everything inside a record that cannot be read costs that one value, not the payload: the
//! observation gets a [`Warning`] with the JSON Pointer of the node.

use std::ops::ControlFlow;
use std::sync::Arc;

use medgate_core::{Observation, Warning};
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

impl From<Warning> for ParseError {
    fn from(w: Warning) -> Self {
        ParseError::shape(w.at, w.message)
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
///
/// `source` and `patient_id` are shared strings: every observation of a payload clones the
/// same two `Arc`s instead of allocating its own copies.
#[derive(Debug, Clone)]
pub struct ParseContext {
    /// The configured source name (goes into `Observation::source` and error messages).
    pub source: Arc<str>,
    /// The requested patient id; the payload's own ids are not trusted for this.
    pub patient_id: Arc<str>,
    /// Largest nesting depth accepted (at most [`MAX_DEPTH_LIMIT`]).
    pub max_depth: usize,
}

impl ParseContext {
    /// A context with [`DEFAULT_MAX_DEPTH`].
    pub fn new(source: impl Into<Arc<str>>, patient_id: impl Into<Arc<str>>) -> Self {
        ParseContext {
            source: source.into(),
            patient_id: patient_id.into(),
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// An empty observation of this patient and source; parsers fill in the rest.
    pub(crate) fn observation(&self, id: String) -> Observation {
        Observation::new(Arc::clone(&self.patient_id), Arc::clone(&self.source), id)
    }
}

/// Parses one upstream body into observations.
///
/// # Errors
/// [`ParseError::Json`] for text that is not JSON, [`ParseError::TooDeep`] for nesting beyond
/// `ctx.max_depth`, [`ParseError::Shape`] for an envelope of the wrong shape (see the module
/// docs); problems inside records are warnings on their observations instead.
pub fn parse(
    format: &PayloadFormat,
    bytes: &[u8],
    ctx: &ParseContext,
) -> Result<Vec<Observation>, ParseError> {
    let mut rows = Vec::new();
    parse_into(format, bytes, ctx, &mut |o| {
        rows.push(o);
        ControlFlow::Continue(())
    })?;
    Ok(rows)
}

/// Parses one upstream body, handing each observation to `emit` as soon as it is read, in
/// payload order; the parse stops early when `emit` breaks (nobody wants more).
///
/// The whole body is checked (depth, then JSON syntax) before the first observation, so
/// every [`ParseError`] comes before `emit` is first called: a payload is either read or
/// refused, never cut short.
pub(crate) fn parse_into(
    format: &PayloadFormat,
    bytes: &[u8],
    ctx: &ParseContext,
    emit: &mut impl FnMut(Observation) -> ControlFlow<()>,
) -> Result<(), ParseError> {
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
        PayloadFormat::OpenMHealth => crate::omh::parse(root, ctx, emit),
        PayloadFormat::Mapping(mapping) => crate::mapping::parse(mapping, root, ctx, emit),
    }
}
