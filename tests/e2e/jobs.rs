//! Export jobs (FHIR Bulk Data semantics) end to end, over HTTP only: the real gateway on
//! loopback in front of the demo HIS and wearable cloud (one HIS slowed down), a SQLite store
//! and an exports directory in a temp dir. Kick-off, progress, manifest, downloads read back
//! in every format and compared row for row with the synchronous API, the FHIR kick-offs,
//! access between partners, a forced de-identification profile, cancel, expiry, a restart in
//! the middle of a job, the audit trail and split files.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medgate_core::COLUMNS;
use medgate_demo::Workload;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::util::{
    audit_entries, header, serve_router, start_stoppable, tempdir, Gateway, Stop, KEY,
};

/// Partners besides `test` (whose key is [`KEY`]).
const OTHER_KEY: &str = "other-key-0123456789";
const NOJOBS_KEY: &str = "nojobs-key-0123456789";
const FORCED_KEY: &str = "forced-key-0123456789";

const PSEUDONYM_ENV: &str = "MEDGATE_E2E_JOBS_PSEUDONYM_KEY";
const PSEUDONYM_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

const FORMATS: [&str; 6] = ["csv", "json", "ndjson", "xlsx", "fhir-ndjson", "parquet"];

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// What a test's gateway fronts.
struct Setup {
    patients: u32,
    observations: u32,
    /// Delay of the `slow` source's upstream per request (it admits 2 requests at once).
    delay: Duration,
    /// More `[exports]` keys.
    exports: &'static str,
    /// Applied to the validated config (values below a key's production minimum).
    tune: fn(&mut medgate_core::Config),
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            patients: 30,
            observations: 12,
            delay: Duration::from_millis(250),
            exports: "",
            tune: |_| {},
        }
    }
}

/// A gateway with export jobs, and what restarting it needs.
struct Jobs {
    gw: Gateway,
    stop: Option<Stop>,
    dir: PathBuf,
    config: String,
    workload: Arc<Workload>,
    tune: fn(&mut medgate_core::Config),
}

/// The HIS answering each request only after `delay`.
fn slow_his(workload: Arc<Workload>, delay: Duration) -> axum::Router {
    medgate_demo::his_router(workload).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            tokio::time::sleep(delay).await;
            next.run(req).await
        },
    ))
}

