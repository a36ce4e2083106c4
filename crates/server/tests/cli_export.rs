//! `medgate export`: the researcher's command, run as a process against real loopback
//! upstreams (the demo's), locally and against a running gateway (`--server`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "cli-export-key-0123456789";
/// 64 hex digits: the pseudonym key of the `research` profile.
const PSEUDONYM_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// Observations per patient per source in the demo workload below.
const OBS: u64 = 6;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "medgate-cli-export-{}-{name}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A demo config in `dir`: simulated HIS and wearable upstreams on free ports, a SQLite
/// store, a cohort and two profiles.
fn config(dir: &Path) -> (PathBuf, u16) {
    let (his, wearable, api) = (free_port(), free_port(), free_port());
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{api}"

[demo]
his_listen = "127.0.0.1:{his}"
wearable_listen = "127.0.0.1:{wearable}"
patients = 10
observations = {OBS}

[[sources]]
name = "his"
kind = "his-xml"
url = "http://127.0.0.1:{his}/fhir/Observation?patient={{patient_id}}"
format = "fhir-r4"

[[sources]]
name = "wearable"
kind = "wearable-json"
url = "http://127.0.0.1:{wearable}/omh/{{patient_id}}"
format = "openmhealth"

[store]
url = "sqlite://{dir}/medgate.db"

[exporters]
enabled = ["csv", "ndjson", "xlsx", "parquet"]

[exports]
dir = "{dir}/exports"

[[cohorts]]
name = "study-a"
patients = ["P000003", "P000004", "P000005"]
sources = ["his"]

[[profiles]]
name = "research"
pseudonymize_patient_ids = true
pseudonym_key_env = "MEDGATE_TEST_PSEUDONYM_KEY"
date_shift_max_days = 30
drop_free_text = true

[[partners]]
name = "lab"
key_sha256 = "{sha}"
sources = ["his", "wearable"]
formats = ["*"]
export_jobs = true

[audit]
path = "{dir}/audit.jsonl"
"#,
        dir = dir.display(),
        sha = sha256_hex(KEY),
    );
    let path = dir.join("medgate.toml");
    std::fs::write(&path, text).unwrap();
    (path, api)
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn medgate(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medgate"));
    c.current_dir(dir)
        .env("MEDGATE_TEST_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env_remove("RUST_LOG")
        .env_remove("MEDGATE_STORE_URL");
    c
}

fn export(dir: &Path, args: &[&str]) -> Output {
    medgate(dir).arg("export").args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn csv_rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.records().map(Result::unwrap).collect()
}

#[test]
fn a_local_export_writes_the_file_reports_progress_and_a_summary() {
    let dir = tempdir("local");
    let (config, _) = config(&dir);
    let config = config.to_str().unwrap();
    let out = export(
        &dir,
        &[
            "--config",
            config,
            "--source",
            "his,wearable",
            "--patients",
            "P000001,P000002",
            "-o",
            "out.xlsx",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let rows = 2 * 2 * OBS;
    assert!(
        stdout.contains(&format!("out.xlsx: {rows} rows, sha256 ")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("exported {rows} rows for 2 patients")),
        "{stdout}"
    );
    assert!(stdout.contains("; 0 failed"), "{stdout}");
    // stderr is a pipe here: plain progress lines, no bar, no info logs.
    assert!(
        stderr.contains("progress: 2/2 patients, 0 failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("INFO"), "{stderr}");

    use calamine::{open_workbook, Reader, Xlsx};
    let mut book: Xlsx<_> = open_workbook(dir.join("out.xlsx")).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    assert_eq!(
        sheet.height() as u64,
        rows + 1,
        "header plus one row per observation"
    );
    let header: Vec<String> = sheet
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let (patient, source) = (
        header.iter().position(|h| h == "patient_id").unwrap(),
        header.iter().position(|h| h == "source").unwrap(),
    );
    let mut seen: Vec<(String, String)> = sheet
        .rows()
        .skip(1)
        .map(|r| (r[patient].to_string(), r[source].to_string()))
        .collect();
    seen.dedup();
    assert_eq!(
        seen,
        [
            ("P000001", "his"),
            ("P000001", "wearable"),
            ("P000002", "his"),
            ("P000002", "wearable")
        ]
        .map(|(p, s)| (p.to_owned(), s.to_owned()))
    );
}

#[test]
fn a_profile_leaves_no_original_patient_id_in_the_output() {
    let dir = tempdir("profile");
    let (config, _) = config(&dir);
    let out = export(
        &dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "--cohort",
            "study-a",
            "--profile",
            "research",
            "-o",
            "study.csv",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = std::fs::read_to_string(dir.join("study.csv")).unwrap();
    for id in ["P000003", "P000004", "P000005"] {
        assert!(!body.contains(id), "{id} survived de-identification");
    }
    let rows = csv_rows(&dir.join("study.csv"));
    assert_eq!(rows.len() as u64, 3 * OBS);
    assert!(
        rows.iter().all(|r| r[0].starts_with("psn-")),
        "{:?}",
        rows[0]
    );
}

#[test]
fn failed_patients_exit_3_named_on_stderr_and_in_the_errors_file() {
    let dir = tempdir("partial");
    let (config, _) = config(&dir);
    let out = export(
        &dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "--source",
            "his",
            "--patients",
            "P000001,P999999",
            "--errors",
            "errors.ndjson",
            "-o",
            "out.csv",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("failed: P999999 from his"), "{stderr}");
    assert_eq!(
        csv_rows(&dir.join("out.csv")).len() as u64,
        OBS,
        "the good patient is kept"
    );
    let errors = std::fs::read_to_string(dir.join("errors.ndjson")).unwrap();
    let outcome: serde_json::Value = serde_json::from_str(errors.lines().next().unwrap()).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
}

#[test]
fn bad_arguments_are_one_line_with_exit_2() {
    let dir = tempdir("usage");
    let (config, _) = config(&dir);
    let config = config.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--config",
                config,
                "--patients",
                "P1",
                "--bogus",
                "-o",
                "x.csv",
            ],
            "unexpected argument '--bogus'",
        ),
        (
            &[
                "--config",
                config,
                "--patients",
                "P000001",
                "--cohort",
                "study-a",
                "-o",
                "x.csv",
            ],
            "not both",
        ),
        (
            &["--config", config, "--patients", "P000001", "-o", "x.dat"],
            "give --format",
        ),
        (
            &[
                "--config",
                config,
                "--patients",
                "@missing.txt",
                "-o",
                "x.csv",
            ],
            "--patients @missing.txt",
        ),
        (
            &[
                "--config",
                config,
                "--patients",
                "P000001",
                "--format",
                "pdf",
                "-o",
                "x.pdf",
            ],
            "pdf",
        ),
        (
            &[
                "--config",
                config,
                "--patients",
                "P000001",
                "--profile",
                "nope",
                "-o",
                "x.csv",
            ],
            "nope",
        ),
        (
            &[
                "--config",
                config,
                "--patients",
                "P000001",
                "--cohort",
                "x",
                "-o",
                "x.csv",
            ],
            "not both",
        ),
        (
            &[
                "--config",
                "missing.toml",
                "--patients",
                "P000001",
                "-o",
                "x.csv",
            ],
            "missing.toml",
        ),
    ];
    for (args, expected) in cases {
        let out = export(&dir, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!dir.join("x.csv").exists());
    }
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path, config: &Path, port: u16) -> Gateway {
    let child = medgate(dir)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Gateway(child)
}

#[test]
fn a_remote_export_downloads_the_same_file_a_local_one_writes() {
    let dir = tempdir("remote");
    let (config, port) = config(&dir);
    let args = [
        "--source",
        "his,wearable",
        "--patients",
        "P000006,P000007",
        "--format",
        "csv",
    ];
    // Local first: the gateway below holds the demo ports while it runs.
    let mut local = vec!["--config", config.to_str().unwrap(), "-o", "local.csv"];
    local.extend(args);
    let out = export(&dir, &local);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let _gateway = serve(&dir, &config, port);
    let server = format!("http://127.0.0.1:{port}");
    let mut remote = vec!["--server", server.as_str(), "-o", "remote.csv"];
    remote.extend(args);
    let out = medgate(&dir)
        .env("MEDGATE_API_KEY", KEY)
        .arg("export")
        .args(&remote)
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("remote.csv: {} rows, sha256 ", 2 * 2 * OBS)),
        "{stdout}"
    );
    assert!(stdout.contains("for 2 patients"), "{stdout}");
    assert_eq!(
        std::fs::read(dir.join("remote.csv")).unwrap(),
        std::fs::read(dir.join("local.csv")).unwrap(),
        "the job and the local run write the same bytes"
    );
    assert!(!dir.join("remote.csv.partial").exists());

    // A refused key is one line naming the status, exit 2.
    let out = medgate(&dir)
        .env("MEDGATE_API_KEY", "not-a-key-0000000000")
        .arg("export")
        .args(&remote)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");

    // No key at all: says which variable to set.
    let out = medgate(&dir)
        .env_remove("MEDGATE_API_KEY")
        .arg("export")
        .args(&remote)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("set MEDGATE_API_KEY"));
}
