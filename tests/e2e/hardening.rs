//! The edge under a hostile world: slow and idle clients, too many connections, oversized
//! requests, probing partners, concurrency that streams past its headers, TLS, shutdown in
//! the middle of a download.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{audit_entries, header, start, start_with, Gateway, KEY, OBS};

/// Reads until the server closes the connection (or `limit` passes); returns what was read
/// and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

fn addr(gw: &Gateway) -> String {
    gw.base.trim_start_matches("http://").to_owned()
}

/// A gateway whose `[server]` has short timeouts and a small connection cap.
async fn tight() -> Gateway {
    crate::util::start_with_server(
        "header_read_timeout_ms = 300\nidle_timeout_ms = 400\nmax_connections = 4\n",
        "",
    )
    .await
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    let gw = tight().await;
    let mut slow = TcpStream::connect(addr(&gw)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(3)).await;
    assert!(
        closed,
        "a client that never finishes its headers is disconnected"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_but_busy_ones_are_not() {
    let gw = tight().await;
    let mut idle = TcpStream::connect(addr(&gw)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(3)).await;
    assert!(closed, "an idle keep-alive connection is closed");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn beyond_the_connection_cap_new_clients_get_a_503_problem_and_ops_still_answer() {
    let gw = tight().await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(addr(&gw)).await.unwrap();
        // A request in flight (headers started) keeps each connection busy and counted.
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut extra = TcpStream::connect(addr(&gw)).await.unwrap();
    let (text, closed) = read_until_closed(&mut extra, Duration::from_secs(2)).await;
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("connection limit"), "{text}");
    let health = reqwest::get(format!("{}/healthz", gw.ops)).await.unwrap();
    assert_eq!(
        health.status(),
        200,
        "the operators' listener has its own connections"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.get("/v1/sources").await.status(), 200, "room again");
}

#[tokio::test]
async fn oversized_targets_and_headers_are_problems_not_empty_bodies() {
    let gw = start("").await;
    let long = format!("/v1/data/his?patient_id={}", "P".repeat(10_000));
    let response = gw.get(&long).await;
    assert_eq!(response.status(), 414);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("POST /v1/export"));

    let response = gw
        .client
        .get(format!("{}/v1/sources", gw.base))
        .header("x-big", "v".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
}

const RESTRICTED: &str = r#"
[[partners]]
name = "acme"
key_sha256 = "{acme}"
sources = ["his"]
formats = ["csv", "json"]
rate_per_second = 1000
burst = 1000
max_concurrency = 2
"#;
const ACME: &str = "acme-secret-key-hardening";

async fn as_acme(gw: &Gateway, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", gw.base))
        .header("authorization", format!("BEARER {ACME}"))
        .send()
        .await
        .unwrap()
}

fn restricted() -> String {
    RESTRICTED.replace("{acme}", &medgate::access::sha256_hex(ACME))
}

#[tokio::test]
async fn a_partner_cannot_tell_unknown_sources_from_forbidden_ones() {
    let gw = start(&restricted()).await;
    // The upper-case scheme is accepted (RFC 9110: case-insensitive).
    assert_eq!(
        as_acme(&gw, "/v1/data/his?patient_id=P000001")
            .await
            .status(),
        200
    );
    for name in ["wearable", "does-not-exist"] {
        let response = as_acme(&gw, &format!("/v1/data/{name}?patient_id=P000001")).await;
        assert_eq!(response.status(), 403, "{name}");
    }
    // A partner that may read everything learns that a name does not exist.
    assert_eq!(
        gw.get("/v1/data/does-not-exist?patient_id=P000001")
            .await
            .status(),
        404
    );
    for id in [".", ".."] {
        let response = gw.get(&format!("/v1/data/his?patient_id={id}")).await;
        assert_eq!(response.status(), 400, "{id}");
    }
}

/// An upstream whose every answer hangs: a download mixing it with a healthy source streams
/// its first rows and then waits, keeping the response open.
fn hanging() -> Router {
    Router::new().route(
        "/hang/{id}",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    )
}

const HANG: &str = r#"
[[sources]]
name = "hang"
kind = "his-xml"
url = "http://{faulty}/hang/{patient_id}"
format = "fhir-r4"
timeout_ms = 20000
deadline_ms = 20000
"#;

#[tokio::test]
async fn a_streamed_download_counts_against_concurrency_until_its_last_byte() {
    let config = format!(
        "{}{HANG}",
        restricted().replace("sources = [\"his\"]", "sources = [\"his\", \"hang\"]")
    );
    let gw = start_with(&config, hanging()).await;
    let path = "/v1/export?source=his,hang&patient_id=P000001&format=csv";
    let first = as_acme(&gw, path).await;
    let second = as_acme(&gw, path).await;
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    // Both bodies are still streaming: the partner's two slots are taken.
    let third = as_acme(&gw, "/v1/data/his?patient_id=P000001").await;
    assert_eq!(
        third.status(),
        429,
        "the cap covers streamed bodies, not just headers"
    );
    drop(first);
    drop(second);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        as_acme(&gw, "/v1/data/his?patient_id=P000001")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn exports_have_a_global_cap() {
    let gw = crate::util::start_with_server("max_concurrent_exports = 1\n", HANG).await;
    let path = "/v1/export?source=his,hang&patient_id=P000001&format=csv";
    let first = gw.get(path).await;
    assert_eq!(first.status(), 200);
    let second = gw.get(path).await;
    assert_eq!(second.status(), 503);
    assert!(!header(&second, "retry-after").is_empty());
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = gw
        .get("/v1/export?source=his&patient_id=P000001&format=csv")
        .await;
    assert_eq!(third.status(), 200);
}

#[tokio::test]
async fn a_long_patient_list_is_posted_and_a_rejected_one_is_audited_bounded() {
    let gw = start("").await;
    let response = gw
        .client
        .post(format!("{}/v1/export", gw.base))
        .json(&serde_json::json!({
            "sources": ["his"],
            "patients": ["P000003", "P000001"],
            "format": "json"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rows: Vec<serde_json::Value> = response.json().await.unwrap();
    assert_eq!(rows.len(), 2 * OBS as usize);
    assert_eq!(rows[0]["patient_id"], "P000003");

    // 5,000 ids (over the harness's max_export_patients of 50) are refused; the audit line
    // keeps at most 50 of them.
    let many: Vec<String> = (0..5000).map(|i| format!("junk-{i}")).collect();
    let response = gw
        .client
        .post(format!("{}/v1/export", gw.base))
        .json(&serde_json::json!({ "sources": ["his"], "patients": many, "format": "csv" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let line = std::fs::read_to_string(&gw.audit).unwrap();
    let last = line.lines().last().unwrap();
    assert!(last.len() < 2_000, "bounded: {} bytes", last.len());
    assert_eq!(audit_entries(&gw).last().unwrap()["status"], 400);

    let response = gw
        .client
        .post(format!("{}/v1/export", gw.base))
        .header("content-type", "text/plain")
        .body("sources=his")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

#[tokio::test]
async fn shutdown_during_a_streamed_download_is_audited_as_interrupted() {
    let workload = crate::util::workload();
    let his = crate::util::serve_router(medgate_demo::his_router(workload.clone())).await;
    let hang = crate::util::serve_router(hanging()).await;
    let dir = crate::util::tempdir();
    let path = dir.join("medgate.toml");
    let audit = dir.join("audit.jsonl");
    let config = format!(
        "[server]\nshutdown_grace_ms = 300\n[auth]\nrequired = false\n[store]\nurl = \"sqlite://{}\"\n[audit]\npath = {:?}\n\
         [[sources]]\nname = \"his\"\nkind = \"his-xml\"\nurl = \"http://{his}/fhir/Observation?patient={{patient_id}}\"\nformat = \"fhir-r4\"\n\
         [[sources]]\nname = \"hang\"\nkind = \"his-xml\"\nurl = \"http://{hang}/hang/{{patient_id}}\"\nformat = \"fhir-r4\"\ntimeout_ms = 20000\ndeadline_ms = 20000\n",
        dir.join("store.db").display(),
        audit.display().to_string()
    );
    std::fs::write(&path, config).unwrap();
    let gateway = Arc::new(
        medgate::startup::build(medgate::startup::load(&path).unwrap())
            .await
            .unwrap(),
    );
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", api.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listeners = medgate::startup::Listeners { api, ops: None };
    let server = tokio::spawn(medgate::startup::serve(gateway, listeners, async {
        let _ = stop_rx.await;
    }));
    let response = reqwest::get(format!(
        "{base}/v1/export?source=his,hang&patient_id=P000001&format=csv"
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    stop_tx.send(()).unwrap();
    let body = response.bytes().await;
    assert!(body.is_err(), "a cut download never ends cleanly");
    server.await.unwrap().expect("serve returns");
    let entries: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = entries.last().expect("the download is audited");
    assert_eq!(last["outcome"], "interrupted", "{last}");
    assert_eq!(
        last["records"], OBS,
        "the rows the exporter took, not the rows fetched"
    );
    assert!(medgate_audit::verify(&audit).is_ok());
}

#[tokio::test]
async fn medgate_terminates_tls_and_reloads_its_certificate() {
    let dir = crate::util::tempdir();
    let ca = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = params.self_signed(&ca).unwrap();
    let issuer = rcgen::Issuer::from_params(&params, &ca);
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (cert, key) = leaf("first");
    std::fs::write(dir.join("server.pem"), &cert).unwrap();
    std::fs::write(dir.join("server-key.pem"), &key).unwrap();
    let server = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        dir.join("server.pem").display().to_string(),
        dir.join("server-key.pem").display().to_string()
    );
    let gw = crate::util::start_with_server(&server, "").await;
    let port = gw.base.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let https = format!("https://localhost:{port}");
    let response = client
        .get(format!("{https}/v1/sources"))
        .header("authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(reqwest::get(format!("http://localhost:{port}/healthz"))
        .await
        .is_err());
    assert_eq!(peer_common_name(&port, &ca_cert.pem()).await, "first");

    let (cert, key) = leaf("second");
    std::fs::write(dir.join("server.pem"), &cert).unwrap();
    std::fs::write(dir.join("server-key.pem"), &key).unwrap();
    gw.handle.reload(&gw.config).expect("reload");
    assert_eq!(peer_common_name(&port, &ca_cert.pem()).await, "second");
    // A broken certificate is refused and the current one keeps serving.
    std::fs::write(dir.join("server.pem"), "not a certificate").unwrap();
    assert!(gw.handle.reload(&gw.config).is_err());
    assert_eq!(peer_common_name(&port, &ca_cert.pem()).await, "second");
}

/// The common name of the certificate the server at `port` presents.
async fn peer_common_name(port: &str, ca_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (_, session) = tls.get_ref();
    let der = session.peer_certificates().unwrap()[0].clone();
    let text = String::from_utf8_lossy(der.as_ref()).into_owned();
    ["first", "second"]
        .into_iter()
        .find(|n| text.contains(n))
        .unwrap_or("?")
        .to_owned()
}
