//! End-to-end tests of the CSV exporter: export the shared rich observations, parse the bytes
//! back with the `csv` crate, and compare with the source values.

#[path = "fixture/mod.rs"]
mod fixture;

use fixture::{assert_stream_error, failing_stream, ok_stream};
use medgate_core::row::col;
use medgate_core::{rows, Cell, Effective, ObservationStream, Result, Value, COLUMNS};
use medgate_export_csv::{CsvExporter, FLUSH_THRESHOLD};

async fn export(observations: ObservationStream) -> (Result<u64>, Vec<u8>) {
    fixture::export_bytes(&CsvExporter, observations).await
}

fn parse(bytes: &[u8]) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes);
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The record whose `id` is `id`.
fn record<'a>(records: &'a [Vec<String>], id: &str) -> &'a [String] {
    records
        .iter()
        .find(|r| r[col::ID] == id)
        .unwrap_or_else(|| panic!("no row {id}"))
}

/// What a spreadsheet-safe CSV must hold for a cell: its text, with `'` in front of a *text*
/// cell a spreadsheet would run as a formula.
fn expected_field(cell: &Cell<'_>) -> String {
    let text = cell.as_text().into_owned();
    match cell {
        Cell::Text(_) if text.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{text}"),
        _ => text,
    }
}

#[tokio::test]
async fn every_cell_of_every_row_round_trips() {
    let observations = fixture::rich();
    let (result, out) = export(ok_stream(observations.clone())).await;
    assert_eq!(result.unwrap(), observations.len() as u64);
    assert!(!out.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");

    let records = parse(&out);
    assert_eq!(records[0], COLUMNS);
    let expected: Vec<Vec<String>> = observations
        .iter()
        .flat_map(rows)
        .map(|row| row.cells.iter().map(expected_field).collect())
        .collect();
    // A panel of three components adds two rows.
    assert_eq!(expected.len(), observations.len() + 2);
    assert_eq!(records[1..], expected[..]);
}

#[tokio::test]
async fn quantities_and_times_are_the_source_values_as_written() {
    let observations = fixture::rich();
    let (_, out) = export(ok_stream(observations.clone())).await;
    let records = parse(&out);
    for o in &observations {
        let Some(r) = records.iter().find(|r| r[col::ID] == o.id) else {
            assert!(!o.components.is_empty(), "only a panel has no own row");
            continue;
        };
        let effective = o.effective.as_ref().and_then(Effective::start);
        assert_eq!(
            r[col::EFFECTIVE],
            effective.map(ToString::to_string).unwrap_or_default()
        );
        let Value::Quantity(q) = &o.value else {
            continue;
        };
        // Numbers are never prefixed: `-0.5` stays `-0.5`.
        assert_eq!(
            r[col::VALUE],
            q.value.as_ref().unwrap().as_str(),
            "{}",
            o.id
        );
        assert_eq!(r[col::UNIT], q.code.as_deref().unwrap());
        assert_eq!(
            r[col::VALUE_COMPARATOR],
            q.comparator.map(|c| c.as_str()).unwrap_or("")
        );
        assert_eq!(r[col::VALUE_TYPE], "Quantity");
    }
    let value = |id: &str| record(&records, id)[col::VALUE].clone();
    assert_eq!(value("q-precision"), "98.60");
    assert_eq!(value("q-underflow"), "1e-400");
    assert_eq!(value("q-30-digits"), "1.23456789012345678901234567890");
    assert_eq!(value("q-negative"), "-0.5");
    assert_eq!(
        record(&records, "q-negative")[col::EFFECTIVE],
        "2024-01-01T08:00:00Z"
    );
    assert_eq!(
        record(&records, "q-30-digits")[col::EFFECTIVE_ZONE],
        "local"
    );
    let assumed = record(&records, "assumed");
    assert_eq!(assumed[col::EFFECTIVE], "2016-12-13T11:02:30.5+08:00");
    assert_eq!(assumed[col::EFFECTIVE_ZONE], "assumed");
    assert_eq!(
        record(&records, "q-precision")[col::ISSUED],
        "2024-01-01T08:05:00.250Z"
    );
}

#[tokio::test]
async fn text_a_spreadsheet_would_run_is_neutralised_and_other_types_are_not() {
    let (_, out) = export(ok_stream(fixture::rich())).await;
    let records = parse(&out);
    let field = |id: &str, column: usize| record(&records, id)[column].clone();
    assert_eq!(field("t-formula", col::VALUE), "'=cmd|' /C calc'!A0");
    assert_eq!(field("t-formula", col::DISPLAY), "'@SUM(A1:A2)");
    assert_eq!(field("t-plus", col::VALUE), "'+1");
    assert_eq!(field("t-plus", col::DISPLAY), "'-x");
    assert_eq!(field("t-tab", col::VALUE), "'\tx");
    // Commas, quotes, newlines and CR survive quoting.
    assert_eq!(field("t-tab", col::DISPLAY), "a, b");
    assert_eq!(field("t-quote", col::VALUE), "say \"hi\"\nnext");
    assert_eq!(field("t-quote", col::DISPLAY), "'\rcr");
    assert_eq!(field("before-1900", col::PATIENT_ID), "'-P000002");
    // Integers are numbers: never prefixed.
    assert_eq!(field("int-negative", col::VALUE), "-3");
    assert_eq!(field("int-max", col::VALUE), "2147483647");
    assert_eq!(field("bool-true", col::VALUE), "true");
    assert_eq!(field("bool-false", col::VALUE), "false");
}

#[tokio::test]
async fn panels_coded_values_and_annotations_have_their_columns() {
    let (_, out) = export(ok_stream(fixture::rich())).await;
    let records = parse(&out);
    assert!(records.iter().all(|r| r[col::ID] != "bp"), "no own row");
    let systolic = record(&records, "bp#0");
    assert_eq!(systolic[col::CODE], "8480-6");
    assert_eq!(systolic[col::VALUE], "120");
    assert_eq!(systolic[col::UNIT], "mm[Hg]");
    assert_eq!(systolic[col::REFERENCE_LOW], "90");
    assert_eq!(systolic[col::REFERENCE_HIGH], "130");
    assert_eq!(systolic[col::EFFECTIVE], "2024-01-01T08:00:00+08:00");
    assert_eq!(systolic[col::EFFECTIVE_END], "2024-01-01T08:15:30+08:00");
    assert_eq!(record(&records, "bp#1")[col::VALUE], "95.0");
    assert_eq!(record(&records, "bp#1")[col::INTERPRETATION], "A;H");
    let mean = record(&records, "bp#2");
    assert_eq!(mean[col::VALUE], "");
    assert_eq!(mean[col::DATA_ABSENT_REASON], "not-performed");

    let coded = record(&records, "coded");
    assert_eq!(coded[col::VALUE], "Negative");
    assert_eq!(coded[col::VALUE_CODE_SYSTEM], "http://snomed.info/sct");
    assert_eq!(coded[col::VALUE_CODE], "260385009");
    assert_eq!(coded[col::REFERENCE_TEXT], "negative");
    assert_eq!(coded[col::CATEGORY], "laboratory");
    assert_eq!(coded[col::EFFECTIVE], "2024-03-04");
    assert_eq!(record(&records, "range")[col::VALUE], "3.5..5.10");
    assert_eq!(record(&records, "ratio")[col::VALUE], "1:128");
    let unreadable = record(&records, "unreadable");
    assert_eq!(unreadable[col::DATA_ABSENT_REASON], "error");
    assert_eq!(
        unreadable[col::WARNINGS],
        "line 12, column 5: value \"1,5\" is not a number; line 14, column 9: unknown unit"
    );
    assert_eq!(
        record(&records, "mapped")[col::MAPPED_FROM],
        "urn:oid:1.2.3.4|TEMP"
    );
    let bare = record(&records, "bare");
    assert_eq!(bare[col::STATUS], "");
    assert_eq!(bare[col::DISPLAY], "free-text test");
}

#[tokio::test]
async fn lines_end_with_crlf() {
    let (_, out) = export(ok_stream(vec![fixture::workload(0)])).await;
    let text = String::from_utf8(out).unwrap();
    let header = format!("{}\r\n", COLUMNS.join(","));
    assert!(text.starts_with(&header), "{text}");
    assert!(text.ends_with("\r\n"));
    assert_eq!(text.matches('\n').count(), 2);
    assert_eq!(text.matches("\r\n").count(), 2);
}

#[tokio::test]
async fn empty_stream_writes_only_the_header() {
    let (result, out) = export(ok_stream(Vec::new())).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{}\r\n", COLUMNS.join(","))
    );
}

