//! The synchronous Parquet file writer: observations → rows → record batches → row groups.

use medgate_core::{rows, Error, Observation, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::sink::ChunkSink;
use crate::table::{self, Columns, UNIQUE_COLUMNS};

/// Rows per record batch handed to the encoder: small enough that the uncompressed batch stays
/// around a megabyte, large enough to amortise the per-batch work.
const BATCH_ROWS: usize = 4096;

/// A batch of wide rows (long texts) is handed over early, at this many bytes of text: memory
/// stays bounded by row width too, and Arrow's 32-bit string offsets can never overflow.
const BATCH_TEXT_BYTES: usize = 8 * 1024 * 1024;

/// The encoded row group is held in memory until it is complete; this caps it for wide rows
/// (long texts), whatever the row count.
const MAX_ROW_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// Rows per data page. Each dictionary-encoded column buffers a page of 8-byte indices before
/// encoding it; against Parquet's default of 20,000, 8,192 took the peak heap of a 1M-row
/// export from 12.1 to 8.5 MiB for a file 2.6 % larger.
const PAGE_ROWS: usize = 8 * 1024;

/// Key-value metadata of every file (key, value): how to read the typed columns.
pub const METADATA: [(&str, &str); 3] = [
    (
        "medgate:columns",
        "The first 27 columns are medgate's tabular projection, with the names and order of \
         the CSV export; one row per result (a panel's components are rows `<id>#<n>`). The \
         columns after them are typed or textual twins of `value`, `reference_low`, \
         `reference_high`, `effective`, `effective_end` and `issued`.",
    ),
    (
        "medgate:numbers",
        "`value`, `reference_low` and `reference_high` are doubles only where a double holds \
         the written number exactly (integers up to 2^53); otherwise they are null. \
         `value_text`, `reference_low_text` and `reference_high_text` always hold the number \
         as written (`98.60`, `1e-400`).",
    ),
    (
        "medgate:timestamps",
        "`effective`, `effective_end`, `issued` and `value_timestamp` are instants adjusted to \
         UTC (isAdjustedToUTC = true, microseconds), computed from the offset of the original \
         time: written by the upstream, or assumed from the source's time zone when \
         `effective_zone` is `assumed`. The original offset is not in these columns; the \
         matching `*_text` column keeps the RFC 3339 text as written, offset included. Dates, \
         months, years and local times (no offset) are not instants: their timestamp is null, \
         a date is also in `*_date`, and the text is kept.",
    ),
];

/// A Parquet file being written into a [`ChunkSink`].
pub(crate) struct ParquetFile {
    writer: ArrowWriter<ChunkSink>,
    columns: Columns,
    observations: u64,
}

impl ParquetFile {
    /// Starts a file (its magic is buffered, not sent) with row groups of at most
    /// `row_group_rows` rows.
    pub(crate) fn new(sink: ChunkSink, row_group_rows: usize) -> Result<ParquetFile> {
        let schema = table::schema();
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(properties(row_group_rows)))
            .map_err(parquet_error)?;
        Ok(ParquetFile {
            writer,
            columns: Columns::new(schema),
            observations: 0,
        })
    }

    /// Appends the rows of one observation.
    pub(crate) fn push(&mut self, observation: &Observation) -> Result<()> {
        for row in rows(observation) {
            self.columns.push(&row);
            if self.columns.rows() >= BATCH_ROWS || self.columns.text_bytes() >= BATCH_TEXT_BYTES {
                self.write_batch()?;
            }
        }
        self.observations += 1;
        Ok(())
    }

    /// Writes the last row group and the footer, sends everything to the output, and returns
    /// the number of observations written.
    pub(crate) fn finish(mut self) -> Result<u64> {
        self.write_batch()?;
        let mut sink = self.writer.into_inner().map_err(parquet_error)?;
        std::io::Write::flush(&mut sink)?;
        Ok(self.observations)
    }

    fn write_batch(&mut self) -> Result<()> {
        if self.columns.rows() == 0 {
            return Ok(());
        }
        let batch = self.columns.finish()?;
        self.writer.write(&batch).map_err(parquet_error)
    }
}

/// Compression: zstd (level 1) where it pays, on the plain-encoded, nearly unique columns
/// (`id`, times and their texts: 92 % of the uncompressed bytes of the workload, which zstd
/// shrinks 1.3× (timestamps) to 45× (ids)); snappy on the dictionary-encoded rest, whose
/// pages are already small and would only grow large if a dictionary overflowed to plain
/// encoding. The parquet crate keeps a zstd compression and decompression context per column
/// (~170 KB of C heap, outside Rust's allocator), so zstd on all 40 columns cost 4.3 MB more
/// peak RSS for a file 3 % smaller (1M workload rows).
fn properties(row_group_rows: usize) -> WriterProperties {
    let metadata = METADATA
        .iter()
        .map(|(key, value)| KeyValue::new((*key).to_owned(), (*value).to_owned()))
        .collect();
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES))
        .set_key_value_metadata(Some(metadata))
        .set_created_by(format!(
            "medgate {} ({})",
            env!("CARGO_PKG_VERSION"),
            parquet::file::properties::DEFAULT_CREATED_BY
        ));
    for column in UNIQUE_COLUMNS {
        let path = ColumnPath::from(column);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_compression(path, Compression::ZSTD(ZstdLevel::default()));
    }
    builder.build()
}

/// Parquet errors describe the operation or the schema, never cell contents.
fn parquet_error(e: ParquetError) -> Error {
    Error::Export(format!("parquet: {e}"))
}
