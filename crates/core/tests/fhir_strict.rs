//! Every FHIR JSON medgate writes must deserialize strictly into an independent R4 model
//! (fhirbolt), for every value type and for the awkward cases (local times, odd ids).

use std::sync::Arc;

use fhirbolt::element::Element;
use fhirbolt::model::r4::resources::Observation as R4Observation;
use fhirbolt::FhirReleases;
use medgate_core::model::{INTERPRETATION_SYSTEM, LOINC};
use medgate_core::{
    fhir, CodeableConcept, Coding, Comparator, Component, DateTime, Decimal, Effective,
    Observation, Period, Quantity, Range, Ratio, Reference, ReferenceRange, Status, Value, Warning,
};

fn d(t: &str) -> Decimal {
    Decimal::parse(t).unwrap()
}

fn dt(t: &str) -> DateTime {
    DateTime::parse(t).unwrap()
}

/// Strict R4 reading. fhirbolt 0.4's direct typed JSON path cannot read JSON numbers into
/// decimals, so the text goes through its generic element model first (also strict).
fn strict_r4(text: &str) -> Result<R4Observation, String> {
    let element: Element<{ FhirReleases::R4 }> =
        fhirbolt::json::from_str(text, None).map_err(|e| e.to_string())?;
    fhirbolt::element::from_element(element, None).map_err(|e| e.to_string())
}

fn strict(o: &Observation) -> R4Observation {
    let mut out = Vec::new();
    fhir::write_observation(&mut out, o).unwrap();
    let text = String::from_utf8(out).unwrap();
    strict_r4(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// fhirbolt checks structure (unknown or misplaced elements), not primitive grammars: it
/// takes `"value": "x"` as a decimal. Primitive formats are asserted by medgate's own tests.
#[test]
fn the_strict_reader_refuses_what_r4_does_not_define() {
    let ok = r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50}}"#;
    let value = strict_r4(ok).unwrap().value.map(|v| format!("{v:?}"));
    assert!(value.unwrap_or_default().contains("1.50"));
    for bad in [
        r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1,"bogus":2}}"#,
        r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"flavor":"x"}"#,
    ] {
        assert!(strict_r4(bad).is_err(), "{bad}");
    }
}

fn base(id: &str) -> Observation {
    let mut o = Observation::new(Arc::from("P000001"), Arc::from("his"), id);
    o.status = Some(Status::Final);
    o.category = vec![CodeableConcept::category("laboratory")];
    o.code = CodeableConcept::coded(LOINC, "2823-3", Some("Potassium"));
    o.effective = Some(Effective::DateTime(dt("2024-01-01T08:00:00+08:00")));
    o
}

#[test]
fn every_value_type_is_valid_r4() {
    let q = |v: &str, u: &str| Quantity::ucum(d(v), u);
    let values = vec![
        Value::None,
        Value::Quantity(Quantity {
            comparator: Some(Comparator::GreaterOrEqual),
            ..q("1e-22", "mmol/L")
        }),
        Value::CodeableConcept(CodeableConcept::coded(
            "http://snomed.info/sct",
            "260385009",
            Some("Negative"),
        )),
        Value::String("cloudy".into()),
        Value::Boolean(true),
        Value::Integer(-3),
        Value::Range(Range {
            low: Some(q("3.5", "mmol/L")),
            high: None,
        }),
        Value::Ratio(Ratio {
            numerator: Some(q("1", "1")),
            denominator: Some(q("128", "1")),
        }),
        Value::Period(Period {
            start: Some(dt("2024-01-01")),
            end: Some(dt("2024-01-02T10:00:00")),
        }),
        Value::DateTime(dt("2016-12-13T11:02:30")),
        Value::DateTime(
            dt("2016-12-13T11:02:30").assume_zone(&jiff::tz::db().get("Asia/Shanghai").unwrap()),
        ),
        Value::Time("10:30:00".into()),
    ];
    for value in values {
        let mut o = base("v");
        o.value = value.clone();
        if !value.is_some() {
            o.value_unreadable("line 3, column 4", "value is not a number");
        }
        strict(&o);
    }
}

#[test]
fn a_full_panel_with_odd_ids_and_local_times_is_valid_r4() {
    let mut o = base("2.16.840.1.113883.19/obs:1 #x");
    o.patient_id = Arc::from("urn:oid:1.2@x");
    o.effective = Some(Effective::Period(Period {
        start: Some(dt("2016-12-13T11:02:30.000")),
        end: Some(dt("2016")),
    }));
    o.issued = Some(dt("2016-12-13T12:00:00Z"));
    o.code.coding.insert(
        0,
        Coding {
            mapped: true,
            ..Coding::new(LOINC, "85354-9", None)
        },
    );
    o.interpretation = vec![CodeableConcept::coded(
        INTERPRETATION_SYSTEM,
        "H",
        Some("High"),
    )];
    o.reference_range = vec![ReferenceRange {
        low: Some(Quantity::ucum(d("3.5"), "mmol/L")),
        high: Some(Quantity::ucum(d("5.1"), "mmol/L")),
        kind: None,
        text: Some("3.5-5.1".into()),
    }];
    o.components = vec![
        Component {
            code: CodeableConcept::coded(LOINC, "8480-6", None),
            value: Value::Quantity(Quantity::ucum(d("120"), "mm[Hg]")),
            interpretation: vec![CodeableConcept::coded(INTERPRETATION_SYSTEM, "N", None)],
            reference_range: vec![ReferenceRange {
                text: Some("<130".into()),
                ..Default::default()
            }],
            data_absent_reason: None,
        },
        Component {
            code: CodeableConcept::text("diastolic"),
            value: Value::None,
            data_absent_reason: Some(CodeableConcept::data_absent(
                "not-performed",
                "Not Performed",
            )),
            ..Default::default()
        },
    ];
    o.has_member = vec![Reference::to("Observation/1")];
    o.derived_from = vec![Reference::to("Observation/2")];
    o.device = Some(Reference {
        reference: None,
        display: Some("cuff".into()),
    });
    o.warnings = vec![Warning::new("/0/value", "not a number")];
    let r4 = strict(&o);
    assert_eq!(r4.component.len(), 2);
    assert!(r4.id.is_some());
}

#[test]
fn the_internal_json_form_round_trips_losslessly() {
    let mut o = base("rt");
    o.value = Value::Quantity(Quantity {
        comparator: Some(Comparator::Less),
        ..Quantity::ucum(d("1e-400"), "mmol/L")
    });
    o.components = vec![Component {
        code: CodeableConcept::coded(LOINC, "8480-6", None),
        value: Value::Ratio(Ratio {
            numerator: Some(Quantity::ucum(d("1"), "1")),
            denominator: Some(Quantity::ucum(d("128.0"), "1")),
        }),
        ..Default::default()
    }];
    o.effective = Some(Effective::Period(Period {
        start: Some(dt("2016-12-13T11:02:30.000")),
        end: Some(dt("2016-12")),
    }));
    o.code.coding.push(Coding {
        mapped: true,
        ..Coding::new(LOINC, "2345-7", None)
    });
    o.warnings = vec![Warning::new("line 1, column 2", "odd")];
    let json = serde_json::to_string(&o).unwrap();
    let back: Observation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, o);
    assert!(json.contains("1e-400"), "{json}");
}
