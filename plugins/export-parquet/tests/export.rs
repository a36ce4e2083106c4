//! End-to-end tests of the Parquet exporter: export the shared rich observations, read the
//! file back with the parquet crate's Arrow reader, and compare every cell with core's rows.

#[path = "../../export-csv/tests/fixture/mod.rs"]
mod fixture;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use fixture::{assert_stream_error, dt, failing_stream, ok_stream};
use medgate_core::row::col;
use medgate_core::{
    rows, Cell, Effective, Error, Exporter, Observation, ObservationStream, Result, Row, Value,
    COLUMNS,
};
use medgate_export_parquet::{ParquetExporter, METADATA, ROW_GROUP_ROWS};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::PageType;
use parquet::basic::{Compression, Encoding, LogicalType, TimeUnit as ParquetTimeUnit};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{FileReader, SerializedFileReader};

/// The file's columns and their Arrow types, written out independently of the exporter.
fn expected_schema() -> Vec<(&'static str, DataType)> {
    let utf8 = || DataType::Utf8;
    let instant = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    vec![
        ("patient_id", utf8()),
        ("source", utf8()),
        ("id", utf8()),
        ("category", utf8()),
        ("code_system", utf8()),
        ("code", utf8()),
        ("display", utf8()),
        ("value", DataType::Float64),
        ("unit", utf8()),
        ("effective", instant()),
        ("status", utf8()),
        ("value_type", utf8()),
        ("value_comparator", utf8()),
        ("value_code_system", utf8()),
        ("value_code", utf8()),
        ("interpretation", utf8()),
        ("reference_low", DataType::Float64),
        ("reference_high", DataType::Float64),
        ("reference_unit", utf8()),
        ("reference_text", utf8()),
        ("effective_end", instant()),
        ("effective_zone", utf8()),
        ("issued", instant()),
        ("category_system", utf8()),
        ("data_absent_reason", utf8()),
        ("mapped_from", utf8()),
        ("warnings", utf8()),
        ("value_text", utf8()),
        ("value_integer", DataType::Int64),
        ("value_boolean", DataType::Boolean),
        ("value_timestamp", instant()),
        ("value_date", DataType::Date32),
        ("effective_date", DataType::Date32),
        ("effective_text", utf8()),
        ("reference_low_text", utf8()),
        ("reference_high_text", utf8()),
        ("effective_end_date", DataType::Date32),
        ("effective_end_text", utf8()),
        ("issued_date", DataType::Date32),
        ("issued_text", utf8()),
    ]
}

async fn export_with(
    exporter: ParquetExporter,
    observations: ObservationStream,
) -> (Result<u64>, Vec<u8>) {
    fixture::export_bytes(&exporter, observations).await
}

async fn export(observations: ObservationStream) -> (Result<u64>, Vec<u8>) {
    export_with(ParquetExporter::default(), observations).await
}

/// A Parquet file read back: its metadata and its rows as Arrow record batches.
struct File {
    metadata: Arc<ParquetMetaData>,
    batches: Vec<RecordBatch>,
}

impl File {
    fn read(bytes: &[u8]) -> File {
        let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.to_vec()))
            .expect("a complete Parquet file");
        let metadata = builder.metadata().clone();
        let schema = builder.schema().clone();
        let batches: Vec<RecordBatch> = builder
            .build()
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        let names: Vec<(&str, DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect();
        assert_eq!(names, expected_schema());
        File { metadata, batches }
    }

    fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The column `name` and the index within it of file row `row`.
    fn at(&self, name: &str, row: usize) -> (&dyn Array, usize) {
        let mut row = row;
        for batch in &self.batches {
            if row < batch.num_rows() {
                let column = batch
                    .column_by_name(name)
                    .unwrap_or_else(|| panic!("no column {name}"));
                return (column.as_ref(), row);
            }
            row -= batch.num_rows();
        }
        panic!("no row {row}");
    }

    fn text(&self, name: &str, row: usize) -> Option<String> {
        let (column, i) = self.at(name, row);
        let strings = column.as_string::<i32>();
        strings.is_valid(i).then(|| strings.value(i).to_owned())
    }

    fn double(&self, name: &str, row: usize) -> Option<f64> {
        let (column, i) = self.at(name, row);
        let values = column.as_primitive::<Float64Type>();
        values.is_valid(i).then(|| values.value(i))
    }

    fn integer(&self, name: &str, row: usize) -> Option<i64> {
        let (column, i) = self.at(name, row);
        let values = column.as_primitive::<Int64Type>();
        values.is_valid(i).then(|| values.value(i))
    }

    fn boolean(&self, name: &str, row: usize) -> Option<bool> {
        let (column, i) = self.at(name, row);
        let values = column.as_boolean();
        values.is_valid(i).then(|| values.value(i))
    }

    fn micros(&self, name: &str, row: usize) -> Option<i64> {
        let (column, i) = self.at(name, row);
        let values = column.as_primitive::<TimestampMicrosecondType>();
        values.is_valid(i).then(|| values.value(i))
    }

    fn days(&self, name: &str, row: usize) -> Option<i32> {
        let (column, i) = self.at(name, row);
        let values = column.as_primitive::<Date32Type>();
        values.is_valid(i).then(|| values.value(i))
    }

    /// The file row whose `id` is `id`.
    fn row(&self, id: &str) -> usize {
        (0..self.rows())
            .find(|&r| self.text("id", r).as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no row {id}"))
    }

    fn key_value(&self, key: &str) -> Option<String> {
        self.metadata
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    }
}

