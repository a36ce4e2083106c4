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
fn errors_become_malformed_without_payload_content() {
    let e = parse_omh(r#"[{"header":{"id":"x","schema_id":{"namespace":"omh","name":"heart-rate"}},"body":{"heart_rate":{"value":"SECRET-P000001","unit":"beats/min"}}}]"#)
        .unwrap_err();
    let text = e.to_string();
    assert!(!text.contains("SECRET"), "{text}");
    match e.into_core("band") {
        Error::Malformed { name, detail } => {
            assert_eq!(name, "band");
            assert_eq!(
                detail,
                "/0/body/heart_rate/value: expected a number, found a string"
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
    assert_eq!(parse_omh(&base).unwrap().len(), 2);
}
