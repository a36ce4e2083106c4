//! `format = "mapping"`: Fitbit Web API responses (shimmer's fixtures) and a lab-style JSON
//! written for medgate, read through configs, asserted as typed observations.

mod common;

use common::{fixture, qty, summary};
use medgate_core::row::col;
use medgate_core::{rows, Comparator, Effective, Observation, Status, Value};
use medgate_source_wearable::{parse, Mapping, ParseContext, PayloadFormat, WearableConfig};

fn mapping(toml_text: &str) -> Mapping {
    let text = format!("url = \"http://h/{{patient_id}}\"\nformat = \"mapping\"\n{toml_text}");
    let cfg: WearableConfig = toml::from_str(&text).unwrap();
    let issues = medgate_core::SourceConfig::validate(&cfg);
    assert!(issues.is_empty(), "{issues:?}");
    cfg.mapping.unwrap()
}

fn read(m: &Mapping, body: &str) -> Vec<Observation> {
    parse(
        &PayloadFormat::Mapping(Box::new(m.clone())),
        body.as_bytes(),
        &ParseContext::new("fitbit", "P7"),
    )
    .unwrap()
}

fn run(m: &Mapping, file: &str) -> Vec<Observation> {
    read(m, &fixture(&format!("fitbit/{file}")))
}

/// Every observation of `file` read with `m`, as summaries.
fn check(m: &Mapping, file: &str, want: &[&str]) {
    let got: Vec<String> = run(m, file).iter().map(summary).collect();
    assert_eq!(got, want, "{file}");
}

/// The pre-port config of the body-weight log: every key keeps working.
const WEIGHT: &str = r#"
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
    let m = mapping(WEIGHT);
    check(
        &m,
        "fitbit-body-log-weight.json",
        &[
            "vital-signs 29463-7 56.7 kg @2015-05-13T18:28:59",
            "vital-signs 29463-7 55.9 kg @2015-05-14T11:51:57",
            "vital-signs 29463-7 58.1 kg @2015-05-22T18:12:06",
            "vital-signs 29463-7 57.2 kg @2015-05-24T15:15:25",
        ],
    );
    let all = run(&m, "fitbit-body-log-weight.json");
    let ids: Vec<_> = all.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "1431541739000",
            "1431604317000",
            "1432318326000",
            "1432480525000"
        ]
    );
    let o = &all[0];
    assert_eq!((&*o.patient_id, &*o.source), ("P7", "fitbit"));
    assert_eq!(o.code.display(), Some("Body weight"));
    // Fitbit has no zone: the time stays local for the pipeline's configured zone.
    let Some(Effective::DateTime(at)) = o.effective else {
        panic!()
    };
    assert!(at.is_local());
    let row = rows(o).next().unwrap();
    assert_eq!(row.get(col::EFFECTIVE_ZONE).as_text(), "local");
    assert_eq!(row.get(col::UNIT).as_text(), "kg");
    assert_eq!(o.status, None);
}

#[test]
fn body_mass_index_from_the_same_log() {
    let m = mapping(
        r#"
[mapping]
records = "/weight"
fields = { id = "/logId", value = "/bmi", effective = "/date" }
constants = { code = "39156-5", unit = "kg/m2" }
"#,
    );
    check(
        &m,
        "fitbit-body-log-weight.json",
        &[
            "- |39156-5 21.48 kg/m2 @2015-05-13",
            "- |39156-5 21.17 kg/m2 @2015-05-14",
            "- |39156-5 21.99 kg/m2 @2015-05-22",
            "- |39156-5 21.65 kg/m2 @2015-05-24",
        ],
    );
}

#[test]
fn heart_rate_numbers_sent_as_strings_are_numbers() {
    let m = mapping(
        r#"
[mapping]
records = "/activities-heart"
fields = { value = "/value", effective = "/dateTime" }
constants = { code_system = "http://loinc.org", code = "8867-4", unit = "/min", category = "vital-signs" }
"#,
    );
    check(
        &m,
        "fitbit-activities-heart-1d-1m-intraday.json",
        &["vital-signs 8867-4 64.2 /min @2015-08-21"],
    );
    // No id pointer: the record's own pointer.
    assert_eq!(
        run(&m, "fitbit-activities-heart-1d-1m-intraday.json")[0].id,
        "/activities-heart/0"
    );
}

