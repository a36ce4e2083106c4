//! Tamper-evident, hash-chained audit log of every patient-data access.
//!
//! The log is a JSON Lines file. Every line carries a sequence number (`seq`, from 1), a UTC
//! timestamp (`time`) and `prev`: the hex SHA-256 of the previous line's exact bytes (without
//! its newline), or 64 zeros for the first line. Editing, removing, inserting or reordering any
//! line therefore breaks the chain, which [`verify`] detects and reports by line number.
//!
//! [`AuditLog`] appends entries one at a time (appends are serialised) and returns only once
//! the line has reached the kernel (and the disk under [`Durability::Fsync`]), so a request is
//! served only after its access has been recorded.
//!
//! Patient identifiers are written to this file only: they never appear in error messages.

mod chain;
mod time;

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

pub use chain::{verify, VerifyError, VerifyReport};

/// The hash that the first entry's `prev` refers to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One recorded access, as supplied by the caller (the log adds `seq`, `time` and `prev`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The request's correlation id.
    pub request_id: String,
    /// The partner (API client) that made the request.
    pub partner: String,
    /// The route template that served it.
    pub route: String,
    /// The data source consulted, when the route names one.
    pub source: Option<String>,
    /// The patients whose data was requested.
    pub patient_ids: Vec<String>,
    /// How many records were served.
    pub records: u64,
    /// The HTTP status answered.
    pub status: u16,
    /// A short outcome label (`ok`, `error`, a problem kind, ...).
    pub outcome: String,
}

/// How far an entry must have travelled before [`AuditLog::append`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The line has been handed to the kernel with `write(2)` (survives a process crash).
    Flush,
    /// The line has also been `fdatasync`ed (survives a power loss).
    Fsync,
}

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The audit file could not be created, read or written.
    #[error("audit file {}: {source}", path.display())]
    Io {
        /// The audit file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The existing file's chain is broken; it is not extended.
    #[error("existing audit file {} is not intact: {source}", path.display())]
    Corrupt {
        /// The audit file.
        path: PathBuf,
        /// The first problem found.
        #[source]
        source: VerifyError,
    },
    /// The entry could not be serialised (the message omits the entry's content on purpose).
    #[error("audit entry could not be serialised")]
    Serialize(#[source] serde_json::Error),
    /// A previous write failed and could not be rolled back, so the file may end with a partial
    /// line; appending more would build on a broken chain.
    #[error("audit file {} is unusable after a failed write that could not be rolled back", path.display())]
    Broken {
        /// The audit file.
        path: PathBuf,
    },
}

/// The append-only, hash-chained audit log. Cheap to clone; all clones share one file.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    durability: Durability,
    state: Mutex<Tip>,
}

/// The end of the chain: what the next append continues from.
struct Tip {
    file: Arc<File>,
    next_seq: u64,
    prev_hash: String,
    /// The file length after the last complete line, to roll back a failed write.
    len: u64,
    broken: bool,
}

/// A line as written: field order here is the order on disk.
#[derive(Serialize)]
struct LineOut<'a> {
    seq: u64,
    time: &'a str,
    prev: &'a str,
    request_id: &'a str,
    partner: &'a str,
    route: &'a str,
    source: Option<&'a str>,
    patient_ids: &'a [String],
    records: u64,
    status: u16,
    outcome: &'a str,
}

impl AuditLog {
    /// Opens (or creates) the audit file for appending.
    ///
    /// Parent directories are created. An existing file is verified first and the chain is
    /// continued from its last entry; a broken chain is refused rather than extended.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the file cannot be created or read, [`AuditError::Corrupt`]
    /// (naming the first bad line) when the existing chain is broken.
    pub fn open(path: &Path, durability: Durability) -> Result<AuditLog, AuditError> {
        let io_err = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(io_err)?;
        // Read through the handle we will append to, so we continue exactly the file we checked.
        let (report, len) = chain::check(BufReader::new(&file), path).map_err(|e| match e {
            VerifyError::Io { path, source } => AuditError::Io { path, source },
            source => AuditError::Corrupt {
                path: path.to_owned(),
                source,
            },
        })?;
        let tip = Tip {
            file: Arc::new(file),
            next_seq: report.entries + 1,
            prev_hash: report.last_hash,
            len,
            broken: false,
        };
        let inner = Inner {
            path: path.to_owned(),
            durability,
            state: Mutex::new(tip),
        };
        Ok(AuditLog {
            inner: Arc::new(inner),
        })
    }

