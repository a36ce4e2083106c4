//! HL7 CDA R2 / C-CDA: the HL7 C-CDA examples (two full CCDs, the Results and Vital Signs
//! examples, the implementation guide's template examples; fragments are wrapped as
//! SOURCES.md explains), a hand-written document for the types no example carries, and the
//! `value="00"` regression.

use medgate_core::{Comparator, Observation, Value};

use crate::util::{by_id, cda, cda_file, check, check_at, facts, fixture};

/// (fixture, observations emitted).
const COUNTS: &[(&str, usize)] = &[
    ("cda/ccd-1.xml", 21),
    ("cda/ccd-2.xml", 12),
    ("cda/bmp-troponin.xml", 9),
    ("cda/co2.xml", 1),
    ("cda/coded-neg-pos.xml", 2),
    ("cda/covid-positive-cd.xml", 1),
    ("cda/greater-than-ivl.xml", 1),
    ("cda/growth-charts.xml", 5),
    ("cda/heart-rate-rhythm.xml", 2),
    ("cda/lab-location.xml", 1),
    ("cda/less-than-ivl.xml", 1),
    ("cda/multiple-reference-ranges.xml", 1),
    // The LDL result's unit sits in an entryRelationship observation: not a result.
    ("cda/non-numeric-pq.xml", 2),
    ("cda/pending-component.xml", 1),
    ("cda/radiology-ed.xml", 1),
    // Its unit-translation observation is an entryRelationship too.
    ("cda/translation-unit.xml", 1),
    ("cda/unit-non-ucum.xml", 1),
    ("cda/urine-color-st.xml", 1),
    ("cda/vital-signs-metric.xml", 9),
    ("cda/vital-signs-mixed-units.xml", 9),
    ("cda/vital-signs-oxygen.xml", 10),
    ("cda/guide-result-observation.xml", 1),
    ("cda/guide-vital-sign-observation.xml", 1),
    // The guide's organizer and section examples elide their observations (`. . .`).
    ("cda/guide-result-organizer.xml", 0),
    ("cda/guide-results-section.xml", 0),
    ("cda/guide-vital-signs-organizer.xml", 0),
    ("cda/guide-vital-signs-section.xml", 0),
];

#[test]
fn every_example_parses_to_its_results() {
    for (path, count) in COUNTS {
        let rows = cda_file(path);
        assert_eq!(rows.len(), *count, "{path}");
        for o in &rows {
            assert!(!o.id.is_empty(), "{path}");
            assert!(!o.code.is_empty(), "{path}: {}", o.id);
        }
    }
}

