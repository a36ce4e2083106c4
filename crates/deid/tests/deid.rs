//! The profiles' promises, checked on the bytes every output form writes: after a profile,
//! no original patient id, exact date or free text survives in the tabular rows (CSV-like
//! text and the flat JSON), FHIR JSON, or the store's record JSON; intervals within a
//! patient are kept; pseudonyms and shifts are stable for one key and differ across keys.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::sync::Arc;

use medgate_core::model::{INTERPRETATION_SYSTEM, LOINC};
use medgate_core::{
    fhir, rows, CodeableConcept, Coding, Comparator, Component, DateTime, Decimal, Effective,
    Observation, Period, Quantity, Range, Ratio, Reference, ReferenceRange, Status, Value, Warning,
};
use medgate_deid::{Profile, ProfileConfig, Profiles, PseudonymKey};
use medgate_pipeline::Transform;

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const OTHER_KEY_HEX: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const PATIENT: &str = "P000001";

/// Free text planted in the record; none may survive `drop_free_text`.
const FREE_TEXT: [&str; 8] = [
    "Jane Roe reports dizziness",
    "pulse felt irregular by nurse",
    "Systolic (left arm, Jane)",
    "local glucose, fasting",
    "normal for Jane",
    "Jane's watch",
    "panel entered by Dr Who",
    "slightly high, see note",
];

fn key(hex: &str) -> PseudonymKey {
    PseudonymKey::from_hex(hex, "MEDGATE_PSEUDONYM_KEY").unwrap()
}

fn config(text: &str) -> ProfileConfig {
    let table: toml::Table = toml::from_str(text).unwrap();
    ProfileConfig::from_table(0, &table).unwrap()
}

fn research() -> Profile {
    let c = config(
        r#"
        name = "research"
        pseudonymize_patient_ids = true
        pseudonym_key_env = "MEDGATE_PSEUDONYM_KEY"
        date_shift_max_days = 364
        drop_free_text = true
        "#,
    );
    Profile::new(c, Some(key(KEY_HEX))).unwrap()
}

fn d(text: &str) -> Decimal {
    Decimal::parse(text).unwrap()
}

fn t(text: &str) -> DateTime {
    DateTime::parse(text).unwrap()
}

fn at(text: &str) -> Option<Effective> {
    Some(Effective::DateTime(t(text)))
}