    /// The audit file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends one entry and returns once it is durable as configured.
    ///
    /// Appends are serialised, so sequence numbers follow the order in which they complete.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the line cannot be written (the file is rolled back to its last
    /// complete line), [`AuditError::Broken`] when an earlier failure could not be rolled back.
    pub async fn append(&self, entry: AuditEntry) -> Result<(), AuditError> {
        // The append runs in its own task: if the caller is cancelled (a client hangs up while
        // its entry is being written), the line still reaches the file *and* the chain's tip
        // advances with it. Without this, a dropped future left a written line behind an
        // un-advanced tip and the next entry reused its sequence number.
        let log = self.clone();
        tokio::spawn(async move { log.append_now(entry).await })
            .await
            .map_err(|e| AuditError::Io {
                path: self.inner.path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
    }

    async fn append_now(&self, entry: AuditEntry) -> Result<(), AuditError> {
        let mut tip = self.inner.state.lock().await;
        if tip.broken {
            return Err(AuditError::Broken {
                path: self.inner.path.clone(),
            });
        }
        let now = time::rfc3339_millis(std::time::SystemTime::now());
        let mut line = render(&entry, tip.next_seq, &now, &tip.prev_hash)?;
        let hash = chain::sha256_hex(&line);
        line.push(b'\n');
        let written = line.len() as u64;
        match self.write(&tip, line).await {
            Ok(()) => {
                tip.next_seq += 1;
                tip.prev_hash = hash;
                tip.len += written;
                Ok(())
            }
            Err(WriteFailure {
                source,
                rolled_back,
            }) => {
                tip.broken = !rolled_back;
                Err(AuditError::Io {
                    path: self.inner.path.clone(),
                    source,
                })
            }
        }
    }

    /// Writes the line. `fdatasync` blocks for milliseconds, so under `Fsync` it runs on the
    /// blocking pool; a plain append of one short line to the page cache does not, and doing
    /// it inline saves a thread hand-off (two context switches) per request.
    async fn write(&self, tip: &Tip, line: Vec<u8>) -> Result<(), WriteFailure> {
        let file = Arc::clone(&tip.file);
        let len = tip.len;
        let durability = self.inner.durability;
        if durability == Durability::Flush {
            return write_line(&file, &line, durability, len);
        }
        let task = tokio::task::spawn_blocking(move || write_line(&file, &line, durability, len));
        match task.await {
            Ok(result) => result,
            // The blocking task panicked or was cancelled: we cannot know what reached the file.
            Err(e) => Err(WriteFailure {
                source: std::io::Error::other(e.to_string()),
                rolled_back: false,
            }),
        }
    }
}

struct WriteFailure {
    source: std::io::Error,
    rolled_back: bool,
}

/// Writes one line; on failure truncates back to `len` so no partial line remains.
fn write_line(
    mut file: &File,
    line: &[u8],
    durability: Durability,
    len: u64,
) -> Result<(), WriteFailure> {
    let result = file.write_all(line).and_then(|()| match durability {
        Durability::Flush => Ok(()),
        Durability::Fsync => file.sync_data(),
    });
    result.map_err(|source| WriteFailure {
        source,
        rolled_back: file.set_len(len).is_ok(),
    })
}

/// Serialises one line (without its newline) in the on-disk field order.
fn render(entry: &AuditEntry, seq: u64, time: &str, prev: &str) -> Result<Vec<u8>, AuditError> {
    let line = LineOut {
        seq,
        time,
        prev,
        request_id: &entry.request_id,
        partner: &entry.partner,
        route: &entry.route,
        source: entry.source.as_deref(),
        patient_ids: &entry.patient_ids,
        records: entry.records,
        status: entry.status,
        outcome: &entry.outcome,
    };
    serde_json::to_vec(&line).map_err(AuditError::Serialize)
}