/// (fixture, index, expected facts).
const SAMPLES: &[(&str, usize, &str)] = &[
    (
        // IVL_PQ with both bounds: a Range (HL7 bounds default to inclusive, as FHIR's).
        "cda/less-than-ivl.xml",
        0,
        r#"
        id df0f809e-f0a9-4a30-aad0-92b5cc868b67
        status final
        category cat|laboratory "Laboratory"
        code loinc|42637-9 "Natriuretic Peptide B [Mass/Volume] In Blood"
        effective 2013-10-20T09:08:00-05:00
        value range 0 'pg/mL' ucum|pg/mL .. 5 'pg/mL' ucum|pg/mL
        interpretation v3|N "Normal"
        range 0 'pg/mL' ucum|pg/mL .. 100 'pg/mL' ucum|pg/mL type rr|normal "Normal Range"
        "#,
    ),
    (
        // `low inclusive="false"` and `high nullFlavor="PINF"`: ">500", as FHIR writes it.
        "cda/greater-than-ivl.xml",
        0,
        r#"
        id cda1fc54-59fb-412d-86e0-acf6b78aa9a6
        status final
        category cat|laboratory "Laboratory"
        code loinc|32016-8 "Glucose [Mass/Volume] In Capillary Blood"
        effective 2014-03-02T09:08:00-05:00
        value >500 'mg/dL' ucum|mg/dL
        interpretation v3|>
        range 80 'mg/dL' ucum|mg/dL .. 140 'mg/dL' ucum|mg/dL type rr|normal "Normal Range"
        range 140 'mg/dL' ucum|mg/dL .. 500 'mg/dL' ucum|mg/dL
        "#,
    ),
    (
        // PQ nullFlavor="OTH" with the real value and unit in <translation>.
        "cda/unit-non-ucum.xml",
        0,
        r#"
        id 1.2.3.4.5/efgh
        status final
        category cat|laboratory "Laboratory"
        code loinc|26515-7 "Platelets [#/volume] in Blood"
        effective 2014-02-13T10:37:00-06:00
        value 152 'THOUS/MCL'
        interpretation v3|N "Normal"
        range 150 'THOUS/MCL' .. 400 'THOUS/MCL' type rr|normal "Normal Range"
        warning line 74, column 14: PQ value is a nullFlavor (OTH); the value and unit of its translation were used
        warning line 85, column 15: referenceRange bound is a nullFlavor (OTH); the value and unit of its translation were used
        warning line 90, column 16: referenceRange bound is a nullFlavor (OTH); the value and unit of its translation were used
        "#,
    ),
    (
        // effectiveTime low/high: a period.
        "cda/translation-unit.xml",
        0,
        r#"
        id f16043d8-8d93-41a1-9682-a6cc7215572c
        status final
        category cat|laboratory "Laboratory"
        code loinc|26515-7 "Platelets [#/volume] in Blood"
        effective period 2013-10-20T09:08:00-05:00 .. 2013-10-20T09:08:00-05:00
        value 152 '10*3/uL' ucum|10*3/uL
        interpretation v3|N "Normal"
        range 150 '10*3/uL' ucum|10*3/uL .. 400 '10*3/uL' ucum|10*3/uL type rr|normal "Normal Range"
        "#,
    ),
    (
        "cda/multiple-reference-ranges.xml",
        0,
        r#"
        id 107c2dc0-67a5-11db-bd13-0800200c9a66
        status final
        category cat|laboratory "Laboratory"
        code loinc|5048-4 "Nuclear Ab [Titer] in Serum by Immunofluorescence"
        effective 2017-03-19T12:30:00-08:00
        value string "Borderline, equal to 1:80"
        interpretation v3|A "Abnormal"
        range _ .. _ type rr|normal "Normal Range" text "Negative, less than 1:80"
        range _ .. _ text "Borderline, equal to 1:80"
        range _ .. _ text "Positive, greater than 1:80"
        "#,
    ),
    (
        "cda/coded-neg-pos.xml",
        1,
        r#"
        id 404bba0e-1c76-4265-afb5-1a57b55e128b
        status final
        category cat|laboratory "Laboratory"
        code loinc|60256-5 "Neisseria gonorrhoeae rRNA [Presence] in Urine by NAA with probe detection"
        effective 2013-10-22T14:26:00-05:00
        value cc sct|10828004 "Positive"
        interpretation v3|A "Abnormal"
        range _ .. _ type rr|normal "Normal Range" text "A negative value is a normal result"
        range _ .. _ text "A positive value is an abnormal result"
        "#,
    ),
    (
        // unit="1" is UCUM's unity; the date has day precision.
        "cda/lab-location.xml",
        0,
        r#"
        id 1.3.6.1.4.1.22812.20.1.1.4.5/13
        status final
        category cat|laboratory "Laboratory"
        code loinc|5811-5
        effective 2015-06-22
        value 1.015 '1' ucum|1
        range 1.005 '1' ucum|1 .. 1.030 '1' ucum|1
        "#,
    ),
    (
        // An ED value that only references the narrative: no value.
        "cda/radiology-ed.xml",
        0,
        r#"
        id e1aa44dd-6f39-2f5c-b267-897c3824b563
        status final
        category cat|laboratory "Laboratory"
        code loinc|36643-5 "XR Chest 2 Views"
        effective 2015-02-25T09:10:59-05:00
        "#,
    ),
    (
        "cda/urine-color-st.xml",
        0,
        r#"
        id f1aa44dd-6f39-4f5c-b267-897c3824b563
        status final
        category cat|laboratory "Laboratory"
        code loinc|5778-6 "Color of Urine"
        effective 2013-10-23T09:08:23-05:00
        value string "Amber"
        interpretation v3|N "Normal"
        "#,
    ),
    (
        "cda/heart-rate-rhythm.xml",
        1,
        r#"
        id 2.16.840.1.113883.3.42.126.100001.19/216881330410151
        status final
        category cat|vital-signs "Vital Signs"
        code loinc|8884-9 "Heart rate rhythm"
        effective 2014-05-20T19:36:05-06:00
        value cc sct|248651005 "Heart irregularly irregular (finding)"
        "#,
    ),
    (
        "cda/vital-signs-mixed-units.xml",
        3,
        r#"
        id 85f5784f-2958-4321-b7b6-3030d1577dc0
        status final
        category cat|vital-signs "Vital Signs"
        code loinc|8310-5 "Body temperature"
        effective 2014-05-20T19:36:05-05:00
        value 99.0 '[degF]' ucum|[degF]
        "#,
    ),
    (
        // The unit typo is the sender's; it is kept as written.
        "cda/bmp-troponin.xml",
        4,
        r#"
        id e3db8661-71b7-4cf3-a666-4ed9e127e134
        status final
        category cat|laboratory "Laboratory"
        code loinc|6299-2 "Urea nitrogen [Mass/volume] in Blood"
        effective 2012-10-02T09:08:00-05:00
        value 10 'md/dL' ucum|md/dL
        interpretation v3|N "Normal"
        range 8 'mg/dL' ucum|mg/dL .. 24 'mg/dL' ucum|mg/dL type rr|normal "Normal Range" text "8-24 mg/dL"
        "#,
    ),
    (
        "cda/guide-result-observation.xml",
        0,
        r#"
        id 7c0704bb-9c40-41b5-9c7d-26b2d59e234f
        status final
        code loinc|20570-8 "Hematocrit"
        effective 2008-03-19T08:30:00-08:00
        value 35.3 '%' ucum|%
        interpretation v3|L "Low"
        range 34.9 '%' ucum|% .. 44.5 '%' ucum|% text "Low"
        "#,
    ),
    (
        "cda/growth-charts.xml",
        0,
        r#"
        id 1.2.840.114350.1.13.861.1.7.1.2109.1/5610719400-WfLPerc-Z197199
        status final
        category cat|vital-signs "Vital Signs"
        code loinc|77606-2 "Weight-for-length Per age and sex"
        effective 2014-05-20T19:36:05-06:00
        value 50 '%' ucum|%
        "#,
    ),
];

