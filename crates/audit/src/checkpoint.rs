//! Signed checkpoints of the chain head.
//!
//! The hash chain alone cannot show that the *last* entry was edited or removed, nor that the
//! whole file was rewritten with fresh hashes. A checkpoint closes those gaps: the head's
//! sequence number and hash, with a time, authenticated by HMAC-SHA256 under a key that only
//! the gateway's environment holds. It lives beside the audit file (`<file>.checkpoint`, one
//! JSON object, replaced atomically) and is rewritten every N entries, every T seconds (both
//! checked when an entry is appended) and when the log is closed.
//!
//! What it proves: every entry up to the checkpoint's `seq` is exactly as written. Entries
//! after it (at most N, or T seconds' worth, or none after a clean close) are protected by the
//! chain only. A rollback of *both* files to an earlier consistent state cannot be seen from
//! the files alone; anchor `medgate audit head` elsewhere (a log shipper) for that.
//!
//! The key is read from an environment variable and kept in memory only: it is never written,
//! logged or shown by `Debug`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::AuditError;

/// The fewest key bytes accepted (the HMAC-SHA256 block of security: 256 bits).
pub const MIN_KEY_BYTES: usize = 32;

/// Domain separation: a MAC over anything else never verifies as a checkpoint.
const CONTEXT: &str = "medgate-audit-checkpoint/v1";

/// The HMAC key that signs checkpoints. Its bytes never leave this type.
#[derive(Clone)]
pub struct CheckpointKey(Vec<u8>);

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointKey(redacted)")
    }
}

impl CheckpointKey {
    /// A key from raw bytes (at least [`MIN_KEY_BYTES`]).
    ///
    /// # Errors
    /// [`AuditError::Key`] when it is shorter.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<CheckpointKey, AuditError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(AuditError::Key(format!(
                "the checkpoint key must be at least {MIN_KEY_BYTES} bytes, it has {}",
                bytes.len()
            )));
        }
        Ok(CheckpointKey(bytes))
    }

    /// The key held by environment variable `var`: its value's bytes (e.g. the 64 characters
    /// of `openssl rand -hex 32`).
    ///
    /// # Errors
    /// [`AuditError::Key`] naming the variable (never its value) when it is unset, not
    /// UTF-8, or too short.
    pub fn from_env(var: &str) -> Result<CheckpointKey, AuditError> {
        let value = std::env::var(var).map_err(|e| {
            AuditError::Key(match e {
                std::env::VarError::NotPresent => {
                    format!("environment variable {var} (the audit checkpoint key) is not set")
                }
                std::env::VarError::NotUnicode(_) => {
                    format!("environment variable {var} (the audit checkpoint key) is not UTF-8")
                }
            })
        })?;
        CheckpointKey::new(value.into_bytes()).map_err(|e| match e {
            AuditError::Key(message) => AuditError::Key(format!("{var}: {message}")),
            e => e,
        })
    }

    fn mac(&self, seq: u64, hash: &str, time: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{CONTEXT}\n{seq}\n{hash}\n{time}").as_bytes());
        mac
    }

    /// Signs the head `seq`/`hash` at `time`.
    pub(crate) fn sign(&self, seq: u64, hash: &str, time: &str) -> Checkpoint {
        let tag = self.mac(seq, hash, time).finalize().into_bytes();
        Checkpoint {
            seq,
            hash: hash.to_owned(),
            time: time.to_owned(),
            mac: hex::encode(tag),
        }
    }

    /// Whether `checkpoint` was signed with this key and not altered since (constant time).
    pub fn verifies(&self, checkpoint: &Checkpoint) -> bool {
        let Ok(tag) = hex::decode(&checkpoint.mac) else {
            return false;
        };
        self.mac(checkpoint.seq, &checkpoint.hash, &checkpoint.time)
            .verify_slice(&tag)
            .is_ok()
    }
}

/// A signed statement "the chain's entry `seq` hashes to `hash`", made at `time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Sequence number of the head entry (0: the empty chain).
    pub seq: u64,
    /// Hex SHA-256 of that entry's line (64 zeros for the empty chain).
    pub hash: String,
    /// When it was signed (RFC 3339 UTC, milliseconds).
    pub time: String,
    /// Hex HMAC-SHA256 over the three fields above.
    pub mac: String,
}

/// Where the checkpoint of `audit` is kept: `<audit>.checkpoint`.
pub fn checkpoint_path(audit: &Path) -> PathBuf {
    let mut name = audit.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

/// Reads the checkpoint beside `audit`; `None` when there is none.
///
/// # Errors
/// The file exists but cannot be read or is not a checkpoint.
pub(crate) fn read(audit: &Path) -> Result<Option<Checkpoint>, String> {
    let path = checkpoint_path(audit);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{} is not a checkpoint: {e}", path.display()))
}

/// Replaces the checkpoint beside `audit` atomically and durably: a crash leaves the old
/// checkpoint or the new one, never a mix.
pub(crate) fn write(audit: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let path = checkpoint_path(audit);
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut json = serde_json::to_vec(checkpoint).map_err(std::io::Error::other)?;
    json.push(b'\n');
    let mut file = File::create(&tmp)?;
    file.write_all(&json)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &path)?;
    sync_dir(&path)
}

/// Makes a rename in `path`'s directory durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CheckpointKey {
        CheckpointKey::new(vec![byte; 32]).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_verifies_only_with_its_key_and_unaltered() {
        let cp = key(1).sign(7, &"ab".repeat(32), "2026-11-29T07:00:00.000Z");
        assert!(key(1).verifies(&cp));
        assert!(!key(2).verifies(&cp), "another key");
        for altered in [
            Checkpoint {
                seq: 8,
                ..cp.clone()
            },
            Checkpoint {
                hash: "cd".repeat(32),
                ..cp.clone()
            },
            Checkpoint {
                time: "2026-11-29T07:00:00.001Z".into(),
                ..cp.clone()
            },
            Checkpoint {
                mac: "zz".into(),
                ..cp.clone()
            },
        ] {
            assert!(!key(1).verifies(&altered), "{altered:?}");
        }
    }

    #[test]
    fn known_answer() {
        // printf 'medgate-audit-checkpoint/v1\n0\n%s\nT' $(printf '0%.0s' {1..64}) |
        //   openssl dgst -sha256 -hmac "$(printf 'k%.0s' {1..32})"
        let cp = CheckpointKey::new(b"k".repeat(32))
            .unwrap()
            .sign(0, &"0".repeat(64), "T");
        assert_eq!(cp.mac, KNOWN_MAC);
    }

    const KNOWN_MAC: &str = "d308afc1609e1ac184d6c683c4e3c9a73a513737ecbd949c5c7e72076170ba6a";

    #[test]
    fn short_keys_are_refused_and_debug_hides_the_key() {
        let e = CheckpointKey::new(vec![1; 31]).unwrap_err().to_string();
        assert!(e.contains("at least 32 bytes"), "{e}");
        let k = CheckpointKey::new(b"secret-secret-secret-secret-secret".to_vec()).unwrap();
        assert_eq!(format!("{k:?}"), "CheckpointKey(redacted)");
    }

    #[test]
    fn the_checkpoint_file_sits_beside_the_audit_file() {
        assert_eq!(
            checkpoint_path(Path::new("data/audit.jsonl")),
            PathBuf::from("data/audit.jsonl.checkpoint")
        );
    }
}
