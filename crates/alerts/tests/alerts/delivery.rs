//! Webhook delivery end to end: SAE first and at once, Standard Webhooks signatures checked
//! by an independent implementation (the `standardwebhooks` crate), retries, dead letters
//! and the `GET /v1/alerts` listing.

use std::time::{Duration, Instant};

use medgate_alerts::{list_alerts, AlertListParams, AlertStateView};
use medgate_core::Value;
use medgate_store::{AlertState, ReportState};

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(20);

fn tachycardia(hooks: &str, notify: &str) -> String {
    format!(
        r#"{hooks}
[[rules]]
name = "tachycardia"
source = "epro"
code = "8867-4"
above = 120
notify = {notify}
"#
    )
}

fn fast_heart(patient: &str) -> medgate_store::NewReport {
    report(
        patient,
        vec![numeric(
            "hr",
            "8867-4",
            "130",
            "/min",
            "2026-03-01T07:58:00+08:00",
        )],
    )
}

mod sae_first_and_at_once {
    crate::both!(super::sae_first_and_at_once);
}

/// An SAE is claimed before older reports, reaches its webhook at once, and carries the
/// report's rows.
async fn sae_first_and_at_once(db: &Db) {
    let receiver = Receiver::start().await;
    let config = webhook_toml("safety", &receiver.url, 3);
    let s = &db.store;
    let t = "2026-03-01T07:58:00+08:00";
    let mut normal = Vec::new();
    for i in 0..30 {
        let r = report(
            &format!("P{i:03}"),
            vec![numeric("hr", "8867-4", "70", "/min", t)],
        );
        normal.push(ingest(s, "epro", r).await);
    }
    let mut sae = report(
        "P-SAE",
        vec![answer(
            "ae",
            "q-event",
            Value::String("Anaphylaxis".into()),
            t,
        )],
    );
    sae.serious_adverse_event = true;
    sae.kind = "clinical".into();
    sae.meta = Some(serde_json::json!({"app": {"id": "site-portal"}}));
    let sae_receipt = ingest(s, "epro", sae).await;

    // One worker taking one job at a time: the order of processing is the order of claims.
    let mut options = fast_options();
    options.pool.workers = 1;
    options.pool.batch = 1;
    let bg = start(s, alerting(&config, &["safety"]), options).await;
    let sent = receiver.wait_for(1, LIMIT).await;
    let sae_status = s.receipt("epro", &sae_receipt).await.unwrap().unwrap();
    assert_eq!(sae_status.state, ReportState::Processed);
    wait_processed(s, "epro", &normal, LIMIT).await;
    for id in &normal {
        let st = s.receipt("epro", id).await.unwrap().unwrap();
        assert!(
            st.processed_at.unwrap() >= sae_status.processed_at.unwrap(),
            "the SAE was processed before every older report"
        );
    }
    let p = sent[0].json();
    assert_eq!(p["type"], "medgate.sae.reported");
    assert_eq!(p["data"]["rule"], "sae");
    assert_eq!(p["data"]["receipt"], sae_receipt.as_str());
    assert_eq!(p["data"]["patient_id"], "P-SAE");
    assert_eq!(p["data"]["report"]["kind"], "clinical");
    assert_eq!(p["data"]["report"]["serious_adverse_event"], true);
    assert_eq!(p["data"]["meta"]["app"]["id"], "site-portal");
    assert_eq!(p["data"]["observation_count"], 1);
    assert_eq!(p["data"]["observations"][0]["value"], "Anaphylaxis");
    assert_eq!(p["data"]["observations"][0]["code"], "q-event");

    // With the pool idle, a new SAE is delivered at once (woken, not polled).
    let mut sae2 = report("P-SAE2", vec![]);
    sae2.serious_adverse_event = true;
    sae2.observations = vec![answer("ae", "q-event", Value::String("Seizure".into()), t)];
    let before = Instant::now();
    let id2 = ingest(s, "epro", sae2).await;
    bg.wake().notify();
    let sent = receiver.wait_for(2, LIMIT).await;
    let latency = sent[1].at - before;
    assert_eq!(sent[1].json()["data"]["receipt"], id2.as_str());
    assert!(
        latency < Duration::from_secs(2),
        "SAE delivered after {latency:?}"
    );
    eprintln!("SAE ingest → webhook received: {latency:?}");
    assert!(bg.stop(Duration::from_secs(5)).await);
}

mod signature_verifies {
    crate::both!(super::signature_verifies);
}

