//! HL7 v2 ORU^R01 on the real published samples of `tests/fixtures/hl7v2/` (see
//! ATTRIBUTION.md), asserting typed values, and the exact error paths of the broken ones.

use medgate_core::model::{INTERPRETATION_SYSTEM, LOINC, UCUM};
use medgate_core::{Comparator, DateTime, Effective, Observation, Quantity, Status, Value};
use medgate_ingest::hl7::er7;
use medgate_ingest::{IngestError, PatientIdRule, Report, ReportKind};

use super::*;

const ER7: &str = "x-application/hl7-v2+er7";

fn hl7(path: &str) -> Vec<Report> {
    medgate_ingest::parse(ER7, &fixture(&format!("hl7v2/{path}")), &ctx())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn one(path: &str) -> Report {
    let mut reports = hl7(path);
    assert_eq!(reports.len(), 1, "{path}");
    reports.remove(0)
}

fn quantity(o: &Observation) -> &Quantity {
    match &o.value {
        Value::Quantity(q) => q,
        other => panic!("{}: not a quantity: {other:?}", o.id),
    }
}

/// The first result (not an OBR panel) with `code`.
fn by_loinc<'a>(r: &'a Report, code: &str) -> &'a Observation {
    r.observations
        .iter()
        .filter(|o| o.has_member.is_empty())
        .find(|o| {
            o.code
                .coding
                .iter()
                .any(|c| c.code.as_deref() == Some(code))
        })
        .unwrap_or_else(|| panic!("no observation {code}"))
}

fn dt(t: &str) -> DateTime {
    DateTime::parse(t).unwrap()
}

#[test]
fn nist_lead_case_1_reads_every_field() {
    let r = one("ruby-hl7/ORU_R01_2.5.1_SampleTestCase1.hl7");
    assert_eq!(&*r.patient_id, "9817566735");
    assert_eq!(r.kind, ReportKind::Lab);
    // MSH-7 has no offset: it stays a local time.
    assert_eq!(r.reported_at.to_string(), "2010-09-29T11:07:02");
    assert!(r.reported_at.is_local());
    assert_eq!(r.report_id.as_deref(), Some("NIST-100929110701660"));
    let app = r.app.as_ref().unwrap();
    assert_eq!(app.id, "EHR Application");
    assert_eq!(app.version.as_deref(), Some("3.6.23"));
    assert_eq!(r.at, "PID[1]");
    assert_eq!(r.observations.len(), 2);

    let panel = &r.observations[0];
    assert_eq!(panel.id, "rq1-0-0");
    assert_eq!(panel.code.coding[0].code.as_deref(), Some("10368-9"));
    assert_eq!(panel.code.coding[0].system.as_deref(), Some(LOINC));
    assert_eq!(
        panel.code.coding[1].system.as_deref(),
        Some("urn:medgate:hl7v2:coding-system:99USI")
    );
    assert_eq!(panel.status, Some(Status::Final));
    assert_eq!(panel.value, Value::None);
    assert_eq!(
        panel.effective,
        Some(Effective::DateTime(dt("2008-08-15T10:30:00-07:00")))
    );
    assert_eq!(panel.issued, Some(dt("2008-08-18T18:00:00-07:00")));
    assert_eq!(panel.has_member.len(), 1);
    assert_eq!(
        panel.has_member[0].reference.as_deref(),
        Some("Observation/epro.rq1-0-1")
    );

    let lead = &r.observations[1];
    assert_eq!(lead.id, "rq1-0-1");
    assert_eq!(&*lead.patient_id, "9817566735");
    assert_eq!(&*lead.source, "epro");
    assert_eq!(
        lead.category[0].coding[0].code.as_deref(),
        Some("laboratory")
    );
    let q = quantity(lead);
    assert_eq!(q.value.as_ref().unwrap().as_str(), "50");
    assert_eq!(q.code.as_deref(), Some("ug/dL"));
    assert_eq!(q.system.as_deref(), Some(UCUM));
    assert_eq!(q.unit.as_deref(), Some("micro-gram per deci-liter"));
    assert_eq!(lead.status, Some(Status::Final));
    assert_eq!(lead.interpretation[0].coding[0].code.as_deref(), Some("H"));
    assert_eq!(
        lead.interpretation[0].coding[0].system.as_deref(),
        Some(INTERPRETATION_SYSTEM)
    );
    // Prose range (double space kept): text only, no invented bounds.
    let range = &lead.reference_range[0];
    assert_eq!(
        range.text.as_deref(),
        Some("<9 mcg/dL:  Acceptable background lead exposure")
    );
    assert!(range.low.is_none() && range.high.is_none());
    assert_eq!(
        lead.effective,
        Some(Effective::DateTime(dt("2008-08-15T10:30:00-07:00")))
    );
    // OBX-14 given; the OBR's report time is inherited as `issued`.
    assert_eq!(lead.issued, Some(dt("2008-08-18T18:00:00-07:00")));
}

