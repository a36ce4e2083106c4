//! Two gateway replicas on one PostgreSQL database, one killed with `kill -9` mid-upload and
//! restarted: every acknowledged report is stored once and processed once — its alert reaches
//! the webhook exactly once, whichever replica's worker took the job.
//!
//! Needs `MEDGATE_TEST_POSTGRES_URL` (`.ci/run` sets it): the test fails when it is set and the
//! server is unreachable, and is skipped (with a message) when it is not set.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

const KEY: &str = "replica-test-key-0123";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// webhook-id → receipt, as delivered.
type Delivered = Arc<Mutex<Vec<(String, String)>>>;

async fn hook(State(got): State<Delivered>, headers: HeaderMap, body: String) -> StatusCode {
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    let payload: serde_json::Value = serde_json::from_str(&body).unwrap();
    let receipt = payload["data"]["receipt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    got.lock().unwrap().push((id, receipt));
    StatusCode::NO_CONTENT
}

struct Replica {
    child: Child,
    base: String,
    config: std::path::PathBuf,
}

impl Replica {
    fn start(dir: &std::path::Path, name: &str, store: &str, hook: &str) -> Replica {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_ms = 0\n\
                 [store]\nurl = {store:?}\n[audit]\npath = {:?}\n\
                 [ingest]\nsae_notify = []\nworkers = 4\n\
                 [[sources]]\nname = \"epro\"\nkind = \"store\"\n\
                 [[webhooks]]\nname = \"monitor\"\nurl = \"http://{hook}/hook\"\nsecret_env = \"MEDGATE_REPLICA_SECRET\"\nbase_delay_ms = 10\nmax_delay_ms = 100\n\
                 [[rules]]\nname = \"any-heart-rate\"\nsource = \"epro\"\ncode = \"8867-4\"\nabove = 0\nnotify = [\"monitor\"]\n\
                 [[partners]]\nname = \"app\"\nkey_sha256 = \"{}\"\nsources = [\"*\"]\ningest = [\"epro\"]\nrate_per_second = 100000\nburst = 100000\nmax_concurrency = 1000\n",
                dir.join(format!("{name}-audit.jsonl")).display().to_string(),
                medgate::access::sha256_hex(KEY)
            ),
        )
        .unwrap();
        let mut replica = Replica {
            child: Command::new("true").spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
            config,
        };
        replica.restart();
        replica
    }

    fn restart(&mut self) {
        let _ = self.child.wait();
        self.child = Command::new(env!("CARGO_BIN_EXE_medgate"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("MEDGATE_REPLICA_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    }

    async fn ready(&self) {
        let started = Instant::now();
        while reqwest::get(format!("{}/healthz", self.base))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "replica did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_store_and_process_every_report_exactly_once() {
    let Ok(admin) = std::env::var("MEDGATE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: MEDGATE_TEST_POSTGRES_URL is not set");
        return;
    };
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("MEDGATE_TEST_POSTGRES_URL is set but unreachable: {e}"));
    let db = format!(
        "medgate_replicas_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&pool)
        .await
        .unwrap();
    let store = match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}"),
        None => panic!("MEDGATE_TEST_POSTGRES_URL has no database path"),
    };

    let delivered: Delivered = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap().to_string();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(delivered.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = std::env::temp_dir().join(format!("medgate-replicas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut a = Replica::start(&dir, "a", &store, &hook_addr);
    let b = Replica::start(&dir, "b", &store, &hook_addr);
    a.ready().await;
    b.ready().await;

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let bases = [a.base.clone(), b.base.clone()];
        let (client, acked) = (client.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut n = 0u32;
            while started.elapsed() < Duration::from_millis(2500) {
                n += 1;
                let base = &bases[((t + n) % 2) as usize];
                let body = format!(
                    r#"{{"patient_id":"R{t}","reported_at":"2026-03-01T08:00:00+08:00","kind":"epro","items":[{{"code":"8867-4","code_system":"http://loinc.org","value":{},"unit":"/min","effective":"2026-03-01T07:58:00+08:00"}}]}}"#,
                    60 + n % 50
                );
                let sent = client
                    .post(format!("{base}/v1/ingest/epro"))
                    .header("authorization", format!("Bearer {KEY}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let Ok(response) = sent else { continue };
                if response.status() != 202 {
                    continue;
                }
                if let Ok(r) = response.json::<serde_json::Value>().await {
                    acked.lock().unwrap().push(r["receipts"][0]["id"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    a.child.kill().unwrap(); // replica a dies mid-upload; b goes on
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.restart();
    for t in tasks {
        t.await.unwrap();
    }
    a.ready().await;
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "uploads were acknowledged: {}",
        acked.len()
    );

    // Every acknowledged report is delivered, and no job ran twice (one webhook message per
    // receipt; a job run twice would have recorded and sent it again).
    let started = Instant::now();
    loop {
        let got = delivered.lock().unwrap().clone();
        let per_receipt: HashMap<&str, usize> = got.iter().fold(HashMap::new(), |mut m, (_, r)| {
            *m.entry(r.as_str()).or_default() += 1;
            m
        });
        let missing = acked
            .iter()
            .filter(|r| !per_receipt.contains_key(r.as_str()))
            .count();
        if missing == 0 {
            let mut ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            // A retried delivery reuses its webhook-id; distinct ids are distinct alerts.
            let alerts_per_receipt: HashMap<&str, usize> = got
                .iter()
                .map(|(id, r)| (id.as_str(), r.as_str()))
                .collect::<std::collections::HashSet<_>>()
                .into_iter()
                .fold(HashMap::new(), |mut m, (_, r)| {
                    *m.entry(r).or_default() += 1;
                    m
                });
            assert!(
                alerts_per_receipt.values().all(|n| *n == 1),
                "a job ran twice"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{missing} acknowledged reports never processed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(a);
    drop(b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {db} WITH (FORCE)"
    )))
    .execute(&pool)
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
