//! The byte budget for upstream bodies in flight, against a real loopback upstream: a body
//! that does not fit is shed with `Overloaded` (not counted against the breaker), every
//! reservation is given back when the body is dropped or the read is cancelled, and the
//! `medgate_upstream_body_bytes_in_flight` gauge follows it back to 0.
//!
//! Its own test binary, so the gauge it reads is moved by these tests only; they run one at
//! a time (`SERIAL`) for the same reason.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use medgate_core::config::{BreakerConfig, RetryConfig};
use medgate_core::{CircuitState, Error, FetchRequest, Upstream};
use medgate_upstream::{shared_client, BodyBudget, HttpUpstream, UpstreamPolicy};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::Semaphore;

const MIB: usize = 1 << 20;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder of this binary");
        handle
    })
}

/// A metric's value in the rendered exposition (`None` before it is first recorded).
fn metric(name: &str) -> Option<f64> {
    recorder().render().lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name || key.starts_with(&format!("{name}{{")))
            .then(|| value.trim().parse().unwrap())
    })
}

/// Serves `/{kind}/{len}`: `len` bytes, half at once and the rest only when the test adds a
/// permit to the gate. `kind` is `sized` (with `Content-Length`) or `chunked` (without).
struct Loopback {
    port: u16,
    gate: Arc<Semaphore>,
}

async fn stalled(
    State(gate): State<Arc<Semaphore>>,
    Path((kind, len)): Path<(String, usize)>,
) -> Response {
    let half = Bytes::from(vec![b'x'; len / 2]);
    let rest = Bytes::from(vec![b'y'; len - len / 2]);
    let stream = futures::stream::once(async move { Ok::<_, Infallible>(half) }).chain(
        futures::stream::once(async move {
            gate.acquire().await.unwrap().forget();
            Ok(rest)
        }),
    );
    let mut response = Response::builder();
    if kind == "sized" {
        response = response.header(header::CONTENT_LENGTH, len);
    }
    response.body(Body::from_stream(stream)).unwrap()
}

impl Loopback {
    async fn start() -> Loopback {
        let gate = Arc::new(Semaphore::new(0));
        let app = axum::Router::new()
            .route("/{kind}/{len}", get(stalled))
            .with_state(gate.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Loopback { port, gate }
    }

    fn url(&self, kind: &str, len: usize) -> String {
        format!("http://127.0.0.1:{}/{kind}/{len}", self.port)
    }

    /// Lets `n` stalled bodies finish.
    fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }
}

/// Generous limits, one attempt, a breaker that opens on the first failure it is told of.
fn policy() -> UpstreamPolicy {
    UpstreamPolicy {
        attempt_timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(20),
        max_body_bytes: 4 * MIB as u64,
        max_concurrency: 16,
        retry: RetryConfig {
            attempts: 3,
            base_delay_ms: 1,
            max_delay_ms: 5,
        },
        breaker: BreakerConfig {
            failure_rate: 0.5,
            window_ms: 10_000,
            min_calls: 1,
            open_ms: 60_000,
        },
    }
}

fn upstream(budget: &Arc<BodyBudget>) -> Arc<HttpUpstream> {
    HttpUpstream::with_budget("his", shared_client().unwrap(), policy(), budget.clone())
}

fn request() -> FetchRequest {
    FetchRequest::new("P000001", "req-1")
}