/// Observations of one patient with every value type, components, references, local,
/// offset and `Z` times. Distinct calendar days are at least 365 days apart, so no shift
/// of at most 364 days can turn one original day into another.
fn rich(patient: &str, source: &str) -> Vec<Observation> {
    let p: Arc<str> = Arc::from(patient);
    let s: Arc<str> = Arc::from(source);
    let obs = |n: u32| Observation::new(p.clone(), s.clone(), format!("{patient}-obs-{n:05}"));
    let mut all = Vec::new();

    // 1: a panel with components, references, warnings, local effective time, Z issued.
    let mut o = obs(1);
    o.status = Some(Status::Final);
    o.category = vec![CodeableConcept::category("vital-signs")];
    o.code = CodeableConcept {
        coding: vec![Coding::new(LOINC, "85354-9", Some("Blood pressure panel"))],
        text: Some(FREE_TEXT[6].into()),
    };
    o.effective = at("2012-03-01T08:15:30");
    o.issued = Some(t("2012-03-01T09:00:00.123Z"));
    o.components = vec![
        Component {
            code: CodeableConcept {
                coding: vec![
                    Coding::new(LOINC, "8480-6", Some("Systolic blood pressure")),
                    Coding {
                        display: Some(FREE_TEXT[2].into()),
                        code: Some("SYS".into()),
                        ..Coding::default()
                    },
                ],
                text: None,
            },
            value: Value::Quantity(Quantity::ucum(d("120"), "mm[Hg]")),
            interpretation: vec![CodeableConcept {
                coding: vec![Coding::new(INTERPRETATION_SYSTEM, "H", Some("High"))],
                text: Some(FREE_TEXT[7].into()),
            }],
            reference_range: vec![ReferenceRange {
                low: Some(Quantity::ucum(d("90"), "mm[Hg]")),
                high: Some(Quantity::ucum(d("119"), "mm[Hg]")),
                kind: None,
                text: Some(FREE_TEXT[4].into()),
            }],
            ..Component::default()
        },
        Component {
            code: CodeableConcept::coded(LOINC, "8462-4", Some("Diastolic blood pressure")),
            value: Value::String(FREE_TEXT[1].into()),
            ..Component::default()
        },
        Component {
            code: CodeableConcept::coded(LOINC, "8867-4", Some("Heart rate")),
            value: Value::DateTime(t("2012-03-01T08:16:00+01:00")),
            ..Component::default()
        },
    ];
    o.has_member = vec![Reference::to(format!("Observation/{patient}-obs-00002"))];
    o.derived_from = vec![Reference {
        reference: Some(format!(
            "https://his.example/fhir/Observation/{patient}-obs-00003"
        )),
        display: Some(format!("earlier result of {patient}")),
    }];
    o.device = Some(Reference {
        reference: Some("Device/FITBIT-SERIAL-998877".into()),
        display: Some(FREE_TEXT[5].into()),
    });
    o.warnings = vec![
        Warning::new(
            format!("/patients/{patient}/2012-03-01/hr"),
            "valueDateTime \"2012-02-30T08:00\" is not a date",
        ),
        Warning::new("line 12, column 5", "value \"Jane\" is not a number"),
    ];
    all.push(o);

    // 2: a string value with the patient id in it, an offset time, a local period value.
    let mut o = obs(2);
    o.code = CodeableConcept {
        coding: vec![
            Coding::new(LOINC, "8310-5", Some("Body temperature")),
            Coding {
                code: Some("TEMP".into()),
                display: Some(FREE_TEXT[3].into()),
                ..Coding::default()
            },
        ],
        text: Some(FREE_TEXT[3].into()),
    };
    o.effective = at("2014-07-02T23:30:00-05:00");
    o.value = Value::String(format!("{} (id {patient})", FREE_TEXT[0]));
    all.push(o);

    // 3: Z time, Period value across days, Range and Ratio in components, Integer, Time.
    let mut o = obs(3);
    o.code = CodeableConcept::coded(LOINC, "2339-0", Some("Glucose [Mass/volume] in Blood"));
    o.effective = at("2016-11-20T06:00:00Z");
    o.value = Value::Period(Period {
        start: Some(t("2016-11-20T06:00:00")),
        end: Some(t("2018-01-05T07:30:00")),
    });
    o.components = vec![
        Component {
            code: CodeableConcept::coded(LOINC, "1", None),
            value: Value::Range(Range {
                low: Some(Quantity::ucum(d("3.5"), "mmol/L")),
                high: Some(Quantity::ucum(d("5.1"), "mmol/L")),
            }),
            ..Component::default()
        },
        Component {
            code: CodeableConcept::coded(LOINC, "2", None),
            value: Value::Ratio(Ratio {
                numerator: Some(Quantity::ucum(d("1"), "1")),
                denominator: Some(Quantity::ucum(d("128"), "1")),
            }),
            ..Component::default()
        },
        Component {
            code: CodeableConcept::coded(LOINC, "3", None),
            value: Value::Integer(7),
            ..Component::default()
        },
        Component {
            code: CodeableConcept::coded(LOINC, "4", None),
            value: Value::Time("07:45:00".into()),
            ..Component::default()
        },
    ];
    all.push(o);

    // 4: an effective period with offsets, a quantity with comparator, a boolean component,
    // a coded value with text, a dataAbsentReason.
    let mut o = obs(4);
    o.code = CodeableConcept::coded(LOINC, "2345-7", Some("Glucose"));
    o.effective = Some(Effective::Period(Period {
        start: Some(t("2020-01-10T10:00:00+08:00")),
        end: Some(t("2021-02-11T10:30:00+08:00")),
    }));
    o.value = Value::Quantity(Quantity {
        comparator: Some(Comparator::Greater),
        ..Quantity::ucum(d("10.50"), "mmol/L")
    });
    o.components = vec![
        Component {
            code: CodeableConcept::coded(LOINC, "5", None),
            value: Value::Boolean(true),
            ..Component::default()
        },
        Component {
            code: CodeableConcept::coded(LOINC, "6", None),
            value: Value::CodeableConcept(CodeableConcept::text(FREE_TEXT[0])),
            ..Component::default()
        },
        Component {
            code: CodeableConcept::coded(LOINC, "7", None),
            value: Value::None,
            data_absent_reason: Some(CodeableConcept::data_absent("error", "Error")),
            ..Component::default()
        },
    ];
    all.push(o);

    // 5: a value date (day precision) and an issued with an offset.
    let mut o = obs(5);
    o.code = CodeableConcept::coded(LOINC, "21112-8", Some("Birth date"));
    o.effective = at("2023-05-17");
    o.value = Value::DateTime(t("2023-05-17"));
    o.issued = Some(t("2023-05-17T12:00:00+02:00"));
    all.push(o);
    all
}

