//! Fitbit Web API responses (shimmer's fixtures) read with `format = "mapping"` configs.

mod common;

use common::{fixture, summary};
use medgate_core::{Observation, Value};
use medgate_source_wearable::{parse, Mapping, ParseContext, PayloadFormat, WearableConfig};

fn mapping(toml_text: &str) -> Mapping {
    let cfg: WearableConfig = toml::from_str(toml_text).unwrap();
    cfg.mapping.unwrap()
}

fn run(m: &Mapping, file: &str) -> Vec<Observation> {
    let body = fixture(&format!("fitbit/{file}"));
    parse(
        &PayloadFormat::Mapping(Box::new(m.clone())),
        body.as_bytes(),
        &ParseContext::new("fitbit", "P7"),
    )
    .unwrap()
}

const WEIGHT: &str = r#"
url = "http://127.0.0.1:9102/fitbit/{patient_id}"
format = "mapping"
[mapping]
records = "/weight"
[mapping.fields]
id = "/logId"
value = "/weight"
effective = "/date"
effective_time = "/time"
[mapping.constants]
code_system = "http://loinc.org"
code = "29463-7"
display = "Body weight"
unit = "kg"
category = "vital-signs"
"#;

#[test]
fn body_weight_log() {
    let rows = run(&mapping(WEIGHT), "fitbit-body-log-weight.json");
    let t = |c: &str, v: &str, u: &str, e: &str| {
        (c.to_owned(), v.to_owned(), u.to_owned(), e.to_owned())
    };
    assert_eq!(
        summary(&rows),
        vec![
            t("29463-7", "56.7", "kg", "2015-05-13T18:28:59"),
            t("29463-7", "55.9", "kg", "2015-05-14T11:51:57"),
            t("29463-7", "58.1", "kg", "2015-05-22T18:12:06"),
            t("29463-7", "57.2", "kg", "2015-05-24T15:15:25"),
        ]
    );
    let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "1431541739000",
            "1431604317000",
            "1432318326000",
            "1432480525000"
        ]
    );
    let r = &rows[0];
    assert_eq!(
        (
            r.patient_id.as_str(),
            r.source.as_str(),
            r.category.as_deref(),
            r.display.as_deref()
        ),
        ("P7", "fitbit", Some("vital-signs"), Some("Body weight"))
    );
    assert_eq!(r.code_system.as_deref(), Some("http://loinc.org"));
}

#[test]
fn body_mass_index_from_the_same_log() {
    let m = mapping(
        r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = "/weight"
fields = { id = "/logId", value = "/bmi", effective = "/date" }
constants = { code = "39156-5", unit = "kg/m2" }
"#,
    );
    let rows = run(&m, "fitbit-body-log-weight.json");
    let bmi: Vec<_> = rows
        .iter()
        .map(|r| r.value.as_text().into_owned())
        .collect();
    assert_eq!(bmi, ["21.48", "21.17", "21.99", "21.65"]);
    assert_eq!(rows[3].effective.as_deref(), Some("2015-05-24"));
}

#[test]
fn daily_heart_rate_string_numbers_become_numbers() {
    let m = mapping(
        r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = "/activities-heart"
fields = { value = "/value", effective = "/dateTime" }
constants = { code_system = "http://loinc.org", code = "8867-4", unit = "/min" }
"#,
    );
    let rows = run(&m, "fitbit-activities-heart-1d-1m-intraday.json");
    assert_eq!(rows.len(), 1);
    assert!(matches!(&rows[0].value, Value::Number(d) if d.as_str() == "64.2"));
    assert_eq!(rows[0].effective.as_deref(), Some("2015-08-21"));
    // No id pointer: the record's own pointer.
    assert_eq!(rows[0].id, "/activities-heart/0");
}

#[test]
fn intraday_heart_rate_dataset() {
    let m = mapping(
        r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = "/activities-heart-intraday/dataset"
fields = { value = "/value", id = "/time" }
constants = { code = "8867-4", unit = "/min" }
"#,
    );
    let rows = run(&m, "fitbit-activities-heart-1d-1m-intraday.json");
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.id.as_str(), r.value.as_text().into_owned()))
        .collect();
    assert_eq!(
        got,
        [
            ("00:01:00", "64".to_owned()),
            ("00:02:00", "63".to_owned()),
            ("00:03:00", "64".to_owned()),
            ("00:04:00", "65".to_owned()),
            ("00:05:00", "65".to_owned()),
        ]
    );
    assert!(rows.iter().all(|r| r.effective.is_none()));
}

