//! FHIR R4 XML: real samples (HL7 spec examples, validator cases, a US Core build, an IPS
//! document bundle, the workload bundle), then small hand-written resources for the value
//! types no XML sample in the corpus carries (shaped after the R4 JSON examples f001, f205,
//! unsat and blood-pressure-cancel).

use medgate_core::{rows, Comparator, DateTime, Effective, Precision, Value, Zone};

use crate::util::{by_id, check, check_at, fhir, fhir_file, fixture};

#[test]
fn body_weight_keeps_every_coding_and_ignores_the_extension_quantity() {
    // The extension at the top carries valueQuantity 41 "a"; it must not leak in.
    check_at(
        &fhir_file("fhir/observation-example.xml"),
        0,
        r#"
        id example
        status final
        category cat|vital-signs "Vital Signs"
        code loinc|29463-7 "Body Weight", loinc|3141-9 "Body weight Measured", sct|27113001 "Body weight", http://acme.org/devices/clinical-codes|body-weight "Body Weight"
        effective 2016-03-28
        value 185 'lbs' ucum|[lb_av]
        "#,
    );
}

#[test]
fn blood_pressure_is_one_panel_with_components_and_interpretations() {
    let rows_ = fhir_file("fhir/observation-bp.xml");
    assert_eq!(rows_.len(), 1);
    check(
        &rows_[0],
        r#"
        id observation-bp
        status final
        category cat|vital-signs "Vital Signs"
        code loinc|85354-9 "Blood pressure panel with all children optional", text "Blood pressure systolic & diastolic"
        effective 2012-09-17
        interpretation v3|L "low", text "Below low normal"
        component[0] code loinc|8480-6 "Systolic blood pressure", sct|271649006 "Systolic blood pressure", http://acme.org/devices/clinical-codes|bp-s "Systolic Blood pressure"
        component[0] value 107 'mmHg' ucum|mm[Hg]
        component[0] interpretation v3|N "normal", text "Normal"
        component[1] code loinc|8462-4 "Diastolic blood pressure"
        component[1] value 60 'mmHg' ucum|mm[Hg]
        component[1] interpretation v3|L "low", text "Below low normal"
        "#,
    );
    // The tabular projection gives each component its own row, as before the port.
    let ids: Vec<String> = rows(&rows_[0])
        .map(|r| r.cells[2].as_text().into_owned())
        .collect();
    assert_eq!(ids, ["observation-bp#0", "observation-bp#1"]);
}

