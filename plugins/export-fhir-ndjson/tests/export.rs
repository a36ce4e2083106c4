//! End-to-end tests of the FHIR NDJSON exporter: export the shared rich observations, read
//! every line strictly into an independent FHIR R4 model (fhirbolt), turn it back into the
//! record, and compare with the source observation, field by field.

#[path = "../../export-csv/tests/fixture/mod.rs"]
mod fixture;

use std::sync::Arc;

use fhirbolt::element::Element;
use fhirbolt::model::r4::resources::{
    Observation as R4Observation, ObservationComponent, ObservationComponentValue,
    ObservationEffective, ObservationReferenceRange, ObservationValue,
};
use fhirbolt::model::r4::types::{
    CodeableConcept as R4Concept, DateTime as R4DateTime, Extension, ExtensionValue,
    Period as R4Period, Quantity as R4Quantity, Reference as R4Reference,
};
use fhirbolt::FhirReleases;
use fixture::{assert_stream_error, failing_stream, ok_stream};
use medgate_core::fhir::{resource_id, LOCAL_TIME_EXTENSION, WARNING_EXTENSION};
use medgate_core::{
    CodeableConcept, Coding, Comparator, Component, DateTime, Decimal, Effective, Observation,
    ObservationStream, Period, Quantity, Range, Ratio, Reference, ReferenceRange, Result, Status,
    Value, Warning, Zone,
};
use medgate_export_fhir_ndjson::{FhirNdjsonExporter, FLUSH_THRESHOLD};

async fn export(observations: ObservationStream) -> (Result<u64>, String) {
    let (result, out) = fixture::export_bytes(&FhirNdjsonExporter, observations).await;
    (result, String::from_utf8(out).unwrap())
}

/// Strict R4 reading. fhirbolt 0.4's direct typed JSON path cannot read JSON numbers into
/// decimals, so the text goes through its generic element model first (also strict).
fn strict_r4(text: &str) -> R4Observation {
    let element: Element<{ FhirReleases::R4 }> =
        fhirbolt::json::from_str(text, None).unwrap_or_else(|e| panic!("not R4 JSON: {e}\n{text}"));
    fhirbolt::element::from_element(element, None)
        .unwrap_or_else(|e| panic!("not an R4 Observation: {e}\n{text}"))
}

// Reading the R4 model back into the record: each function undoes one documented rule of
// `medgate_core::fhir` and nothing else.

fn text<T>(value: &Option<T>, get: impl Fn(&T) -> &Option<String>) -> Option<String> {
    value.as_ref().and_then(|v| get(v).clone())
}

fn concept(c: &R4Concept) -> CodeableConcept {
    CodeableConcept {
        coding: c
            .coding
            .iter()
            .map(|c| Coding {
                system: text(&c.system, |v| &v.value),
                code: text(&c.code, |v| &v.value),
                display: text(&c.display, |v| &v.value),
                mapped: false,
            })
            .collect(),
        text: text(&c.text, |v| &v.value),
    }
}

fn quantity(q: &R4Quantity) -> Quantity {
    let value = text(&q.value, |v| &v.value);
    let comparator = text(&q.comparator, |v| &v.value);
    Quantity {
        value: value.map(|t| Decimal::parse(&t).unwrap_or_else(|| panic!("decimal {t}"))),
        comparator: comparator.map(|c| Comparator::parse(&c).unwrap()),
        unit: text(&q.unit, |v| &v.value),
        system: text(&q.system, |v| &v.value),
        code: text(&q.code, |v| &v.value),
    }
}

fn boxed_quantity(q: &Option<Box<R4Quantity>>) -> Option<Quantity> {
    q.as_deref().map(quantity)
}

fn string_extension(extensions: &[Extension], url: &str) -> Vec<String> {
    extensions
        .iter()
        .filter(|e| e.url == url)
        .map(|e| match &e.value {
            Some(ExtensionValue::String(s)) => s.value.clone().unwrap(),
            other => panic!("{url}: {other:?}"),
        })
        .collect()
}

/// A local time is written as its date, with the whole local time in an extension.
fn date_time(d: &R4DateTime) -> DateTime {
    let local = string_extension(&d.extension, LOCAL_TIME_EXTENSION);
    let text = local.first().or(d.value.as_ref()).unwrap();
    DateTime::parse(text).unwrap()
}

fn period(p: &R4Period) -> Period {
    Period {
        start: p.start.as_ref().map(date_time),
        end: p.end.as_ref().map(date_time),
    }
}

fn reference(r: &R4Reference) -> Reference {
    Reference {
        reference: text(&r.reference, |v| &v.value),
        display: text(&r.display, |v| &v.value),
    }
}

