//! CSV exporter (RFC 4180, formula-injection safe).
//!
//! Writes one header row ([`COLUMNS`], 27 columns, the first ten being medgate's original
//! flat record) and then the tabular projection [`medgate_core::rows`] of every
//! [`Observation`]: one row per result, a panel's components each on their own row
//! (`<id>#<n>`). Rows are CRLF-terminated, UTF-8 without BOM.
//!
//! Cells are written as [`Cell::as_text`] says: numbers exactly as written (`98.60`,
//! `1e-400`), integers, `true`/`false`, date-times in RFC 3339 with their offset (or none
//! for local times), empty for nothing.
//!
//! Spreadsheet applications execute cells starting with `=`, `+`, `-`, `@`, tab or CR as
//! formulas ("CSV injection"). Following OWASP, every *text* cell starting with one of those
//! characters gets a leading `'`; numbers, integers and date-times are never prefixed
//! (`-0.5` stays `-0.5`), because they are not formulas and must stay machine-readable.
//!
//! Memory: rows are encoded by a [`csv::Writer`] into a reusable in-memory buffer that is
//! handed to the output whenever it passes [`FLUSH_THRESHOLD`], so memory stays bounded
//! whatever the row count. When the stream fails, the complete rows encoded so far are
//! delivered and the stream's error is returned; the caller cuts the download, so a partial
//! file is never mistaken for a whole one.

use std::io::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use medgate_core::{
    rows, Cell, Error, ExportSummary, Exporter, Observation, ObservationStream, Result, Row,
    COLUMNS,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bytes buffered before they are written to the output.
pub const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Registers the `csv` format.
pub fn register(registry: &mut medgate_core::Registry) {
    registry.add_exporter(Arc::new(CsvExporter));
}

/// The `csv` exporter: RFC 4180 with a header row and formula-injection neutralisation.
#[derive(Debug, Clone, Copy, Default)]
pub struct CsvExporter;

#[async_trait]
impl Exporter for CsvExporter {
    fn format(&self) -> &'static str {
        "csv"
    }

    fn content_type(&self) -> &'static str {
        "text/csv; charset=utf-8"
    }

    fn extension(&self) -> &'static str {
        "csv"
    }

    /// Counts observations (a panel of three components is one observation, three rows).
    async fn export(
        &self,
        mut observations: ObservationStream,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<ExportSummary> {
        let mut encoder = RowEncoder::new()?;
        let mut count = 0u64;
        while let Some(item) = observations.next().await {
            let observation = match item {
                Ok(observation) => observation,
                Err(stream_error) => {
                    // Deliver the rows completed so far, but never anything that would make a
                    // failed export look finished; the stream's error wins over a write error.
                    let _ = encoder.drain_into(out).await;
                    return Err(stream_error);
                }
            };
            encoder.write_observation(&observation)?;
            count += 1;
            if encoder.buffered() >= FLUSH_THRESHOLD {
                encoder.drain_into(out).await?;
            }
        }
        encoder.drain_into(out).await?;
        out.flush().await?;
        Ok(ExportSummary { rows: count })
    }
}

/// A `csv::Writer` over a reusable byte buffer plus a scratch buffer for cells that need
/// formatting or the `'` prefix, so rows cause no allocation of their own.
struct RowEncoder {
    builder: csv::WriterBuilder,
    writer: csv::Writer<Vec<u8>>,
    scratch: Vec<u8>,
}

impl RowEncoder {
    /// A new encoder whose buffer already holds the header row.
    fn new() -> Result<Self> {
        let mut builder = csv::WriterBuilder::new();
        builder.terminator(csv::Terminator::CRLF);
        let writer = builder.from_writer(Vec::with_capacity(FLUSH_THRESHOLD + 8 * 1024));
        let mut encoder = RowEncoder {
            builder,
            writer,
            scratch: Vec::new(),
        };
        encoder.writer.write_record(COLUMNS).map_err(csv_error)?;
        Ok(encoder)
    }

    /// Bytes encoded and not yet handed to the output (the csv writer's own small internal
    /// buffer is not counted; it is bounded by its fixed capacity).
    fn buffered(&self) -> usize {
        self.writer.get_ref().len()
    }

    /// Encodes every row of `o`.
    fn write_observation(&mut self, o: &Observation) -> Result<()> {
        for row in rows(o) {
            self.write_row(&row)?;
        }
        Ok(())
    }

    /// Encodes one row in [`COLUMNS`] order.
    fn write_row(&mut self, row: &Row<'_>) -> Result<()> {
        for cell in &row.cells {
            self.write_cell(cell)?;
        }
        // An empty record ends the row started by the `write_field` calls above.
        self.writer.write_record(None::<&[u8]>).map_err(csv_error)
    }

    fn write_cell(&mut self, cell: &Cell<'_>) -> Result<()> {
        match cell {
            Cell::Empty => self.field(b""),
            Cell::Text(text) if needs_guard(text) => {
                self.scratch.clear();
                self.scratch.push(b'\'');
                self.scratch.extend_from_slice(text.as_bytes());
                self.scratch_field()
            }
            Cell::Text(text) => self.field(text.as_bytes()),
            // Data, never a formula: `-0.5` stays `-0.5`.
            Cell::Number(d) => self.field(d.as_str().as_bytes()),
            Cell::Bool(b) => self.field(if *b { b"true" } else { b"false" }),
            Cell::Integer(i) => {
                self.scratch.clear();
                write!(self.scratch, "{i}")?;
                self.scratch_field()
            }
            Cell::DateTime(d) => {
                self.scratch.clear();
                write!(self.scratch, "{d}")?;
                self.scratch_field()
            }
        }
    }

    fn field(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_field(bytes).map_err(csv_error)
    }

    fn scratch_field(&mut self) -> Result<()> {
        self.writer.write_field(&self.scratch).map_err(csv_error)
    }

    /// Hands everything encoded so far to `out` and starts over on the same buffer.
    async fn drain_into(&mut self, out: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<()> {
        // `csv::Writer` has no `get_mut`: take the buffer out, write it, and wrap it again.
        // Only called between records, so no field state is lost.
        let fresh = self.builder.from_writer(Vec::new());
        let writer = std::mem::replace(&mut self.writer, fresh);
        let mut buffer = writer
            .into_inner()
            .map_err(|e| Error::Export(format!("csv: {}", e.error())))?;
        out.write_all(&buffer).await?;
        buffer.clear();
        self.writer = self.builder.from_writer(buffer);
        Ok(())
    }
}

/// OWASP CSV-injection triggers: `=`, `+`, `-`, `@`, tab, carriage return.
fn needs_guard(field: &str) -> bool {
    matches!(
        field.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

fn csv_error(e: csv::Error) -> Error {
    Error::Export(format!("csv: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_formula_triggers_only() {
        for s in ["=1+1", "+1", "-x", "@SUM(A1)", "\tx", "\rx"] {
            assert!(needs_guard(s), "{s:?}");
        }
        for s in ["", "x=1", "1", "'", " =1", "Körper", "<5", ">=1"] {
            assert!(!needs_guard(s), "{s:?}");
        }
    }
}