/// Every date-time of `obs`, as written and as its calendar day.
fn date_strings(obs: &[Observation]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for o in obs {
        let mut o = o.clone();
        for dt in o.date_times_mut() {
            out.insert(dt.to_string());
            out.insert(DateTime::from_date(dt.date()).to_string());
        }
    }
    out
}

/// Every output form of `obs`, concatenated: rows as CSV-like text and as flat JSON, FHIR
/// JSON, and the record's own JSON.
fn render(obs: &[Observation]) -> String {
    let mut out = String::new();
    for o in obs {
        for row in rows(o) {
            let line: Vec<String> = row.cells.iter().map(|c| c.as_text().into_owned()).collect();
            out.push_str(&line.join(","));
            out.push('\n');
            out.push_str(&serde_json::to_string(&row).unwrap());
            out.push('\n');
        }
        let mut fhir_json = Vec::new();
        fhir::write_observation(&mut fhir_json, o).unwrap();
        out.push_str(std::str::from_utf8(&fhir_json).unwrap());
        out.push('\n');
        out.push_str(&serde_json::to_string(o).unwrap());
        out.push('\n');
    }
    out
}

fn apply(profile: &Profile, obs: &[Observation]) -> Vec<Observation> {
    obs.iter()
        .map(|o| {
            let mut o = o.clone();
            assert!(profile.apply(&mut o));
            o
        })
        .collect()
}

#[test]
fn no_patient_id_exact_date_or_free_text_survives_in_any_output() {
    let original = rich(PATIENT, "his");
    let before = render(&original);
    let dates = date_strings(&original);
    // The check can fail: everything it looks for is there before the profile.
    assert!(before.contains(PATIENT));
    for d in &dates {
        assert!(before.contains(d.as_str()), "{d} not rendered before");
    }
    for text in FREE_TEXT {
        assert!(before.contains(text), "{text} not rendered before");
    }

    let profile = research();
    let after = render(&apply(&profile, &original));
    let lower = after.to_ascii_lowercase();
    assert!(!lower.contains(&PATIENT.to_ascii_lowercase()), "{after}");
    assert!(!after.contains("FITBIT-SERIAL-998877"));
    for d in &dates {
        assert!(!after.contains(d.as_str()), "date {d} survived:\n{after}");
    }
    for text in FREE_TEXT.iter().chain(&["Jane", "Dr Who"]) {
        assert!(
            !after.contains(text),
            "free text {text:?} survived:\n{after}"
        );
    }
    // What must stay: codes, LOINC displays, numbers as written, units, times of day.
    for kept in [
        "85354-9",
        "Blood pressure panel",
        "Systolic blood pressure",
        "Heart rate",
        "10.50",
        "mm[Hg]",
        "07:45:00",
        "1:128",
        "3.5..5.1",
        "masked",
        "line 12, column 5",
    ] {
        assert!(after.contains(kept), "{kept} lost:\n{after}");
    }
}