/// (fixture, index, expected facts): the real samples, one observation each.
const SAMPLES: &[(&str, usize, &str)] = &[
    (
        "fhir/Observation-serum-potassium.xml",
        0,
        r#"
        id serum-potassium
        status final
        category cat|laboratory "Laboratory", text "Laboratory"
        code loinc|2823-3 "Potassium SerPl-sCnc", text "Potassium SerPl-sCnc"
        effective 2005-07-05
        value 5.4 'mmol/L' ucum
        range 3.5 'mmol/L' ucum|mmol/L .. 5.5 'mmol/L' ucum|mmol/L
        "#,
    ),
    (
        "fhir/Observation-heart-rate.xml",
        0,
        r#"
        id heart-rate
        status final
        category cat|vital-signs "Vital Signs", text "Vital Signs"
        code loinc|8867-4 "Heart Rate", text "heart_rate"
        effective 1999-07-02
        value 44.0 '{beats}/min' ucum|{beats}/min
        "#,
    ),
    (
        // The LOINC coding is commented out in the source: only the text remains.
        "fhir/observation-example-heart-rate.xml",
        0,
        r#"
        id heart-rate
        status final
        category cat|vital-signs "Vital Signs", text "Vital Signs"
        category loinc|8867-4 "Heart rate", text "Heart rate"
        code text "Heart rate"
        effective 1999-07-02
        value 44 'beats/minute' ucum|/min
        "#,
    ),
    (
        "fhir/Observation-blood-pressure.xml",
        0,
        r#"
        id blood-pressure
        status final
        category cat|vital-signs "Vital Signs", text "Vital Signs"
        code loinc|85354-9 "Blood pressure panel with all children optional", text "Blood pressure systolic and diastolic"
        effective 1999-07-02
        component[0] code loinc|8480-6 "Systolic blood pressure", text "Systolic blood pressure"
        component[0] value 109 'mmHg' ucum|mm[Hg]
        component[1] code loinc|8462-4 "Diastolic blood pressure", text "Diastolic blood pressure"
        component[1] value 44 'mmHg' ucum|mm[Hg]
        "#,
    ),
    (
        "fhir/observation-example-20minute-apgar-score.xml",
        0,
        r#"
        id 20minute-apgar-score
        status final
        category cat|survey "Survey", text "Survey"
        code sct|443849008 "Apgar score at 20 minutes", text "20 minute Apgar Score"
        effective 2016-05-18T22:33:22Z
        value 10 ucum|{score}
        component[0] code sct|249227004 "Apgar color score", text "Apgar color score"
        component[0] value cc loinc|LA6724-4 "Good color all over", http://acme.ped/apgarcolor|2, text "2. Good color all over"
        component[1] code sct|249223000 "Apgar heart rate score", text "Apgar respiratory effort score"
        component[1] value cc loinc|LA6718-6 "At least 100 beats per minute", http://acme.ped/apgarheartrate|2, text "2. At least 100 beats per minute"
        component[2] code sct|249226008 "Apgar response to stimulus score", text "Apgar response to stimulus score"
        component[2] value cc loinc|LA6721-0 "Grimace and pulling away, cough, or sneeze during suctioning", http://acme.ped/apgarreflexirritability|2, text "2. Grimace and pulling away, cough, or sneeze during suctioning"
        component[3] code sct|249225007 "Apgar muscle tone score", text "Apgar muscle tone score"
        component[3] value cc loinc|LA6715-2 "Active motion ", http://acme.ped/apgarmuscletone|2, text "2. Active motion"
        component[4] code sct|249224006 "Apgar respiratory effort score", text "Apgar respiratory effort score"
        component[4] value cc loinc|LA6727-7 "Good, strong cry; normal rate and effort of breathing    ", http://acme.ped/apgarrespiratoryeffort|2, text "2. Good, strong cry; normal rate and effort of breathing"
        "#,
    ),
];

#[test]
fn real_samples() {
    for (path, index, expected) in SAMPLES {
        let rows_ = fhir_file(path);
        assert_eq!(rows_.len(), 1, "{path}");
        check_at(&rows_, *index, expected);
    }
}

