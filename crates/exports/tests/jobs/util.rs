//! The harness: real loopback upstreams (the demo HIS and wearable cloud), a real SQLite
//! store in a temp dir, real plugins built through a core `Registry` and `Plan::build`, and
//! readers that turn every format's files back into comparable rows.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use medgate_core::registry::Plan;
use medgate_core::{rows, Config, Observation, ObservationStore, SourceCommon, Upstream};
use medgate_demo::Workload;
use medgate_exports::{
    ExportEnv, ExportRequest, Exports, Grant, JobReport, JobStatus, Manifest, Patients,
    RunnerOptions, Snapshot,
};
use medgate_pipeline::{Pipeline, Transforms};
use medgate_store::{ExportJob, Store};
use medgate_upstream::HttpUpstream;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Hex key of the `research` profile (32 bytes).
pub const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// The partner every test job belongs to.
pub const PARTNER: &str = "lab";

/// Every format, in the order tests go through them.
pub const FORMATS: [&str; 6] = ["csv", "json", "ndjson", "xlsx", "fhir-ndjson", "parquet"];

/// Serves `router` on 127.0.0.1:0.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// The HIS router, answering each request only after `delay`.
pub fn slow_his(workload: Arc<Workload>, delay: Duration) -> Router {
    medgate_demo::his_router(workload).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            tokio::time::sleep(delay).await;
            next.run(req).await
        },
    ))
}

/// The gateway as the jobs see it; records every job report.
pub struct TestEnv {
    pub snapshot: Mutex<Arc<Snapshot>>,
    pub reports: Mutex<Vec<JobReport>>,
}

#[async_trait]
impl ExportEnv for TestEnv {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.lock().unwrap().clone()
    }

    async fn job_ended(&self, report: &JobReport) {
        self.reports.lock().unwrap().push(report.clone());
    }
}

impl TestEnv {
    /// Changes the snapshot (as a reload would).
    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut slot = self.snapshot.lock().unwrap();
        let mut next = (**slot).clone();
        f(&mut next);
        *slot = Arc::new(next);
    }

    pub fn reports(&self) -> Vec<JobReport> {
        self.reports.lock().unwrap().clone()
    }
}

/// What a harness serves.
pub struct Setup {
    pub patients: u32,
    pub observations: u32,
    /// Delay of the `slow` source's upstream per request.
    pub delay: Duration,
    pub max_file_bytes: u64,
    pub concurrency: usize,
    pub fetch_concurrency: usize,
    pub options: RunnerOptions,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            patients: 20,
            observations: 12,
            delay: Duration::from_millis(40),
            max_file_bytes: 1 << 30,
            concurrency: 2,
            fetch_concurrency: 4,
            options: fast_options("w1"),
        }
    }
}

