//! Fault injection: real loopback upstreams that hang, trickle, reset, fail, flood and attack.
//! Timing bounds are generous (these machines are shared); what is asserted is the shape:
//! fast failures are fast, slow ones end at their budget, healthy sources stay healthy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::stream;

use crate::util::{header as header_of, start_with, Gateway};

/// What the hostile upstream saw, and a switch to heal it.
#[derive(Default)]
pub struct Upstream {
    calls: AtomicU64,
    healthy: AtomicBool,
}

fn hostile(state: Arc<Upstream>) -> Router {
    Router::new()
        .route("/hang/{id}", get(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "late"
        }))
        .route("/trickle/{id}", get(|| async {
            let drip = stream::unfold(0u32, |n| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                (n < 2000).then(|| (Ok::<_, std::io::Error>(bytes_of(if n == 0 { "<Bundle xmlns=\"http://hl7.org/fhir\">" } else { " " })), n + 1))
            });
            Body::from_stream(drip)
        }))
        .route("/status/{code}/{id}", get(status_route))
        .route("/breaker/{id}", get(breaker_route))
        .route("/flaky/{id}", get(flaky_route))
        .route("/huge-declared/{id}", get(|| async {
            let chunk = bytes_of(&" ".repeat(64 * 1024));
            let body = Body::from_stream(stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone())).take(32 * 1024));
            ([(header::CONTENT_LENGTH, (2u64 << 30).to_string())], body).into_response()
        }))
        .route("/huge-chunked/{id}", get(|| async {
            let chunk = bytes_of(&format!("<Bundle xmlns=\"http://hl7.org/fhir\">{}", " ".repeat(64 * 1024)));
            Body::from_stream(stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone())).take(32 * 1024))
        }))
        .route("/xxe/{id}", get(|| async {
            "<?xml version=\"1.0\"?><!DOCTYPE b [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><Bundle xmlns=\"http://hl7.org/fhir\"><id value=\"&x;\"/></Bundle>"
        }))
        .route("/deep/{id}", get(|| async {
            format!("<Bundle xmlns=\"http://hl7.org/fhir\">{}{}</Bundle>", "<entry>".repeat(10_000), "</entry>".repeat(10_000))
        }))
        .route("/deepjson/{id}", get(|| async { format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)) }))
        .route("/notjson/{id}", get(|| async { "<html>502 Bad Gateway</html>" }))
        .with_state(state)
}

use futures::StreamExt;

fn bytes_of(text: &str) -> axum::body::Bytes {
    axum::body::Bytes::from(text.to_owned())
}

async fn status_route(
    State(s): State<Arc<Upstream>>,
    axum::extract::Path((code, _)): axum::extract::Path<(u16, String)>,
) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    StatusCode::from_u16(code)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

