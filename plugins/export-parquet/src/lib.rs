//! Apache Parquet exporter: typed columns over the tabular projection, streamed row groups.
//!
//! One file, one row per result: the tabular projection [`medgate_core::rows`] that CSV and
//! Excel write, a panel's components each on their own row (`<id>#<n>`). The first 27 columns
//! are [`COLUMNS`] with their names and order; typed columns get companion columns after them
//! (the full schema is in `table.rs`):
//!
//! - **Numbers**: `value`, `reference_low` and `reference_high` are DOUBLE where a double holds
//!   the written number exactly (`98.60`, `1e-22`; integer values up to 2^53), and null where
//!   it would not (`1e-400`, `1e400`, 30 significant digits): a reader never gets a silently
//!   rounded number. `value_text`, `reference_low_text` and `reference_high_text` always hold
//!   the number as written. (Parquet DECIMAL needs one scale per column; clinical numbers
//!   have none in common.) Integer and boolean values are also in `value_integer` (INT64) and
//!   `value_boolean` (BOOLEAN).
//! - **Times**: `effective`, `effective_end`, `issued` (and `value_timestamp` for dateTime
//!   values) are TIMESTAMP(MICROS, isAdjustedToUTC = true): **UTC-adjusted instants**.
//!   `2024-01-01T08:00:00+08:00` is stored as `2024-01-01T00:00:00Z`; its offset survives only
//!   in `effective_text`, which holds the RFC 3339 text as written, and `effective_zone` says
//!   whether it was sent or assumed from the source's time zone. A date is null there, a
//!   DATE in `*_date`, and its text; a local time (no offset), a month or a year is null in
//!   both and kept as text; so is a time finer than a microsecond. The file's key-value
//!   metadata (`medgate:timestamps`, `medgate:numbers`, `medgate:columns`) says the same to
//!   whoever opens it without these docs.
//! - Everything else is a UTF-8 string, null where CSV writes an empty cell.
//!
//! Every `*_text` column holds exactly what CSV writes for its column, so the typed columns
//! never hold the only copy of a value.
//!
//! File: row groups of at most [`ROW_GROUP_ROWS`] rows (fewer for wide rows: an 8 MiB budget
//! of encoded bytes), pages of at most 8,192 rows, dictionary encoding (Parquet's default)
//! except for the nearly unique columns (`id`, times and their texts), which are zstd
//! compressed instead (the dictionary-encoded rest is snappy: see `file.rs` for why), page
//! statistics, and the Arrow schema embedded so Arrow readers get `timestamp[us, tz=UTC]`.
//!
//! Design: the parquet crate's encoder is synchronous and CPU-bound, so observations flow
//! through a bounded channel to a blocking task that builds record batches of 4,096 rows (or
//! 8 MiB of text) and encodes them. Parquet needs no seeking (magic, row groups, then the
//! footer), so nothing is spooled to a temporary file as XLSX must: each finished row group
//! goes out in 64 KiB chunks through a second bounded channel while the next one is encoded
//! (the first bytes leave after the first row group), and memory stays bounded by the
//! observations in flight, one record batch, one encoded row group and four chunks, whatever
//! the row count: 7.6 MiB of peak heap for 1M rows (`tests/million.rs`).
//!
//! Failure: the footer (the file's metadata and closing magic) is written only after the
//! stream ended cleanly. When the stream fails, the row groups already sent stay sent, but no
//! footer follows, so no Parquet reader accepts the output as a file; the stream's error is
//! returned and the caller cuts the download.
//!
//! [`COLUMNS`]: medgate_core::COLUMNS

mod convert;
mod file;
mod sink;
mod table;

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use medgate_core::{Error, ExportSummary, Exporter, Observation, ObservationStream, Result};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::file::ParquetFile;
use crate::sink::ChunkSink;

pub use crate::file::METADATA;

/// Rows per row group at most (the default).
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Observations per message to the writer task (amortises channel synchronisation).
const BATCH_OBSERVATIONS: usize = 128;

/// Observation batches in flight to the writer task.
const CHANNEL_BATCHES: usize = 2;

/// Output chunks in flight from the writer task: the encoder waits for a slow client here.
const CHANNEL_CHUNKS: usize = 4;

/// Registers the `parquet` format.
pub fn register(registry: &mut medgate_core::Registry) {
    registry.add_exporter(Arc::new(ParquetExporter::default()));
}

