//! The CLI's local mode: the same run to named files, with progress and a summary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use medgate_exports::{run_local, ExportEnv, ExportError, LocalOptions, LocalProgress};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_writes_the_named_file_and_reports_progress_and_a_summary() {
    let h = harness(Setup::default()).await;
    let snapshot = h.env.snapshot();
    let mut patients = ids(20);
    patients.push("P999999".into());
    let refs: Vec<&str> = patients.iter().map(String::as_str).collect();
    let out = h.dir.path().join("out.xlsx");
    let errors = h.dir.path().join("errors.ndjson");
    let mut options = LocalOptions::new(&out);
    options.errors = Some(errors.clone());
    let seen: Arc<Mutex<Vec<LocalProgress>>> = Arc::default();
    let record = seen.clone();
    let summary = run_local(
        &snapshot,
        request(&["his", "wearable"], &refs, "xlsx"),
        options,
        move |p| record.lock().unwrap().push(*p),
        &CancellationToken::new(),
    )
    .await
    .expect("local export");
    assert_eq!(
        (summary.rows, summary.patients, summary.patients_failed),
        (480, 21, 1)
    );
    assert_eq!(summary.format, "xlsx");
    assert_eq!(summary.files.len(), 1);
    let file = &summary.files[0];
    assert_eq!(file.path, out);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(file.size, bytes.len() as u64);
    assert_eq!(file.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
    let all: Vec<u32> = (0..20).collect();
    assert_eq!(
        read_cells("xlsx", &bytes),
        expected_cells(&expected(&h.workload, &["his", "wearable"], &all), "xlsx")
    );
    let e = summary.errors.as_ref().expect("an error file");
    assert_eq!((e.path.as_path(), e.count), (errors.as_path(), 2));
    assert_eq!(ndjson(&std::fs::read(&errors).unwrap()).len(), 2);
    assert_eq!(summary.failures.len(), 2);
    assert_eq!(summary.failures[0].kind, "patient-not-found");
    let last = *seen.lock().unwrap().last().unwrap();
    assert_eq!(
        last,
        LocalProgress {
            patients_total: 21,
            patients_done: 21,
            patients_failed: 1,
            rows: 480
        }
    );
    let left: Vec<String> = files_under(h.dir.path())
        .into_iter()
        .filter(|f| f.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_splits_into_numbered_parts() {
    let h = harness(Setup::default()).await;
    let snapshot = h.env.snapshot();
    let patients = ids(20);
    let refs: Vec<&str> = patients.iter().map(String::as_str).collect();
    let mut options = LocalOptions::new(h.dir.path().join("out.csv"));
    options.max_file_bytes = Some(16 * 1024);
    let summary = run_local(
        &snapshot,
        request(&["his", "wearable"], &refs, "csv"),
        options,
        |_| {},
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(summary.files.len() >= 2, "{:?}", summary.files);
    let mut got = Vec::new();
    for (i, f) in summary.files.iter().enumerate() {
        assert_eq!(f.path, h.dir.path().join(format!("out-{:04}.csv", i + 1)));
        got.extend(read_cells("csv", &std::fs::read(&f.path).unwrap()));
    }
    let all: Vec<u32> = (0..20).collect();
    assert_eq!(
        got,
        expected_cells(&expected(&h.workload, &["his", "wearable"], &all), "csv")
    );
    assert!(!h.dir.path().join("out.csv").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_local_export_leaves_no_file() {
    let h = harness(Setup {
        delay: Duration::from_millis(50),
        fetch_concurrency: 1,
        ..Setup::default()
    })
    .await;
    let snapshot = h.env.snapshot();
    let patients = ids(20);
    let refs: Vec<&str> = patients.iter().map(String::as_str).collect();
    let out = h.dir.path().join("out.parquet");
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stopper.cancel();
    });
    let result = run_local(
        &snapshot,
        request(&["slow"], &refs, "parquet"),
        LocalOptions::new(&out),
        |_| {},
        &stop,
    )
    .await;
    assert!(
        matches!(result, Err(ExportError::Unavailable(_))),
        "{result:?}"
    );
    let left = files_under(h.dir.path());
    assert!(
        left.iter().all(|f| !f.starts_with("out")),
        "nothing that looks like output: {left:?}"
    );
}
