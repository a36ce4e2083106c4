//! Hostile and broken bodies: never a panic, always a message that locates the problem.

mod common;

use common::parse_omh;
use medgate_core::Error;
use medgate_source_wearable::{parse, ParseContext, ParseError, PayloadFormat};

#[test]
fn deep_nesting_hits_the_recursion_limit() {
    let deep = "[".repeat(100_000);
    let e = parse_omh(&deep).unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::TooDeep {
                max_depth: 64,
                line: 1,
                column: 65
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("recursion limit exceeded"), "{e}");
    // Closed and inside objects too, and at the configured maximum of 128.
    let nested = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
    let ctx = ParseContext {
        max_depth: 128,
        ..ParseContext::new("band", "P1")
    };
    let e = parse(&PayloadFormat::OpenMHealth, nested.as_bytes(), &ctx).unwrap_err();
    assert!(e.to_string().contains("recursion limit exceeded"), "{e}");
    // A larger configured depth is capped at serde_json's 128.
    let ctx = ParseContext {
        max_depth: 100_000,
        ..ctx
    };
    let e = parse(&PayloadFormat::OpenMHealth, deep.as_bytes(), &ctx).unwrap_err();
    assert!(
        matches!(e, ParseError::TooDeep { max_depth: 128, .. }),
        "{e:?}"
    );
}

#[test]
fn nesting_within_the_limit_is_fine() {
    // Deep but allowed nesting in an ignored member does not disturb parsing.
    let extra = format!("{}{}", "[".repeat(60), "]".repeat(60));
    let text = format!(
        r#"[{{"header":{{"id":"d","schema_id":{{"namespace":"omh","name":"heart-rate","version":"1.0"}}}},"body":{{"heart_rate":{{"value":70,"unit":"beats/min"}},"extra":{extra}}}}}]"#
    );
    assert_eq!(parse_omh(&text).unwrap().len(), 1);
}

#[test]
fn not_json_reports_line_1() {
    for body in [
        "<html><body>502 Bad Gateway</body></html>",
        "",
        "   ",
        "nul",
        "[1,]",
    ] {
        let e = parse_omh(body).unwrap_err();
        assert!(matches!(e, ParseError::Json(_)), "{body:?}: {e:?}");
        assert!(e.to_string().contains("line 1"), "{body:?}: {e}");
    }
    let e = parse_omh("[\n{\"header\": }").unwrap_err();
    assert!(e.to_string().contains("line 2 column 12"), "{e}");
}

#[test]
fn trailing_garbage_and_bad_utf8_are_refused() {
    assert!(parse_omh("[] []")
        .unwrap_err()
        .to_string()
        .contains("trailing characters"));
    let bad = b"[\"\xff\xfe\"]";
    let e = parse(
        &PayloadFormat::OpenMHealth,
        bad,
        &ParseContext::new("b", "P1"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn utf8_bom_is_tolerated() {
    let text = "\u{feff}[]";
    assert!(parse_omh(text).unwrap().is_empty());
}

#[test]
fn unreadable_values_are_warnings_without_payload_content() {
    // Patient data in the wrong places: the value, the unit, a time, a duration.
    let all = parse_omh(r#"[
      {"header":{"id":"x","schema_id":{"namespace":"omh","name":"heart-rate"}},"body":{"heart_rate":{"value":"SECRET-P000001","unit":"SECRET-P000002"},"effective_time_frame":{"date_time":"SECRET-P000003"}}},
      {"header":{"id":"y","creation_date_time":"SECRET-P000004","schema_id":{"namespace":"omh","name":"step-count"}},"body":{"step_count":{"value":1e999999999,"unit":"steps"},"effective_time_frame":{"time_interval":{"start_date_time":"2024-01-01T00:00:00Z","duration":{"value":1e999999999,"unit":"SECRET-P000005"}}}}},
      {"header":{"id":"z","schema_id":{"namespace":"omh","name":"sleep-duration"}},"body":{"sleep_duration":{"value":8,"unit":"h"},"effective_time_frame":{"time_interval":{"start_date_time":"2024-01-01T00:00:00Z","duration":{"value":9e18,"unit":"wk"}}}}}
    ]"#)
    .unwrap();
    let warnings: Vec<String> = all
        .iter()
        .flat_map(|o| o.warnings.iter().map(|w| w.to_string()))
        .collect();
    assert_eq!(
        warnings,
        [
            "/0/body/heart_rate/value: expected a number, found a string",
            "/0/body/effective_time_frame/date_time: not a date or date-time (expected YYYY[-MM[-DD[Thh:mm[:ss[.f]][Z|±hh:mm]]]])",
            "/1/header/creation_date_time: not a date or date-time (expected YYYY[-MM[-DD[Thh:mm[:ss[.f]][Z|±hh:mm]]]])",
            "/1/body/effective_time_frame/time_interval/duration/unit: not a duration unit",
            "/1/body/effective_time_frame/time_interval: no end_date_time or duration: the period is open",
            "/2/body/effective_time_frame/time_interval/duration: duration moves the time out of range",
        ]
    );
    assert_eq!(all[0].value, medgate_core::Value::None);
    assert!(all[0].data_absent_reason.is_some());
    // A number beyond any float is kept as written, never rounded or refused.
    let medgate_core::Value::Quantity(q) = &all[1].value else {
        panic!()
    };
    assert_eq!(q.value.as_ref().unwrap().as_str(), "1e999999999");
    // Errors of the envelope name positions, not content.
    match parse_omh(r#""SECRET-P000006""#)
        .unwrap_err()
        .into_core("band")
    {
        Error::Malformed { name, detail } => {
            assert_eq!(name, "band");
            assert_eq!(
                detail,
                "/: expected an array of data points or an object, found a string"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz: every prefix of a real payload, and byte flips.
    let base = common::omh_sample(
        "blood-pressure",
        "4.0",
        "shouldPass/with-descriptive-statistic",
    );
    let bytes = base.as_bytes();
    for end in 0..bytes.len() {
        let _ = parse(
            &PayloadFormat::OpenMHealth,
            &bytes[..end],
            &ParseContext::new("b", "P"),
        );
    }
    for i in 0..bytes.len() {
        for flip in [b'"', b'{', b'[', b'}', b'\\', 0xff, b'~', b'/'] {
            let mut copy = bytes.to_vec();
            copy[i] = flip;
            let _ = parse(
                &PayloadFormat::OpenMHealth,
                &copy,
                &ParseContext::new("b", "P"),
            );
        }
    }
    assert_eq!(parse_omh(&base).unwrap().len(), 1);
    // And the mapping reader over the same bytes.
    let mapping: medgate_source_wearable::WearableConfig = toml::from_str(
        "url = \"http://h/{patient_id}\"\nformat = \"mapping\"\n[mapping]\nrecords = \"\"\nfields = { value = \"/body/systolic_blood_pressure/value\", effective = \"/body/effective_time_frame/time_interval/start_date_time\", duration = \"/body/x\", reference_low = \"/header/id\" }\nconstants = { duration_unit = \"ms\" }\n",
    )
    .unwrap();
    let format = mapping.payload_format().unwrap();
    for i in 0..bytes.len() {
        for flip in [b'"', b'{', b'[', b'}', b'\\', 0xff, b'~', b'/', b'-'] {
            let mut copy = bytes.to_vec();
            copy[i] = flip;
            let _ = parse(&format, &copy, &ParseContext::new("b", "P"));
        }
    }
}
