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
use medgate_core::export::write_buffered;
use medgate_core::{fhir, Error, ExportSummary, Exporter, ObservationStream, Result};
use tokio::io::AsyncWrite;

/// Bytes buffered before they are written to the output.
pub use medgate_core::export::FLUSH_THRESHOLD;

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
        observations: ObservationStream,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<ExportSummary> {
        write_buffered(observations, out, b"", b"", |buffer, observation| {
            fhir::write_observation(buffer, observation)
                .map_err(|e| Error::Export(format!("fhir-ndjson: {e}")))?;
            buffer.push(b'\n');
            Ok(())
        })
        .await
    }
}