fn reference_range(r: &ObservationReferenceRange) -> ReferenceRange {
    ReferenceRange {
        low: boxed_quantity(&r.low),
        high: boxed_quantity(&r.high),
        kind: r.r#type.as_deref().map(concept),
        text: text(&r.text, |v| &v.value),
    }
}

/// `value[x]`: the Observation's and the component's value enums have the same variants.
macro_rules! value {
    ($value:expr, $enum:ident) => {
        match $value {
            None => Value::None,
            Some($enum::Quantity(q)) => Value::Quantity(quantity(q)),
            Some($enum::CodeableConcept(c)) => Value::CodeableConcept(concept(c)),
            Some($enum::String(s)) => Value::String(s.value.clone().unwrap()),
            Some($enum::Boolean(b)) => Value::Boolean(b.value.unwrap()),
            Some($enum::Integer(i)) => Value::Integer(i.value.unwrap()),
            Some($enum::Range(r)) => Value::Range(Range {
                low: boxed_quantity(&r.low),
                high: boxed_quantity(&r.high),
            }),
            Some($enum::Ratio(r)) => Value::Ratio(Ratio {
                numerator: boxed_quantity(&r.numerator),
                denominator: boxed_quantity(&r.denominator),
            }),
            Some($enum::Period(p)) => Value::Period(period(p)),
            Some($enum::DateTime(d)) => Value::DateTime(date_time(d)),
            Some($enum::Time(t)) => Value::Time(t.value.clone().unwrap()),
            Some(other) => panic!("medgate never writes {other:?}"),
        }
    };
}

fn component(c: &ObservationComponent) -> Component {
    Component {
        code: concept(&c.code),
        value: value!(&c.value, ObservationComponentValue),
        data_absent_reason: c.data_absent_reason.as_deref().map(concept),
        interpretation: c.interpretation.iter().map(concept).collect(),
        reference_range: c.reference_range.iter().map(reference_range).collect(),
    }
}

/// The record an R4 Observation written by medgate stands for.
fn record(r4: &R4Observation) -> Observation {
    let identifier = &r4.identifier[0];
    let source = text(&identifier.system, |v| &v.value).unwrap();
    let source = source.strip_prefix("urn:medgate:source:").unwrap();
    let subject = r4.subject.as_deref().unwrap();
    let patient = match text(&subject.reference, |v| &v.value) {
        Some(r) => r.strip_prefix("Patient/").unwrap().to_owned(),
        None => text(&subject.identifier, |i| &i.value.as_ref().unwrap().value).unwrap(),
    };
    let id = text(&identifier.value, |v| &v.value).unwrap();
    let mut o = Observation::new(Arc::from(patient.as_str()), Arc::from(source), id);
    o.status = Status::from_fhir(r4.status.value.as_deref().unwrap());
    o.category = r4.category.iter().map(concept).collect();
    o.code = concept(&r4.code);
    o.effective = r4.effective.as_ref().map(|e| match e {
        ObservationEffective::DateTime(d) => Effective::DateTime(date_time(d)),
        ObservationEffective::Period(p) => Effective::Period(period(p)),
        other => panic!("medgate never writes {other:?}"),
    });
    o.issued = text(&r4.issued, |v| &v.value).map(|t| DateTime::parse(&t).unwrap());
    o.value = value!(&r4.value, ObservationValue);
    o.data_absent_reason = r4.data_absent_reason.as_deref().map(concept);
    o.interpretation = r4.interpretation.iter().map(concept).collect();
    o.reference_range = r4.reference_range.iter().map(reference_range).collect();
    o.components = r4.component.iter().map(component).collect();
    o.has_member = r4.has_member.iter().map(reference).collect();
    o.derived_from = r4.derived_from.iter().map(reference).collect();
    o.device = r4.device.as_deref().map(reference);
    o.warnings = string_extension(&r4.extension, WARNING_EXTENSION)
        .iter()
        .map(|w| {
            let (at, message) = w.split_once(": ").unwrap();
            Warning::new(at, message)
        })
        .collect();
    o
}

/// The source as FHIR keeps it: FHIR has no "mapped" flag (the mapped coding is first), an
/// absent status is written `unknown`, an offset assumed from the source's configured zone
/// is written like a sent one (core's writer has no marker for it yet), and decimals are
/// compared as the JSON reader spells them (serde_json writes an unsigned exponent `e3` as
/// `e+3`; the exporter's own bytes are checked verbatim in
/// `numbers_and_times_are_written_as_received`).
fn as_fhir_keeps_it(mut o: Observation) -> Observation {
    for concept in o.concepts_mut() {
        for coding in &mut concept.coding {
            coding.mapped = false;
        }
    }
    o.status = o.status.or(Some(Status::Unknown));
    for d in o.date_times_mut() {
        if let (Some(Zone::Assumed(offset)), Some(at)) = (d.zone(), d.civil()) {
            *d = DateTime::from_parts(at, d.fraction_digits(), Zone::Offset(offset));
        }
    }
    respell_value(&mut o.value);
    respell_ranges(&mut o.reference_range);
    for c in &mut o.components {
        respell_value(&mut c.value);
        respell_ranges(&mut c.reference_range);
    }
    o
}

