//! CSV exporter (RFC 4180, formula-injection safe).
//!
//! Writes one header row ([`COLUMNS`]) and one row per [`Observation`], CRLF-terminated,
//! UTF-8 without BOM. Rows are encoded by a [`csv::Writer`] into a reusable in-memory buffer
//! that is handed to the output whenever it passes [`FLUSH_THRESHOLD`], so memory stays
//! bounded whatever the row count.
//!
//! Spreadsheet applications execute cells starting with `=`, `+`, `-`, `@`, tab or CR as
//! formulas ("CSV injection"). Following OWASP, every *text* cell starting with one of those
//! characters gets a leading `'`; numeric values (for example `-1.5`) are written unchanged,
//! because a number is not a formula and must stay machine-readable.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use medgate_core::model::COLUMNS;
use medgate_core::{Error, ExportSummary, Exporter, Observation, ObservationStream, Result, Value};
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

    async fn export(
        &self,
        mut rows: ObservationStream,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<ExportSummary> {
        let mut encoder = RowEncoder::new()?;
        let mut count = 0u64;
        while let Some(item) = rows.next().await {
            let observation = match item {
                Ok(observation) => observation,
                Err(stream_error) => {
                    // Deliver the rows completed so far, but never anything that would make a
                    // failed export look finished; the stream's error wins over a write error.
                    let _ = encoder.drain_into(out).await;
                    return Err(stream_error);
                }
            };
            encoder.write_row(&observation)?;
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

/// A `csv::Writer` over a reusable byte buffer plus a scratch buffer for guarded cells.
struct RowEncoder {
    builder: csv::WriterBuilder,
    writer: csv::Writer<Vec<u8>>,
    /// Reused for cells that need the `'` prefix, so rows cause no allocation.
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

    /// Encodes one observation in [`COLUMNS`] order.
    fn write_row(&mut self, o: &Observation) -> Result<()> {
        self.text(&o.patient_id)?;
        self.text(&o.source)?;
        self.text(&o.id)?;
        self.optional_text(o.category.as_deref())?;
        self.optional_text(o.code_system.as_deref())?;
        self.optional_text(o.code.as_deref())?;
        self.optional_text(o.display.as_deref())?;
        match &o.value {
            // A number is data, never a formula: `-1.5` stays `-1.5`.
            Value::Number(d) => self.raw(d.as_str())?,
            Value::Text(t) => self.text(t)?,
            Value::Bool(b) => self.raw(if *b { "true" } else { "false" })?,
            Value::Null => self.raw("")?,
        }
        self.optional_text(o.unit.as_deref())?;
        self.optional_text(o.effective.as_deref())?;
        // An empty record ends the row started by the `write_field` calls above.
        self.writer.write_record(None::<&[u8]>).map_err(csv_error)
    }

    fn optional_text(&mut self, field: Option<&str>) -> Result<()> {
        self.text(field.unwrap_or(""))
    }

    /// Writes a text cell, prefixing `'` when a spreadsheet would read it as a formula.
    fn text(&mut self, field: &str) -> Result<()> {
        if needs_guard(field) {
            self.scratch.clear();
            self.scratch.push(b'\'');
            self.scratch.extend_from_slice(field.as_bytes());
            self.writer.write_field(&self.scratch).map_err(csv_error)
        } else {
            self.raw(field)
        }
    }

    fn raw(&mut self, field: &str) -> Result<()> {
        self.writer.write_field(field).map_err(csv_error)
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
        for s in ["", "x=1", "1", "'", " =1", "Körper"] {
            assert!(!needs_guard(s), "{s:?}");
        }
    }
}