#[test]
fn real_examples() {
    for (path, index, expected) in SAMPLES {
        check_at(&cda_file(path), *index, expected);
    }
}

#[test]
fn pending_result_has_a_reason_instead_of_a_value() {
    // statusCode active → preliminary; PQ nullFlavor="NA" → data-absent-reason.
    check(
        &cda_file("cda/pending-component.xml")[0],
        "id 68762391-bfa5-4dfa-9f6f-d37109a97d19\n\
         status preliminary\n\
         category cat|laboratory \"Laboratory\"\n\
         code loinc|804-5 \"Leukocytes [#/\u{200b}volume] in Blood by Manual count\"\n\
         effective 2012-08-06\n\
         absent dar|not-applicable \"Not Applicable\"",
    );
}

/// (code, facts after `id`) of every observation in order: what a CCD yields, whole.
fn summary(rows: &[Observation]) -> Vec<String> {
    rows.iter()
        .map(|o| facts(o).lines().skip(1).collect::<Vec<_>>().join(" | "))
        .collect()
}

#[test]
fn ccd_1_yields_the_patients_results_only() {
    let rows = cda_file("cda/ccd-1.xml");
    let summary = summary(&rows);
    let has = |needle: &str| summary.iter().any(|s| s.contains(needle));
    // The family-history organizer has a <subject> (the father): not the patient's.
    assert!(!has("Myocardial infarction") && !has("Diabetes mellitus"));
    // Problem, allergy and reaction observations sit in entryRelationships: not emitted.
    assert!(!has("ASSERTION") && !has("Penicillin"));
    assert_eq!(
        summary[2],
        "status final | code loinc|46008-9 \"Bathing\" | value cc sct|371153006 \"Independent\" | \
         warning line 1184, column 54: effectiveTime \"200130311\" is not a valid HL7 timestamp"
    );
    // A procedure observation with an empty CD: emitted, no value; aborted → cancelled.
    assert_eq!(
        summary[3],
        "status cancelled | code sct|274025005 \"Colonic polypectomy\" | effective 2011-02-03"
    );
    check(
        by_id(&rows, "107c2dc0-67a5-11db-bd13-0800200c9a66"),
        r#"
        id 107c2dc0-67a5-11db-bd13-0800200c9a66
        status final
        category cat|laboratory "Laboratory"
        code loinc|718-7 "Hemoglobin"
        effective 2008-03-19T08:30:00-08:00
        value 13.2 'g/dL' ucum|g/dL
        interpretation v3|N "Normal"
        range 12.0 'g/dL' ucum|g/dL .. 15.5 'g/dL' ucum|g/dL
        "#,
    );
    check(
        by_id(&rows, "aed821af-3330-4138-97f0-e84dfe5f3c35"),
        r#"
        id aed821af-3330-4138-97f0-e84dfe5f3c35
        status preliminary
        category cat|laboratory "Laboratory"
        code loinc|3094-0 "Urea nitrogen, Serum"
        effective 2008-03-20T09:30:00-08:00
        absent dar|unknown "Unknown"
        "#,
    );
    check(
        by_id(&rows, "45efb604-7049-4a2e-ad33-d38556c9636c"),
        r#"
        id 45efb604-7049-4a2e-ad33-d38556c9636c
        status final
        category cat|social-history "Social History"
        code loinc|11367-0 "History of tobacco use"
        effective period 2009-02-14 .. 2011-02-15
        value cc sct|160604004 "Moderate cigarette smoker"
        "#,
    );
    // A PQ without unit stays unitless: HL7's default unit is not invented.
    check(
        by_id(&rows, "37f76c51-6411-4e1d-8a37-957fd49d2cef"),
        r#"
        id 37f76c51-6411-4e1d-8a37-957fd49d2cef
        status final
        category cat|social-history "Social History"
        code loinc|74013-4 "Alcoholic drinks per day"
        effective period 2012-02-15 .. _
        value 12
        "#,
    );
}