fn respell(q: &mut Option<Quantity>) {
    if let Some(d) = q.as_mut().and_then(|q| q.value.as_mut()) {
        let number: serde_json::Number = serde_json::from_str(d.as_str()).unwrap();
        *d = Decimal::parse(&number.to_string()).unwrap();
    }
}

fn respell_value(value: &mut Value) {
    match value {
        Value::Quantity(q) => {
            let mut wrapped = Some(std::mem::take(q));
            respell(&mut wrapped);
            *q = wrapped.unwrap_or_default();
        }
        Value::Range(r) => {
            respell(&mut r.low);
            respell(&mut r.high);
        }
        Value::Ratio(r) => {
            respell(&mut r.numerator);
            respell(&mut r.denominator);
        }
        _ => {}
    }
}

fn respell_ranges(ranges: &mut [ReferenceRange]) {
    for r in ranges {
        respell(&mut r.low);
        respell(&mut r.high);
    }
}

#[tokio::test]
async fn every_line_is_a_strict_r4_observation_equal_to_its_source() {
    let observations = fixture::rich();
    let (result, out) = export(ok_stream(observations.clone())).await;
    assert_eq!(result.unwrap(), observations.len() as u64);
    assert!(out.ends_with("}\n"));
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    // Not tabular: a panel stays one resource with its components.
    assert_eq!(lines.len(), observations.len());
    for (line, source) in lines.iter().zip(&observations) {
        let r4 = strict_r4(line);
        assert_eq!(
            r4.id.as_ref().and_then(|i| i.value.clone()),
            Some(resource_id(source))
        );
        assert_eq!(record(&r4), as_fhir_keeps_it(source.clone()), "{line}");
    }
    let panel = strict_r4(lines[observations.iter().position(|o| o.id == "bp").unwrap()]);
    assert_eq!(panel.component.len(), 3);
}

#[tokio::test]
async fn numbers_and_times_are_written_as_received() {
    let (_, out) = export(ok_stream(fixture::rich())).await;
    let mut written = fixture::quantities_as_json();
    written.extend(
        [
            r#""valueInteger":-3"#,
            r#""effectiveDateTime":"2024-01-01T08:00:00Z""#,
            r#""effectiveDateTime":"2024-02-03T04:05:06.789123+05:30""#,
            r#""effectiveDateTime":"2016-12-13T11:02:30.5+08:00""#,
            r#""effectiveDateTime":"1950""#,
            r#""valueString":"=cmd|' /C calc'!A0""#,
        ]
        .map(String::from),
    );
    for written in written {
        assert!(out.contains(&written), "{written} missing");
    }
}

#[tokio::test]
async fn empty_export_is_empty() {
    let (result, out) = export(ok_stream(Vec::new())).await;
    assert_eq!(result.unwrap(), 0);
    assert_eq!(out, "");
}

#[tokio::test]
async fn error_mid_stream_stops_after_complete_lines() {
    let observations = fixture::rich();
    let (result, out) = export(failing_stream(&observations)).await;
    assert_stream_error(result);
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    assert_eq!(lines.len(), 2);
    assert!(out.ends_with('\n'), "no line is cut");
    assert_eq!(record(&strict_r4(lines[1])).id, observations[1].id);
    assert!(!out.contains(&resource_id(&observations[2])));
}

#[tokio::test]
async fn large_exports_are_written_in_bounded_chunks_and_stay_exact() {
    // Writes stay below the threshold plus one resource.
    let (observations, bytes) =
        fixture::export_in_chunks(&FhirNdjsonExporter, 3_000, FLUSH_THRESHOLD + 2048).await;
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    assert_eq!(lines.len(), observations.len());
    for (line, source) in lines.iter().zip(&observations).step_by(97) {
        assert_eq!(record(&strict_r4(line)), as_fhir_keeps_it(source.clone()));
    }
}

#[test]
fn registers_the_fhir_ndjson_format() {
    fixture::assert_registers(
        medgate_export_fhir_ndjson::register,
        &[("fhir-ndjson", "application/fhir+ndjson", "ndjson")],
    );
}
