//! Breaker and bulkhead defects from issue #7, each against a real loopback upstream.

use std::time::{Duration, Instant};

use medgate_core::{CircuitState, Error, FetchRequest, Upstream};
use medgate_upstream::{shared_client, HttpUpstream};

use crate::support::{policy, request, Mode, Upstream as Loopback};

fn with_deadline(after: Duration) -> FetchRequest {
    let mut r = request();
    r.deadline = Some(Instant::now() + after);
    r
}

/// Fails once so the breaker (min_calls 1) opens, then waits out its 100 ms cool-down.
async fn open_then_cool(upstream: &HttpUpstream, server: &Loopback) {
    server.set(Mode::Fail);
    let e = upstream
        .get(&server.url("http", "P1"), &request())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::UpstreamStatus { status: 500, .. }),
        "{e:?}"
    );
    assert_eq!(upstream.circuit(), Some(CircuitState::Open));
    tokio::time::sleep(Duration::from_millis(130)).await;
    assert_eq!(upstream.circuit(), Some(CircuitState::HalfOpen));
}

fn is_breaker_rejection(e: &Error) -> bool {
    matches!(e, Error::Unavailable { reason, .. } if reason.contains("circuit breaker"))
}

/// Issue #7: a half-open trial whose caller hung up left the breaker half-open forever.
#[tokio::test]
async fn a_dropped_half_open_trial_lets_the_next_call_try() {
    let mut server = Loopback::http(Mode::Ok).await;
    let upstream = HttpUpstream::new("his", shared_client().unwrap(), policy());
    open_then_cool(&upstream, &server).await;

    server.set(Mode::Hang);
    let trial = {
        let upstream = upstream.clone();
        let url = server.url("http", "P1");
        tokio::spawn(async move { upstream.get(&url, &request()).await })
    };
    server
        .arrivals
        .recv()
        .await
        .expect("the trial reached the upstream");
    let e = upstream
        .get(&server.url("http", "P1"), &request())
        .await
        .unwrap_err();
    assert!(is_breaker_rejection(&e), "one trial at a time: {e:?}");
    trial.abort(); // the client hangs up: the trial's future is dropped mid-call
    assert!(trial.await.unwrap_err().is_cancelled());

    server.set(Mode::Ok);
    let body = upstream
        .get(&server.url("http", "P1"), &request())
        .await
        .expect("the trial was handed back, so this call is the new trial");
    assert_eq!(&body.bytes[..], b"hello");
    assert_eq!(upstream.circuit(), Some(CircuitState::Closed));
}

/// Issue #7: the early return for a deadline already spent kept the trial too.
#[tokio::test]
async fn a_call_with_no_time_left_does_not_take_the_trial() {
    let server = Loopback::http(Mode::Ok).await;
    let upstream = HttpUpstream::new("his", shared_client().unwrap(), policy());
    open_then_cool(&upstream, &server).await;
    server.set(Mode::Ok);
    let mut spent = request();
    spent.deadline = Some(Instant::now());
    let e = upstream
        .get(&server.url("http", "P1"), &spent)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert_eq!(upstream.circuit(), Some(CircuitState::HalfOpen));
    upstream
        .get(&server.url("http", "P1"), &request())
        .await
        .expect("the trial is still free");
    assert_eq!(upstream.circuit(), Some(CircuitState::Closed));
}

/// Issue #7: a partner's 20 ms `Request-Timeout` against a healthy 100 ms upstream opened the
/// shared breaker. The caller's budget is reported as a timeout but is not the upstream's fault.
#[tokio::test]
async fn a_callers_short_budget_never_opens_the_breaker() {
    let server = Loopback::http(Mode::Slow).await;
    let mut p = policy();
    p.breaker.min_calls = 5;
    p.retry.attempts = 3;
    let upstream = HttpUpstream::new("his", shared_client().unwrap(), p);
    for _ in 0..20 {
        let e = upstream
            .get(
                &server.url("http", "P1"),
                &with_deadline(Duration::from_millis(20)),
            )
            .await
            .unwrap_err();
        let Error::Timeout { after, .. } = e else {
            panic!("expected a timeout, got {e:?}");
        };
        assert!(after <= Duration::from_millis(20), "{after:?}");
        assert_eq!(upstream.circuit(), Some(CircuitState::Closed));
    }
    let body = upstream
        .get(&server.url("http", "P1"), &request())
        .await
        .expect("the healthy upstream still serves callers with time to wait");
    assert_eq!(&body.bytes[..], b"slow hello");
}

