//! FHIR R4 JSON: the reader on real published resources and Bundles (typed values), the
//! refusals, and the round trip core writer → this reader → the same record.

use std::sync::Arc;

use medgate_core::model::{INTERPRETATION_SYSTEM, LOINC, UCUM};
use medgate_core::{
    fhir as core_fhir, CodeableConcept, Coding, Comparator, Component, DateTime, Decimal,
    Effective, Observation, Period, Quantity, Range, Ratio, Reference, ReferenceRange, Status,
    Value, Warning,
};
use medgate_ingest::fhir::{self, Subject};
use medgate_ingest::{IngestError, Report, ReportKind};

use super::*;

const FHIR: &str = "application/fhir+json";

fn reports(path: &str) -> Vec<Report> {
    medgate_ingest::parse(FHIR, &fixture(&format!("fhir-json/{path}")), &ctx())
        .unwrap_or_else(|e| panic!("{path}: {e} {:?}", e.issues()))
}

fn read(path: &str) -> fhir::Read {
    fhir::observation_from_slice(&fixture(&format!("fhir-json/{path}")), "epro")
        .unwrap_or_else(|e| panic!("{path}: {e} {:?}", e.issues()))
}

fn issue_paths(body: &[u8]) -> Vec<String> {
    match medgate_ingest::parse(FHIR, body, &ctx()) {
        Err(IngestError::Invalid { issues, .. }) => issues.into_iter().map(|i| i.path).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn d(t: &str) -> Decimal {
    Decimal::parse(t).unwrap()
}

fn dt(t: &str) -> DateTime {
    DateTime::parse(t).unwrap()
}

#[test]
fn glucose_f001_every_field() {
    let r = reports("r4-core-examples/Observation-f001.json");
    assert_eq!(r.len(), 1);
    assert_eq!(&*r[0].patient_id, "f001");
    assert_eq!(r[0].report_id.as_deref(), Some("f001"));
    assert_eq!(r[0].reported_at, ctx().received_at);
    let o = &r[0].observations[0];
    assert_eq!(o.id, "f001");
    assert_eq!(o.status, Some(Status::Final));
    assert_eq!(o.code.coding[0].code.as_deref(), Some("15074-8"));
    assert_eq!(
        o.effective,
        Some(Effective::Period(Period {
            start: Some(dt("2013-04-02T09:30:10+01:00")),
            end: None
        }))
    );
    assert_eq!(o.issued, Some(dt("2013-04-03T15:30:10+01:00")));
    assert_eq!(
        o.value,
        Value::Quantity(Quantity {
            value: Some(d("6.3")),
            comparator: None,
            unit: Some("mmol/l".into()),
            system: Some(UCUM.into()),
            code: Some("mmol/L".into()),
        })
    );
    assert_eq!(
        o.interpretation[0].coding[0].system.as_deref(),
        Some(INTERPRETATION_SYSTEM)
    );
    assert_eq!(
        o.reference_range[0].low.as_ref().unwrap().value,
        Some(d("3.1"))
    );
    assert_eq!(
        o.reference_range[0].high.as_ref().unwrap().value,
        Some(d("6.2"))
    );
}

#[test]
fn components_comparators_and_absent_values() {
    let f205 = &reports("r4-core-examples/Observation-f205.json")[0].observations[0];
    assert_eq!(f205.value, Value::None);
    assert_eq!(f205.effective, None);
    let Value::Quantity(q) = &f205.components[0].value else {
        panic!()
    };
    assert_eq!(q.comparator, Some(Comparator::Greater));
    assert_eq!(q.code.as_deref(), Some("mL/min/{1.73_m2}"));
    assert_eq!(
        f205.components[0].reference_range[0]
            .low
            .as_ref()
            .unwrap()
            .value,
        Some(d("60"))
    );

    let unsat = &reports("r4-core-examples/Observation-unsat.json")[0].observations[0];
    assert_eq!(unsat.status, Some(Status::Cancelled));
    assert_eq!(unsat.value, Value::None);
    let reason = unsat.data_absent_reason.as_ref().unwrap();
    assert_eq!(
        reason.coding[0].system.as_deref(),
        Some("http://snomed.info/sct")
    );
    assert_eq!(reason.coding[0].code.as_deref(), Some("125154007"));
    assert_eq!(
        unsat.effective.unwrap().end(),
        Some(&dt("2013-04-05T09:30:10+01:00"))
    );

    let cancel =
        &reports("r4-core-examples/Observation-blood-pressure-cancel.json")[0].observations[0];
    assert_eq!(cancel.components.len(), 2);
    for c in &cancel.components {
        assert_eq!(c.value, Value::None);
        assert_eq!(
            c.data_absent_reason.as_ref().unwrap().coding[0]
                .code
                .as_deref(),
            Some("not-asked")
        );
    }
    assert_eq!(cancel.components[0].code.coding.len(), 3);

    let nan = &reports("phd/numeric-observation-not-a-number.json")[0].observations[0];
    assert_eq!(
        nan.data_absent_reason.as_ref().unwrap().coding[0]
            .code
            .as_deref(),
        Some("not-a-number")
    );

    // US Core R4 build: a UCUM system without a code is kept as sent.
    let k = &reports("uscore-r4-ig-build/Observation-serum-potassium.json")[0].observations[0];
    let Value::Quantity(q) = &k.value else {
        panic!()
    };
    assert_eq!(
        (q.value.as_ref().unwrap().as_str(), q.code.as_deref()),
        ("5.4", None)
    );
}

#[test]
fn decimals_keep_every_written_digit() {
    let o = read("r4-examples/observation-decimal.json").observation;
    let digits: Vec<String> = o
        .components
        .iter()
        .map(|c| match &c.value {
            Value::Quantity(q) => q.value.as_ref().unwrap().as_str().to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        digits,
        [
            "1.0",
            "1.00",
            "1.0",
            "1E-22",
            "1000000000000000000",
            "1.000000000000000000E-245",
            "-1.000000000000000000E+245"
        ]
    );
}

#[test]
fn a_collection_with_panels_keeps_them_linked() {
    let r = reports("r4-core-examples/Bundle-micro.json");
    assert_eq!(r.len(), 1);
    assert_eq!(&*r[0].patient_id, "example");
    assert_eq!(r[0].report_id.as_deref(), Some("micro"));
    assert_eq!(r[0].at, "/entry/1");
    let o = &r[0].observations;
    assert_eq!(o.len(), 25);
    let comparators = o
        .iter()
        .filter(|o| matches!(&o.value, Value::Quantity(q) if q.comparator.is_some()))
        .count();
    assert_eq!(comparators, 13);
    let obx2_2 = o.iter().find(|o| o.id == "obx2-2").unwrap();
    let Value::Quantity(q) = &obx2_2.value else {
        panic!()
    };
    assert_eq!(
        (q.value.as_ref().unwrap().as_str(), q.comparator),
        ("2", Some(Comparator::LessOrEqual))
    );
    assert_eq!(q.unit, None);
    // `hasMember` now names the ids medgate serves the members under.
    let panel = o.iter().find(|o| o.id == "obr-2").unwrap();
    assert_eq!(
        panel.has_member[0].reference.as_deref(),
        Some("Observation/epro.obx2-1")
    );
    // No Observation of this Bundle has a category: the kind falls back to `clinical`.
    assert_eq!(r[0].kind, ReportKind::Clinical);
}

#[test]
fn a_device_transaction_without_ids() {
    let r = reports("phd/bundle-continuousnonin.json");
    assert_eq!(r.len(), 1);
    assert_eq!(&*r[0].patient_id, "patientExample-1");
    let o = &r[0].observations;
    assert_eq!(o.len(), 47);
    // No ids in the Bundle: medgate's own, numbered in the report.
    assert_eq!(o[0].id, "rq1-0-0");
    assert_eq!(o[46].id, "rq1-0-46");
    let Value::Quantity(q) = &o[0].value else {
        panic!()
    };
    assert_eq!(q.value.as_ref().unwrap().as_str(), "100");
    let kept: Vec<&str> = o
        .iter()
        .filter_map(|o| match &o.value {
            Value::Quantity(q) => q.value.as_ref().map(|v| v.as_str()),
            _ => None,
        })
        .collect();
    assert!(kept.contains(&"99.0"), "{kept:?}");
    let last = &o[46];
    assert_eq!(
        last.data_absent_reason.as_ref().unwrap().coding[0]
            .code
            .as_deref(),
        Some("not-a-number")
    );
    assert!(o.iter().any(|o| o
        .components
        .iter()
        .any(|c| matches!(c.value, Value::Boolean(_)))));
}

#[test]
fn other_real_bundles_and_resources() {
    let cgm = reports("cgm/bnd-slicing-cgm.json");
    assert_eq!(cgm[0].observations.len(), 8);
    assert_eq!(cgm[0].reported_at.to_string(), "2024-05-02T14:30:00Z");
    let lri = reports("r4-core-examples/Bundle-lri-example.json");
    assert_eq!(lri[0].observations.len(), 16);
    let gram = lri[0]
        .observations
        .iter()
        .find(|o| o.value == Value::None && o.components.len() == 2)
        .expect("a gram stain with two coded components");
    assert!(matches!(
        gram.components[0].value,
        Value::CodeableConcept(_)
    ));
    let covid = &reports("us-core/at-home-in-vitro-test.json")[0].observations[0];
    let Value::CodeableConcept(c) = &covid.value else {
        panic!()
    };
    assert_eq!(c.coding[0].code.as_deref(), Some("260373001"));
    let map = &reports("r4-core-examples/Observation-map-sitting.json")[0].observations[0];
    assert_eq!(
        map.interpretation[0].coding[0].system.as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/v2-0078")
    );
    // A logical subject by identifier names the patient by its value.
    let temp = reports("validator-cases/obs-temp-bad.json");
    assert_eq!(&*temp[0].patient_id, "19930514-2383");
    assert_eq!(
        temp[0].observations[0]
            .effective
            .unwrap()
            .start()
            .unwrap()
            .to_string(),
        "2020-06-30T09:50:55.300Z"
    );
    for path in [
        "r4-examples/observation-example.json",
        "us-core/blood-pressure.json",
        "us-core/heart-rate.json",
        "us-core/observation-serum-potassium.json",
        "r4-core-examples/Observation-f205.json",
    ] {
        let r = reports(path);
        assert_eq!(r.len(), 1, "{path}");
        assert!(!r[0].observations[0].code.is_empty(), "{path}");
    }
}

#[test]
fn refusals_name_the_field() {
    let paths = |p: &str| issue_paths(&fixture(&format!("fhir-json/{p}")));
    // Contained patient (`#newborn`): not a study patient id.
    assert_eq!(
        paths("r4-core-examples/Observation-10minute-apgar-score.json"),
        ["/subject"]
    );
    assert_eq!(
        paths("validator-cases/PulseOxBundle_25Oct2022.json"),
        ["/type"]
    );
    assert_eq!(paths("r4-misc/bundle-with-no-type.json"), ["/type"]);
    assert_eq!(paths("validator-cases/bundle-transaction.json"), ["/entry"]);
    assert_eq!(
        paths("validator-cases/bb-obs-value-is-not-quantity.json"),
        ["/subject"]
    );
    for p in [
        "validator-cases/json-comments-1.json",
        "validator-cases/observation-with-trailing-dot.json",
        "validator-cases/bad-json-close-1.json",
    ] {
        let e =
            medgate_ingest::parse(FHIR, &fixture(&format!("fhir-json/{p}")), &ctx()).unwrap_err();
        assert!(matches!(e, IngestError::Malformed { .. }), "{p}: {e:?}");
        assert_eq!(e.status(), 400);
    }
}

#[test]
fn subjects_and_entries() {
    let obs = |subject: &str| {
        format!(
            r#"{{"fullUrl": "urn:uuid:o1", "request": {{"method": "POST", "url": "Observation"}},
                "resource": {{"resourceType": "Observation", "status": "final", "code": {{"text": "x"}},
                "subject": {subject}, "valueInteger": 3}}}}"#
        )
    };
    let bundle = |entries: &[String]| {
        format!(
            r#"{{"resourceType": "Bundle", "type": "transaction", "timestamp": "2026-03-01T08:00:00+08:00", "entry": [{}]}}"#,
            entries.join(",")
        )
    };
    let patient = r#"{"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "S-001"}, "request": {"method": "PUT", "url": "Patient/S-001"}}"#.to_owned();
    let ok = medgate_ingest::parse(
        FHIR,
        bundle(&[
            patient.clone(),
            obs(r#"{"reference": "urn:uuid:p1"}"#),
            obs(r#"{"reference": "https://x.org/fhir/Patient/S-002/_history/3"}"#),
        ])
        .as_bytes(),
        &ctx(),
    )
    .unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!((&*ok[0].patient_id, &*ok[1].patient_id), ("S-001", "S-002"));
    assert_eq!(ok[0].reported_at.to_string(), "2026-03-01T08:00:00+08:00");
    assert_eq!(ok[0].observations[0].value, Value::Integer(3));
    assert_eq!(ok[1].observations[0].id, "rq1-1-0");
    assert_eq!(ok[0].at, "/entry/1");
    let nameless =
        r#"{"fullUrl": "urn:uuid:p2", "resource": {"resourceType": "Patient"}}"#.to_owned();
    let bad = bundle(&[
        nameless,
        obs(r#"{"reference": "urn:uuid:p2"}"#),
        obs(r#"{"reference": "Group/1"}"#),
        obs(r#"{"reference": "Patient/a b"}"#),
        obs(r#"{"display": "nobody"}"#),
        r#"{"request": {"method": "DELETE", "url": "Observation/1"}}"#.to_owned(),
        obs(r#"{"reference": "Patient/1"}"#).replace("POST", "GET"),
    ]);
    assert_eq!(
        issue_paths(bad.as_bytes()),
        [
            "/entry/5/resource",
            "/entry/6/request/method",
            "/entry/1/resource/subject",
            "/entry/2/resource/subject",
            "/entry/3/resource/subject",
            "/entry/4/resource/subject",
        ]
    );
}

#[test]
fn r4_departures_are_issues_with_pointers() {
    let body = br#"{"resourceType": "Observation", "status": "done", "flavor": "x",
        "modifierExtension": [{"url": "urn:x", "valueBoolean": true}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "1-8", "bogus": 1}]},
        "subject": {"reference": "Patient/P1"},
        "effectiveDateTime": "2026-03-01T08:00:00", "effectivePeriod": {"start": "2026-03-01"},
        "valueQuantity": {"value": "5.40", "code": "mg"}, "valueString": "x",
        "component": [{"code": {"text": "c"}, "valueInteger": 3000000000}],
        "referenceRange": [{}], "category": []}"#;
    let mut found = issue_paths(body);
    found.sort();
    let mut expected = vec![
        "/flavor",
        "/modifierExtension",
        "/status",
        "/code/coding/0/bogus",
        "/effectivePeriod",
        "/valueString",
        "/valueQuantity/value",
        "/valueQuantity/system",
        "/component/0/valueInteger",
        "/referenceRange/0",
        "/category",
    ];
    expected.sort();
    assert_eq!(found, expected);
    // The same resource read leniently still yields a record: the string-written decimal is
    // kept, the out-of-range integer becomes "no value" with a warning at its pointer.
    let root = medgate_ingest::json::parse_body(body, "FHIR JSON").unwrap();
    let mut issues = medgate_ingest::Issues::default();
    let read = fhir::read_observation(
        medgate_ingest::json::Node::new(root),
        "",
        &Arc::from("epro"),
        &mut issues,
    )
    .unwrap();
    let o = read.observation;
    assert!(matches!(&o.value, Value::Quantity(q) if q.value.as_ref().unwrap().as_str() == "5.40"));
    assert_eq!(o.components[0].value, Value::None);
    assert_eq!(
        o.components[0].data_absent_reason.as_ref().unwrap().coding[0]
            .code
            .as_deref(),
        Some("error")
    );
    assert_eq!(o.warnings[0].at, "/component/0/valueInteger");
    assert_eq!(read.subject, Some(Subject::Reference("Patient/P1".into())));
}

// ---- round trip: core's FHIR writer → this reader → equal record ----

fn record(id: &str) -> Observation {
    let mut o = Observation::new(Arc::from("P000001"), Arc::from("epro"), id);
    o.status = Some(Status::Final);
    o.category = vec![CodeableConcept::category("laboratory")];
    o.code = CodeableConcept::coded(LOINC, "2823-3", Some("Potassium"));
    o.effective = Some(Effective::DateTime(dt("2024-01-01T08:00:00+08:00")));
    o
}

fn round_trip(o: &Observation) {
    let mut out = Vec::new();
    core_fhir::write_observation(&mut out, o).unwrap();
    let read = fhir::observation_from_slice(&out, &o.source)
        .unwrap_or_else(|e| panic!("{e} {:?}\n{}", e.issues(), String::from_utf8_lossy(&out)));
    let mut back = read.observation;
    let patient = match &read.subject {
        Some(s) => s.patient_id().unwrap().to_owned(),
        None => panic!("no subject"),
    };
    back.patient_id = Arc::from(patient);
    assert_eq!(&back, o, "{}", String::from_utf8_lossy(&out));
}

#[test]
fn every_value_type_survives_writer_then_reader() {
    let q = |v: &str, u: &str| Quantity::ucum(d(v), u);
    let values = vec![
        Value::Quantity(Quantity {
            comparator: Some(Comparator::GreaterOrEqual),
            ..q("1e-22", "mmol/L")
        }),
        Value::Quantity(Quantity {
            value: Some(d("98.60")),
            unit: Some("beats/minute".into()),
            system: Some(UCUM.into()),
            code: Some("/min".into()),
            comparator: None,
        }),
        Value::CodeableConcept(CodeableConcept {
            coding: vec![Coding::new(
                "http://snomed.info/sct",
                "260385009",
                Some("Negative"),
            )],
            text: Some("neg".into()),
        }),
        Value::String("cloudy\nyellow".into()),
        Value::Boolean(false),
        Value::Integer(-3),
        Value::Range(Range {
            low: Some(q("3.5", "mmol/L")),
            high: Some(q("5.10", "mmol/L")),
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
        Value::DateTime(dt("2016-12")),
        Value::Time("10:30:00".into()),
    ];
    for value in values {
        let mut o = record("v");
        o.value = value;
        round_trip(&o);
    }
}

#[test]
fn a_full_panel_survives_writer_then_reader() {
    let mut o = record("2.16.840.1.113883.19/obs:1 #x");
    o.patient_id = Arc::from("urn:oid:1.2@x");
    o.effective = Some(Effective::Period(Period {
        start: Some(dt("2016-12-13T11:02:30.000")),
        end: Some(dt("2016")),
    }));
    o.issued = Some(dt("2016-12-13T12:00:00Z"));
    o.interpretation = vec![CodeableConcept::coded(
        INTERPRETATION_SYSTEM,
        "H",
        Some("High"),
    )];
    o.reference_range = vec![ReferenceRange {
        low: Some(Quantity::ucum(d("3.5"), "mmol/L")),
        high: Some(Quantity::ucum(d("5.1"), "mmol/L")),
        kind: Some(CodeableConcept::coded(
            "http://terminology.hl7.org/CodeSystem/referencerange-meaning",
            "normal",
            None,
        )),
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
    o.derived_from = vec![Reference {
        reference: Some("Observation/2".into()),
        display: Some("source".into()),
    }];
    o.device = Some(Reference {
        reference: None,
        display: Some("cuff".into()),
    });
    o.warnings = vec![Warning::new("/0/value", "not a number")];
    o.value_unreadable("/0/value", "not a number");
    o.warnings.truncate(1);
    round_trip(&o);
}