/// The `parquet` exporter.
#[derive(Debug, Clone, Copy)]
pub struct ParquetExporter {
    row_group_rows: usize,
}

impl Default for ParquetExporter {
    fn default() -> Self {
        ParquetExporter {
            row_group_rows: ROW_GROUP_ROWS,
        }
    }
}

impl ParquetExporter {
    /// An exporter whose row groups hold at most `rows` rows (at least 1), so several row
    /// groups can be exercised without a million rows.
    pub fn with_row_group_rows(rows: usize) -> Self {
        ParquetExporter {
            row_group_rows: rows.max(1),
        }
    }
}

/// What the stream side sends the writer task.
enum Feed {
    Rows(Vec<Observation>),
    /// The stream ended cleanly: write the footer. Without it (channel closed early because
    /// the stream failed or the export was cancelled) the writer abandons the file.
    End,
}

#[async_trait]
impl Exporter for ParquetExporter {
    fn format(&self) -> &'static str {
        "parquet"
    }

    fn content_type(&self) -> &'static str {
        "application/vnd.apache.parquet"
    }

    fn extension(&self) -> &'static str {
        "parquet"
    }

    /// Counts observations (a panel of three components is one observation, three rows).
    async fn export(
        &self,
        mut observations: ObservationStream,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<ExportSummary> {
        let (feed_tx, feed_rx) = mpsc::channel(CHANNEL_BATCHES);
        let (chunk_tx, chunk_rx) = mpsc::channel(CHANNEL_CHUNKS);
        let row_group_rows = self.row_group_rows;
        let writer = tokio::task::spawn_blocking(move || {
            write_file(feed_rx, ChunkSink::new(chunk_tx), row_group_rows)
        });
        let feeding = async move {
            // Dropping the sender when done tells the writer that no more is coming.
            feed(&mut observations, &feed_tx).await
        };
        let (fed, drained) = tokio::join!(feeding, drain(chunk_rx, out));
        let written = writer
            .await
            .map_err(|e| Error::Internal(format!("parquet writer task failed: {e}")))?;
        // A stream error wins: the writer only stopped because of it. Then the output's
        // error (the writer stopped because its chunks had nowhere to go), then the writer's.
        fed?;
        drained?;
        let Some(count) = written? else {
            return Err(Error::Internal(
                "parquet writer stopped without a result".into(),
            ));
        };
        out.flush().await?;
        Ok(ExportSummary { rows: count })
    }
}

/// Sends the stream's observations to the writer in batches, then [`Feed::End`].
///
/// Returns the stream's first error without sending `End`. If the writer has gone away
/// (it failed), feeding stops quietly and the writer's own error is reported.
async fn feed(observations: &mut ObservationStream, tx: &mpsc::Sender<Feed>) -> Result<()> {
    let mut batch = Vec::with_capacity(BATCH_OBSERVATIONS);
    while let Some(item) = observations.next().await {
        batch.push(item?);
        if batch.len() == BATCH_OBSERVATIONS {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_OBSERVATIONS));
            if tx.send(Feed::Rows(full)).await.is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() && tx.send(Feed::Rows(batch)).await.is_err() {
        return Ok(());
    }
    // A send error here means the writer failed; its result says why.
    let _ = tx.send(Feed::End).await;
    Ok(())
}

/// Writes the writer's chunks to `out` until the writer is done. Takes the receiver by value:
/// on a write error it is dropped, so the writer's next send fails instead of waiting forever.
async fn drain(
    mut chunks: mpsc::Receiver<Vec<u8>>,
    out: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<()> {
    while let Some(chunk) = chunks.recv().await {
        out.write_all(&chunk).await?;
    }
    Ok(())
}

/// The blocking side: encodes the file from the channel. `None` when the feed was abandoned
/// before [`Feed::End`] (the footer is then never written).
fn write_file(
    mut rx: mpsc::Receiver<Feed>,
    sink: ChunkSink,
    row_group_rows: usize,
) -> Result<Option<u64>> {
    let mut file = ParquetFile::new(sink, row_group_rows)?;
    while let Some(feed) = rx.blocking_recv() {
        match feed {
            Feed::Rows(batch) => {
                for observation in &batch {
                    file.push(observation)?;
                }
            }
            Feed::End => return file.finish().map(Some),
        }
    }
    Ok(None)
}
