//! End-to-end tests of the JSON and NDJSON exporters: export the shared rich observations,
//! parse the bytes back with serde_json (numbers kept as text: `arbitrary_precision`), and
//! compare with the source values.

#[path = "../../export-csv/tests/fixture/mod.rs"]
mod fixture;

use fixture::{assert_stream_error, failing_stream, ok_stream};
use medgate_core::{
    rows, Cell, Effective, Exporter, Observation, ObservationStream, Result, Row, Value, COLUMNS,
};
use medgate_export_json::{JsonExporter, NdjsonExporter, FLUSH_THRESHOLD};
use serde_json::{Map, Value as Json};

async fn export(exporter: &dyn Exporter, observations: ObservationStream) -> (Result<u64>, String) {
    let mut out = Vec::new();
    let result = exporter
        .export(observations, &mut out)
        .await
        .map(|s| s.rows);
    (result, String::from_utf8(out).unwrap())
}

fn parse_lines(text: &str) -> Vec<Map<String, Json>> {
    text.split_terminator('\n')
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// A JSON number holding exactly `text` (serde_json keeps the text with
/// `arbitrary_precision`, and compares numbers by it).
fn number(text: &str) -> Json {
    Json::Number(serde_json::from_str(text).unwrap())
}

/// The flat object a row must read back as, built from its cells: the ten original keys
/// always, in order, the appended ones only when they have a value.
fn expected_object(row: &Row<'_>) -> Vec<(String, Json)> {
    COLUMNS
        .iter()
        .zip(&row.cells)
        .enumerate()
        .filter(|(i, (_, cell))| *i < 10 || !cell.is_empty())
        .map(|(_, (name, cell))| {
            let value = match cell {
                Cell::Empty => Json::Null,
                Cell::Text(t) => Json::String(t.to_string()),
                Cell::Number(d) => number(d.as_str()),
                Cell::Integer(i) => Json::from(*i),
                Cell::Bool(b) => Json::Bool(*b),
                Cell::DateTime(d) => Json::String(d.to_string()),
            };
            ((*name).to_owned(), value)
        })
        .collect()
}

fn entries(object: &Map<String, Json>) -> Vec<(String, Json)> {
    object.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Every row's object, key by key and in key order, and the source observations' own values.
fn assert_round_trip(observations: &[Observation], objects: &[Map<String, Json>]) {
    let expected: Vec<Vec<(String, Json)>> = observations
        .iter()
        .flat_map(rows)
        .map(|r| expected_object(&r))
        .collect();
    assert_eq!(
        expected.len(),
        observations.len() + 2,
        "a panel of three adds two rows"
    );
    let actual: Vec<Vec<(String, Json)>> = objects.iter().map(entries).collect();
    assert_eq!(actual, expected);

    let by_id = |id: &str| objects.iter().find(|o| o["id"] == id);
    for o in observations {
        let Some(object) = by_id(&o.id) else {
            assert!(!o.components.is_empty(), "only a panel has no own row");
            continue;
        };
        let effective = o.effective.as_ref().and_then(Effective::start);
        match effective {
            Some(e) => assert_eq!(object["effective"], e.to_string()),
            None => assert_eq!(object["effective"], Json::Null),
        }
        if let Value::Quantity(q) = &o.value {
            assert_eq!(object["value"], number(q.value.as_ref().unwrap().as_str()));
            assert_eq!(object["unit"], q.code.as_deref().unwrap());
            match q.comparator {
                Some(c) => assert_eq!(object["value_comparator"], c.as_str()),
                None => assert!(!object.contains_key("value_comparator")),
            }
        }
    }
    let get = |id: &str, key: &str| by_id(id).unwrap()[key].clone();
    assert_eq!(get("bool-false", "value"), Json::Bool(false));
    assert_eq!(get("int-negative", "value"), Json::from(-3));
    assert_eq!(
        get("t-formula", "value"),
        "=cmd|' /C calc'!A0",
        "never altered"
    );
    assert_eq!(get("t-quote", "value"), "say \"hi\"\nnext");
    assert_eq!(get("bp#1", "interpretation"), "A;H");
    assert_eq!(get("bp#2", "value"), Json::Null);
    assert_eq!(get("bp#2", "data_absent_reason"), "not-performed");
    assert_eq!(get("assumed", "effective"), "2016-12-13T11:02:30.5+08:00");
    assert_eq!(get("assumed", "effective_zone"), "assumed");
    assert_eq!(get("bare", "category"), Json::Null);
    assert!(!by_id("bare").unwrap().contains_key("status"));
}

/// Decimals are written exactly as received, never re-formatted through a float.
fn assert_numbers_verbatim(text: &str) {
    let mut written = fixture::quantities_as_json();
    written.extend([r#""value":-3,"#.into(), r#""reference_low":97.0,"#.into()]);
    for written in written {
        assert!(text.contains(&written), "{written} missing");
    }
}

#[tokio::test]
async fn json_array_round_trips() {
    let observations = fixture::rich();
    let (result, out) = export(&JsonExporter, ok_stream(observations.clone())).await;
    assert_eq!(result.unwrap(), observations.len() as u64);
    let parsed: Vec<Map<String, Json>> = serde_json::from_str(&out).unwrap();
    assert_round_trip(&observations, &parsed);
    assert_numbers_verbatim(&out);
    // Framing: `[` + rows joined by `,\n` + `]`.
    assert!(out.starts_with(r#"[{"patient_id":"P000001","source":"his","id":"q-precision","#));
    assert_eq!(out.matches("},\n{").count(), parsed.len() - 1);
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
    let observations = fixture::rich();
    let (result, out) = export(&NdjsonExporter, ok_stream(observations.clone())).await;
    assert_eq!(result.unwrap(), observations.len() as u64);
    assert!(out.ends_with("}\n"));
    let parsed = parse_lines(&out);
    assert_round_trip(&observations, &parsed);
    assert_numbers_verbatim(&out);
}

#[tokio::test]
async fn empty_ndjson_is_empty() {
    let (result, out) = export(&NdjsonExporter, ok_stream(Vec::new())).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(out, "");
}

#[tokio::test]
async fn json_error_mid_stream_leaves_the_array_open() {
    let observations = fixture::rich();
    let (result, out) = export(&JsonExporter, failing_stream(&observations)).await;
    assert_stream_error(result);
    assert!(serde_json::from_str::<Json>(&out).is_err());
    assert!(!out.ends_with(']'), "{out}");
    // The two rows before the error, and nothing after it.
    assert!(out.starts_with("[{"));
    assert_eq!(out.matches(r#""id":"#).count(), 2);
    assert!(!out.contains(&format!(r#""id":"{}""#, observations[2].id)));
}

#[tokio::test]
async fn ndjson_error_mid_stream_stops_after_complete_lines() {
    let observations = fixture::rich();
    let (result, out) = export(&NdjsonExporter, failing_stream(&observations)).await;
    assert_stream_error(result);
    let parsed = parse_lines(&out);
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1]["id"], observations[1].id);
    assert!(!out.contains(&format!(r#""id":"{}""#, observations[2].id)));
}

#[tokio::test]
async fn large_exports_are_written_in_bounded_chunks_and_stay_exact() {
    for exporter in [&JsonExporter as &dyn Exporter, &NdjsonExporter] {
        // Writes stay below the threshold plus one observation's rows.
        let (observations, bytes) =
            fixture::export_in_chunks(exporter, 3_000, FLUSH_THRESHOLD + 1024).await;
        let text = String::from_utf8(bytes).unwrap();
        let parsed = match exporter.format() {
            "json" => serde_json::from_str(&text).unwrap(),
            _ => parse_lines(&text),
        };
        assert_eq!(parsed.len(), observations.len());
        for (object, o) in parsed.iter().zip(&observations) {
            assert_eq!(entries(object), expected_object(&rows(o).next().unwrap()));
        }
    }
}

#[test]
fn registers_both_formats() {
    fixture::assert_registers(
        medgate_export_json::register,
        &[
            ("json", "application/json", "json"),
            ("ndjson", "application/x-ndjson", "ndjson"),
        ],
    );
}