#[test]
fn intraday_heart_rate_dataset() {
    let m = mapping(
        r#"
[mapping]
records = "/activities-heart-intraday/dataset"
fields = { value = "/value", id = "/time" }
constants = { code_system = "http://loinc.org", code = "8867-4", unit = "beats/min" }
"#,
    );
    let all = run(&m, "fitbit-activities-heart-1d-1m-intraday.json");
    let got: Vec<_> = all.iter().map(|o| (o.id.as_str(), summary(o))).collect();
    assert_eq!(
        got,
        [
            ("00:01:00", "- 8867-4 64 /min".to_owned()),
            ("00:02:00", "- 8867-4 63 /min".to_owned()),
            ("00:03:00", "- 8867-4 64 /min".to_owned()),
            ("00:04:00", "- 8867-4 65 /min".to_owned()),
            ("00:05:00", "- 8867-4 65 /min".to_owned()),
        ]
    );
    // The display unit is as configured, the code UCUM.
    assert_eq!(qty(&all[0]).unit.as_deref(), Some("beats/min"));
}

#[test]
fn step_timeseries_and_intraday() {
    let m = mapping(
        r#"
[mapping]
records = "/activities-steps"
fields = { value = "/value", effective = "/dateTime", id = "/dateTime" }
constants = { code_system = "http://loinc.org", code = "55423-8", unit = "steps", category = "activity" }
"#,
    );
    check(
        &m,
        "fitbit-activities-steps-timeseries.json",
        &[
            "activity 55423-8 175 {steps} @2015-08-23",
            "activity 55423-8 2937 {steps} @2015-08-24",
            "activity 55423-8 0 {steps} @2015-08-25",
        ],
    );
    check(
        &m,
        "fitbit-activities-steps-1d-1m-intraday.json",
        &["activity 55423-8 3212 {steps} @2015-08-21"],
    );
}

#[test]
fn sleep_periods_with_the_new_keys() {
    let m = mapping(
        r#"
[mapping]
records = "/sleep"
fields = { id = "/logId", value = "/duration", effective = "/startTime", effective_end = "/endTime" }
constants = { status = "final", category = "activity", code_system = "http://loinc.org", code = "93832-4", display = "Sleep duration", unit = "ms", device = "Fitbit" }
"#,
    );
    let want = [
        "activity 93832-4 3780000 ms @2016-12-13T09:59:00.000/2016-12-13T11:02:30.000",
        "activity 93832-4 7080000 ms @2016-12-13T01:16:00.000/2016-12-13T03:14:00.000",
    ];
    check(&m, "fitbit-sleep-date.json", &want);
    check(&m, "fitbit-sleep-date-range.json", &want);
    let o = &run(&m, "fitbit-sleep-date.json")[0];
    assert_eq!(
        (o.id.as_str(), o.status),
        ("13214029456", Some(Status::Final))
    );
    assert_eq!(
        o.device.as_ref().unwrap().display.as_deref(),
        Some("Fitbit")
    );
    let row = rows(o).next().unwrap();
    assert_eq!(
        row.get(col::EFFECTIVE_END).as_text(),
        "2016-12-13T11:02:30.000"
    );
    assert_eq!(row.get(col::STATUS).as_text(), "final");
    check(&m, "fitbit-sleep-date-empty-sleep-list.json", &[]);
    check(&m, "fitbit-sleep-date-range-empty-sleep-list.json", &[]);
}

