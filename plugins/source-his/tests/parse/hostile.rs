//! Input that is not well-formed, hostile, or not the configured format: an error with a
//! position, never a panic, never a patient identifier.

use std::sync::Arc;

use medgate_source_his::{parse, CompiledMapping, MappingConfig, ParseContext, ParseError, Parser};

use crate::util::{ctx, fhir, fixture};

fn fhir_err(bytes: &[u8]) -> String {
    fhir(bytes).unwrap_err().to_string()
}

#[test]
fn wrong_roots_and_namespaces_are_named() {
    let err = fhir_err(&fixture("fhir/patient-example.xml"));
    assert!(
        err.contains("neither a FHIR Bundle nor an Observation"),
        "{err}"
    );
    let err = fhir_err(&fixture("fhir/logicalxml-nonamespace.xml"));
    assert!(err.contains("not in the FHIR namespace"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    let err = fhir_err(br#"<OperationOutcome xmlns="http://hl7.org/fhir"/>"#);
    assert!(err.contains("OperationOutcome"), "{err}");
    let err = fhir_err(br#"<Bundle xmlns="http://hl7.org/fhir/wrong"/>"#);
    assert!(err.contains("namespace"), "{err}");
}

/// A mapping whose record path matches a validator case's root, so the parser reads into
/// the body and meets the defect.
fn mapping(record: &str) -> Parser {
    let config: MappingConfig = toml::from_str(&format!(
        "record = \"{record}\"\n[fields]\nvalue = \"status/@value\"\n"
    ))
    .unwrap();
    Parser::Mapping(Arc::new(CompiledMapping::compile(&config).unwrap()))
}

#[test]
fn validator_bad_inputs_give_clear_errors() {
    let err = parse(
        &mapping("List"),
        &fixture("fhir/list-bad-syntax.xml"),
        &ctx(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("malformed XML at line 7"), "{err}");

    let err = parse(
        &mapping("Encounter"),
        &fixture("fhir/xml-bad-entities.xml"),
        &ctx(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("undeclared entity reference &reg;"), "{err}");
    assert!(err.contains("line 6"), "{err}");

    let err = fhir_err(&fixture("fhir/japanese-utf8.xml"));
    assert!(
        err.contains("malformed XML") && err.contains("line "),
        "{err}"
    );
}

#[test]
fn doctype_and_entities_are_refused_in_every_format() {
    let laughs = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<Bundle xmlns="http://hl7.org/fhir">&lol2;</Bundle>"#;
    let err = fhir_err(laughs);
    assert!(
        err.contains("DOCTYPE declarations are not allowed"),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");

    let external = br#"<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><ClinicalDocument xmlns="urn:hl7-org:v3">&xxe;</ClinicalDocument>"#;
    let err = parse(&Parser::Cda, external, &ctx()).unwrap_err();
    assert!(matches!(err, ParseError::Refused { .. }), "{err}");

    let undeclared =
        br#"<Observation xmlns="http://hl7.org/fhir"><id value="&xxe;"/></Observation>"#;
    assert!(matches!(
        fhir(undeclared).unwrap_err(),
        ParseError::Refused { .. }
    ));
    let undeclared = br#"<ClinicalDocument xmlns="urn:hl7-org:v3"><component><observation><value>&xxe;</value></observation></component></ClinicalDocument>"#;
    assert!(matches!(
        parse(&Parser::Cda, undeclared, &ctx()).unwrap_err(),
        ParseError::Refused { .. }
    ));
}

#[test]
fn deep_nesting_fails_fast_in_every_format() {
    let deep = |open: &str, close: &str| {
        let mut doc = String::from(open);
        doc.push_str(&"<a>".repeat(10_000));
        doc.push_str(&"</a>".repeat(10_000));
        doc.push_str(close);
        doc
    };
    let doc = deep(r#"<Bundle xmlns="http://hl7.org/fhir">"#, "</Bundle>");
    assert!(fhir_err(doc.as_bytes()).contains("nesting depth exceeds 64"));
    let doc = deep(
        r#"<ClinicalDocument xmlns="urn:hl7-org:v3"><component><observation><value>"#,
        "</value></observation></component></ClinicalDocument>",
    );
    let err = parse(&Parser::Cda, doc.as_bytes(), &ctx()).unwrap_err();
    assert!(
        err.to_string().contains("nesting depth exceeds 64"),
        "{err}"
    );
    let shallow = ParseContext {
        max_depth: 3,
        ..ctx()
    };
    let err = parse(
        &Parser::FhirR4,
        &fixture("fhir/observation-bp.xml"),
        &shallow,
    )
    .unwrap_err();
    assert!(err.to_string().contains("depth"));
}

#[test]
fn truncated_and_non_xml_report_positions() {
    let full = fixture("fhir/observation-example.xml");
    let err = fhir_err(&full[..full.len() / 2]);
    assert!(err.contains("malformed XML at line "), "{err}");
    let err = fhir_err(b"<Observation xmlns=\"http://hl7.org/fhir\">\n  <id value=\"x\"/>");
    assert!(err.contains("unexpected end of document"), "{err}");
    assert!(err.contains("line 2"), "{err}");

    let err = fhir_err(b"{\"resourceType\": \"Observation\"}");
    assert!(err.contains("line 1, column"), "{err}");
    assert!(fhir_err(b"").contains("no root element"));

    let err =
        fhir(b"<Observation xmlns=\"http://hl7.org/fhir\">\n<id value=\"x\">\n</Observation>")
            .unwrap_err();
    assert_eq!(err.position().line, 3, "{err}");
    let err = fhir_err(b"<Observation xmlns=\"http://hl7.org/fhir\"/><Observation/>");
    assert!(err.contains("root"), "{err}");
    let cda_doc = fixture("cda/ccd-2.xml");
    let err = parse(&Parser::Cda, &cda_doc[..cda_doc.len() - 40], &ctx()).unwrap_err();
    assert!(matches!(err, ParseError::Syntax { .. }), "{err}");
}

/// Many unreadable values: each one is a warning with its own line, and the payload still
/// parses (positions are computed incrementally, so this stays linear).
#[test]
fn thousands_of_bad_values_are_thousands_of_warnings() {
    let mut doc = String::from("<Bundle xmlns=\"http://hl7.org/fhir\">\n");
    for _ in 0..5_000 {
        doc.push_str("<entry><resource><Observation><valueQuantity><value value=\"x\"/></valueQuantity></Observation></resource></entry>\n");
    }
    doc.push_str("</Bundle>");
    let rows = fhir(doc.as_bytes()).unwrap();
    assert_eq!(rows.len(), 5_000);
    for (i, o) in rows.iter().enumerate() {
        assert_eq!(o.warnings.len(), 1);
        assert!(o.warnings[0].at.starts_with(&format!("line {}, ", i + 2)));
    }
}

#[test]
fn patient_identifiers_never_reach_errors() {
    let secret = "SECRET-PATIENT-42";
    let doc = format!(
        "<Bundle xmlns=\"http://hl7.org/fhir\"><entry><resource><Observation><subject><reference value=\"Patient/{secret}\"/></subject><valueQuantity><value value=\"1\"/></valueQuantity></Observation></resource></entry><oops></Bundle>"
    );
    let err = fhir_err(doc.as_bytes());
    assert!(!err.contains(secret), "{err}");
    let ok = doc.replace("<oops>", "");
    let rows = fhir(ok.as_bytes()).unwrap();
    // The patient is the request's, never the payload's subject.
    assert_eq!(&*rows[0].patient_id, crate::util::PATIENT);
}
