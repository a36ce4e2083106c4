//! Shared helpers: real databases (SQLite in a temp dir; PostgreSQL from
//! `MEDGATE_TEST_POSTGRES_URL` in a schema of its own), a loopback webhook receiver, report
//! builders and config from TOML text.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use medgate_alerts::{
    Alerting, Background, BackgroundOptions, Backoff, DeliveryOptions, PoolOptions,
};
use medgate_core::{
    CodeableConcept, Component, DateTime, Decimal, Effective, Observation, Quantity, Value,
};
use medgate_store::{IngestBatch, NewReport, ReportState, Store, StoreOptions};
use tokio_util::sync::CancellationToken;

/// The environment variable naming the test PostgreSQL server.
pub const PG_ENV: &str = "MEDGATE_TEST_POSTGRES_URL";

/// The webhook secret's bytes (32), and the variable the test config names.
pub const SECRET_BYTES: [u8; 32] = *b"medgate-test-webhook-secret-0042";
pub const SECRET_ENV: &str = "TEST_WEBHOOK_SECRET";

/// `whsec_<base64>` of [`SECRET_BYTES`].
pub fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SECRET_BYTES)
    )
}

/// A database under test; dropping it removes it (the temp dir or the schema).
pub struct Db {
    pub store: Store,
    pub url: String,
    pub schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    /// A fresh SQLite store in a temp dir.
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/medgate.db", dir.path().display());
        let store = Store::open(&url).await.expect("open sqlite");
        Db {
            store,
            url,
            schema: None,
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL store in a schema of its own, or `None` (with a message) when
    /// `MEDGATE_TEST_POSTGRES_URL` is unset. Panics when it is set and unreachable.
    pub async fn postgres() -> Option<Db> {
        let Ok(url) = std::env::var(PG_ENV) else {
            eprintln!("skipped: {PG_ENV} is not set (CI sets it; .ci/run)");
            return None;
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let schema = format!(
            "medgate_alerts_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            jiff::Timestamp::now().as_millisecond() % 1_000_000
        );
        let store = open_pg(&url, &schema).await;
        Some(Db {
            store,
            url,
            schema: Some(schema),
            _dir: None,
        })
    }

    /// Another store on the same PostgreSQL database (a second replica); for SQLite, the
    /// same store (one process per SQLite file).
    pub async fn replica(&self) -> Store {
        match &self.schema {
            Some(schema) => open_pg(&self.url, schema).await,
            None => self.store.clone(),
        }
    }

    /// Closes the store and drops the test schema.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some(schema) = &self.schema {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&self.url).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .execute(&mut conn)
                .await;
            }
        }
    }
}

async fn open_pg(url: &str, schema: &str) -> Store {
    let options = StoreOptions {
        pg_schema: Some(schema.to_owned()),
        pg_max_connections: 8,
        ..StoreOptions::default()
    };
    match Store::open_with(url, options).await {
        Ok(s) => s,
        Err(e) => panic!("{PG_ENV} is set but PostgreSQL is not usable: {e}"),
    }
}

/// Runs a scenario against SQLite and, when configured, PostgreSQL.
#[macro_export]
macro_rules! both {
    ($scenario:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sqlite() {
            let db = $crate::common::Db::sqlite().await;
            $scenario(&db).await;
            db.finish().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres() {
            let Some(db) = $crate::common::Db::postgres().await else {
                return;
            };
            $scenario(&db).await;
            db.finish().await;
        }
    };
}

// ---- the webhook receiver --------------------------------------------------------------

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the payload is JSON")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// Statuses to answer, in order; 200 once they run out.
    script: Mutex<VecDeque<u16>>,
    /// Answer after this long.
    delay: Mutex<Duration>,
    /// Before answering request number `n` (1-based), wait for the gate to open.
    gate: Mutex<Option<(usize, Arc<tokio::sync::Semaphore>)>>,
}