#[test]
fn hl7_v24_glucose_structured_numeric_and_underscore_range() {
    let r = one("ms-fhir-converter/ORU-R01-RMGEAD.hl7");
    assert_eq!(&*r.patient_id, "555-44-4444");
    assert_eq!(r.reported_at.to_string(), "2002-02-15T09:30:00+06:00");
    let panel = &r.observations[0];
    // OBR-4 local code without a system: a coding without system.
    assert_eq!(panel.code.coding[0].code.as_deref(), Some("15545"));
    assert_eq!(panel.code.coding[0].system, None);
    let glucose = &r.observations[1];
    // OBX-3's third component is a LOINC long name, not a system: kept as a local system.
    assert_eq!(glucose.code.coding[0].code.as_deref(), Some("1554-5"));
    let q = quantity(glucose);
    assert_eq!(q.value.as_ref().unwrap().as_str(), "182");
    assert_eq!(q.comparator, None);
    // `mg/dl` has no coding system: kept as the unit text, not claimed to be UCUM.
    assert_eq!(q.unit.as_deref(), Some("mg/dl"));
    assert_eq!((q.system.as_deref(), q.code.as_deref()), (None, None));
    let range = &glucose.reference_range[0];
    assert_eq!(
        range.low.as_ref().unwrap().value.as_ref().unwrap().as_str(),
        "70"
    );
    assert_eq!(
        range
            .high
            .as_ref()
            .unwrap()
            .value
            .as_ref()
            .unwrap()
            .as_str(),
        "105"
    );
    assert_eq!(range.text.as_deref(), Some("70_105"));
    assert_eq!(
        glucose.interpretation[0].coding[0].code.as_deref(),
        Some("H")
    );
    // No OBX-14: the OBR's collection time.
    assert_eq!(
        glucose.effective,
        Some(Effective::DateTime(dt("2002-02-15T07:30:00+06:00")))
    );
}

#[test]
fn escaped_component_separators_in_units_and_local_codes() {
    let r = one("hamaluik-hl7-parser/sample_oru_r01_lab.hl7");
    assert_eq!(&*r.patient_id, "AND234DA_PID3");
    assert_eq!(r.observations.len(), 15);
    // `CBC \T\ Auto Differential` in OBR-4's alternate text.
    assert_eq!(
        r.observations[0].code.coding[1].display.as_deref(),
        Some("CBC & Auto Differential")
    );
    let wbc = by_loinc(&r, "6690-2");
    assert_eq!(wbc.code.coding[0].code.as_deref(), Some("301.0500"));
    assert_eq!(wbc.code.coding[1].system.as_deref(), Some(LOINC));
    let q = quantity(wbc);
    assert_eq!(q.value.as_ref().unwrap().as_str(), "10.1");
    assert_eq!(q.unit.as_deref(), Some("10^9/L"));
    assert_eq!(
        wbc.reference_range[0]
            .low
            .as_ref()
            .unwrap()
            .value
            .as_ref()
            .unwrap()
            .as_str(),
        "3.1"
    );
    assert_eq!(
        wbc.reference_range[0].low.as_ref().unwrap().unit.as_deref(),
        Some("10^9/L")
    );
    // No offset anywhere in this 2.3 message: local times stay local.
    assert!(wbc.effective.unwrap().start().unwrap().is_local());
}

#[test]
fn newborn_screening_keeps_digits_micro_signs_and_line_breaks() {
    let r = one("cdc-prime-reportstream/sample_oru_20241015-001.hl7");
    assert_eq!(r.observations.len(), 169);
    let glycine = by_loinc(&r, "47633-3");
    assert_eq!(quantity(glycine).unit.as_deref(), Some("µmol/L"));
    let narrative = by_loinc(&r, "57724-7");
    let Value::String(text) = &narrative.value else {
        panic!("{:?}", narrative.value)
    };
    assert!(text.starts_with("ACTION REQUIRED\n\nNBS Testing Lab - TEST REG MEDICAL CENTER LAB ~M"));
    let digits: Vec<&str> = r
        .observations
        .iter()
        .filter_map(|o| match &o.value {
            Value::Quantity(q) => q.value.as_ref().map(|d| d.as_str()),
            _ => None,
        })
        .collect();
    assert!(digits.contains(&"0.01000"), "{digits:?}");
    let alanine = by_loinc(&r, "53150-9");
    let range = &alanine.reference_range[0];
    assert_eq!(range.text.as_deref(), Some("<1000"));
    assert!(
        range.high.is_none(),
        "`<1000` is not an inclusive high bound"
    );
}

