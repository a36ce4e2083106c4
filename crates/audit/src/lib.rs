//! Tamper-evident, hash-chained audit log of every patient-data access.
//!
//! The log is a JSON Lines file. Every line carries a sequence number (`seq`, from 1), a UTC
//! timestamp (`time`) and `prev`: the hex SHA-256 of the previous line's exact bytes (without
//! its newline), or 64 zeros for the first line. Editing, removing, inserting or reordering any
//! line therefore breaks the chain, which [`verify`] detects and reports by line number.
//!
//! The chain cannot show on its own that its *last* entries were edited or removed, or that
//! it was rewritten wholesale. With a key (from an environment variable), the log keeps a
//! signed checkpoint of its head beside the file (see [`checkpoint`]), and
//! [`verify_with_key`] detects those too, up to the latest checkpoint.
//!
//! [`AuditLog`] appends entries one at a time (appends are serialised) and returns only once
//! the line has reached the kernel (and the disk under [`Durability::Fsync`]), so a request is
//! served only after its access has been recorded. Appending works from async code
//! ([`AuditLog::append`]), and from synchronous code or while the runtime shuts down
//! ([`AuditLog::append_blocking`]); [`AuditLog::close`] (and dropping the last handle) makes
//! the file durable and signs the final head.
//!
//! A crash mid-write can leave a torn final line. Opening refuses such a file, naming the
//! line; [`repair`] cuts it off, keeps the removed bytes in a side file and reports them.
//!
//! Patient identifiers are written to this file only: they never appear in error messages.

mod chain;
pub mod checkpoint;
mod lock;
mod repair;
mod time;

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use chain::{verify, verify_with_key, VerifyError, VerifyReport};
pub use checkpoint::{checkpoint_path, Checkpoint, CheckpointKey};
pub use repair::{repair, RepairReport, Torn};

use lock::Lock;

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
    /// A short outcome label (`ok`, `partial`, `error`, a problem kind, ...).
    pub outcome: String,
    /// What else the route needs on record (failed fetches of a download, receipt ids of an
    /// upload, an export job's files and their SHA-256); omitted when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// How far an entry must have travelled before [`AuditLog::append`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The line has been handed to the kernel with `write(2)` (survives a process crash).
    Flush,
    /// The line has also been `fdatasync`ed (survives a power loss).
    Fsync,
}

/// How a log is opened.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// When an append returns.
    pub durability: Durability,
    /// Signed checkpoints of the head; `None` keeps none.
    pub checkpoints: Option<CheckpointPolicy>,
}

impl AuditOptions {
    /// No checkpoints, the given durability.
    pub fn new(durability: Durability) -> Self {
        AuditOptions {
            durability,
            checkpoints: None,
        }
    }
}

/// When the head is signed: after `every_entries` entries or `interval` (whichever comes
/// first, checked when an entry is appended), when the log opens and when it closes.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    /// The signing key.
    pub key: CheckpointKey,
    /// Entries between checkpoints.
    pub every_entries: u64,
    /// Time between checkpoints (while entries arrive).
    pub interval: Duration,
}

impl CheckpointPolicy {
    /// The default cadence: every 1000 entries or 60 s.
    pub fn new(key: CheckpointKey) -> Self {
        CheckpointPolicy {
            key,
            every_entries: 1000,
            interval: Duration::from_secs(60),
        }
    }
}

/// The end of the chain: what `medgate audit head` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The last entry's sequence number (0 for an empty log).
    pub seq: u64,
    /// The hex SHA-256 of its line (the genesis hash for an empty log).
    pub hash: String,
    /// The latest checkpoint, if any (from a file: not verified; use [`verify_with_key`]).
    pub checkpoint: Option<Checkpoint>,
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
    /// The checkpoint key is missing or unusable (the message never contains the key).
    #[error("audit checkpoint key: {0}")]
    Key(String),
    /// Another process holds the file in a way that excludes this operation.
    #[error("audit file {} {reason}", path.display())]
    Busy {
        /// The audit file.
        path: PathBuf,
        /// Who holds it.
        reason: &'static str,
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
    checkpoints: Option<CheckpointPolicy>,
    // A std mutex: every write is synchronous and short, and a sync mutex can be taken from
    // a destructor or a shutdown hook where no runtime runs.
    state: Mutex<Tip>,
}

/// The end of the chain: what the next append continues from.
struct Tip {
    file: File,
    next_seq: u64,
    prev_hash: String,
    /// The file length after the last complete line, to roll back a failed write.
    len: u64,
    broken: bool,
    checkpoint: Option<Checkpoint>,
    checkpointed_at: Instant,
}

impl Tip {
    fn head_seq(&self) -> u64 {
        self.next_seq - 1
    }