#[test]
fn ccd_2_rows() {
    let rows = cda_file("cda/ccd-2.xml");
    check(
        by_id(&rows, "5858e765-2ffe-413f-9197-260f2c6e7aa8"),
        r#"
        id 5858e765-2ffe-413f-9197-260f2c6e7aa8
        status final
        category cat|vital-signs "Vital Signs"
        code loinc|39156-5 "Body mass index (BMI) [Ratio]"
        effective 2014-10-01T10:30:26-05:00
        value 37.58 'kg/m2' ucum|kg/m2
        "#,
    );
    check(
        by_id(&rows, "2.16.840.1.113883.19/123456789"),
        r#"
        id 2.16.840.1.113883.19/123456789
        status final
        category cat|social-history "Social History"
        code loinc|72166-2 "Tobacco smoking status NHIS"
        effective 2014-10-01T10:30:26-05:00
        value cc sct|266927001 "Tobacco smoking consumption unknown"
        "#,
    );
}

/// The regression of issue #6: one odd value (`00` with unit `1`) in a real CCD turned the
/// whole document into an error. Edit two results of CCD 1 in memory and compare with the
/// unedited parse: everything else must be identical.
#[test]
fn one_odd_value_costs_nothing_and_one_bad_value_costs_only_itself() {
    let original = String::from_utf8(fixture("cda/ccd-1.xml")).unwrap();
    let edited = original
        .replacen(
            r#"<value xsi:type="PQ" value="13.2" unit="g/dL" />"#,
            r#"<value value="00" unit="1" xsi:type="PQ"/>"#,
            1,
        )
        .replacen(
            r#"<value xsi:type="PQ" value="123" unit="10*9/L" />"#,
            r#"<value xsi:type="PQ" value="1,5" unit="10*9/L" />"#,
            1,
        );
    assert_ne!(edited, original);
    let before = cda(original.as_bytes()).unwrap();
    let after = cda(edited.as_bytes()).unwrap();
    assert_eq!(after.len(), before.len());
    let hemoglobin = "107c2dc0-67a5-11db-bd13-0800200c9a66";
    let platelets = "ef5c1c58-4665-4556-a8e8-6e720d82f572";
    for (a, b) in after.iter().zip(&before) {
        if a.id != hemoglobin && a.id != platelets {
            assert_eq!(a, b);
        }
    }
    let zero = by_id(&after, hemoglobin);
    assert!(
        facts(zero).contains("\nvalue 0 '1' ucum|1\n"),
        "{}",
        facts(zero)
    );
    assert!(zero.warnings.is_empty());
    let bad = by_id(&after, platelets);
    assert_eq!(bad.value, Value::None);
    let text = facts(bad);
    assert!(text.contains("absent dar|error \"Error\""), "{text}");
    assert!(
        text.contains("warning line 2939, column 68: PQ value \"1,5\" is not a number"),
        "{text}"
    );
}