#[test]
fn pending_results_and_out_of_order_obr() {
    let r = one("ms-fhir-converter/LAB-ORU-1.hl7");
    assert_eq!(&*r.patient_id, "10006579");
    // Two OBR panels, 5 + 5 OBX.
    let panels: Vec<&Observation> = r
        .observations
        .iter()
        .filter(|o| !o.has_member.is_empty())
        .collect();
    assert_eq!(panels.len(), 2);
    assert_eq!(panels[0].has_member.len(), 5);
    let leukocytes = by_loinc(&r, "11156-7");
    assert_eq!(leukocytes.status, Some(Status::Registered));
    assert_eq!(leukocytes.value, Value::None);
    let erythrocytes = by_loinc(&r, "11273-0");
    assert_eq!(erythrocytes.status, Some(Status::Preliminary));
    assert_eq!(quantity(erythrocytes).unit.as_deref(), Some("tera.l-1"));
    assert_eq!(quantity(erythrocytes).code, None);
    assert_eq!(
        erythrocytes.effective,
        Some(Effective::DateTime(dt("2014-10-06T06:27:00+07:00")))
    );
}

#[test]
fn cwe_flags_ucum_in_third_component_and_corrected_results() {
    let hci = one("cdc-prime-reportstream/hci.hl7");
    let a1c = by_loinc(&hci, "55454-3");
    assert_eq!(
        a1c.code.coding[0].display.as_deref(),
        Some("Hemoglobin A1C")
    );
    let q = quantity(a1c);
    assert_eq!(
        (
            q.value.as_ref().unwrap().as_str(),
            q.code.as_deref(),
            q.unit.as_deref()
        ),
        ("5.8", Some("mg/dL"), Some("mg/dL"))
    );
    assert_eq!(a1c.interpretation[0].coding[0].code.as_deref(), Some("H"));
    assert_eq!(
        a1c.reference_range[0]
            .high
            .as_ref()
            .unwrap()
            .value
            .as_ref()
            .unwrap()
            .as_str(),
        "5.6"
    );
    let hbs = by_loinc(&hci, "5196-1");
    assert_eq!(hbs.value, Value::String("Reactive".into()));
    assert_eq!(hbs.interpretation[0].coding[0].code.as_deref(), Some("A"));

    let elims = one("cdc-prime-reportstream/elims_47_1_32361_04608646_11034_mega_case.hl7");
    assert!(elims
        .observations
        .iter()
        .any(|o| o.status == Some(Status::Corrected)));
}

