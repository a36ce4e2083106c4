//! Shared harness: upstreams on port 0, a gateway on port 0, a client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use medgate_demo::Workload;
use tokio::net::TcpListener;

/// Patients and observations per patient the test workload serves.
pub const PATIENTS: u32 = 20;
pub const OBS: u32 = 12;

/// Serves `router` on 127.0.0.1:0 in the background; returns its address.
pub async fn serve_router(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// The synthetic workload the demo upstreams serve in these tests.
pub fn workload() -> Arc<Workload> {
    Arc::new(Workload {
        patients: PATIENTS,
        observations: OBS,
        ..Workload::default()
    })
}

/// How often the gateway reads the outbox backlog.
pub const BACKLOG_POLL: Duration = medgate::backlog::POLL;

/// The API key of the `test` partner every harness config has (allowed everything).
pub const KEY: &str = "test-key-0123456789";

/// A running gateway and what it fronts.
pub struct Gateway {
    pub base: String,
    /// The operators' listener (health, readiness, metrics).
    pub ops: String,
    /// Sends the `test` partner's key on every request.
    pub client: reqwest::Client,
    pub workload: Arc<Workload>,
    /// The gateway's audit trail.
    pub audit: std::path::PathBuf,
    /// The config file it was started from (rewrite it and call `reload`).
    pub config: std::path::PathBuf,
    pub handle: Arc<medgate::startup::Gateway>,
}

impl Gateway {
    /// The operators' `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.ops))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// GETs `path` (starting with `/`).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .expect("request to the gateway")
    }

    /// GETs `path` and parses the JSON body, asserting the status and content type.
    pub async fn json(&self, path: &str, status: u16, content_type: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert_eq!(response.status().as_u16(), status, "status of {path}");
        assert_eq!(
            header(&response, "content-type"),
            content_type,
            "content type of {path}"
        );
        response.json().await.expect("JSON body")
    }
}

/// The flat JSON rows the gateway must serve for `observations` (the tabular projection).
pub fn flat(observations: &[medgate_core::Observation]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = observations
        .iter()
        .flat_map(medgate_core::rows)
        .map(|row| serde_json::to_value(&row).expect("row JSON"))
        .collect();
    serde_json::Value::Array(rows)
}

/// A response header as text ("" when absent).
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Starts the demo upstreams and a gateway whose config is the demo's sources, the `test`
/// partner, plus `extra` TOML appended at the end (more `[[sources]]` or `[[partners]]`, with
/// `{faulty}` replaced by the faulty upstream's address).
pub async fn start(extra_sources: &str) -> Gateway {
    start_with(extra_sources, crate::errors::faulty_upstream()).await
}

/// [`start`] with `faulty` serving `{faulty}`.
pub async fn start_with(extra_sources: &str, faulty: Router) -> Gateway {
    start_full("", extra_sources, faulty).await
}

/// [`start`] with more `[server]` keys (one per line).
pub async fn start_with_server(server: &str, extra_sources: &str) -> Gateway {
    start_full(server, extra_sources, crate::errors::faulty_upstream()).await
}

async fn start_full(server: &str, extra_sources: &str, faulty: Router) -> Gateway {
    let workload = workload();
    let his = serve_router(medgate_demo::his_router(workload.clone())).await;
    let wearable = serve_router(medgate_demo::wearable_router(workload.clone())).await;
    let faulty = serve_router(faulty).await;
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_export_patients = 50
{server}

[[sources]]
name = "his"
kind = "his-xml"
url = "http://{his}/fhir/Observation?patient={{patient_id}}"
format = "fhir-r4"
timeout_ms = 2000

[[sources]]
name = "wearable"
kind = "wearable-json"
url = "http://{wearable}/omh/{{patient_id}}"
format = "openmhealth"

[exporters]
enabled = ["csv", "json", "ndjson", "xlsx", "fhir-ndjson"]

[[partners]]
name = "test"
key_sha256 = "{key}"
sources = ["*"]
formats = ["*"]
ingest = ["*"]
read_alerts = true
export_jobs = true
rate_per_second = 100000
burst = 100000
max_concurrency = 1000

{extra}
"#,
        key = medgate::access::sha256_hex(KEY),
        extra = extra_sources.replace("{faulty}", &faulty.to_string())
    );
    start_with_config(&config, workload).await
}