#[test]
fn pseudonyms_alone_replace_the_id_inside_kept_text() {
    let profile = Profile::new(
        config("name = \"p\"\npseudonymize_patient_ids = true"),
        Some(key(KEY_HEX)),
    )
    .unwrap();
    let original = rich(PATIENT, "his");
    let after = render(&apply(&profile, &original));
    assert!(!after.to_ascii_lowercase().contains("p000001"), "{after}");
    let pseudonym = profile.pseudonym(PATIENT).unwrap();
    // Free text stays, with the pseudonym where the id was; dates are untouched.
    assert!(
        after.contains(&format!("{} (id {pseudonym})", FREE_TEXT[0])),
        "{after}"
    );
    assert!(after.contains(&format!("earlier result of {pseudonym}")));
    assert!(after.contains("2014-07-02T23:30:00-05:00"));
    assert_eq!(profile.date_shift_days(PATIENT), 0);
}

#[test]
fn pseudonyms_follow_the_documented_hmac_and_are_valid_ids() {
    let profile = research();
    // Computed independently: printf 'patient-id:P000001' | openssl dgst -sha256 -mac HMAC
    // -macopt hexkey:<KEY_HEX>, first 32 hex digits; and the same for the others.
    let pseudonym = profile.pseudonym(PATIENT).unwrap();
    assert_eq!(&*pseudonym, "psn-944e8a38fe7b7a1810e6fc567e59b618");
    assert_eq!(profile.date_shift_days(PATIENT), 154);
    let mut o = rich(PATIENT, "his").remove(0);
    profile.apply(&mut o);
    assert_eq!(o.id, "obs-bfd4661bdd484d8e67855d620d1fdc82");
    assert_eq!(&*o.patient_id, &*pseudonym);
    for id in [&*o.patient_id, o.id.as_str()] {
        assert!(id.len() <= 64 && fhir::is_fhir_id(id), "{id}");
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:@~".contains(&b)));
    }
    let mut out = Vec::new();
    fhir::write_observation(&mut out, &o).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["subject"]["reference"], format!("Patient/{pseudonym}"));
    assert_eq!(v["id"], format!("his.{}", o.id));
}

#[test]
fn pseudonyms_are_stable_for_one_key_and_differ_across_keys() {
    let a = research();
    let again = research();
    let other = Profile::new(a.config().clone(), Some(key(OTHER_KEY_HEX))).unwrap();
    assert_eq!(a.pseudonym(PATIENT), a.pseudonym(PATIENT));
    assert_eq!(a.pseudonym(PATIENT), again.pseudonym(PATIENT));
    assert_ne!(a.pseudonym(PATIENT), other.pseudonym(PATIENT));
    assert_ne!(a.pseudonym(PATIENT), a.pseudonym("P000002"));
    assert_ne!(a.key_id(), other.key_id());
    // Observation ids too, and the same observation from two runs gets the same id.
    let first = apply(&a, &rich(PATIENT, "his"));
    let second = apply(&again, &rich(PATIENT, "his"));
    let third = apply(&other, &rich(PATIENT, "his"));
    assert_eq!(first, second);
    assert_ne!(first[0].id, third[0].id);
    // Unique within a patient's record, and two sources' same upstream id stay apart.
    let ids: BTreeSet<_> = first.iter().map(|o| o.id.clone()).collect();
    assert_eq!(ids.len(), first.len());
    let wearable = apply(&a, &rich(PATIENT, "wearable"));
    assert_ne!(first[0].id, wearable[0].id);
}

#[test]
fn references_point_at_the_pseudonymous_ids() {
    let profile = research();
    let out = apply(&profile, &rich(PATIENT, "his"));
    let member = out[0].has_member[0].reference.as_deref().unwrap();
    assert_eq!(member, format!("Observation/{}", out[1].id));
    let derived = out[0].derived_from[0].reference.as_deref().unwrap();
    assert_eq!(derived, format!("Observation/{}", out[2].id));
    let device = out[0].device.as_ref().unwrap();
    assert!(device
        .reference
        .as_deref()
        .unwrap()
        .starts_with("Device/ref-"));
    assert_eq!(device.display, None);
    let mut o = rich(PATIENT, "his").remove(0);
    o.has_member = vec![
        Reference::to("urn:uuid:6b0c2a1e-9f5e-4c7a-8d4e-1a2b3c4d5e6f"),
        Reference::to(format!("Patient/{PATIENT}")),
    ];
    profile.apply(&mut o);
    let uuid = o.has_member[0].reference.as_deref().unwrap();
    assert!(uuid.starts_with("urn:uuid:") && uuid.len() == 45, "{uuid}");
    assert_ne!(uuid, "urn:uuid:6b0c2a1e-9f5e-4c7a-8d4e-1a2b3c4d5e6f");
    assert_eq!(
        o.has_member[1].reference.as_deref(),
        Some(format!("Patient/{}", profile.pseudonym(PATIENT).unwrap()).as_str())
    );
}

