//! Shared test helpers: fixtures from the repo, Open mHealth envelopes, and a one-line
//! summary of an observation that tests compare against expected text.
#![allow(dead_code)]

use medgate_core::model::UCUM;
use medgate_core::{Effective, Observation, Quantity, Value};
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

/// The one observation of an Open mHealth payload.
pub fn one_omh(text: &str) -> Observation {
    let mut all = parse_omh(text).unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

/// One line that says what an observation means, for exact comparison:
/// `<category> <code> <value> @<effective> [<component>; …] ! <warning> ! …`.
///
/// - codes: the primary coding's code, prefixed `<system>|` unless it is LOINC;
/// - a quantity: `<comparator><digits as written> <UCUM code>`, or `'<unit>'` when the unit
///   has no UCUM code; no value: `absent:<dataAbsentReason>`; text: `"<text>"`;
/// - effective: a date-time, or `<start>/<end>` for a period (RFC 3339 as kept).
pub fn summary(o: &Observation) -> String {
    let mut out = String::new();
    let category = o.category.first().and_then(|c| c.primary());
    out.push_str(category.and_then(|c| c.code.as_deref()).unwrap_or("-"));
    out.push(' ');
    out.push_str(&code(&o.code));
    out.push(' ');
    out.push_str(&value(&o.value, o.data_absent_reason.as_ref()));
    match &o.effective {
        Some(Effective::DateTime(d)) => out.push_str(&format!(" @{d}")),
        Some(Effective::Period(p)) => out.push_str(&format!(
            " @{}/{}",
            p.start.map(|d| d.to_string()).unwrap_or_default(),
            p.end.map(|d| d.to_string()).unwrap_or_default()
        )),
        None => {}
    }
    if !o.components.is_empty() {
        let parts: Vec<String> = o
            .components
            .iter()
            .map(|c| {
                format!(
                    "{}: {}",
                    code(&c.code),
                    value(&c.value, c.data_absent_reason.as_ref())
                )
            })
            .collect();
        out.push_str(&format!(" [{}]", parts.join("; ")));
    }
    for w in &o.warnings {
        out.push_str(&format!(" ! {w}"));
    }
    out
}

fn code(c: &medgate_core::CodeableConcept) -> String {
    match c.primary() {
        Some(p) => {
            let code = p.code.as_deref().unwrap_or("");
            match p.system.as_deref() {
                Some("http://loinc.org") => code.to_owned(),
                Some(s) => format!("{s}|{code}"),
                None => format!("|{code}"),
            }
        }
        None => format!("\"{}\"", c.text.as_deref().unwrap_or("")),
    }
}

fn value(v: &Value, absent: Option<&medgate_core::CodeableConcept>) -> String {
    match v {
        Value::None if absent.is_none() => "-".to_owned(),
        Value::None => format!(
            "absent:{}",
            absent
                .and_then(|a| a.primary())
                .and_then(|c| c.code.as_deref())
                .unwrap_or("-")
        ),
        Value::Quantity(q) => quantity(q),
        Value::CodeableConcept(c) => format!("\"{}\"", c.display().unwrap_or("")),
        Value::String(s) => format!("\"{s}\""),
        Value::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn quantity(q: &Quantity) -> String {
    let mut s = String::new();
    if let Some(c) = q.comparator {
        s.push_str(c.as_str());
    }
    s.push_str(q.value.as_ref().map_or("?", |d| d.as_str()));
    match (q.system.as_deref(), q.code.as_deref(), q.unit.as_deref()) {
        (Some(UCUM), Some(code), _) => s.push_str(&format!(" {code}")),
        (Some(system), Some(code), _) => s.push_str(&format!(" {system}|{code}")),
        (_, _, Some(unit)) => s.push_str(&format!(" '{unit}'")),
        _ => {}
    }
    s
}

/// The quantity value of an observation.
pub fn qty(o: &Observation) -> &Quantity {
    match &o.value {
        Value::Quantity(q) => q,
        other => panic!("not a quantity: {other:?}"),
    }
}
