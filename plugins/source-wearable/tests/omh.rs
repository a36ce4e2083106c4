//! Open mHealth: real schema test data (openmhealth/schemas) and the bench workload's shape.

mod common;

use common::{data_point, fixture, num, omh_sample, parse_omh, summary};
use medgate_core::Value;

fn one(name: &str, version: &str, case: &str) -> (String, String, String, String) {
    let rows = parse_omh(&omh_sample(name, version, case)).unwrap();
    assert_eq!(rows.len(), 1, "{name}/{version}/{case}");
    summary(&rows).remove(0)
}

fn t(code: &str, value: &str, unit: &str, eff: &str) -> (String, String, String, String) {
    (code.into(), value.into(), unit.into(), eff.into())
}

#[test]
fn heart_rate_all_versions() {
    assert_eq!(
        one("heart-rate", "1.0", "shouldPass/heart-rate-only"),
        t("8867-4", "60", "/min", "")
    );
    assert_eq!(
        one("heart-rate", "1.0", "shouldPass/with-everything"),
        t("8867-4", "50", "/min", "2013-02-05T07:25:00Z")
    );
    assert_eq!(
        one(
            "heart-rate",
            "1.1",
            "shouldPass/with-temporal-relationship-to-sleep"
        ),
        t("8867-4", "50", "/min", "2013-02-05T07:25:00Z")
    );
    // 2.0: precision and offsets kept verbatim.
    assert_eq!(
        one("heart-rate", "2.0", "shouldPass/with-descriptive-statistic"),
        t("8867-4", "50.0", "/min", "2020-02-05T06:00:00+01:00")
    );
    assert_eq!(
        one(
            "heart-rate",
            "2.0",
            "shouldPass/with-temporal-relationship-to-sleep"
        ),
        t("8867-4", "67.5", "/min", "2020-02-05T07:25:00-08:00")
    );
}

#[test]
fn heart_rate_row_is_complete() {
    let rows = parse_omh(&omh_sample(
        "heart-rate",
        "1.0",
        "shouldPass/with-time-frame",
    ))
    .unwrap();
    let r = &rows[0];
    assert_eq!(r.patient_id, "P1");
    assert_eq!(r.source, "band");
    assert_eq!(r.id, "dp-1");
    assert_eq!(r.category.as_deref(), Some("vital-signs"));
    assert_eq!(r.code_system.as_deref(), Some("http://loinc.org"));
    assert_eq!(r.display.as_deref(), Some("Heart rate"));
}

#[test]
fn step_count_v3_and_bare_number_v1() {
    assert_eq!(
        one("step-count", "3.0", "shouldPass/valid-step-count"),
        t("55423-8", "10600", "{steps}", "2016-02-05T06:25:00Z")
    );
    for (case, value) in [
        ("with-average", "12500"),
        ("with-maximum", "20500"),
        ("with-session", "26000"),
    ] {
        assert_eq!(
            one("step-count", "3.0", &format!("shouldPass/{case}")).1,
            value
        );
    }
    let v1 = data_point(
        "s1",
        "step-count",
        "1.0",
        r#"{"step_count": 7939, "effective_time_frame": {"time_interval": {"start_date_time": "2015-10-21T00:00:00-06:00", "duration": {"value": 1, "unit": "d"}}}}"#,
    );
    let rows = parse_omh(&format!("[{v1}]")).unwrap();
    assert_eq!(
        summary(&rows),
        vec![t("55423-8", "7939", "{steps}", "2015-10-21T00:00:00-06:00")]
    );
    assert_eq!(rows[0].category.as_deref(), Some("activity"));
}

#[test]
fn blood_pressure_gives_two_rows() {
    let rows = parse_omh(&omh_sample(
        "blood-pressure",
        "4.0",
        "shouldPass/blood-pressure-only",
    ))
    .unwrap();
    assert_eq!(
        summary(&rows),
        vec![
            t("8480-6", "115", "mm[Hg]", "2020-02-05T07:25:00-08:00"),
            t("8462-4", "60", "mm[Hg]", "2020-02-05T07:25:00-08:00"),
        ]
    );
    assert_eq!(rows[0].id, "dp-1#0");
    assert_eq!(rows[1].id, "dp-1#1");
    assert_eq!(rows[0].display.as_deref(), Some("Systolic blood pressure"));
    assert_eq!(rows[1].display.as_deref(), Some("Diastolic blood pressure"));
    for (case, sys) in [
        ("with-descriptive-statistic", "160"),
        ("with-posture-and-location", "140"),
        ("with-posture-location-relation", "125"),
    ] {
        let rows = parse_omh(&omh_sample(
            "blood-pressure",
            "4.0",
            &format!("shouldPass/{case}"),
        ))
        .unwrap();
        assert_eq!((rows.len(), num(&rows[0].value)), (2, sys), "{case}");
    }
}

