//! A de-identified job (pseudonyms and per-patient date shifts) leaves no original patient
//! id and no original date-time in any format's files, its error file included.

use std::collections::HashSet;

use medgate_core::{Effective, Observation};
use medgate_exports::ExportRequest;

use crate::util::*;

/// Every date-time of `o` as its wall-clock text (`2024-01-01T08:00:00`) and UTC instant.
fn times(o: &Observation) -> Vec<medgate_core::DateTime> {
    let mut out = Vec::new();
    match &o.effective {
        Some(Effective::DateTime(d)) => out.push(*d),
        Some(Effective::Period(p)) => out.extend(p.start.iter().chain(p.end.iter()).copied()),
        _ => {}
    }
    out.extend(o.issued);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deidentified_job_leaves_no_original_id_or_date_in_any_format() {
    let h = harness(Setup::default()).await;
    let runner = h.exports.start(h.shutdown.clone());
    let mut patients = ids(20);
    patients.push("P999999".into());
    let refs: Vec<&str> = patients.iter().map(String::as_str).collect();
    let all: Vec<u32> = (0..20).collect();
    let originals = expected(&h.workload, &["his", "wearable"], &all);
    let civil: HashSet<String> = originals
        .iter()
        .flat_map(times)
        .map(|d| d.to_string()[..19].to_owned())
        .collect();
    let instants: HashSet<i64> = originals
        .iter()
        .flat_map(times)
        .filter_map(|d| d.timestamp())
        .map(|t| t.as_microsecond())
        .collect();
    assert!(civil.len() > 200, "the check has something to find");
    let clean = |text: &str, what: &str| {
        for id in &patients {
            assert!(
                !text.contains(id.as_str()),
                "{what}: patient id {id} in {text:.200}"
            );
        }
        for t in &civil {
            assert!(
                !text.contains(t.as_str()),
                "{what}: original time {t} in {text:.200}"
            );
        }
    };
    for format in FORMATS {
        let job = h
            .kick_off(ExportRequest {
                profile: Some("research".into()),
                ..request(&["his", "wearable"], &refs, format)
            })
            .await;
        let m = h.manifest(&job.id).await;
        assert_eq!(m.extension.profile.as_deref(), Some("research"));
        assert_eq!(m.extension.key_id.as_ref().map(String::len), Some(8));
        assert_eq!((m.extension.rows, m.extension.patients_failed), (480, 1));
        let data = h.download(&job.id, 1).await;
        let cells = read_cells(format, &data);
        assert_eq!(cells.len(), 480, "{format}");
        assert!(
            cells.iter().all(|c| c[0].starts_with("psn-")),
            "{format}: every patient is a pseudonym"
        );
        match format {
            "xlsx" => xlsx_clean(&data, &clean),
            "parquet" => parquet_clean(&data, &clean, &instants),
            _ => clean(std::str::from_utf8(&data).unwrap(), format),
        }
        let errors = h.download(&job.id, 2).await;
        let text = std::str::from_utf8(&errors).unwrap();
        clean(text, "error file");
        let lines = ndjson(&errors);
        assert_eq!(lines.len(), 2);
        let reference = lines[0]["extension"][0]["valueReference"]["reference"]
            .as_str()
            .unwrap();
        assert!(reference.starts_with("Patient/psn-"), "{reference}");
        // The same pseudonym in every format: stable for one key.
        let report = h
            .env
            .reports()
            .into_iter()
            .find(|r| r.job_id == job.id)
            .unwrap();
        assert_eq!(report.profile.as_deref(), Some("research"));
        assert_eq!(report.key_id, m.extension.key_id);
    }
    h.shutdown.cancel();
    runner.stopped().await;
}

fn xlsx_clean(bytes: &[u8], clean: &dyn Fn(&str, &str)) {
    use calamine::{Data, Reader, Xlsx};
    let mut book: Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec())).unwrap();
    for name in book.sheet_names() {
        let range = book.worksheet_range(&name).unwrap();
        for row in range.rows() {
            for cell in row {
                let text = match cell {
                    Data::DateTime(dt) => format!("{:?}", dt.as_datetime().unwrap()),
                    other => other.to_string(),
                };
                clean(&text, "xlsx cell");
            }
        }
    }
}

fn parquet_clean(bytes: &[u8], clean: &dyn Fn(&str, &str), instants: &HashSet<i64>) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMicrosecondType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes.to_vec()))
        .unwrap()
        .build()
        .unwrap();
    let mut timestamps = 0;
    for batch in reader {
        let batch = batch.unwrap();
        for column in batch.columns() {
            if let Some(strings) = column.as_string_opt::<i32>() {
                for s in strings.iter().flatten() {
                    clean(s, "parquet string");
                }
            } else if let Some(ts) = column.as_primitive_opt::<TimestampMicrosecondType>() {
                for t in ts.iter().flatten() {
                    timestamps += 1;
                    assert!(
                        !instants.contains(&t),
                        "parquet: an original instant ({t} µs)"
                    );
                }
            }
        }
    }
    assert!(timestamps > 0, "the timestamp columns were checked");
}
