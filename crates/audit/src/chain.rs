//! Verifying the hash chain of an audit file.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::GENESIS_HASH;

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many entries the file holds.
    pub entries: u64,
    /// The hex SHA-256 of the last line (64 zeros for an empty file): anchor it elsewhere to
    /// also detect removal of entries from the end.
    pub last_hash: String,
}

/// The first problem found in an audit file. Messages name lines, never entry contents.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The audit file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a well-formed audit entry, or the last line was cut short.
    #[error("line {line}: not a valid audit entry: {detail}")]
    Invalid {
        /// 1-based line number.
        line: u64,
        /// What is wrong (the JSON error, without field values).
        detail: String,
    },
    /// A line's sequence number is not the next one.
    #[error("line {line}: expected seq {expected}, found {found} (entries removed or reordered)")]
    Sequence {
        /// 1-based line number.
        line: u64,
        /// The sequence number this line should carry.
        expected: u64,
        /// The sequence number it carries.
        found: u64,
    },
    /// A line's `prev` is not the hash of the line before it.
    #[error("line {line} (seq {seq}): prev hash does not match {}", previous_line_name(*line))]
    Chain {
        /// 1-based line number.
        line: u64,
        /// The line's sequence number.
        seq: u64,
    },
}

fn previous_line_name(line: u64) -> String {
    match line {
        0 | 1 => "the start of the chain".to_owned(),
        n => format!("line {}", n - 1),
    }
}

/// The chain fields of a stored line; the rest is checked for shape only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the entry fields are parsed to validate the line's shape, not read
struct LineIn {
    seq: u64,
    time: String,
    prev: String,
    request_id: String,
    partner: String,
    route: String,
    source: Option<String>,
    patient_ids: Vec<String>,
    records: u64,
    status: u16,
    outcome: String,
}

/// Verifies the hash chain of the audit file at `path`.
///
/// # Errors
/// A [`VerifyError`] naming the first bad line: an edited, removed, inserted or reordered
/// line, a line that is not an audit entry, or a truncated last line.
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    let file = File::open(path).map_err(|source| VerifyError::Io {
        path: path.to_owned(),
        source,
    })?;
    check(BufReader::new(file), path).map(|(report, _)| report)
}

/// Verifies a whole file line by line (audit files grow large, so they are streamed).
/// Returns the report and the number of bytes read.
pub(crate) fn check(
    mut reader: impl BufRead,
    path: &Path,
) -> Result<(VerifyReport, u64), VerifyError> {
    let mut entries = 0u64;
    let mut last_hash = GENESIS_HASH.to_owned();
    let mut len = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| VerifyError::Io {
                path: path.to_owned(),
                source,
            })?;
        if read == 0 {
            return Ok((VerifyReport { entries, last_hash }, len));
        }
        let line_no = entries + 1;
        let Some(content) = line.strip_suffix(b"\n") else {
            // A crash mid-write or a cut file: the last line has no terminator.
            let detail = "truncated entry (the last line has no line terminator)".to_owned();
            return Err(VerifyError::Invalid {
                line: line_no,
                detail,
            });
        };
        check_line(content, line_no, &last_hash)?;
        last_hash = sha256_hex(content);
        entries = line_no;
        len += read as u64;
    }
}

/// Checks one line against its expected position and predecessor's hash.
fn check_line(line: &[u8], line_no: u64, prev_hash: &str) -> Result<(), VerifyError> {
    let parsed: LineIn = serde_json::from_slice(line).map_err(|e| VerifyError::Invalid {
        line: line_no,
        detail: describe(&e),
    })?;
    if parsed.seq != line_no {
        return Err(VerifyError::Sequence {
            line: line_no,
            expected: line_no,
            found: parsed.seq,
        });
    }
    if parsed.prev != prev_hash {
        return Err(VerifyError::Chain {
            line: line_no,
            seq: parsed.seq,
        });
    }
    Ok(())
}

/// Describes a JSON error without echoing values from the line, which may be patient ids.
///
/// Syntax errors and missing/unknown field errors only name positions and field names; type
/// and value errors quote the offending value, so only their kind is kept.
fn describe(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let names_fields_only = ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|p| message.starts_with(p));
    if error.classify() != serde_json::error::Category::Data || names_fields_only {
        return message;
    }
    let kind = message.split(':').next().unwrap_or("invalid value");
    format!("{kind} at column {}", error.column())
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_has_no_entries_and_genesis_hash() {
        let (report, len) = check(&b""[..], Path::new("audit.jsonl")).unwrap();
        assert_eq!(report.entries, 0);
        assert_eq!(report.last_hash, GENESIS_HASH);
        assert_eq!(len, 0);
    }

    #[test]
    fn counts_the_bytes_of_complete_lines() {
        let line = br#"{"seq":1,"time":"t","prev":"0000000000000000000000000000000000000000000000000000000000000000","request_id":"r","partner":"x","route":"/","source":null,"patient_ids":[],"records":0,"status":200,"outcome":"ok"}"#;
        let mut file = line.to_vec();
        file.push(b'\n');
        let (report, len) = check(&file[..], Path::new("audit.jsonl")).unwrap();
        assert_eq!(report.entries, 1);
        assert_eq!(report.last_hash, sha256_hex(line));
        assert_eq!(len, file.len() as u64);
    }

    #[test]
    fn type_errors_do_not_echo_values() {
        let line = br#"{"seq":1,"time":"t","prev":"p","request_id":"r","partner":"x","route":"/","source":null,"patient_ids":[12345678],"records":0,"status":200,"outcome":"ok"}"#;
        let err = check_line(line, 1, GENESIS_HASH).unwrap_err().to_string();
        assert!(
            err.starts_with("line 1: not a valid audit entry: invalid type at column"),
            "{err}"
        );
        assert!(!err.contains("12345678"), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let err = check_line(br#"{"seq":1}"#, 1, GENESIS_HASH)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn prev_mismatch_on_first_line_names_chain_start() {
        let line = br#"{"seq":1,"time":"t","prev":"ab","request_id":"r","partner":"x","route":"/","source":null,"patient_ids":[],"records":0,"status":200,"outcome":"ok"}"#;
        let err = check_line(line, 1, GENESIS_HASH).unwrap_err().to_string();
        assert_eq!(
            err,
            "line 1 (seq 1): prev hash does not match the start of the chain"
        );
    }
}
