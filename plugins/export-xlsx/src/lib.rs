//! Excel (XLSX) exporter on rust_xlsxwriter in constant-memory mode.
//!
//! The workbook has one sheet `observations` (then `observations-2`, … when Excel's
//! 1,048,576-row limit is reached), each with a bold, frozen header row of the 27
//! [`COLUMNS`], an autofilter over the used range and fixed column widths. It holds the
//! tabular projection [`medgate_core::rows`] of every observation: one row per result, a
//! panel's components each on their own row (`<id>#<n>`).
//!
//! Cells are typed, and never rounded or shifted silently (the rules are in `cell.rs`):
//! - a number is a number cell when Excel keeps and shows it unchanged (exact in a double,
//!   at most 15 significant digits, in Excel's range), formatted to show its written digits
//!   (`98.60` → `0.00`, `1.50e3` → `0.00E+00`); otherwise (`1e-400`, 30 significant digits)
//!   a text cell holding the number as written;
//! - integers are numbers, booleans are booleans;
//! - a date is an Excel date (`yyyy-mm-dd`); a time of day is an Excel date-time holding its
//!   own wall-clock time, with a number format that spells the rest of its RFC 3339 text, so
//!   the cell displays exactly `2024-01-01T08:00:00+08:00`, `…Z`, or a local time without
//!   offset. The offset is in the cell's format (and `effective_zone` says whether it was sent,
//!   assumed or absent). A bare year or month, a time finer than milliseconds, or a date
//!   outside 1900-03-01 to 9999-12-31 is a text cell holding the RFC 3339 text;
//! - everything else is a plain string cell, never a formula, even when it starts with `=`.
//!
//! Design: rust_xlsxwriter is synchronous and an XLSX file is a zip that can only be written
//! once complete. Observations therefore flow through a bounded channel to a blocking task
//! that writes a constant-memory workbook (each row goes to disk as soon as the next one
//! starts), saves it into an anonymous temporary file, and the file is then copied to the
//! output. Memory stays bounded whatever the row count; nothing reaches the output unless the
//! export succeeded.
//!
//! [`COLUMNS`]: medgate_core::COLUMNS

mod book;
mod cell;

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use medgate_core::{Error, ExportSummary, Exporter, Observation, ObservationStream, Result};
use rust_xlsxwriter::RowNum;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::book::{Book, EXCEL_MAX_ROWS};

/// Observations per message to the writer task (amortises channel synchronisation).
const BATCH_OBSERVATIONS: usize = 256;

/// Batches in flight: bounds the observations held in memory to
/// `BATCH_OBSERVATIONS * CHANNEL_BATCHES`.
const CHANNEL_BATCHES: usize = 4;

/// Bytes per read when copying the finished file to the output.
const COPY_BUFFER: usize = 64 * 1024;

/// Registers the `xlsx` format.
pub fn register(registry: &mut medgate_core::Registry) {
    registry.add_exporter(Arc::new(XlsxExporter::default()));
}

/// The `xlsx` exporter.
#[derive(Debug, Clone, Copy)]
pub struct XlsxExporter {
    /// Rows per sheet including the header; Excel's limit except in tests.
    max_rows: RowNum,
}

impl Default for XlsxExporter {
    fn default() -> Self {
        XlsxExporter {
            max_rows: EXCEL_MAX_ROWS,
        }
    }
}

impl XlsxExporter {
    /// An exporter rolling over to a new sheet after `max_rows` rows (header included; at
    /// least 2, at most Excel's limit, which is the default), so sheet roll-over can be
    /// exercised without a million rows.
    pub fn with_max_rows(max_rows: RowNum) -> Self {
        XlsxExporter { max_rows }
    }
}

/// What the stream side sends the writer task.
enum Feed {
    Rows(Vec<Observation>),
    /// The stream ended cleanly: save the workbook. Without it (channel closed early because
    /// the stream failed or the export was cancelled) the writer discards its work.
    End,
}

#[async_trait]
impl Exporter for XlsxExporter {
    fn format(&self) -> &'static str {
        "xlsx"
    }

    fn content_type(&self) -> &'static str {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    }

    fn extension(&self) -> &'static str {
        "xlsx"
    }

    async fn export(
        &self,
        mut observations: ObservationStream,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<ExportSummary> {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let max_rows = self.max_rows;
        let writer = tokio::task::spawn_blocking(move || write_workbook(rx, max_rows));
        let fed = feed(&mut observations, &tx).await;
        drop(tx);
        let written = writer
            .await
            .map_err(|e| Error::Internal(format!("xlsx writer task failed: {e}")))?;
        // A stream error wins: the writer only stopped because of it.
        fed?;
        let Some((file, count)) = written? else {
            return Err(Error::Internal(
                "xlsx writer stopped without a result".into(),
            ));
        };
        // Large reads: each read of a tokio file is a round trip to the blocking pool.
        let mut file = BufReader::with_capacity(COPY_BUFFER, tokio::fs::File::from_std(file));
        tokio::io::copy_buf(&mut file, out).await?;
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

/// The blocking side: builds the workbook from the channel. `None` when the feed was
/// abandoned before [`Feed::End`].
fn write_workbook(
    mut rx: mpsc::Receiver<Feed>,
    max_rows: RowNum,
) -> Result<Option<(std::fs::File, u64)>> {
    let mut book = Book::new(max_rows)?;
    while let Some(feed) = rx.blocking_recv() {
        match feed {
            Feed::Rows(batch) => {
                for observation in &batch {
                    book.push(observation)?;
                }
            }
            Feed::End => return book.finish().map(Some),
        }
    }
    Ok(None)
}
