//! The [`Exporter`] trait: streaming sinks that turn observations into a file format.

use async_trait::async_trait;
use tokio::io::AsyncWrite;

use crate::{ObservationStream, Result};

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