#[test]
fn one_patient_keeps_every_interval_across_sources_and_runs() {
    let profile = research();
    let shift = profile.date_shift_days(PATIENT);
    assert_ne!(shift, 0);
    let his = apply(&profile, &rich(PATIENT, "his"));
    let wearable = apply(&research(), &rich(PATIENT, "wearable"));
    let original = rich(PATIENT, "his");
    let instants = |obs: &[Observation]| -> Vec<jiff::Timestamp> {
        let mut obs = obs.to_vec();
        obs.iter_mut()
            .flat_map(|o| o.date_times_mut().map(|t| *t).collect::<Vec<_>>())
            .filter_map(|t| t.timestamp())
            .collect()
    };
    let (a, b) = (instants(&original), instants(&his));
    assert_eq!(a.len(), b.len());
    assert!(a.len() >= 6);
    for i in 1..a.len() {
        assert_eq!(a[i] - a[0], b[i] - b[0], "interval {i} changed");
    }
    // Every date-time moved by the same whole days, written the same way.
    let mut o = original.clone();
    let mut h = his.clone();
    for (before, after) in o
        .iter_mut()
        .flat_map(|o| o.date_times_mut().map(|t| *t).collect::<Vec<_>>())
        .zip(
            h.iter_mut()
                .flat_map(|o| o.date_times_mut().map(|t| *t).collect::<Vec<_>>()),
        )
    {
        assert_eq!(after, before.shift_days(shift));
        assert_eq!(after.precision(), before.precision());
        assert_eq!(after.zone(), before.zone());
    }
    let effective = |obs: &[Observation]| -> Vec<String> {
        obs.iter()
            .map(|o| o.effective.unwrap().start().unwrap().to_string())
            .collect()
    };
    assert_eq!(effective(&his), effective(&wearable));
}

#[test]
fn offsets_cover_the_range_and_are_never_zero() {
    let profile = research();
    let shifts: Vec<i32> = (1..=1000)
        .map(|n| profile.date_shift_days(&format!("P{n:06}")))
        .collect();
    assert!(shifts.iter().all(|s| *s != 0 && s.abs() <= 364));
    let (min, max) = (shifts.iter().min().unwrap(), shifts.iter().max().unwrap());
    assert!(*min <= -350 && *max >= 350, "{min}..{max}");
    let negative = shifts.iter().filter(|s| **s < 0).count();
    assert!(
        (400..=600).contains(&negative),
        "{negative} negative of 1000"
    );
    let distinct: BTreeSet<_> = shifts.iter().collect();
    // 1000 draws from 728 values give about 544 distinct ones.
    assert!(distinct.len() > 450, "{}", distinct.len());
    assert_ne!(shifts[0], shifts[1]);
    assert_eq!(profile.derivations(), 1000);
    // max = 1: only ±1.
    let one = Profile::new(
        config("name = \"one\"\ndate_shift_max_days = 1"),
        Some(key(KEY_HEX)),
    )
    .unwrap();
    let ones: BTreeSet<i32> = (1..=200)
        .map(|n| one.date_shift_days(&format!("P{n:06}")))
        .collect();
    assert_eq!(ones, BTreeSet::from([-1, 1]));
}

#[test]
fn secrets_are_derived_once_per_patient() {
    let profile = research();
    for patient in ["P000001", "P000002", "P000003"] {
        for _ in 0..100 {
            let mut obs = rich(patient, "his");
            for o in &mut obs {
                profile.apply(o);
            }
        }
    }
    assert_eq!(profile.derivations(), 3);
}