/// The NIST LRI CBC message and Microsoft FHIR-Converter's published FHIR output for it: two
/// independent readings of the same results must agree on code, digits, unit and flag.
#[test]
fn lri_cbc_agrees_with_the_fhir_converter_output() {
    let from_hl7 = one("ms-fhir-converter/LRI_2.0-NG_CBC_Typ_Message.hl7");
    let body = fixture("fhir-json/converter-output/LRI_2.0-NG_CBC_Typ_Message-expected.json");
    let from_fhir = medgate_ingest::parse("application/fhir+json", &body, &ctx()).unwrap();
    assert_eq!(from_fhir.len(), 1);
    let converted = &from_fhir[0].observations;
    assert_eq!(converted.len(), 28);
    // Our reading has the OBR panel in front of its 28 OBX.
    assert_eq!(from_hl7.observations.len(), 29);
    assert_eq!(from_hl7.observations[0].has_member.len(), 28);
    let mut numeric = 0;
    for (ours, theirs) in from_hl7.observations[1..].iter().zip(converted) {
        let code = |o: &Observation| o.code.coding[0].code.clone();
        assert_eq!(code(ours), code(theirs));
        let flags = |o: &Observation| {
            o.interpretation
                .iter()
                .filter_map(|c| c.coding[0].code.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(flags(ours), flags(theirs), "{:?}", code(ours));
        match (&ours.value, &theirs.value) {
            (Value::Quantity(a), Value::Quantity(b)) => {
                numeric += 1;
                assert_eq!(a.value, b.value, "{:?}", code(ours));
                assert_eq!(a.code, b.code, "{:?}", code(ours));
                assert_eq!(a.system, b.system);
            }
            (Value::CodeableConcept(a), Value::CodeableConcept(b)) => {
                assert_eq!(a.coding[0].code, b.coding[0].code)
            }
            (Value::String(a), Value::String(b)) => assert_eq!(a.trim(), b.trim()),
            (a, b) => panic!("{:?}: {a:?} vs {b:?}", code(ours)),
        }
        assert_eq!(
            ours.reference_range.first().and_then(|r| r.text.clone()),
            theirs.reference_range.first().and_then(|r| r.text.clone())
        );
        // The converter moved the times to its build machine's zone: compare instants.
        let instant = |o: &Observation| {
            o.effective
                .and_then(|e| e.start().and_then(|d| d.timestamp()))
        };
        assert_eq!(instant(ours), instant(theirs), "{:?}", code(ours));
    }
    assert_eq!(numeric, 19);
}

#[test]
fn broken_published_messages_are_refused_with_their_positions() {
    let issues = |path: &str| -> Vec<(String, String)> {
        match medgate_ingest::parse(ER7, &fixture(&format!("hl7v2/{path}")), &ctx()) {
            Err(IngestError::Invalid { issues, .. }) => {
                issues.into_iter().map(|i| (i.path, i.message)).collect()
            }
            other => panic!("{path}: {other:?}"),
        }
    };
    // Two timestamps run together in OBX-14 of the 11th OBX.
    let celr = issues("cdc-data-exchange-hl7/CELR-ATillGenVersion251.hl7");
    assert_eq!(celr.len(), 1);
    assert_eq!(celr[0].0, "OBX[11]-14");
    // Missing terminators: a stray LF leaves a line that is not a segment.
    let lead = issues("ruby-hl7/realm-lead-laboratory-result.hl7");
    assert_eq!(lead[0].0, "line 4");
    // Fields shifted by two: the units land in OBX-8 (flags); OBR-22 lost digits (hour 30).
    let hcv = issues("ruby-hl7/realm-hepatitis-c-virus.hl7");
    let paths: Vec<&str> = hcv.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["OBR[1]-22", "OBX[1]-8"]);
    assert!(hcv[1].1.contains("table 0078"));
    // A batch: positions name the message.
    let batch = issues("ruby-hl7/realm-batch.hl7");
    let paths: Vec<&str> = batch.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["MSH[1]/OBR[1]-22", "MSH[1]/OBR[2]-22", "MSH[2]/OBR[1]-22"]
    );
}