async fn breaker_route(State(s): State<Arc<Upstream>>) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    if s.healthy.load(Ordering::SeqCst) {
        let workload = crate::util::workload();
        (
            [(header::CONTENT_TYPE, "application/fhir+xml")],
            workload.fhir_bundle(0),
        )
            .into_response()
    } else {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

async fn flaky_route(State(s): State<Arc<Upstream>>) -> Response {
    let n = s.calls.fetch_add(1, Ordering::SeqCst);
    if n < 2 {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/fhir+xml")],
        crate::util::workload().fhir_bundle(0),
    )
        .into_response()
}

fn source(name: &str, route: &str, extra: &str) -> String {
    format!("[[sources]]\nname = \"{name}\"\nkind = \"his-xml\"\nurl = \"http://{{faulty}}/{route}/{{patient_id}}\"\nformat = \"fhir-r4\"\n{extra}\n")
}

async fn start_hostile(sources: &[String]) -> (Gateway, Arc<Upstream>) {
    let state = Arc::new(Upstream::default());
    let gw = start_with(&sources.concat(), hostile(state.clone())).await;
    (gw, state)
}

async fn status_and_detail(gw: &Gateway, path: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = gw.get(path).await;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_trickling_body_still_ends_at_the_deadline() {
    let (gw, _) = start_hostile(&[source(
        "trickle",
        "trickle",
        "timeout_ms = 500\nretry = { attempts = 1 }",
    )])
    .await;
    let (status, detail, took) =
        status_and_detail(&gw, "/v1/data/trickle?patient_id=P000001").await;
    assert_eq!(status, 504, "{detail}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_partner_can_ask_for_a_shorter_budget() {
    let (gw, _) = start_hostile(&[source(
        "hang",
        "hang",
        "timeout_ms = 10000\ndeadline_ms = 20000",
    )])
    .await;
    let started = Instant::now();
    let response = gw
        .client
        .get(format!("{}/v1/data/hang?patient_id=P000001", gw.base))
        .header("request-timeout", "300ms")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let bad = gw
        .client
        .get(format!("{}/v1/data/hang?patient_id=P000001", gw.base))
        .header("request-timeout", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // The fan-out answers within the budget with partial results.
    let started = Instant::now();
    let response = gw
        .client
        .get(format!("{}/v1/patients/P000001/observations", gw.base))
        .header("request-timeout", "400")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    let body: serde_json::Value = response.json().await.unwrap();
    let hang = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "hang")
        .unwrap()
        .clone();
    assert_eq!(hang["error"]["status"], 504);
    assert_eq!(
        body["observations"].as_array().unwrap().len(),
        2 * crate::util::OBS as usize
    );
}

#[tokio::test]
async fn retries_only_retryable_failures_and_stop_at_the_limit() {
    let retry = "retry = { attempts = 3, base_delay_ms = 10, max_delay_ms = 50 }";
    let (gw, up) = start_hostile(&[source("s500", "status/500", retry)]).await;
    assert_eq!(
        status_and_detail(&gw, "/v1/data/s500?patient_id=P000001")
            .await
            .0,
        502
    );
    assert_eq!(up.calls.load(Ordering::SeqCst), 1, "500 is not retried");

    let (gw, up) = start_hostile(&[source("s503", "status/503", retry)]).await;
    assert_eq!(
        status_and_detail(&gw, "/v1/data/s503?patient_id=P000001")
            .await
            .0,
        502
    );
    assert_eq!(
        up.calls.load(Ordering::SeqCst),
        3,
        "503 is retried, 3 attempts in all"
    );

    let (gw, up) = start_hostile(&[source("s404", "status/404", retry)]).await;
    assert_eq!(
        status_and_detail(&gw, "/v1/data/s404?patient_id=P000001")
            .await
            .0,
        404
    );
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);

    let (gw, up) = start_hostile(&[source("flaky", "flaky", retry)]).await;
    let response = gw.get("/v1/data/flaky?patient_id=P000001").await;
    assert_eq!(response.status(), 200, "two 503s then success");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["observations"].as_array().unwrap().len(),
        crate::util::OBS as usize
    );
    assert_eq!(up.calls.load(Ordering::SeqCst), 3);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("medgate_upstream_retries_total{source=\"flaky\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn connection_resets_are_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let resets = Arc::new(AtomicU64::new(0));
    let counter = resets.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = socket.set_zero_linger();
            drop(socket);
        }
    });
    let extra = format!(
        "[[sources]]\nname = \"reset\"\nkind = \"his-xml\"\nurl = \"http://{addr}/fhir/{{patient_id}}\"\nformat = \"fhir-r4\"\nretry = {{ attempts = 2, base_delay_ms = 1, max_delay_ms = 5 }}\n"
    );
    let gw = start_with(&extra, Router::new()).await;
    let (status, detail, _) = status_and_detail(&gw, "/v1/data/reset?patient_id=P000001").await;
    assert_eq!(status, 502, "{detail}");
    assert!(detail.contains("source reset is unreachable"), "{detail}");
    assert_eq!(resets.load(Ordering::SeqCst), 2, "retried once");
}

