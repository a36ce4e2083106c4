//! Shared helpers: fixtures, parsers, and `facts`, a compact rendering of every typed field
//! of an observation that the data-driven cases compare against.
//!
//! `facts` renders one line per non-empty field, so a case's expected text asserts both what
//! is there and that nothing else is. Conventions: well-known systems are abbreviated
//! (`loinc`, `sct`, `ucum`, `v3` = v3-ObservationInterpretation, `cat` = observation
//! category, `dar` = data-absent-reason, `rr` = referencerange-meaning, `-` = no system); a
//! coding is `system|code "display"`; a quantity is `<comparator><value> 'unit' system|code`
//! with missing parts left out; date-times are written as `DateTime` displays them, which
//! keeps precision, `Z` versus `+00:00`, and the absence of an offset.

use std::fmt::Write as _;

use medgate_core::model::{
    CATEGORY_SYSTEM, DATA_ABSENT_REASON_SYSTEM, INTERPRETATION_SYSTEM, LOINC, UCUM,
};
use medgate_core::{
    CodeableConcept, Coding, Component, DateTime, Effective, Observation, Quantity, Reference,
    ReferenceRange, Value,
};
use medgate_source_his::{parse, ParseContext, ParseError, Parser};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");

pub const PATIENT: &str = "PAT-1";
pub const SOURCE: &str = "his-main";

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn ctx() -> ParseContext {
    ParseContext::new(SOURCE, PATIENT)
}

pub fn fhir(bytes: &[u8]) -> Result<Vec<Observation>, ParseError> {
    parse(&Parser::FhirR4, bytes, &ctx())
}

