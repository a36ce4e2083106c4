//! `format = "mapping"`: config-described XML, every field key, lenient numbers, comparators
//! and times that cannot be read.

use std::sync::Arc;

use medgate_source_his::{parse, CompiledMapping, MappingConfig, Parser};

use crate::util::{check, ctx};

fn mapping(toml_text: &str) -> Parser {
    let config: MappingConfig = toml::from_str(toml_text).unwrap();
    Parser::Mapping(Arc::new(CompiledMapping::compile(&config).unwrap()))
}

/// The keys that existed before the lossless record, unchanged.
#[test]
fn the_original_keys_still_work() {
    let parser = mapping(
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
    );
    let doc = br#"<?xml version="1.0"?>
<x:LabResponse xmlns:x="urn:lab"><Header><Result id="no"/></Header><x:Results>
  <x:Result id="r1"><Test loinc="2339-0">Glucose</Test><Value unit="mg/dL">98.60</Value>
    <CollectedAt>2024-01-01T08:00:00+01:00</CollectedAt></x:Result>
  <x:Result><Test>Note</Test><Value>see &lt;report&gt;</Value></x:Result>
  <x:Result><Value/></x:Result>
</x:Results></x:LabResponse>"#;
    let rows = parse(&parser, doc, &ctx()).unwrap();
    assert_eq!(rows.len(), 3);
    let expected = [
        r#"
        id r1
        category cat|laboratory "Laboratory"
        code loinc|2339-0 "Glucose"
        effective 2024-01-01T08:00:00+01:00
        value 98.60 'mg/dL'
        "#,
        r#"
        id 1
        category cat|laboratory "Laboratory"
        code loinc| "Note"
        value string "see <report>"
        "#,
        r#"
        id 2
        category cat|laboratory "Laboratory"
        code loinc|
        "#,
    ];
    for (o, want) in rows.iter().zip(expected) {
        check(o, want);
    }
    let err = parse(&parser, b"<Other/>", &ctx()).unwrap_err().to_string();
    assert!(err.contains("mapping.record"), "{err}");
    let err = parse(&parser, b"<!DOCTYPE a><LabResponse/>", &ctx())
        .unwrap_err()
        .to_string();
    assert!(err.contains("DOCTYPE"), "{err}");
}

const FULL: &str = r#"
record = "Lab/R"
[fields]
id = "@id"
category = "@kind"
code = "@code"
display = "Name"
value = "V"
unit = "V/@unit"
status = "@status"
comparator = "V/@cmp"
interpretation = "Flag"
reference_low = "Ref/@low"
reference_high = "Ref/@high"
reference_text = "Ref"
effective = "At"
effective_end = "Until"
issued = "@released"
[constants]
code_system = "http://loinc.org"
unit_system = "http://unitsofmeasure.org"
status = "final"
"#;

#[test]
fn every_field_fills_the_record() {
    let parser = mapping(FULL);
    let doc = br#"<Lab>
<R id="a" kind="laboratory" code="2823-3" status="amended" released="2024-01-02T10:00:00Z"><Name>Potassium</Name>
  <V unit="mmol/L">5.40</V><Flag>H</Flag><Ref low="3.5" high="5.1">3.5-5.1 mmol/L</Ref>
  <At>20240101083000+0100</At><Until>2024-01-01T09:00:00+01:00</Until></R>
<R id="b" kind="chemistry" code="x"><V unit="mg/dL">&lt; 5</V><Flag>see note</Flag><At>2024-02</At></R>
<R id="c" code="x"><V cmp="&gt;=" unit="g">+10</V></R>
<R id="d" code="x"><V>00</V><At>yesterday</At></R>
<R id="e" code="x" status="done"><V cmp="about">7</V><Ref low="n/a"/></R>
</Lab>"#;
    let rows = parse(&parser, doc, &ctx()).unwrap();
    let expected = [
        r#"
        id a
        status amended
        category cat|laboratory "Laboratory"
        code loinc|2823-3 "Potassium"
        effective period 2024-01-01T08:30:00+01:00 .. 2024-01-01T09:00:00+01:00
        issued 2024-01-02T10:00:00Z
        value 5.40 'mmol/L' ucum|mmol/L
        interpretation v3|H
        range 3.5 'mmol/L' ucum|mmol/L .. 5.1 'mmol/L' ucum|mmol/L text "3.5-5.1 mmol/L"
        "#,
        r#"
        id b
        status final
        category -|chemistry
        code loinc|x
        effective 2024-02
        value <5 'mg/dL' ucum|mg/dL
        interpretation text "see note"
        "#,
        r#"
        id c
        status final
        code loinc|x
        value >=10 'g' ucum|g
        "#,
        r#"
        id d
        status final
        code loinc|x
        value 0
        warning line 7, column 47: effective "yesterday" is neither an RFC 3339 nor an HL7 date-time
        "#,
        r#"
        id e
        code loinc|x
        absent dar|error "Error"
        warning line 8, column 34: status "done" is not a FHIR observation status
        warning line 8, column 54: comparator "about" is not <, <=, >= or >
        warning line 8, column 70: reference_low "n/a" is not a number
        "#,
    ];
    assert_eq!(rows.len(), expected.len());
    for (o, want) in rows.iter().zip(expected) {
        check(o, want);
    }
}
