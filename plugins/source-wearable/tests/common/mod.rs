//! Shared test helpers: fixtures from the repo and Open mHealth envelopes.
#![allow(dead_code)]

use medgate_core::{Observation, Value};
use medgate_source_wearable::{parse, ParseContext, ParseError, PayloadFormat};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

/// A fixture's text, e.g. `fixture("fitbit/fitbit-body-log-weight.json")`.
pub fn fixture(rel: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{rel}")).unwrap()
}

/// Wraps a bare Open mHealth body (the schema test data) in a data-point envelope, as text,
/// so the body's numbers reach the parser exactly as written in the fixture.
pub fn data_point(id: &str, name: &str, version: &str, body: &str) -> String {
    format!(
        r#"{{"header":{{"id":"{id}","creation_date_time":"2020-01-01T00:00:00Z",
        "schema_id":{{"namespace":"omh","name":"{name}","version":"{version}"}}}},
        "body":{body}}}"#
    )
}

/// The envelope of the body fixture `omh/<name>/<version>/<case>.json`, in an array.
pub fn omh_sample(name: &str, version: &str, case: &str) -> String {
    let body = fixture(&format!("openmhealth/omh/{name}/{version}/{case}.json"));
    format!("[{}]", data_point("dp-1", name, version, &body))
}

pub fn parse_omh(text: &str) -> Result<Vec<Observation>, ParseError> {
    parse(
        &PayloadFormat::OpenMHealth,
        text.as_bytes(),
        &ParseContext::new("band", "P1"),
    )
}

pub fn num(v: &Value) -> &str {
    match v {
        Value::Number(d) => d.as_str(),
        other => panic!("not a number: {other:?}"),
    }
}

/// `(code, value, unit, effective)` of each row, for compact assertions.
pub fn summary(rows: &[Observation]) -> Vec<(String, String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r.code.clone().unwrap_or_default(),
                r.value.as_text().into_owned(),
                r.unit.clone().unwrap_or_default(),
                r.effective.clone().unwrap_or_default(),
            )
        })
        .collect()
}