#[test]
fn body_weight_and_units() {
    assert_eq!(
        one("body-weight", "3.0", "shouldPass/body-weight-only"),
        t("29463-7", "50", "kg", "2020-02-05T09:45:00-08:00")
    );
    assert_eq!(
        one(
            "body-weight",
            "3.0",
            "shouldPass/with-descriptive-statistic"
        ),
        t("29463-7", "49.5", "kg", "2020-02-05T09:45:00-08:00")
    );
    // Semantically invalid per schema but readable: accepted, lb mapped to UCUM.
    assert_eq!(
        one(
            "body-weight",
            "3.0",
            "shouldFail/invalid-descriptive-statistic"
        ),
        t("29463-7", "115.5", "[lb_av]", "2013-02-05T07:25:00Z")
    );
}

#[test]
fn body_temperature_all_versions() {
    for version in ["1.0", "2.0", "3.0", "4.0"] {
        let (code, value, unit, _) =
            one("body-temperature", version, "shouldPass/valid-temperature");
        assert_eq!(
            (code.as_str(), value.as_str(), unit.as_str()),
            ("8310-5", "97", "[degF]")
        );
    }
    assert_eq!(
        one("body-temperature", "4.0", "shouldPass/valid-temperature"),
        t("8310-5", "97", "[degF]", "2023-02-05T07:25:00+01:00")
    );
    assert_eq!(
        one("body-temperature", "4.0", "shouldPass/basal-temperature"),
        t("8310-5", "96.5", "[degF]", "2023-02-05T06:25:00Z")
    );
    let celsius = data_point(
        "t",
        "body-temperature",
        "4.0",
        r#"{"body_temperature":{"value":36.60,"unit":"C"}}"#,
    );
    assert_eq!(
        summary(&parse_omh(&celsius).unwrap()),
        vec![t("8310-5", "36.60", "Cel", "")]
    );
}

#[test]
fn oxygen_saturation_code_depends_on_method() {
    assert_eq!(
        one("oxygen-saturation", "2.0", "shouldPass/saturation-only"),
        t("59408-5", "95", "%", "2013-02-05T07:25:00-08:00")
    );
    assert_eq!(
        one("oxygen-saturation", "1.0", "shouldPass/with-oxygen"),
        t("59408-5", "95", "%", "2013-02-05T07:25:00Z")
    );
    // No measurement_method: the general SpO2 code.
    assert_eq!(
        one(
            "oxygen-saturation",
            "2.0",
            "shouldPass/saturation-with-statistics"
        ),
        t("2708-6", "93", "%", "2020-02-05T06:00:00+01:00")
    );
}

#[test]
fn physical_activity_data_point_fixture() {
    let text = fixture("openmhealth/omh/data-point/1.0/shouldPass/valid-data-point.json");
    let rows = parse_omh(&text).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "123e4567-e89b-12d3-a456-426655440000");
    assert_eq!(rows[0].value, Value::Text("walking".into()));
    assert_eq!(rows[0].code_system.as_deref(), Some("urn:omh:schema"));
    // {date, part_of_day}: the date is kept as a date.
    assert_eq!(rows[0].effective.as_deref(), Some("2013-02-05"));
}

