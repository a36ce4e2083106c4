//! S3 at the store: concurrent writers each ingesting one ~1 KB report (8–10 items) per call,
//! durability on; accepted reports/s and latency percentiles per `ingest` call.
//!
//! ```sh
//! cargo bench -p medgate-store --bench ingest                          # SQLite in a temp dir
//! STORE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p medgate-store --bench ingest
//! WRITERS=64 SECS=10 PG_COMMITTERS=4 cargo bench -p medgate-store --bench ingest
//! ```
//! PostgreSQL runs in a schema of its own (`medgate_bench_<pid>`), dropped afterwards.
//! Afterwards the bench checks that every acknowledged report is stored (one queued job per
//! report, since no worker runs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use medgate_core::{CodeableConcept, DateTime, Decimal, Effective, Observation, Quantity, Value};
use medgate_store::{IngestBatch, NewReport, Store, StoreOptions};

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The items of a daily diary: vitals (LOINC, UCUM) and questionnaire answers.
const ITEMS: &[(&str, &str, &str)] = &[
    ("8867-4", "Heart rate", "/min"),
    ("8480-6", "Systolic blood pressure", "mm[Hg]"),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]"),
    ("8310-5", "Body temperature", "Cel"),
    ("29463-7", "Body weight", "kg"),
    ("59408-5", "Oxygen saturation", "%"),
    ("9279-1", "Respiratory rate", "/min"),
    ("72514-3", "Pain severity 0-10", ""),
    ("44250-9", "Little interest or pleasure", ""),
    ("28319-2", "Sleep quality", ""),
];

fn item(code: &str, display: &str, unit: &str, n: usize, at: DateTime) -> Observation {
    let mut o = Observation::new("".into(), "".into(), format!("item-{n}"));
    o.code = CodeableConcept::coded(medgate_core::model::LOINC, code, Some(display));
    o.effective = Some(Effective::DateTime(at));
    if unit.is_empty() {
        o.category = vec![CodeableConcept::category("survey")];
        o.value = Value::String(["no", "several days", "2", "good"][n % 4].to_owned());
    } else {
        o.category = vec![CodeableConcept::category("vital-signs")];
        let value = format!("{}.{}", 60 + n % 40, n % 10);
        o.value = Value::Quantity(Quantity::ucum(
            Decimal::parse(&value).expect("number"),
            unit,
        ));
    }
    o
}

/// One report template per variant; the patient is set per request.
fn templates() -> Vec<NewReport> {
    (0..64)
        .map(|v| {
            let at = DateTime::parse(&format!("2026-03-{:02}T07:58:00+08:00", 1 + v % 28))
                .expect("time");
            let n_items = 8 + v % 3;
            NewReport {
                patient_id: String::new(),
                kind: "epro".into(),
                reported_at: Some(at),
                serious_adverse_event: false,
                meta: Some(serde_json::json!({"app": "diary", "device": "phone-17"})),
                observations: ITEMS[..n_items]
                    .iter()
                    .enumerate()
                    .map(|(i, (c, d, u))| item(c, d, u, v * 10 + i, at))
                    .collect(),
            }
        })
        .collect()
}