#[test]
fn truncation_cuts_after_shifting() {
    let o = rich(PATIENT, "his").remove(0);
    let month = Profile::new(config("name = \"m\"\ntruncate_to = \"month\""), None).unwrap();
    let mut m = o.clone();
    month.apply(&mut m);
    assert_eq!(m.effective.unwrap().start().unwrap().to_string(), "2012-03");
    assert_eq!(m.issued.unwrap().to_string(), "2012-03");
    assert_eq!(m.id, o.id, "truncation alone keeps ids");
    let year = Profile::new(config("name = \"y\"\ntruncate_to = \"year\""), None).unwrap();
    let mut y = o.clone();
    year.apply(&mut y);
    assert_eq!(y.effective.unwrap().start().unwrap().to_string(), "2012");
    let day = Profile::new(
        config("name = \"d\"\ntruncate_to = \"day\"\ndate_shift_max_days = 364"),
        Some(key(KEY_HEX)),
    )
    .unwrap();
    let mut dd = o.clone();
    day.apply(&mut dd);
    // 2012-03-01T08:15:30 + 154 days = 2012-08-02, then cut to the day.
    assert_eq!(
        dd.effective.unwrap().start().unwrap().to_string(),
        "2012-08-02"
    );
    assert_eq!(&*dd.patient_id, PATIENT, "no pseudonyms unless asked");
    let row = rows(&dd).next().unwrap();
    assert_eq!(
        row.get(medgate_core::row::col::EFFECTIVE).as_text(),
        "2012-08-02"
    );
}

#[test]
fn offset_times_keep_their_written_offset_across_dst() {
    let profile = research();
    let mut o = Observation::new(Arc::from(PATIENT), Arc::from("his"), "x");
    // New York changed to -04:00 on 2024-03-10; a written -05:00 stays -05:00.
    o.effective = at("2024-03-09T12:00:00-05:00");
    profile.apply(&mut o);
    assert_eq!(
        o.effective.unwrap().start().unwrap().to_string(),
        "2024-08-10T12:00:00-05:00"
    );
}

#[test]
fn free_text_goes_and_coded_displays_stay() {
    let profile = Profile::new(config("name = \"t\"\ndrop_free_text = true"), None).unwrap();
    let mut obs = rich(PATIENT, "his");
    for o in &mut obs {
        profile.apply(o);
    }
    let panel_rows: Vec<_> = rows(&obs[0]).collect();
    use medgate_core::row::col;
    assert_eq!(
        panel_rows[0].get(col::DISPLAY).as_text(),
        "Systolic blood pressure"
    );
    assert_eq!(panel_rows[0].get(col::REFERENCE_TEXT).as_text(), "");
    assert_eq!(panel_rows[0].get(col::REFERENCE_LOW).as_text(), "90");
    assert_eq!(panel_rows[0].get(col::INTERPRETATION).as_text(), "H");
    assert_eq!(panel_rows[1].get(col::VALUE).as_text(), "");
    assert_eq!(
        panel_rows[1].get(col::DATA_ABSENT_REASON).as_text(),
        "masked"
    );
    // The systemless coding keeps its code, loses its display.
    assert_eq!(
        obs[1].code.coding[1],
        Coding {
            code: Some("TEMP".into()),
            ..Coding::default()
        }
    );
    assert_eq!(obs[1].code.text, None);
    assert_eq!(obs[1].value, Value::None);
    // A coded value that was only text is masked too.
    assert_eq!(obs[3].components[1].value, Value::None);
    assert_eq!(
        obs[3].components[1]
            .data_absent_reason
            .as_ref()
            .and_then(|c| c.primary())
            .and_then(|c| c.code.as_deref()),
        Some("masked")
    );
    // An upstream's own error reason is kept.
    assert_eq!(
        obs[3].components[2].data_absent_reason,
        Some(CodeableConcept::data_absent("error", "Error"))
    );
    // References keep their target, lose their display; ids and dates are untouched.
    assert_eq!(obs[0].derived_from[0].display, None);
    assert!(obs[0].derived_from[0].reference.is_some());
    assert_eq!(obs[0].id, format!("{PATIENT}-obs-00001"));
    assert_eq!(obs[4].effective, at("2023-05-17"));
    // Warnings keep their shape, lose quoted text and dates.
    assert_eq!(
        obs[0].warnings[0].to_string(),
        "/patients/P…/hr: valueDateTime \"…\" is not a date"
    );
    assert_eq!(
        obs[0].warnings[1].to_string(),
        "line 12, column 5: value \"…\" is not a number"
    );
}

