//! The Rust port must match `shared/bench/gen/gen_fhir.py` byte for byte. The fixtures were
//! written by that script:
//! - `P000002.{xml,json}`: `gen_fhir.py fhir --patients 3 --obs 100 --omh` (seed 42);
//! - `seed7-obs7-P000002.{xml,json}`: `... --patients 2 --obs 7 --seed 7 --base-url http://h.test/r4 --omh`;
//! - `rows-250.csv`: `gen_fhir.py rows --rows 250 --value-style fixed`.

use medgate_core::{Observation, Value};
use medgate_demo::{parse_patient_id, patient_id, Workload};

const BUNDLE: &str = include_str!("fixtures/P000002.xml");
const OMH: &str = include_str!("fixtures/P000002.json");
const BUNDLE_SEED7: &str = include_str!("fixtures/seed7-obs7-P000002.xml");
const OMH_SEED7: &str = include_str!("fixtures/seed7-obs7-P000002.json");
const ROWS: &str = include_str!("fixtures/rows-250.csv");

#[test]
fn default_workload_is_the_benchmark_one() {
    let w = Workload::default();
    assert_eq!(
        (w.seed, w.patients, w.observations, w.base_url.as_str()),
        (42, 1000, 100, "http://his.example.org/fhir")
    );
}

#[test]
fn bundle_and_data_points_match_the_python_generator() {
    let w = Workload::default();
    assert_eq!(w.fhir_bundle(1), BUNDLE);
    assert_eq!(w.omh_json(1), OMH);
}

#[test]
fn seed_count_and_base_url_are_honoured() {
    let w = Workload {
        seed: 7,
        patients: 2,
        observations: 7,
        base_url: "http://h.test/r4".to_owned(),
    };
    assert_eq!(w.fhir_bundle(1), BUNDLE_SEED7);
    assert_eq!(w.omh_json(1), OMH_SEED7);
}

#[test]
fn empty_patient_documents_are_well_formed() {
    let w = Workload {
        observations: 0,
        ..Workload::default()
    };
    let bundle = w.fhir_bundle(0);
    assert!(bundle.contains("<total value=\"0\"/>"));
    assert!(!bundle.contains("<entry>"));
    assert!(bundle.ends_with("</Bundle>\n"));
    assert_eq!(w.omh_json(0), "[]");
}

fn fixture_rows() -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_reader(ROWS.as_bytes());
    let header = reader.headers().unwrap().clone();
    // gen_fhir.py writes the ten original columns; medgate appends more after them.
    assert_eq!(
        header.iter().collect::<Vec<_>>(),
        medgate_core::COLUMNS[..10]
    );
    reader.records().map(Result::unwrap).collect()
}

/// The ten original columns of the observation's one row, as text.
fn fields(o: &Observation) -> Vec<String> {
    let mut rows = medgate_core::rows(o);
    let row = rows.next().expect("one row");
    assert!(rows.next().is_none(), "a workload observation is one row");
    row.cells[..10]
        .iter()
        .map(|c| c.as_text().into_owned())
        .collect()
}

fn cell(o: &Observation, column: usize) -> String {
    medgate_core::rows(o).next().unwrap().cells[column]
        .as_text()
        .into_owned()
}

#[test]
fn rows_match_the_python_generator_field_by_field() {
    let expected = fixture_rows();
    let rows: Vec<Observation> = Workload::default().rows(250).collect();
    assert_eq!(rows.len(), 250);
    assert_eq!(expected.len(), 250);
    for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
        assert_eq!(fields(row), want.iter().collect::<Vec<_>>(), "row {i}");
        // Values are quantities that keep the instrument's precision ("36.0" stays "36.0").
        assert!(
            matches!(&row.value, Value::Quantity(q) if q.value.as_ref().map(|d| d.as_str()) == Some(&want[7])),
            "row {i}"
        );
    }
    // Patient-major order: row 100 is the first observation of the second patient.
    assert_eq!(rows[100].id, "P000002-obs-00001");
}

