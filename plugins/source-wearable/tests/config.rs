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
fn every_new_mapping_key_is_accepted() {
    let c = cfg(r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = "/results"
[mapping.fields]
id = "/id"
status = "/status"
category = "/cat"
code_system = "/sys"
code = "/code"
display = "/name"
value = "/value"
comparator = "/cmp"
unit = "/unit"
unit_system = "/unit_sys"
interpretation = "/flag"
reference_low = "/low"
reference_high = "/high"
reference_text = "/range"
effective = "/date"
effective_time = "/time"
effective_end = "/end_date"
effective_end_time = "/end_time"
duration = "/duration"
issued = "/reported"
device = "/device"
[mapping.constants]
status = "final"
category = "laboratory"
code_system = "http://loinc.org"
code = "2339-0"
display = "Glucose"
unit = "mg/dL"
unit_system = "http://unitsofmeasure.org"
reference_low = "70"
reference_high = "99"
reference_text = "70-99 mg/dL"
duration_unit = "sec"
device = "GlucoCheck 3"
"#);
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    let m = c.mapping.unwrap();
    assert_eq!(m.fields.effective_end_time.as_deref(), Some("/end_time"));
    assert_eq!(m.fields.unit_system.as_deref(), Some("/unit_sys"));
    assert_eq!(m.constants.duration_unit.as_deref(), Some("sec"));
}

#[test]
fn constants_are_checked_once_at_start_up() {
    let text = r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = ""
fields = { value = "/v", duration = "/d", issued = "issued" }
constants = { status = "done", reference_low = "low", reference_high = "1,5" }
"#;
    assert_eq!(
        issues(text),
        [
            ("mapping.fields.issued".to_owned(), POINTER.to_owned()),
            (
                "mapping.constants.status".to_owned(),
                "must be a FHIR observation status (registered, preliminary, final, amended, corrected, cancelled, entered-in-error, unknown)".to_owned()
            ),
            ("mapping.constants.reference_low".to_owned(), "must be a number".to_owned()),
            ("mapping.constants.reference_high".to_owned(), "must be a number".to_owned()),
            (
                "mapping.constants.duration_unit".to_owned(),
                "is required when fields.duration is set".to_owned()
            ),
        ]
    );
    let bad_unit = r#"
url = "http://h/{patient_id}"
format = "mapping"
[mapping]
records = ""
fields = { value = "/v" }
constants = { duration_unit = "kg", reference_low = "+.5" }
"#;
    assert_eq!(
        issues(bad_unit),
        [(
            "mapping.constants.duration_unit".to_owned(),
            "must be a duration unit: ms, s, min, h, d, wk, mo or a".to_owned()
        )]
    );
}

const POINTER: &str = "must be a JSON Pointer: \"\" or starting with \"/\" (escape ~ as ~0)";

#[test]
fn registers_its_kind() {
    let mut registry = medgate_core::Registry::new();
    medgate_source_wearable::register(&mut registry);
    assert_eq!(registry.source_kinds(), ["wearable-json"]);
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/example.toml");
    let doc: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = Vec::new();
    for entry in doc["sources"].as_array().unwrap() {
        let mut entry = entry.as_table().unwrap().clone();
        if entry["kind"].as_str() != Some("wearable-json") {
            continue;
        }
        names.push(entry["name"].as_str().unwrap().to_owned());
        for key in medgate_core::SourceCommon::KEYS {
            entry.remove(key);
        }
        let c: WearableConfig = entry.try_into().unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }
    assert_eq!(names, ["wearable", "scale", "sleep"]);
}