#[test]
fn drop_fields_remove_exactly_what_they_name() {
    let profile = Profile::new(
        config(
            r#"name = "f"
            drop_fields = ["category", "issued", "interpretation", "reference_range",
                           "has_member", "derived_from", "device", "warnings"]"#,
        ),
        None,
    )
    .unwrap();
    let mut o = rich(PATIENT, "his").remove(0);
    let before = o.clone();
    profile.apply(&mut o);
    assert!(o.category.is_empty() && o.issued.is_none() && o.device.is_none());
    assert!(o.has_member.is_empty() && o.derived_from.is_empty() && o.warnings.is_empty());
    assert!(o.components[0].interpretation.is_empty());
    assert!(o.components[0].reference_range.is_empty());
    assert_eq!(o.code, before.code);
    assert_eq!(o.effective, before.effective);
    assert_eq!(o.components[0].value, before.components[0].value);
    let only_device =
        Profile::new(config("name = \"g\"\ndrop_fields = [\"device\"]"), None).unwrap();
    let mut o = before.clone();
    only_device.apply(&mut o);
    assert_eq!(o.device, None);
    assert_eq!(o.issued, before.issued);
}

#[test]
fn profiles_load_their_key_from_the_environment_and_never_echo_it() {
    let table: toml::Table = toml::from_str(
        r#"
        [[profiles]]
        name = "research"
        pseudonymize_patient_ids = true
        pseudonym_key_env = "MEDGATE_PSEUDONYM_KEY"
        date_shift_max_days = 364
        [[profiles]]
        name = "open"
        truncate_to = "year"
        "#,
    )
    .unwrap();
    let entries: Vec<toml::Table> = table["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_table().unwrap().clone())
        .collect();
    let missing = Profiles::build(&entries, |_| None).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "profiles[0] (research).pseudonym_key_env: environment variable MEDGATE_PSEUDONYM_KEY \
         is not set; it must hold the pseudonym key as at least 64 hex digits (32 bytes), e.g. \
         from `openssl rand -hex 32`"
    );
    let secret = "correct horse battery staple correct horse battery staple";
    let wrong = Profiles::build(&entries, |_| Some(OsString::from(secret))).unwrap_err();
    assert_eq!(wrong.0.len(), 1);
    assert_eq!(wrong.0[0].key, "profiles[0] (research).pseudonym_key_env");
    assert!(!wrong.to_string().contains("horse"));
    let short = Profiles::build(&entries, |_| Some(OsString::from("abcdef"))).unwrap_err();
    assert!(short.to_string().contains("is 3 bytes"), "{short}");
    let profiles = Profiles::build(&entries, |v| {
        (v == "MEDGATE_PSEUDONYM_KEY").then(|| OsString::from(KEY_HEX))
    })
    .unwrap();
    assert_eq!(profiles.names().collect::<Vec<_>>(), ["open", "research"]);
    let research = profiles.get("research").unwrap();
    assert_eq!(
        research.pseudonym(PATIENT).as_deref(),
        Some("psn-944e8a38fe7b7a1810e6fc567e59b618")
    );
    assert_eq!(profiles.get("open").unwrap().key_id(), None);
    // As a pipeline transform.
    let _as_transform: Arc<dyn Transform> = research;
}

mod pipeline {
    //! The profile as a request transform of the real pipeline: what the stream yields and
    //! what the run's summary keeps are both de-identified.

    use super::*;
    use async_trait::async_trait;
    use futures::StreamExt;
    use medgate_core::config::SourceCommon;
    use medgate_core::registry::{SourceHandle, SourceInfo};
    use medgate_core::{DataSource, FetchRequest, ObservationStream, Upstream, UpstreamBody};
    use medgate_pipeline::{Pipeline, Request, Transforms};
    use tokio_util::sync::CancellationToken;

    /// A source serving [`rich`] for any patient.
    struct Rich;