pub fn fhir_file(path: &str) -> Vec<Observation> {
    fhir(&fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn cda(bytes: &[u8]) -> Result<Vec<Observation>, ParseError> {
    parse(&Parser::Cda, bytes, &ctx())
}

/// C-CDA guide fragments declare no namespaces (SOURCES.md): wrap them in a
/// `ClinicalDocument` that declares `urn:hl7-org:v3`, `xsi` and `sdtc`. The wrapper adds no
/// line, so positions in warnings are the fragment's own lines.
pub fn wrap_fragment(body: &str) -> String {
    let body = body.trim_start_matches('\u{feff}');
    let body = match body.strip_prefix("<?xml") {
        Some(rest) => &rest[rest.find("?>").expect("XML declaration ends") + 2..],
        None => body,
    };
    format!(
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:sdtc=\"urn:hl7-org:sdtc\">\
         <component><structuredBody><component>{body}</component></structuredBody></component>\
         </ClinicalDocument>"
    )
}

/// A CDA fixture: full documents as they are, fragments wrapped.
pub fn cda_file(path: &str) -> Vec<Observation> {
    let text = String::from_utf8(fixture(path)).unwrap();
    let doc = if text.contains("<ClinicalDocument") {
        text
    } else {
        wrap_fragment(&text)
    };
    cda(doc.as_bytes()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Compares `facts(o)` with `expected` line by line (indentation ignored).
#[track_caller]
pub fn check(o: &Observation, expected: &str) {
    let want: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let got = facts(o);
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got, want, "\n--- got ---\n{}\n", got.join("\n"));
    assert_eq!(&*o.patient_id, PATIENT);
    assert_eq!(&*o.source, SOURCE);
}

/// Checks the observation at `index` of `rows`.
#[track_caller]
pub fn check_at(rows: &[Observation], index: usize, expected: &str) {
    let o = rows
        .get(index)
        .unwrap_or_else(|| panic!("only {} observations", rows.len()));
    check(o, expected);
}

/// The observation with id `id`.
#[track_caller]
pub fn by_id<'a>(rows: &'a [Observation], id: &str) -> &'a Observation {
    rows.iter()
        .find(|o| o.id == id)
        .unwrap_or_else(|| panic!("no observation {id}"))
}

fn system(s: Option<&str>) -> &str {
    match s {
        None => "-",
        Some(LOINC) => "loinc",
        Some(UCUM) => "ucum",
        Some("http://snomed.info/sct") => "sct",
        Some(INTERPRETATION_SYSTEM) => "v3",
        Some(CATEGORY_SYSTEM) => "cat",
        Some(DATA_ABSENT_REASON_SYSTEM) => "dar",
        Some("http://terminology.hl7.org/CodeSystem/referencerange-meaning") => "rr",
        Some(other) => other,
    }
}

fn coding(c: &Coding) -> String {
    let mut out = format!(
        "{}|{}",
        system(c.system.as_deref()),
        c.code.as_deref().unwrap_or("")
    );
    if let Some(d) = &c.display {
        write!(out, " \"{d}\"").unwrap();
    }
    if c.mapped {
        out.push_str(" (mapped)");
    }
    out
}

fn concept(c: &CodeableConcept) -> String {
    let mut parts: Vec<String> = c.coding.iter().map(coding).collect();
    if let Some(t) = &c.text {
        parts.push(format!("text \"{t}\""));
    }
    parts.join(", ")
}

fn quantity(q: &Quantity) -> String {
    let mut out = String::new();
    if let Some(c) = q.comparator {
        out.push_str(c.as_str());
    }
    out.push_str(q.value.as_ref().map_or("_", |d| d.as_str()));
    if let Some(u) = &q.unit {
        write!(out, " '{u}'").unwrap();
    }
    match (&q.system, &q.code) {
        (None, None) => {}
        (s, None) => write!(out, " {}", system(s.as_deref())).unwrap(),
        (s, Some(c)) => write!(out, " {}|{c}", system(s.as_deref())).unwrap(),
    }
    out
}

fn bound(q: &Option<Quantity>) -> String {
    q.as_ref().map_or_else(|| "_".to_owned(), quantity)
}

fn date_time(d: &Option<DateTime>) -> String {
    d.map_or_else(|| "_".to_owned(), |d| d.to_string())
}

fn value(v: &Value) -> Option<String> {
    Some(match v {
        Value::None => return None,
        Value::Quantity(q) => quantity(q),
        Value::CodeableConcept(c) => format!("cc {}", concept(c)),
        Value::String(s) => format!("string \"{s}\""),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Range(r) => format!("range {} .. {}", bound(&r.low), bound(&r.high)),
        Value::Ratio(r) => format!("ratio {} : {}", bound(&r.numerator), bound(&r.denominator)),
        Value::Period(p) => format!("period {} .. {}", date_time(&p.start), date_time(&p.end)),
        Value::DateTime(d) => format!("dateTime {d}"),
        Value::Time(t) => format!("time {t}"),
    })
}

fn range(r: &ReferenceRange) -> String {
    let mut out = format!("{} .. {}", bound(&r.low), bound(&r.high));
    if let Some(k) = &r.kind {
        write!(out, " type {}", concept(k)).unwrap();
    }
    if let Some(t) = &r.text {
        write!(out, " text \"{t}\"").unwrap();
    }
    out
}

fn reference(r: &Reference) -> String {
    let mut out = r.reference.clone().unwrap_or_else(|| "_".to_owned());
    if let Some(d) = &r.display {
        write!(out, " \"{d}\"").unwrap();
    }
    out
}

/// The measured part shared by an observation and its components.
fn measured(
    out: &mut Vec<String>,
    prefix: &str,
    value_: &Value,
    absent: Option<&CodeableConcept>,
    interpretation: &[CodeableConcept],
    ranges: &[ReferenceRange],
) {
    if let Some(v) = value(value_) {
        out.push(format!("{prefix}value {v}"));
    }
    if let Some(a) = absent {
        out.push(format!("{prefix}absent {}", concept(a)));
    }
    for i in interpretation {
        out.push(format!("{prefix}interpretation {}", concept(i)));
    }
    for r in ranges {
        out.push(format!("{prefix}range {}", range(r)));
    }
}

/// Every non-empty field of `o`, one per line (see the module docs).
pub fn facts(o: &Observation) -> String {
    let mut out = vec![format!("id {}", o.id)];
    if let Some(s) = o.status {
        out.push(format!("status {}", s.as_str()));
    }
    for c in &o.category {
        out.push(format!("category {}", concept(c)));
    }
    if !o.code.is_empty() {
        out.push(format!("code {}", concept(&o.code)));
    }
    match &o.effective {
        None => {}
        Some(Effective::DateTime(d)) => out.push(format!("effective {d}")),
        Some(Effective::Period(p)) => out.push(format!(
            "effective period {} .. {}",
            date_time(&p.start),
            date_time(&p.end)
        )),
    }
    if let Some(i) = &o.issued {
        out.push(format!("issued {i}"));
    }
    measured(
        &mut out,
        "",
        &o.value,
        o.data_absent_reason.as_ref(),
        &o.interpretation,
        &o.reference_range,
    );
    for (i, c) in o.components.iter().enumerate() {
        component(&mut out, i, c);
    }
    for r in &o.has_member {
        out.push(format!("hasMember {}", reference(r)));
    }
    for r in &o.derived_from {
        out.push(format!("derivedFrom {}", reference(r)));
    }
    if let Some(r) = &o.device {
        out.push(format!("device {}", reference(r)));
    }
    for w in &o.warnings {
        out.push(format!("warning {w}"));
    }
    out.join("\n")
}

fn component(out: &mut Vec<String>, i: usize, c: &Component) {
    let prefix = format!("component[{i}] ");
    out.push(format!("{prefix}code {}", concept(&c.code)));
    measured(
        out,
        &prefix,
        &c.value,
        c.data_absent_reason.as_ref(),
        &c.interpretation,
        &c.reference_range,
    );
}
