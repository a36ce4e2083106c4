//! `kill -9` in the middle of uploads: every report that got a 202 is stored exactly once
//! after a restart, and every job it left unfinished is processed.
//!
//! The gateway runs as a child process from the real binary, with its SQLite store in a
//! temporary directory; uploads come from 16 concurrent clients.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const KEY: &str = "crash-test-key-0123";

fn config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("medgate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_ms = 0\n\
             [store]\nurl = \"sqlite://{}\"\n[audit]\npath = {:?}\n\
             [[sources]]\nname = \"epro\"\nkind = \"store\"\n\
             [[partners]]\nname = \"app\"\nkey_sha256 = \"{}\"\nsources = [\"*\"]\ningest = [\"epro\"]\nrate_per_second = 100000\nburst = 100000\nmax_concurrency = 1000\n",
            dir.join("store.db").display(),
            dir.join("audit.jsonl").display().to_string(),
            medgate::access::sha256_hex(KEY)
        ),
    )
    .unwrap();
    path
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_medgate"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(base: &str) {
    let started = Instant::now();
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "not started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn body(patient: &str, n: u32) -> String {
    format!(
        r#"{{"patient_id":"{patient}","reported_at":"2026-03-01T08:00:00+08:00","kind":"epro","report_id":"r-{n}","items":[{{"code":"8867-4","code_system":"http://loinc.org","value":{v},"unit":"/min","effective":"2026-03-01T07:58:00+08:00"}}]}}"#,
        v = 60 + n % 60
    )
}

/// Patient → acknowledged upload count, and the receipt ids acknowledged.
type Acked = (HashMap<String, u32>, Vec<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_report_survives_kill_9_exactly_once() {
    let dir = std::env::temp_dir().join(format!("medgate-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let path = config(&dir, port);
    let mut child = spawn(&path);
    wait_ready(&base).await;

    let acked: Arc<Mutex<Acked>> = Arc::default();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let patient = format!("K{t:02}-{}", n % 5);
                let sent = client
                    .post(format!("{base}/v1/ingest/epro"))
                    .header("authorization", format!("Bearer {KEY}"))
                    .header("content-type", "application/json")
                    .body(body(&patient, n))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != 202 {
                    continue;
                }
                let Ok(receipts) = response.json::<serde_json::Value>().await else {
                    break;
                };
                let mut acked = acked.lock().unwrap();
                *acked.0.entry(patient).or_default() += 1;
                acked
                    .1
                    .push(receipts["receipts"][0]["id"].as_str().unwrap().to_owned());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush, no goodbye.
    child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let (per_patient, receipts) = {
        let acked = acked.lock().unwrap();
        (acked.0.clone(), acked.1.clone())
    };
    assert!(
        receipts.len() > 50,
        "uploads were acknowledged before the kill: {}",
        receipts.len()
    );

    let mut child = spawn(&path);
    wait_ready(&base).await;
    let get = |path: String| {
        let client = client.clone();
        async move {
            client
                .get(path)
                .header("authorization", format!("Bearer {KEY}"))
                .send()
                .await
                .unwrap()
        }
    };
    // Each acknowledged receipt exists; each patient holds exactly what was acknowledged.
    for id in &receipts {
        let response = get(format!("{base}/v1/ingest/epro/receipts/{id}")).await;
        assert_eq!(
            response.status(),
            200,
            "receipt {id} was acknowledged but is gone"
        );
    }
    for (patient, count) in &per_patient {
        let data: serde_json::Value = get(format!("{base}/v1/data/epro?patient_id={patient}"))
            .await
            .json()
            .await
            .unwrap();
        let stored = data["observations"].as_array().unwrap().len() as u32;
        // A report sent but cut by the kill before its 202 may or may not be stored; what was
        // acknowledged must be, and nothing twice.
        assert!(
            stored >= *count,
            "{patient}: acknowledged {count}, stored {stored}"
        );
        assert!(
            stored <= count + 1,
            "{patient}: acknowledged {count}, stored {stored} (a duplicate?)"
        );
    }
    // Every job left unfinished by the kill is processed after the restart.
    let started = Instant::now();
    loop {
        let mut pending = 0;
        for id in receipts.iter().take(200) {
            let state: serde_json::Value = get(format!("{base}/v1/ingest/epro/receipts/{id}"))
                .await
                .json()
                .await
                .unwrap();
            if state["state"] != "processed" {
                pending += 1;
            }
        }
        if pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{pending} jobs never processed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