/// The control for the test above: the source's own 20 ms `timeout_ms` against the same
/// upstream is the upstream's failure and opens the breaker.
#[tokio::test]
async fn the_sources_own_timeout_opens_the_breaker() {
    let server = Loopback::http(Mode::Slow).await;
    let mut p = policy();
    p.attempt_timeout = Duration::from_millis(20);
    p.breaker.min_calls = 5;
    let upstream = HttpUpstream::new("his", shared_client().unwrap(), p);
    for i in 1..=5 {
        let e = upstream
            .get(&server.url("http", "P1"), &request())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "call {i}: {e:?}");
    }
    assert_eq!(upstream.circuit(), Some(CircuitState::Open));
    let e = upstream
        .get(&server.url("http", "P1"), &request())
        .await
        .unwrap_err();
    assert!(is_breaker_rejection(&e), "{e:?}");
}

/// Bulkhead permits come back when callers hang up mid-call.
#[tokio::test]
async fn dropped_calls_give_their_bulkhead_permits_back() {
    let mut server = Loopback::http(Mode::Hang).await;
    let mut p = policy();
    p.max_concurrency = 2;
    let upstream = HttpUpstream::new("his", shared_client().unwrap(), p);
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let upstream = upstream.clone();
            let url = server.url("http", "P1");
            tokio::spawn(async move { upstream.get(&url, &request()).await })
        })
        .collect();
    for _ in 0..2 {
        server.arrivals.recv().await.unwrap();
    }
    let e = upstream
        .get(&server.url("http", "P1"), &request())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Unavailable { reason, .. } if reason.contains("too many concurrent")),
        "the cap holds: {e:?}"
    );
    for call in calls {
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
    }
    server.set(Mode::Ok);
    let (url, req) = (server.url("http", "P1"), request());
    let (a, b) = tokio::join!(upstream.get(&url, &req), upstream.get(&url, &req));
    assert!(
        a.is_ok() && b.is_ok(),
        "both permits came back: {a:?} {b:?}"
    );
}

/// A call dropped while it sleeps between retries gives back its permit too.
#[tokio::test]
async fn a_call_dropped_during_backoff_gives_its_permit_back() {
    let server = Loopback::http(Mode::Ok).await;
    let mut p = policy();
    p.max_concurrency = 1;
    p.retry.attempts = 3;
    p.retry.base_delay_ms = 10_000;
    p.retry.max_delay_ms = 10_000;
    p.breaker.min_calls = 100;
    let upstream = HttpUpstream::new("his", shared_client().unwrap(), p);
    // A refused connection is retryable: the call lands in its 10 s back-off sleep.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let call = {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            upstream
                .get(&format!("http://{closed}/x"), &request())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!call.is_finished(), "the call is sleeping before its retry");
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    upstream
        .get(&server.url("http", "P1"), &request())
        .await
        .expect("the only permit came back");
}

/// Limits at the edge of their types (which `medgate check` may one day bound tighter) do not
/// panic the data path.
#[tokio::test]
async fn extreme_policy_values_do_not_panic() {
    let server = Loopback::http(Mode::Ok).await;
    let mut p = policy();
    p.attempt_timeout = Duration::MAX;
    p.deadline = Duration::MAX;
    p.max_concurrency = usize::MAX;
    p.breaker.window_ms = u64::MAX;
    p.breaker.open_ms = u64::MAX;
    p.retry.max_delay_ms = u64::MAX;
    let upstream = HttpUpstream::new("his", shared_client().unwrap(), p);
    let body = upstream
        .get(&server.url("http", "P1"), &request())
        .await
        .unwrap();
    assert_eq!(&body.bytes[..], b"hello");
}
