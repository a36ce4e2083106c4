//! Parser tests on real HL7 samples, hostile input and the workload bundle.

use medgate_core::{Decimal, Observation, Value};
use medgate_source_his::{
    parse, CompiledMapping, MappingConfig, ParseContext, ParseError, Parser, DEFAULT_MAX_DEPTH,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{path}")).unwrap()
}

fn ctx() -> ParseContext<'static> {
    ParseContext {
        source: "his-main",
        patient_id: "PAT-1",
        max_depth: DEFAULT_MAX_DEPTH,
    }
}

fn fhir(bytes: &[u8]) -> Result<Vec<Observation>, ParseError> {
    parse(&Parser::FhirR4, bytes, &ctx())
}

fn fhir_file(path: &str) -> Vec<Observation> {
    fhir(&fixture(path)).unwrap()
}

fn num(text: &str) -> Value {
    Value::Number(Decimal::parse(text).unwrap())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

/// C-CDA fragments declare no namespaces; wrap them in a minimal ClinicalDocument.
fn cda_fragment(path: &str) -> Vec<Observation> {
    let body = String::from_utf8(fixture(path)).unwrap();
    let doc = format!(
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:sdtc=\"urn:hl7-org:sdtc\">\
         <component><structuredBody><component>{body}</component></structuredBody></component>\
         </ClinicalDocument>"
    );
    parse(&Parser::Cda, doc.as_bytes(), &ctx()).unwrap()
}

// ---------------------------------------------------------------- FHIR R4

#[test]
fn body_weight_prefers_loinc_and_ignores_extension_quantity() {
    let rows = fhir_file("fhir/observation-example.xml");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.patient_id, "PAT-1");
    assert_eq!(row.source, "his-main");
    assert_eq!(row.id, "example");
    assert_eq!(row.category, some("vital-signs"));
    assert_eq!(row.code_system, some("http://loinc.org"));
    assert_eq!(row.code, some("29463-7"));
    assert_eq!(row.display, some("Body Weight"));
    // The extension at the top carries valueQuantity 41 "a"; it must not leak in.
    assert_eq!(row.value, num("185"));
    assert_eq!(row.unit, some("[lb_av]"));
    assert_eq!(row.effective, some("2016-03-28"));
}

#[test]
fn blood_pressure_panel_emits_only_components() {
    let rows = fhir_file("fhir/observation-bp.xml");
    let summary: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                r.code.as_deref(),
                r.value.clone(),
                r.unit.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "observation-bp#0",
                Some("8480-6"),
                num("107"),
                Some("mm[Hg]")
            ),
            (
                "observation-bp#1",
                Some("8462-4"),
                num("60"),
                Some("mm[Hg]")
            ),
        ]
    );
    assert!(rows
        .iter()
        .all(|r| r.category.as_deref() == Some("vital-signs")));
    assert!(rows
        .iter()
        .all(|r| r.effective.as_deref() == Some("2012-09-17")));
    assert_eq!(rows[0].display, some("Systolic blood pressure"));
}

#[test]
fn apgar_emits_total_and_coded_components() {
    let rows = fhir_file("fhir/observation-example-20minute-apgar-score.xml");
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0].id, "20minute-apgar-score");
    assert_eq!(rows[0].value, num("10"));
    assert_eq!(rows[0].unit, some("{score}"));
    assert_eq!(rows[0].effective, some("2016-05-18T22:33:22Z"));
    assert_eq!(rows[1].id, "20minute-apgar-score#0");
    assert_eq!(rows[1].code, some("249227004"));
    assert_eq!(rows[1].value, text("Good color all over"));
    assert_eq!(rows[5].id, "20minute-apgar-score#4");
    assert_eq!(rows[5].category, some("survey"));
}

#[test]
fn decimals_are_kept_as_written() {
    let rows = fhir_file("fhir/observation-decimal.xml");
    let values: Vec<_> = rows.iter().map(|r| r.value.clone()).collect();
    assert_eq!(
        values,
        vec![
            num("1.0"),
            num("1.00"),
            num("1.0e0"),
            num("0.0000000000000000000001"),
            num("1000000000000000000"),
            num("1.000000000000000000e-245"),
            num("-1.000000000000000000e245"),
        ]
    );
    assert_eq!(rows[6].id, "decimal#6");
}

