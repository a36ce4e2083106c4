//! Excel (XLSX) exporter on rust_xlsxwriter in constant-memory mode.
//!
//! The workbook has one sheet `observations` (then `observations-2`, … when Excel's
//! 1,048,576-row limit is reached), each with a bold, frozen header row in [`COLUMNS`] order,
//! an autofilter over the used range and fixed column widths.
//!
//! Cell types: numbers are numbers, shown with their written fraction digits (`98.60` →
//! format `0.00`; exponent form → General); booleans are booleans; `effective` becomes a real
//! Excel date-time in the upstream's local wall-clock time with the offset shown literally
//! (`yyyy-mm-dd hh:mm:ss"+08:00"`), or a date for date-only values; everything else, and any
//! text that looks like a formula, is a plain string cell, never a formula.
//!
//! Design: rust_xlsxwriter is synchronous and an XLSX file is a zip that can only be written
//! once complete. Rows therefore flow through a bounded channel to a blocking task that writes
//! a constant-memory workbook (each row goes to disk as soon as the next one starts), saves it
//! into an anonymous temporary file, and the file is then copied to the output. Memory stays
//! bounded whatever the row count; nothing reaches the output unless the export succeeded.
//!
//! [`COLUMNS`]: medgate_core::model::COLUMNS

mod book;
mod effective;

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use medgate_core::{Error, ExportSummary, Exporter, Observation, ObservationStream, Result};
use rust_xlsxwriter::RowNum;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::book::{Book, EXCEL_MAX_ROWS};

/// Rows per message to the writer task (amortises channel synchronisation).
const BATCH_ROWS: usize = 256;

/// Batches in flight: bounds the rows held in memory to `BATCH_ROWS * CHANNEL_BATCHES`.
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
    /// An exporter rolling over to a new sheet after `max_rows` rows (header included), so
    /// tests can exercise sheet rollover without a million rows.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn with_max_rows(max_rows: RowNum) -> Self {
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
        mut rows: ObservationStream,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<ExportSummary> {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let max_rows = self.max_rows;
        let writer = tokio::task::spawn_blocking(move || write_workbook(rx, max_rows));
        let fed = feed(&mut rows, &tx).await;
        drop(tx);
        let written = writer
            .await
            .map_err(|e| Error::Internal(format!("xlsx writer task failed: {e}")))?;
        // A stream error wins: the writer only stopped because of it.
        fed?;
        let Some((file, rows)) = written? else {
            return Err(Error::Internal(
                "xlsx writer stopped without a result".into(),
            ));
        };
        // Large reads: each read of a tokio file is a round trip to the blocking pool.
        let mut file = BufReader::with_capacity(COPY_BUFFER, tokio::fs::File::from_std(file));
        tokio::io::copy_buf(&mut file, out).await?;
        out.flush().await?;
        Ok(ExportSummary { rows })
    }
}

/// Sends the stream's rows to the writer in batches, then [`Feed::End`].
///
/// Returns the stream's first error without sending `End`. If the writer has gone away
/// (it failed), feeding stops quietly and the writer's own error is reported.
async fn feed(rows: &mut ObservationStream, tx: &mpsc::Sender<Feed>) -> Result<()> {
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    while let Some(item) = rows.next().await {
        batch.push(item?);
        if batch.len() == BATCH_ROWS {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
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

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{open_workbook_from_rs, Data, Reader, Xlsx};
    use medgate_core::{Decimal, Value};
    use std::io::Cursor;

    fn row(i: usize) -> Observation {
        Observation {
            patient_id: "P000001".into(),
            source: "his".into(),
            id: format!("o{i}"),
            category: None,
            code_system: None,
            code: None,
            display: None,
            value: Value::Number(Decimal::parse("36.5").unwrap()),
            unit: None,
            effective: None,
        }
    }

    #[tokio::test]
    async fn full_sheets_roll_over_with_their_own_header() {
        // 4 rows per sheet including the header: 7 observations → 3 + 3 + 1.
        let rows: Vec<Result<Observation>> = (0..7).map(|i| Ok(row(i))).collect();
        let mut out = Vec::new();
        let summary = XlsxExporter::with_max_rows(4)
            .export(Box::pin(futures::stream::iter(rows)), &mut out)
            .await
            .unwrap();
        assert_eq!(summary.rows, 7);

        let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(out)).unwrap();
        assert_eq!(
            book.sheet_names(),
            ["observations", "observations-2", "observations-3"]
        );
        let mut next = 0;
        for (name, count) in [
            ("observations", 3),
            ("observations-2", 3),
            ("observations-3", 1),
        ] {
            let range = book.worksheet_range(name).unwrap();
            assert_eq!(range.height(), count + 1, "{name}");
            assert_eq!(
                range.get_value((0, 0)),
                Some(&Data::String("patient_id".into()))
            );
            for r in 1..=count {
                let id = format!("o{next}");
                assert_eq!(range.get_value((r as u32, 2)), Some(&Data::String(id)));
                assert_eq!(range.get_value((r as u32, 7)), Some(&Data::Float(36.5)));
                next += 1;
            }
        }
    }

    #[tokio::test]
    async fn an_exactly_full_sheet_adds_no_empty_sheet() {
        let rows: Vec<Result<Observation>> = (0..3).map(|i| Ok(row(i))).collect();
        let mut out = Vec::new();
        XlsxExporter::with_max_rows(4)
            .export(Box::pin(futures::stream::iter(rows)), &mut out)
            .await
            .unwrap();
        let book: Xlsx<_> = open_workbook_from_rs(Cursor::new(out)).unwrap();
        assert_eq!(book.sheet_names(), ["observations"]);
    }
}
