//! Writing a run's observations into files split at a byte limit, with size and SHA-256
//! computed while writing.
//!
//! Splitting happens at observation boundaries and every part is a whole file of its format:
//! the exporter of a part sees a stream that simply *ends* when the part is full; it writes
//! its epilogue (a JSON `]`, a Parquet footer, the XLSX zip directory) as for any export, and
//! the next part starts a fresh exporter over the rest of the stream.
//!
//! When is a part full? Exporters buffer (text formats 64 KiB, Parquet a row group, XLSX the
//! whole workbook in a spooled file), so bytes written lag behind observations taken. The
//! gate estimates the part's size as `written + pending × bytes-per-observation`, with
//! 20 % head-room on the pending part. Bytes per observation come from this part's own writes
//! once there are any, else from the previous part, else from a probe: before the first
//! part, the first [`PROBE`] observations are exported once into a counting sink (their
//! format's real encoding, fixed overhead included, so the first XLSX or Parquet part errs on
//! the small side). The limit is met by estimate, not by construction: a part passes it only
//! when the observations still buffered are more than 20 % larger than the average so far. A part is never empty: one observation
//! larger than the limit is a part of its own.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use futures::{Stream, StreamExt};
use medgate_core::{Error, Exporter, Observation, ObservationStream};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use tokio_util::sync::CancellationToken;

/// Head-room on the estimated bytes not yet written: observations differ in size (a source's
/// rows can be a tenth larger than another's), and a part should end below the limit, not
/// around it. Text formats write every 64 KiB, so this costs them at most ~13 KiB per part;
/// XLSX and Parquet (estimated whole) end at ~80 % of the limit.
const ESTIMATE_MARGIN: f64 = 1.2;

/// Observations exported once into a counting sink to learn a format's bytes per
/// observation before the first part.
pub const PROBE: usize = 256;

/// A finished file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Where it is.
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Observations (or, for error files, outcomes) in it.
    pub count: u64,
}

/// The stream shared by the parts of one run.
struct Shared {
    rows: ObservationStream,
    /// Observations taken from `rows` but not yet given to a part (the probe's, and the one
    /// that did not fit into the previous part).
    stash: VecDeque<Observation>,
    /// The error that ended `rows` while probing, for the part that reaches it.
    error: Option<Error>,
    /// `rows` ended (or failed): it must not be polled again.
    ended: bool,
}

/// What the writer and the gate of one part share.
#[derive(Default)]
struct Meter {
    written: AtomicU64,
    taken: AtomicU64,
    taken_at_write: AtomicU64,
}

/// Writes one run into parts.
pub(crate) struct Splitter {
    shared: Arc<Mutex<Shared>>,
    exporter: Arc<dyn Exporter>,
    limit: Option<u64>,
    /// Bytes per observation of the parts written so far.
    measured: Option<f64>,
    rows: Arc<AtomicU64>,
    more: bool,
}

impl Splitter {
    /// A splitter over `rows` into parts of at most about `limit` bytes (`None`: one file);
    /// `rows_counter` counts the observations taken from `rows` (each once).
    pub fn new(
        rows: ObservationStream,
        exporter: Arc<dyn Exporter>,
        limit: Option<u64>,
        rows_counter: Arc<AtomicU64>,
    ) -> Splitter {
        Splitter {
            shared: Arc::new(Mutex::new(Shared {
                rows,
                stash: VecDeque::new(),
                error: None,
                ended: false,
            })),
            exporter,
            limit,
            measured: None,
            rows: rows_counter,
            more: true,
        }
    }

    /// Whether another part follows (the last part ended at the limit, not at the end).
    pub fn more(&self) -> bool {
        self.more
    }