/// Every value type and rule the examples do not exercise.
pub(crate) const TYPES: &str = r#"<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<component><structuredBody><component><section>
<code code="30954-2" codeSystem="2.16.840.1.113883.6.1"/>
<text><table><tr><td><content>narrative is skipped</content></td></tr></table></text>
<entry><organizer classCode="BATTERY" moodCode="EVN"><statusCode code="completed"/>
<component><observation><id extension="int"/><code code="X"/><statusCode code="nullified"/><effectiveTime value=""/><value xsi:type="INT" value="+42"/></observation></component>
<component><observation><id extension="big"/><code code="X"/><value xsi:type="INT" value="3000000000"/></observation></component>
<component><observation><id extension="real"/><code code="X"/><value xsi:type="REAL" value="1E3"/></observation></component>
<component><observation><id extension="bl"/><code code="X"/><statusCode code="held"/><value xsi:type="BL" value="true"/></observation></component>
<component><observation><id extension="ts"/><code code="X"/><value xsi:type="TS" value="20140520193605.123+0130"/></observation></component>
<component><observation><id extension="ivl-ts"/><code code="X"/><value xsi:type="IVL_TS"><low value="2014"/><high value="201405"/></value></observation></component>
<component><observation><id extension="rto"/><code code="X"/><value xsi:type="RTO_PQ_PQ"><numerator value="1"/><denominator value="128"/></value></observation></component>
<component><observation><id extension="lt"/><code code="X"/><value xsi:type="IVL_PQ"><high value="5" unit="mg" inclusive="false"/></value></observation></component>
<component><observation><id extension="le"/><code code="X"/><value xsi:type="IVL_PQ"><low nullFlavor="NINF"/><high value="5" unit="mg"/></value></observation></component>
<component><observation><id extension="gt"/><code code="X"/><value xsi:type="IVL_PQ"><low value=".5" unit="mg" inclusive="false"/></value></observation></component>
<component><observation><id extension="ge"/><code code="X"/><value xsi:type="IVL_PQ"><low value="5." unit="mg"/></value></observation></component>
<component><observation><id extension="open"/><code code="X"/><value xsi:type="IVL_PQ"><low value="1" inclusive="false"/><high value="2"/></value></observation></component>
<component><observation><id extension="cd"/>
  <code code="X" codeSystem="1.2.3" displayName="Local"><originalText>Local test</originalText><translation code="2345-7" codeSystem="2.16.840.1.113883.6.1"/></code>
  <value xsi:type="CD" code="10828004" codeSystem="2.16.840.1.113883.6.96" displayName="Positive"><originalText>POS</originalText><translation code="P" codeSystem="1.2.3.4"/></value>
  <interpretationCode code="A"/>
</observation></component>
<component><observation><id extension="untyped"/><code code="X"/><value value="7" unit="mmol/L"/></observation></component>
<component><observation><id extension="unknown-type"/><code code="X"/><value xsi:type="SC">text of a coded string</value></observation></component>
<component><observation><id extension="st-null"/><code code="X"/><value xsi:type="ST" nullFlavor="UNK"/></observation></component>
<component><observation><id extension="bad-bl"/><code code="X"/><statusCode code="aborted"/><value xsi:type="BL" value="maybe"/></observation></component>
<component><observation><id extension="iso"/><code code="X"/><effectiveTime value="2014-05-20"/><value xsi:type="ST">x</value></observation></component>
<component><observation><id extension="no-value"/><code code="X"/></observation></component>
<component><observation><id extension="other-subject"/><code code="X"/><subject><relatedSubject/></subject><value xsi:type="ST">not the patient</value></observation></component>
<component><observation><id extension="nested"/><code code="X"/><value xsi:type="ST">kept</value>
  <entryRelationship typeCode="COMP"><observation><id extension="supporting"/><code code="Y"/><value xsi:type="ST">skipped</value></observation></entryRelationship>