#[test]
fn step_timeseries() {
    let m = mapping(
        r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = "/activities-steps"
fields = { value = "/value", effective = "/dateTime", id = "/dateTime" }
constants = { code = "55423-8", unit = "{steps}", category = "activity" }
"#,
    );
    let rows = run(&m, "fitbit-activities-steps-timeseries.json");
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.effective.clone().unwrap(), r.value.as_text().into_owned()))
        .collect();
    assert_eq!(
        got,
        [
            ("2015-08-23".to_owned(), "175".to_owned()),
            ("2015-08-24".to_owned(), "2937".to_owned()),
            ("2015-08-25".to_owned(), "0".to_owned()),
        ]
    );
}

#[test]
fn sleep_records_and_empty_lists() {
    let m = mapping(
        r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = "/sleep"
fields = { value = "/duration", effective = "/startTime", id = "/logId" }
constants = { code_system = "urn:omh:schema", code = "sleep-duration", unit = "ms" }
"#,
    );
    let rows = run(&m, "fitbit-sleep-date.json");
    assert_eq!(rows.len(), 2);
    let body: serde_json::Value =
        serde_json::from_str(&fixture("fitbit/fitbit-sleep-date.json")).unwrap();
    for (row, rec) in rows.iter().zip(body["sleep"].as_array().unwrap()) {
        assert_eq!(row.value.as_text(), rec["duration"].to_string());
        assert_eq!(row.effective.as_deref(), rec["startTime"].as_str());
    }
    assert!(run(&m, "fitbit-sleep-date-empty-sleep-list.json").is_empty());
    assert!(run(&m, "fitbit-sleep-date-range-empty-sleep-list.json").is_empty());
}

#[test]
fn activities_with_names_as_text() {
    let m = mapping(
        r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = "/activities"
fields = { value = "/steps", display = "/name", id = "/logId", effective = "/startDate", effective_time = "/startTime" }
constants = { code = "55423-8", unit = "{steps}" }
"#,
    );
    let body: serde_json::Value = serde_json::from_str(&fixture(
        "fitbit/fitbit-activities-date-multiple-in-activities-list.json",
    ))
    .unwrap();
    let rows = run(
        &m,
        "fitbit-activities-date-multiple-in-activities-list.json",
    );
    let acts = body["activities"].as_array().unwrap();
    assert_eq!(rows.len(), acts.len());
    for (row, a) in rows.iter().zip(acts) {
        assert_eq!(row.display.as_deref(), a["name"].as_str());
        assert_eq!(row.id, a["logId"].to_string());
        assert_eq!(
            row.effective.as_deref().unwrap(),
            format!(
                "{}T{}",
                a["startDate"].as_str().unwrap(),
                a["startTime"].as_str().unwrap()
            )
        );
    }
    assert!(run(&m, "fitbit-activities-date-empty-activities-list.json").is_empty());
}

#[test]
fn mapping_shape_errors_name_pointers() {
    let m = mapping(WEIGHT);
    let err = |body: &str| {
        parse(
            &PayloadFormat::Mapping(Box::new(m.clone())),
            body.as_bytes(),
            &ParseContext::new("f", "P"),
        )
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        err(r#"{"sleep":[]}"#),
        "/weight: records pointer finds nothing"
    );
    assert_eq!(
        err(r#"{"weight":{"a":1}}"#),
        "/weight: expected an array, found an object"
    );
    assert_eq!(
        err(r#"{"weight":[{"weight":1},{"weight":[2]}]}"#),
        "/weight/1/weight: expected a number, string or boolean, found an array"
    );
    assert_eq!(
        err(r#"{"weight":[{"weight":1,"logId":{"x":1}}]}"#),
        "/weight/0/logId: expected a string or number, found an object"
    );
    // A record without the value is a Null row, not an error.
    let rows = parse(
        &PayloadFormat::Mapping(Box::new(m.clone())),
        br#"{"weight":[{"logId":5}]}"#,
        &ParseContext::new("f", "P"),
    )
    .unwrap();
    assert_eq!((rows[0].id.as_str(), &rows[0].value), ("5", &Value::Null));
}

#[test]
fn root_array_records() {
    let m = mapping(
        r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = ""
fields = { value = "/v", code = "/c" }
constants = { code = "fallback" }
"#,
    );
    let rows = parse(
        &PayloadFormat::Mapping(Box::new(m)),
        br#"[{"v":98.60,"c":"x"},{"v":"text"},{"v":true}]"#,
        &ParseContext::new("f", "P"),
    )
    .unwrap();
    assert_eq!(rows[0].value.as_text(), "98.60");
    assert_eq!(rows[0].code.as_deref(), Some("x"));
    assert_eq!(rows[1].value, Value::Text("text".into()));
    assert_eq!(rows[1].code.as_deref(), Some("fallback"));
    assert_eq!(rows[2].value, Value::Bool(true));
    assert_eq!(rows[1].id, "/1");
}