#[test]
fn activities_with_a_period_from_start_and_duration() {
    let m = mapping(
        r#"
[mapping]
records = "/activities"
fields = { value = "/steps", display = "/name", id = "/logId", effective = "/startDate", effective_time = "/startTime", duration = "/duration" }
constants = { code_system = "http://loinc.org", code = "55423-8", unit = "{steps}", category = "activity", duration_unit = "ms" }
"#,
    );
    check(
        &m,
        "fitbit-activities-date-multiple-in-activities-list.json",
        &[
            "activity 55423-8 6761 {steps} @2015-06-23T11:55:00/2015-06-23T12:19:00",
            // Swimming has no duration: a point in time.
            "activity 55423-8 0 {steps} @2015-06-23T10:00:00",
            "activity 55423-8 8481 {steps} @2015-06-23T15:00:00/2015-06-23T16:00:00",
        ],
    );
    let names: Vec<_> = run(
        &m,
        "fitbit-activities-date-multiple-in-activities-list.json",
    )
    .iter()
    .map(|o| o.code.display().unwrap().to_owned())
    .collect();
    assert_eq!(names, ["Run", "Swimming", "Walk"]);
    check(
        &m,
        "fitbit-activities-date-single-in-activities-list.json",
        &["activity 55423-8 5000 {steps} @2014-06-19T09:00:00/2014-06-19T10:00:00"],
    );
    check(&m, "fitbit-activities-date-empty-activities-list.json", &[]);
    // Calories of the same activities, with the activity name as the concept's text.
    let m = mapping(
        r#"
[mapping]
records = "/activities"
fields = { value = "/calories", display = "/name", effective = "/startDate", effective_time = "/startTime" }
constants = { unit = "kcal" }
"#,
    );
    check(
        &m,
        "fitbit-activities-date-multiple-in-activities-list.json",
        &[
            r#"- "Run" 150 kcal @2015-06-23T11:55:00"#,
            r#"- "Swimming" absent:error @2015-06-23T10:00:00 ! /activities/1/calories: missing"#,
            r#"- "Walk" 200 kcal @2015-06-23T15:00:00"#,
        ],
    );
}

/// A home-test-kit style JSON, written for medgate: every new mapping key.
const LAB: &str = r#"
[mapping]
records = "/results"
[mapping.fields]
id = "/id"
status = "/status"
code = "/test"
display = "/name"
value = "/value"
comparator = "/cmp"
unit = "/unit"
interpretation = "/flag"
reference_low = "/low"
reference_high = "/high"
reference_text = "/range"
effective = "/taken"
issued = "/reported"
device = "/device"
[mapping.constants]
code_system = "http://loinc.org"
category = "laboratory"
reference_low = "70"
reference_high = "99"
"#;

const LAB_BODY: &str = r#"{"results":[
 {"id":"r1","status":"final","test":"2339-0","name":"Glucose","value":"<40","unit":"mg/dL","flag":"LL","taken":"2024-03-01T07:10:00+01:00","reported":"2024-03-01T09:00:00Z","device":"GlucoCheck 3"},
 {"id":"r2","status":"prelim","test":"2339-0","value":"105.0","unit":"mg/dl","flag":"H","low":"65","range":"65-99 mg/dL","taken":"2024-03-02"},
 {"id":"r3","test":"2339-0","value":5.8,"cmp":">=","unit":"mmol/L","high":"n/a","taken":"2024-03-03T07:00:00"},
 {"id":"r4","test":"2339-0","value":[5],"unit":"mg%","taken":"March 4th","flag":"very high"},
 {"id":{"n":5},"test":"2339-0","value":"see note","cmp":"<"}
]}"#;