fn request(templates: &[NewReport], n: usize) -> IngestBatch {
    let mut report = templates[n % templates.len()].clone();
    report.patient_id = format!("P{:06}", n % 10_000);
    let patient: Arc<str> = report.patient_id.as_str().into();
    let source: Arc<str> = "epro".into();
    for o in &mut report.observations {
        o.patient_id = patient.clone();
        o.source = source.clone();
    }
    IngestBatch {
        partner: "app".into(),
        source: "epro".into(),
        idempotency: None,
        reports: vec![report],
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let writers: usize = env("WRITERS", 64);
    let secs: u64 = env("SECS", 10);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::env::var("STORE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}/bench.db", dir.path().display()));
    let postgres = url.starts_with("postgres");
    let schema = format!("medgate_bench_{}", std::process::id());
    let options = StoreOptions {
        pg_schema: postgres.then(|| schema.clone()),
        pg_committers: env("PG_COMMITTERS", StoreOptions::default().pg_committers),
        ..StoreOptions::default()
    };
    let store = Store::open_with(&url, options).await.expect("open store");
    let templates = Arc::new(templates());
    let body_bytes = serde_json::to_string(&serde_json::json!({
        "patient_id": "P000001", "reported_at": "2026-03-01T07:58:00+08:00", "kind": "epro",
        "items": ITEMS.iter().take(9).map(|(c, d, u)| serde_json::json!({
            "code": c, "code_system": "http://loinc.org", "display": d,
            "value": 72.5, "unit": u, "effective": "2026-03-01T07:58:00+08:00"})).collect::<Vec<_>>()
    }))
    .map(|s| s.len())
    .unwrap_or(0);

    // What encoding an observation costs (compact JSON + zstd), on one thread.
    let sample: Vec<Observation> = templates
        .iter()
        .flat_map(|t| t.observations.clone())
        .collect();
    let (mut bytes, mut json_bytes, t) = (0usize, 0usize, Instant::now());
    for _ in 0..200 {
        for o in &sample {
            bytes += medgate_store::encode::encode_body(o)
                .map(|b| b.len())
                .unwrap_or(0);
        }
    }
    let encode_us = t.elapsed().as_secs_f64() * 1e6 / (200 * sample.len()) as f64;
    for o in &sample {
        json_bytes += serde_json::to_vec(o).map(|b| b.len()).unwrap_or(0);
    }
    println!(
        "encode: {encode_us:.2} µs per observation; stored body {:.0} bytes (serde JSON {:.0})",
        bytes as f64 / (200 * sample.len()) as f64,
        json_bytes as f64 / sample.len() as f64
    );

    // Warm-up (1 s), then the measured run.
    let warm = drive(&store, &templates, writers, Duration::from_secs(1), 0).await;
    let written_before = disk_writes();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut latencies = drive(
        &store,
        &templates,
        writers,
        Duration::from_secs(secs),
        1 << 30,
    )
    .await;
    let elapsed = started.elapsed();
    let written = disk_writes().saturating_sub(written_before);
    let cpu = cpu_seconds() - cpu_before;
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    let stats = store.outbox_stats().await.expect("stats");
    let acked = warm.len() + latencies.len();
    println!(
        "backend={} writers={writers} secs={:.1} reports={} ({:.0} reports/s, {:.0} observations/s) \
         latency ms p50={:.2} p99={:.2} max={:.2}; stored jobs={} (acknowledged {acked}); \
         report JSON as a partner sends it ≈ {body_bytes} bytes; this process wrote {:.0} bytes \
         to disk and used {:.1} µs of CPU per report (all threads, user + system)",
        store.backend(),
        elapsed.as_secs_f64(),
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies.len() as f64 * 9.0 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
        stats.queued,
        written as f64 / latencies.len().max(1) as f64,
        cpu * 1e6 / latencies.len().max(1) as f64,
    );
    assert_eq!(
        stats.queued as usize, acked,
        "every acknowledged report is stored"
    );
    store.close().await;
    if postgres {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut c)
                .await;
        }
    }
}

/// Bytes this process caused to be written to storage (Linux `/proc/self/io`), 0 elsewhere.
fn disk_writes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes: ").map(str::to_owned))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time of this process so far (Linux `/proc/self/stat`, clock ticks of 10 ms), 0 elsewhere.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name (which is in parentheses): utime is the 12th.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Runs `writers` tasks for `duration`; returns every call's latency.
async fn drive(
    store: &Store,
    templates: &Arc<Vec<NewReport>>,
    writers: usize,
    duration: Duration,
    offset: usize,
) -> Vec<Duration> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, templates) = (store.clone(), templates.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 14);
            let mut n = offset + w;
            while Instant::now() < deadline {
                let batch = request(&templates, n);
                let t = Instant::now();
                store.ingest(batch).await.expect("ingest");
                latencies.push(t.elapsed());
                n += writers;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer"));
    }
    all
}