#[tokio::test]
async fn stream_error_stops_the_export() {
    let observations = fixture::rich();
    let (result, out) = export(failing_stream(&observations)).await;
    assert_stream_error(result);
    // Only the header and the rows before the error; nothing after it.
    let records = parse(&out);
    assert_eq!(records.len(), 3);
    assert_eq!(records[1][col::ID], observations[0].id);
    assert_eq!(records[2][col::ID], observations[1].id);
    assert!(!String::from_utf8(out)
        .unwrap()
        .contains(&observations[2].id));
}

#[tokio::test]
async fn large_exports_are_written_in_bounded_chunks_and_stay_exact() {
    // Writes stay below the threshold plus the csv writer's own 8 KiB buffer and one row.
    let (observations, bytes) =
        fixture::export_in_chunks(&CsvExporter, 5_000, FLUSH_THRESHOLD + 9 * 1024).await;
    let records = parse(&bytes);
    assert_eq!(records.len(), observations.len() + 1);
    for (record, o) in records[1..].iter().zip(&observations) {
        let expected: Vec<String> = rows(o)
            .next()
            .unwrap()
            .cells
            .iter()
            .map(expected_field)
            .collect();
        assert_eq!(record, &expected);
    }
}

#[test]
fn registers_the_csv_format() {
    fixture::assert_registers(
        medgate_export_csv::register,
        &[("csv", "text/csv; charset=utf-8", "csv")],
    );
}
