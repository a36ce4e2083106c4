//! Config parsing (deny_unknown_fields) and `validate()` issues.

use medgate_core::SourceConfig;
use medgate_source_wearable::{Format, WearableConfig};

fn cfg(text: &str) -> WearableConfig {
    toml::from_str(text).unwrap()
}

/// `(key, message)` of every issue.
fn issues(text: &str) -> Vec<(String, String)> {
    cfg(text)
        .validate()
        .into_iter()
        .map(|i| (i.key, i.message))
        .collect()
}

fn keys(text: &str) -> Vec<String> {
    issues(text).into_iter().map(|(k, _)| k).collect()
}

#[test]
fn openmhealth_minimal_is_valid() {
    let c = cfg(r#"
url = "http://127.0.0.1:9102/omh/{patient_id}"
format = "openmhealth"
"#);
    assert!(c.validate().is_empty());
    assert_eq!(c.format, Format::OpenMHealth);
    assert_eq!(SourceConfig::format(&c), Some("openmhealth"));
    assert_eq!(c.max_depth, 64);
}

#[test]
fn full_mapping_example_is_valid() {
    let c = cfg(r#"
url = "http://127.0.0.1:9102/omh/{patient_id}"
format = "mapping"
max_depth = 32
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
"#);
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    assert_eq!(SourceConfig::format(&c), Some("mapping"));
    assert_eq!(c.max_depth, 32);
    let m = c.mapping.unwrap();
    assert_eq!(m.records, "/weight");
    assert_eq!(m.fields.effective_time.as_deref(), Some("/time"));
    assert_eq!(m.constants.code.as_deref(), Some("29463-7"));
}

#[test]
fn unknown_keys_and_formats_are_rejected_by_serde() {
    let bad = [
        "url = \"http://h/{patient_id}\"\nformat = \"openmhealth\"\nextra = 1\n",
        "url = \"http://h/{patient_id}\"\nformat = \"fhir\"\n",
        "format = \"openmhealth\"\n",
        "url = \"http://h/{patient_id}\"\n",
        "url = \"http://h/{patient_id}\"\nformat = \"mapping\"\n[mapping]\nrecords = \"\"\nfields = { value = \"/v\", weight = \"/w\" }\n",
        // There is deliberately no constant value.
        "url = \"http://h/{patient_id}\"\nformat = \"mapping\"\n[mapping]\nrecords = \"\"\nfields = { value = \"/v\" }\nconstants = { value = \"1\" }\n",
    ];
    for text in bad {
        let e = toml::from_str::<WearableConfig>(text)
            .unwrap_err()
            .to_string();
        assert!(!e.is_empty(), "{text}");
    }
    let e = toml::from_str::<WearableConfig>(bad[0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `extra`"), "{e}");
}

#[test]
fn url_template_is_checked() {
    assert_eq!(
        keys("url = \"http://h/omh\"\nformat = \"openmhealth\"\n"),
        ["url"]
    );
    assert_eq!(
        keys("url = \"ftp://h/{patient_id}\"\nformat = \"openmhealth\"\n"),
        ["url"]
    );
}

#[test]
fn max_depth_bounds() {
    for (depth, ok) in [(0, false), (1, true), (128, true), (129, false)] {
        let text = format!(
            "url = \"http://h/{{patient_id}}\"\nformat = \"openmhealth\"\nmax_depth = {depth}\n"
        );
        assert_eq!(issues(&text).is_empty(), ok, "{depth}");
        if !ok {
            assert_eq!(keys(&text), ["max_depth"]);
        }
    }
}

#[test]
fn mapping_presence_rules() {
    assert_eq!(
        issues("url = \"http://h/{patient_id}\"\nformat = \"mapping\"\n"),
        [(
            "mapping".to_owned(),
            "required when format = \"mapping\"".to_owned()
        )]
    );
    assert_eq!(
        keys("url = \"http://h/{patient_id}\"\nformat = \"openmhealth\"\n[mapping]\nrecords = \"\"\nfields = { value = \"/v\" }\n"),
        ["mapping"]
    );
}

#[test]
fn pointers_and_value_are_checked() {
    let text = r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = "weight"
fields = { id = "logId", code = "/ok", effective = "/a~2b" }
"#;
    assert_eq!(
        keys(text),
        [
            "mapping.records",
            "mapping.fields.id",
            "mapping.fields.effective",
            "mapping.fields.value",
        ]
    );
    let (_, msg) = issues(text).remove(0);
    assert!(msg.contains("JSON Pointer"), "{msg}");
}

#[test]
fn registers_its_kind() {
    let mut registry = medgate_core::Registry::new();
    medgate_source_wearable::register(&mut registry);
    assert_eq!(registry.source_kinds(), ["wearable-json"]);
}