    fn signed_seq(&self) -> u64 {
        self.checkpoint.as_ref().map_or(0, |c| c.seq)
    }
}

/// An entry as it will be written: the caller's entry, perhaps with fewer ids.
struct Record {
    entry: AuditEntry,
    omitted: u64,
}

impl Record {
    fn new(mut entry: AuditEntry, max_patient_ids: Option<usize>) -> Record {
        let keep = max_patient_ids.unwrap_or(usize::MAX);
        let omitted = entry.patient_ids.len().saturating_sub(keep) as u64;
        entry.patient_ids.truncate(keep);
        Record { entry, omitted }
    }
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
    #[serde(skip_serializing_if = "is_zero")]
    patient_ids_omitted: u64,
    records: u64,
    status: u16,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AuditLog {
    /// Opens (or creates) the audit file for appending, without checkpoints.
    ///
    /// # Errors
    /// As [`AuditLog::open_with`].
    pub fn open(path: &Path, durability: Durability) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(path, AuditOptions::new(durability))
    }

    /// Opens (or creates) the audit file for appending.
    ///
    /// Parent directories are created. An existing file is verified first and the chain is
    /// continued from its last entry; a broken chain is refused rather than extended, and so
    /// is a torn final line (the error says to run `medgate audit repair`). An existing
    /// checkpoint must match the chain; with a key it must also carry a valid signature, and
    /// a chain with entries must have one (see [`sign_head`] to enable checkpoints on an
    /// existing file). With a key, the head is signed at once.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the file cannot be created or read, [`AuditError::Corrupt`]
    /// (naming the first bad line or the checkpoint problem), [`AuditError::Busy`] while
    /// `repair` or `sign_head` works on the file.
    pub fn open_with(path: &Path, options: AuditOptions) -> Result<AuditLog, AuditError> {
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
        if !lock::try_lock(&file, Lock::Shared).map_err(io_err)? {
            return Err(AuditError::Busy {
                path: path.to_owned(),
                reason: "is being repaired or re-signed by another process",
            });
        }
        let corrupt = |source| AuditError::Corrupt {
            path: path.to_owned(),
            source,
        };
        let checkpoint = chain::read_checkpoint(path).map_err(corrupt)?;
        // Read through the handle we will append to, so we continue exactly the file we checked.
        let scan = chain::scan(
            BufReader::new(&file),
            path,
            checkpoint.as_ref().map(|c| c.seq),
        )
        .map_err(|e| match e {
            VerifyError::Io { path, source } => AuditError::Io { path, source },
            source => corrupt(source),
        })?;
        scan.intact().map_err(corrupt)?;
        let key = options.checkpoints.as_ref().map(|c| &c.key);
        chain::check_checkpoint(&scan, checkpoint.as_ref(), key).map_err(corrupt)?;
        let tip = Tip {
            file,
            next_seq: scan.entries + 1,
            prev_hash: scan.last_hash,
            len: scan.len,
            broken: false,
            checkpoint,
            checkpointed_at: Instant::now(),
        };
        let log = AuditLog {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                durability: options.durability,
                checkpoints: options.checkpoints,
                state: Mutex::new(tip),
            }),
        };
        if log.inner.checkpoints.is_some() {
            log.checkpoint()?;
        }
        Ok(log)
    }

    /// The audit file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The head of the chain as this log knows it (no I/O).
    pub fn head(&self) -> Head {
        let tip = self.lock();
        Head {
            seq: tip.head_seq(),
            hash: tip.prev_hash.clone(),
            checkpoint: tip.checkpoint.clone(),
        }
    }

    /// Appends one entry and returns once it is durable as configured.
    ///
    /// Appends are serialised, so sequence numbers follow the order in which they complete.
    /// Cancel-safe: once called, the entry is either written with the chain's tip advanced
    /// or not written at all, even if this future is dropped.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the line cannot be written (the file is rolled back to its last
    /// complete line), [`AuditError::Broken`] when an earlier failure could not be rolled back.
    pub async fn append(&self, entry: AuditEntry) -> Result<(), AuditError> {
        self.append_record(Record::new(entry, None)).await
    }

    /// [`append`](AuditLog::append) with at most `max_patient_ids` ids written; the line
    /// records how many were left out (`patient_ids_omitted`). For requests refused before
    /// any data was served, whose ids are the caller's, not a record of access.
    ///
    /// # Errors
    /// As [`append`](AuditLog::append).
    pub async fn append_bounded(
        &self,
        entry: AuditEntry,
        max_patient_ids: usize,
    ) -> Result<(), AuditError> {
        self.append_record(Record::new(entry, Some(max_patient_ids)))
            .await
    }

    /// Appends one entry from synchronous code: a destructor, a shutdown hook, a thread with
    /// no runtime. Blocks for the write (and the `fdatasync` under [`Durability::Fsync`]);
    /// in async code prefer [`append`](AuditLog::append). `max_patient_ids` as in
    /// [`append_bounded`](AuditLog::append_bounded).
    ///
    /// # Errors
    /// As [`append`](AuditLog::append).
    pub fn append_blocking(
        &self,
        entry: AuditEntry,
        max_patient_ids: Option<usize>,
    ) -> Result<(), AuditError> {
        self.write_record(Record::new(entry, max_patient_ids))
    }

    async fn append_record(&self, record: Record) -> Result<(), AuditError> {
        // A plain append of one short line to the page cache is done inline: a thread
        // hand-off would cost more than the write. fdatasync and checkpoints block for
        // milliseconds, so they run on the blocking pool.
        let blocking = self.checkpoint_due(&self.lock()).is_some();
        if self.inner.durability == Durability::Flush && !blocking {
            return self.write_record(record);
        }
        // The record waits in a slot the blocking task empties: if the runtime is shutting
        // down and never runs the task, the entry is written here instead of being lost.
        let slot = Arc::new(Mutex::new(Some(record)));
        let task = {
            let (log, slot) = (self.clone(), Arc::clone(&slot));
            tokio::task::spawn_blocking(move || {
                let record = lock_ignoring_poison(&slot).take();
                record.map(|r| log.write_record(r))
            })
        };
        // Dropping this future does not stop the blocking task: the entry is still written
        // and the tip advances with it.
        match task.await {
            Ok(Some(result)) => result,
            Ok(None) | Err(_) => match lock_ignoring_poison(&slot).take() {
                Some(record) => self.write_record(record),
                None => Err(AuditError::Io {
                    path: self.inner.path.clone(),
                    source: std::io::Error::other("the audit write was interrupted"),
                }),
            },
        }
    }

    /// Writes one record under the tip lock, then signs the head if a checkpoint is due.
    fn write_record(&self, record: Record) -> Result<(), AuditError> {
        let mut tip = self.lock();
        if tip.broken {
            return Err(AuditError::Broken {
                path: self.inner.path.clone(),
            });
        }
        let mut line = render(&record, tip.next_seq, &time::now(), &tip.prev_hash)?;
        let hash = chain::sha256_hex(&line);
        line.push(b'\n');
        let written = line.len() as u64;
        if let Err(WriteFailure {
            source,
            rolled_back,
        }) = write_line(&tip.file, &line, self.inner.durability, tip.len)
        {
            tip.broken = !rolled_back;
            return Err(AuditError::Io {
                path: self.inner.path.clone(),
                source,
            });
        }
        tip.next_seq += 1;
        tip.prev_hash = hash;
        tip.len += written;
        if let Some(policy) = self.checkpoint_due(&tip) {
            // The entry is recorded; a checkpoint that fails weakens tamper evidence but does
            // not undo the access record, so it is reported and retried, not returned.
            if let Err(e) = self.sign(policy, &mut tip) {
                tracing::error!(error = %e, "audit checkpoint could not be written");
            }
        }
        Ok(())
    }

    /// The checkpoint policy, when a checkpoint is due after the entries written so far.
    fn checkpoint_due(&self, tip: &Tip) -> Option<&CheckpointPolicy> {
        let policy = self.inner.checkpoints.as_ref()?;
        let unsigned = tip.head_seq().saturating_sub(tip.signed_seq());
        let due = !tip.broken
            && unsigned > 0
            && (unsigned >= policy.every_entries
                || tip.checkpointed_at.elapsed() >= policy.interval);
        due.then_some(policy)
    }

    /// Signs the current head now (a no-op without a key). Blocks for a few `fsync`s: the
    /// entries it covers are made durable first, then the checkpoint is replaced atomically.
    ///
    /// # Errors
    /// [`AuditError::Io`] when the file or the checkpoint cannot be synced or written.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        let mut tip = self.lock();
        match &self.inner.checkpoints {
            Some(policy) if !tip.broken => self.sign(policy, &mut tip).map(Some),
            _ => Ok(tip.checkpoint.clone()),
        }
    }

    fn sign(&self, policy: &CheckpointPolicy, tip: &mut Tip) -> Result<Checkpoint, AuditError> {
        let io_err = |source| AuditError::Io {
            path: self.inner.path.clone(),
            source,
        };
        // Retried at the next interval, not at every append, if this fails.
        tip.checkpointed_at = Instant::now();
        // A checkpoint must never claim a line that a power loss could still take away.
        tip.file.sync_data().map_err(io_err)?;
        let cp = policy
            .key
            .sign(tip.head_seq(), &tip.prev_hash, &time::now());
        checkpoint::write(&self.inner.path, &cp).map_err(io_err)?;
        tip.checkpoint = Some(cp.clone());
        tip.checkpointed_at = Instant::now();
        Ok(cp)
    }

    /// Makes every appended entry durable (`fsync`, whatever the durability) and signs the
    /// final head. Call it at shutdown, after the last entries (e.g. "interrupted" accesses)
    /// are appended. The log stays usable: a later append is written, and covered when the
    /// last handle is dropped.
    ///
    /// # Errors
    /// [`AuditError::Io`] when syncing or signing fails.
    pub fn close(&self) -> Result<(), AuditError> {
        let mut tip = self.lock();
        finish(&self.inner.path, self.inner.checkpoints.as_ref(), &mut tip)
    }

    fn lock(&self) -> MutexGuard<'_, Tip> {
        lock_ignoring_poison(&self.inner.state)
    }
}