/// The instant of an RFC 3339 text with an offset, in microseconds, parsed by jiff on its own
/// (not through core's `DateTime`); `None` without an offset or finer than a microsecond.
fn instant_of(text: &str) -> Option<i64> {
    let instant: jiff::Timestamp = text.parse().ok()?;
    (instant.subsec_nanosecond() % 1000 == 0).then(|| instant.as_microsecond())
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` text.
fn days_of(text: &str) -> Option<i32> {
    if text.len() != 10 {
        return None;
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    let span = date
        .since((jiff::Unit::Day, jiff::civil::date(1970, 1, 1)))
        .unwrap();
    Some(span.get_days())
}

/// Asserts that file row `r` holds `expected` in every column and every companion column.
fn assert_row(file: &File, r: usize, expected: &Row<'_>) {
    for (c, name) in COLUMNS.iter().enumerate() {
        let cell = expected.get(c);
        let at = format!("{name} of row {r}");
        let text = (!cell.is_empty()).then(|| cell.as_text().into_owned());
        let companion = |suffix: &str| format!("{name}_{suffix}");
        match c {
            col::VALUE | col::REFERENCE_LOW | col::REFERENCE_HIGH => {
                let number = match cell {
                    Cell::Number(d) => d.to_f64_exact(),
                    Cell::Integer(i) => Some(*i as f64),
                    _ => None,
                };
                assert_eq!(file.double(name, r), number, "{at}");
                assert_eq!(file.text(&companion("text"), r), text, "{at}");
            }
            col::EFFECTIVE | col::EFFECTIVE_END | col::ISSUED => {
                let time = match cell {
                    Cell::DateTime(_) => text.clone(),
                    _ => None,
                };
                assert_eq!(
                    file.micros(name, r),
                    time.as_deref().and_then(instant_of),
                    "{at}"
                );
                assert_eq!(
                    file.days(&companion("date"), r),
                    time.as_deref().and_then(days_of),
                    "{at}"
                );
                assert_eq!(file.text(&companion("text"), r), text, "{at}");
            }
            _ => assert_eq!(file.text(name, r), text, "{at}"),
        }
    }
    // The other typed forms of `value`.
    let value = expected.get(col::VALUE);
    let integer = match value {
        Cell::Integer(i) => Some(*i),
        _ => None,
    };
    let boolean = match value {
        Cell::Bool(b) => Some(*b),
        _ => None,
    };
    let time = match value {
        Cell::DateTime(d) => Some(d.to_string()),
        _ => None,
    };
    assert_eq!(file.integer("value_integer", r), integer, "row {r}");
    assert_eq!(file.boolean("value_boolean", r), boolean, "row {r}");
    assert_eq!(
        file.micros("value_timestamp", r),
        time.as_deref().and_then(instant_of),
        "row {r}"
    );
    assert_eq!(
        file.days("value_date", r),
        time.as_deref().and_then(days_of),
        "row {r}"
    );
}

/// The shared rich observations plus values only Parquet treats specially: a number beyond a
/// double's range and times finer than a microsecond, and a date-time value with an offset
/// and one that is a date.
fn rich() -> Vec<Observation> {
    let mut all = fixture::rich();
    let mut overflow = all[0].clone();
    overflow.id = "q-overflow".into();
    overflow.value = Value::Quantity(medgate_core::Quantity::ucum(fixture::d("1e400"), "1"));
    overflow.effective = Some(Effective::DateTime(dt("2024-01-01T00:00:00.1234567Z")));
    overflow.issued = Some(dt("2024-01-01T00:00:00.000001-01:00"));
    let mut instant_value = all[0].clone();
    instant_value.id = "datetime-offset".into();
    instant_value.value = Value::DateTime(dt("2024-06-30T23:59:59.5-03:00"));
    let mut date_value = all[0].clone();
    date_value.id = "date-value".into();
    date_value.value = Value::DateTime(dt("2000-02-29"));
    all.extend([overflow, instant_value, date_value]);
    all
}

async fn exported_rich() -> (Vec<Observation>, File) {
    let observations = rich();
    let (result, bytes) = export(ok_stream(observations.clone())).await;
    assert_eq!(result.unwrap(), observations.len() as u64);
    // `MEDGATE_PARQUET_RICH_OUT=FILE` keeps a copy, for `tests/bench/read_back.py --rich`.
    if let Some(path) = std::env::var_os("MEDGATE_PARQUET_RICH_OUT") {
        std::fs::write(path, &bytes).unwrap();
    }
    (observations, File::read(&bytes))
}

#[tokio::test]
async fn every_cell_of_every_row_round_trips() {
    let (observations, file) = exported_rich().await;
    let expected: Vec<Row<'_>> = observations.iter().flat_map(rows).collect();
    assert_eq!(
        expected.len(),
        observations.len() + 2,
        "a panel of three adds two rows"
    );
    assert_eq!(file.rows(), expected.len());
    for (r, row) in expected.iter().enumerate() {
        assert_row(&file, r, row);
    }
}

#[tokio::test]
async fn numbers_are_exact_doubles_or_null_with_their_text_kept() {
    let (_, file) = exported_rich().await;
    let value = |id: &str| file.double("value", file.row(id));
    let text = |id: &str| file.text("value_text", file.row(id));
    assert_eq!(value("q-precision"), Some(98.6));
    assert_eq!(text("q-precision").as_deref(), Some("98.60"));
    assert_eq!(value("q-tiny"), Some(1e-22));
    assert_eq!(value("q-negative"), Some(-0.5));
    assert_eq!(value("q-exponent"), Some(1500.0));
    assert_eq!(text("q-exponent").as_deref(), Some("1.50e3"));
    assert_eq!(value("q-big"), Some(1e18));
    assert_eq!(value("bp#1"), Some(95.0));
    assert_eq!(text("bp#1").as_deref(), Some("95.0"));
    // A double would round these (or make them 0 or infinite): null, the text kept.
    for (id, written) in [
        ("q-underflow", "1e-400"),
        ("q-overflow", "1e400"),
        ("q-30-digits", "1.23456789012345678901234567890"),
    ] {
        assert_eq!(value(id), None, "{id}");
        assert_eq!(text(id).as_deref(), Some(written), "{id}");
    }
    // Integers and booleans are typed, and integers are numbers too.
    assert_eq!(value("int-negative"), Some(-3.0));
    assert_eq!(
        file.integer("value_integer", file.row("int-negative")),
        Some(-3)
    );
    assert_eq!(
        file.integer("value_integer", file.row("int-max")),
        Some(i64::from(i32::MAX))
    );
    assert_eq!(value("bool-true"), None);
    assert_eq!(
        file.boolean("value_boolean", file.row("bool-true")),
        Some(true)
    );
    assert_eq!(
        file.boolean("value_boolean", file.row("bool-false")),
        Some(false)
    );
    assert_eq!(text("bool-false").as_deref(), Some("false"));
    // Text, coded and structured values are text only.
    assert_eq!(value("coded"), None);
    assert_eq!(text("coded").as_deref(), Some("Negative"));
    assert_eq!(text("range").as_deref(), Some("3.5..5.10"));
    assert_eq!(text("ratio").as_deref(), Some("1:128"));
    assert_eq!(text("t-formula").as_deref(), Some("=cmd|' /C calc'!A0"));
    // Reference bounds.
    let row = file.row("q-precision");
    assert_eq!(file.double("reference_low", row), Some(97.0));
    assert_eq!(
        file.text("reference_low_text", row).as_deref(),
        Some("97.0")
    );
    assert_eq!(file.double("reference_high", row), Some(99.5));
    assert_eq!(file.double("reference_low", file.row("bp#0")), Some(90.0));
    assert_eq!(file.double("reference_low", file.row("coded")), None);
    assert_eq!(
        file.text("reference_text", file.row("coded")).as_deref(),
        Some("negative")
    );
}

#[tokio::test]
async fn times_are_utc_adjusted_instants_with_the_written_text_kept() {
    let (_, file) = exported_rich().await;
    let instant = |id: &str, column: &str| file.micros(column, file.row(id));
    let text = |id: &str, column: &str| file.text(&format!("{column}_text"), file.row(id));
    // 08:00 at +08:00 is midnight UTC; the offset survives in the text only.
    const MIDNIGHT_2024: i64 = 1_704_067_200_000_000;
    assert_eq!(instant("q-precision", "effective"), Some(MIDNIGHT_2024));
    assert_eq!(
        text("q-precision", "effective").as_deref(),
        Some("2024-01-01T08:00:00+08:00")
    );
    assert_eq!(
        instant("q-negative", "effective"),
        Some(MIDNIGHT_2024 + 8 * 3_600_000_000)
    );
    // 08:00 at -05:00 is 13:00 UTC.
    assert_eq!(
        instant("q-tiny", "effective"),
        Some(MIDNIGHT_2024 + 13 * 3_600_000_000)
    );
    assert_eq!(instant("q-big", "effective"), Some(MIDNIGHT_2024));
    assert_eq!(
        text("q-big", "effective").as_deref(),
        Some("2024-01-01T00:00:00+00:00")
    );
    // Microseconds are kept; 04:05:06.789123+05:30 is 22:35:06.789123 UTC the day before.
    assert_eq!(
        instant("q-16-digits", "effective"),
        Some(1_706_913_306_789_123)
    );
    // An offset assumed from the source's zone gives an instant too, and says so.
    let assumed = file.row("assumed");
    assert_eq!(
        file.micros("effective", assumed),
        Some(1_481_598_150_500_000),
        "2016-12-13T11:02:30.5+08:00 is 03:02:30.5Z"
    );
    assert_eq!(
        file.text("effective_zone", assumed).as_deref(),
        Some("assumed")
    );
    // Local times, months, years and sub-microsecond times are not instants: text only.
    for (id, written) in [
        ("q-30-digits", "2016-12-13T11:02:30.123"),
        ("q-exponent", "1950"),
        ("q-integer", "2014-05"),
        ("q-overflow", "2024-01-01T00:00:00.1234567Z"),
    ] {
        assert_eq!(instant(id, "effective"), None, "{id}");
        assert_eq!(file.days("effective_date", file.row(id)), None, "{id}");
        assert_eq!(text(id, "effective").as_deref(), Some(written), "{id}");
    }
    assert_eq!(
        file.text("effective_zone", file.row("q-30-digits"))
            .as_deref(),
        Some("local")
    );
    // Dates are dates.
    assert_eq!(instant("q-underflow", "effective"), None);
    assert_eq!(
        file.days("effective_date", file.row("q-underflow")),
        Some(19_723)
    );
    assert_eq!(file.days("effective_date", file.row("coded")), Some(19_786));
    assert_eq!(
        file.days("effective_date", file.row("before-1900")),
        Some(-25_568)
    );
    // Periods, issued and date-time values.
    assert_eq!(
        instant("bp#2", "effective_end"),
        Some(MIDNIGHT_2024 + 930_000_000),
        "08:15:30+08:00"
    );
    assert_eq!(
        instant("q-precision", "issued"),
        Some(MIDNIGHT_2024 + 8 * 3_600_000_000 + 300_250_000)
    );
    assert_eq!(
        instant("q-overflow", "issued"),
        Some(MIDNIGHT_2024 + 3_600_000_001)
    );
    let value_instant = |id: &str| file.micros("value_timestamp", file.row(id));
    assert_eq!(
        value_instant("datetime-offset"),
        Some(1_719_802_799_500_000),
        "2024-06-30T23:59:59.5-03:00 is 2024-07-01T02:59:59.5Z"
    );
    assert_eq!(value_instant("datetime-value"), None, "a local time");
    assert_eq!(
        file.text("value_text", file.row("datetime-value"))
            .as_deref(),
        Some("2016-12-13T11:02:30")
    );
    assert_eq!(
        file.days("value_date", file.row("date-value")),
        Some(11_016)
    );
}

#[tokio::test]
async fn the_file_says_its_timestamps_are_adjusted_to_utc() {
    let (_, file) = exported_rich().await;
    let schema = file.metadata.file_metadata().schema_descr();
    for name in ["effective", "effective_end", "issued", "value_timestamp"] {
        let column = schema.columns().iter().find(|c| c.name() == name).unwrap();
        assert_eq!(
            column.logical_type_ref(),
            Some(&LogicalType::timestamp(true, ParquetTimeUnit::MICROS)),
            "{name}"
        );
    }
    let date = schema
        .columns()
        .iter()
        .find(|c| c.name() == "effective_date")
        .unwrap();
    assert_eq!(date.logical_type_ref(), Some(&LogicalType::Date));
    let timestamps = file.key_value("medgate:timestamps").unwrap();
    assert!(timestamps.contains("adjusted to UTC"), "{timestamps}");
    assert!(
        timestamps.contains("isAdjustedToUTC = true"),
        "{timestamps}"
    );
    assert!(timestamps.contains("`*_text`"), "{timestamps}");
    for (key, value) in METADATA {
        assert_eq!(file.key_value(key).as_deref(), Some(value), "{key}");
    }
    // Required where core always has a value.
    let required: Vec<&str> = schema
        .columns()
        .iter()
        .filter(|c| !c.self_type().is_optional())
        .map(|c| c.name())
        .collect();
    assert_eq!(required, ["patient_id", "source", "id"]);
}

#[tokio::test]
async fn row_groups_are_bounded_compressed_and_dictionary_encoded() {
    const COUNT: u64 = 2_500;
    let observations: Vec<Observation> = (0..COUNT).map(fixture::workload).collect();
    let (result, bytes) = export_with(
        ParquetExporter::with_row_group_rows(1_000),
        ok_stream(observations.clone()),
    )
    .await;
    assert_eq!(result.unwrap(), COUNT);
    let file = File::read(&bytes);
    let sizes: Vec<i64> = file
        .metadata
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(sizes, [1_000, 1_000, 500]);
    let group = &file.metadata.row_groups()[0];
    let chunk = |name: &str| {
        group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap()
    };
    // zstd on the plain-encoded, nearly unique columns; snappy on the dictionary-encoded rest.
    let unique = [
        "id",
        "effective",
        "effective_end",
        "issued",
        "value_timestamp",
        "effective_text",
        "effective_end_text",
        "issued_text",
    ];
    for column in group.columns() {
        let name = column.column_path().string();
        if unique.contains(&name.as_str()) {
            assert!(
                matches!(column.compression(), Compression::ZSTD(_)),
                "{name}"
            );
        } else {
            assert_eq!(column.compression(), Compression::SNAPPY, "{name}");
        }
    }
    let dictionary = |name: &str| {
        chunk(name)
            .encodings()
            .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY))
    };
    for low_cardinality in ["patient_id", "code", "unit", "category_system", "value"] {
        assert!(dictionary(low_cardinality), "{low_cardinality}");
    }
    for unique in unique {
        assert!(!dictionary(unique), "{unique}");
    }

    // Every row, in order, across the row groups.
    assert_eq!(file.rows() as u64, COUNT);
    for (r, o) in observations.iter().enumerate() {
        let row = rows(o).next().unwrap();
        assert_row(&file, r, &row);
    }
}

#[tokio::test]
async fn wide_rows_make_smaller_row_groups() {
    // 48 random texts of 512 KiB (24 MiB that do not compress): the 8 MiB budget of encoded
    // bytes cuts row groups long before 64 Ki rows.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let observations: Vec<Observation> = (0..48u64)
        .map(|i| {
            let mut o = fixture::workload(i);
            let text: String = (0..512 * 1024)
                .map(|_| {
                    // xorshift64
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(b'a' + (state % 26) as u8)
                })
                .collect();
            o.value = Value::String(text);
            o
        })
        .collect();
    let (result, bytes) = export(ok_stream(observations.clone())).await;
    assert_eq!(result.unwrap(), 48);
    let file = File::read(&bytes);
    let groups = file.metadata.num_row_groups();
    assert!((3..48).contains(&groups), "{groups} row groups");
    for (r, o) in observations.iter().enumerate() {
        assert_row(&file, r, &rows(o).next().unwrap());
    }
}

#[tokio::test]
async fn pages_hold_at_most_8192_rows() {
    let observations: Vec<Observation> = (0..20_000).map(fixture::workload).collect();
    let (result, bytes) = export(ok_stream(observations)).await;
    assert_eq!(result.unwrap(), 20_000);
    let reader = SerializedFileReader::new(Bytes::from(bytes)).unwrap();
    let group = reader.get_row_group(0).unwrap();
    for column in [col::ID, col::CODE, col::EFFECTIVE] {
        let pages = group.get_column_page_reader(column).unwrap();
        let rows: Vec<u32> = pages
            .map(|page| page.unwrap())
            .filter(|page| page.page_type() != PageType::DICTIONARY_PAGE)
            .map(|page| page.num_values())
            .collect();
        assert_eq!(rows, [8_192, 8_192, 3_616], "{}", COLUMNS[column]);
    }
}

#[tokio::test]
async fn the_output_is_streamed_in_bounded_chunks() {
    let exporter = ParquetExporter::with_row_group_rows(2_000);
    let (observations, bytes) = fixture::export_in_chunks(&exporter, 30_000, 64 * 1024 + 1).await;
    let file = File::read(&bytes);
    assert_eq!(file.rows(), observations.len());
    assert_eq!(file.metadata.num_row_groups(), 15);
    let last = observations.len() - 1;
    assert_eq!(
        file.text("id", last).as_deref(),
        Some(observations[last].id.as_str())
    );
}

#[tokio::test]
async fn empty_export_is_a_valid_file_with_the_schema() {
    let (result, bytes) = export(ok_stream(Vec::new())).await;
    assert_eq!(result.unwrap(), 0);
    let file = File::read(&bytes);
    assert_eq!(file.rows(), 0);
    assert_eq!(file.metadata.num_row_groups(), 0);
}

/// Parquet's closing magic: a file ends with its footer length and `PAR1`.
fn has_footer(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && bytes.ends_with(b"PAR1")
}

#[tokio::test]
async fn stream_error_before_a_row_group_sends_nothing() {
    let (result, bytes) = export(failing_stream(&fixture::rich())).await;
    assert_stream_error(result);
    assert!(bytes.is_empty(), "{} bytes", bytes.len());
}

#[tokio::test]
async fn stream_error_midway_leaves_a_file_no_reader_accepts() {
    const BEFORE: u64 = 20_000;
    let items = (0..BEFORE)
        .map(|i| Ok(fixture::workload(i)))
        .chain([Err(Error::malformed("his", "truncated bundle"))])
        .chain((BEFORE..BEFORE + 10).map(|i| Ok(fixture::workload(i))));
    let (result, bytes) = export_with(
        ParquetExporter::with_row_group_rows(1_000),
        Box::pin(futures::stream::iter(items)),
    )
    .await;
    assert_stream_error(result);
    // Row groups were streamed before the failure, but no footer followed them.
    assert!(bytes.len() > 64 * 1024, "{} bytes", bytes.len());
    assert!(bytes.starts_with(b"PAR1"));
    assert!(!has_footer(&bytes));
    let error = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap_err();
    assert!(
        error.to_string().contains("magic") || error.to_string().contains("footer"),
        "{error}"
    );
}

/// An output that accepts `room` bytes and then fails, like a client that went away.
struct BrokenOutput {
    room: usize,
}

impl tokio::io::AsyncWrite for BrokenOutput {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.room == 0 {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_failing_output_stops_the_export_with_its_error() {
    let observations = (0..50_000).map(|i| Ok(fixture::workload(i)));
    let mut out = BrokenOutput { room: 100_000 };
    let result = ParquetExporter::with_row_group_rows(1_000)
        .export(Box::pin(futures::stream::iter(observations)), &mut out)
        .await;
    let Err(Error::Export(message)) = result else {
        panic!("expected the output's error, got {result:?}");
    };
    assert!(message.contains("reset"), "{message}");
}

#[test]
fn registers_the_parquet_format() {
    fixture::assert_registers(
        medgate_export_parquet::register,
        &[("parquet", "application/vnd.apache.parquet", "parquet")],
    );
}

#[test]
fn the_default_row_group_is_64k_rows() {
    assert_eq!(ROW_GROUP_ROWS, 65_536);
}
