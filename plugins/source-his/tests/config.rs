//! Config parsing and validation: each issue's key.

use medgate_core::{ConfigIssue, Registry, SourceConfig};
use medgate_source_his::{register, HisConfig, HisFormat};

fn config(text: &str) -> HisConfig {
    toml::from_str(text).unwrap()
}

fn keys(issues: &[ConfigIssue]) -> Vec<String> {
    issues.iter().map(|i| i.key.clone()).collect()
}

const URL: &str = r#"url = "http://127.0.0.1:9101/fhir/Observation?patient={patient_id}""#;

#[test]
fn valid_fhir_config() {
    let c = config(&format!("{URL}\nformat = \"fhir-r4\"\nmax_depth = 32"));
    assert!(c.validate().is_empty());
    assert_eq!(c.format(), Some("fhir-r4"));
    assert_eq!(c.max_depth(), 32);
    assert_eq!(
        config(&format!("{URL}\nformat = \"cda\"")).format(),
        Some("cda")
    );
    assert_eq!(config(&format!("{URL}\nformat = \"cda\"")).max_depth(), 64);
}

#[test]
fn unknown_format_and_keys_are_serde_errors() {
    let err = toml::from_str::<HisConfig>(&format!("{URL}\nformat = \"hl7v2\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `hl7v2`"), "{err}");
    let err = toml::from_str::<HisConfig>(&format!("{URL}\nformat = \"cda\"\nextra = 1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `extra`"), "{err}");
    let err = toml::from_str::<HisConfig>(&format!(
        "{URL}\nformat = \"mapping\"\n[mapping]\nrecord = \"A\"\n[mapping.fields]\nvalue = \"V\"\n[mapping.constants]\nvalue = \"1\""
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `value`"), "{err}");
}

#[test]
fn url_and_depth_issues() {
    let c = config("url = \"ftp://x/{patient_id}\"\nformat = \"fhir-r4\"\nmax_depth = 0");
    assert_eq!(keys(&c.validate()), vec!["url", "max_depth"]);
    let c = config("url = \"http://x/fixed\"\nformat = \"fhir-r4\"");
    assert_eq!(keys(&c.validate()), vec!["url"]);
}

#[test]
fn mapping_presence_issues() {
    let c = config(&format!("{URL}\nformat = \"mapping\""));
    assert_eq!(keys(&c.validate()), vec!["mapping"]);
    assert_eq!(c.format(), Some("mapping"));
    let c = config(&format!(
        "{URL}\nformat = \"cda\"\n[mapping]\nrecord = \"A/B\"\n[mapping.fields]\nvalue = \"V\""
    ));
    assert_eq!(keys(&c.validate()), vec!["mapping"]);
}

#[test]
fn empty_record_gives_exactly_one_issue() {
    let c = config(&format!(
        "{URL}\nformat = \"mapping\"\n[mapping]\nrecord = \"\"\n[mapping.fields]\nvalue = \"V\""
    ));
    assert_eq!(keys(&c.validate()), vec!["mapping.record"]);
    let c = config(&format!(
        "{URL}\nformat = \"mapping\"\n[mapping]\nrecord = \"A//B\"\n[mapping.fields]\nvalue = \"V\""
    ));
    assert_eq!(keys(&c.validate()), vec!["mapping.record"]);
}

#[test]
fn invalid_field_paths_name_the_field() {
    let c = config(&format!(
        "{URL}\nformat = \"mapping\"\n[mapping]\nrecord = \"R/Rec\"\n[mapping.fields]\n\
         value = \"V//W\"\nunit = \"@u/V\"\ncode = \"T/@\"\nid = \"@id\"\ndisplay = \"T/@a\""
    ));
    assert_eq!(
        keys(&c.validate()),
        vec![
            "mapping.fields.code",
            "mapping.fields.value",
            "mapping.fields.unit"
        ]
    );
    let ok = config(&format!(
        "{URL}\nformat = \"mapping\"\n[mapping]\nrecord = \"R/Rec\"\n[mapping.fields]\n\
         value = \"V\"\nunit = \"V/@u\"\nid = \"@id\"\n[mapping.constants]\ncategory = \"laboratory\""
    ));
    assert!(ok.validate().is_empty());
    assert!(ok.parser().is_some());
}

#[test]
fn register_adds_the_kind() {
    let mut registry = Registry::new();
    register(&mut registry);
    assert_eq!(registry.source_kinds(), vec!["his-xml"]);
    assert_eq!(HisFormat::FhirR4.as_str(), "fhir-r4");
}

#[test]
fn new_mapping_keys_are_accepted_and_checked() {
    let ok = config(&format!(
        "{URL}\nformat = \"mapping\"\n[mapping]\nrecord = \"Lab/R\"\n[mapping.fields]\n\
         value = \"V\"\nstatus = \"@status\"\nunit_system = \"V/@system\"\ncomparator = \"V/@cmp\"\n\
         interpretation = \"Flag\"\nreference_low = \"Ref/@low\"\nreference_high = \"Ref/@high\"\n\
         reference_text = \"Ref\"\neffective_end = \"Until\"\n\
         [mapping.constants]\nstatus = \"final\"\nunit_system = \"http://unitsofmeasure.org\""
    ));
    assert!(ok.validate().is_empty(), "{:?}", ok.validate());
    assert!(ok.parser().is_some());

    let bad = config(&format!(
        "{URL}\nformat = \"mapping\"\n[mapping]\nrecord = \"Lab/R\"\n[mapping.fields]\n\
         value = \"V\"\nreference_low = \"Ref//@low\"\neffective_end = \"@\"\n\
         [mapping.constants]\nstatus = \"done\""
    ));
    assert_eq!(
        keys(&bad.validate()),
        vec![
            "mapping.constants.status",
            "mapping.fields.reference_low",
            "mapping.fields.effective_end"
        ]
    );
    // Per-record keys have no constant.
    let err = toml::from_str::<HisConfig>(&format!(
        "{URL}\nformat = \"mapping\"\n[mapping]\nrecord = \"A\"\n[mapping.fields]\nvalue = \"V\"\n[mapping.constants]\ncomparator = \"<\""
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `comparator`"), "{err}");
}
