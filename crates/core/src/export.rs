//! The [`Exporter`] trait: streaming sinks that turn observations into a file format.

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{Observation, ObservationStream, Result};

/// Bytes a text exporter buffers before handing them to the output.
pub const FLUSH_THRESHOLD: usize = 64 * 1024;

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Observations written.
    pub rows: u64,
}

/// A download format (CSV, JSON, Excel …).
///
/// Implementors write four small methods and [`export`](Exporter::export). An exporter pulls
/// rows from the stream and writes them to `out` as it goes: memory stays bounded however many
/// rows flow through, and the first bytes reach the client before the last row is fetched
/// (formats that need a seekable file, like XLSX, spool to a temporary file instead of memory).
#[async_trait]
pub trait Exporter: Send + Sync + 'static {
    /// The format key used in `?format=` and in config, e.g. `csv`.
    fn format(&self) -> &'static str;
    /// The HTTP content type, e.g. `text/csv; charset=utf-8`.
    fn content_type(&self) -> &'static str;
    /// The file extension without a dot, e.g. `csv`.
    fn extension(&self) -> &'static str;

    /// Writes every row of `rows` to `out` and flushes it.
    ///
    /// # Errors
    /// The first error of the stream (nothing after it is written, and the output is left
    /// incomplete rather than looking whole), or an I/O error writing `out`.
    async fn export(
        &self,
        rows: ObservationStream,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<ExportSummary>;
}

/// The loop every text format shares: `prologue`, then each observation encoded by `encode`
/// into a reusable buffer that is written out whenever it passes [`FLUSH_THRESHOLD`] (memory
/// stays bounded whatever the count), then `epilogue` and a flush.
///
/// When the stream fails, the bytes of the observations completed so far are delivered and
/// the stream's error is returned; the epilogue is never written, so a failed export cannot
/// look complete (a JSON array never gets its `]`).
///
/// # Errors
/// The stream's first error, an error of `encode`, or an I/O error writing `out`.
pub async fn write_buffered<F>(
    mut observations: ObservationStream,
    out: &mut (dyn AsyncWrite + Send + Unpin),
    prologue: &[u8],
    epilogue: &[u8],
    mut encode: F,
) -> Result<ExportSummary>
where
    F: FnMut(&mut Vec<u8>, &Observation) -> Result<()> + Send,
{
    let mut buffer = Vec::with_capacity(FLUSH_THRESHOLD + 4 * 1024);
    buffer.extend_from_slice(prologue);
    let mut count = 0u64;
    while let Some(item) = observations.next().await {
        let observation = match item {
            Ok(observation) => observation,
            Err(stream_error) => {
                // The stream's error wins over a write error.
                let _ = out.write_all(&buffer).await;
                return Err(stream_error);
            }
        };
        encode(&mut buffer, &observation)?;
        count += 1;
        if buffer.len() >= FLUSH_THRESHOLD {
            out.write_all(&buffer).await?;
            buffer.clear();
        }
    }
    buffer.extend_from_slice(epilogue);
    out.write_all(&buffer).await?;
    out.flush().await?;
    Ok(ExportSummary { rows: count })
}