    #[async_trait]
    impl DataSource for Rich {
        async fn fetch(&self, request: &FetchRequest) -> medgate_core::Result<ObservationStream> {
            let items: Vec<_> = rich(&request.patient_id, "his")
                .into_iter()
                .map(Ok)
                .collect();
            Ok(futures::stream::iter(items).boxed())
        }
    }

    struct NoUpstream;

    #[async_trait]
    impl Upstream for NoUpstream {
        async fn get(&self, _: &str, _: &FetchRequest) -> medgate_core::Result<UpstreamBody> {
            Err(medgate_core::Error::Internal("no upstream".into()))
        }
    }

    fn handle() -> SourceHandle {
        let common: SourceCommon = toml::from_str("name = \"his\"\nkind = \"rich\"").unwrap();
        SourceHandle {
            info: SourceInfo {
                name: "his".into(),
                kind: "rich".into(),
                format: None,
            },
            common,
            source: Arc::new(Rich),
            upstream: Arc::new(NoUpstream),
        }
    }

    #[tokio::test]
    async fn a_run_with_the_profile_yields_and_summarizes_only_de_identified_data() {
        let pipeline = Pipeline::new(Arc::new(Transforms::default()), CancellationToken::new());
        let mut request = Request::new(
            vec![handle()],
            vec![PATIENT.to_owned(), "P000002".to_owned()],
            "req-1",
        );
        let profile = Arc::new(research());
        request.transforms.push(profile.clone());
        let (obs, summary) = pipeline.run(request).collect().await.unwrap();
        assert_eq!(obs.len(), 10);
        let rendered = render(&obs);
        for id in [PATIENT, "P000002"] {
            assert!(!rendered.contains(id), "{id} in the output");
        }
        assert_eq!(&*obs[0].patient_id, &*profile.pseudonym(PATIENT).unwrap());
        assert_eq!(&*obs[5].patient_id, &*profile.pseudonym("P000002").unwrap());
        let warnings: Vec<String> = summary
            .snapshot()
            .sources
            .values()
            .flat_map(|s| s.first_warnings.iter().map(ToString::to_string))
            .collect();
        assert!(!warnings.is_empty());
        for w in &warnings {
            assert!(!w.contains("2012-") && !w.contains("Jane"), "{w}");
        }
        assert_eq!(profile.derivations(), 2);
    }
}

/// Rows per second through the research profile, for the report (one HMAC per observation
/// id, cached per-patient secrets). Run with
/// `cargo test --release -p medgate-deid --test deid -- --ignored --nocapture`.
#[test]
#[ignore = "a throughput figure, not a check"]
fn throughput_of_the_research_profile() {
    let profile = research();
    let patients: Vec<Arc<str>> = (1..=1000).map(|n| Arc::from(format!("P{n:06}"))).collect();
    let source: Arc<str> = Arc::from("his");
    let workload: Vec<Observation> = patients
        .iter()
        .flat_map(|p| {
            let source = source.clone();
            (1..=100).map(move |n| {
                let mut o = Observation::new(p.clone(), source.clone(), format!("{p}-obs-{n:05}"));
                o.status = Some(Status::Final);
                o.category = vec![CodeableConcept::category("vital-signs")];
                o.code = CodeableConcept::coded(LOINC, "8867-4", Some("Heart rate"));
                o.effective = at("2024-01-01T05:23:10+08:00");
                o.value = Value::Quantity(Quantity::ucum(d("72"), "/min"));
                o
            })
        })
        .collect();
    let pass = |apply: bool| {
        let started = std::time::Instant::now();
        let mut n = 0usize;
        for o in &workload {
            let mut o = o.clone();
            if apply {
                profile.apply(&mut o);
            }
            n += o.id.len();
        }
        (started.elapsed(), n)
    };
    for _ in 0..3 {
        let (cloning, _) = pass(false);
        let (both, n) = pass(true);
        let net = both.saturating_sub(cloning).as_secs_f64().max(1e-9);
        eprintln!(
            "{} observations: clone {cloning:.2?}, clone + profile {both:.2?}: \
             {:.0} ns and {:.2} M observations/s for the profile ({n})",
            workload.len(),
            net * 1e9 / workload.len() as f64,
            workload.len() as f64 / net / 1e6
        );
    }
    assert_eq!(profile.derivations(), 1000);
}