/// Syncs the file and signs the head if it moved since the last checkpoint.
fn finish(
    path: &Path,
    checkpoints: Option<&CheckpointPolicy>,
    tip: &mut Tip,
) -> Result<(), AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    if tip.broken {
        return Ok(());
    }
    tip.file.sync_all().map_err(io_err)?;
    if let Some(policy) = checkpoints {
        if tip.checkpoint.is_none() || tip.head_seq() != tip.signed_seq() {
            let cp = policy
                .key
                .sign(tip.head_seq(), &tip.prev_hash, &time::now());
            checkpoint::write(path, &cp).map_err(io_err)?;
            tip.checkpoint = Some(cp);
        }
    }
    Ok(())
}

impl Drop for Inner {
    /// The last handle going away closes the log: nothing appended stays unsynced or
    /// unsigned because a caller forgot [`AuditLog::close`].
    fn drop(&mut self) {
        let Inner {
            path,
            checkpoints,
            state,
            ..
        } = self;
        let tip = state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = finish(path, checkpoints.as_ref(), tip) {
            tracing::error!(error = %e, "audit log could not be closed cleanly");
        }
    }
}

fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere while holding it; every write either completed
    // (tip advanced) or was rolled back or marked broken before any code that can panic.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The head of the audit file at `path` and its checkpoint, read from the end of the file