    /// Learns the format's bytes per observation from the first [`PROBE`] observations,
    /// exported into a counting sink (they stay queued for the first part).
    async fn probe(&mut self) {
        let mut rows = {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut shared.rows, futures::stream::empty().boxed())
        };
        let mut sample = Vec::with_capacity(PROBE);
        let (mut error, mut ended) = (None, false);
        while sample.len() < PROBE {
            match rows.next().await {
                Some(Ok(o)) => {
                    self.rows.fetch_add(1, Ordering::Relaxed);
                    sample.push(o);
                }
                Some(Err(e)) => {
                    (error, ended) = (Some(e), true);
                    break;
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if !sample.is_empty() {
            let n = sample.len();
            let copies = futures::stream::iter(sample.clone().into_iter().map(Ok)).boxed();
            let mut counter = Counter(0);
            if self.exporter.export(copies, &mut counter).await.is_ok() && counter.0 > 0 {
                self.measured = Some(counter.0 as f64 / n as f64);
            }
        }
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.rows = rows;
        shared.stash.extend(sample);
        shared.error = error;
        shared.ended = ended;
    }

    /// Writes the next part to `path` (created or truncated), flushed and synced to disk.
    ///
    /// # Errors
    /// The stream's error (the run failed or was interrupted), the exporter's, or an I/O
    /// error; the file is left as it is (the caller removes it).
    pub async fn write_part(
        &mut self,
        path: &Path,
        stop: &CancellationToken,
    ) -> Result<WrittenFile, Error> {
        if self.limit.is_some() && self.measured.is_none() {
            self.probe().await;
        }
        let file = tokio::fs::File::create(path).await?;
        let meter = Arc::new(Meter::default());
        let mut out = Hashing {
            inner: file,
            hash: Sha256::new(),
            meter: meter.clone(),
        };
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gate = Gate {
            shared: self.shared.clone(),
            meter: meter.clone(),
            limit: self.limit,
            measured: self.measured,
            rows: self.rows.clone(),
            cut: cut.clone(),
            done: false,
        };
        let exported = medgate_pipeline::export(&self.exporter, gate.boxed(), &mut out, stop).await;
        exported.result?;
        out.flush().await?;
        out.inner.sync_all().await?;
        let size = meter.written.load(Ordering::Relaxed);
        let count = meter.taken.load(Ordering::Relaxed);
        if count > 0 {
            self.measured = Some(size as f64 / count as f64);
        }
        self.more = cut.load(Ordering::Relaxed);
        Ok(WrittenFile {
            path: path.to_owned(),
            size,
            sha256: hex::encode(out.hash.finalize()),
            count,
        })
    }
}

/// The stream one part's exporter sees: the run's observations until the part is full.
struct Gate {
    shared: Arc<Mutex<Shared>>,
    meter: Arc<Meter>,
    limit: Option<u64>,
    measured: Option<f64>,
    rows: Arc<AtomicU64>,
    cut: Arc<std::sync::atomic::AtomicBool>,
    done: bool,
}

impl Gate {
    /// Whether taking one more observation would make the part pass the limit.
    fn full(&self) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        let taken = self.meter.taken.load(Ordering::Relaxed);
        if taken == 0 {
            return false;
        }
        let written = self.meter.written.load(Ordering::Relaxed);
        let at_write = self.meter.taken_at_write.load(Ordering::Relaxed);
        let per = if written > 0 && at_write > 0 {
            written as f64 / at_write as f64
        } else if let Some(m) = self.measured {
            m
        } else {
            // The probe failed: nothing to go by but the writes to come.
            return false;
        };
        let pending = (taken + 1).saturating_sub(at_write) as f64;
        written as f64 + pending * per * ESTIMATE_MARGIN > limit as f64
    }
}

impl Stream for Gate {
    type Item = Result<Observation, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let shared = self.shared.clone();
        let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
        // Progress counts an observation once, when it leaves the run's stream (the stash
        // holds observations counted before).
        let item = match shared.stash.pop_front() {
            Some(o) => Some(Ok(o)),
            None if shared.error.is_some() => shared.error.take().map(Err),
            None if shared.ended => None,
            None => {
                let item = ready!(shared.rows.poll_next_unpin(cx));
                if let Some(Ok(_)) = &item {
                    self.rows.fetch_add(1, Ordering::Relaxed);
                }
                item
            }
        };
        match item {
            None => {
                shared.ended = true;
                self.done = true;
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                shared.ended = true;
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Some(Ok(o)) => {
                if self.full() {
                    shared.stash.push_front(o);
                    self.cut.store(true, Ordering::Relaxed);
                    self.done = true;
                    return Poll::Ready(None);
                }
                self.meter.taken.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Some(Ok(o)))
            }
        }
    }
}

/// Passes writes through, hashing and counting what was written.
struct Hashing {
    inner: tokio::fs::File,
    hash: Sha256,
    meter: Arc<Meter>,
}

impl AsyncWrite for Hashing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.hash.update(&buf[..n]);
        let m = &self.meter;
        m.written.fetch_add(n as u64, Ordering::Relaxed);
        m.taken_at_write
            .store(m.taken.load(Ordering::Relaxed), Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts bytes and drops them (the probe's sink).
struct Counter(u64);

impl AsyncWrite for Counter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0 += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