/// A webhook receiver on 127.0.0.1:0 (axum), recording every request.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, state }
    }

    /// Answers these statuses first (then 200).
    pub fn answer(&self, statuses: &[u16]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(statuses.iter().copied());
    }

    /// Answers every request after `d`.
    pub fn delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    /// Request number `n` (1-based) waits until the returned semaphore gets a permit.
    pub fn gate(&self, n: usize) -> Arc<tokio::sync::Semaphore> {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        *self.state.gate.lock().unwrap() = Some((n, gate.clone()));
        gate
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (panics after `limit`).
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < limit,
                "expected {n} webhook requests within {limit:?}, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn hook(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let n = {
        let mut received = state.received.lock().unwrap();
        received.push(Received {
            headers,
            body: body.to_vec(),
            at: Instant::now(),
        });
        received.len()
    };
    let gate = state.gate.lock().unwrap().clone();
    if let Some((at, gate)) = gate {
        if at == n {
            let _ = gate.acquire().await;
        }
    }
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = state.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

// ---- config ----------------------------------------------------------------------------

/// Rules and webhooks from TOML text (`[[webhooks]]`/`[[rules]]` as in medgate.toml), the
/// store sources `epro` and `clinic`, SAEs to `sae_notify`, the secret from [`secret`].
pub fn alerting(text: &str, sae_notify: &[&str]) -> Alerting {
    let doc: toml::Table = toml::from_str(text).expect("test TOML");
    let list = |key: &str| -> Vec<toml::Table> {
        doc.get(key)
            .and_then(toml::Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_table().cloned()).collect())
            .unwrap_or_default()
    };
    let sae: Vec<String> = sae_notify.iter().map(|s| s.to_string()).collect();
    let sources = ["epro".to_owned(), "clinic".to_owned()];
    Alerting::build(
        &list("rules"),
        &list("webhooks"),
        Some(&sae),
        &sources,
        |var| (var == SECRET_ENV).then(secret),
    )
    .unwrap_or_else(|issues| panic!("test config: {issues:?}"))
}

/// A `[[webhooks]]` entry for `receiver` with fast retries.
pub fn webhook_toml(name: &str, url: &str, attempts: u32) -> String {
    format!(
        r#"
[[webhooks]]
name = "{name}"
url = "{url}"
secret_env = "{SECRET_ENV}"
timeout_ms = 2000
attempts = {attempts}
base_delay_ms = 20
max_delay_ms = 100
"#
    )
}

/// Options for tests: short polls, leases and back-offs.
pub fn fast_options() -> BackgroundOptions {
    BackgroundOptions {
        pool: PoolOptions {
            workers: 2,
            batch: 4,
            lease: Duration::from_secs(5),
            max_attempts: 3,
            retry: Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
            idle_poll: Duration::from_millis(20),
            reclaim_every: Duration::from_millis(100),
            ..PoolOptions::default()
        },
        delivery: DeliveryOptions {
            idle_poll: Duration::from_millis(20),
            lease_margin: Duration::from_secs(2),
            ..DeliveryOptions::default()
        },
    }
}

/// Starts the background work; stop it with `.stop(..)`.
pub async fn start(store: &Store, alerting: Alerting, options: BackgroundOptions) -> Background {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let shutdown = CancellationToken::new();
    Background::start(store.clone(), alerting, client, options, &shutdown)
}

// ---- reports ---------------------------------------------------------------------------

fn at(effective: &str) -> Option<Effective> {
    Some(Effective::DateTime(
        DateTime::parse(effective).expect("time"),
    ))
}

/// A numeric LOINC observation with a UCUM unit.
pub fn numeric(id: &str, code: &str, value: &str, unit: &str, effective: &str) -> Observation {
    let mut o = Observation::new("".into(), "".into(), id);
    o.code = CodeableConcept::coded(medgate_core::model::LOINC, code, Some("Test"));
    o.category = vec![CodeableConcept::category("vital-signs")];
    o.effective = at(effective);
    o.value = Value::Quantity(Quantity::ucum(Decimal::parse(value).expect("number"), unit));
    o
}

