//! End-to-end tests of the JSON and NDJSON exporters: export hand-built rows, parse them back.

use futures::stream;
use medgate_core::{
    Decimal, Error, Exporter, Observation, ObservationStream, Registry, Result, Value,
};
use medgate_export_json::{JsonExporter, NdjsonExporter};
use serde_json::json;

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
        obs("o5", text("=cmd|' /C calc'!A0"), Some("\ttab"), None),
        obs("o6", Value::Bool(true), None, None),
        obs("o7", Value::Null, None, None),
    ]
}

fn ok_stream(rows: Vec<Observation>) -> ObservationStream {
    Box::pin(stream::iter(rows.into_iter().map(Ok)))
}

fn failing_stream() -> ObservationStream {
    let rows = fixture();
    let items: Vec<Result<Observation>> = vec![
        Ok(rows[0].clone()),
        Ok(rows[1].clone()),
        Err(Error::malformed("his", "truncated bundle")),
        Ok(rows[3].clone()),
    ];
    Box::pin(stream::iter(items))
}

async fn export(exporter: &dyn Exporter, rows: ObservationStream) -> (Result<u64>, String) {
    let mut out = Vec::new();
    let result = exporter.export(rows, &mut out).await.map(|s| s.rows);
    (result, String::from_utf8(out).unwrap())
}

fn expected_values() -> Vec<serde_json::Value> {
    vec![
        json!({
            "patient_id": "P000001", "source": "his", "id": "o1", "category": "vital-signs",
            "code_system": "http://loinc.org", "code": "8310-5",
            "display": "Körpertemperatur 体温", "value": 98.6, "unit": "Cel",
            "effective": "2024-01-01T08:00:00+08:00"
        }),
        json!({
            "patient_id": "P000001", "source": "his", "id": "o2", "category": "vital-signs",
            "code_system": "http://loinc.org", "code": "8310-5", "display": null,
            "value": 1e-22, "unit": "Cel", "effective": "2024-01-01T08:00:00-05:00"
        }),
        json!({
            "patient_id": "P000001", "source": "his", "id": "o3", "category": "vital-signs",
            "code_system": "http://loinc.org", "code": "8310-5", "display": "a, b",
            "value": -1.5, "unit": "Cel", "effective": "2024-01-01T08:00:00Z"
        }),
        json!({
            "patient_id": "P000001", "source": "his", "id": "o4", "category": "vital-signs",
            "code_system": "http://loinc.org", "code": "8310-5", "display": "say \"hi\"\nnext",
            "value": 72, "unit": "Cel", "effective": "2024-01-01"
        }),
        json!({
            "patient_id": "P000001", "source": "his", "id": "o5", "category": "vital-signs",
            "code_system": "http://loinc.org", "code": "8310-5", "display": "\ttab",
            "value": "=cmd|' /C calc'!A0", "unit": "Cel", "effective": null
        }),
        json!({
            "patient_id": "P000001", "source": "his", "id": "o6", "category": "vital-signs",
            "code_system": "http://loinc.org", "code": "8310-5", "display": null,
            "value": true, "unit": "Cel", "effective": null
        }),
        json!({
            "patient_id": "P000001", "source": "his", "id": "o7", "category": "vital-signs",
            "code_system": "http://loinc.org", "code": "8310-5", "display": null,
            "value": null, "unit": "Cel", "effective": null
        }),
    ]
}

#[tokio::test]
async fn json_array_round_trips() {
    let (result, out) = export(&JsonExporter, ok_stream(fixture())).await;
    assert_eq!(result.unwrap(), 7);
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed, expected_values());
    // Decimals are written exactly as received, not re-formatted through a float.
    assert!(out.contains(r#""value":98.60,"#), "{out}");
    assert!(out.contains(r#""value":1e-22,"#), "{out}");
    // Framing: `[` + rows joined by `,\n` + `]`, fields in COLUMNS order.
    assert!(out.starts_with(r#"[{"patient_id":"P000001","source":"his","id":"o1","#));
    assert_eq!(out.matches("},\n{").count(), 6);
    assert!(out.ends_with("}]"));
}

#[tokio::test]
async fn empty_json_is_an_empty_array() {
    let (result, out) = export(&JsonExporter, ok_stream(Vec::new())).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(out, "[]");
}

#[tokio::test]
async fn ndjson_is_one_object_per_line() {
    let (result, out) = export(&NdjsonExporter, ok_stream(fixture())).await;
    assert_eq!(result.unwrap(), 7);
    assert!(out.ends_with("}\n"));
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    assert_eq!(lines.len(), 7);
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(parsed, expected_values());
    assert!(lines[0].contains(r#""value":98.60,"#));
    assert!(lines[1].contains(r#""value":1e-22,"#));
}

#[tokio::test]
async fn empty_ndjson_is_empty() {
    let (result, out) = export(&NdjsonExporter, ok_stream(Vec::new())).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(out, "");
}

fn assert_stream_error(result: Result<u64>) {
    match result {
        Err(Error::Malformed { name, detail }) => {
            assert_eq!(name, "his");
            assert_eq!(detail, "truncated bundle");
        }
        other => panic!("expected the stream's error, got {other:?}"),
    }
}

#[tokio::test]
async fn json_error_mid_stream_leaves_the_array_open() {
    let (result, out) = export(&JsonExporter, failing_stream()).await;
    assert_stream_error(result);
    assert!(serde_json::from_str::<serde_json::Value>(&out).is_err());
    assert!(!out.ends_with(']'), "{out}");
    // The two rows before the error, and nothing after it.
    assert!(out.starts_with("[{"));
    assert_eq!(out.matches(r#""id":"#).count(), 2);
    assert!(!out.contains(r#""id":"o4""#));
}

#[tokio::test]
async fn ndjson_error_mid_stream_stops_after_complete_lines() {
    let (result, out) = export(&NdjsonExporter, failing_stream()).await;
    assert_stream_error(result);
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    assert_eq!(lines.len(), 2);
    assert!(!out.contains(r#""id":"o4""#));
}

#[tokio::test]
async fn large_exports_are_flushed_in_chunks_and_stay_exact() {
    let rows: Vec<Observation> = (0..3_000)
        .map(|i| obs(&format!("o{i}"), num("36.50"), None, None))
        .collect();
    let (result, out) = export(&JsonExporter, ok_stream(rows)).await;
    assert_eq!(result.unwrap(), 3_000);
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed.len(), 3_000);
    for (i, row) in parsed.iter().enumerate() {
        assert_eq!(row["id"], format!("o{i}"));
    }
    assert_eq!(out.matches(r#""value":36.50,"#).count(), 3_000);
}

#[test]
fn registers_both_formats() {
    let mut registry = Registry::new();
    medgate_export_json::register(&mut registry);
    assert_eq!(registry.formats(), ["json", "ndjson"]);
    assert_eq!(JsonExporter.content_type(), "application/json");
    assert_eq!(JsonExporter.extension(), "json");
    assert_eq!(NdjsonExporter.content_type(), "application/x-ndjson");
    assert_eq!(NdjsonExporter.extension(), "ndjson");
}
