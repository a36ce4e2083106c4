//! Verifying the hash chain of an audit file, and its checkpoint.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::checkpoint::{self, Checkpoint, CheckpointKey};
use crate::GENESIS_HASH;

/// What the detail of a torn final line says, for verify and open alike.
pub(crate) const TORN_DETAIL: &str =
    "truncated entry (the last line has no line terminator, as after a crash mid-write); \
     run `medgate audit repair` on this file to remove it";

/// The result of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many entries the file holds.
    pub entries: u64,
    /// The hex SHA-256 of the last line (64 zeros for an empty file): anchor it elsewhere to
    /// also detect removal of entries from the end.
    pub last_hash: String,
    /// The checkpoint beside the file, if any; it matched the chain.
    pub checkpoint: Option<Checkpoint>,
    /// Whether the checkpoint's signature was checked (verification with a key).
    pub signature_checked: bool,
}

impl VerifyReport {
    /// Entries after the checkpoint, protected by the chain only (all of them without one).
    pub fn unsigned_entries(&self) -> u64 {
        self.entries
            - self
                .checkpoint
                .as_ref()
                .map_or(0, |c| c.seq.min(self.entries))
    }
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
    /// The checkpoint file exists but is not a checkpoint.
    #[error("checkpoint: {detail}")]
    CheckpointUnreadable {
        /// What is wrong.
        detail: String,
    },
    /// Verification with a key found no checkpoint for a chain that has entries.
    #[error(
        "no signed checkpoint, but the chain has {entries} entries: the checkpoint was deleted, \
         or checkpoints were never enabled for this file (sign its head once with \
         `medgate audit sign` after verifying it)"
    )]
    CheckpointMissing {
        /// Entries in the chain.
        entries: u64,
    },
    /// The checkpoint's signature does not verify with the key.
    #[error(
        "the checkpoint's signature does not verify: the checkpoint was altered, or the chain \
         and its checkpoint were rewritten with another key"
    )]
    CheckpointForged,
    /// The checkpoint covers more entries than the chain holds.
    #[error(
        "the checkpoint covers seq {checkpoint_seq} but the chain ends at seq {entries}: \
         entries were removed from the end"
    )]
    CheckpointBeyondEnd {
        /// The checkpoint's head.
        checkpoint_seq: u64,
        /// The chain's last seq.
        entries: u64,
    },
    /// The entry the checkpoint names hashes differently.
    #[error(
        "line {seq}: the entry does not match the checkpoint (it was edited, or the chain was \
         rewritten)"
    )]
    CheckpointMismatch {
        /// The entry's seq (= line).
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
    /// Written only when ids were left out (lines from before it have none).
    #[serde(default)]
    patient_ids_omitted: u64,
    records: u64,
    status: u16,
    outcome: String,
    /// Written only when the route recorded more (lines from before it have none).
    #[serde(default)]
    details: Option<serde_json::Value>,
}

/// Verifies the hash chain of the audit file at `path`, and that its checkpoint (if there is
/// one) matches the chain. Without a key the checkpoint's signature is not checked: use
/// [`verify_with_key`] for that.
///
/// # Errors
/// A [`VerifyError`] naming the first bad line: an edited, removed, inserted or reordered
/// line, a line that is not an audit entry, a truncated last line, or a checkpoint that
/// does not match.
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    verify_inner(path, None)
}

/// [`verify`], and the checkpoint must exist (for a chain with entries) and carry a valid
/// signature under `key`. Detects, in addition: an edited or removed last entry (up to the
/// checkpoint) and a chain rewritten wholesale with fresh hashes.
///
/// # Errors
/// As [`verify`], plus [`VerifyError::CheckpointMissing`] and
/// [`VerifyError::CheckpointForged`].
pub fn verify_with_key(path: &Path, key: &CheckpointKey) -> Result<VerifyReport, VerifyError> {
    verify_inner(path, Some(key))
}

fn verify_inner(path: &Path, key: Option<&CheckpointKey>) -> Result<VerifyReport, VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let checkpoint = read_checkpoint(path)?;
    let scan = scan(
        BufReader::new(file),
        path,
        checkpoint.as_ref().map(|c| c.seq),
    )?;
    scan.intact()?;
    check_checkpoint(&scan, checkpoint.as_ref(), key)?;
    Ok(scan.report(checkpoint, key.is_some()))
}

pub(crate) fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, VerifyError> {
    checkpoint::read(path).map_err(|detail| VerifyError::CheckpointUnreadable { detail })
}

/// Checks `checkpoint` against a scanned chain (scanned with `want` = its seq) and, with a
/// key, its signature; with a key, a chain with entries must have one.
pub(crate) fn check_checkpoint(
    scan: &Scan,
    checkpoint: Option<&Checkpoint>,
    key: Option<&CheckpointKey>,
) -> Result<(), VerifyError> {
    let Some(cp) = checkpoint else {
        return match key {
            Some(_) if scan.entries > 0 => Err(VerifyError::CheckpointMissing {
                entries: scan.entries,
            }),
            _ => Ok(()),
        };
    };
    if key.is_some_and(|k| !k.verifies(cp)) {
        return Err(VerifyError::CheckpointForged);
    }
    if cp.seq > scan.entries {
        return Err(VerifyError::CheckpointBeyondEnd {
            checkpoint_seq: cp.seq,
            entries: scan.entries,
        });
    }
    let hash = if cp.seq == 0 {
        Some(GENESIS_HASH)
    } else {
        scan.wanted_hash.as_deref()
    };
    if hash != Some(cp.hash.as_str()) {
        return Err(VerifyError::CheckpointMismatch { seq: cp.seq });
    }
    Ok(())
}