/// The `standardwebhooks` crate (its own HMAC and base64) accepts our signature over the
/// exact bytes received, and refuses a changed body, id or secret.
async fn signature_verifies(db: &Db) {
    let receiver = Receiver::start().await;
    let config = tachycardia(&webhook_toml("safety", &receiver.url, 3), r#"["safety"]"#);
    let s = &db.store;
    let receipt = ingest(s, "epro", fast_heart("P1")).await;
    let bg = start(s, alerting(&config, &[]), fast_options()).await;
    let got = receiver.wait_for(1, LIMIT).await.remove(0);
    let verifier = standardwebhooks::Webhook::new(&secret()).expect("secret");
    verifier
        .verify(&got.body, &got.headers)
        .expect("the signature verifies");
    assert_eq!(got.header("content-type"), "application/json");
    let alerts = all_alerts(s).await;
    assert_eq!(
        got.body,
        alerts[0].payload.as_bytes(),
        "the stored bytes, unchanged"
    );
    assert_eq!(
        got.header("webhook-id"),
        medgate_alerts::delivery::message_id(alerts[0].id, &got.body)
    );
    assert_eq!(got.json()["data"]["receipt"], receipt.as_str());
    let ts: i64 = got.header("webhook-timestamp").parse().unwrap();
    assert!((jiff::Timestamp::now().as_second() - ts).abs() < 60);

    let mut tampered = got.body.clone();
    let at = tampered.iter().position(|b| *b == b'3').unwrap();
    tampered[at] = b'9';
    assert!(
        verifier.verify(&tampered, &got.headers).is_err(),
        "changed body"
    );
    let mut headers = got.headers.clone();
    headers.insert("webhook-id", "alert_1_0000000000000000".parse().unwrap());
    assert!(verifier.verify(&got.body, &headers).is_err(), "changed id");
    let other = standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert!(
        other.verify(&got.body, &got.headers).is_err(),
        "another secret"
    );
    assert!(bg.stop(Duration::from_secs(5)).await);
}

mod retries_then_delivered {
    crate::both!(super::retries_then_delivered);
}

/// 500, 500, then 200: three attempts with the same id and bytes, each signed; between
/// them the alert shows the failure; finally delivered.
async fn retries_then_delivered(db: &Db) {
    let receiver = Receiver::start().await;
    receiver.answer(&[500, 500]);
    let gate = receiver.gate(2);
    let config = tachycardia(&webhook_toml("safety", &receiver.url, 5), r#"["safety"]"#);
    let s = &db.store;
    ingest(s, "epro", fast_heart("P1")).await;
    let bg = start(s, alerting(&config, &[]), fast_options()).await;

    // The second attempt is held at the receiver: the first one's failure is recorded.
    receiver.wait_for(2, LIMIT).await;
    let alert = all_alerts(s).await.remove(0);
    assert_eq!(alert.state, AlertState::Delivering);
    assert_eq!(alert.attempts, 2);
    assert_eq!(alert.last_status, Some(500));
    assert_eq!(
        alert.last_error.as_deref(),
        Some("the webhook answered HTTP 500")
    );
    gate.add_permits(1);

    let got = receiver.wait_for(3, LIMIT).await;
    let params = AlertListParams {
        state: Some(AlertStateView::Delivered),
        ..Default::default()
    };
    let mut delivered = Vec::new();
    eventually("the alert is delivered", LIMIT, async || {
        delivered = list_alerts(s, &params).await.unwrap().alerts;
        !delivered.is_empty()
    })
    .await;
    let view = &delivered[0];
    assert_eq!(view.attempts, 3);
    assert_eq!(view.last_status, Some(200));
    assert!(view.delivered_at.is_some());
    let verifier = standardwebhooks::Webhook::new(&secret()).unwrap();
    for r in &got {
        assert_eq!(
            r.header("webhook-id"),
            got[0].header("webhook-id"),
            "one id"
        );
        assert_eq!(r.body, got[0].body, "the same bytes");
        verifier
            .verify(&r.body, &r.headers)
            .expect("each attempt signed");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 3, "nothing after the 200");
    // The JSON answer of GET /v1/alerts embeds the payload as sent.
    let json =
        serde_json::to_value(list_alerts(s, &AlertListParams::default()).await.unwrap()).unwrap();
    assert_eq!(json["alerts"][0]["state"], "delivered");
    assert_eq!(json["alerts"][0]["payload"]["data"]["rule"], "tachycardia");
    assert!(json.get("next_before_id").is_none());
    assert!(bg.stop(Duration::from_secs(5)).await);
}

mod dead_lettered {
    crate::both!(super::dead_lettered);
}

/// A webhook that keeps failing (503, a timeout, a refused connection) is tried
/// `attempts` times, then dead-lettered and listed as such.
async fn dead_lettered(db: &Db) {
    let failing = Receiver::start().await;
    failing.answer(&[503; 10]);
    let slow = Receiver::start().await;
    slow.delay(Duration::from_millis(600));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let hooks = format!(
        "{}{}{}",
        webhook_toml("failing", &failing.url, 3),
        webhook_toml("slow", &slow.url, 2).replace("timeout_ms = 2000", "timeout_ms = 200"),
        webhook_toml("closed", &closed, 2),
    );
    let config = tachycardia(&hooks, r#"["failing", "slow", "closed"]"#);
    let s = &db.store;
    let receipt = ingest(s, "epro", fast_heart("P1")).await;
    let bg = start(s, alerting(&config, &[]), fast_options()).await;
    let dead = AlertListParams {
        state: Some(AlertStateView::Dead),
        ..Default::default()
    };
    let mut listed = Vec::new();
    eventually("three dead letters", LIMIT, async || {
        listed = list_alerts(s, &dead).await.unwrap().alerts;
        listed.len() == 3
    })
    .await;
    let by = |name: &str| listed.iter().find(|a| a.webhook == name).unwrap();
    assert_eq!(by("failing").attempts, 3);
    assert_eq!(by("failing").last_status, Some(503));
    assert_eq!(
        by("failing").last_error.as_deref(),
        Some("the webhook answered HTTP 503")
    );
    assert_eq!(by("slow").attempts, 2);
    assert_eq!(by("slow").last_status, None);
    assert_eq!(
        by("slow").last_error.as_deref(),
        Some("no answer within 200 ms")
    );
    assert_eq!(by("closed").attempts, 2);
    assert_eq!(
        by("closed").last_error.as_deref(),
        Some("could not connect to the webhook")
    );
    for a in &listed {
        assert_eq!(a.receipt.as_deref(), Some(receipt.as_str()));
        assert_eq!(a.state, AlertStateView::Dead);
        assert!(a.delivered_at.is_none() && a.next_attempt_at.is_none());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(failing.received().len(), 3, "no attempt after the last");
    let delivered = AlertListParams {
        state: Some(AlertStateView::Delivered),
        ..Default::default()
    };
    assert!(list_alerts(s, &delivered).await.unwrap().alerts.is_empty());
    assert!(bg.stop(Duration::from_secs(5)).await);
}

mod listing {
    crate::both!(super::listing);
}

/// `GET /v1/alerts`: newest first, paged by `before_id`, filtered by state; bad limits
/// are client errors.
async fn listing(db: &Db) {
    let s = &db.store;
    let mut ids = Vec::new();
    for i in 0..5 {
        let receipt = ingest(s, "epro", fast_heart(&format!("P{i}"))).await;
        let alert = medgate_store::NewAlert {
            rule: "tachycardia".into(),
            webhook: "safety".into(),
            receipt: Some(receipt),
            source: Some("epro".into()),
            payload: serde_json::json!({"type": "medgate.rule.fired", "n": i}),
        };
        assert_eq!(s.record_alerts(&[alert]).await.unwrap(), 1);
        ids.push(i);
    }
    let page = |before_id, limit| AlertListParams {
        state: None,
        before_id,
        limit,
    };
    let first = list_alerts(s, &page(None, Some(2))).await.unwrap();
    let n: Vec<i64> = first.alerts.iter().map(|a| a.id).collect();
    assert_eq!(first.alerts.len(), 2);
    assert!(n[0] > n[1], "newest first");
    let before = first.next_before_id.expect("more pages");
    let second = list_alerts(s, &page(Some(before), Some(10))).await.unwrap();
    assert_eq!(second.alerts.len(), 3);
    assert!(second.next_before_id.is_none());
    assert!(second.alerts.iter().all(|a| a.id < before));
    assert_eq!(
        serde_json::to_value(&second.alerts[2]).unwrap()["payload"],
        serde_json::json!({"type": "medgate.rule.fired", "n": 0})
    );
    let pending = AlertListParams {
        state: Some(AlertStateView::Pending),
        ..Default::default()
    };
    assert_eq!(list_alerts(s, &pending).await.unwrap().alerts.len(), 5);
    for bad in [
        page(None, Some(0)),
        page(None, Some(1001)),
        page(Some(0), None),
    ] {
        let e = list_alerts(s, &bad).await.unwrap_err();
        assert!(e.is_client_error(), "{e}");
    }
    let q: AlertListParams = serde_json::from_value(serde_json::json!({"state": "dead"})).unwrap();
    assert_eq!(q.state, Some(AlertStateView::Dead));
    assert!(
        serde_json::from_value::<AlertListParams>(serde_json::json!({"state": "gone"})).is_err()
    );
}