#[test]
fn decimals_keep_their_written_digits() {
    let o = &fhir_file("fhir/observation-decimal.xml")[0];
    let values: Vec<String> = o
        .components
        .iter()
        .map(|c| match &c.value {
            Value::Quantity(q) => q.value.as_ref().unwrap().to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        values,
        [
            "1.0",
            "1.00",
            "1.0e0",
            "0.0000000000000000000001",
            "1000000000000000000",
            "1.000000000000000000e-245",
            "-1.000000000000000000e245",
        ]
    );
    assert_eq!(rows(o).last().unwrap().cells[2].as_text(), "decimal#6");
}

#[test]
fn ips_document_bundle_keeps_observations_and_panel_members() {
    // A `document` Bundle: Composition, Patient, Conditions, Medications … are skipped.
    let rows_ = fhir_file("fhir/bundle-ips-examples-bundle-01.xml");
    assert_eq!(rows_.len(), 7);
    check(
        by_id(&rows_, "2639657a-c19a-48e2-82cc-471e13b8ad94"),
        r#"
        id 2639657a-c19a-48e2-82cc-471e13b8ad94
        status final
        category cat|laboratory
        code text "Blood typing"
        effective 2015-10-10
        hasMember Observation/aa11a2be-3e36-4be7-b58a-6fc3dace2741
        hasMember Observation/6e39ccf3-f997-4a2b-8f28-b4b71c778c70
        hasMember Observation/b4916505-a06b-460c-9be8-011609282457
        hasMember Observation/a6a5a1d5-c896-4c7e-b922-888fcc7e6ae4
        "#,
    );
    check(
        by_id(&rows_, "aa11a2be-3e36-4be7-b58a-6fc3dace2741"),
        r#"
        id aa11a2be-3e36-4be7-b58a-6fc3dace2741
        status final
        category cat|laboratory
        code loinc|882-1 "ABO and Rh group [Type] in Blood"
        effective 2015-10-10T09:15:00+01:00
        value cc sct|278149003 "Blood group A Rh(D) positive"
        "#,
    );
    check(
        by_id(&rows_, "cc354e00-a419-47ea-8b6c-1768b2a01646"),
        r#"
        id cc354e00-a419-47ea-8b6c-1768b2a01646
        status final
        category cat|laboratory
        code loinc|17856-6 "Hemoglobin A1c/Hemoglobin.total in Blood by HPLC"
        effective 2017-11-10T08:20:00+01:00
        value 7.5 '%' ucum|%
        "#,
    );
}

#[test]
fn bundle_entries_without_value_and_without_observations() {
    let rows_ = fhir_file("fhir/bundle-slice-good.xml");
    let ids: Vec<&str> = rows_.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["obs1", "obs2"]);
    check(
        &rows_[0],
        r#"
        id obs1
        status final
        code http://acme.org/obs-codes|obs1
        "#,
    );
    // A bundle of Endpoints only: no observations, no error.
    assert!(fhir_file("fhir/xml-fail.xml").is_empty());
}

#[test]
fn workload_bundle_has_100_observations_as_written() {
    let rows_ = fhir_file("fhir/workload-P000001.xml");
    assert_eq!(rows_.len(), 100);
    check(
        &rows_[0],
        r#"
        id P000001-obs-00001
        status final
        category cat|laboratory "Laboratory"
        code loinc|2339-0 "Glucose [Mass/volume] in Blood", text "Glucose [Mass/volume] in Blood"
        effective 2024-01-01T00:13:38+08:00
        value 130.3 'mg/dL' ucum|mg/dL
        "#,
    );
    let written = String::from_utf8(fixture("fhir/workload-P000001.xml")).unwrap();
    for o in &rows_ {
        let Value::Quantity(q) = &o.value else {
            panic!("{}: {:?}", o.id, o.value)
        };
        let value = q.value.as_ref().unwrap();
        assert!(
            written.contains(&format!("<value value=\"{value}\"/>")),
            "{value}"
        );
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    }
}

#[test]
fn times_keep_precision_and_offset() {
    let effective = |path: &str| match fhir_file(path)[0].effective {
        Some(Effective::DateTime(d)) => d,
        ref other => panic!("{other:?}"),
    };
    let date = effective("fhir/observation-example.xml");
    assert_eq!(date.precision(), Precision::Day);
    assert_eq!(date.zone(), None);
    let zulu = effective("fhir/observation-example-20minute-apgar-score.xml");
    assert_eq!(zulu.precision(), Precision::Second);
    assert_eq!(zulu.zone(), Some(Zone::Utc));
    let offset = effective("fhir/workload-P000001.xml");
    assert_eq!(offset.offset().map(|o| o.seconds()), Some(8 * 3600));
    assert!(matches!(offset.zone(), Some(Zone::Offset(_))));
}

