//! Kick-off → claim → progress → manifest → files, for every format; a failing patient;
//! cancel; expiry.

use std::time::Duration;

use medgate_exports::{Deleted, ExportError, JobOutcome, JobStatus};
use medgate_store::ExportState;

use crate::util::*;

fn workload_patients(n: u32) -> Vec<u32> {
    (0..n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_completes_and_its_files_read_back_row_for_row() {
    let h = harness(Setup::default()).await;
    let runner = h.exports.start(h.shutdown.clone());
    let mut patients = ids(20);
    // Unknown to both upstreams: two failed fetches, one failed patient, the job goes on.
    patients.insert(5, "P999999".into());
    let patients: Vec<&str> = patients.iter().map(String::as_str).collect();
    let want_observations = expected(&h.workload, &["his", "wearable"], &workload_patients(20));
    for format in FORMATS {
        let job = h
            .kick_off(request(&["his", "wearable"], &patients, format))
            .await;
        let m = h.manifest(&job.id).await;
        assert_eq!(m.request, "http://gw.test/v1/exports");
        assert!(m.requires_access_token);
        assert!(m.transaction_time.parse::<jiff::Timestamp>().is_ok());
        assert_eq!(m.output.len(), 1, "{format}: one data file");
        assert_eq!(m.output[0].kind, "Observation");
        assert_eq!(m.output[0].count, 480, "{format}");
        assert_eq!(
            m.output[0].url,
            format!("http://gw.test/v1/exports/{}/files/1", job.id)
        );
        assert_eq!(m.error.len(), 1, "{format}: one error file");
        assert_eq!(m.error[0].kind, "OperationOutcome");
        assert_eq!(m.error[0].count, 2);
        let ext = &m.extension;
        assert_eq!(
            (ext.patients, ext.patients_failed, ext.rows),
            (21, 1, 480),
            "{format}"
        );
        assert_eq!(ext.format, format);
        assert_eq!(ext.sources, ["his", "wearable"]);

        let bytes = h.download(&job.id, 1).await;
        assert_eq!(m.output[0].extension.size, bytes.len() as u64);
        let got = read_cells(format, &bytes);
        let want = expected_cells(&want_observations, format);
        assert_eq!(got.len(), want.len(), "{format}: row count");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{format}: row {i}");
        }

        let errors = ndjson(&h.download(&job.id, 2).await);
        assert_eq!(errors.len(), 2);
        let mut sources = Vec::new();
        for e in &errors {
            assert_eq!(e["resourceType"], "OperationOutcome");
            assert_eq!(
                e["extension"][0]["valueReference"]["reference"],
                "Patient/P999999"
            );
            sources.push(
                e["extension"][1]["valueString"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
            let issue = &e["issue"][0];
            assert_eq!(issue["severity"], "error");
            assert_eq!(issue["code"], "not-found");
            assert_eq!(issue["details"]["coding"][0]["code"], "patient-not-found");
        }
        assert_eq!(sources, ["his", "wearable"]);

        let report = h
            .env
            .reports()
            .into_iter()
            .find(|r| r.job_id == job.id)
            .expect("the job was reported");
        assert_eq!(report.outcome, JobOutcome::Completed);
        assert_eq!(report.partner, PARTNER);
        assert_eq!(
            (report.rows, report.patients, report.patients_failed),
            (480, 21, 1)
        );
        assert_eq!(report.format, format);
        assert_eq!(report.files.len(), 2);
        assert_eq!(report.files[0].sha256, m.output[0].extension.sha256);
        assert_eq!(report.files[1].sha256, m.error[0].extension.sha256);
        assert_eq!(report.attempt, 1);

        // Another partner sees nothing.
        assert!(matches!(
            h.exports.status("other", &job.id, "http://gw.test").await,
            Err(ExportError::NotFound(_))
        ));
        assert!(matches!(
            h.exports.open_file("other", &job.id, 1).await,
            Err(ExportError::NotFound(_))
        ));
        assert!(matches!(
            h.exports.open_file(PARTNER, &job.id, 3).await,
            Err(ExportError::NotFound(_))
        ));
    }
    h.shutdown.cancel();
    runner.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_reported_while_a_job_runs() {
    let h = harness(Setup {
        delay: Duration::from_millis(60),
        fetch_concurrency: 1,
        ..Setup::default()
    })
    .await;
    let runner = h.exports.start(h.shutdown.clone());
    let patients = ids(20);
    let patients: Vec<&str> = patients.iter().map(String::as_str).collect();
    let job = h.kick_off(request(&["slow"], &patients, "csv")).await;
    let mut seen = Vec::new();
    loop {
        match h
            .exports
            .status(PARTNER, &job.id, "http://gw.test")
            .await
            .unwrap()
        {
            JobStatus::Running {
                progress,
                retry_after,
            } => {
                assert!(retry_after >= Duration::from_secs(1));
                // Claimed, before its first heartbeat: no counters yet.
                if progress.patients_total != 0 {
                    assert_eq!(progress.patients_total, 20);
                }
                seen.push(progress);
            }
            JobStatus::Queued { .. } => {}
            JobStatus::Completed { .. } => break,
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mid = seen
        .iter()
        .find(|p| p.patients_done > 0 && p.patients_done < 20)
        .expect("a heartbeat between start and end");
    // A patient counts as done after its rows were handed to the exporter.
    assert!(mid.rows_written >= mid.patients_done * 12, "{mid:?}");
    assert!(seen
        .windows(2)
        .all(|w| w[0].rows_written <= w[1].rows_written));
    assert!(medgate_exports::progress_text(mid).ends_with(" rows"));
    let done = h.store.export(&job.id).await.unwrap().unwrap();
    assert_eq!(done.progress.patients_done, 20);
    assert_eq!(done.progress.rows_written, 240);
    h.shutdown.cancel();
    runner.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_job_stops_it_and_removes_its_files() {
    // 40 patients: the splitter's probe takes the first 256 observations (21 patients)
    // before the first part is written, so parts are recorded while 19 patients remain.
    let h = harness(Setup {
        patients: 40,
        delay: Duration::from_millis(100),
        fetch_concurrency: 1,
        max_file_bytes: 4096,
        ..Setup::default()
    })
    .await;
    let runner = h.exports.start(h.shutdown.clone());
    let patients = ids(40);
    let patients: Vec<&str> = patients.iter().map(String::as_str).collect();
    let job = h.kick_off(request(&["slow"], &patients, "csv")).await;
    let job_dir = h.exports_dir().join(&job.id);
    // Until a part is on disk and recorded.
    for _ in 0..200 {
        let j = h.store.export(&job.id).await.unwrap().unwrap();
        if !j.files.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !files_under(&job_dir).is_empty(),
        "files are written as the job runs"
    );
    assert_eq!(
        h.exports.delete(PARTNER, &job.id).await.unwrap(),
        Deleted::Cancelled
    );
    let mut reported = false;
    for _ in 0..100 {
        if h.env.reports().iter().any(|r| r.job_id == job.id) {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reported, "the worker noticed the cancel");
    let report = h
        .env
        .reports()
        .into_iter()
        .find(|r| r.job_id == job.id)
        .unwrap();
    assert_eq!(report.outcome, JobOutcome::Cancelled);
    assert!(
        !job_dir.exists(),
        "files removed: {:?}",
        files_under(&job_dir)
    );
    let j = h.store.export(&job.id).await.unwrap().unwrap();
    assert_eq!(j.state, ExportState::Cancelled);
    assert!(
        j.progress.patients_done < 40,
        "it stopped early: {:?}",
        j.progress
    );
    assert!(matches!(
        h.exports
            .status(PARTNER, &job.id, "http://gw.test")
            .await
            .unwrap(),
        JobStatus::Cancelled
    ));
    assert!(matches!(
        h.exports.open_file(PARTNER, &job.id, 1).await,
        Err(ExportError::NotReady(_))
    ));
    h.shutdown.cancel();
    runner.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_deleted_with_its_files_on_request_and_on_expiry() {
    let h = harness(Setup::default()).await;
    let runner = h.exports.start(h.shutdown.clone());
    let first = h.kick_off(request(&["his"], &["P000001"], "csv")).await;
    let second = h.kick_off(request(&["his"], &["P000002"], "ndjson")).await;
    h.manifest(&first.id).await;
    h.manifest(&second.id).await;
    let now = jiff::Timestamp::now();
    assert_eq!(h.exports.expire(now).await.unwrap(), 0, "not expired yet");
    assert!(h.exports_dir().join(&first.id).exists());

    assert_eq!(
        h.exports.delete(PARTNER, &first.id).await.unwrap(),
        Deleted::Removed
    );
    assert!(!h.exports_dir().join(&first.id).exists());
    assert!(h.store.export(&first.id).await.unwrap().is_none());

    let later = now
        .checked_add(jiff::SignedDuration::from_hours(2))
        .unwrap();
    assert_eq!(h.exports.expire(later).await.unwrap(), 1);
    assert!(!h.exports_dir().join(&second.id).exists());
    assert!(matches!(
        h.exports
            .status(PARTNER, &second.id, "http://gw.test")
            .await,
        Err(ExportError::NotFound(_))
    ));
    h.shutdown.cancel();
    runner.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_no_observation_lists_no_output_file() {
    let h = harness(Setup::default()).await;
    let runner = h.exports.start(h.shutdown.clone());
    let mut r = request(&["his"], &["P000001"], "parquet");
    r.codes = vec!["no-such-code".into()];
    let job = h.kick_off(r).await;
    let m = h.manifest(&job.id).await;
    assert!(m.output.is_empty() && m.error.is_empty());
    assert_eq!(m.extension.rows, 0);
    h.shutdown.cancel();
    runner.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_at_most_concurrency_at_once() {
    let h = harness(Setup {
        delay: Duration::from_millis(50),
        concurrency: 1,
        ..Setup::default()
    })
    .await;
    let runner = h.exports.start(h.shutdown.clone());
    let patients = ids(6);
    let patients: Vec<&str> = patients.iter().map(String::as_str).collect();
    let a = h.kick_off(request(&["slow"], &patients, "csv")).await;
    let b = h.kick_off(request(&["slow"], &patients, "csv")).await;
    let mut both_running = false;
    for _ in 0..100 {
        let ja = h.store.export(&a.id).await.unwrap().unwrap();
        let jb = h.store.export(&b.id).await.unwrap().unwrap();
        both_running |= ja.state == ExportState::Running && jb.state == ExportState::Running;
        if ja.state.is_final() && jb.state.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!both_running, "concurrency = 1 runs one job at a time");
    h.manifest(&a.id).await;
    h.manifest(&b.id).await;
    h.shutdown.cancel();
    runner.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stays_within_a_sources_bulkhead_instead_of_failing_patients() {
    // `narrow` admits one call at a time (beyond it calls fail fast with 503); the job asks
    // for 4 fetches in flight.
    let h = harness(Setup {
        delay: Duration::from_millis(20),
        fetch_concurrency: 4,
        ..Setup::default()
    })
    .await;
    let runner = h.exports.start(h.shutdown.clone());
    let patients = ids(12);
    let patients: Vec<&str> = patients.iter().map(String::as_str).collect();
    let job = h.kick_off(request(&["narrow"], &patients, "csv")).await;
    let m = h.manifest(&job.id).await;
    assert_eq!(m.extension.patients_failed, 0);
    assert!(m.error.is_empty());
    assert_eq!(m.extension.rows, 144);
    h.shutdown.cancel();
    runner.stopped().await;
}