#[test]
fn serum_potassium_without_ucum_code_uses_unit_text() {
    let rows = fhir_file("fhir/Observation-serum-potassium.xml");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].category, some("laboratory"));
    assert_eq!(rows[0].code, some("2823-3"));
    assert_eq!(rows[0].value, num("5.4"));
    assert_eq!(rows[0].unit, some("mmol/L"));
    assert_eq!(rows[0].effective, some("2005-07-05"));
}

#[test]
fn heart_rate_with_commented_out_coding_uses_text() {
    let rows = fhir_file("fhir/observation-example-heart-rate.xml");
    assert_eq!(rows[0].code, None);
    assert_eq!(rows[0].display, some("Heart rate"));
    assert_eq!(rows[0].value, num("44"));
    assert_eq!(rows[0].unit, some("/min"));
}

#[test]
fn bundle_skips_non_observation_resources() {
    let rows = fhir_file("fhir/bundle-slice-good.xml");
    let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["obs1", "obs2"]);
    assert_eq!(rows[0].value, Value::Null);
    // A bundle of Endpoints only: no rows, no error.
    assert!(fhir_file("fhir/xml-fail.xml").is_empty());
}

#[test]
fn workload_bundle_has_100_rows_as_written() {
    let rows = fhir_file("fhir/workload-P000001.xml");
    assert_eq!(rows.len(), 100);
    let first = &rows[0];
    assert_eq!(first.id, "P000001-obs-00001");
    assert_eq!(first.category, some("laboratory"));
    assert_eq!(first.code, some("2339-0"));
    assert_eq!(first.value, num("130.3"));
    assert_eq!(first.unit, some("mg/dL"));
    assert_eq!(first.effective, some("2024-01-01T00:13:38+08:00"));
    assert!(rows.iter().all(|r| r.patient_id == "PAT-1"));
    let written = String::from_utf8(fixture("fhir/workload-P000001.xml")).unwrap();
    for row in &rows {
        if let Value::Number(n) = &row.value {
            assert!(written.contains(&format!("<value value=\"{}\"/>", n.as_str())));
        }
    }
}

#[test]
fn value_kinds_and_effective_period() {
    let doc = r#"<Bundle xmlns="http://hl7.org/fhir"><entry><fullUrl value="urn:uuid:abc-1"/>
      <resource><Observation>
        <extension url="x"><valueCodeableConcept><coding><code value="EXT"/></coding></valueCodeableConcept></extension>
        <code><coding><system value="http://snomed.info/sct"/><code value="1"/></coding>
              <coding><system value="http://loinc.org"/><code value="2"/><display value="L"/></coding></code>
        <effectivePeriod><start value="2020-01-01T10:00:00+02:00"/><end value="2020-01-02"/></effectivePeriod>
        <valueString value="a &amp; b &#x41;"/>
      </Observation></resource></entry>
      <entry><resource><Observation><id value="b"/><valueBoolean value="true"/></Observation></resource></entry>
      <entry><resource><Observation><id value="c"/><valueInteger value="7"/></Observation></resource></entry>
      <entry><resource><Observation><id value="d"/>
        <valueQuantity><value value="5"/><comparator value="&lt;"/><unit value="mg"/></valueQuantity>
      </Observation></resource></entry>
      <entry><resource><OperationOutcome><id value="oo"/></OperationOutcome></resource></entry>
    </Bundle>"#;
    let rows = fhir(doc.as_bytes()).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].id, "abc-1");
    assert_eq!(rows[0].code, some("2"));
    assert_eq!(rows[0].display, some("L"));
    assert_eq!(rows[0].effective, some("2020-01-01T10:00:00+02:00"));
    assert_eq!(rows[0].value, text("a & b A"));
    assert_eq!(rows[1].value, Value::Bool(true));
    assert_eq!(rows[2].value, num("7"));
    assert_eq!(rows[3].value, text("<5"));
    assert_eq!(rows[3].unit, some("mg"));
}

#[test]
fn invalid_decimal_is_an_error() {
    let doc = r#"<Observation xmlns="http://hl7.org/fhir"><valueQuantity><value value="1,5"/></valueQuantity></Observation>"#;
    let err = fhir(doc.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("not a valid decimal"), "{err}");
    assert!(err.contains("line 1, column"), "{err}");
}

// ---------------------------------------------------------------- wrong or bad input