/// Waits until the budget holds at least `bytes` (the read has reached that point).
async fn until_held(budget: &BodyBudget, bytes: u64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while budget.in_flight() < bytes {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the body reached the budget");
}

fn assert_shed(e: &Error) {
    assert!(
        matches!(e, Error::Overloaded { reason, retry_after: Some(_) } if reason.contains("max_inflight_body_bytes")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_body_that_does_not_fit_is_shed_and_every_byte_comes_back() {
    let _serial = SERIAL.lock().await;
    recorder();
    let server = Loopback::start().await;
    let budget = BodyBudget::new(3 * MIB as u64 / 2);
    let upstream = upstream(&budget);

    // Two 1 MiB bodies at once under a 1.5 MiB budget: the first reserves its Content-Length
    // as soon as its headers arrive and stalls half-way; the second cannot be admitted.
    let first = {
        let upstream = upstream.clone();
        let url = server.url("sized", MIB);
        tokio::spawn(async move { upstream.get(&url, &request()).await })
    };
    until_held(&budget, MIB as u64).await;
    assert_eq!(
        metric("medgate_upstream_body_bytes_in_flight"),
        Some(MIB as f64)
    );
    let e = upstream
        .get(&server.url("sized", MIB), &request())
        .await
        .unwrap_err();
    assert_shed(&e);
    assert_eq!(metric("medgate_body_budget_rejections_total"), Some(1.0));
    // Shedding is the gateway's doing: not retried, and no verdict on the upstream.
    assert_eq!(upstream.circuit(), Some(CircuitState::Closed));
    assert_eq!(metric("medgate_upstream_retries_total"), None);

    server.release(1);
    let body = first.await.unwrap().unwrap();
    assert_eq!(body.bytes.len(), MIB);
    assert_eq!(budget.in_flight(), MIB as u64, "the body holds its bytes");
    // A slice borrowing the body (as a parser's output may) keeps the reservation.
    let tail = body.bytes.slice(MIB - 4..);
    drop(body);
    assert_eq!(budget.in_flight(), MIB as u64);
    drop(tail);
    assert_eq!(budget.in_flight(), 0);
    assert_eq!(budget.available(), budget.limit());
    assert_eq!(metric("medgate_upstream_body_bytes_in_flight"), Some(0.0));

    // Without Content-Length the reservation grows with the buffer, and is shed midway.
    let held = {
        server.release(1);
        upstream
            .get(&server.url("sized", MIB), &request())
            .await
            .unwrap()
    };
    let chunked = {
        let upstream = upstream.clone();
        let url = server.url("chunked", MIB);
        tokio::spawn(async move { upstream.get(&url, &request()).await })
    };
    server.release(1);
    assert_shed(&chunked.await.unwrap().unwrap_err());
    assert_eq!(budget.in_flight(), MIB as u64);
    drop(held);
    assert_eq!(budget.in_flight(), 0);
    assert_eq!(metric("medgate_upstream_body_bytes_in_flight"), Some(0.0));

    // The upstream was never blamed: a body that fits is read as usual.
    server.release(1);
    let body = upstream
        .get(&server.url("chunked", MIB), &request())
        .await
        .unwrap();
    assert_eq!(body.bytes.len(), MIB);
    assert!(body.bytes[..MIB / 2].iter().all(|&b| b == b'x'));
    assert!(body.bytes[MIB / 2..].iter().all(|&b| b == b'y'));
    drop(body);
    assert_eq!(budget.in_flight(), 0);
}

#[tokio::test]
async fn a_read_cancelled_mid_body_gives_its_reservation_back() {
    let _serial = SERIAL.lock().await;
    recorder();
    let server = Loopback::start().await;
    let budget = BodyBudget::new(4 * MIB as u64);
    let upstream = upstream(&budget);

    for kind in ["sized", "chunked"] {
        // The read stalls half-way through the body; then its caller hangs up.
        let read = {
            let upstream = upstream.clone();
            let url = server.url(kind, 2 * MIB);
            tokio::spawn(async move { upstream.get(&url, &request()).await })
        };
        until_held(&budget, MIB as u64).await;
        read.abort();
        assert!(read.await.unwrap_err().is_cancelled());
        assert_eq!(budget.in_flight(), 0, "{kind}");
        assert_eq!(budget.available(), 4 * MIB as u64, "{kind}");
        assert_eq!(metric("medgate_upstream_body_bytes_in_flight"), Some(0.0));
    }

    // A future dropped in place (not a task) gives everything back too.
    let url = server.url("sized", 2 * MIB);
    let request = request();
    let read = upstream.get(&url, &request);
    let outcome = tokio::time::timeout(Duration::from_millis(300), read).await;
    assert!(outcome.is_err(), "the body is stalled");
    assert_eq!(budget.in_flight(), 0);
    assert_eq!(upstream.circuit(), Some(CircuitState::Closed));
}