/// A pass over a whole file: the intact chain, and a torn final line if there is one.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) entries: u64,
    pub(crate) last_hash: String,
    /// Bytes of complete, valid lines.
    pub(crate) len: u64,
    /// The torn final line: its line number and length in bytes.
    pub(crate) torn: Option<(u64, u64)>,
    /// The hash of the line whose seq was asked for.
    pub(crate) wanted_hash: Option<String>,
}

impl Scan {
    /// A torn final line as the error verify and open report.
    pub(crate) fn intact(&self) -> Result<(), VerifyError> {
        match self.torn {
            None => Ok(()),
            Some((line, _)) => Err(VerifyError::Invalid {
                line,
                detail: TORN_DETAIL.to_owned(),
            }),
        }
    }

    pub(crate) fn report(&self, checkpoint: Option<Checkpoint>, signed: bool) -> VerifyReport {
        VerifyReport {
            entries: self.entries,
            last_hash: self.last_hash.clone(),
            signature_checked: signed && checkpoint.is_some(),
            checkpoint,
        }
    }
}

/// Verifies a whole file line by line (audit files grow large, so they are streamed),
/// keeping the hash of entry `want`. A final line without terminator is reported in
/// [`Scan::torn`], not as an error, so that repair can act on it.
pub(crate) fn scan(
    mut reader: impl BufRead,
    path: &Path,
    want: Option<u64>,
) -> Result<Scan, VerifyError> {
    let mut scan = Scan {
        entries: 0,
        last_hash: GENESIS_HASH.to_owned(),
        len: 0,
        torn: None,
        wanted_hash: None,
    };
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
            return Ok(scan);
        }
        let line_no = scan.entries + 1;
        let Some(content) = line.strip_suffix(b"\n") else {
            scan.torn = Some((line_no, read as u64));
            return Ok(scan);
        };
        check_line(content, line_no, &scan.last_hash)?;
        scan.last_hash = sha256_hex(content);
        if want == Some(line_no) {
            scan.wanted_hash = Some(scan.last_hash.clone());
        }
        scan.entries = line_no;
        scan.len += read as u64;
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

/// The head of the file at `path` read from its end, without verifying the chain before it
/// (use [`verify`] for that): the last entry's seq and hash.
pub(crate) fn tail_head(path: &Path) -> Result<(u64, String), VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok((0, GENESIS_HASH.to_owned()));
    }
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut tail = Vec::with_capacity((len - start) as usize);
        (&mut file)
            .take(len - start)
            .read_to_end(&mut tail)
            .map_err(io)?;
        let Some(body) = tail.strip_suffix(b"\n") else {
            return head_by_scan(path);
        };
        let line = match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => &body[i + 1..],
            None if start == 0 => body,
            None => {
                window = window.saturating_mul(4);
                continue;
            }
        };
        return match last_seq(line) {
            Some(seq) => Ok((seq, sha256_hex(line))),
            None => head_by_scan(path),
        };
    }
}

/// The head found the slow way, when the end of the file is not a plain entry: the full scan
/// names the bad line (a torn tail, a damaged last entry).
fn head_by_scan(path: &Path) -> Result<(u64, String), VerifyError> {
    let file = File::open(path).map_err(|source| VerifyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let scan = scan(BufReader::new(file), path, None)?;
    scan.intact()?;
    Ok((scan.entries, scan.last_hash))
}

fn last_seq(line: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_slice::<Seq>(line).ok().map(|s| s.seq)
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

    const LINE: &[u8] = br#"{"seq":1,"time":"t","prev":"0000000000000000000000000000000000000000000000000000000000000000","request_id":"r","partner":"x","route":"/","source":null,"patient_ids":[],"records":0,"status":200,"outcome":"ok"}"#;

    fn check(input: &[u8]) -> Scan {
        scan(input, Path::new("audit.jsonl"), Some(1)).unwrap()
    }

    #[test]
    fn empty_input_has_no_entries_and_genesis_hash() {
        let s = check(b"");
        assert_eq!(
            (s.entries, s.last_hash.as_str(), s.len),
            (0, GENESIS_HASH, 0)
        );
        assert!(s.torn.is_none());
    }

    #[test]
    fn counts_the_bytes_of_complete_lines_and_keeps_the_wanted_hash() {
        let mut file = LINE.to_vec();
        file.push(b'\n');
        let s = check(&file);
        assert_eq!(s.entries, 1);
        assert_eq!(s.last_hash, sha256_hex(LINE));
        assert_eq!(s.wanted_hash, Some(sha256_hex(LINE)));
        assert_eq!(s.len, file.len() as u64);
    }

    #[test]
    fn a_torn_final_line_is_reported_with_its_size() {
        let mut file = LINE.to_vec();
        file.push(b'\n');
        file.extend_from_slice(br#"{"seq":2,"ti"#);
        let s = check(&file);
        assert_eq!(s.entries, 1);
        assert_eq!(s.len, LINE.len() as u64 + 1);
        assert_eq!(s.torn, Some((2, 12)));
        let e = s.intact().unwrap_err().to_string();
        assert!(
            e.starts_with("line 2: not a valid audit entry: truncated entry"),
            "{e}"
        );
        assert!(e.contains("medgate audit repair"), "{e}");
    }

    #[test]
    fn the_omitted_ids_count_is_optional() {
        let with = String::from_utf8(LINE.to_vec()).unwrap().replace(
            "\"patient_ids\":[],",
            "\"patient_ids\":[],\"patient_ids_omitted\":3,",
        );
        assert!(check_line(with.as_bytes(), 1, GENESIS_HASH).is_ok());
        assert!(check_line(LINE, 1, GENESIS_HASH).is_ok());
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
