//! The crate's error type: why a payload could not be turned into observations.

use std::fmt;

/// Where in the payload a problem was found (1-based line and column, columns count bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: u64,
    /// 1-based byte column within the line.
    pub column: u64,
}

impl Position {
    /// Computes the line and column of byte offset `offset` in `bytes`.
    pub fn of(bytes: &[u8], offset: u64) -> Position {
        let end = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let before = &bytes[..end];
        let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Position {
            line,
            column: (end - line_start) as u64 + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A payload that could not be parsed. The message never echoes patient identifiers: it
/// names the problem and the position only.
/// A [`ParseError`] on the parser's own paths: boxed, because errors are rare and every
/// `Result` of the hot path is smaller for it.
pub(crate) type Fail = Box<ParseError>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed XML (syntax, truncation, mismatched tags, bad encoding).
    #[error("malformed XML at {at}: {detail}")]
    Syntax {
        /// What is wrong.
        detail: String,
        /// Where.
        at: Position,
    },
    /// Well-formed but refused for safety (DOCTYPE, entities, nesting depth).
    #[error("refused XML at {at}: {detail}")]
    Refused {
        /// What was refused.
        detail: String,
        /// Where.
        at: Position,
    },
    /// Well-formed XML that is not the configured format (wrong root or namespace). A bad
    /// value inside a good payload is a warning on its observation, not an error.
    #[error("invalid content at {at}: {detail}")]
    Content {
        /// What is wrong.
        detail: String,
        /// Where.
        at: Position,
    },
}

impl ParseError {
    /// The position the error refers to.
    pub fn position(&self) -> Position {
        match self {
            ParseError::Syntax { at, .. }
            | ParseError::Refused { at, .. }
            | ParseError::Content { at, .. } => *at,
        }
    }

    /// Converts into the gateway error for source `source_name`.
    pub fn into_core(self, source_name: &str) -> medgate_core::Error {
        medgate_core::Error::malformed(source_name, self.to_string())
    }
}