/// without verifying the chain (for `medgate audit head`; `verify` checks everything).
///
/// # Errors
/// The file cannot be read, its last line is torn or not an entry, or the checkpoint file
/// is unreadable.
pub fn head(path: &Path) -> Result<Head, VerifyError> {
    let (seq, hash) = chain::tail_head(path)?;
    let checkpoint = chain::read_checkpoint(path)?;
    Ok(Head {
        seq,
        hash,
        checkpoint,
    })
}

/// Signs the head of the audit file at `path` with `key`, after verifying its chain: the
/// explicit first step when checkpoints are enabled for a file that already has entries
/// (`medgate audit sign`). Refuses a file a running gateway holds, and a file whose existing
/// checkpoint does not verify with `key` (remove that checkpoint deliberately to re-sign).
///
/// # Errors
/// [`AuditError::Busy`], [`AuditError::Corrupt`], [`AuditError::Io`].
pub fn sign_head(path: &Path, key: &CheckpointKey) -> Result<Checkpoint, AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    if !lock::try_lock(&file, Lock::Exclusive).map_err(io_err)? {
        return Err(AuditError::Busy {
            path: path.to_owned(),
            reason: "is open in a running medgate; stop it first (it signs its own head)",
        });
    }
    let corrupt = |source| AuditError::Corrupt {
        path: path.to_owned(),
        source,
    };
    let existing = chain::read_checkpoint(path).map_err(corrupt)?;
    let scan = chain::scan(
        BufReader::new(&file),
        path,
        existing.as_ref().map(|c| c.seq),
    )
    .map_err(corrupt)?;
    scan.intact().map_err(corrupt)?;
    if existing.is_some() {
        chain::check_checkpoint(&scan, existing.as_ref(), Some(key)).map_err(corrupt)?;
    }
    let cp = key.sign(scan.entries, &scan.last_hash, &time::now());
    checkpoint::write(path, &cp).map_err(io_err)?;
    Ok(cp)
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
fn render(record: &Record, seq: u64, time: &str, prev: &str) -> Result<Vec<u8>, AuditError> {
    let entry = &record.entry;
    let line = LineOut {
        seq,
        time,
        prev,
        request_id: &entry.request_id,
        partner: &entry.partner,
        route: &entry.route,
        source: entry.source.as_deref(),
        patient_ids: &entry.patient_ids,
        patient_ids_omitted: record.omitted,
        records: entry.records,
        status: entry.status,
        outcome: &entry.outcome,
        details: entry.details.as_ref(),
    };
    serde_json::to_vec(&line).map_err(AuditError::Serialize)
}