/// A bundle shaped after the R4 examples f001, f205, unsat and blood-pressure-cancel (their
/// XML forms are not in the corpus), plus every other value[x].
pub(crate) const VALUE_TYPES: &str = r#"<Bundle xmlns="http://hl7.org/fhir">
<entry><fullUrl value="http://example.org/fhir/Observation/f001"/><resource><Observation>
  <status value="final"/>
  <code><coding><system value="http://loinc.org"/><code value="15074-8"/><display value="Glucose [Moles/volume] in Blood"/></coding></code>
  <subject><reference value="Patient/f001"/></subject>
  <effectivePeriod><start value="2013-04-02T09:30:10+01:00"/></effectivePeriod>
  <issued value="2013-04-03T15:30:10+01:00"/>
  <valueQuantity><value value="6.3"/><unit value="mmol/l"/><system value="http://unitsofmeasure.org"/><code value="mmol/L"/></valueQuantity>
  <interpretation><coding><system value="http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"/><code value="H"/><display value="High"/></coding></interpretation>
  <referenceRange>
    <low><value value="3.1"/><unit value="mmol/l"/><system value="http://unitsofmeasure.org"/><code value="mmol/L"/></low>
    <high><value value="6.2"/><unit value="mmol/l"/><system value="http://unitsofmeasure.org"/><code value="mmol/L"/></high>
    <type><coding><system value="http://terminology.hl7.org/CodeSystem/referencerange-meaning"/><code value="normal"/></coding></type>
    <text value="3.1-6.2 mmol/l"/>
  </referenceRange>
</Observation></resource></entry>
<entry><resource><Observation><id value="f205"/>
  <status value="final"/>
  <code><coding><system value="http://loinc.org"/><code value="33914-3"/></coding></code>
  <issued value="2013-04-04T14:34:00+01:00"/>
  <interpretation><text value="based upon the level of kidney function"/></interpretation>
  <component>
    <code><coding><system value="http://loinc.org"/><code value="48643-1"/></coding></code>
    <valueQuantity><value value="60"/><comparator value="&gt;"/><unit value="mL/min/1.73m2"/><system value="http://unitsofmeasure.org"/><code value="mL/min/{1.73_m2}"/></valueQuantity>
    <referenceRange><low><value value="60"/><unit value="mL/min/1.73m2"/></low><appliesTo><text value="non-black"/></appliesTo></referenceRange>
  </component>
</Observation></resource></entry>
<entry><resource><Observation><id value="unsat"/>
  <status value="cancelled"/>
  <code><coding><system value="http://loinc.org"/><code value="15074-8"/></coding></code>
  <effectivePeriod><start value="2013-04-02T09:30:10+01:00"/><end value="2013-04-05T09:30:10+01:00"/></effectivePeriod>
  <dataAbsentReason><coding><system value="http://snomed.info/sct"/><code value="125154007"/><display value="Specimen unsatisfactory for evaluation"/></coding></dataAbsentReason>
</Observation></resource></entry>
<entry><resource><Observation><id value="blood-pressure-cancel"/>
  <status value="cancelled"/>
  <code><coding><system value="http://loinc.org"/><code value="85354-9"/></coding></code>
  <component>
    <code><coding><system value="http://loinc.org"/><code value="8480-6"/></coding></code>
    <dataAbsentReason><coding><system value="http://terminology.hl7.org/CodeSystem/data-absent-reason"/><code value="not-asked"/><display value="Not Asked"/></coding></dataAbsentReason>
  </component>
</Observation></resource></entry>
<entry><resource><Observation><id value="titer"/><status value="preliminary"/>
  <code><text value="titer"/></code>
  <valueRatio><numerator><value value="1"/></numerator><denominator><value value="128"/></denominator></valueRatio>
  <derivedFrom><reference value="Observation/f001"/><display value="glucose"/></derivedFrom>
  <device><reference value="Device/meter-1"/></device>
</Observation></resource></entry>
<entry><resource><Observation><id value="range"/>
  <valueRange><low><value value="+5"/><unit value="mg"/></low><high><value value=".5E1"/></high></valueRange>
</Observation></resource></entry>
<entry><resource><Observation><id value="kinds"/>
  <effectiveInstant value="2020-06-30T09:50:55.300Z"/>
  <component><code><text value="s"/></code><valueString value="a &amp; b &#x41;"/></component>
  <component><code><text value="b"/></code><valueBoolean value="false"/></component>
  <component><code><text value="i"/></code><valueInteger value="-7"/></component>
  <component><code><text value="big"/></code><valueInteger value="3000000000"/></component>
  <component><code><text value="t"/></code><valueTime value="08:30:00"/></component>
  <component><code><text value="dt"/></code><valueDateTime value="2014-05"/></component>
  <component><code><text value="p"/></code><valuePeriod><start value="2024-01-01"/><end value="2024-01-01T10:00:00"/></valuePeriod></component>
  <component><code><text value="lenient"/></code><valueQuantity><value value="00"/></valueQuantity></component>
