//! Crash safety: a job whose worker died is resumed by another runner and completes exactly
//! once; after its last attempt it is failed cleanly.

use std::time::Duration;

use medgate_exports::{Exports, JobOutcome, JobStatus};
use medgate_store::ExportState;
use tokio_util::sync::CancellationToken;

use crate::util::*;

/// Starts a slow job on runner `a`, waits until it recorded a file, then kills `a`.
async fn interrupted_job(h: &Harness) -> String {
    let a = h.exports.start(h.shutdown.clone());
    let patients = ids(20);
    let patients: Vec<&str> = patients.iter().map(String::as_str).collect();
    let job = h.kick_off(request(&["slow"], &patients, "ndjson")).await;
    for _ in 0..400 {
        let j = h.store.export(&job.id).await.unwrap().unwrap();
        if !j.files.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.abort();
    // Let the abort land, then check that the job was left behind as it would by a crash.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let j = h.store.export(&job.id).await.unwrap().unwrap();
    assert_eq!(j.state, ExportState::Running);
    assert_eq!(j.owner.as_deref(), Some("a"));
    assert_eq!(j.attempts, 1);
    assert!(!j.files.is_empty());
    assert!(j.progress.patients_done < 20, "{:?}", j.progress);
    job.id
}

fn setup() -> Setup {
    Setup {
        delay: Duration::from_millis(60),
        fetch_concurrency: 1,
        max_file_bytes: 4096,
        options: medgate_exports::RunnerOptions {
            lease: Duration::from_millis(800),
            ..fast_options("a")
        },
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_died_is_resumed_by_another_runner_and_completes_once() {
    let h = harness(setup()).await;
    let id = interrupted_job(&h).await;
    let old_files = files_under(&h.exports_dir().join(&id));
    assert!(
        old_files.iter().all(|f| f.starts_with("1/")),
        "{old_files:?}"
    );

    let b = Exports::new(
        h.store.clone(),
        h.env.clone(),
        medgate_exports::RunnerOptions {
            lease: Duration::from_millis(800),
            ..fast_options("b")
        },
    );
    let stop_b = CancellationToken::new();
    let runner_b = b.start(stop_b.clone());
    let m = h.manifest(&id).await;

    let j = h.store.export(&id).await.unwrap().unwrap();
    assert_eq!(j.state, ExportState::Completed);
    assert_eq!(j.owner.as_deref(), Some("b"));
    assert_eq!(j.attempts, 2);
    // The first attempt's records stay in the table, but the manifest serves attempt 2 only,
    // and attempt 1's files are gone from disk.
    assert!(j
        .files
        .iter()
        .any(|f| f.path.starts_with(&format!("{id}/1/"))));
    let on_disk = files_under(&h.exports_dir().join(&id));
    assert!(on_disk.iter().all(|f| f.starts_with("2/")), "{on_disk:?}");
    assert_eq!(on_disk.len(), m.output.len());

    let mut got = Vec::new();
    for i in 0..m.output.len() {
        got.extend(read_cells("ndjson", &h.download(&id, i as u32 + 1).await));
    }
    let all: Vec<u32> = (0..20).collect();
    assert_eq!(
        got,
        expected_cells(&expected(&h.workload, &["slow"], &all), "ndjson")
    );
    assert_eq!(m.extension.rows, 240);

    let reports: Vec<_> = h
        .env
        .reports()
        .into_iter()
        .filter(|r| r.job_id == id)
        .collect();
    assert_eq!(reports.len(), 1, "completed exactly once: {reports:?}");
    assert_eq!(reports[0].outcome, JobOutcome::Completed);
    assert_eq!(reports[0].attempt, 2);
    stop_b.cancel();
    runner_b.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_interrupted_on_its_last_attempt_is_failed_not_left_running() {
    let h = harness(setup()).await;
    let id = interrupted_job(&h).await;
    let b = Exports::new(
        h.store.clone(),
        h.env.clone(),
        medgate_exports::RunnerOptions {
            max_attempts: 1,
            ..fast_options("b")
        },
    );
    let stop_b = CancellationToken::new();
    let runner_b = b.start(stop_b.clone());
    match h.finished(&id).await {
        JobStatus::Failed { error } => {
            assert!(error.contains("interrupted 1 times"), "{error}");
            assert!(!error.contains("P0000"), "no patient id in {error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !h.exports_dir().join(&id).exists(),
        "its files were removed"
    );
    let reports: Vec<_> = h
        .env
        .reports()
        .into_iter()
        .filter(|r| r.job_id == id)
        .collect();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].outcome, JobOutcome::Failed);
    stop_b.cancel();
    runner_b.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_a_running_job_for_the_next_start() {
    let h = harness(setup()).await;
    let a = h.exports.start(h.shutdown.clone());
    let patients = ids(20);
    let patients: Vec<&str> = patients.iter().map(String::as_str).collect();
    let job = h.kick_off(request(&["slow"], &patients, "csv")).await;
    for _ in 0..400 {
        let j = h.store.export(&job.id).await.unwrap().unwrap();
        if j.progress.patients_done > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), a.stopped())
        .await
        .expect("the runner stops promptly at shutdown");
    let j = h.store.export(&job.id).await.unwrap().unwrap();
    assert_eq!(j.state, ExportState::Running, "left for a resume");
    assert!(
        h.env.reports().is_empty(),
        "an interrupted job is not reported"
    );
}