#[test]
fn lab_style_records_fill_every_new_field() {
    let m = mapping(LAB);
    let all = read(&m, LAB_BODY);
    let got: Vec<String> = all.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            "laboratory 2339-0 <40 mg/dL @2024-03-01T07:10:00+01:00",
            "laboratory 2339-0 105.0 mg/dL @2024-03-02 ! /results/1/status: not a FHIR observation status; the status is left out",
            "laboratory 2339-0 >=5.8 mmol/L @2024-03-03T07:00:00 ! /results/2/high: not a number; the bound is left out",
            "laboratory 2339-0 absent:error ! /results/3/taken: not a date or date-time (expected YYYY[-MM[-DD[Thh:mm[:ss[.f]][Z|±hh:mm]]]]) ! /results/3/unit: unit is not a known UCUM unit; kept as sent without a UCUM code ! /results/3/value: expected a number, string or boolean, found an array",
            r#"laboratory 2339-0 "see note" ! /results/4/id: expected a string or number, found an object ! /results/4/cmp: a comparator on a value that is not a number; left out"#,
        ]
    );
    let r1 = &all[0];
    assert_eq!(r1.status, Some(Status::Final));
    assert_eq!(qty(r1).comparator, Some(Comparator::Less));
    assert_eq!(r1.issued.unwrap().to_string(), "2024-03-01T09:00:00Z");
    assert_eq!(
        r1.device.as_ref().unwrap().display.as_deref(),
        Some("GlucoCheck 3")
    );
    let row = rows(r1).next().unwrap();
    for (column, want) in [
        (col::VALUE, "40"),
        (col::VALUE_COMPARATOR, "<"),
        (col::UNIT, "mg/dL"),
        (col::INTERPRETATION, "LL"),
        (col::REFERENCE_LOW, "70"),
        (col::REFERENCE_HIGH, "99"),
        (col::REFERENCE_UNIT, "mg/dL"),
        (col::DISPLAY, "Glucose"),
        (col::STATUS, "final"),
    ] {
        assert_eq!(
            row.get(column).as_text(),
            want,
            "{}",
            medgate_core::COLUMNS[column]
        );
    }
    // The record's own bound wins over the constant; the text is kept.
    let row = rows(&all[1]).next().unwrap();
    assert_eq!(row.get(col::REFERENCE_LOW).as_text(), "65");
    assert_eq!(row.get(col::REFERENCE_HIGH).as_text(), "99");
    assert_eq!(row.get(col::REFERENCE_TEXT).as_text(), "65-99 mg/dL");
    assert_eq!(
        qty(&all[1]).unit.as_deref(),
        Some("mg/dl"),
        "the display unit is as sent"
    );
    assert_eq!(all[3].interpretation[0].text.as_deref(), Some("very high"));
    assert_eq!(all[4].id, "/results/4");
    assert_eq!(all[4].value, Value::String("see note".into()));
}

#[test]
fn unit_system_takes_the_unit_as_a_code() {
    let m = mapping(
        r#"
[mapping]
records = ""
fields = { value = "/v" }
constants = { code = "score", unit = "{score}", unit_system = "http://unitsofmeasure.org" }
"#,
    );
    assert_eq!(summary(&read(&m, r#"[{"v":7}]"#)[0]), "- |score 7 {score}");
    // Without unit_system an unknown unit is kept as text, with a warning naming the key.
    let m = mapping(
        r#"
[mapping]
records = ""
fields = { value = "/v" }
constants = { unit = "points" }
"#,
    );
    assert_eq!(
        summary(&read(&m, r#"[{"v":7}]"#)[0]),
        "- \"\" 7 'points' ! mapping.constants.unit: unit is not a known UCUM unit; kept as sent without a UCUM code"
    );
}

#[test]
fn only_the_envelope_fails_a_mapped_payload() {
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
    let all = read(
        &m,
        r#"{"weight":[{"weight":1,"logId":{"x":1}},{"weight":[2],"logId":2},{"logId":3},7]}"#,
    );
    let got: Vec<String> = all
        .iter()
        .map(|o| format!("{} {}", o.id, summary(o)))
        .collect();
    assert_eq!(
        got,
        [
            "/weight/0 vital-signs 29463-7 1 kg ! /weight/0/logId: expected a string or number, found an object",
            "2 vital-signs 29463-7 absent:error ! /weight/1/weight: expected a number, string or boolean, found an array",
            "3 vital-signs 29463-7 absent:error ! /weight/2/weight: missing",
            "/weight/3 vital-signs 29463-7 absent:error ! /weight/3/weight: missing",
        ]
    );
}

#[test]
fn root_array_records_and_value_types() {
    let m = mapping(
        r#"
[mapping]
records = ""
fields = { value = "/v", code = "/c" }
constants = { code = "fallback" }
"#,
    );
    let all = read(
        &m,
        r#"[{"v":98.60,"c":"x"},{"v":"text"},{"v":true},{"v":"+.5"},{"v":"1E3"}]"#,
    );
    let got: Vec<String> = all.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            "- |x 98.60",
            "- |fallback \"text\"",
            "- |fallback true",
            "- |fallback 0.5",
            "- |fallback 1E3"
        ]
    );
    assert_eq!(all[1].id, "/1");
}
