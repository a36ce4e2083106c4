//! Durability: what was acknowledged survives a store dropped without `close` and a process
//! killed with SIGKILL mid-load.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use medgate_store::Store;

use crate::common::*;

/// Set in the child process: where to put the database and the acknowledged receipts.
const CHILD_DIR: &str = "MEDGATE_STORE_CRASH_DIR";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_without_close_keeps_acknowledged_rows() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/medgate.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..20 {
                let outcome = store
                    .ingest(batch(vec![diary(&format!("P{w:02}-{i:02}"), 1)]))
                    .await
                    .unwrap();
                ids.push(outcome.receipts().unwrap()[0].id.clone());
            }
            ids
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    drop(store);
    let reopened = Store::open(&url).await.unwrap();
    for id in &acked {
        let status = reopened.receipt("epro", id).await.unwrap();
        assert_eq!(status.map(|s| s.observations), Some(8), "receipt {id}");
    }
    assert_eq!(patients(&reopened).await.len(), acked.len());
    reopened.close().await;
}

/// The child: ingests from 32 tasks until killed, appending each acknowledged receipt to
/// `acked.txt` (one `write` per line, so a kill never leaves half a line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by kill_9_keeps_acknowledged_rows in a child process"]
async fn child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let store = Store::open(&format!("sqlite://{dir}/medgate.db"))
        .await
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{dir}/acked.txt"))
            .unwrap(),
    ));
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (store, log) = (store.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let outcome = store
                    .ingest(batch(vec![diary(&format!("C{w:02}-{i:06}"), 1)]))
                    .await
                    .unwrap();
                let line = format!("{}\n", outcome.receipts().unwrap()[0].id);
                log.lock().unwrap().write_all(line.as_bytes()).unwrap();
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_acknowledged_rows() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "crash::child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let acked_path = dir.path().join("acked.txt");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = std::fs::read_to_string(&acked_path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 3000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the child acknowledged only {lines} reports"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no close, mid-commit.
    child.wait().unwrap();
    let acked: Vec<String> = std::fs::read_to_string(&acked_path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let store = Store::open(&format!("sqlite://{}/medgate.db", dir.path().display()))
        .await
        .unwrap();
    for id in &acked {
        let status = store.receipt("epro", id).await.unwrap();
        assert_eq!(
            status.map(|s| s.observations),
            Some(8),
            "acknowledged receipt {id} lost"
        );
    }
    // All-or-nothing after the crash too: every stored report has its job and its 8 rows.
    let stored = patients(&store).await;
    assert!(stored.len() >= acked.len());
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!(stats.queued as usize, stored.len());
    for p in stored.iter().step_by(101) {
        assert_eq!(all_of(&store, p).await.len(), 8);
    }
    store.close().await;
}
