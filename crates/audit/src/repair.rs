//! `medgate audit repair`: cutting off a torn final line.
//!
//! A crash (or power loss) in the middle of an append leaves a final line without its
//! terminator. That entry's append never returned, so the access it describes was never
//! served; the line carries no record that the chain must keep. Repair removes exactly those
//! bytes and nothing else: a file with any other defect is refused, because cutting would
//! hide tampering. The removed bytes are kept in a side file (they may hold patient ids, so
//! they are never printed) and described in the report.

use std::fs::OpenOptions;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::lock::{self, Lock};
use crate::{chain, AuditError};

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Complete entries in the file after repair.
    pub entries: u64,
    /// The hex SHA-256 of the last complete line.
    pub last_hash: String,
    /// The torn line that was removed; `None` when the file was intact.
    pub removed: Option<Torn>,
}

/// A torn final line that was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// Its line number.
    pub line: u64,
    /// Where it started (the file's new length).
    pub offset: u64,
    /// How many bytes it had.
    pub bytes: u64,
    /// Hex SHA-256 of those bytes.
    pub sha256: String,
    /// Where they were saved.
    pub saved_to: PathBuf,
}

impl std::fmt::Display for RepairReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.removed {
            None => write!(
                f,
                "intact, nothing removed ({} entries, last hash {})",
                self.entries, self.last_hash
            ),
            Some(t) => write!(
                f,
                "removed a torn final line: line {}, {} bytes at offset {} (sha256 {}), saved to {}; \
                 {} complete entries kept, last hash {}",
                t.line,
                t.bytes,
                t.offset,
                t.sha256,
                t.saved_to.display(),
                self.entries,
                self.last_hash
            ),
        }
    }
}

/// Removes a torn final line from the audit file at `path`, after verifying every complete
/// line before it. The file must not be open in a running gateway.
///
/// # Errors
/// [`AuditError::Busy`] while a gateway holds the file, [`AuditError::Corrupt`] when the
/// chain has a defect other than a torn final line (nothing is changed then),
/// [`AuditError::Io`].
pub fn repair(path: &Path) -> Result<RepairReport, AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err)?;
    if !lock::try_lock(&file, Lock::Exclusive).map_err(io_err)? {
        return Err(AuditError::Busy {
            path: path.to_owned(),
            reason: "is open in a running medgate; stop it before repairing",
        });
    }
    let scan =
        chain::scan(BufReader::new(&file), path, None).map_err(|source| AuditError::Corrupt {
            path: path.to_owned(),
            source,
        })?;
    let Some((line, bytes)) = scan.torn else {
        return Ok(RepairReport {
            entries: scan.entries,
            last_hash: scan.last_hash,
            removed: None,
        });
    };
    let mut torn = Vec::with_capacity(bytes as usize);
    file.seek(SeekFrom::Start(scan.len)).map_err(io_err)?;
    (&mut file)
        .take(bytes)
        .read_to_end(&mut torn)
        .map_err(io_err)?;
    let saved_to = save(path, &torn).map_err(io_err)?;
    file.set_len(scan.len).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(RepairReport {
        entries: scan.entries,
        last_hash: scan.last_hash,
        removed: Some(Torn {
            line,
            offset: scan.len,
            bytes,
            sha256: chain::sha256_hex(&torn),
            saved_to,
        }),
    })
}

/// Writes the removed bytes to `<path>.torn-<time>` (a new file, synced) and returns its path.
fn save(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    for n in 0..100u32 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".torn-{stamp}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let target = PathBuf::from(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
        {
            Ok(mut f) => {
                f.write_all(bytes)?;
                f.sync_all()?;
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name for the removed bytes"))
}
