//! Open mHealth: every published schema sample in tests/fixtures/openmhealth (omh/), the
//! schemas without a sample there, time frames, the envelope, and FHIR R4 validity.
//!
//! Samples marked "published" below are bodies from openmhealth/schemas `test-data/` that are
//! not among the copied fixtures (quoted here with their path and commit); samples marked
//! "written for medgate" were made up for a case no published sample covers.

mod common;

use std::path::Path;

use common::{data_point, fixture, omh_sample, one_omh, parse_omh, qty, summary, FIXTURES};
use medgate_core::model::{CATEGORY_SYSTEM, UCUM};
use medgate_core::row::col;
use medgate_core::{rows, Cell, Effective, Precision, Value, Zone};

/// `(case, summary)` for every file under `openmhealth/omh/<schema>/<version>/` (bodies,
/// wrapped in a data point with id `dp-1`) and `openmhealth/omh/data-point/` (full points). An
/// empty summary means the point is skipped. Every shouldFail file is decided here: most give
/// a warning (no value + dataAbsentReason when the measure itself is unreadable); the ones
/// commented "accepted" are invalid only in a member medgate does not read.
const SAMPLES: &[(&str, &str)] = &[
    (
        "blood-pressure/4.0/shouldFail/empty-document",
        r#"vital-signs 85354-9 - [8480-6: absent:error; 8462-4: absent:error] ! /0/body/systolic_blood_pressure: missing ! /0/body/diastolic_blood_pressure: missing ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    // accepted: the invalid member (temporal_relationship_to_physical_activity) is not read.
    (
        "blood-pressure/4.0/shouldFail/invalid-pa-value",
        r#"vital-signs 85354-9 - @2020-02-05T07:25:00-08:00 [8480-6: 115 mm[Hg]; 8462-4: 60 mm[Hg]]"#,
    ),
    (
        "blood-pressure/4.0/shouldFail/invalid-timeframe-format",
        r#"vital-signs 85354-9 - @2013-02-05 [8480-6: 115 mm[Hg]; 8462-4: 60 mm[Hg]] ! /0/body/effective_time_frame/time_interval/part_of_day: part of day is not kept: the time is the date only"#,
    ),
    (
        "blood-pressure/4.0/shouldFail/invalid-unit",
        r#"vital-signs 85354-9 - @2020-02-05T07:25:00-08:00 [8480-6: 115 'mmH'; 8462-4: 60 mm[Hg]] ! /0/body/systolic_blood_pressure/unit: unit is not a known UCUM unit; kept as sent without a UCUM code"#,
    ),
    (
        "blood-pressure/4.0/shouldPass/blood-pressure-only",
        r#"vital-signs 85354-9 - @2020-02-05T07:25:00-08:00 [8480-6: 115 mm[Hg]; 8462-4: 60 mm[Hg]]"#,
    ),
    (
        "blood-pressure/4.0/shouldPass/with-descriptive-statistic",
        r#"vital-signs 85354-9 - @2020-02-05T07:00:00-08:00/2020-02-12T07:00:00-08:00 [8480-6: 160 mm[Hg]; 8462-4: 60 mm[Hg]]"#,
    ),
    (
        "blood-pressure/4.0/shouldPass/with-posture-and-location",
        r#"vital-signs 85354-9 - @2020-02-05T07:25:00-08:00 [8480-6: 140 mm[Hg]; 8462-4: 60 mm[Hg]]"#,
    ),
    (
        "blood-pressure/4.0/shouldPass/with-posture-location-relation",
        r#"vital-signs 85354-9 - @2020-02-05T07:25:00-08:00 [8480-6: 125 mm[Hg]; 8462-4: 60 mm[Hg]]"#,
    ),
    (
        "body-temperature/1.0/shouldFail/empty-document",
        r#"vital-signs 8310-5 absent:error ! /0/body/body_temperature: missing ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "body-temperature/1.0/shouldFail/invalid-unit",
        r#"vital-signs 8310-5 36 'G' @2013-02-05T07:25:00Z ! /0/body/body_temperature/unit: unit is not a known UCUM unit; kept as sent without a UCUM code"#,
    ),
    (
        "body-temperature/1.0/shouldPass/valid-temperature-with-statistic",
        r#"vital-signs 8310-5 96.5 [degF] @2015-02-05T06:00:00Z/2015-02-06T06:00:00Z"#,
    ),
    (
        "body-temperature/1.0/shouldPass/valid-temperature",
        r#"vital-signs 8310-5 97 [degF] @2013-02-05T07:25:00Z"#,
    ),
    (
        "body-temperature/2.0/shouldFail/empty-document",
        r#"vital-signs 8310-5 absent:error ! /0/body/body_temperature: missing ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "body-temperature/2.0/shouldFail/invalid-unit",
        r#"vital-signs 8310-5 36 'G' @2013-02-05T07:25:00Z ! /0/body/body_temperature/unit: unit is not a known UCUM unit; kept as sent without a UCUM code"#,
    ),
    (
        "body-temperature/2.0/shouldPass/basal-temperature",
        r#"vital-signs 8310-5 96.5 [degF] @2013-02-05T06:25:00Z"#,
    ),
    (
        "body-temperature/2.0/shouldPass/valid-temperature-with-statistic",
        r#"vital-signs 8310-5 96.5 [degF] @2015-02-05T06:00:00Z/2015-02-06T06:00:00Z"#,
    ),
    (
        "body-temperature/2.0/shouldPass/valid-temperature",
        r#"vital-signs 8310-5 97 [degF] @2013-02-05T07:25:00Z"#,
    ),
    (
        "body-temperature/3.0/shouldFail/empty-document",
        r#"vital-signs 8310-5 absent:error ! /0/body/body_temperature: missing ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "body-temperature/3.0/shouldFail/invalid-unit",
        r#"vital-signs 8310-5 36 'G' @2013-02-05T07:25:00Z ! /0/body/body_temperature/unit: unit is not a known UCUM unit; kept as sent without a UCUM code"#,
    ),
    (
        "body-temperature/3.0/shouldFail/missing-effective-time-frame",
        r#"vital-signs 8310-5 36 Cel ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "body-temperature/3.0/shouldPass/basal-temperature",
        r#"vital-signs 8310-5 96.5 [degF] @2013-02-05T06:25:00Z"#,
    ),
    (
        "body-temperature/3.0/shouldPass/valid-temperature-with-statistic",
        r#"vital-signs 8310-5 96.5 [degF] @2020-02-05T06:00:00-08:00/2020-02-06T06:00:00-08:00"#,
    ),
    (
        "body-temperature/3.0/shouldPass/valid-temperature",
        r#"vital-signs 8310-5 97 [degF] @2013-02-05T07:25:00Z"#,
    ),
    (
        "body-temperature/4.0/shouldFail/empty-document",
        r#"vital-signs 8310-5 absent:error ! /0/body/body_temperature: missing ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "body-temperature/4.0/shouldFail/invalid-unit",
        r#"vital-signs 8310-5 36 'G' @2013-02-05T07:25:00Z ! /0/body/body_temperature/unit: unit is not a known UCUM unit; kept as sent without a UCUM code"#,
    ),
    (
        "body-temperature/4.0/shouldFail/missing-effective-time-frame",
        r#"vital-signs 8310-5 36 Cel ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "body-temperature/4.0/shouldPass/basal-temperature",
        r#"vital-signs 8310-5 96.5 [degF] @2023-02-05T06:25:00Z"#,
    ),
    (
        "body-temperature/4.0/shouldPass/valid-temperature-with-statistic",
        r#"vital-signs 8310-5 96.5 [degF] @2023-02-05T06:00:00-08:00/2020-03-06T06:00:00-08:00 ! /0/body/effective_time_frame/time_interval: the period ends before it starts"#,
    ),
    (
        "body-temperature/4.0/shouldPass/valid-temperature",
        r#"vital-signs 8310-5 97 [degF] @2023-02-05T07:25:00+01:00"#,
    ),
    (
        "body-weight/3.0/shouldFail/empty-document",
        r#"vital-signs 29463-7 absent:error ! /0/body/body_weight: missing ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    // accepted: descriptive_statistic is not read.
    (
        "body-weight/3.0/shouldFail/invalid-descriptive-statistic",
        r#"vital-signs 29463-7 115.5 [lb_av] @2013-02-05T07:25:00Z/2013-06-05T07:25:00Z"#,
    ),
    (
        "body-weight/3.0/shouldFail/invalid-time-frame",
        r#"vital-signs 29463-7 50 kg ! /0/body/effective_time_frame: expected date_time or time_interval"#,
    ),
    (
        "body-weight/3.0/shouldFail/invalid-time-interval",
        r#"vital-signs 29463-7 50 kg @2013-02-05T07:25:00Z/ ! /0/body/effective_time_frame/time_interval: no end_date_time or duration: the period is open"#,
    ),
    (
        "body-weight/3.0/shouldFail/invalid-unit",
        r#"vital-signs 29463-7 50 km @2020-02-05T09:25:00-08:00 ! /0/body/body_weight/unit: unit is a length unit, expected mass"#,
    ),
    (
        "body-weight/3.0/shouldFail/missing-body-weight-unit",
        r#"vital-signs 29463-7 50 @2020-02-05T09:25:00-08:00 ! /0/body/body_weight/unit: missing: the number is kept without a unit"#,
    ),
    (
        "body-weight/3.0/shouldFail/missing-body-weight-value",
        r#"vital-signs 29463-7 absent:error @2020-02-05T09:25:00-08:00 ! /0/body/body_weight/value: missing"#,
    ),
    (
        "body-weight/3.0/shouldPass/body-weight-only",
        r#"vital-signs 29463-7 50 kg @2020-02-05T09:45:00-08:00"#,
    ),
    (
        "body-weight/3.0/shouldPass/with-descriptive-statistic",
        r#"vital-signs 29463-7 49.5 kg @2020-02-05T09:45:00-08:00/2020-03-05T10:40:00-08:00"#,
    ),
    // skipped: no header, so no schema.
    ("data-point/1.0/shouldFail/empty-document", ""),
    (
        "data-point/1.0/shouldFail/invalid-header",
        r#"activity 73985-4 absent:error ! /header/id: missing; the id is the data point's position ! /body/activity_name: missing ! /body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "data-point/1.0/shouldFail/missing-body",
        r#"activity 73985-4 absent:error ! /body: missing"#,
    ),
    // skipped: no header, so no schema.
    ("data-point/1.0/shouldFail/missing-header", ""),
    (
        "data-point/1.0/shouldPass/empty-body",
        r#"activity 73985-4 absent:error ! /body/activity_name: missing ! /body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "data-point/1.0/shouldPass/valid-data-point",
        r#"activity 73985-4 "walking" @2013-02-05 [urn:medgate:openmhealth|distance: 1.5 [mi_i]] ! /body/effective_time_frame/time_interval/part_of_day: part of day is not kept: the time is the date only"#,
    ),
    (
        "heart-rate/1.0/shouldFail/empty-document",
        r#"vital-signs 8867-4 absent:error ! /0/body/heart_rate: missing ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "heart-rate/1.0/shouldFail/incorrect-unit",
        r#"vital-signs 8867-4 60 'beat/min' ! /0/body/heart_rate/unit: unit is not a known UCUM unit; kept as sent without a UCUM code ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "heart-rate/1.0/shouldPass/heart-rate-only",
        r#"vital-signs 8867-4 60 /min ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "heart-rate/1.0/shouldPass/with-everything",
        r#"vital-signs 8867-4 50 /min @2013-02-05T07:25:00Z"#,
    ),
    (
        "heart-rate/1.0/shouldPass/with-temporal-relationship-to-physical-activity",
        r#"vital-signs 8867-4 50 /min @2013-02-05T07:25:00Z"#,
    ),
    (
        "heart-rate/1.0/shouldPass/with-time-frame",
        r#"vital-signs 8867-4 60 /min @2013-02-05T07:25:00Z"#,
    ),
    (
        "heart-rate/1.0/shouldPass/with-user-notes",
        r#"vital-signs 8867-4 50 /min @2013-02-05T07:25:00Z"#,
    ),
    (
        "heart-rate/1.1/shouldPass/with-temporal-relationship-to-sleep",
        r#"vital-signs 8867-4 50 /min @2013-02-05T07:25:00Z"#,
    ),
    (
        "heart-rate/2.0/shouldFail/empty-document",
        r#"vital-signs 8867-4 absent:error ! /0/body/heart_rate: missing ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "heart-rate/2.0/shouldFail/incorrect-unit",
        r#"vital-signs 8867-4 60 'beat/min' @2020-02-05T07:25:00Z ! /0/body/heart_rate/unit: unit is not a known UCUM unit; kept as sent without a UCUM code"#,
    ),
    (
        "heart-rate/2.0/shouldFail/missing-effective-time-frame",
        r#"vital-signs 8867-4 60 /min ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "heart-rate/2.0/shouldPass/with-descriptive-statistic",
        r#"vital-signs 8867-4 50.0 /min @2020-02-05T06:00:00+01:00/2020-02-06T06:00:00+01:00"#,
    ),
    (
        "heart-rate/2.0/shouldPass/with-temporal-relationship-to-sleep",
        r#"vital-signs 8867-4 67.5 /min @2020-02-05T07:25:00-08:00"#,
    ),
    // accepted: supplemental_oxygen_flow_rate is not read.
    (
        "oxygen-saturation/1.0/shouldFail/invalid-oxygen-unit",
        r#"vital-signs 59408-5 95 % @2013-02-05T07:25:00Z"#,
    ),
    (
        "oxygen-saturation/1.0/shouldFail/invalid-unit",
        r#"vital-signs 2708-6 95 g @2013-02-05T07:25:00Z ! /0/body/oxygen_saturation/unit: unit is a mass unit, expected percentage"#,
    ),
    (
        "oxygen-saturation/1.0/shouldPass/saturation-only",
        r#"vital-signs 59408-5 95 % @2013-02-05T07:25:00Z"#,
    ),
    (
        "oxygen-saturation/1.0/shouldPass/with-oxygen",
        r#"vital-signs 59408-5 95 % @2013-02-05T07:25:00Z"#,
    ),
    // accepted: supplemental_oxygen_flow_rate is not read.
    (
        "oxygen-saturation/2.0/shouldFail/invalid-oxygen-unit",
        r#"vital-signs 59408-5 95 % @2013-02-05T07:25:00Z"#,
    ),
    (
        "oxygen-saturation/2.0/shouldFail/invalid-unit",
        r#"vital-signs 2708-6 95 g @2013-02-05T07:25:00Z ! /0/body/oxygen_saturation/unit: unit is a mass unit, expected percentage"#,
    ),
    (
        "oxygen-saturation/2.0/shouldFail/missing-effective-time-frame",
        r#"vital-signs 59408-5 95 % ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "oxygen-saturation/2.0/shouldPass/saturation-only",
        r#"vital-signs 59408-5 95 % @2013-02-05T07:25:00-08:00"#,
    ),
    (
        "oxygen-saturation/2.0/shouldPass/saturation-with-statistics",
        r#"vital-signs 2708-6 93 % @2020-02-05T06:00:00+01:00/2020-02-06T06:00:00+01:00"#,
    ),
    (
        "oxygen-saturation/2.0/shouldPass/with-oxygen",
        r#"vital-signs 59408-5 95 % @2013-02-05T07:25:00Z"#,
    ),
    (
        "step-count/3.0/shouldFail/empty-document",
        r#"activity 55423-8 absent:error ! /0/body/step_count: missing ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "step-count/3.0/shouldFail/invalid-unit-step-count",
        r#"activity 55423-8 6000 'step' ! /0/body/step_count/value: a number written as a string; read as a number ! /0/body/step_count/unit: unit is not a known UCUM unit; kept as sent without a UCUM code ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "step-count/3.0/shouldFail/step-count-only",
        r#"activity 55423-8 6000 {steps} ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "step-count/3.0/shouldFail/string-step-count-value",
        r#"activity 55423-8 6000 {steps} ! /0/body/step_count/value: a number written as a string; read as a number ! /0/body/effective_time_frame: missing: the observation has no time"#,
    ),
    (
        "step-count/3.0/shouldFail/with-date-time",
        r#"activity 55423-8 6000 {steps} @2013-02-05T07:25:00.123Z ! /0/body/effective_time_frame: a date_time where a total over time needs a time_interval"#,
    ),
    (
        "step-count/3.0/shouldPass/valid-step-count",
        r#"activity 55423-8 10600 {steps} @2016-02-05T06:25:00Z/2016-02-05T07:25:00Z"#,
    ),
    (
        "step-count/3.0/shouldPass/with-average",
        r#"activity 55423-8 12500 {steps} @2016-05-05T07:00:00Z/2016-06-05T07:00:00Z"#,
    ),
    (
        "step-count/3.0/shouldPass/with-maximum",
        r#"activity 55423-8 20500 {steps} @2016-02-05T07:00:00Z/2016-06-05T07:00:00Z"#,
    ),
    (
        "step-count/3.0/shouldPass/with-session",
        r#"activity 55423-8 26000 {steps} @2016-02-05T07:00:00Z/2016-06-05T07:00:00Z"#,
    ),
];

fn run(case: &str) -> String {
    let text = match case.strip_prefix("data-point/") {
        Some(_) => fixture(&format!("openmhealth/omh/{case}.json")),
        None => {
            let parts: Vec<&str> = case.splitn(3, '/').collect();
            omh_sample(parts[0], parts[1], parts[2])
        }
    };
    let all = parse_omh(&text).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(all.len() <= 1, "{case}: {all:#?}");
    all.first().map(summary).unwrap_or_default()
}

#[test]
fn every_published_sample() {
    let mut failures = Vec::new();
    for (case, want) in SAMPLES {
        let got = run(case);
        if got != *want {
            failures.push(format!("{case}\n  want {want}\n  got  {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_covers_every_fixture_file() {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path.to_string_lossy().into_owned());
            }
        }
    }
    let root = format!("{FIXTURES}/openmhealth/omh/");
    let mut files = Vec::new();
    walk(Path::new(&root), &mut files);
    let mut cases: Vec<String> = files
        .iter()
        .map(|f| f[root.len()..].trim_end_matches(".json").to_owned())
        .filter(|c| !c.starts_with("header/"))
        .collect();
    cases.sort();
    let mut listed: Vec<String> = SAMPLES.iter().map(|(c, _)| (*c).to_owned()).collect();
    listed.sort();
    assert_eq!(cases, listed);
}

/// `(body of one data point of schema name/version, summary)`.
fn check(name: &str, version: &str, body: &str, want: &str) {
    let got = summary(&one_omh(&data_point("x", name, version, body)));
    assert_eq!(got, want, "{name} {version}: {body}");
}

#[test]
fn blood_glucose() {
    // Published: test-data/omh/blood-glucose/4.0/shouldPass/with-everything.json (ea94daa).
    check(
        "blood-glucose",
        "4.0",
        r#"{"blood_glucose":{"unit":"mg/dL","value":95},"effective_time_frame":{"time_interval":{"start_date_time":"2013-02-05T07:25:00Z","end_date_time":"2013-06-05T07:25:00Z"}},"specimen_source":"capillary blood","temporal_relationship_to_meal":"fasting","temporal_relationship_to_sleep":"on waking","descriptive_statistic":"minimum"}"#,
        r#"laboratory 2339-0 95 mg/dL @2013-02-05T07:25:00Z/2013-06-05T07:25:00Z [urn:medgate:openmhealth|specimen_source: "capillary blood"; urn:medgate:openmhealth|temporal_relationship_to_meal: "fasting"]"#,
    );
    // Published: test-data/omh/blood-glucose/2.0/shouldPass/with-everything.json (04039ea);
    // 2.0 names the specimen member differently, and a CGM's interstitial fluid has its own
    // LOINC term.
    check(
        "blood-glucose",
        "2.0",
        r#"{"blood_glucose":{"unit":"mg/dL","value":120},"effective_time_frame":{"time_interval":{"start_date_time":"2013-02-05T07:25:00Z","end_date_time":"2013-06-05T07:25:00Z"}},"blood_glucose_specimen_source":"interstitial fluid","temporal_relationship_to_meal":"fasting","temporal_relationship_to_sleep":"on waking","descriptive_statistic":"minimum"}"#,
        r#"laboratory 99504-3 120 mg/dL @2013-02-05T07:25:00Z/2013-06-05T07:25:00Z [urn:medgate:openmhealth|specimen_source: "interstitial fluid"; urn:medgate:openmhealth|temporal_relationship_to_meal: "fasting"]"#,
    );
    // Written for medgate: mmol/L, without and with a specimen; lenient digits kept.
    for (body, want) in [
        (
            r#"{"blood_glucose":{"unit":"mmol/L","value":5.40},"effective_time_frame":{"date_time":"2024-03-01T07:10:00+01:00"}}"#,
            "laboratory 15074-8 5.40 mmol/L @2024-03-01T07:10:00+01:00",
        ),
        (
            r#"{"blood_glucose":{"unit":"mmol/L","value":6.1},"specimen_source":"plasma","effective_time_frame":{"date_time":"2024-03-01T07:10:00+01:00"}}"#,
            r#"laboratory 14749-6 6.1 mmol/L @2024-03-01T07:10:00+01:00 [urn:medgate:openmhealth|specimen_source: "plasma"]"#,
        ),
        (
            r#"{"blood_glucose":{"unit":"mg/dL","value":101},"specimen_source":"serum","effective_time_frame":{"date_time":"2024-03-01T07:10:00+01:00"}}"#,
            r#"laboratory 2345-7 101 mg/dL @2024-03-01T07:10:00+01:00 [urn:medgate:openmhealth|specimen_source: "serum"]"#,
        ),
        // An unknown unit: no LOINC term can be chosen (mass or substance?), so medgate's code.
        (
            r#"{"blood_glucose":{"unit":"mg%","value":95},"effective_time_frame":{"date_time":"2024-03-01T07:10:00Z"}}"#,
            "laboratory urn:medgate:openmhealth|blood-glucose 95 'mg%' @2024-03-01T07:10:00Z ! /body/blood_glucose/unit: unit is not a known UCUM unit; kept as sent without a UCUM code",
        ),
        // Two units are allowed, so a missing one is not guessed.
        (
            r#"{"blood_glucose":{"value":95},"effective_time_frame":{"date_time":"2024-03-01T07:10:00Z"}}"#,
            "laboratory urn:medgate:openmhealth|blood-glucose 95 @2024-03-01T07:10:00Z ! /body/blood_glucose/unit: missing: the number is kept without a unit",
        ),
        (
            r#"{"blood_glucose":{"unit":"mg/dL","value":"high"},"effective_time_frame":{"date_time":"2024-03-01T07:10:00Z"}}"#,
            "laboratory urn:medgate:openmhealth|blood-glucose absent:error @2024-03-01T07:10:00Z ! /body/blood_glucose/value: expected a number, found a string",
        ),
    ] {
        check("blood-glucose", "4.0", body, want);
    }
}

#[test]
fn calories_sleep_and_activity() {
    // Published: test-data/omh/calories-burned/3.0/shouldPass/valid-calories-burned.json
    // (75f98a3).
    check(
        "calories-burned",
        "3.0",
        r#"{"kcal_burned":{"value":1600,"unit":"kcal"},"effective_time_frame":{"time_interval":{"start_date_time":"2026-02-05T06:00:00-08:00","end_date_time":"2026-02-05T23:00:00-08:00"}}}"#,
        "activity 41981-2 1600 kcal @2026-02-05T06:00:00-08:00/2026-02-05T23:00:00-08:00",
    );
    // Published: test-data/omh/sleep-duration/2.0/shouldPass/valid-sleep-duration.json
    // (ebf24c4), and shouldFail/with-date-time.json (e71e154): kept, with a warning.
    check(
        "sleep-duration",
        "2.0",
        r#"{"sleep_duration":{"value":7.5,"unit":"h"},"effective_time_frame":{"time_interval":{"start_date_time":"2016-02-05T20:35:00Z","end_date_time":"2016-02-06T06:35:00Z"}}}"#,
        "activity 93832-4 7.5 h @2016-02-05T20:35:00Z/2016-02-06T06:35:00Z",
    );
    check(
        "sleep-duration",
        "2.0",
        r#"{"sleep_duration":{"value":7.5,"unit":"h"},"effective_time_frame":{"date_time":"2013-02-05T07:25:00.123Z"}}"#,
        "activity 93832-4 7.5 h @2013-02-05T07:25:00.123Z ! /body/effective_time_frame: a date_time where a total over time needs a time_interval",
    );
    // Written for medgate: Open mHealth's `sec` is UCUM `s`; a start plus a duration.
    check(
        "sleep-duration",
        "2.0",
        r#"{"sleep_duration":{"value":27000,"unit":"sec"},"effective_time_frame":{"time_interval":{"start_date_time":"2024-03-01T23:15:00+01:00","duration":{"value":450,"unit":"min"}}}}"#,
        "activity 93832-4 27000 s @2024-03-01T23:15:00+01:00/2024-03-02T06:45:00+01:00",
    );
    // Published: test-data/omh/physical-activity/2.0/shouldPass/with-effective-duration.json
    // (f6dbcdb): the name, and distance, kcal and duration as components (met_value is not
    // read).
    check(
        "physical-activity",
        "2.0",
        r#"{"activity_name":"walking","distance":{"value":3.1,"unit":"mi"},"effective_time_frame":{"time_interval":{"start_date_time":"2015-02-06T06:25:00Z","end_date_time":"2015-02-06T07:25:00Z"}},"effective_duration":{"value":44,"unit":"min"},"kcal_burned":{"value":160,"unit":"kcal"},"met_value":3.5}"#,
        r#"activity 73985-4 "walking" @2015-02-06T06:25:00Z/2015-02-06T07:25:00Z [urn:medgate:openmhealth|distance: 3.1 [mi_i]; 41981-2: 160 kcal; 55411-3: 44 min]"#,
    );
    // Written for medgate: an unreadable part costs that component only.
    check(
        "physical-activity",
        "2.0",
        r#"{"activity_name":"cycling","distance":{"value":"far","unit":"km"},"kcal_burned":{"value":410},"effective_time_frame":{"time_interval":{"start_date_time":"2024-05-01T17:00:00+02:00","duration":{"value":1.5,"unit":"h"}}}}"#,
        r#"activity 73985-4 "cycling" @2024-05-01T17:00:00+02:00/2024-05-01T18:30:00+02:00 [urn:medgate:openmhealth|distance: absent:error; 41981-2: 410 kcal] ! /body/distance/value: expected a number, found a string"#,
    );
}

#[test]
fn vital_signs_without_copied_samples() {
    // Written for medgate (the copied fixtures have no respiratory rate, height or BMI).
    for (name, body, want) in [
        (
            "respiratory-rate",
            r#"{"respiratory_rate":{"value":16,"unit":"breaths/min"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 9279-1 16 /min @2024-01-01T08:00:00Z",
        ),
        (
            "body-height",
            r#"{"body_height":{"value":1.70,"unit":"m"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 8302-2 1.70 m @2024-01-01T08:00:00Z",
        ),
        (
            "body-height",
            r#"{"body_height":{"value":5.5,"unit":"ft"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 8302-2 5.5 [ft_i] @2024-01-01T08:00:00Z",
        ),
        (
            "body-height",
            r#"{"body_height":{"value":67,"unit":"in"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 8302-2 67 [in_i] @2024-01-01T08:00:00Z",
        ),
        (
            "body-mass-index",
            r#"{"body_mass_index":{"value":21.48,"unit":"kg/m^2"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 39156-5 21.48 kg/m2 @2024-01-01T08:00:00Z",
        ),
        (
            "body-weight",
            r#"{"body_weight":{"value":98.60,"unit":"kg"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 29463-7 98.60 kg @2024-01-01T08:00:00Z",
        ),
        (
            "body-temperature",
            r#"{"body_temperature":{"value":36.60,"unit":"C"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 8310-5 36.60 Cel @2024-01-01T08:00:00Z",
        ),
        // Single-unit schemas: a missing unit is the schema's unit.
        (
            "heart-rate",
            r#"{"heart_rate":{"value":1e-22},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 8867-4 1e-22 /min @2024-01-01T08:00:00Z",
        ),
        // Two-unit schemas: it is not guessed.
        (
            "body-height",
            r#"{"body_height":{"value":1.7},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 8302-2 1.7 @2024-01-01T08:00:00Z ! /body/body_height/unit: missing: the number is kept without a unit",
        ),
        // Numbers in strings, in every lexical form, are read (with a warning: the schema
        // wants a JSON number).
        (
            "heart-rate",
            r#"{"heart_rate":{"value":" +072 ","unit":"beats/min"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 8867-4 72 /min @2024-01-01T08:00:00Z ! /body/heart_rate/value: a number written as a string; read as a number",
        ),
        (
            "body-temperature",
            r#"{"body_temperature":{"value":".5E2","unit":"C"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 8310-5 0.5E2 Cel @2024-01-01T08:00:00Z ! /body/body_temperature/value: a number written as a string; read as a number",
        ),
        (
            "heart-rate",
            r#"{"heart_rate":{"value":true,"unit":"beats/min"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 8867-4 absent:error @2024-01-01T08:00:00Z ! /body/heart_rate/value: expected a number, found a boolean",
        ),
        (
            "heart-rate",
            r#"{"heart_rate":[72],"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 8867-4 absent:error @2024-01-01T08:00:00Z ! /body/heart_rate: expected a number, found an array",
        ),
        (
            "body-weight",
            r#"{"body_weight":70,"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
            "vital-signs 29463-7 absent:error @2024-01-01T08:00:00Z ! /body/body_weight: expected an object, found a number",
        ),
        // step-count 1.x writes a bare number.
        (
            "step-count",
            r#"{"step_count":7939,"effective_time_frame":{"time_interval":{"start_date_time":"2015-10-21T00:00:00-06:00","duration":{"value":1,"unit":"d"}}}}"#,
            "activity 55423-8 7939 {steps} @2015-10-21T00:00:00-06:00/2015-10-22T00:00:00-06:00",
        ),
    ] {
        check(name, "1.0", body, want);
    }
}

/// `(effective_time_frame, summary of a heart rate of 60 with it)`.
fn frame(frame: &str, want: &str) {
    check(
        "heart-rate",
        "2.0",
        &format!(
            r#"{{"heart_rate":{{"value":60,"unit":"beats/min"}},"effective_time_frame":{frame}}}"#
        ),
        want,
    );
}

#[test]
fn time_frames() {
    frame(
        r#"{"date_time":"2024-01-01T05:23:10+08:00"}"#,
        "vital-signs 8867-4 60 /min @2024-01-01T05:23:10+08:00",
    );
    // Z stays Z, +00:00 stays +00:00, a time without an offset stays local.
    frame(
        r#"{"date_time":"2024-01-01T05:23:10Z"}"#,
        "vital-signs 8867-4 60 /min @2024-01-01T05:23:10Z",
    );
    frame(
        r#"{"date_time":"2024-01-01T05:23:10+00:00"}"#,
        "vital-signs 8867-4 60 /min @2024-01-01T05:23:10+00:00",
    );
    frame(
        r#"{"date_time":"2024-01-01T05:23:10"}"#,
        "vital-signs 8867-4 60 /min @2024-01-01T05:23:10",
    );
    frame(
        r#"{"time_interval":{"start_date_time":"2024-01-01T23:30:00-05:00","duration":{"value":90,"unit":"min"}}}"#,
        "vital-signs 8867-4 60 /min @2024-01-01T23:30:00-05:00/2024-01-02T01:00:00-05:00",
    );
    frame(
        r#"{"time_interval":{"end_date_time":"2024-01-02T01:00:00-05:00","duration":{"value":1.5,"unit":"h"}}}"#,
        "vital-signs 8867-4 60 /min @2024-01-01T23:30:00-05:00/2024-01-02T01:00:00-05:00",
    );
    frame(
        r#"{"time_interval":{"start_date_time":"2024-01-31T08:00:00+01:00","duration":{"value":1,"unit":"Mo"}}}"#,
        "vital-signs 8867-4 60 /min @2024-01-31T08:00:00+01:00/2024-02-29T08:00:00+01:00",
    );
    frame(
        r#"{"time_interval":{"date":"2013-02-05","part_of_day":"morning"}}"#,
        "vital-signs 8867-4 60 /min @2013-02-05 ! /body/effective_time_frame/time_interval/part_of_day: part of day is not kept: the time is the date only",
    );
    frame(
        r#"{"time_interval":{"date":"2013-02-05"}}"#,
        "vital-signs 8867-4 60 /min @2013-02-05",
    );
    // Unreadable times cost the time, not the value.
    frame(
        r#"{"date_time":"05/02/2013"}"#,
        "vital-signs 8867-4 60 /min ! /body/effective_time_frame/date_time: not a date or date-time (expected YYYY[-MM[-DD[Thh:mm[:ss[.f]][Z|±hh:mm]]]])",
    );
    frame(
        r#"{"date_time":"2024-02-30T10:00:00Z"}"#,
        "vital-signs 8867-4 60 /min ! /body/effective_time_frame/date_time: not a valid calendar date",
    );
    frame(
        r#"{"time_interval":{"start_date_time":"2024-01-01T10:00:00Z","duration":{"value":-5,"unit":"min"}}}"#,
        "vital-signs 8867-4 60 /min @2024-01-01T10:00:00Z/ ! /body/effective_time_frame/time_interval/duration: negative duration",
    );
    frame(
        r#"{"time_interval":{"start_date_time":"2024-01-01T10:00:00Z","duration":{"value":5,"unit":"kg"}}}"#,
        "vital-signs 8867-4 60 /min @2024-01-01T10:00:00Z/ ! /body/effective_time_frame/time_interval/duration/unit: not a duration unit ! /body/effective_time_frame/time_interval: no end_date_time or duration: the period is open",
    );
    frame(
        r#"{"time_interval":{"end_date_time":"2024-01-01T10:00:00Z"}}"#,
        "vital-signs 8867-4 60 /min @/2024-01-01T10:00:00Z ! /body/effective_time_frame/time_interval: no start_date_time or duration: the period is open",
    );
    frame(
        r#"{"time_interval":{}}"#,
        "vital-signs 8867-4 60 /min ! /body/effective_time_frame/time_interval: expected start_date_time, end_date_time, duration or date",
    );
    frame(
        r#""2024-01-01T10:00:00Z""#,
        "vital-signs 8867-4 60 /min ! /body/effective_time_frame: expected an object, found a string",
    );
}

#[test]
fn a_heart_rate_observation_in_full() {
    // As written by bench/gen/gen_fhir.py `omh_points` (json.dump, compact separators).
    let text = r#"[{"header":{"id":"P000001-omh-00001","creation_date_time":"2024-01-01T00:00:00+08:00","acquisition_provenance":{"source_name":"SyntheticBand","modality":"sensed"},"user_id":"P000001","schema_id":{"namespace":"omh","name":"heart-rate","version":"1.0"}},"body":{"heart_rate":{"value":72,"unit":"beats/min"},"effective_time_frame":{"date_time":"2024-01-01T00:00:00+08:00"}}}]"#;
    let all = medgate_source_wearable::parse(
        &medgate_source_wearable::PayloadFormat::OpenMHealth,
        text.as_bytes(),
        &medgate_source_wearable::ParseContext::new("wearable", "P-requested"),
    )
    .unwrap();
    let o = &all[0];
    // The requested id wins over the payload's user_id.
    assert_eq!(
        (&*o.patient_id, &*o.source, o.id.as_str()),
        ("P-requested", "wearable", "P000001-omh-00001")
    );
    assert_eq!(o.status, None);
    assert_eq!(
        o.category[0].coding[0].system.as_deref(),
        Some(CATEGORY_SYSTEM)
    );
    assert_eq!(o.code.coding[0].display.as_deref(), Some("Heart rate"));
    let q = qty(o);
    // The display unit is what the device said; the code is UCUM.
    assert_eq!(
        (
            q.value.as_ref().unwrap().as_str(),
            q.unit.as_deref(),
            q.system.as_deref(),
            q.code.as_deref()
        ),
        ("72", Some("beats/min"), Some(UCUM), Some("/min"))
    );
    let Some(Effective::DateTime(at)) = o.effective else {
        panic!("{:?}", o.effective)
    };
    assert_eq!(at.precision(), Precision::Second);
    assert_eq!(at.offset().map(|o| o.seconds()), Some(8 * 3600));
    assert!(matches!(at.zone(), Some(Zone::Offset(_))));
    assert_eq!(o.issued.unwrap().to_string(), "2024-01-01T00:00:00+08:00");
    assert_eq!(
        o.device.as_ref().and_then(|d| d.display.as_deref()),
        Some("SyntheticBand")
    );
    assert!(o.warnings.is_empty());
}

#[test]
fn the_published_header_gives_issued_and_device() {
    let header = fixture("openmhealth/omh/header/1.2/shouldPass/with-source-data-point-id.json");
    let text = format!(
        r#"{{"header":{header},"body":{{"activity_name":"running","effective_time_frame":{{"time_interval":{{"start_date_time":"2013-02-05T06:25:00Z","end_date_time":"2013-02-05T07:25:00Z"}}}}}}}}"#
    );
    let o = one_omh(&text);
    assert_eq!(o.id, "123e4567-e89b-12d3-a456-426655440000");
    assert_eq!(o.issued.unwrap().to_string(), "2013-02-05T07:25:00Z");
    assert_eq!(o.device.unwrap().display.as_deref(), Some("RunKeeper"));
    assert_eq!(
        o.value,
        Value::CodeableConcept(medgate_core::CodeableConcept::text("running"))
    );
    assert_eq!(&*o.patient_id, "P1", "the header's user_id is not trusted");
    // An unreadable creation time or provenance is a warning, not a lost point.
    let text = r#"{"header":{"id":"h","creation_date_time":"yesterday","acquisition_provenance":"RunKeeper","schema_id":{"namespace":"omh","name":"heart-rate","version":"1.0"}},"body":{"heart_rate":{"value":60,"unit":"beats/min"},"effective_time_frame":{"date_time":"2024-01-01T00:00:00Z"}}}"#;
    assert_eq!(
        summary(&one_omh(text)),
        "vital-signs 8867-4 60 /min @2024-01-01T00:00:00Z ! /header/creation_date_time: not a date or date-time (expected YYYY[-MM[-DD[Thh:mm[:ss[.f]][Z|±hh:mm]]]]) ! /header/acquisition_provenance: expected an object, found a string"
    );
}

#[test]
fn blood_pressure_is_one_panel_and_two_rows() {
    let o = one_omh(&omh_sample(
        "blood-pressure",
        "4.0",
        "shouldPass/blood-pressure-only",
    ));
    assert_eq!(o.code.coding[0].code.as_deref(), Some("85354-9"));
    assert_eq!(o.value, Value::None);
    assert_eq!(o.data_absent_reason, None, "a panel has no value by design");
    let r: Vec<_> = rows(&o).collect();
    assert_eq!(r.len(), 2);
    for (row, (id, code, value)) in r
        .iter()
        .zip([("dp-1#0", "8480-6", "115"), ("dp-1#1", "8462-4", "60")])
    {
        assert_eq!(row.get(col::ID).as_text(), id);
        assert_eq!(row.get(col::CODE).as_text(), code);
        assert!(matches!(row.get(col::VALUE), Cell::Number(d) if d.as_str() == value));
        assert_eq!(row.get(col::UNIT).as_text(), "mm[Hg]");
        assert_eq!(row.get(col::CATEGORY).as_text(), "vital-signs");
        assert_eq!(
            row.get(col::EFFECTIVE).as_text(),
            "2020-02-05T07:25:00-08:00"
        );
        assert_eq!(row.get(col::EFFECTIVE_ZONE).as_text(), "as-sent");
    }
    // A missing half costs that half.
    let o = one_omh(&data_point(
        "bp",
        "blood-pressure",
        "4.0",
        r#"{"systolic_blood_pressure":{"value":120,"unit":"mmHg"},"diastolic_blood_pressure":{"value":"n/a","unit":"mmHg"},"effective_time_frame":{"date_time":"2024-01-01T08:00:00Z"}}"#,
    ));
    let r: Vec<_> = rows(&o).collect();
    assert_eq!(r[0].get(col::VALUE).as_text(), "120");
    assert_eq!(r[1].get(col::VALUE), &Cell::Empty);
    assert_eq!(r[1].get(col::DATA_ABSENT_REASON).as_text(), "error");
    assert_eq!(
        r[1].get(col::WARNINGS).as_text(),
        "/body/diastolic_blood_pressure/value: expected a number, found a string"
    );
}

#[test]
fn oxygen_saturation_by_pulse_oximetry_has_both_codes() {
    let o = one_omh(&omh_sample(
        "oxygen-saturation",
        "2.0",
        "shouldPass/saturation-only",
    ));
    let codes: Vec<_> = o
        .code
        .coding
        .iter()
        .map(|c| c.code.as_deref().unwrap())
        .collect();
    assert_eq!(codes, ["59408-5", "2708-6"]);
    assert_eq!(rows(&o).next().unwrap().get(col::CODE).as_text(), "59408-5");
}

#[test]
fn the_envelope() {
    let point = data_point(
        "x",
        "heart-rate",
        "1.0",
        r#"{"heart_rate":{"value":72,"unit":"beats/min"},"effective_time_frame":{"date_time":"2024-01-01T00:00:00Z"}}"#,
    );
    let want = "vital-signs 8867-4 72 /min @2024-01-01T00:00:00Z";
    for text in [
        format!(r#"{{"data":[{point}]}}"#),
        point.clone(),
        format!("[{point}]"),
    ] {
        let all = parse_omh(&text).unwrap();
        assert_eq!(all.iter().map(summary).collect::<Vec<_>>(), [want]);
    }
    assert!(parse_omh("[]").unwrap().is_empty());
    assert!(parse_omh(r#"{"data":[]}"#).unwrap().is_empty());
    // Only the envelope's shape can fail a payload.
    let err = |t: &str| parse_omh(t).unwrap_err().to_string();
    assert_eq!(
        err(r#""P000001""#),
        "/: expected an array of data points or an object, found a string"
    );
    assert_eq!(
        err("42"),
        "/: expected an array of data points or an object, found a number"
    );
    assert_eq!(
        err(r#"{"data":{"a":1}}"#),
        "/data: expected an array, found an object"
    );
}

#[test]
fn what_is_not_a_known_data_point_is_skipped() {
    let good = data_point(
        "good",
        "heart-rate",
        "1.0",
        r#"{"heart_rate":{"value":61,"unit":"beats/min"},"effective_time_frame":{"date_time":"2024-01-01T00:00:00Z"}}"#,
    );
    let granola: Vec<String> = [
        "hk-correlation/1.0/shouldPass/with-quantity-samples",
        "hk-quantity-sample/1.0/shouldFail/empty-document",
        "hk-quantity-sample/1.0/shouldFail/invalid-quantity-type",
        "hk-quantity-sample/1.0/shouldFail/missing-quantity-type",
        "hk-quantity-sample/1.0/shouldFail/with-both-unit-value-and-count",
        "hk-quantity-sample/1.0/shouldPass/with-count",
        "hk-quantity-sample/1.0/shouldPass/with-metadata",
        "hk-quantity-sample/1.0/shouldPass/with-unit-value",
    ]
    .iter()
    .map(|case| {
        let (name, _) = case.split_once('/').unwrap();
        let body = fixture(&format!("openmhealth/granola/{case}.json"));
        format!(r#"{{"header":{{"id":"g","schema_id":{{"namespace":"granola","name":"{name}","version":"1.0"}}}},"body":{body}}}"#)
    })
    .collect();
    let others = [
        data_point("a", "blood-glucose-x", "1.0", "{}"),
        data_point(
            "b",
            "ambient-temperature",
            "1.0",
            r#"{"ambient_temperature":{"value":20,"unit":"C"}}"#,
        ),
        r#"{"header":{"id":"c"},"body":{}}"#.to_owned(),
        r#"{"header":{"id":"d","schema_id":"omh:heart-rate"},"body":{}}"#.to_owned(),
        r#"{"header":{"id":"e","schema_id":{"name":"heart-rate"}},"body":{}}"#.to_owned(),
        r#"{"header":"x","body":{}}"#.to_owned(),
        "1".to_owned(),
        "null".to_owned(),
        "[]".to_owned(),
    ];
    let all: Vec<String> = granola.into_iter().chain(others).chain([good]).collect();
    let parsed = parse_omh(&format!("[{}]", all.join(","))).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].id, "good");
}

#[test]
fn every_observation_is_strict_fhir_r4() {
    let mut texts: Vec<String> = SAMPLES
        .iter()
        .filter(|(_, want)| !want.is_empty())
        .map(|(case, _)| match case.strip_prefix("data-point/") {
            Some(_) => fixture(&format!("openmhealth/omh/{case}.json")),
            None => {
                let parts: Vec<&str> = case.splitn(3, '/').collect();
                omh_sample(parts[0], parts[1], parts[2])
            }
        })
        .collect();
    texts.push(data_point("g", "blood-glucose", "4.0", r#"{"blood_glucose":{"unit":"mg/dL","value":95},"specimen_source":"capillary blood","temporal_relationship_to_meal":"fasting","effective_time_frame":{"date_time":"2024-01-01T07:00:00"}}"#));
    texts.push(data_point("p", "physical-activity", "2.0", r#"{"activity_name":"walking","distance":{"value":3.1,"unit":"mi"},"effective_duration":{"value":44,"unit":"min"},"kcal_burned":{"value":160,"unit":"kcal"},"effective_time_frame":{"time_interval":{"start_date_time":"2015-02-06T06:25:00Z","end_date_time":"2015-02-06T07:25:00Z"}}}"#));
    let mut checked = 0;
    for text in texts {
        for o in parse_omh(&text).unwrap() {
            let mut out = Vec::new();
            medgate_core::fhir::write_observation(&mut out, &o).unwrap();
            let json = String::from_utf8(out).unwrap();
            let element: fhirbolt::element::Element<{ fhirbolt::FhirReleases::R4 }> =
                fhirbolt::json::from_str(&json, None).unwrap_or_else(|e| panic!("{e}\n{json}"));
            let _: fhirbolt::model::r4::resources::Observation =
                fhirbolt::element::from_element(element, None)
                    .unwrap_or_else(|e| panic!("{e}\n{json}"));
            checked += 1;
        }
    }
    assert_eq!(checked, 76, "74 samples that are not skipped, and 2 more");
}
