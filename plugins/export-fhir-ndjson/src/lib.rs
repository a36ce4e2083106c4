//! FHIR NDJSON exporter (format `fhir-ndjson`): one FHIR R4 `Observation` resource per line,
//! the shape FHIR Bulk Data (`$export`) clients read (`application/fhir+ndjson`).
//!
//! Unlike the tabular formats (CSV, Excel, flat JSON), this one is not a projection: each
//! line is the whole record as [`medgate_core::fhir::write_observation`] writes it, so a
//! panel keeps its components inside its Observation, and codings, comparators, reference
//! ranges, interpretations, periods and warnings all survive. Numbers keep their written
//! digits; a local time (no offset) is written as its date with the full local time in an
//! extension, because FHIR `dateTime` values with a time must carry an offset.
//!
//! Resources are encoded into a reusable buffer that is handed to the output whenever it
//! passes [`FLUSH_THRESHOLD`], so memory stays bounded whatever the count. When the stream
//! fails, the complete lines encoded so far are delivered and the stream's error is returned;
//! no line is ever cut in the middle, and the caller cuts the download so it cannot be taken
//! for a complete one.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use medgate_core::{fhir, Error, ExportSummary, Exporter, ObservationStream, Result};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bytes buffered before they are written to the output.
pub const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Registers the `fhir-ndjson` format.
pub fn register(registry: &mut medgate_core::Registry) {
    registry.add_exporter(Arc::new(FhirNdjsonExporter));
}

/// The `fhir-ndjson` exporter: newline-delimited FHIR R4 Observation resources.
#[derive(Debug, Clone, Copy, Default)]
pub struct FhirNdjsonExporter;

#[async_trait]
impl Exporter for FhirNdjsonExporter {
    fn format(&self) -> &'static str {
        "fhir-ndjson"
    }

    fn content_type(&self) -> &'static str {
        "application/fhir+ndjson"
    }

    fn extension(&self) -> &'static str {
        "ndjson"
    }

    async fn export(
        &self,
        mut observations: ObservationStream,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<ExportSummary> {
        let mut buffer = Vec::with_capacity(FLUSH_THRESHOLD + 4 * 1024);
        let mut count = 0u64;
        while let Some(item) = observations.next().await {
            let observation = match item {
                Ok(observation) => observation,
                Err(stream_error) => {
                    // Only whole lines are buffered; the stream's error wins over a write
                    // error.
                    let _ = out.write_all(&buffer).await;
                    return Err(stream_error);
                }
            };
            // Serializing into a Vec cannot fail on I/O; any other serde message describes
            // the type, not the data, so it is safe to surface.
            fhir::write_observation(&mut buffer, &observation)
                .map_err(|e| Error::Export(format!("fhir-ndjson: {e}")))?;
            buffer.push(b'\n');
            count += 1;
            if buffer.len() >= FLUSH_THRESHOLD {
                out.write_all(&buffer).await?;
                buffer.clear();
            }
        }
        out.write_all(&buffer).await?;
        out.flush().await?;
        Ok(ExportSummary { rows: count })
    }
}
