//! Early warnings end to end: a report that crosses a rule's threshold and every SAE reach
//! the safety webhook, signed; `GET /v1/alerts` shows them; a slow webhook fills the backlog
//! and uploads get an honest 503 (never a blocked handler) until it drains.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

use crate::util::{header, start_with, Gateway};

/// A webhook receiver: records what it got; answers slowly while `slow` is set.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<(HeaderMap, String)>>,
    slow: AtomicBool,
    count: AtomicU64,
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: String) -> StatusCode {
    if r.slow.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    r.count.fetch_add(1, Ordering::SeqCst);
    r.got.lock().unwrap().push((headers, body));
    StatusCode::NO_CONTENT
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_ENV: &str = "MEDGATE_E2E_WEBHOOK_SECRET";

async fn start_alerting(extra: &str) -> (Gateway, Arc<Receiver>) {
    // SAFETY: set before any gateway reads it; every test sets the same value.
    unsafe { std::env::set_var(SECRET_ENV, SECRET) };
    let receiver = Arc::new(Receiver::default());
    let router = Router::new()
        .route("/hooks/medgate", post(hook))
        .with_state(receiver.clone());
    let config = format!(
        r#"
[[sources]]
name = "epro"
kind = "store"

[[webhooks]]
name = "safety"
url = "http://{{faulty}}/hooks/medgate"
secret_env = "{SECRET_ENV}"
timeout_ms = 200
attempts = 50
base_delay_ms = 10
max_delay_ms = 50

[[rules]]
name = "tachycardia"
source = "epro"
code = "8867-4"
above = 120
notify = ["safety"]

{extra}
"#
    );
    (start_with(&config, router).await, receiver)
}

fn report(patient: &str, heart_rate: &str, sae: bool) -> String {
    format!(
        r#"{{"patient_id": "{patient}", "reported_at": "2026-03-01T08:00:00+08:00", "kind": "epro", "serious_adverse_event": {sae},
            "items": [{{"code": "8867-4", "code_system": "http://loinc.org", "value": {heart_rate}, "unit": "/min",
                        "effective": "2026-03-01T07:58:00+08:00"}}]}}"#
    )
}

async fn upload(gw: &Gateway, body: String) -> reqwest::Response {
    gw.client
        .post(format!("{}/v1/ingest/epro", gw.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn wait_for(receiver: &Receiver, n: u64) {
    let started = Instant::now();
    while receiver.count.load(Ordering::SeqCst) < n {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "webhook not called {n} times"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_threshold_rule_and_an_sae_reach_the_webhook_signed() {
    let (gw, receiver) = start_alerting("[ingest]\nsae_notify = [\"safety\"]\n").await;
    assert_eq!(
        upload(&gw, report("P1", "80", false)).await.status(),
        202,
        "below: no alert"
    );
    assert_eq!(
        upload(&gw, report("P2", "121.50", false)).await.status(),
        202
    );
    assert_eq!(upload(&gw, report("P3", "70", true)).await.status(), 202);
    wait_for(&receiver, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "exactly the tachycardia and the SAE");
    let secret = standardwebhooks::Webhook::new(SECRET).unwrap();
    let mut types = Vec::new();
    for (headers, body) in &got {
        let mut h = http::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            h.insert(name, headers[name].to_str().unwrap().parse().unwrap());
        }
        secret
            .verify(body.as_bytes(), &h)
            .expect("a valid Standard Webhooks signature");
        let payload: serde_json::Value = serde_json::from_str(body).unwrap();
        types.push(payload["type"].as_str().unwrap().to_owned());
        if payload["type"] == "medgate.rule.fired" {
            assert_eq!(payload["data"]["patient_id"], "P2");
            assert!(body.contains("121.50"), "the value as written: {body}");
        }
    }
    types.sort();
    assert_eq!(types, ["medgate.rule.fired", "medgate.sae.reported"]);

    let alerts = gw.json("/v1/alerts", 200, "application/json").await;
    let listed = alerts["alerts"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|a| a["state"] == "delivered"), "{alerts}");
    let entry = crate::util::audit_entries(&gw)
        .into_iter()
        .rev()
        .find(|e| e["route"] == "/v1/alerts")
        .unwrap();
    let mut patients: Vec<String> = serde_json::from_value(entry["patient_ids"].clone()).unwrap();
    patients.sort();
    assert_eq!(patients, ["P2", "P3"], "listing alerts is a data access");
}

#[tokio::test]
async fn a_slow_webhook_fills_the_backlog_and_uploads_are_shed_honestly_until_it_drains() {
    let (gw, receiver) =
        start_alerting("[ingest]\nsae_notify = []\nhigh_water = 4\nqueue_capacity = 8\n").await;
    receiver.slow.store(true, Ordering::SeqCst);
    let mut shed_at = None;
    for i in 0..20 {
        let started = Instant::now();
        let response = upload(&gw, report(&format!("S{i}"), "150", false)).await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the handler never blocks"
        );
        match response.status().as_u16() {
            202 => {}
            503 => {
                let retry: u64 = header(&response, "retry-after").parse().unwrap();
                assert!((1..=300).contains(&retry));
                shed_at = Some(i);
                break;
            }
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(crate::util::BACKLOG_POLL * 2).await;
    }
    let shed_at = shed_at.expect("a full backlog sheds uploads");
    assert!(shed_at >= 4, "not before the high-water mark: {shed_at}");
    let ready: serde_json::Value = reqwest::get(format!("{}/readyz", gw.ops))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ready["ingest"]["depth"].as_u64().unwrap() >= 4, "{ready}");

    // The receiver recovers: every accepted report's alert is delivered, and uploads are
    // accepted again.
    receiver.slow.store(false, Ordering::SeqCst);
    wait_for(&receiver, shed_at).await;
    let started = Instant::now();
    loop {
        tokio::time::sleep(crate::util::BACKLOG_POLL * 2).await;
        let response = upload(&gw, report("after", "150", false)).await;
        if response.status() == 202 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never recovered"
        );
    }
}