impl Jobs {
    async fn start(setup: Setup) -> Jobs {
        // SAFETY: set before any gateway reads it; every test sets the same value.
        unsafe { std::env::set_var(PSEUDONYM_ENV, PSEUDONYM_KEY) };
        let workload = Arc::new(Workload {
            patients: setup.patients,
            observations: setup.observations,
            ..Workload::default()
        });
        let his = serve_router(medgate_demo::his_router(workload.clone())).await;
        let wearable = serve_router(medgate_demo::wearable_router(workload.clone())).await;
        let slow = serve_router(slow_his(workload.clone(), setup.delay)).await;
        let dir = tempdir();
        let study = dir.join("study.txt");
        std::fs::write(&study, "# the study\nP000005\n\nP000002\nP000005\n").expect("cohort file");
        let partner = |name: &str, key: &str, extra: &str| {
            format!(
                "[[partners]]\nname = \"{name}\"\nkey_sha256 = \"{}\"\nsources = [\"*\"]\n\
                 formats = [\"*\"]\ningest = [\"*\"]\nrate_per_second = 100000\nburst = 100000\n\
                 max_concurrency = 1000\n{extra}\n",
                medgate::access::sha256_hex(key)
            )
        };
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
max_export_patients = 50
shutdown_grace_ms = 0

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
max_concurrency = 2

[[sources]]
name = "epro"
kind = "store"

[exporters]
enabled = ["csv", "json", "ndjson", "xlsx", "fhir-ndjson", "parquet"]

[[profiles]]
name = "research"
pseudonymize_patient_ids = true
pseudonym_key_env = "{PSEUDONYM_ENV}"
date_shift_max_days = 364

[[cohorts]]
name = "first-three"
patients = ["P000001", "P000002", "P000003"]
sources = ["his"]

[[cohorts]]
name = "study"
patients = ["P000004"]
patients_file = {study:?}
sources = ["his", "wearable"]

[exports]
dir = {exports:?}
concurrency = 8
{exports_extra}

{test}{other}{nojobs}{forced}"#,
            study = study.display().to_string(),
            exports = dir.join("exports").display().to_string(),
            exports_extra = setup.exports,
            test = partner("test", KEY, "export_jobs = true\nread_alerts = true"),
            other = partner("other", OTHER_KEY, "export_jobs = true"),
            nojobs = partner("nojobs", NOJOBS_KEY, ""),
            forced = partner(
                "forced",
                FORCED_KEY,
                "export_jobs = true\nprofile = \"research\""
            ),
        );
        let (gw, stop) = start_stoppable(&config, workload.clone(), &dir, setup.tune).await;
        Jobs {
            gw,
            stop: Some(stop),
            dir,
            config,
            workload,
            tune: setup.tune,
        }
    }

    /// Stops the gateway as SIGTERM would and starts a new one on the same directory, store,
    /// audit trail and upstreams.
    async fn restart(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.stop().await;
        }
        let (gw, stop) =
            start_stoppable(&self.config, self.workload.clone(), &self.dir, self.tune).await;
        self.gw = gw;
        self.stop = Some(stop);
    }

    fn exports_dir(&self) -> PathBuf {
        self.dir.join("exports")
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.gw.base)
        }
    }

    async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        client()
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request to the gateway")
    }

    async fn delete(&self, key: &str, path: &str) -> reqwest::Response {
        client()
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request to the gateway")
    }

    /// `POST /v1/exports` with `Prefer: respond-async`.
    async fn post(&self, key: &str, body: &Value) -> reqwest::Response {
        client()
            .post(self.url("/v1/exports"))
            .bearer_auth(key)
            .header("prefer", "respond-async")
            .json(body)
            .send()
            .await
            .expect("request to the gateway")
    }

    /// Kicks off `body` as `key`'s partner; asserts 202 and returns the status URL's path.
    async fn kick_off(&self, key: &str, body: Value) -> String {
        let response = self.post(key, &body).await;
        accepted(response).await
    }

    /// Polls the status URL until the job is complete; asserts every 202 on the way.
    async fn finish(&self, key: &str, location: &str) -> Finished {
        let started = Instant::now();
        let mut progress = Vec::new();
        loop {
            let response = self.get(key, location).await;
            match response.status().as_u16() {
                202 => {
                    let retry_after = header(&response, "retry-after");
                    let seconds: u64 = retry_after
                        .parse()
                        .unwrap_or_else(|_| panic!("Retry-After `{retry_after}` is delta-seconds"));
                    assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
                    let text = header(&response, "x-progress");
                    progress.push(Progress::parse(&text));
                }
                200 => {
                    assert_eq!(header(&response, "content-type"), "application/json");
                    let expires = header(&response, "expires");
                    let manifest: Value = response.json().await.expect("manifest JSON");
                    return Finished {
                        manifest,
                        expires,
                        progress,
                    };
                }
                status => panic!(
                    "status {status} for {location}: {}",
                    response.text().await.unwrap_or_default()
                ),
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "job {location} did not complete in 20 s; last progress {:?}",
                progress.last()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Downloads a manifest entry with `key`, checking its headers and its SHA-256.
    async fn download(&self, key: &str, entry: &Value) -> Vec<u8> {
        let url = entry["url"].as_str().expect("url");
        let response = self.get(key, url).await;
        assert_eq!(response.status(), 200, "{url}");
        let ext = &entry["extension"];
        assert_eq!(
            header(&response, "content-type"),
            ext["contentType"],
            "{url}"
        );
        assert_eq!(header(&response, "content-length"), ext["size"].to_string());
        assert_eq!(
            header(&response, "etag"),
            format!("\"{}\"", text(Some(&ext["sha256"])))
        );
        assert!(
            header(&response, "content-disposition").starts_with("attachment; filename=\"medgate-"),
            "{url}"
        );
        let bytes = response.bytes().await.expect("whole file").to_vec();
        assert_eq!(bytes.len() as u64, ext["size"].as_u64().unwrap(), "{url}");
        assert_eq!(sha256(&bytes), ext["sha256"], "SHA-256 of {url}");
        bytes
    }

    /// The flat rows `/v1/data/{source}` serves for each patient and source, in that order.
    async fn sync_rows(&self, sources: &[&str], patients: &[String]) -> Vec<Map<String, Value>> {
        let mut rows = Vec::new();
        for p in patients {
            for s in sources {
                let response = self.get(KEY, &format!("/v1/data/{s}?patient_id={p}")).await;
                assert_eq!(response.status(), 200, "/v1/data/{s} for {p}");
                let body: Value = response.json().await.expect("JSON");
                for row in body["observations"].as_array().expect("observations") {
                    rows.push(row.as_object().expect("a row").clone());
                }
            }
        }
        rows
    }

    /// The Observations `/fhir/Observation` serves for each patient and source, in order.
    async fn sync_resources(&self, sources: &[&str], patients: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        for p in patients {
            for s in sources {
                let response = self
                    .get(KEY, &format!("/fhir/Observation?patient={p}&_source={s}"))
                    .await;
                assert_eq!(response.status(), 200, "/fhir/Observation for {p} in {s}");
                let bundle: Value = response.json().await.expect("Bundle");
                for entry in bundle["entry"].as_array().expect("entries") {
                    if entry["resource"]["resourceType"] == "Observation" {
                        out.push(entry["resource"].clone());
                    }
                }
            }
        }
        out
    }

    /// Waits (at most `within`) until `path` is gone from disk.
    async fn gone(&self, path: &Path, within: Duration) -> bool {
        let started = Instant::now();
        while path.exists() {
            if started.elapsed() > within {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Polls the job's status until its `X-Progress` satisfies `ready` (the job runs).
    async fn running_until(&self, location: &str, ready: impl Fn(&Progress) -> bool) -> Progress {
        let started = Instant::now();
        loop {
            let response = self.get(KEY, location).await;
            assert_eq!(response.status(), 202, "{location} still runs");
            let p = Progress::parse(&header(&response, "x-progress"));
            if ready(&p) {
                return p;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "stuck at {p:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Asserts a kick-off's 202 and returns its `Content-Location`.
async fn accepted(response: reqwest::Response) -> String {
    let status = response.status();
    let location = header(&response, "content-location");
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 202, "kick-off refused: {body}");
    let id = location
        .strip_prefix("/v1/exports/")
        .unwrap_or_else(|| panic!("Content-Location `{location}`"));
    assert!(uuid_like(id), "job id `{id}`");
    location
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn job_id(location: &str) -> &str {
    location.rsplit('/').next().expect("id")
}

/// A completed job's status answer.
struct Finished {
    manifest: Value,
    expires: String,
    /// `X-Progress` of every 202 seen before it.
    progress: Vec<Progress>,
}

impl Finished {
    fn output(&self) -> &Vec<Value> {
        self.manifest["output"].as_array().expect("output")
    }
}

/// `X-Progress`: `queued`, or `{done}/{total} patients, {failed} failed, {rows} rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Queued,
    Running {
        done: u64,
        total: u64,
        failed: u64,
        rows: u64,
    },
}

impl Progress {
    fn parse(text: &str) -> Progress {
        if text == "queued" {
            return Progress::Queued;
        }
        fn bad<T>(text: &str) -> T {
            panic!("X-Progress `{text}` does not follow the grammar")
        }
        let (patients, rest) = text.split_once(" patients, ").unwrap_or_else(|| bad(text));
        let (done, total) = patients.split_once('/').unwrap_or_else(|| bad(text));
        let (failed, rest) = rest.split_once(" failed, ").unwrap_or_else(|| bad(text));
        let rows = rest.strip_suffix(" rows").unwrap_or_else(|| bad(text));
        let n = |s: &str| s.parse::<u64>().unwrap_or_else(|_| bad(text));
        let p = Progress::Running {
            done: n(done),
            total: n(total),
            failed: n(failed),
            rows: n(rows),
        };
        if let Progress::Running {
            done,
            total,
            failed,
            ..
        } = p
        {
            assert!(done <= total && failed <= done, "X-Progress `{text}`");
        }
        p
    }

    fn done(&self) -> u64 {
        match self {
            Progress::Queued => 0,
            Progress::Running { done, .. } => *done,
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn ids(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(medgate_demo::patient_id).collect()
}

/// A flat JSON cell as CSV writes it.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The 27 cells of a flat row, as text.
fn cells(row: &Map<String, Value>) -> Vec<String> {
    COLUMNS.iter().map(|c| text(row.get(*c))).collect()
}

/// `rows` with their `source` set to `source` (the slow source serves the HIS's data).
fn as_source(rows: Vec<Map<String, Value>>, source: &str) -> Vec<Map<String, Value>> {
    rows.into_iter()
        .map(|mut r| {
            r.insert("source".into(), json!(source));
            r
        })
        .collect()
}

fn read_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_reader(bytes);
    assert_eq!(
        reader
            .headers()
            .expect("a header")
            .iter()
            .collect::<Vec<_>>(),
        COLUMNS.to_vec()
    );
    reader
        .records()
        .map(|r| r.expect("a CSV record").iter().map(String::from).collect())
        .collect()
}

fn read_ndjson(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "NDJSON ends with a newline"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// Asserts that `bytes` in `format` hold exactly `want` (flat rows) in order.
fn assert_rows(format: &str, bytes: &[u8], want: &[Map<String, Value>]) {
    let want_cells: Vec<Vec<String>> = want.iter().map(cells).collect();
    match format {
        "csv" => assert_eq!(read_csv(bytes), want_cells),
        "json" => {
            let got: Value = serde_json::from_slice(bytes).expect("a JSON array");
            let want: Vec<Value> = want.iter().cloned().map(Value::Object).collect();
            assert_eq!(got, Value::Array(want));
        }
        "ndjson" => {
            let want: Vec<Value> = want.iter().cloned().map(Value::Object).collect();
            assert_eq!(read_ndjson(bytes), want);
        }
        "xlsx" => assert_xlsx(bytes, &want_cells),
        "parquet" => assert_eq!(read_parquet(bytes), want_cells),
        other => panic!("no reader for {other}"),
    }
}

/// Every cell of the workbook against the CSV text of the same cell: strings equal, numbers
/// equal as doubles, date-times showing the written wall-clock time.
fn assert_xlsx(bytes: &[u8], want: &[Vec<String>]) {
    use calamine::{Data, Reader, Xlsx};
    let mut book: Xlsx<_> =
        calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).expect("a valid xlsx");
    let range = book
        .worksheet_range("observations")
        .expect("sheet observations");
    let mut rows = range.rows();
    let head: Vec<String> = rows
        .next()
        .expect("header")
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(head, COLUMNS.to_vec());
    let rows: Vec<_> = rows.collect();
    assert_eq!(rows.len(), want.len(), "xlsx rows");
    for (r, (row, want)) in rows.iter().zip(want).enumerate() {
        for (c, want) in want.iter().enumerate() {
            let cell = row.get(c).unwrap_or(&Data::Empty);
            let ok = match cell {
                Data::Empty => want.is_empty(),
                Data::String(s) => s == want,
                Data::Float(f) => want.parse::<f64>().ok() == Some(*f),
                Data::Int(i) => want.parse::<f64>().ok() == Some(*i as f64),
                Data::Bool(b) => *want == b.to_string(),
                Data::DateTime(dt) => {
                    let shown = format!("{:?}", dt.as_datetime().expect("a date-time"));
                    want.len() >= 19 && want[..19] == shown[..19.min(shown.len())]
                }
                _ => false,
            };
            assert!(
                ok,
                "xlsx row {r} column {}: {cell:?} vs {want:?}",
                COLUMNS[c]
            );
        }
    }
}

/// The 27 columns as text: a typed column's `*_text` companion where it has one.
fn read_parquet(bytes: &[u8]) -> Vec<Vec<String>> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes.to_vec()))
        .expect("a valid parquet file")
        .build()
        .expect("reader");
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.expect("a record batch");
        let columns: Vec<_> = COLUMNS
            .iter()
            .map(|name| {
                let column = batch
                    .column_by_name(&format!("{name}_text"))
                    .or_else(|| batch.column_by_name(name))
                    .unwrap_or_else(|| panic!("column {name}"));
                column.as_string::<i32>().clone()
            })
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| {
                        if c.is_null(row) {
                            String::new()
                        } else {
                            c.value(row).to_owned()
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

fn manifest_entry_checks(j: &Jobs, location: &str, finished: &Finished, request: &str) {
    let m = &finished.manifest;
    let id = job_id(location);
    let at: jiff::Timestamp = m["transactionTime"]
        .as_str()
        .expect("transactionTime")
        .parse()
        .expect("transactionTime is RFC 3339");
    assert!(at <= jiff::Timestamp::now(), "{at}");
    assert_eq!(m["request"], format!("{}{request}", j.gw.base));
    assert_eq!(m["requiresAccessToken"], true);
    assert!(m["error"].is_array(), "{m}");
    for (i, entry) in finished.output().iter().enumerate() {
        assert_eq!(entry["type"], "Observation");
        assert_eq!(
            entry["url"],
            format!("{}/v1/exports/{id}/files/{}", j.gw.base, i + 1)
        );
        assert!(entry["count"].as_u64().unwrap() > 0, "{entry}");
    }
    // Expires: an IMF-fixdate a day ahead (the default expire_after_s).
    let expires = jiff::fmt::rfc2822::parse(&finished.expires)
        .unwrap_or_else(|e| panic!("Expires `{}`: {e}", finished.expires))
        .timestamp();
    assert!(finished.expires.ends_with(" GMT"), "{}", finished.expires);
    let ahead = expires.duration_since(jiff::Timestamp::now());
    assert!(
        ahead > jiff::SignedDuration::from_hours(23)
            && ahead <= jiff::SignedDuration::from_hours(24),
        "Expires {} is {ahead:?} ahead",
        finished.expires
    );
}

fn rows_in(finished: &Finished) -> u64 {
    finished
        .output()
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .sum()
}

/// The audit entries of job `id` (kick-off, end, downloads, delete), waiting (at most 5 s)
/// until `ready` holds for them: a job's end is recorded just after it shows as complete.
async fn job_audit(gw: &Gateway, id: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let entries: Vec<Value> = audit_entries(gw)
            .into_iter()
            .filter(|e| e["details"]["job"] == id)
            .collect();
        if ready(&entries) {
            return entries;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "audit entries of job {id}: {entries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ended(entries: &[Value]) -> Vec<&Value> {
    entries
        .iter()
        .filter(|e| e["route"] == "export-job")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_shows_progress_then_its_manifest_and_every_format_reads_back_row_for_row() {
    let j = Jobs::start(Setup::default()).await;
    // A slow job (16 patients, 2 at a time, 250 ms each: 2 s) to watch its progress.
    let slow_patients = ids(0..16);
    let slow = j
        .kick_off(
            KEY,
            json!({"sources": ["slow"], "patients": slow_patients, "format": "csv"}),
        )
        .await;
    // Every format over two sources, patients out of order.
    let patients: Vec<String> = ["P000003", "P000001", "P000007"].map(String::from).to_vec();
    let mut jobs = Vec::new();
    for format in FORMATS {
        let body = json!({"sources": ["his", "wearable"], "patients": patients, "format": format});
        jobs.push((format, j.kick_off(KEY, body).await));
    }

    let finished = j.finish(KEY, &slow).await;
    let running: Vec<(u64, u64, u64)> = finished
        .progress
        .iter()
        .filter_map(|p| match *p {
            Progress::Running {
                done, total, rows, ..
            } => Some((done, total, rows)),
            Progress::Queued => None,
        })
        .collect();
    assert!(
        !running.is_empty(),
        "no running status seen: {:?}",
        finished.progress
    );
    assert!(
        running.iter().all(|&(_, total, _)| total == 16),
        "{running:?}"
    );
    assert!(
        running
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].2 <= w[1].2),
        "progress never goes back: {running:?}"
    );
    assert!(
        running
            .iter()
            .any(|&(done, _, rows)| done > 0 && done < 16 && rows < 16 * 12),
        "a mid-job progress was reported: {running:?}"
    );
    manifest_entry_checks(&j, &slow, &finished, "/v1/exports");
    assert_eq!(finished.manifest["error"], json!([]));
    let medgate = &finished.manifest["extension"]["medgate"];
    assert_eq!(medgate["format"], "csv");
    assert_eq!(medgate["sources"], json!(["slow"]));
    assert_eq!(medgate["patients"], 16);
    assert_eq!(medgate["patientsFailed"], 0);
    assert_eq!(medgate["rows"], 16 * 12);
    assert_eq!(rows_in(&finished), 16 * 12);
    let mut bytes = Vec::new();
    for entry in finished.output() {
        bytes.extend(read_csv(&j.download(KEY, entry).await));
    }
    let want = as_source(j.sync_rows(&["his"], &slow_patients).await, "slow");
    assert_eq!(bytes, want.iter().map(cells).collect::<Vec<_>>());

    let want = j.sync_rows(&["his", "wearable"], &patients).await;
    assert_eq!(want.len(), 2 * 3 * 12);
    let resources = j.sync_resources(&["his", "wearable"], &patients).await;
    assert_eq!(resources.len(), want.len());
    for (format, location) in &jobs {
        let finished = j.finish(KEY, location).await;
        manifest_entry_checks(&j, location, &finished, "/v1/exports");
        assert_eq!(finished.output().len(), 1, "{format}: one file");
        assert_eq!(rows_in(&finished), want.len() as u64, "{format}");
        let entry = &finished.output()[0];
        let bytes = j.download(KEY, entry).await;
        match *format {
            "fhir-ndjson" => {
                assert_eq!(entry["extension"]["contentType"], "application/fhir+ndjson");
                assert_eq!(read_ndjson(&bytes), resources, "fhir-ndjson lines");
            }
            "xlsx" => {
                assert_eq!(entry["extension"]["contentType"], XLSX);
                assert_rows(format, &bytes, &want);
            }
            _ => assert_rows(format, &bytes, &want),
        }
    }

    // A patient no source knows is recorded as an OperationOutcome; the job goes on.
    let mixed: Vec<String> = ["P000002", "P999999", "P000004"].map(String::from).to_vec();
    let location = j
        .kick_off(
            KEY,
            json!({"sources": ["his"], "patients": mixed, "format": "ndjson"}),
        )
        .await;
    let finished = j.finish(KEY, &location).await;
    let medgate = &finished.manifest["extension"]["medgate"];
    assert_eq!(medgate["patients"], 3);
    assert_eq!(medgate["patientsFailed"], 1);
    let got = read_ndjson(&j.download(KEY, &finished.output()[0]).await);
    let want = j
        .sync_rows(&["his"], &["P000002".into(), "P000004".into()])
        .await;
    assert_eq!(got, want.into_iter().map(Value::Object).collect::<Vec<_>>());
    let errors = finished.manifest["error"].as_array().expect("error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["type"], "OperationOutcome");
    assert_eq!(errors[0]["count"], 1);
    assert_eq!(
        errors[0]["extension"]["contentType"],
        "application/fhir+ndjson"
    );
    let outcomes = read_ndjson(&j.download(KEY, &errors[0]).await);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0]["resourceType"], "OperationOutcome");
    assert!(
        outcomes[0].to_string().contains("P999999"),
        "{}",
        outcomes[0]
    );
}

/// One epro report: a heart rate at `effective`.
fn epro_report(patient: &str, value: u32, effective: &str) -> String {
    format!(
        r#"{{"patient_id": "{patient}", "reported_at": "{effective}", "kind": "epro",
            "items": [{{"code": "8867-4", "code_system": "http://loinc.org", "display": "Heart rate",
                        "value": {value}, "unit": "/min", "effective": "{effective}"}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_patient_and_group_exports_kick_off_jobs_and_refuse_what_they_cannot_do() {
    let j = Jobs::start(Setup::default()).await;
    for (patient, value, effective) in [
        ("E1", 61, "2026-01-10T08:00:00+01:00"),
        ("E1", 62, "2026-03-10T08:00:00+01:00"),
        ("E2", 71, "2026-03-11T09:30:00+01:00"),
        ("E2", 72, "2025-12-24T09:30:00+01:00"),
    ] {
        let response = client()
            .post(j.url("/v1/ingest/epro"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(epro_report(patient, value, effective))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    }

    // Patient/$export: every patient of the store source, only observations since February.
    let query = "_outputFormat=application%2Ffhir%2Bndjson&_type=Observation\
                 &_since=2026-02-01T00:00:00Z&_source=epro";
    let response = client()
        .get(j.url(&format!("/fhir/Patient/$export?{query}")))
        .bearer_auth(KEY)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    let location = accepted(response).await;
    let finished = j.finish(KEY, &location).await;
    assert_eq!(
        finished.manifest["request"],
        format!("{}/fhir/Patient/$export", j.gw.base)
    );
    let medgate = &finished.manifest["extension"]["medgate"];
    assert_eq!(medgate["format"], "fhir-ndjson");
    assert_eq!(medgate["sources"], json!(["epro"]));
    assert_eq!(medgate["patients"], 2);
    let lines = read_ndjson(&j.download(KEY, &finished.output()[0]).await);
    let mut got: Vec<(String, String, String)> = lines
        .iter()
        .map(|o| {
            assert_eq!(o["resourceType"], "Observation");
            (
                o["subject"].to_string(),
                o["valueQuantity"]["value"].to_string(),
                text(Some(&o["effectiveDateTime"])),
            )
        })
        .collect();
    got.sort();
    let subjects: Vec<String> = got.iter().map(|g| g.0.clone()).collect();
    assert!(
        subjects[0].contains("E1") && subjects[1].contains("E2"),
        "{subjects:?}"
    );
    let rest: Vec<(&str, &str)> = got.iter().map(|g| (g.1.as_str(), g.2.as_str())).collect();
    assert_eq!(
        rest,
        [
            ("62", "2026-03-10T08:00:00+01:00"),
            ("71", "2026-03-11T09:30:00+01:00")
        ]
    );

    // Without `_source`, Patient/$export takes the partner's store sources (the others
    // cannot list their patients).
    let response = j
        .get(KEY, "/fhir/Patient/$export?_outputFormat=ndjson")
        .await;
    let location = accepted(response).await;
    let finished = j.finish(KEY, &location).await;
    assert_eq!(
        finished.manifest["extension"]["medgate"]["sources"],
        json!(["epro"])
    );
    assert_eq!(rows_in(&finished), 4);

    // Group/{cohort}/$export: the cohort's patients (inline, then the file's, each once)
    // from the cohort's sources, as CSV and as FHIR NDJSON (the default).
    let cohort: Vec<String> = ["P000004", "P000005", "P000002"].map(String::from).to_vec();
    let location = accepted(
        j.get(KEY, "/fhir/Group/study/$export?_outputFormat=csv")
            .await,
    )
    .await;
    let finished = j.finish(KEY, &location).await;
    manifest_entry_checks(&j, &location, &finished, "/fhir/Group/{cohort}/$export");
    let medgate = &finished.manifest["extension"]["medgate"];
    assert_eq!(medgate["cohort"], "study");
    assert_eq!(medgate["patients"], 3);
    let want = j.sync_rows(&["his", "wearable"], &cohort).await;
    assert_rows("csv", &j.download(KEY, &finished.output()[0]).await, &want);

    let location = accepted(j.get(KEY, "/fhir/Group/first-three/$export").await).await;
    let finished = j.finish(KEY, &location).await;
    assert_eq!(
        finished.manifest["extension"]["medgate"]["sources"],
        json!(["his"])
    );
    let lines = read_ndjson(&j.download(KEY, &finished.output()[0]).await);
    assert_eq!(lines, j.sync_resources(&["his"], &ids(0..3)).await);

    // What cannot be exported: FHIR errors are OperationOutcomes with the same status.
    let outcome = |status: u16, path: &'static str, says: &'static str| {
        let j = &j;
        async move {
            let response = j.get(KEY, path).await;
            assert_eq!(response.status(), status, "{path}");
            assert_eq!(
                header(&response, "content-type"),
                "application/fhir+json",
                "{path}"
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["resourceType"], "OperationOutcome", "{path}");
            let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
            assert!(diagnostics.contains(says), "{path}: {body}");
        }
    };
    outcome(404, "/fhir/Group/nope/$export", "no cohort is named `nope`").await;
    outcome(
        400,
        "/fhir/Patient/$export?_type=Patient",
        "_type `Patient` is not exported",
    )
    .await;
    outcome(
        400,
        "/fhir/Group/study/$export?_type=Observation,Patient",
        "_type `Patient` is not exported",
    )
    .await;
    outcome(
        400,
        "/fhir/Group/study/$export?_outputFormat=text/html",
        "_outputFormat `text/html` is not supported",
    )
    .await;
    outcome(400, "/fhir/Patient/$export?_source=his", "cannot").await;
    // The same refusals on the JSON kick-off are problem+json.
    let response = j
        .post(KEY, &json!({"cohort": "nope", "format": "csv"}))
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no cohort is named `nope`"),
        "{body}"
    );
    let response = j
        .post(
            KEY,
            &json!({"sources": ["his"], "patients": ["P000001"], "format": "pdf"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("format `pdf` is not enabled"),
        "{body}"
    );
}

#[tokio::test]
async fn another_partner_can_neither_see_nor_download_nor_delete_a_job() {
    let j = Jobs::start(Setup::default()).await;
    let location = j
        .kick_off(
            KEY,
            json!({"sources": ["his"], "patients": ["P000001"], "format": "csv"}),
        )
        .await;
    let finished = j.finish(KEY, &location).await;
    let file = finished.output()[0]["url"].as_str().unwrap().to_owned();
    // Documented: a job of another partner is "not found" (its existence is not revealed).
    for (what, response) in [
        ("status", j.get(OTHER_KEY, &location).await),
        ("file", j.get(OTHER_KEY, &file).await),
        ("delete", j.delete(OTHER_KEY, &location).await),
    ] {
        assert_eq!(response.status(), 404, "{what}");
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json",
            "{what}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], 404, "{what}");
    }
    // The same answers as for a job that does not exist at all.
    let unknown = j
        .get(
            OTHER_KEY,
            "/v1/exports/00000000-0000-0000-0000-000000000000",
        )
        .await;
    assert_eq!(unknown.status(), 404);
    // The owner still has it, file included.
    let response = j.get(KEY, &location).await;
    assert_eq!(response.status(), 200);
    let bytes = j.download(KEY, &finished.output()[0]).await;
    let want = j.sync_rows(&["his"], &ids(0..1)).await;
    assert_rows("csv", &bytes, &want);
    // Without a key: 401.
    let response = client().get(j.url(&location)).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_partner_without_the_export_grant_is_refused_with_403() {
    let j = Jobs::start(Setup::default()).await;
    let body = json!({"sources": ["his"], "patients": ["P000001"], "format": "csv"});
    let response = j.post(NOJOBS_KEY, &body).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 403);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("may not start export jobs"),
        "{problem}"
    );
    for path in [
        "/fhir/Patient/$export?_source=epro",
        "/fhir/Group/first-three/$export",
    ] {
        let response = j.get(NOJOBS_KEY, path).await;
        assert_eq!(response.status(), 403, "{path}");
        assert_eq!(
            header(&response, "content-type"),
            "application/fhir+json",
            "{path}"
        );
        let outcome: Value = response.json().await.unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
    // The same partner still reads synchronously: the grant is about jobs only.
    let response = j.get(NOJOBS_KEY, "/v1/data/his?patient_id=P000001").await;
    assert_eq!(response.status(), 200);
    // The refusal is audited, and no job was created.
    let refused: Vec<Value> = audit_entries(&j.gw)
        .into_iter()
        .filter(|e| e["partner"] == "nojobs" && e["status"] == 403)
        .collect();
    assert_eq!(refused.len(), 3, "{refused:#?}");
    let dir = std::fs::read_dir(j.exports_dir())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(dir, 0, "no job directory");
}

/// The effective times' date-time parts.
fn instant(text: &str) -> jiff::Timestamp {
    text.parse().unwrap_or_else(|e| panic!("`{text}`: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_profile_pseudonymizes_the_job_its_files_and_its_audit() {
    let j = Jobs::start(Setup::default()).await;
    let patients = ids(0..3);
    // No profile asked for: the partner's forced one applies.
    let location = j
        .kick_off(
            FORCED_KEY,
            json!({"sources": ["his"], "patients": patients, "format": "csv"}),
        )
        .await;
    let finished = j.finish(FORCED_KEY, &location).await;
    let medgate = &finished.manifest["extension"]["medgate"];
    assert_eq!(medgate["profile"], "research");
    let key_id = medgate["keyId"]
        .as_str()
        .expect("the key id is named")
        .to_owned();
    let mut bytes = Vec::new();
    for entry in finished.output() {
        bytes.extend(j.download(FORCED_KEY, entry).await);
    }
    let file = String::from_utf8(bytes.clone()).unwrap();
    let got = read_csv(&bytes);
    let want: Vec<Vec<String>> = j
        .sync_rows(&["his"], &patients)
        .await
        .iter()
        .map(cells)
        .collect();
    assert_eq!(got.len(), want.len());
    let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
    let (pid, id, value, effective) =
        (col("patient_id"), col("id"), col("value"), col("effective"));
    let mut pseudonyms = Vec::new();
    let mut shifts: Vec<(String, jiff::SignedDuration)> = Vec::new();
    for (g, w) in got.iter().zip(&want) {
        assert!(
            g[pid].starts_with("psn-") && g[pid].len() == 36,
            "{}",
            g[pid]
        );
        assert!(g[id].starts_with("obs-"), "{}", g[id]);
        assert_eq!(g[value], w[value], "values are kept");
        assert_ne!(g[effective], w[effective], "dates are shifted");
        pseudonyms.push(g[pid].clone());
        let shift = instant(&g[effective]).duration_since(instant(&w[effective]));
        assert_eq!(shift.as_secs() % 86_400, 0, "a whole number of days");
        assert_ne!(shift.as_secs(), 0);
        shifts.push((g[pid].clone(), shift));
    }
    // One pseudonym and one shift per patient, consistent across its rows.
    pseudonyms.dedup();
    assert_eq!(pseudonyms.len(), 3, "{pseudonyms:?}");
    for w in shifts.windows(2) {
        if w[0].0 == w[1].0 {
            assert_eq!(w[0].1, w[1].1, "one shift per patient");
        }
    }
    // No original patient id, observation id or date-time in the file.
    for w in &want {
        for original in [&w[pid], &w[id], &w[effective]] {
            assert!(!file.contains(original.as_str()), "`{original}` survived");
        }
    }
    // Asking for another profile is refused, and so is `since` (the profile shifts dates).
    let refused = j
        .post(
            FORCED_KEY,
            &json!({"sources": ["his"], "patients": ["P000001"], "format": "csv", "profile": "other"}),
        )
        .await;
    assert_eq!(refused.status(), 403);
    let refused = j
        .post(
            FORCED_KEY,
            &json!({"sources": ["his"], "patients": ["P000001"], "format": "csv",
                    "since": "2024-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("since cannot be used"),
        "{body}"
    );

    // The job's audit entries name the profile and its key, never an original patient id.
    let entries = job_audit(&j.gw, job_id(&location), |e| {
        !ended(e).is_empty()
            && e.iter()
                .filter(|e| e["route"] == "/v1/exports/{id}/files/{n}")
                .count()
                == finished.output().len()
    })
    .await;
    assert!(entries.len() >= 3, "{entries:#?}");
    for e in &entries {
        assert_eq!(e["partner"], "forced");
        assert_eq!(e["details"]["profile"], "research", "{e}");
        let details = e["details"].to_string();
        for p in &patients {
            assert!(!details.contains(p.as_str()), "{p} in {details}");
        }
    }
    let ended = ended(&entries);
    assert_eq!(ended[0]["details"]["key_id"], key_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_cancels_a_running_job_and_removes_its_files() {
    let j = Jobs::start(Setup::default()).await;
    let location = j
        .kick_off(
            KEY,
            json!({"sources": ["slow"], "patients": ids(0..30), "format": "ndjson"}),
        )
        .await;
    let id = job_id(&location).to_owned();
    let job_dir = j.exports_dir().join(&id);
    j.running_until(&location, |p| p.done() >= 1).await;
    assert!(
        job_dir.join("1").is_dir(),
        "the running attempt writes under {job_dir:?}"
    );

    let response = j.delete(KEY, &location).await;
    assert_eq!(response.status(), 202);
    let response = j.get(KEY, &location).await;
    assert_eq!(response.status(), 404, "a cancelled job is not found");
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("cancelled"),
        "{body}"
    );
    assert!(
        j.gone(&job_dir, Duration::from_secs(5)).await,
        "the worker removes the files of a cancelled job"
    );
    // Cancelled once: its end is audited as cancelled, and it never completes.
    let entries = job_audit(&j.gw, &id, |e| !ended(e).is_empty()).await;
    let ended_entries = ended(&entries);
    assert_eq!(ended_entries.len(), 1, "{entries:#?}");
    assert_eq!(ended_entries[0]["outcome"], "cancelled");
    let deleted: Vec<&Value> = entries
        .iter()
        .filter(|e| e["route"] == "/v1/exports/{id}")
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["details"]["deleted"], "cancelled");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!job_dir.exists(), "nothing is written after the cancel");
    assert_eq!(j.get(KEY, &location).await.status(), 404);

    // DELETE on a completed job removes it and its files at once.
    let location = j
        .kick_off(
            KEY,
            json!({"sources": ["his"], "patients": ["P000001"], "format": "csv"}),
        )
        .await;
    let finished = j.finish(KEY, &location).await;
    let job_dir = j.exports_dir().join(job_id(&location));
    assert!(job_dir.is_dir());
    let response = j.delete(KEY, &location).await;
    assert_eq!(response.status(), 202);
    assert!(!job_dir.exists(), "files removed with the job");
    assert_eq!(j.get(KEY, &location).await.status(), 404);
    let file = j
        .get(KEY, finished.output()[0]["url"].as_str().unwrap())
        .await;
    assert_eq!(file.status(), 404);
}

#[tokio::test]
async fn files_expire_and_then_the_job_is_gone() {
    // 2 s instead of the production minimum of 60 s.
    let j = Jobs::start(Setup {
        tune: |c| c.exports.expire_after_s = 2,
        ..Setup::default()
    })
    .await;
    let location = j
        .kick_off(
            KEY,
            json!({"sources": ["his"], "patients": ["P000001"], "format": "csv"}),
        )
        .await;
    let finished = j.finish(KEY, &location).await;
    let expires_at: jiff::Timestamp = finished.manifest["extension"]["medgate"]["expires"]
        .as_str()
        .expect("expires")
        .parse()
        .expect("RFC 3339");
    let header_at = jiff::fmt::rfc2822::parse(&finished.expires)
        .expect("Expires")
        .timestamp();
    assert_eq!(
        header_at.as_second(),
        expires_at.as_second(),
        "Expires header and manifest agree"
    );
    let left = expires_at.duration_since(jiff::Timestamp::now());
    assert!(left <= jiff::SignedDuration::from_secs(3), "{left:?}");
    let job_dir = j.exports_dir().join(job_id(&location));
    assert!(job_dir.is_dir());

    // Past Expires: not served, not listed, and deleted.
    let wait = left.as_millis().max(0) as u64 + 100;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let response = j.get(KEY, &location).await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    assert!(
        j.gone(&job_dir, Duration::from_secs(2)).await,
        "expired files are deleted"
    );
    let file = j
        .get(KEY, finished.output()[0]["url"].as_str().unwrap())
        .await;
    assert_eq!(file.status(), 404, "an expired file is not served");

    // The same when the file is asked for first.
    let location = j
        .kick_off(
            KEY,
            json!({"sources": ["his"], "patients": ["P000002"], "format": "csv"}),
        )
        .await;
    let finished = j.finish(KEY, &location).await;
    let job_dir = j.exports_dir().join(job_id(&location));
    let url = finished.output()[0]["url"].as_str().unwrap().to_owned();
    assert_eq!(
        j.get(KEY, &url).await.status(),
        200,
        "served before Expires"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let file = j.get(KEY, &url).await;
    assert_eq!(file.status(), 404, "an expired file is not served");
    let body: Value = file.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    assert!(!job_dir.exists(), "and deleted");
    assert_eq!(j.get(KEY, &location).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_interrupted_by_a_restart_completes_exactly_once() {
    let mut j = Jobs::start(Setup {
        delay: Duration::from_millis(150),
        ..Setup::default()
    })
    .await;
    let patients = ids(0..24);
    let location = j
        .kick_off(
            KEY,
            json!({"sources": ["slow"], "patients": patients, "format": "ndjson"}),
        )
        .await;
    let id = job_id(&location).to_owned();
    let before = j.running_until(&location, |p| p.done() >= 2).await;
    assert!(before.done() < 24, "{before:?}");
    j.restart().await;
    // The first attempt's partial files are removed; the job completes on the new gateway.
    let started = Instant::now();
    let finished = j.finish(KEY, &location).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "resumed at once after the restart"
    );
    let on_disk: Vec<String> = std::fs::read_dir(j.exports_dir().join(&id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(on_disk, ["2"], "only the completing attempt's files");
    let medgate = &finished.manifest["extension"]["medgate"];
    assert_eq!(medgate["patients"], 24);
    assert_eq!(medgate["rows"], 24 * 12);
    assert_eq!(rows_in(&finished), 24 * 12);
    let mut got = Vec::new();
    for entry in finished.output() {
        got.extend(read_ndjson(&j.download(KEY, entry).await));
    }
    let want = as_source(j.sync_rows(&["his"], &patients).await, "slow");
    assert_eq!(
        got,
        want.into_iter().map(Value::Object).collect::<Vec<_>>(),
        "every row once"
    );
    // Audited: one kick-off, one end (completed, second attempt), nothing from the stop.
    let entries = job_audit(&j.gw, &id, |e| !ended(e).is_empty()).await;
    let ends = ended(&entries);
    assert_eq!(ends.len(), 1, "{entries:#?}");
    assert_eq!(ends[0]["outcome"], "completed");
    assert_eq!(ends[0]["details"]["attempt"], 2);
    assert_eq!(ends[0]["records"], 24 * 12);
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["route"] == "/v1/exports")
            .count(),
        1
    );
    medgate_audit::verify(&j.gw.audit).expect("the chain verifies across the restart");
}

#[tokio::test]
async fn kick_off_job_end_and_downloads_are_audited_with_the_files_sha256() {
    let j = Jobs::start(Setup::default()).await;
    let location = j
        .kick_off(
            KEY,
            json!({"sources": ["his", "wearable"], "patients": ids(0..3), "format": "parquet"}),
        )
        .await;
    let id = job_id(&location).to_owned();
    let finished = j.finish(KEY, &location).await;
    let mut downloaded = Vec::new();
    for entry in finished.output() {
        downloaded.push(sha256(&j.download(KEY, entry).await));
    }
    let files = finished.output().len();
    let entries = job_audit(&j.gw, &id, |e| {
        !ended(e).is_empty()
            && e.iter()
                .filter(|e| e["route"] == "/v1/exports/{id}/files/{n}")
                .count()
                == files
    })
    .await;

    let kick: Vec<&Value> = entries
        .iter()
        .filter(|e| e["route"] == "/v1/exports")
        .collect();
    assert_eq!(kick.len(), 1, "{entries:#?}");
    assert_eq!(kick[0]["partner"], "test");
    assert_eq!(kick[0]["status"], 202);
    assert_eq!(kick[0]["source"], "his,wearable");
    let d = &kick[0]["details"];
    assert_eq!(d["format"], "parquet");
    assert_eq!(d["cohort_size"], 3);
    assert_eq!(d["sources"], json!(["his", "wearable"]));

    let ends = ended(&entries);
    assert_eq!(ends.len(), 1);
    let end = ends[0];
    assert_eq!(end["partner"], "test");
    assert_eq!(end["outcome"], "completed");
    assert_eq!(end["request_id"], format!("job-{id}"));
    assert_eq!(end["records"], 3 * 2 * 12);
    let d = &end["details"];
    assert_eq!(d["cohort_size"], 3);
    assert_eq!(d["patients_failed"], 0);
    assert_eq!(d["format"], "parquet");
    let recorded: Vec<&Value> = d["files"].as_array().expect("files").iter().collect();
    assert_eq!(recorded.len(), files);
    for (i, f) in recorded.iter().enumerate() {
        let entry = &finished.output()[i];
        assert_eq!(f["kind"], "Observation");
        assert_eq!(f["index"], i + 1);
        assert_eq!(
            f["sha256"], downloaded[i],
            "the audited SHA-256 is the bytes'"
        );
        assert_eq!(f["size"], entry["extension"]["size"]);
        assert_eq!(f["count"], entry["count"]);
    }

    let gets: Vec<&Value> = entries
        .iter()
        .filter(|e| e["route"] == "/v1/exports/{id}/files/{n}")
        .collect();
    for (i, g) in gets.iter().enumerate() {
        assert_eq!(g["status"], 200);
        assert_eq!(g["partner"], "test");
        assert_eq!(g["details"]["file"], i + 1);
        assert_eq!(g["details"]["sha256"], downloaded[i], "{g}");
        assert_eq!(g["records"], finished.output()[i]["count"]);
    }
    medgate_audit::verify(&j.gw.audit).expect("the chain verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_max_file_bytes_splits_into_whole_files_that_concatenate_to_the_download() {
    // 1 MiB (the smallest allowed) over 3.3 MB of CSV and more of NDJSON.
    let j = Jobs::start(Setup {
        patients: 50,
        observations: 300,
        exports: "max_file_bytes = 1048576",
        ..Setup::default()
    })
    .await;
    let patients = ids(0..50);
    let list = patients.join(",");
    for (format, content_type) in [
        ("csv", "text/csv; charset=utf-8"),
        ("ndjson", "application/x-ndjson"),
    ] {
        let location = j
            .kick_off(
                KEY,
                json!({"sources": ["his"], "patients": patients, "format": format}),
            )
            .await;
        let finished = j.finish(KEY, &location).await;
        let parts = finished.output();
        let total: u64 = parts
            .iter()
            .map(|e| e["extension"]["size"].as_u64().unwrap())
            .sum();
        assert!(
            parts.len() >= 3,
            "{format}: {} parts, {total} bytes",
            parts.len()
        );
        assert_eq!(rows_in(&finished), 50 * 300);
        let mut joined = Vec::new();
        for (i, entry) in parts.iter().enumerate() {
            assert_eq!(entry["extension"]["contentType"], content_type);
            let bytes = j.download(KEY, entry).await;
            assert!(
                bytes.len() <= 1 << 20,
                "{format} part {i}: {} bytes",
                bytes.len()
            );
            // Each part is a whole file of its format with as many rows as the manifest says.
            let rows = match format {
                "csv" => read_csv(&bytes).len(),
                _ => read_ndjson(&bytes).len(),
            };
            assert_eq!(
                rows as u64,
                entry["count"].as_u64().unwrap(),
                "{format} part {i}"
            );
            let body: &[u8] = if format == "csv" && i > 0 {
                let header_end = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
                &bytes[header_end..]
            } else {
                &bytes
            };
            joined.extend_from_slice(body);
        }
        let whole = j
            .get(
                KEY,
                &format!("/v1/export?source=his&patient_id={list}&format={format}"),
            )
            .await;
        assert_eq!(whole.status(), 200);
        let whole = whole.bytes().await.unwrap();
        assert!(
            joined == whole,
            "{format}: the parts concatenate to the synchronous download"
        );
    }
}