/// Starts a gateway from config text.
pub async fn start_with_config(config: &str, workload: Arc<Workload>) -> Gateway {
    start_in(config, workload, &tempdir()).await
}

/// Starts a gateway from config text with its store and audit trail in `dir` (a second
/// gateway on the same `dir` sees what the first stored).
pub async fn start_in(config: &str, workload: Arc<Workload>, dir: &std::path::Path) -> Gateway {
    boot(config, workload, dir, |_| {}, std::future::pending())
        .await
        .0
}

/// Stops a gateway started by [`start_stoppable`] the way SIGTERM does (stop accepting,
/// grace, interrupt, stop background work and export jobs, close the store and the audit
/// trail). Dropping it stops the gateway too.
pub struct Stop {
    tx: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

impl Stop {
    /// Stops the gateway and waits until its ordered shutdown is over.
    pub async fn stop(self) {
        let _ = self.tx.send(());
        self.served.await.expect("the gateway's serve task");
    }
}

/// [`start_in`], with `tune` applied to the validated config before the gateway is built
/// (tests set values below a key's production minimum, e.g. a 2 s `[exports]
/// expire_after_s`), and a [`Stop`] to shut it down.
pub async fn start_stoppable(
    config: &str,
    workload: Arc<Workload>,
    dir: &std::path::Path,
    tune: impl FnOnce(&mut medgate_core::Config),
) -> (Gateway, Stop) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (gw, served) = boot(config, workload, dir, tune, async move {
        let _ = rx.await;
    })
    .await;
    (gw, Stop { tx, served })
}

async fn boot(
    config: &str,
    workload: Arc<Workload>,
    dir: &std::path::Path,
    tune: impl FnOnce(&mut medgate_core::Config),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> (Gateway, tokio::task::JoinHandle<()>) {
    let path = dir.join("medgate.toml");
    let audit = dir.join("audit.jsonl");
    let store = dir.join("store.db");
    let config = format!(
        "{config}\n[audit]\npath = {:?}\n[store]\nurl = {:?}\n",
        audit.display().to_string(),
        format!("sqlite://{}", store.display())
    );
    std::fs::write(&path, config).expect("write config");
    let mut loaded =
        medgate::startup::load(&path).unwrap_or_else(|e| panic!("config invalid:\n{e}"));
    tune(&mut loaded.plan.config);
    let handle = Arc::new(
        medgate::startup::build(loaded)
            .await
            .expect("build gateway"),
    );
    let api = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gateway");
    let addr = api.local_addr().expect("addr");
    let ops = TcpListener::bind("127.0.0.1:0").await.expect("bind ops");
    let ops_addr = ops.local_addr().expect("ops addr");
    let listeners = medgate::startup::Listeners {
        api,
        ops: Some(ops),
    };
    let served = tokio::spawn({
        let handle = handle.clone();
        async move {
            medgate::startup::serve(handle, listeners, stop)
                .await
                .expect("the gateway serves and stops cleanly");
        }
    });
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("header"),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .expect("client");
    let gw = Gateway {
        base: format!("http://{addr}"),
        ops: format!("http://{ops_addr}"),
        client,
        workload,
        audit,
        config: path,
        handle,
    };
    (gw, served)
}

/// The audit trail's entries as JSON.
pub fn audit_entries(gw: &Gateway) -> Vec<serde_json::Value> {
    std::fs::read_to_string(&gw.audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// A fresh directory under the system temp dir.
pub fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "medgate-e2e-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
