//! [`IngestError`], the one error enum of this crate, and [`Issue`], one bad field with its
//! path.
//!
//! Messages never quote a value from the body: bodies carry patient data, and error
//! messages end up in responses and logs. They name the field (by path), the rule it broke
//! and, where it helps, the allowed codes or the expected form.

use serde::{Deserialize, Serialize};

/// Most issues one body reports; the rest are counted in `truncated`.
pub const MAX_ISSUES: usize = 100;

/// One bad field: where (a JSON Pointer such as `/0/items/3/value`, or an HL7 v2 position
/// such as `OBX[3]-5`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Issue {
    /// JSON Pointer (RFC 6901) into the body (`""` is the whole body), or for HL7 v2
    /// `SEG[n]-f` (the n-th segment of that name in its message, 1-based; field f), prefixed
    /// by `MSH[m]/` when the body holds several messages.
    pub path: String,
    /// What is wrong, without quoting the value.
    pub message: String,
}

impl Issue {
    /// An issue at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A bounded list of issues: the first [`MAX_ISSUES`] are kept, the rest counted.
#[derive(Debug, Default, Clone)]
pub struct Issues {
    list: Vec<Issue>,
    dropped: usize,
}

impl Issues {
    /// Records an issue.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        if self.list.len() < MAX_ISSUES {
            self.list.push(Issue::new(path, message));
        } else {
            self.dropped += 1;
        }
    }

    /// Records an issue already built.
    pub fn push_issue(&mut self, issue: Issue) {
        if self.list.len() < MAX_ISSUES {
            self.list.push(issue);
        } else {
            self.dropped += 1;
        }
    }

    /// No issue so far.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.dropped == 0
    }

    /// Enough issues collected that more work would only be counted: callers use this to
    /// stop walking a hostile body early.
    pub fn is_full(&self) -> bool {
        self.list.len() >= MAX_ISSUES
    }

    /// The issues kept so far.
    pub fn as_slice(&self) -> &[Issue] {
        &self.list
    }

    /// `Ok(value)` if there was no issue, else [`IngestError::Invalid`].
    ///
    /// # Errors
    /// Every issue collected.
    pub fn finish<T>(self, value: T) -> Result<T, IngestError> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(IngestError::Invalid {
                issues: self.list,
                truncated: self.dropped,
            })
        }
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The `Content-Type` is not one this crate reads (HTTP 415).
    #[error("unsupported media type; send one of {}", crate::MediaType::SUPPORTED.join(", "))]
    UnsupportedMediaType,

    /// The body is not well-formed (not JSON, not UTF-8, not HL7 v2 ER7, or nested too
    /// deeply) (HTTP 400).
    #[error("the body is not well-formed {format}: {detail} (at {at})")]
    Malformed {
        /// `JSON`, `FHIR JSON` or `HL7 v2`.
        format: &'static str,
        /// Where: `line 3, column 7`, `byte 1234`, `segment 4 (line 4)`.
        at: String,
        /// What.
        detail: String,
    },

    /// The body is well-formed but fields are invalid (HTTP 400): every bad field, up to
    /// [`MAX_ISSUES`].
    #[error("{} invalid field(s){}: {}", .issues.len() + .truncated, if *.truncated > 0 { " (first ones listed)" } else { "" }, first(.issues))]
    Invalid {
        /// The bad fields, in body order.
        issues: Vec<Issue>,
        /// How many more were found but not listed.
        truncated: usize,
    },

    /// The body holds more than medgate accepts in one request (reports, items, segments,
    /// array elements, a field's length) (HTTP 413).
    #[error("too large: {what} exceeds the limit of {limit}")]
    TooLarge {
        /// What was counted, e.g. `reports in one body`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

fn first(issues: &[Issue]) -> String {
    issues.first().map(Issue::to_string).unwrap_or_default()
}

impl IngestError {
    /// The HTTP status this error should be answered with.
    pub fn status(&self) -> u16 {
        match self {
            IngestError::UnsupportedMediaType => 415,
            IngestError::Malformed { .. } | IngestError::Invalid { .. } => 400,
            IngestError::TooLarge { .. } => 413,
        }
    }

    /// A short stable name for the problem `type` and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::UnsupportedMediaType => "unsupported-media-type",
            IngestError::Malformed { .. } => "malformed-body",
            IngestError::Invalid { .. } => "invalid-report",
            IngestError::TooLarge { .. } => "body-too-large",
        }
    }

    /// The invalid fields (empty for the other variants).
    pub fn issues(&self) -> &[Issue] {
        match self {
            IngestError::Invalid { issues, .. } => issues,
            _ => &[],
        }
    }
}