#[test]
fn data_wrapper_and_single_point_are_accepted() {
    let point = data_point(
        "x",
        "heart-rate",
        "1.0",
        r#"{"heart_rate":{"value":72,"unit":"beats/min"}}"#,
    );
    for text in [
        format!(r#"{{"data":[{point}]}}"#),
        point.clone(),
        format!("[{point}]"),
    ] {
        let rows = parse_omh(&text).unwrap();
        assert_eq!(summary(&rows), vec![t("8867-4", "72", "/min", "")]);
    }
    assert!(parse_omh("[]").unwrap().is_empty());
    assert!(parse_omh(r#"{"data":[]}"#).unwrap().is_empty());
}

#[test]
fn unknown_schemas_are_skipped() {
    let hk = fixture("openmhealth/granola/hk-quantity-sample/1.0/shouldPass/with-unit-value.json");
    let unknown = [
        data_point("a", "blood-glucose-x", "1.0", "{}"),
        // granola is a different namespace: skipped even though it carries a heart rate.
        format!(
            r#"{{"header":{{"id":"g","schema_id":{{"namespace":"granola","name":"hk-quantity-sample","version":"1.0"}}}},"body":{hk}}}"#
        ),
        data_point(
            "b",
            "heart-rate",
            "1.0",
            r#"{"heart_rate":{"value":61,"unit":"beats/min"}}"#,
        ),
    ];
    let rows = parse_omh(&format!("[{}]", unknown.join(","))).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, "b");
}

#[test]
fn bench_workload_shape() {
    // As written by bench/gen/gen_fhir.py `omh_points` (json.dump, compact separators).
    let text = r#"[{"header":{"id":"P000001-omh-00001","creation_date_time":"2024-01-01T00:00:00+08:00","acquisition_provenance":{"source_name":"SyntheticBand","modality":"sensed"},"user_id":"P000001","schema_id":{"namespace":"omh","name":"heart-rate","version":"1.0"}},"body":{"heart_rate":{"value":72,"unit":"beats/min"},"effective_time_frame":{"date_time":"2024-01-01T00:00:00+08:00"}}},{"header":{"id":"P000001-omh-00002","creation_date_time":"2024-01-01T00:15:00+08:00","acquisition_provenance":{"source_name":"SyntheticBand","modality":"sensed"},"user_id":"P000001","schema_id":{"namespace":"omh","name":"step-count","version":"2.0"}},"body":{"step_count":{"value":1234,"unit":"steps"},"effective_time_frame":{"time_interval":{"start_date_time":"2024-01-01T00:15:00+08:00","end_date_time":"2024-01-01T00:30:00+08:00"}}}}]"#;
    let rows = medgate_source_wearable::parse(
        &medgate_source_wearable::PayloadFormat::OpenMHealth,
        text.as_bytes(),
        &medgate_source_wearable::ParseContext::new("wearable", "P-requested"),
    )
    .unwrap();
    assert_eq!(
        summary(&rows),
        vec![
            t("8867-4", "72", "/min", "2024-01-01T00:00:00+08:00"),
            t("55423-8", "1234", "{steps}", "2024-01-01T00:15:00+08:00"),
        ]
    );
    // The requested id wins over the payload's user_id.
    assert!(rows.iter().all(|r| r.patient_id == "P-requested"));
    assert_eq!(rows[1].id, "P000001-omh-00002");
}

#[test]
fn precision_is_kept() {
    let point = data_point(
        "p",
        "body-weight",
        "3.0",
        r#"{"body_weight":{"value":98.60,"unit":"kg"}}"#,
    );
    let tiny = data_point(
        "q",
        "heart-rate",
        "1.0",
        r#"{"heart_rate":{"value":1e-22,"unit":"beats/min"}}"#,
    );
    let rows = parse_omh(&format!("[{point},{tiny}]")).unwrap();
    assert_eq!(num(&rows[0].value), "98.60");
    assert_eq!(num(&rows[1].value), "1e-22");
    assert_eq!(serde_json::to_string(&rows[0].value).unwrap(), "98.60");
}

fn err(name: &str, version: &str, case: &str) -> String {
    parse_omh(&omh_sample(name, version, case))
        .unwrap_err()
        .to_string()
}

#[test]
fn structurally_unreadable_samples_are_refused_with_pointers() {
    for (name, version) in [
        ("heart-rate", "1.0"),
        ("step-count", "3.0"),
        ("blood-pressure", "4.0"),
        ("body-weight", "3.0"),
        ("body-temperature", "4.0"),
    ] {
        let key = name.replace('-', "_");
        let key = if name == "blood-pressure" {
            "systolic_blood_pressure".into()
        } else {
            key
        };
        assert_eq!(
            err(name, version, "shouldFail/empty-document"),
            format!("/0/body/{key}: missing")
        );
    }
    assert_eq!(
        err("step-count", "3.0", "shouldFail/string-step-count-value"),
        "/0/body/step_count/value: expected a number, found a string"
    );
    assert_eq!(
        err("body-weight", "3.0", "shouldFail/missing-body-weight-value"),
        "/0/body/body_weight/value: missing"
    );
    assert_eq!(
        err("body-weight", "3.0", "shouldFail/missing-body-weight-unit"),
        "/0/body/body_weight/unit: missing"
    );
    assert_eq!(
        err("body-weight", "3.0", "shouldFail/invalid-time-frame"),
        "/0/body/effective_time_frame: expected date_time or time_interval"
    );
    let header = |f: &str| {
        parse_omh(&fixture(&format!(
            "openmhealth/omh/data-point/1.0/shouldFail/{f}.json"
        )))
        .unwrap_err()
        .to_string()
    };
    assert_eq!(header("invalid-header"), "/header/id: missing");
    assert_eq!(header("missing-header"), "/header: missing");
    assert_eq!(header("missing-body"), "/body: missing");
    assert!(header("empty-document").starts_with("/: expected an array of data points"));
}

#[test]
fn semantically_invalid_samples_are_accepted_as_sent() {
    // Wrong units are kept verbatim (not mapped, not invented); missing time frames give None.
    assert_eq!(
        one("heart-rate", "2.0", "shouldFail/incorrect-unit"),
        t("8867-4", "60", "beat/min", "2020-02-05T07:25:00Z")
    );
    assert_eq!(
        one(
            "heart-rate",
            "2.0",
            "shouldFail/missing-effective-time-frame"
        ),
        t("8867-4", "60", "/min", "")
    );
    assert_eq!(
        one("body-temperature", "4.0", "shouldFail/invalid-unit"),
        t("8310-5", "36", "G", "2013-02-05T07:25:00Z")
    );
    assert_eq!(one("body-weight", "3.0", "shouldFail/invalid-unit").2, "km");
    assert_eq!(
        one("oxygen-saturation", "2.0", "shouldFail/invalid-unit").2,
        "g"
    );
    let bp = parse_omh(&omh_sample(
        "blood-pressure",
        "4.0",
        "shouldFail/invalid-unit",
    ))
    .unwrap();
    assert_eq!(bp[0].unit.as_deref(), Some("mmH"));
    assert_eq!(bp[1].unit.as_deref(), Some("mm[Hg]"));
    // {date, part_of_day} is invalid for blood-pressure 4.0 but still has a usable date.
    let bp = parse_omh(&omh_sample(
        "blood-pressure",
        "4.0",
        "shouldFail/invalid-timeframe-format",
    ))
    .unwrap();
    assert_eq!(bp[0].effective.as_deref(), Some("2013-02-05"));
    assert_eq!(
        one("step-count", "3.0", "shouldFail/with-date-time").3,
        "2013-02-05T07:25:00.123Z"
    );
}

#[test]
fn wrong_shape_names_the_pointer_of_the_point() {
    let good = data_point(
        "g",
        "heart-rate",
        "1.0",
        r#"{"heart_rate":{"value":60,"unit":"beats/min"}}"#,
    );
    let no_schema = r#"{"header":{"id":"x"},"body":{}}"#;
    let text = format!("[{good},{good},{good},{no_schema}]");
    assert_eq!(
        parse_omh(&text).unwrap_err().to_string(),
        "/3/header/schema_id: missing"
    );
    let in_data = format!(r#"{{"data":[{good},{no_schema}]}}"#);
    assert_eq!(
        parse_omh(&in_data).unwrap_err().to_string(),
        "/data/1/header/schema_id: missing"
    );
    assert_eq!(
        parse_omh(r#"[{"header":{"id":"x","schema_id":"omh:heart-rate"},"body":{}}]"#)
            .unwrap_err()
            .to_string(),
        "/0/header/schema_id: expected an object, found a string"
    );
    assert_eq!(
        parse_omh("[1]").unwrap_err().to_string(),
        "/0: expected an object, found a number"
    );
    assert_eq!(
        parse_omh(r#""P000001""#).unwrap_err().to_string(),
        "/: expected an array of data points or an object, found a string"
    );
    assert_eq!(
        parse_omh(r#"{"data":{"a":1}}"#).unwrap_err().to_string(),
        "/data: expected an array, found an object"
    );
}

#[test]
fn schemas_without_samples_follow_the_same_rules() {
    let points = [
        data_point(
            "r",
            "respiratory-rate",
            "1.0",
            r#"{"respiratory_rate":{"value":16,"unit":"breaths/min"}}"#,
        ),
        data_point(
            "h",
            "body-height",
            "1.0",
            r#"{"body_height":{"value":1.70,"unit":"m"}}"#,
        ),
        data_point(
            "i",
            "body-height",
            "1.0",
            r#"{"body_height":{"value":67,"unit":"in"}}"#,
        ),
        data_point(
            "b",
            "body-mass-index",
            "1.0",
            r#"{"body_mass_index":{"value":21.48,"unit":"kg/m2"}}"#,
        ),
    ];
    let rows = parse_omh(&format!("[{}]", points.join(","))).unwrap();
    assert_eq!(
        summary(&rows),
        vec![
            t("9279-1", "16", "/min", ""),
            t("8302-2", "1.70", "m", ""),
            t("8302-2", "67", "[in_i]", ""),
            t("39156-5", "21.48", "kg/m2", ""),
        ]
    );
    // Height has several possible units, so one must be given.
    let no_unit = data_point(
        "h",
        "body-height",
        "1.0",
        r#"{"body_height":{"value":1.7}}"#,
    );
    assert_eq!(
        parse_omh(&no_unit).unwrap_err().to_string(),
        "/body/body_height/unit: missing"
    );
}