/// Runner options with short intervals (tests wait on them).
pub fn fast_options(worker: &str) -> RunnerOptions {
    RunnerOptions {
        worker: worker.to_owned(),
        lease: Duration::from_secs(2),
        heartbeat: Duration::from_millis(100),
        poll: Duration::from_millis(100),
        sweep: Duration::from_millis(200),
        max_attempts: 3,
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub env: Arc<TestEnv>,
    pub exports: Exports,
    pub workload: Arc<Workload>,
    pub shutdown: CancellationToken,
}

/// Upstreams, store, catalog and an `Exports` over them (not started).
pub async fn harness(setup: Setup) -> Harness {
    let workload = Arc::new(Workload {
        patients: setup.patients,
        observations: setup.observations,
        ..Workload::default()
    });
    let his = serve(medgate_demo::his_router(workload.clone())).await;
    let wearable = serve(medgate_demo::wearable_router(workload.clone())).await;
    let slow = serve(slow_his(workload.clone(), setup.delay)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cohort_file = dir.path().join("study.txt");
    std::fs::write(
        &cohort_file,
        "# study cohort\nP000003\n\nP000004\nP000002\n",
    )
    .unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
export_concurrency = {fetch}
request_timeout_ms = 10000

[[sources]]
name = "his"
kind = "his-xml"
url = "http://{his}/fhir/Observation?patient={{patient_id}}"
format = "fhir-r4"

[[sources]]
name = "wearable"
kind = "wearable-json"
url = "http://{wearable}/omh/{{patient_id}}"
format = "openmhealth"

[[sources]]
name = "slow"
kind = "his-xml"
url = "http://{slow}/fhir/Observation?patient={{patient_id}}"
format = "fhir-r4"
timeout_ms = 10000
deadline_ms = 10000

[[sources]]
name = "narrow"
kind = "his-xml"
url = "http://{slow}/fhir/Observation?patient={{patient_id}}"
format = "fhir-r4"
max_concurrency = 1

[[sources]]
name = "epro"
kind = "store"

[exporters]
enabled = ["csv", "json", "ndjson", "xlsx", "fhir-ndjson", "parquet"]

[[profiles]]
name = "research"
pseudonymize_patient_ids = true
pseudonym_key_env = "TEST_PSEUDONYM_KEY"
date_shift_max_days = 364

[[profiles]]
name = "coarse"
truncate_to = "month"

[[cohorts]]
name = "first-three"
patients = ["P000001", "P000002", "P000003"]
sources = ["his"]

[[cohorts]]
name = "study"
patients = ["P000001"]
patients_file = {cohort_file:?}

[exports]
dir = {exports:?}
concurrency = {concurrency}
"#,
        fetch = setup.fetch_concurrency,
        concurrency = setup.concurrency,
        exports = dir.path().join("exports").display().to_string(),
        cohort_file = cohort_file.display().to_string(),
    );
    let config = Config::from_toml(&text).expect("config parses");
    let plan = registry()
        .validate(config)
        .unwrap_or_else(|e| panic!("config invalid: {e}"));
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("store.db").display()
    ))
    .await
    .expect("store");
    let shutdown = CancellationToken::new();
    let mut snapshot = snapshot(&plan, &store, &shutdown);
    snapshot.exports.max_file_bytes = setup.max_file_bytes;
    snapshot.exports.expire_after_s = 3600;
    let env = Arc::new(TestEnv {
        snapshot: Mutex::new(Arc::new(snapshot)),
        reports: Mutex::new(Vec::new()),
    });
    let exports = Exports::new(store.clone(), env.clone(), setup.options);
    Harness {
        dir,
        store,
        env,
        exports,
        workload,
        shutdown,
    }
}

/// The plugins a gateway registers (the server's list).
pub fn registry() -> medgate_core::Registry {
    let mut r = medgate_core::Registry::new();
    medgate_source_his::register(&mut r);
    medgate_source_wearable::register(&mut r);
    medgate_source_store::register(&mut r);
    medgate_export_csv::register(&mut r);
    medgate_export_json::register(&mut r);
    medgate_export_xlsx::register(&mut r);
    medgate_export_parquet::register(&mut r);
    medgate_export_fhir_ndjson::register(&mut r);
    r
}

fn snapshot(plan: &Plan, store: &Store, shutdown: &CancellationToken) -> Snapshot {
    let client = medgate_upstream::shared_client().expect("client");
    let upstream_for = |common: &SourceCommon| -> Arc<dyn Upstream> {
        HttpUpstream::for_source(common, &client).expect("upstream")
    };
    let port: Arc<dyn ObservationStore> = Arc::new(store.clone());
    let catalog = plan
        .build(&upstream_for, Some(port.clone()), shutdown)
        .expect("catalog");
    let transforms = Transforms::build(&catalog, &Default::default()).expect("transforms");
    let pipeline = Pipeline::new(Arc::new(transforms), shutdown.clone());
    let profiles = medgate_deid::Profiles::build(&plan.config.profiles, |var| {
        (var == "TEST_PSEUDONYM_KEY").then(|| KEY_HEX.into())
    })
    .expect("profiles");
    Snapshot::new(&catalog, pipeline, profiles, &plan.config, Some(port))
}