#[test]
fn wrong_roots_and_namespaces_are_named() {
    let err = fhir_file_err("fhir/patient-example.xml");
    assert!(
        err.contains("neither a FHIR Bundle nor an Observation"),
        "{err}"
    );
    let err = fhir_file_err("fhir/logicalxml-nonamespace.xml");
    assert!(err.contains("not in the FHIR namespace"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    let err = fhir(br#"<OperationOutcome xmlns="http://hl7.org/fhir"/>"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("OperationOutcome"), "{err}");
    let err = fhir(br#"<Bundle xmlns="http://hl7.org/fhir/wrong"/>"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("namespace"), "{err}");
}

fn fhir_file_err(path: &str) -> String {
    fhir(&fixture(path)).unwrap_err().to_string()
}

/// A mapping whose record path matches a validator case's root, so the parser reads
/// into the body and meets the defect.
fn mapping(record: &str) -> Parser {
    let config: MappingConfig = toml::from_str(&format!(
        "record = \"{record}\"\n[fields]\nvalue = \"status/@value\"\n"
    ))
    .unwrap();
    Parser::Mapping(std::sync::Arc::new(
        CompiledMapping::compile(&config).unwrap(),
    ))
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

    let err = fhir_file_err("fhir/japanese-utf8.xml");
    assert!(
        err.contains("malformed XML") && err.contains("line "),
        "{err}"
    );
}

#[test]
fn doctype_and_entities_are_refused() {
    let laughs = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<Bundle xmlns="http://hl7.org/fhir">&lol2;</Bundle>"#;
    let err = fhir(laughs).unwrap_err().to_string();
    assert!(
        err.contains("DOCTYPE declarations are not allowed"),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");

    let external = br#"<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Bundle xmlns="http://hl7.org/fhir">&xxe;</Bundle>"#;
    assert!(fhir(external).unwrap_err().to_string().contains("DOCTYPE"));

    let undeclared =
        br#"<Observation xmlns="http://hl7.org/fhir"><id value="&xxe;"/></Observation>"#;
    let err = fhir(undeclared).unwrap_err();
    assert!(matches!(err, ParseError::Refused { .. }), "{err}");
}

#[test]
fn deep_nesting_fails_fast() {
    let mut doc = String::from(r#"<Bundle xmlns="http://hl7.org/fhir">"#);
    doc.push_str(&"<a>".repeat(10_000));
    doc.push_str(&"</a>".repeat(10_000));
    doc.push_str("</Bundle>");
    let err = fhir(doc.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("nesting depth exceeds 64"), "{err}");
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
    let err = fhir(&full[..full.len() / 2]).unwrap_err().to_string();
    assert!(err.contains("malformed XML at line "), "{err}");
    let err = fhir(b"<Observation xmlns=\"http://hl7.org/fhir\">\n  <id value=\"x\"/>")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unexpected end of document"), "{err}");
    assert!(err.contains("line 2"), "{err}");

    let err = fhir(b"{\"resourceType\": \"Observation\"}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1, column"), "{err}");
    assert!(fhir(b"")
        .unwrap_err()
        .to_string()
        .contains("no root element"));

    let err =
        fhir(b"<Observation xmlns=\"http://hl7.org/fhir\">\n<id value=\"x\">\n</Observation>")
            .unwrap_err();
    assert_eq!(err.position().line, 3, "{err}");
    let err = fhir(b"<Observation xmlns=\"http://hl7.org/fhir\"/><Observation/>")
        .unwrap_err()
        .to_string();
    assert!(err.contains("root"), "{err}");
}

// ---------------------------------------------------------------- CDA

#[test]
fn ccda_vital_signs_convert_timestamps_with_offsets() {
    let rows = cda_fragment("cda/vital-signs-metric.xml");
    assert_eq!(rows.len(), 9);
    let systolic = &rows[0];
    assert_eq!(systolic.code_system, some("http://loinc.org"));
    assert_eq!(systolic.code, some("8480-6"));
    assert_eq!(systolic.value, num("120"));
    assert_eq!(systolic.unit, some("mm[Hg]"));
    assert_eq!(systolic.effective, some("2014-05-20T19:36:05-05:00"));
    assert_eq!(systolic.category, some("vital-signs"));
    let temperature = rows
        .iter()
        .find(|r| r.code.as_deref() == Some("8310-5"))
        .unwrap();
    assert_eq!(temperature.value, num("37.2"));
    assert_eq!(temperature.unit, some("Cel"));
    let weight = rows
        .iter()
        .find(|r| r.unit.as_deref() == Some("kg"))
        .unwrap();
    assert_eq!(weight.value, num("108.863"));
}

#[test]
fn ccda_results_string_interval_and_coded_values() {
    let urine = cda_fragment("cda/urine-color-st.xml");
    assert!(urine
        .iter()
        .all(|r| r.category.as_deref() == Some("laboratory")));
    assert!(urine
        .iter()
        .any(|r| matches!(&r.value, Value::Text(t) if !t.is_empty())));

    let less = cda_fragment("cda/less-than-ivl.xml");
    assert_eq!(less.len(), 1);
    assert_eq!(less[0].value, text("0–5"));
    assert_eq!(less[0].unit, some("pg/mL"));
    assert_eq!(less[0].effective, some("2013-10-20T09:08:00-05:00"));

    let coded = cda_fragment("cda/coded-neg-pos.xml");
    assert!(!coded.is_empty());
    assert!(coded.iter().all(|r| matches!(r.value, Value::Text(_))));

    let bmp = cda_fragment("cda/bmp-troponin.xml");
    assert!(bmp.iter().any(|r| r.unit.as_deref() == Some("md/dL")));
}

#[test]
fn ccd_document_rows() {
    let rows = parse(&Parser::Cda, &fixture("cda/ccd-2.xml"), &ctx()).unwrap();
    assert_eq!(rows.len(), 12);
    let leukocytes = &rows[1];
    assert_eq!(leukocytes.id, "68762391-bfa5-4dfa-9f6f-d37109a97d19");
    assert_eq!(leukocytes.category, some("laboratory"));
    assert_eq!(
        leukocytes.display,
        some("Leukocytes [#/\u{200b}volume] in Blood by Manual count")
    );
    assert_eq!(leukocytes.value, Value::Null);
    let smoking = &rows[2];
    assert_eq!(smoking.id, "2.16.840.1.113883.19/123456789");
    assert_eq!(smoking.value, text("Tobacco smoking consumption unknown"));
    let bmi = rows
        .iter()
        .find(|r| r.code.as_deref() == Some("39156-5"))
        .unwrap();
    assert_eq!(bmi.value, num("37.58"));
    assert_eq!(bmi.effective, some("2014-10-01T10:30:26-05:00"));
}

#[test]
fn cda_refuses_fhir_root() {
    let err = parse(&Parser::Cda, &fixture("fhir/observation-bp.xml"), &ctx())
        .unwrap_err()
        .to_string();
    assert!(err.contains("CDA namespace"), "{err}");
}

// ---------------------------------------------------------------- mapping

#[test]
fn mapping_reads_fields_attributes_and_constants() {
    let config: MappingConfig = toml::from_str(
        r#"
record = "LabResponse/Results/Result"
[fields]
id = "@id"
code = "Test/@loinc"
display = "Test"
value = "Value"
unit = "Value/@unit"
effective = "CollectedAt"
[constants]
code_system = "http://loinc.org"
category = "laboratory"
"#,
    )
    .unwrap();
    let parser = Parser::Mapping(std::sync::Arc::new(
        CompiledMapping::compile(&config).unwrap(),
    ));
    let doc = br#"<?xml version="1.0"?>
<x:LabResponse xmlns:x="urn:lab"><Header><Result id="no"/></Header><x:Results>
  <x:Result id="r1"><Test loinc="2339-0">Glucose</Test><Value unit="mg/dL">98.60</Value>
    <CollectedAt>2024-01-01T08:00:00+01:00</CollectedAt></x:Result>
  <x:Result><Test>Note</Test><Value>see &lt;report&gt;</Value></x:Result>
  <x:Result><Value/></x:Result>
</x:Results></x:LabResponse>"#;
    let rows = parse(&parser, doc, &ctx()).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].id, "r1");
    assert_eq!(rows[0].code, some("2339-0"));
    assert_eq!(rows[0].code_system, some("http://loinc.org"));
    assert_eq!(rows[0].category, some("laboratory"));
    assert_eq!(rows[0].display, some("Glucose"));
    assert_eq!(rows[0].value, num("98.60"));
    assert_eq!(rows[0].unit, some("mg/dL"));
    assert_eq!(rows[0].effective, some("2024-01-01T08:00:00+01:00"));
    assert_eq!(rows[1].id, "1");
    assert_eq!(rows[1].value, text("see <report>"));
    assert_eq!(rows[2].value, Value::Null);

    let err = parse(&parser, b"<Other/>", &ctx()).unwrap_err().to_string();
    assert!(err.contains("mapping.record"), "{err}");
    let err = parse(&parser, b"<!DOCTYPE a><LabResponse/>", &ctx())
        .unwrap_err()
        .to_string();
    assert!(err.contains("DOCTYPE"), "{err}");
}