#[test]
fn observation_is_the_rows_entry_and_the_bundles_entry() {
    let w = Workload::default();
    let rows: Vec<Observation> = w.rows(250).collect();
    for (p, j) in [(0u32, 0u32), (1, 37), (2, 49)] {
        let o = w.observation(p, j);
        assert_eq!(o, rows[(p * 100 + j) as usize]);
        // The bundle carries the same value text and timestamp for that entry.
        let entry = BUNDLE.split("<entry>").nth(j as usize + 1).unwrap();
        if p == 1 {
            assert!(entry.contains(&format!("<value value=\"{}\"/>", cell(&o, 7))));
            let effective = cell(&o, 9);
            assert!(entry.contains(&format!("<effectiveDateTime value=\"{effective}\"/>")));
            let unit = cell(&o, 8);
            assert!(entry.contains(&format!("<code value=\"{unit}\"/></valueQuantity>")));
        }
    }
}

#[test]
fn rows_are_lazy_owned_and_run_past_the_patients() {
    // Not allocated up front: asking for u64::MAX rows and taking three is instant.
    let first: Vec<Observation> = Workload::default().rows(u64::MAX).take(3).collect();
    assert_eq!(first[2].id, "P000001-obs-00003");

    // The iterator owns its state (the workload above was a temporary), so it can feed a
    // `'static` stream.
    fn owned() -> impl Iterator<Item = Observation> + 'static {
        let w = Workload {
            patients: 1,
            observations: 2,
            ..Workload::default()
        };
        w.rows(5)
    }
    let ids: Vec<String> = owned().map(|o| o.id).collect();
    assert_eq!(
        ids,
        [
            "P000001-obs-00001",
            "P000001-obs-00002",
            "P000002-obs-00001",
            "P000002-obs-00002",
            "P000003-obs-00001"
        ]
    );

    let none = Workload {
        observations: 0,
        ..Workload::default()
    };
    assert_eq!(none.rows(10).count(), 0);
}

#[test]
fn wearable_rows_follow_the_data_points() {
    let w = Workload::default();
    let points: serde_json::Value = serde_json::from_str(OMH).unwrap();
    for j in [0u32, 1, 98, 99] {
        let row = w.wearable_observation(1, j);
        let point = &points[j as usize];
        let f = fields(&row);
        assert_eq!(f[0], "P000002");
        assert_eq!(f[1], "wearable");
        assert_eq!(f[2], point["header"]["id"].as_str().unwrap());
        assert_eq!(f[4], "http://loinc.org");
        let body = &point["body"];
        let (value, effective) = if j % 2 == 0 {
            assert_eq!(
                f[3..7],
                ["vital-signs", "http://loinc.org", "8867-4", "Heart rate"]
            );
            assert_eq!(f[8], "/min");
            (
                &body["heart_rate"]["value"],
                &body["effective_time_frame"]["date_time"],
            )
        } else {
            assert_eq!(
                f[3..7],
                [
                    "activity",
                    "http://loinc.org",
                    "55423-8",
                    "Number of steps in unspecified time Pedometer"
                ]
            );
            assert_eq!(f[8], "{steps}");
            let interval = &body["effective_time_frame"]["time_interval"];
            assert_eq!(cell(&row, 20), interval["end_date_time"].as_str().unwrap());
            (&body["step_count"]["value"], &interval["start_date_time"])
        };
        assert!(matches!(&row.value, Value::Quantity(_)));
        assert_eq!(f[7], value.to_string());
        assert_eq!(f[9], effective.as_str().unwrap());
    }
    assert_eq!(
        cell(&w.wearable_observation(1, 1), 9),
        "2024-01-01T00:15:00+08:00"
    );
}

#[test]
fn patient_ids_are_strict() {
    assert_eq!(patient_id(0), "P000001");
    assert_eq!(patient_id(999_998), "P999999");
    assert_eq!(patient_id(999_999), "P1000000");
    assert_eq!(parse_patient_id("P000001"), Some(0));
    assert_eq!(parse_patient_id("P999999"), Some(999_998));
    for bad in [
        "P000000",
        "p000001",
        "P00001",
        "P0000001",
        "P1000000",
        "P+00001",
        " P000001",
        "P٠٠٠٠٠١",
        "",
    ] {
        assert_eq!(parse_patient_id(bad), None, "{bad:?}");
    }
    let w = Workload {
        patients: 20,
        ..Workload::default()
    };
    assert_eq!(w.contains("P000001"), Some(0));
    assert_eq!(w.contains("P000020"), Some(19));
    assert_eq!(w.contains("P000021"), None);
    assert_eq!(w.contains("P000000"), None);
    assert_eq!(w.contains("../etc"), None);
}