#[tokio::test]
async fn huge_and_hostile_payloads_are_refused_fast() {
    let cap = "max_body_bytes = 1048576";
    let (gw, _) = start_hostile(&[
        source("declared", "huge-declared", cap),
        source("chunked", "huge-chunked", cap),
        source("xxe", "xxe", ""),
        source("deep", "deep", ""),
        "[[sources]]\nname = \"deepjson\"\nkind = \"wearable-json\"\nurl = \"http://{faulty}/deepjson/{patient_id}\"\nformat = \"openmhealth\"\n".to_string(),
        "[[sources]]\nname = \"notjson\"\nkind = \"wearable-json\"\nurl = \"http://{faulty}/notjson/{patient_id}\"\nformat = \"openmhealth\"\n".to_string(),
    ])
    .await;
    for (name, wanted) in [
        ("declared", "sent more than 1048576 bytes"),
        ("chunked", "sent more than 1048576 bytes"),
        ("xxe", "DOCTYPE"),
        ("deep", "depth"),
        ("deepjson", "recursion limit"),
        ("notjson", "line 1"),
    ] {
        let (status, detail, took) =
            status_and_detail(&gw, &format!("/v1/data/{name}?patient_id=P000001")).await;
        assert_eq!(status, 502, "{name}: {detail}");
        assert!(
            detail.contains(wanted),
            "{name}: wanted `{wanted}` in `{detail}`"
        );
        assert!(took < Duration::from_secs(5), "{name} took {took:?}");
    }
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_then_closes_after_a_good_trial() {
    let breaker = "retry = { attempts = 1 }\nbreaker = { failure_rate = 0.5, min_calls = 4, window_ms = 10000, open_ms = 400 }";
    let (gw, up) = start_hostile(&[source("brk", "breaker", breaker)]).await;
    for _ in 0..4 {
        assert_eq!(
            status_and_detail(&gw, "/v1/data/brk?patient_id=P000001")
                .await
                .0,
            502
        );
    }
    let response = gw.get("/v1/data/brk?patient_id=P000001").await;
    assert_eq!(response.status(), 503, "open: fail fast");
    assert_eq!(header_of(&response, "retry-after"), "1");
    assert_eq!(
        up.calls.load(Ordering::SeqCst),
        4,
        "no call reached the upstream while open"
    );
    let sources: serde_json::Value = gw.get("/v1/sources").await.json().await.unwrap();
    let brk = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "brk")
        .unwrap()
        .clone();
    assert_eq!(brk["circuit"], "open");
    assert!(gw
        .metrics()
        .await
        .contains("medgate_breaker_state{source=\"brk\"} 2"));

    up.healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        gw.get("/v1/data/brk?patient_id=P000001").await.status(),
        200,
        "half-open trial succeeds"
    );
    let sources: serde_json::Value = gw.get("/v1/sources").await.json().await.unwrap();
    let brk = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "brk")
        .unwrap()
        .clone();
    assert_eq!(brk["circuit"], "closed");
}

#[tokio::test]
async fn the_bulkhead_fails_fast_beyond_its_capacity() {
    let (gw, _) = start_hostile(&[source(
        "hang",
        "hang",
        "timeout_ms = 1500\nmax_concurrency = 2\nretry = { attempts = 1 }",
    )])
    .await;
    let gw = Arc::new(gw);
    // Collected, so all six are in flight at once (a lazy map would spawn one per await).
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(
                async move { status_and_detail(&gw, "/v1/data/hang?patient_id=P000001").await },
            )
        })
        .collect();
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.unwrap());
    }
    let rejected: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    let timed_out: Vec<_> = results.iter().filter(|r| r.0 == 504).collect();
    assert_eq!((rejected.len(), timed_out.len()), (4, 2), "{results:?}");
    for r in rejected {
        assert!(
            r.2 < Duration::from_millis(1000),
            "rejections are immediate: {:?}",
            r.2
        );
        assert!(r.1.contains("too many concurrent calls"), "{}", r.1);
    }
}

#[tokio::test]
async fn a_healthy_source_keeps_its_speed_while_another_hangs() {
    let (gw, _) = start_hostile(&[source(
        "hang",
        "hang",
        "timeout_ms = 3000\nmax_concurrency = 64\nretry = { attempts = 1 }",
    )])
    .await;
    let gw = Arc::new(gw);
    let baseline = median_latency(&gw, 40).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..64 {
        let (gw, stop) = (gw.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let _ = gw.get("/v1/data/hang?patient_id=P000001").await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let under_failure = median_latency(&gw, 40).await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.abort();
    }
    let bound = (baseline * 5).max(Duration::from_millis(100));
    assert!(
        under_failure <= bound,
        "healthy p50 {under_failure:?} vs {baseline:?} without the failing source"
    );
}

async fn median_latency(gw: &Gateway, n: usize) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = gw.get("/v1/data/his?patient_id=P000001").await;
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[n / 2]
}
