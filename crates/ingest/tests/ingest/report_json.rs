//! medgate's report JSON: typed values of a full ePRO report, every validation error path,
//! and the OpenAPI schema kept in step with the reader.

use medgate_core::model::{INTERPRETATION_SYSTEM, LOINC, UCUM};
use medgate_core::{Comparator, DateTime, Effective, Period, Status, Value};
use medgate_ingest::report::{
    CODED_FIELDS, COMPONENT_FIELDS, DATA_ABSENT_REASONS, DEVICE_FIELDS, INTERPRETATIONS,
    ITEM_FIELDS, PERIOD_FIELDS, RANGE_FIELDS, REPORT_FIELDS, VERSIONED_FIELDS,
};
use medgate_ingest::schema::{
    AppJson, CodedValue, ComponentJson, DeviceJson, EffectiveJson, ItemJson, ItemValue, PeriodJson,
    QuestionnaireJson, RangeJson, ReportBody, ReportJson,
};
use medgate_ingest::{IngestError, Report, ReportKind};
use serde_json::json;

use super::*;

const JSON: &str = "application/json";

fn parse(body: &serde_json::Value) -> Result<Vec<Report>, IngestError> {
    medgate_ingest::parse(JSON, body.to_string().as_bytes(), &ctx())
}

/// The `(path, message)` of every issue of an invalid body.
fn issues(body: &serde_json::Value) -> Vec<(String, String)> {
    match parse(body) {
        Err(IngestError::Invalid { issues, .. }) => {
            issues.into_iter().map(|i| (i.path, i.message)).collect()
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn paths(body: &serde_json::Value) -> Vec<String> {
    issues(body).into_iter().map(|(p, _)| p).collect()
}

fn minimal() -> serde_json::Value {
    json!({
        "patient_id": "P1",
        "reported_at": "2026-03-01T08:00:00+08:00",
        "kind": "epro",
        "items": [{"code": "8867-4", "code_system": "http://loinc.org", "display": "Heart rate",
                   "value": 72, "unit": "/min", "effective": "2026-03-01T07:58:00+08:00"}]
    })
}

#[test]
fn the_issue_example_reads_exactly() {
    let reports = parse(&minimal()).unwrap();
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(&*r.patient_id, "P1");
    assert_eq!(r.kind, ReportKind::Epro);
    assert_eq!(r.reported_at.to_string(), "2026-03-01T08:00:00+08:00");
    assert!(!r.serious_adverse_event);
    assert_eq!(r.at, "");
    let o = &r.observations[0];
    assert_eq!(o.id, "rq1-0-0");
    assert_eq!(&*o.patient_id, "P1");
    assert_eq!(&*o.source, "epro");
    assert_eq!(o.code.coding[0].code.as_deref(), Some("8867-4"));
    assert_eq!(o.code.coding[0].system.as_deref(), Some(LOINC));
    assert_eq!(o.code.coding[0].display.as_deref(), Some("Heart rate"));
    assert_eq!(o.category[0].coding[0].code.as_deref(), Some("vital-signs"));
    let Value::Quantity(q) = &o.value else {
        panic!()
    };
    assert_eq!(q.value.as_ref().unwrap().as_str(), "72");
    assert_eq!(
        (q.code.as_deref(), q.system.as_deref()),
        (Some("/min"), Some(UCUM))
    );
    assert_eq!(
        o.effective,
        Some(Effective::DateTime(
            DateTime::parse("2026-03-01T07:58:00+08:00").unwrap()
        ))
    );
    assert_eq!(o.issued, Some(r.reported_at));
    assert_eq!(o.status, None);
}

#[test]
fn a_full_epro_report_with_answers_panels_and_an_sae() {
    // Raw text, not `json!`: the macro would route `1e-2` and `0.70` through f64.
    let body = format!(
        r#"[{}, {}]"#,
        minimal(),
        r#"{
        "report_id": "2f1c9a7e-0b7d",
        "patient_id": "P000002",
        "reported_at": "2026-03-01T20:00:05.250Z",
        "kind": "epro",
        "serious_adverse_event": true,
        "status": "final",
        "app": {"id": "org.example.diary", "version": "3.2.1"},
        "device": {"id": "cuff-42", "model": "Omron HEM-7361T"},
        "questionnaire": {"id": "http://loinc.org/q/44249-1", "version": "2.0"},
        "items": [
            {"code": "85354-9", "code_system": "http://loinc.org", "effective": "2026-03-01T19:58:00+01:00",
             "interpretation": "H", "components": [
                {"code": "8480-6", "code_system": "http://loinc.org", "value": 150.0, "unit": "mm[Hg]"},
                {"code": "8462-4", "code_system": "http://loinc.org", "data_absent_reason": "error"}]},
            {"code": "44250-9", "code_system": "http://loinc.org", "display": "Little interest",
             "value": {"code": "LA6569-3", "system": "http://loinc.org", "display": "Several days"}},
            {"code": "q-free", "code_system": "urn:example:q", "value": "Dizzy after the 2nd dose"},
            {"code": "q-fell", "code_system": "urn:example:q", "value": false, "status": "amended"},
            {"code": "44261-6", "code_system": "http://loinc.org", "value": 14, "unit": "{score}"},
            {"code": "q-skip", "code_system": "urn:example:q", "data_absent_reason": "asked-declined"},
            {"code": "2339-0", "code_system": "http://loinc.org", "value": 1e-2, "unit": "g/L",
             "comparator": "<", "reference_range": {"low": 0.70, "high": 1.10, "text": "0.70-1.10 g/L"},
             "category": "laboratory"},
            {"code": "93832-4", "code_system": "http://loinc.org", "value": 7.50, "unit": "h",
             "effective": {"start": "2026-02-28T23:00:00+01:00", "end": "2026-03-01T06:30:00+01:00"}},
            {"code": "55423-8", "code_system": "http://loinc.org", "value": 10000, "unit": "{steps}",
             "effective": "2026-02-28"}
        ]
    }"#
    );
    let reports = medgate_ingest::parse(JSON, body.as_bytes(), &ctx()).unwrap();
    assert_eq!(reports.len(), 2);
    let r = &reports[1];
    assert_eq!(r.at, "/1");
    assert!(r.serious_adverse_event);
    assert_eq!(r.report_id.as_deref(), Some("2f1c9a7e-0b7d"));
    assert_eq!(r.app.as_ref().unwrap().version.as_deref(), Some("3.2.1"));
    assert_eq!(
        r.device.as_ref().unwrap().model.as_deref(),
        Some("Omron HEM-7361T")
    );
    assert_eq!(
        r.questionnaire.as_ref().unwrap().id,
        "http://loinc.org/q/44249-1"
    );
    assert_eq!(r.reported_at.to_string(), "2026-03-01T20:00:05.250Z");
    let o = &r.observations;
    assert_eq!(o.len(), 9);
    assert_eq!(o[0].id, "rq1-1-0");
    let category = |i: usize| o[i].category.first().and_then(|c| c.coding[0].code.clone());
    // Blood pressure panel: components, digits kept, missing diastolic with a reason.
    assert_eq!(category(0).as_deref(), Some("vital-signs"));
    assert_eq!(o[0].value, Value::None);
    assert_eq!(o[0].status, Some(Status::Final));
    assert_eq!(
        o[0].interpretation[0].coding[0].system.as_deref(),
        Some(INTERPRETATION_SYSTEM)
    );
    let Value::Quantity(sys) = &o[0].components[0].value else {
        panic!()
    };
    assert_eq!(sys.value.as_ref().unwrap().as_str(), "150.0");
    assert_eq!(
        o[0].components[1]
            .data_absent_reason
            .as_ref()
            .unwrap()
            .coding[0]
            .code
            .as_deref(),
        Some("error")
    );
    assert_eq!(
        o[0].device.as_ref().unwrap().reference.as_deref(),
        Some("Device/cuff-42")
    );
    // Answers are surveys.
    assert_eq!(category(1).as_deref(), Some("survey"));
    let Value::CodeableConcept(answer) = &o[1].value else {
        panic!()
    };
    assert_eq!(answer.coding[0].code.as_deref(), Some("LA6569-3"));
    assert_eq!(o[2].value, Value::String("Dizzy after the 2nd dose".into()));
    assert_eq!(o[3].value, Value::Boolean(false));
    assert_eq!(o[3].status, Some(Status::Amended));
    // A numeric score in an ePRO report is a survey answer too.
    assert_eq!(category(4).as_deref(), Some("survey"));
    assert_eq!(
        o[5].data_absent_reason.as_ref().unwrap().coding[0]
            .code
            .as_deref(),
        Some("asked-declined")
    );
    // An explicit category wins; exponent form, comparator and range digits are kept.
    assert_eq!(category(6).as_deref(), Some("laboratory"));
    let Value::Quantity(q) = &o[6].value else {
        panic!()
    };
    assert_eq!(q.value.as_ref().unwrap().as_str(), "1e-2");
    assert_eq!(q.comparator, Some(Comparator::Less));
    let range = &o[6].reference_range[0];
    assert_eq!(
        range.low.as_ref().unwrap().value.as_ref().unwrap().as_str(),
        "0.70"
    );
    assert_eq!(range.high.as_ref().unwrap().code.as_deref(), Some("g/L"));
    // Sleep over a period; steps on a date.
    assert_eq!(category(7).as_deref(), Some("activity"));
    assert_eq!(
        o[7].effective,
        Some(Effective::Period(Period {
            start: Some(DateTime::parse("2026-02-28T23:00:00+01:00").unwrap()),
            end: Some(DateTime::parse("2026-03-01T06:30:00+01:00").unwrap()),
        }))
    );
    assert_eq!(
        o[8].effective.unwrap().start().unwrap().to_string(),
        "2026-02-28"
    );
}

#[test]
fn categories_follow_the_report_kind() {
    let body = |kind: &str, value: serde_json::Value| {
        json!({"patient_id": "P1", "reported_at": "2026-03-01T08:00:00Z", "kind": kind,
               "items": [{"code": "x", "code_system": "urn:example:c", "value": value}]})
    };
    let category = |kind: &str, value: serde_json::Value| {
        parse(&body(kind, value)).unwrap()[0].observations[0]
            .category
            .first()
            .and_then(|c| c.coding[0].code.clone())
    };
    assert_eq!(
        category("lab", json!("positive")).as_deref(),
        Some("laboratory")
    );
    assert_eq!(category("lab", json!(5)).as_deref(), Some("laboratory"));
    assert_eq!(category("device", json!(5)), None);
    assert_eq!(category("clinical", json!(true)).as_deref(), Some("survey"));
    assert_eq!(category("epro", json!(5)).as_deref(), Some("survey"));
}

#[test]
fn every_bad_field_is_listed_with_its_pointer() {
    let body = json!([{
        "patient_id": "P 1",
        "reported_at": "2026-03-01T08:00:00",
        "kind": "diary",
        "serious_adverse_event": "yes",
        "status": "done",
        "app": {"version": "1"},
        "device": {"id": ""},
        "extra": 1,
        "items": [
            {"code": "", "code_system": "loinc", "value": 72, "unit": "bpm"},
            {"code": "x", "code_system": "http://loinc.org", "value": "72", "unit": "/min", "comparator": "<"},
            {"code": "x", "code_system": "http://loinc.org", "value": [1]},
            {"code": "x", "code_system": "http://loinc.org"},
            {"code": "x", "code_system": "http://loinc.org", "value": 1, "data_absent_reason": "error"},
            {"code": "x", "code_system": "http://loinc.org", "data_absent_reason": "lost"},
            {"code": "x", "code_system": "http://loinc.org", "value": 1, "comparator": "~"},
            {"code": "x", "code_system": "http://loinc.org", "value": 1, "effective": "2026-03-01T07:00:00"},
            {"code": "x", "code_system": "http://loinc.org", "value": 1,
             "effective": {"start": "2026-03-02", "end": "2026-03-01"}},
            {"code": "x", "code_system": "http://loinc.org", "value": 1, "interpretation": "high"},
            {"code": "x", "code_system": "http://loinc.org", "value": 1, "category": "vitals"},
            {"code": "x", "code_system": "http://loinc.org", "value": {"code": "a"}},
            {"code": "x", "code_system": "http://loinc.org", "value": 1, "reference_range": {"low": 5, "high": 1}},
            {"code": "x", "code_system": "http://loinc.org", "value": "", "unti": "/min"},
            {"code": "x", "code_system": "http://loinc.org", "components": [{"code": "y", "code_system": "urn:x"}]}
        ]
    }]);
    let found = paths(&body);
    let expected = [
        "/0/extra",
        "/0/patient_id",
        "/0/reported_at",
        "/0/kind",
        "/0/serious_adverse_event",
        "/0/status",
        "/0/app/id",
        "/0/device/id",
        "/0/items/0/code",
        "/0/items/0/code_system",
        "/0/items/0/unit",
        "/0/items/1/unit",
        "/0/items/1/comparator",
        "/0/items/2/value",
        "/0/items/3/value",
        "/0/items/4/data_absent_reason",
        "/0/items/5/data_absent_reason",
        "/0/items/5/value",
        "/0/items/6/comparator",
        "/0/items/7/effective",
        "/0/items/8/effective/end",
        "/0/items/9/interpretation",
        "/0/items/10/category",
        "/0/items/11/value/system",
        "/0/items/12/reference_range/low",
        "/0/items/13/unti",
        "/0/items/13/value",
        "/0/items/14/components/0/value",
    ];
    assert_eq!(found, expected);
    let all = issues(&body);
    let message = |path: &str| &all.iter().find(|(p, _)| p == path).unwrap().1;
    assert_eq!(
        message("/0/reported_at"),
        "the date-time has no UTC offset; add `Z` or `±hh:mm`"
    );
    assert_eq!(message("/0/items/0/unit"), "unit is not UCUM; send `/min`");
    assert!(message("/0/extra").starts_with("unknown field; known fields: report_id, patient_id"));
    assert_eq!(
        message("/0/items/3/value"),
        "is required: send a value, components, or a data_absent_reason"
    );
    // Messages never quote values.
    for (_, m) in &all {
        assert!(
            !m.contains("P 1") && !m.contains("diary") && !m.contains("bpm"),
            "{m}"
        );
    }
}

#[test]
fn duplicate_members_are_refused() {
    let body = br#"{"patient_id": "P1", "patient_id": "P2", "reported_at": "2026-03-01T08:00:00Z",
        "kind": "epro", "items": [{"code": "x", "code_system": "urn:x", "value": 1, "value": 2}]}"#;
    match medgate_ingest::parse(JSON, body, &ctx()) {
        Err(IngestError::Invalid { issues, .. }) => {
            let found: Vec<(&str, &str)> = issues
                .iter()
                .map(|i| (i.path.as_str(), i.message.as_str()))
                .collect();
            assert_eq!(
                found,
                [
                    ("/patient_id", "appears more than once in the object"),
                    ("/items/0/value", "appears more than once in the object"),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn body_shape_errors() {
    assert_eq!(
        issues(&json!(42)),
        [(
            "".to_owned(),
            "expected a report object or an array of reports, found a number".to_owned()
        )]
    );
    assert_eq!(
        issues(&json!([])),
        [("".to_owned(), "the array holds no report".to_owned())]
    );
    assert_eq!(
        paths(&json!([1, {}])),
        [
            "/0",
            "/1/patient_id",
            "/1/reported_at",
            "/1/kind",
            "/1/items"
        ]
    );
    let mut m = minimal();
    m["items"] = json!([]);
    assert_eq!(paths(&m), ["/items"]);
    m["items"] = json!({});
    assert_eq!(paths(&m), ["/items"]);
    // `null` means absent.
    let mut n = minimal();
    n["items"][0]["display"] = json!(null);
    n["serious_adverse_event"] = json!(null);
    assert!(parse(&n).is_ok());
    for bad in [
        "2026-03-01",
        "2026-03-01T08:00+08:00",
        "yesterday",
        "2026-02-30T08:00:00Z",
    ] {
        let mut b = minimal();
        b["reported_at"] = json!(bad);
        assert_eq!(paths(&b), ["/reported_at"], "{bad}");
    }
    for bad in [".", "..", "", "a/b", "é"] {
        let mut b = minimal();
        b["patient_id"] = json!(bad);
        assert_eq!(paths(&b), ["/patient_id"], "{bad:?}");
    }
}

#[test]
fn issues_are_capped_at_a_hundred() {
    let items: Vec<_> = (0..300)
        .map(|_| json!({"code": "", "code_system": "x"}))
        .collect();
    let body = json!({"patient_id": "P1", "reported_at": "2026-03-01T08:00:00Z", "kind": "epro", "items": items});
    match parse(&body) {
        Err(IngestError::Invalid { issues, truncated }) => {
            assert_eq!(issues.len(), 100);
            assert!(truncated > 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn limits_answer_413() {
    let many: Vec<_> = (0..1001).map(|_| minimal()).collect();
    let e = parse(&json!(many)).unwrap_err();
    assert_eq!(e.status(), 413);
    assert_eq!(
        e,
        IngestError::TooLarge {
            what: "reports in one body",
            limit: 1000
        }
    );
    let mut b = minimal();
    b["items"] = json!(vec![b["items"][0].clone(); 501]);
    assert_eq!(parse(&b).unwrap_err().status(), 413);
    let exactly: Vec<_> = (0..1000).map(|_| minimal()).collect();
    assert_eq!(parse(&json!(exactly)).unwrap().len(), 1000);
}

/// Bodies built with the schema types parse, and the schema's Deserialize agrees with the
/// reader on what is a valid body.
#[test]
fn schema_types_build_valid_bodies() {
    let report = ReportJson {
        report_id: Some("r-1".into()),
        patient_id: "P1".into(),
        reported_at: "2026-03-01T08:00:00+08:00".into(),
        kind: ReportKind::Device,
        serious_adverse_event: false,
        status: Some("final".into()),
        app: Some(AppJson {
            id: "app".into(),
            version: None,
        }),
        device: Some(DeviceJson {
            id: "d".into(),
            model: None,
        }),
        questionnaire: Some(QuestionnaireJson {
            id: "q".into(),
            version: Some("1".into()),
        }),
        items: vec![ItemJson {
            code: "29463-7".into(),
            code_system: "http://loinc.org".into(),
            display: None,
            category: None,
            value: Some(ItemValue::Number(
                medgate_core::Decimal::parse("70.40").unwrap(),
            )),
            unit: Some("kg".into()),
            comparator: None,
            data_absent_reason: None,
            effective: Some(EffectiveJson::Period(PeriodJson {
                start: "2026-03-01".into(),
                end: None,
            })),
            status: None,
            interpretation: None,
            reference_range: Some(RangeJson {
                low: None,
                high: None,
                text: Some("n/a".into()),
            }),
            components: vec![ComponentJson {
                code: "c".into(),
                code_system: "urn:x".into(),
                display: None,
                value: Some(ItemValue::Coded(CodedValue {
                    code: "a".into(),
                    system: "urn:y".into(),
                    display: None,
                })),
                unit: None,
                comparator: None,
                data_absent_reason: None,
                interpretation: None,
            }],
        }],
    };
    let text = serde_json::to_string(&ReportBody::Many(vec![report.clone()])).unwrap();
    assert!(text.contains("70.40"), "{text}");
    let reports = medgate_ingest::parse(JSON, text.as_bytes(), &ctx()).unwrap();
    let Value::Quantity(q) = &reports[0].observations[0].value else {
        panic!()
    };
    assert_eq!(q.value.as_ref().unwrap().as_str(), "70.40");
    assert_eq!(
        reports[0].observations[0].category[0].coding[0]
            .code
            .as_deref(),
        Some("vital-signs")
    );
    let back: ReportBody = serde_json::from_str(&text).unwrap();
    assert_eq!(back, ReportBody::Many(vec![report]));
    // The issue's example deserializes into the schema types too.
    let _: ReportBody = serde_json::from_value(minimal()).unwrap();
}

fn properties<T: utoipa::PartialSchema>() -> (Vec<String>, serde_json::Value) {
    let schema = serde_json::to_value(T::schema()).unwrap();
    let mut keys: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    (keys, schema)
}

fn sorted(fields: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The OpenAPI description and the reader cannot drift apart: same fields, unknown fields
/// refused, every accepted code documented.
#[test]
fn the_openapi_schema_matches_the_reader() {
    let checks: [(Vec<String>, serde_json::Value, &[&str]); 8] = [
        {
            let (k, s) = properties::<ReportJson>();
            (k, s, REPORT_FIELDS)
        },
        {
            let (k, s) = properties::<ItemJson>();
            (k, s, ITEM_FIELDS)
        },
        {
            let (k, s) = properties::<ComponentJson>();
            (k, s, COMPONENT_FIELDS)
        },
        {
            let (k, s) = properties::<CodedValue>();
            (k, s, CODED_FIELDS)
        },
        {
            let (k, s) = properties::<AppJson>();
            (k, s, VERSIONED_FIELDS)
        },
        {
            let (k, s) = properties::<DeviceJson>();
            (k, s, DEVICE_FIELDS)
        },
        {
            let (k, s) = properties::<PeriodJson>();
            (k, s, PERIOD_FIELDS)
        },
        {
            let (k, s) = properties::<RangeJson>();
            (k, s, RANGE_FIELDS)
        },
    ];
    for (keys, schema, fields) in checks {
        assert_eq!(keys, sorted(fields));
        assert_eq!(schema["additionalProperties"], json!(false), "{schema}");
    }
    let (_, item) = properties::<ItemJson>();
    let doc = |field: &str| {
        item["properties"][field]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for (code, _) in DATA_ABSENT_REASONS {
        assert!(
            doc("data_absent_reason").contains(&format!("`{code}`")),
            "{code}"
        );
    }
    for (code, _) in INTERPRETATIONS {
        assert!(
            doc("interpretation").contains(&format!("`{code}`")),
            "{code}"
        );
    }
    for kind in ["epro", "device", "lab", "clinical"] {
        let s = serde_json::to_string(&<ReportKind as utoipa::PartialSchema>::schema()).unwrap();
        assert!(s.contains(&format!("\"{kind}\"")), "{kind}: {s}");
        assert_eq!(ReportKind::parse(kind).unwrap().as_str(), kind);
    }
}