</Observation></resource></entry>
<entry><resource><OperationOutcome><id value="oo"/></OperationOutcome></resource></entry>
</Bundle>"#;

#[test]
fn every_value_type_and_field() {
    let rows_ = fhir(VALUE_TYPES.as_bytes()).unwrap();
    let ids: Vec<&str> = rows_.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "f001",
            "f205",
            "unsat",
            "blood-pressure-cancel",
            "titer",
            "range",
            "kinds"
        ]
    );
    let expected = [
        r#"
        id f001
        status final
        code loinc|15074-8 "Glucose [Moles/volume] in Blood"
        effective period 2013-04-02T09:30:10+01:00 .. _
        issued 2013-04-03T15:30:10+01:00
        value 6.3 'mmol/l' ucum|mmol/L
        interpretation v3|H "High"
        range 3.1 'mmol/l' ucum|mmol/L .. 6.2 'mmol/l' ucum|mmol/L type rr|normal text "3.1-6.2 mmol/l"
        "#,
        r#"
        id f205
        status final
        code loinc|33914-3
        issued 2013-04-04T14:34:00+01:00
        interpretation text "based upon the level of kidney function"
        component[0] code loinc|48643-1
        component[0] value >60 'mL/min/1.73m2' ucum|mL/min/{1.73_m2}
        component[0] range 60 'mL/min/1.73m2' .. _
        "#,
        r#"
        id unsat
        status cancelled
        code loinc|15074-8
        effective period 2013-04-02T09:30:10+01:00 .. 2013-04-05T09:30:10+01:00
        absent sct|125154007 "Specimen unsatisfactory for evaluation"
        "#,
        r#"
        id blood-pressure-cancel
        status cancelled
        code loinc|85354-9
        component[0] code loinc|8480-6
        component[0] absent dar|not-asked "Not Asked"
        "#,
        r#"
        id titer
        status preliminary
        code text "titer"
        value ratio 1 : 128
        derivedFrom Observation/f001 "glucose"
        device Device/meter-1
        "#,
        r#"
        id range
        value range 5 'mg' .. 0.5E1
        "#,
        r#"
        id kinds
        effective 2020-06-30T09:50:55.300Z
        component[0] code text "s"
        component[0] value string "a & b A"
        component[1] code text "b"
        component[1] value boolean false
        component[2] code text "i"
        component[2] value integer -7
        component[3] code text "big"
        component[3] value 3000000000
        component[4] code text "t"
        component[4] value time 08:30:00
        component[5] code text "dt"
        component[5] value dateTime 2014-05
        component[6] code text "p"
        component[6] value period 2024-01-01 .. 2024-01-01T10:00:00
        component[7] code text "lenient"
        component[7] value 0
        warning line 56, column 80: valueInteger 3000000000 is not a 32-bit integer; kept as a number
        "#,
    ];
    for (o, want) in rows_.iter().zip(expected) {
        check(o, want);
    }
    let Value::Quantity(q) = &rows_[1].components[0].value else {
        panic!()
    };
    assert_eq!(q.comparator, Some(Comparator::Greater));
    // A local time stays local: no offset is invented.
    let Value::Period(p) = rows_[6].components[6].value else {
        panic!()
    };
    assert!(p.end.unwrap().is_local());
    assert_eq!(p.start, DateTime::parse("2024-01-01").ok());
}

/// One bad value costs that value only, never the document.
pub(crate) const BAD_VALUES: &str = r#"<Bundle xmlns="http://hl7.org/fhir">
<entry><resource><Observation><id value="comma"/><status value="final"/>
  <valueQuantity><value value="1,5"/><unit value="mg"/></valueQuantity></Observation></resource></entry>
<entry><resource><Observation><id value="comparator"/>
  <valueQuantity><value value="5"/><comparator value="~"/></valueQuantity></Observation></resource></entry>