impl Harness {
    /// Kicks off `request` as the test partner (everything granted).
    pub async fn kick_off(&self, request: ExportRequest) -> ExportJob {
        self.exports
            .kick_off(
                &Grant {
                    partner: PARTNER,
                    ..Grant::unrestricted()
                },
                request,
                "http://gw.test/v1/exports",
            )
            .await
            .expect("kick-off accepted")
            .job
    }

    /// Waits (at most 60 s) until job `id` is no longer queued or running.
    pub async fn finished(&self, id: &str) -> JobStatus {
        for _ in 0..1200 {
            let status = self
                .exports
                .status(PARTNER, id, "http://gw.test")
                .await
                .expect("status");
            if !matches!(status, JobStatus::Queued { .. } | JobStatus::Running { .. }) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish in 60 s");
    }

    /// Waits for the manifest of a job that must complete.
    pub async fn manifest(&self, id: &str) -> Manifest {
        match self.finished(id).await {
            JobStatus::Completed { manifest, .. } => *manifest,
            other => panic!("job {id} did not complete: {other:?}"),
        }
    }

    /// The bytes of file `n` (1-based) of job `id`, checked against its recorded size and
    /// SHA-256.
    pub async fn download(&self, id: &str, n: u32) -> Vec<u8> {
        use sha2::Digest;
        use tokio::io::AsyncReadExt;
        let mut d = self
            .exports
            .open_file(PARTNER, id, n)
            .await
            .expect("open file");
        let mut bytes = Vec::new();
        d.file.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(bytes.len() as u64, d.size, "size of file {n}");
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            d.sha256,
            "sha256 of file {n}"
        );
        bytes
    }

    /// The exports directory.
    pub fn exports_dir(&self) -> PathBuf {
        self.dir.path().join("exports")
    }
}

/// A request for `patients` of the workload from `sources` in `format`.
pub fn request(sources: &[&str], patients: &[&str], format: &str) -> ExportRequest {
    ExportRequest {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        patients: Some(Patients::List(
            patients.iter().map(|p| p.to_string()).collect(),
        )),
        cohort: None,
        format: format.to_owned(),
        profile: None,
        since: None,
        codes: Vec::new(),
    }
}

/// `P000001` … for the first `n` patients.
pub fn ids(n: u32) -> Vec<String> {
    (0..n).map(medgate_demo::patient_id).collect()
}

/// The observations a run of `sources` over patient indexes `patients` must produce, in
/// output order.
pub fn expected(w: &Workload, sources: &[&str], patients: &[u32]) -> Vec<Observation> {
    let mut out = Vec::new();
    for &p in patients {
        for &s in sources {
            for j in 0..w.observations {
                let o = match s {
                    "wearable" => w.wearable_observation(p, j),
                    other => {
                        let mut o = w.observation(p, j);
                        o.source = Arc::from(other);
                        o
                    }
                };
                out.push(o);
            }
        }
    }
    out
}

/// Compared columns: patient_id, source, id, code, value, unit, effective.
pub type Cells = [String; 7];
const COLUMNS: [usize; 7] = [0, 1, 2, 5, 7, 8, 9];

