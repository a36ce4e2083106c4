//! End-to-end tests of the CSV exporter: export hand-built rows, parse them back with `csv`.

use futures::stream;
use medgate_core::model::COLUMNS;
use medgate_core::{
    Decimal, Error, Exporter, Observation, ObservationStream, Registry, Result, Value,
};
use medgate_export_csv::CsvExporter;

fn obs(id: &str, value: Value, display: Option<&str>, effective: Option<&str>) -> Observation {
    Observation {
        patient_id: "P000001".into(),
        source: "his".into(),
        id: id.into(),
        category: Some("vital-signs".into()),
        code_system: Some("http://loinc.org".into()),
        code: Some("8310-5".into()),
        display: display.map(Into::into),
        value,
        unit: Some("Cel".into()),
        effective: effective.map(Into::into),
    }
}

fn num(text: &str) -> Value {
    Value::Number(Decimal::parse(text).unwrap())
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// The fixture rows: precision, exponents, negatives, injection attempts, unicode, quoting.
fn fixture() -> Vec<Observation> {
    vec![
        obs(
            "o1",
            num("98.60"),
            Some("Körpertemperatur 体温"),
            Some("2024-01-01T08:00:00+08:00"),
        ),
        obs("o2", num("1e-22"), None, Some("2024-01-01T08:00:00-05:00")),
        obs(
            "o3",
            num("-1.5"),
            Some("a, b"),
            Some("2024-01-01T08:00:00Z"),
        ),
        obs(
            "o4",
            num("72"),
            Some("say \"hi\"\nnext"),
            Some("2024-01-01"),
        ),
        obs("o5", text("=cmd|' /C calc'!A0"), None, None),
        obs("o6", text("+1"), Some("@SUM(A1:A2)"), None),
        obs("o7", text("@SUM"), Some("-x"), None),
        obs("o8", text("-x"), Some("\tindent"), None),
        obs("o9", text("\tx"), None, None),
        obs("o10", Value::Bool(true), None, None),
        obs("o11", Value::Bool(false), None, None),
        obs("o12", Value::Null, None, None),
    ]
}

fn ok_stream(rows: Vec<Observation>) -> ObservationStream {
    Box::pin(stream::iter(rows.into_iter().map(Ok)))
}

async fn export(rows: ObservationStream) -> (Result<u64>, Vec<u8>) {
    let mut out = Vec::new();
    let result = CsvExporter.export(rows, &mut out).await.map(|s| s.rows);
    (result, out)
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

#[tokio::test]
async fn header_and_fields_round_trip_exactly() {
    let (result, out) = export(ok_stream(fixture())).await;
    assert_eq!(result.unwrap(), 12);
    assert!(!out.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");
    let records = parse(&out);
    assert_eq!(records.len(), 13);
    assert_eq!(records[0], COLUMNS);

    assert_eq!(
        records[1],
        [
            "P000001",
            "his",
            "o1",
            "vital-signs",
            "http://loinc.org",
            "8310-5",
            "Körpertemperatur 体温",
            "98.60",
            "Cel",
            "2024-01-01T08:00:00+08:00",
        ]
    );
    let value = |i: usize| records[i][7].as_str();
    let display = |i: usize| records[i][6].as_str();
    let effective = |i: usize| records[i][9].as_str();
    // Numbers keep their written text and are never prefixed.
    assert_eq!(value(2), "1e-22");
    assert_eq!(value(3), "-1.5");
    assert_eq!(value(4), "72");
    // Commas, quotes and newlines survive quoting.
    assert_eq!(display(3), "a, b");
    assert_eq!(display(4), "say \"hi\"\nnext");
    // Dangerous text is neutralised with a leading apostrophe, in every text column.
    assert_eq!(value(5), "'=cmd|' /C calc'!A0");
    assert_eq!(value(6), "'+1");
    assert_eq!(display(6), "'@SUM(A1:A2)");
    assert_eq!(value(7), "'@SUM");
    assert_eq!(display(7), "'-x");
    assert_eq!(value(8), "'-x");
    assert_eq!(display(8), "'\tindent");
    assert_eq!(value(9), "'\tx");
    // Booleans, nulls and absent fields.
    assert_eq!(value(10), "true");
    assert_eq!(value(11), "false");
    assert_eq!(value(12), "");
    assert_eq!(display(2), "");
    assert_eq!(effective(2), "2024-01-01T08:00:00-05:00");
    assert_eq!(effective(3), "2024-01-01T08:00:00Z");
    assert_eq!(effective(4), "2024-01-01");
    assert_eq!(effective(5), "");
}

#[tokio::test]
async fn lines_end_with_crlf() {
    let (_, out) = export(ok_stream(fixture()[..1].to_vec())).await;
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "patient_id,source,id,category,code_system,code,display,value,unit,effective\r\n\
         P000001,his,o1,vital-signs,http://loinc.org,8310-5,Körpertemperatur 体温,98.60,Cel,\
         2024-01-01T08:00:00+08:00\r\n"
    );
}

#[tokio::test]
async fn empty_stream_writes_only_the_header() {
    let (result, out) = export(ok_stream(Vec::new())).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(
        out,
        b"patient_id,source,id,category,code_system,code,display,value,unit,effective\r\n"
    );
}

#[tokio::test]
async fn stream_error_stops_the_export() {
    let rows = fixture();
    let items: Vec<Result<Observation>> = vec![
        Ok(rows[0].clone()),
        Ok(rows[1].clone()),
        Err(Error::malformed("his", "truncated bundle")),
        Ok(rows[3].clone()),
    ];
    let (result, out) = export(Box::pin(stream::iter(items))).await;
    match result {
        Err(Error::Malformed { name, detail }) => {
            assert_eq!(name, "his");
            assert_eq!(detail, "truncated bundle");
        }
        other => panic!("expected the stream's error, got {other:?}"),
    }
    // Only the header and the two rows before the error; nothing after it.
    let records = parse(&out);
    assert_eq!(records.len(), 3);
    assert_eq!(records[1][2], "o1");
    assert_eq!(records[2][2], "o2");
    assert!(!String::from_utf8(out).unwrap().contains("o4"));
}

#[tokio::test]
async fn large_exports_are_flushed_in_chunks_and_stay_exact() {
    // Enough rows to pass the 64 KiB threshold several times.
    let rows: Vec<Observation> = (0..5_000)
        .map(|i| obs(&format!("o{i}"), num("36.5"), Some("=x"), None))
        .collect();
    let (result, out) = export(ok_stream(rows)).await;
    assert_eq!(result.unwrap(), 5_000);
    let records = parse(&out);
    assert_eq!(records.len(), 5_001);
    for (i, record) in records[1..].iter().enumerate() {
        assert_eq!(record[2], format!("o{i}"));
        assert_eq!(record[6], "'=x");
        assert_eq!(record[7], "36.5");
    }
}

#[test]
fn registers_the_csv_format() {
    let mut registry = Registry::new();
    medgate_export_csv::register(&mut registry);
    assert_eq!(registry.formats(), ["csv"]);
    assert_eq!(CsvExporter.content_type(), "text/csv; charset=utf-8");
    assert_eq!(CsvExporter.extension(), "csv");
}
