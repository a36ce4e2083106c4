//! JSON array and NDJSON exporters.
//!
//! - [`JsonExporter`] (`json`): one array, `[` + rows joined by `,\n` + `]`; an empty export
//!   is `[]`.
//! - [`NdjsonExporter`] (`ndjson`): one JSON object per line, each followed by `\n`.
//!
//! Both write the tabular projection [`medgate_core::rows`] of every observation: one row per
//! result, a panel's components each on their own row (`<id>#<n>`). Each row is the flat
//! JSON object [`Row`] serializes to: the ten original keys (`patient_id` … `effective`)
//! always present, in that order, `null` when empty; the appended keys of
//! [`medgate_core::COLUMNS`] only when they have a value. Numbers are written verbatim
//! (`98.60` stays `98.60`, `1e-400` stays `1e-400`), integers and booleans as JSON integers
//! and booleans, date-times as RFC 3339 strings with their offset kept.
//!
//! Rows are encoded into a reusable buffer that is handed to the output whenever it passes
//! [`FLUSH_THRESHOLD`], so memory stays bounded whatever the row count. When the stream
//! fails, the rows already encoded are delivered and the error is returned; the closing `]`
//! of an array is never written, so a failed export cannot parse as complete.

use std::sync::Arc;

use async_trait::async_trait;
use medgate_core::export::write_buffered;
use medgate_core::{rows, Error, ExportSummary, Exporter, ObservationStream, Result, Row};
use tokio::io::AsyncWrite;

/// Bytes buffered before they are written to the output.
pub use medgate_core::export::FLUSH_THRESHOLD;

/// Registers the `json` and `ndjson` formats.
pub fn register(registry: &mut medgate_core::Registry) {
    registry.add_exporter(Arc::new(JsonExporter));
    registry.add_exporter(Arc::new(NdjsonExporter));
}

/// The `json` exporter: a single JSON array of row objects.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonExporter;

/// The `ndjson` exporter: newline-delimited JSON, one row object per line.
#[derive(Debug, Clone, Copy, Default)]
pub struct NdjsonExporter;

/// The bytes around and between rows that distinguish the two formats.
struct Framing {
    open: &'static [u8],
    separator: &'static [u8],
    after_row: &'static [u8],
    close: &'static [u8],
}

const ARRAY: Framing = Framing {
    open: b"[",
    separator: b",\n",
    after_row: b"",
    close: b"]",
};

const LINES: Framing = Framing {
    open: b"",
    separator: b"",
    after_row: b"\n",
    close: b"",
};

#[async_trait]
impl Exporter for JsonExporter {
    fn format(&self) -> &'static str {
        "json"
    }

    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn extension(&self) -> &'static str {
        "json"
    }

    async fn export(
        &self,
        observations: ObservationStream,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<ExportSummary> {
        write_framed(&ARRAY, observations, out).await
    }
}

#[async_trait]
impl Exporter for NdjsonExporter {
    fn format(&self) -> &'static str {
        "ndjson"
    }

    fn content_type(&self) -> &'static str {
        "application/x-ndjson"
    }

    fn extension(&self) -> &'static str {
        "ndjson"
    }

    async fn export(
        &self,
        observations: ObservationStream,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<ExportSummary> {
        write_framed(&LINES, observations, out).await
    }
}

/// Streams the rows of `observations` to `out` as JSON with the given framing; counts
/// observations.
async fn write_framed(
    framing: &Framing,
    observations: ObservationStream,
    out: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<ExportSummary> {
    let mut first = true;
    write_buffered(
        observations,
        out,
        framing.open,
        framing.close,
        |buffer, observation| {
            for row in rows(observation) {
                if !first {
                    buffer.extend_from_slice(framing.separator);
                }
                first = false;
                encode_row(buffer, &row)?;
                buffer.extend_from_slice(framing.after_row);
            }
            Ok(())
        },
    )
    .await
}

/// Appends one row as a flat JSON object.
fn encode_row(buffer: &mut Vec<u8>, row: &Row<'_>) -> Result<()> {
    // Serializing into a Vec cannot fail on I/O; the message of any other serde error
    // describes the type, not the data, so it is safe to surface.
    serde_json::to_writer(buffer, row).map_err(|e| Error::Export(format!("json: {e}")))
}