/// The compared cells of `observations`, as the tabular projection writes them.
pub fn expected_cells(observations: &[Observation], format: &str) -> Vec<Cells> {
    observations
        .iter()
        .flat_map(|o| {
            rows(o)
                .map(|row| {
                    let cells: Cells = COLUMNS.map(|c| row.get(c).as_text().into_owned());
                    if format == "xlsx" {
                        xlsx_normal(cells)
                    } else {
                        cells
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// XLSX holds numbers as doubles and times as wall-clock date-times.
fn xlsx_normal(mut cells: Cells) -> Cells {
    if let Ok(f) = cells[4].parse::<f64>() {
        cells[4] = f.to_string();
    }
    if cells[6].len() > 19 {
        cells[6].truncate(19);
    }
    cells
}

/// Reads a file of `format` back into compared cells.
pub fn read_cells(format: &str, bytes: &[u8]) -> Vec<Cells> {
    match format {
        "csv" => read_csv(bytes),
        "json" => {
            let rows: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_slice(bytes).expect("a JSON array");
            rows.iter().map(flat_cells).collect()
        }
        "ndjson" => ndjson(bytes)
            .iter()
            .map(|v| flat_cells(v.as_object().unwrap()))
            .collect(),
        "fhir-ndjson" => ndjson(bytes).iter().map(fhir_cells).collect(),
        "xlsx" => read_xlsx(bytes),
        "parquet" => read_parquet(bytes),
        other => panic!("no reader for {other}"),
    }
}

pub fn ndjson(bytes: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "NDJSON ends with a newline"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn read_csv(bytes: &[u8]) -> Vec<Cells> {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader.headers().expect("header").clone();
    let names = [
        "patient_id",
        "source",
        "id",
        "code",
        "value",
        "unit",
        "effective",
    ];
    let at: Vec<usize> = names
        .iter()
        .map(|n| headers.iter().position(|h| h == *n).expect("column"))
        .collect();
    reader
        .records()
        .map(|r| {
            let r = r.expect("a CSV record");
            std::array::from_fn(|i| r[at[i]].to_owned())
        })
        .collect()
}

fn text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn flat_cells(o: &serde_json::Map<String, serde_json::Value>) -> Cells {
    [
        "patient_id",
        "source",
        "id",
        "code",
        "value",
        "unit",
        "effective",
    ]
    .map(|k| text(o.get(k)))
}

fn fhir_cells(o: &serde_json::Value) -> Cells {
    assert_eq!(o["resourceType"], "Observation");
    let subject = &o["subject"];
    let patient = match subject["reference"].as_str() {
        Some(r) => r.trim_start_matches("Patient/").to_owned(),
        None => text(Some(&subject["identifier"]["value"])),
    };
    let source = text(Some(&o["meta"]["source"]))
        .trim_start_matches("urn:medgate:source:")
        .to_owned();
    let q = &o["valueQuantity"];
    let unit = match q.get("code") {
        Some(c) => text(Some(c)),
        None => text(q.get("unit")),
    };
    let effective = match o.get("effectiveDateTime") {
        Some(t) => text(Some(t)),
        None => text(Some(&o["effectivePeriod"]["start"])),
    };
    [
        patient,
        source,
        text(Some(&o["identifier"][0]["value"])),
        text(Some(&o["code"]["coding"][0]["code"])),
        text(q.get("value")),
        unit,
        effective,
    ]
}

fn read_xlsx(bytes: &[u8]) -> Vec<Cells> {
    use calamine::{Data, Reader, Xlsx};
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec()))
        .expect("a valid xlsx");
    let range = book
        .worksheet_range("observations")
        .expect("sheet observations");
    let cell = |d: &Data| -> String {
        match d {
            Data::Empty => String::new(),
            Data::String(s) => s.clone(),
            Data::Float(f) => f.to_string(),
            Data::Int(i) => (*i as f64).to_string(),
            Data::DateTime(dt) => format!("{:?}", dt.as_datetime().expect("a date-time")),
            other => format!("{other}"),
        }
    };
    range
        .rows()
        .skip(1)
        .map(|r| COLUMNS.map(|c| cell(&r[c])))
        .collect()
}

fn read_parquet(bytes: &[u8]) -> Vec<Cells> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes.to_vec()))
        .expect("a valid parquet file")
        .build()
        .expect("reader");
    let names = [
        "patient_id",
        "source",
        "id",
        "code",
        "value_text",
        "unit",
        "effective_text",
    ];
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.expect("a record batch");
        let columns: Vec<_> = names
            .iter()
            .map(|n| {
                batch
                    .column_by_name(n)
                    .expect("column")
                    .as_string::<i32>()
                    .clone()
            })
            .collect();
        for row in 0..batch.num_rows() {
            out.push(std::array::from_fn(|i| {
                let c = &columns[i];
                if c.is_null(row) {
                    String::new()
                } else {
                    c.value(row).to_owned()
                }
            }));
        }
    }
    out
}

/// Every job file on disk under `dir`, relative paths.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Counts of each item.
pub fn counts<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}