</observation></component>
</organizer></entry>
<entry><organizer classCode="CLUSTER" moodCode="EVN"><subject><relatedSubject classCode="PRS"/></subject>
<component><observation><id extension="family"/><code code="X"/><value xsi:type="ST">the father's</value></observation></component>
</organizer></entry>
</section></component>
<component><section><code code="8716-3" codeSystem="2.16.840.1.113883.6.1"/>
<entry><observation><code code="29463-7" codeSystem="2.16.840.1.113883.6.1"/><value xsi:type="PQ" value="70.5" unit="kg"/></observation></entry>
</section></component>
</structuredBody></component></ClinicalDocument>"#;

#[test]
fn every_value_type_and_rule() {
    let rows = cda(TYPES.as_bytes()).unwrap();
    let lab = "category cat|laboratory \"Laboratory\"";
    let x = "code -|X";
    let expected: Vec<(&str, String)> = vec![
        ("int", format!("status entered-in-error\n{lab}\n{x}\nvalue integer 42")),
        (
            "big",
            format!("{lab}\n{x}\nvalue 3000000000\nwarning line 7, column 104: INT value 3000000000 is not a 32-bit integer; kept as a number"),
        ),
        ("real", format!("{lab}\n{x}\nvalue 1E3")),
        ("bl", format!("{lab}\n{x}\nvalue boolean true")),
        ("ts", format!("{lab}\n{x}\nvalue dateTime 2014-05-20T19:36:05.123+01:30")),
        ("ivl-ts", format!("{lab}\n{x}\nvalue period 2014 .. 2014-05")),
        ("rto", format!("{lab}\n{x}\nvalue ratio 1 : 128")),
        ("lt", format!("{lab}\n{x}\nvalue <5 'mg' ucum|mg")),
        ("le", format!("{lab}\n{x}\nvalue <=5 'mg' ucum|mg")),
        ("gt", format!("{lab}\n{x}\nvalue >0.5 'mg' ucum|mg")),
        ("ge", format!("{lab}\n{x}\nvalue >=5 'mg' ucum|mg")),
        (
            "open",
            format!("{lab}\n{x}\nvalue range 1 .. 2\nwarning line 17, column 147: IVL_PQ value has an exclusive bound; FHIR ranges are inclusive"),
        ),
        (
            "cd",
            format!(
                "{lab}\ncode urn:oid:1.2.3|X \"Local\", loinc|2345-7, text \"Local test\"\n\
                 value cc sct|10828004 \"Positive\", urn:oid:1.2.3.4|P, text \"POS\"\n\
                 interpretation v3|A"
            ),
        ),
        (
            "untyped",
            format!("{lab}\n{x}\nvalue 7 'mmol/L' ucum|mmol/L\nwarning line 23, column 98: value has no xsi:type; read as PQ"),
        ),
        (
            "unknown-type",
            format!("{lab}\n{x}\nvalue string \"text of a coded string\"\nwarning line 24, column 122: value of xsi:type \"SC\" is not supported; read as ST"),
        ),
        ("st-null", format!("{lab}\n{x}\nabsent dar|unknown \"Unknown\"")),
        (
            "bad-bl",
            format!("status cancelled\n{lab}\n{x}\nabsent dar|error \"Error\"\nwarning line 26, column 129: BL value \"maybe\" is not true or false"),
        ),
        (
            "iso",
            format!("{lab}\n{x}\neffective 2014-05-20\nvalue string \"x\"\nwarning line 27, column 97: effectiveTime \"2014-05-20\" is ISO 8601, not an HL7 timestamp; read as ISO 8601"),
        ),
        ("nested", format!("{lab}\n{x}\nvalue string \"kept\"")),
        (
            // No <id>: the position among emitted observations.
            "19",
            "category cat|vital-signs \"Vital Signs\"\ncode loinc|29463-7\nvalue 70.5 'kg' ucum|kg"
                .to_owned(),
        ),
    ];
    let ids: Vec<&str> = rows.iter().map(|o| o.id.as_str()).collect();
    let want_ids: Vec<&str> = expected.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, want_ids);
    for (o, (id, rest)) in rows.iter().zip(&expected) {
        check(o, &format!("id {id}\n{rest}"));
    }
    let Value::Quantity(q) = &by_id(&rows, "lt").value else {
        panic!()
    };
    assert_eq!(q.comparator, Some(Comparator::Less));
}

#[test]
fn cda_refuses_other_roots() {
    let err = cda(&fixture("fhir/observation-bp.xml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("CDA namespace"), "{err}");
    let err = cda(br#"<Section xmlns="urn:hl7-org:v3"/>"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a ClinicalDocument"), "{err}");
}