/// A blood-pressure panel with systolic (`8480-6`) and diastolic (`8462-4`) components.
pub fn blood_pressure(id: &str, systolic: &str, diastolic: &str, effective: &str) -> Observation {
    let mut o = Observation::new("".into(), "".into(), id);
    o.code = CodeableConcept::coded(medgate_core::model::LOINC, "85354-9", Some("BP panel"));
    o.effective = at(effective);
    let part = |code: &str, v: &str| Component {
        code: CodeableConcept::coded(medgate_core::model::LOINC, code, None),
        value: Value::Quantity(Quantity::ucum(Decimal::parse(v).expect("number"), "mm[Hg]")),
        ..Component::default()
    };
    o.components = vec![part("8480-6", systolic), part("8462-4", diastolic)];
    o
}

/// A questionnaire answer with this value.
pub fn answer(id: &str, code: &str, value: Value, effective: &str) -> Observation {
    let mut o = Observation::new("".into(), "".into(), id);
    o.code = CodeableConcept::coded(medgate_core::model::LOINC, code, None);
    o.category = vec![CodeableConcept::category("survey")];
    o.effective = at(effective);
    o.value = value;
    o
}

/// A report of `patient` with these observations.
pub fn report(patient: &str, observations: Vec<Observation>) -> NewReport {
    NewReport {
        patient_id: patient.to_owned(),
        kind: "epro".into(),
        reported_at: Some(DateTime::parse("2026-03-01T08:00:00+08:00").expect("time")),
        serious_adverse_event: false,
        meta: None,
        observations,
    }
}

/// Stores `report` in `source` (as the server would: patient and source set) and returns
/// its receipt.
pub async fn ingest(store: &Store, source: &str, mut report: NewReport) -> String {
    let patient: Arc<str> = report.patient_id.as_str().into();
    for o in &mut report.observations {
        o.patient_id = patient.clone();
        o.source = source.into();
    }
    let outcome = store
        .ingest(IngestBatch {
            partner: "app".into(),
            source: source.into(),
            idempotency: None,
            reports: vec![report],
        })
        .await
        .expect("ingest");
    outcome.receipts().expect("stored")[0].id.clone()
}

/// Stores a medgate report JSON body, read by the real ingest parser; returns the receipts.
pub async fn ingest_json(store: &Store, source: &str, body: &str) -> Vec<String> {
    let ctx = medgate_ingest::IngestContext::new(
        source,
        DateTime::parse("2026-03-02T00:00:00Z").expect("time"),
        "rq1",
    );
    let reports = medgate_ingest::parse("application/json", body.as_bytes(), &ctx)
        .unwrap_or_else(|e| panic!("test body: {e}"));
    let reports = reports
        .into_iter()
        .map(|r| NewReport {
            patient_id: r.patient_id.to_string(),
            kind: r.kind.as_str().into(),
            reported_at: Some(r.reported_at),
            serious_adverse_event: r.serious_adverse_event,
            meta: None,
            observations: r.observations,
        })
        .collect();
    let outcome = store
        .ingest(IngestBatch {
            partner: "app".into(),
            source: source.into(),
            idempotency: None,
            reports,
        })
        .await
        .expect("ingest");
    outcome
        .receipts()
        .expect("stored")
        .iter()
        .map(|r| r.id.clone())
        .collect()
}

/// Waits until every receipt in `source` is processed (panics after `limit`).
pub async fn wait_processed(store: &Store, source: &str, receipts: &[String], limit: Duration) {
    let start = Instant::now();
    for id in receipts {
        loop {
            let status = store
                .receipt(source, id)
                .await
                .expect("receipt")
                .expect("known");
            if status.state == ReportState::Processed {
                break;
            }
            assert!(
                start.elapsed() < limit,
                "receipt not processed within {limit:?}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Waits until `check` holds (panics with `what` after `limit`).
pub async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every alert, newest first.
pub async fn all_alerts(store: &Store) -> Vec<medgate_store::Alert> {
    store
        .alerts(medgate_store::AlertQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("alerts")
}