<entry><resource><Observation><id value="boolean"/><valueBoolean value="yes"/></Observation></resource></entry>
<entry><resource><Observation><id value="panel"/>
  <component><code><text value="ok"/></code><valueQuantity><value value="120"/></valueQuantity></component>
  <component><code><text value="bad"/></code><valueQuantity><value value="eighty"/></valueQuantity></component>
</Observation></resource></entry>
<entry><resource><Observation><id value="times"/><status value="done"/>
  <effectiveDateTime value="2024-13-01"/><issued value=""/>
  <referenceRange><low><value value="x"/></low><high><value value="5.1"/></high></referenceRange>
  <valueTime value="25:00:00"/>
</Observation></resource></entry>
<entry><resource><Observation><id value="sampled"/>
  <effectiveTiming><event value="2024-01-01"/></effectiveTiming>
  <valueSampledData><origin><value value="0"/></origin><period value="10"/><dimensions value="1"/><data value="1 2 3"/></valueSampledData>
</Observation></resource></entry>
<entry><resource><Observation><id value="fine"/><valueQuantity><value value="7.10"/></valueQuantity></Observation></resource></entry>
</Bundle>"#;

#[test]
fn unreadable_values_become_data_absent_with_a_positioned_warning() {
    let rows_ = fhir(BAD_VALUES.as_bytes()).unwrap();
    assert_eq!(rows_.len(), 7);
    let expected = [
        r#"
        id comma
        status final
        absent dar|error "Error"
        warning line 3, column 38: valueQuantity.value "1,5" is not a number
        "#,
        r#"
        id comparator
        absent dar|error "Error"
        warning line 5, column 59: valueQuantity.comparator "~" is not <, <=, >= or >
        "#,
        r#"
        id boolean
        absent dar|error "Error"
        warning line 6, column 79: valueBoolean "yes" is not true or false
        "#,
        r#"
        id panel
        component[0] code text "ok"
        component[0] value 120
        component[1] code text "bad"
        component[1] absent dar|error "Error"
        warning line 9, column 84: valueQuantity.value "eighty" is not a number
        "#,
        r#"
        id times
        absent dar|error "Error"
        range _ .. 5.1
        warning line 11, column 72: status "done" is not a FHIR observation status
        warning line 12, column 42: effectiveDateTime "2024-13-01" is not a date-time: not a valid calendar date
        warning line 13, column 42: referenceRange.low.value "x" is not a number
        warning line 14, column 32: valueTime "25:00:00" is not a time (hh:mm:ss)
        "#,
        r#"
        id sampled
        warning line 17, column 65: effectiveTiming is not supported; it was left out
        warning line 18, column 139: valueSampledData is not supported; it was left out
        "#,
        r#"
        id fine
        value 7.10
        "#,
    ];
    for (o, want) in rows_.iter().zip(expected) {
        check(o, want);
    }
}

#[test]
fn lenient_numbers_in_every_lexical_form() {
    for (written, canonical) in [
        ("00", "0"),
        ("+5", "5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("1E3", "1E3"),
        (" 98.60 ", "98.60"),
    ] {
        let doc = format!(
            r#"<Observation xmlns="http://hl7.org/fhir"><id value="x"/><valueQuantity><value value="{written}"/></valueQuantity></Observation>"#
        );
        let o = &fhir(doc.as_bytes()).unwrap()[0];
        check(o, &format!("id x\nvalue {canonical}"));
    }
}

#[test]
fn a_bare_observation_and_fallback_ids() {
    let o = &fhir(
        br#"<Observation xmlns="http://hl7.org/fhir"><valueString value="x"/></Observation>"#,
    )
    .unwrap()[0];
    assert_eq!(o.id, "");
    let doc = br#"<Bundle xmlns="http://hl7.org/fhir"><entry><fullUrl value="urn:uuid:abc-1"/>
      <resource><Observation><valueString value="y"/></Observation></resource></entry></Bundle>"#;
    assert_eq!(fhir(doc).unwrap()[0].id, "abc-1");
}