#[test]
fn custom_delimiters_are_read_from_msh() {
    // `MSH#!@%*#…` with MSH-9 `ADT!A01`: read with `!` as component separator.
    match medgate_ingest::parse(
        ER7,
        &fixture("hl7v2/parser-edge-adt/edge-custom-delimiters.hl7"),
        &ctx(),
    ) {
        Err(IngestError::Invalid { issues, .. }) => {
            assert_eq!(issues[0].path, "MSH[1]-9");
            assert_eq!(
                issues[0].message,
                "message type ADT^A01 is not ORU^R01; only lab results are accepted"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_escape_decodes_in_the_published_edge_case() {
    let body = fixture("hl7v2/parser-edge-adt/edge-escaped-delimiters.hl7");
    let parsed = er7::parse(&body).unwrap();
    let message = &parsed.messages[0];
    let obx = message.segments.iter().find(|s| s.name == "OBX").unwrap();
    let raw = er7::component(obx.field(5), &message.separators, 1);
    let decoded = er7::decode(raw, &message.separators);
    for c in ['|', '&', '^', '~', '\\'] {
        assert!(decoded.contains(c), "{c} missing from {decoded:?}");
    }
    let pid = message.segments.iter().find(|s| s.name == "PID").unwrap();
    let family = er7::component(pid.field(5), &message.separators, 1);
    assert_eq!(er7::decode(family, &message.separators), "DOE&SMITH");
}

/// Two real messages wrapped in a batch envelope, with a correct and a wrong BTS count.
#[test]
fn batches_unwrap_into_one_report_per_message() {
    let case1 = fixture("hl7v2/ruby-hl7/ORU_R01_2.5.1_SampleTestCase1.hl7");
    let case6 = fixture("hl7v2/ruby-hl7/ORU_R01_2.5.1_SampleTestCase6.hl7");
    let batch = |count: &str| {
        let mut b = b"FHS|^~\\&|LAB\rBHS|^~\\&|LAB\r".to_vec();
        b.extend_from_slice(&case1);
        b.extend_from_slice(&case6);
        b.extend_from_slice(format!("\rBTS|{count}\rFTS|1").as_bytes());
        b
    };
    let reports = medgate_ingest::parse(ER7, &batch("2"), &ctx()).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].at, "MSH[1]/PID[1]");
    assert_eq!(reports[1].at, "MSH[2]/PID[1]");
    // Ids number reports across the body, so they never collide.
    assert_eq!(reports[1].observations[0].id, "rq1-1-0");
    // NIST case 6: three ST results under one OBR, all with Set ID 1.
    let texts: Vec<&Value> = reports[1].observations[1..]
        .iter()
        .map(|o| &o.value)
        .collect();
    assert_eq!(texts.len(), 3);
    assert!(texts.iter().all(|v| matches!(v, Value::String(_))));
    match medgate_ingest::parse(ER7, &batch("3"), &ctx()) {
        Err(IngestError::Invalid { issues, .. }) => {
            assert!(issues[0].message.contains("BTS-1"), "{issues:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn several_patients_in_one_message_are_several_reports() {
    let body = "MSH|^~\\&|LIS|LAB|||20260301080000+0800||ORU^R01|42|P|2.5.1\r\
PID|1||A1^^^^MR\rOBR|1||x|2345-7^Glucose^LN|||20260301070000+0800\r\
OBX|1|NM|2345-7^Glucose^LN||5.40|mmol/L^^UCUM|3.9-5.5|N|||F\r\
PID|2||B2^^^^MR\rOBR|1||y|2345-7^Glucose^LN|||20260301071500+0800\r\
OBX|1|SN|2345-7^Glucose^LN||>^30.0|mmol/L^^UCUM||HH|||P\r";
    let reports = medgate_ingest::parse("application/hl7-v2", body.as_bytes(), &ctx()).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        (&*reports[0].patient_id, &*reports[1].patient_id),
        ("A1", "B2")
    );
    assert_eq!(
        reports[0].reported_at.to_string(),
        "2026-03-01T08:00:00+08:00"
    );
    let a = quantity(&reports[0].observations[1]);
    assert_eq!(a.value.as_ref().unwrap().as_str(), "5.40");
    let b = quantity(&reports[1].observations[1]);
    assert_eq!(b.comparator, Some(Comparator::Greater));
    assert_eq!(b.value.as_ref().unwrap().as_str(), "30.0");
    assert_eq!(reports[1].observations[1].status, Some(Status::Preliminary));
    assert_eq!(&*reports[1].observations[1].patient_id, "B2");
    assert_eq!(reports[1].observations[1].id, "rq1-1-1");
}

#[test]
fn value_types_and_their_errors() {
    let message = |obx: &str| {
        format!(
            "MSH|^~\\&|LIS|LAB|||20260301080000+0800||ORU^R01|1|P|2.5.1\rPID|1||P1\rOBR|1||x|1-8^Panel^LN\r{obx}"
        )
    };
    let ok = |obx: &str| {
        let reports = medgate_ingest::parse(ER7, message(obx).as_bytes(), &ctx())
            .unwrap_or_else(|e| panic!("{obx}: {e}"));
        reports[0].observations[1].clone()
    };
    let err = |obx: &str| match medgate_ingest::parse(ER7, message(obx).as_bytes(), &ctx()) {
        Err(IngestError::Invalid { issues, .. }) => {
            (issues[0].path.clone(), issues[0].message.clone())
        }
        other => panic!("{obx}: {other:?}"),
    };
    assert!(
        matches!(ok("OBX|1|SN|1-8^x^LN||^10^-^20|mg^^UCUM").value, Value::Range(r) if r.high.as_ref().unwrap().value.as_ref().unwrap().as_str() == "20")
    );
    assert!(
        matches!(ok("OBX|1|SN|1-8^x^LN||^1^:^128").value, Value::Ratio(r) if r.denominator.as_ref().unwrap().value.as_ref().unwrap().as_str() == "128")
    );
    assert_eq!(
        ok("OBX|1|SN|1-8^x^LN||^2^+").value,
        Value::String("2+".into())
    );
    assert_eq!(
        ok("OBX|1|NM|1-8^x^LN||+007.50").value,
        Value::number(medgate_core::Decimal::parse("7.50").unwrap())
    );
    assert_eq!(
        ok("OBX|1|DT|1-8^x^LN||20260228").value,
        Value::DateTime(dt("2026-02-28"))
    );
    assert_eq!(
        ok("OBX|1|TM|1-8^x^LN||0930").value,
        Value::Time("09:30:00".into())
    );
    assert_eq!(
        ok("OBX|1|TX|1-8^x^LN||line one~line two").value,
        Value::String("line one\nline two".into())
    );
    let coded = ok("OBX|1|CWE|1-8^x^LN||260373001^Detected^SCT^^^^^^Detected!");
    let Value::CodeableConcept(c) = coded.value else {
        panic!()
    };
    assert_eq!(
        c.coding[0].system.as_deref(),
        Some("http://snomed.info/sct")
    );
    assert_eq!(c.text.as_deref(), Some("Detected!"));
    assert_eq!(
        err("OBX|1|NM|1-8^x^LN||1,5"),
        ("OBX[1]-5".into(), "not a number".into())
    );
    assert_eq!(err("OBX|1|ED|1-8^x^LN||^AP^PDF^Base64^AAAA").0, "OBX[1]-5");
    assert_eq!(err("OBX|1||1-8^x^LN||5").0, "OBX[1]-2");
    assert_eq!(err("OBX|1|NM|1-8^x^LN||5|||h").0, "OBX[1]-8");
    assert_eq!(err("OBX|1|NM|1-8^x^LN||5||||||Q").0, "OBX[1]-11");
    assert_eq!(err("OBX|1|NM|1-8^x^LN||5||||||F|||2026022").0, "OBX[1]-14");
    assert_eq!(err("OBX|1|NM|||5").0, "OBX[1]-3");
    assert_eq!(err("OBX|1|NM|1-8^x^LN||5~6").0, "OBX[1]-5");
    assert_eq!(err("OBX|1|SN|1-8^x^LN||<>^5").0, "OBX[1]-5");
}

#[test]
fn patient_ids_follow_the_rule_and_are_checked() {
    let body = |pid3: &str| {
        format!("MSH|^~\\&|LIS|LAB|||20260301080000+0800||ORU^R01|1|P|2.5.1\rPID|1||{pid3}\rOBR|1||x|1-8^P^LN\rOBX|1|NM|1-8^x^LN||5")
    };
    let mut ctx = ctx();
    ctx.hl7_patient_id = PatientIdRule {
        type_code: Some("PI".into()),
        assigning_authority: None,
    };
    let reports =
        medgate_ingest::parse(ER7, body("X1^^^H^MR~STUDY-7^^^TRIAL^PI").as_bytes(), &ctx).unwrap();
    assert_eq!(&*reports[0].patient_id, "STUDY-7");
    match medgate_ingest::parse(ER7, body("has space^^^H^MR").as_bytes(), &super::ctx()) {
        Err(IngestError::Invalid { issues, .. }) => {
            assert_eq!(issues[0].path, "PID[1]-3");
            assert!(
                !issues[0].message.contains("has space"),
                "ids are never echoed"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_oru_sample_that_is_well_formed_is_accepted() {
    for path in [
        "cdc-data-exchange-hl7/231HL7TestFilewithHHSData.hl7",
        "cdc-data-exchange-hl7/CELR-ATVersion23.hl7",
        "cdc-prime-reportstream/etor_ORU_20240220.hl7",
        "ruby-hl7/cerner_lead.hl7",
    ] {
        let r = one(path);
        assert!(!r.observations.is_empty(), "{path}");
        assert!(r.observations.iter().all(|o| !o.code.is_empty()), "{path}");
    }
    // etor mixes zoned and zone-less times in one message: each kept as written.
    let etor = one("cdc-prime-reportstream/etor_ORU_20240220.hl7");
    let zones: Vec<bool> = etor
        .observations
        .iter()
        .filter_map(|o| o.effective.and_then(|e| e.start().map(|d| d.is_local())))
        .collect();
    assert!(zones.contains(&true) && zones.contains(&false), "{zones:?}");
    let weight = etor
        .observations
        .iter()
        .find_map(|o| match &o.value {
            Value::Quantity(q)
                if q.value
                    .as_ref()
                    .is_some_and(|d| d.as_str() == "1769.859285") =>
            {
                Some(q)
            }
            _ => None,
        })
        .expect("birth weight kept with all its digits");
    assert!(weight.unit.is_some());
}
