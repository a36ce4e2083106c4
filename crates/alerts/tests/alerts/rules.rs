//! Rules end to end: reports stored in a real store, processed by the real worker pool,
//! alerts recorded and delivered to a loopback receiver.

use std::collections::BTreeSet;
use std::time::Duration;

use medgate_core::model::Status;
use medgate_core::{CodeableConcept, Value};

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(20);

mod threshold_below_equals {
    crate::both!(super::threshold_below_equals);
}

/// Each rule fires exactly once per matching report and never for the others; numbers are
/// compared exactly; the payload carries the reading as written.
async fn threshold_below_equals(db: &Db) {
    let receiver = Receiver::start().await;
    let config = format!(
        r#"{}
[[rules]]
name = "tachycardia"
source = "epro"
code = "8867-4"
above = 120
notify = ["safety"]
description = "Heart rate above 120/min"

[[rules]]
name = "hypoxia"
source = "epro"
code = "http://loinc.org|59408-5"
below = 90
notify = ["safety"]

[[rules]]
name = "interest"
source = "epro"
code = "44250-9"
equals = "LA6569-3"
notify = ["safety"]

[[rules]]
name = "dizzy"
source = "epro"
code = "q-dizzy"
equals = "yes"
notify = ["safety"]

[[rules]]
name = "fell"
source = "epro"
code = "q-fell"
equals = true
notify = ["safety"]
"#,
        webhook_toml("safety", &receiver.url, 3)
    );
    let s = &db.store;
    let t = "2026-03-01T07:58:00+08:00";
    let coded = Value::CodeableConcept(CodeableConcept::coded(
        "http://loinc.org",
        "LA6569-3",
        Some("Several days"),
    ));
    let mut wrong = numeric("hr-err", "8867-4", "150", "/min", t);
    wrong.status = Some(Status::EnteredInError);
    let cases: Vec<(&str, &str, Vec<medgate_core::Observation>, &[&str])> = vec![
        (
            "A",
            "epro",
            vec![numeric("hr", "8867-4", "121.50", "/min", t)],
            &["tachycardia"],
        ),
        (
            "B",
            "epro",
            vec![numeric("hr", "8867-4", "120", "/min", t)],
            &[],
        ),
        (
            "C",
            "epro",
            vec![numeric("hr", "8867-4", "120.0000000000000001", "/min", t)],
            &["tachycardia"],
        ),
        (
            "D",
            "epro",
            vec![
                numeric("spo2", "59408-5", "89", "%", t),
                answer("dz", "q-dizzy", Value::String("yes".into()), t),
            ],
            &["hypoxia", "dizzy"],
        ),
        (
            "E",
            "epro",
            vec![
                numeric("spo2", "59408-5", "90", "%", t),
                answer("dz", "q-dizzy", Value::String("no".into()), t),
                answer("fl", "q-fell", Value::Boolean(false), t),
            ],
            &[],
        ),
        (
            "F",
            "epro",
            vec![
                numeric("hr1", "8867-4", "130", "/min", t),
                numeric("hr2", "8867-4", "140", "/min", t),
            ],
            &["tachycardia"],
        ),
        (
            "G",
            "epro",
            vec![
                answer("in", "44250-9", coded, t),
                answer("fl", "q-fell", Value::Boolean(true), t),
            ],
            &["interest", "fell"],
        ),
        ("H", "epro", vec![wrong], &[]),
        (
            "I",
            "clinic",
            vec![numeric("hr", "8867-4", "150", "/min", t)],
            &[],
        ),
    ];
    let mut expected = BTreeSet::new();
    let mut receipts = Vec::new();
    let mut receipt_of = std::collections::HashMap::new();
    for (patient, source, observations, fires) in cases {
        let receipt = ingest(s, source, report(&format!("P-{patient}"), observations)).await;
        for rule in fires {
            expected.insert((rule.to_string(), receipt.clone()));
        }
        receipt_of.insert(patient, receipt.clone());
        receipts.push((source, receipt));
    }
    let bg = start(s, alerting(&config, &[]), fast_options()).await;
    for (source, receipt) in &receipts {
        wait_processed(s, source, std::slice::from_ref(receipt), LIMIT).await;
    }
    let alerts = all_alerts(s).await;
    let got: BTreeSet<(String, String)> = alerts
        .iter()
        .map(|a| (a.rule.clone(), a.receipt.clone().unwrap()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        alerts.len(),
        expected.len(),
        "one alert per rule and report"
    );

    let delivered = receiver.wait_for(expected.len(), LIMIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), expected.len(), "each sent once");
    let a = delivered
        .iter()
        .map(Received::json)
        .find(|p| p["data"]["receipt"] == receipt_of["A"].as_str())
        .expect("A was sent");
    assert_eq!(a["type"], "medgate.rule.fired");
    assert_eq!(a["data"]["rule"], "tachycardia");
    assert_eq!(a["data"]["description"], "Heart rate above 120/min");
    assert_eq!(a["data"]["patient_id"], "P-A");
    assert_eq!(a["data"]["source"], "epro");
    assert_eq!(a["data"]["matches"], 1);
    assert_eq!(a["data"]["report"]["kind"], "epro");
    assert_eq!(
        a["data"]["report"]["reported_at"],
        "2026-03-01T08:00:00+08:00"
    );
    assert_eq!(
        a["data"]["test"],
        serde_json::json!({"code": "8867-4", "above": 120})
    );
    let o = &a["data"]["observation"];
    assert_eq!(o["id"], "hr");
    assert_eq!(o["code"], "8867-4");
    assert_eq!(o["code_system"], "http://loinc.org");
    assert_eq!(o["unit"], "/min");
    assert_eq!(o["effective"], "2026-03-01T07:58:00+08:00");
    let raw = delivered
        .iter()
        .find(|r| r.json()["data"]["receipt"] == receipt_of["A"].as_str())
        .unwrap();
    let text = String::from_utf8(raw.body.clone()).unwrap();
    assert!(
        text.contains(r#""value":121.50,"#),
        "digits as written: {text}"
    );
    let f = delivered
        .iter()
        .map(Received::json)
        .find(|p| p["data"]["receipt"] == receipt_of["F"].as_str())
        .unwrap();
    assert_eq!(f["data"]["matches"], 2, "fired once for two readings");
    assert_eq!(f["data"]["observation"]["id"], "hr1");
    let c = delivered
        .iter()
        .find(|r| r.json()["data"]["receipt"] == receipt_of["C"].as_str())
        .unwrap();
    assert!(String::from_utf8_lossy(&c.body).contains(r#""value":120.0000000000000001"#));
    assert!(bg.stop(Duration::from_secs(5)).await);
}

mod component_match {
    crate::both!(super::component_match);
}

/// A rule on the systolic code fires on a blood-pressure panel's systolic component only.
async fn component_match(db: &Db) {
    let receiver = Receiver::start().await;
    let config = format!(
        r#"{}
[[rules]]
name = "systolic-high"
source = "epro"
code = "http://loinc.org|8480-6"
above = 140
notify = ["safety"]
"#,
        webhook_toml("safety", &receiver.url, 3)
    );
    let s = &db.store;
    let t = "2026-03-01T07:58:00+08:00";
    let high = ingest(
        s,
        "epro",
        report("P1", vec![blood_pressure("bp", "150", "95", t)]),
    )
    .await;
    let normal = ingest(
        s,
        "epro",
        report("P2", vec![blood_pressure("bp", "130", "95", t)]),
    )
    .await;
    let diastolic = ingest(
        s,
        "epro",
        report("P3", vec![blood_pressure("bp", "130", "150", t)]),
    )
    .await;
    let bg = start(s, alerting(&config, &[]), fast_options()).await;
    wait_processed(s, "epro", &[high.clone(), normal, diastolic], LIMIT).await;
    let alerts = all_alerts(s).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].receipt.as_deref(), Some(high.as_str()));
    let sent = receiver.wait_for(1, LIMIT).await;
    let o = &sent[0].json()["data"]["observation"];
    assert_eq!(o["id"], "bp#0", "the component's row");
    assert_eq!(o["code"], "8480-6");
    assert_eq!(o["value"], 150);
    assert_eq!(o["unit"], "mm[Hg]");
    assert!(bg.stop(Duration::from_secs(5)).await);
}

mod window_rule {
    crate::both!(super::window_rule);
}

fn bp_json(patient: &str, systolic: &str, effective: &str) -> String {
    format!(
        r#"{{"patient_id": "{patient}", "reported_at": "{effective}", "kind": "device",
            "items": [{{"code": "85354-9", "code_system": "http://loinc.org", "effective": "{effective}",
                        "components": [
                          {{"code": "8480-6", "code_system": "http://loinc.org", "value": {systolic}, "unit": "mm[Hg]"}},
                          {{"code": "8462-4", "code_system": "http://loinc.org", "value": 90, "unit": "mm[Hg]"}}]}}]}}"#
    )
}

/// "3 systolic readings > 160 within 24 h": fires on the third such reading within 24 h
/// (and on a later one while three are in its window), not on two, not across windows.
/// Bodies go through the real report JSON parser.
async fn window_rule(db: &Db) {
    let receiver = Receiver::start().await;
    let config = format!(
        r#"{}
[[rules]]
name = "bp-3x"
source = "epro"
code = "8480-6"
above = 160
count = 3
within_s = 86400
notify = ["safety"]
"#,
        webhook_toml("safety", &receiver.url, 3)
    );
    let s = &db.store;
    let ingest_one = async |patient: &str, systolic: &str, at: &str| {
        ingest_json(s, "epro", &bp_json(patient, systolic, at))
            .await
            .remove(0)
    };
    // Patient W: 161 at 08:00, 170 at 10:00 (two: no alert), 150 at 11:00 (does not pass),
    // 165 at 07:59:59 the next day: the third passing reading within 24 h fires.
    let w1 = ingest_one("P-W", "161", "2026-03-01T08:00:00+08:00").await;
    let w2 = ingest_one("P-W", "170", "2026-03-01T10:00:00+08:00").await;
    let w_low = ingest_one("P-W", "150", "2026-03-01T11:00:00+08:00").await;
    let w3 = ingest_one("P-W", "165", "2026-03-02T07:59:59+08:00").await;
    // Two days later one more: its window holds only itself.
    let w_late = ingest_one("P-W", "190", "2026-03-04T09:00:00+08:00").await;
    // Patient X: two passing readings only; patient Y: three, but over more than 24 h.
    let x1 = ingest_one("P-X", "180", "2026-03-01T08:00:00+08:00").await;
    let x2 = ingest_one("P-X", "181", "2026-03-01T09:00:00+08:00").await;
    let y1 = ingest_one("P-Y", "170", "2026-03-01T08:00:00+08:00").await;
    let y2 = ingest_one("P-Y", "170", "2026-03-01T20:00:00+08:00").await;
    let y3 = ingest_one("P-Y", "170", "2026-03-02T08:00:01+08:00").await;
    let all = [&w1, &w2, &w_low, &w3, &w_late, &x1, &x2, &y1, &y2, &y3].map(|r| r.to_string());
    let bg = start(s, alerting(&config, &[]), fast_options()).await;
    wait_processed(s, "epro", &all, LIMIT).await;
    let alerts = all_alerts(s).await;
    let fired: Vec<&str> = alerts.iter().filter_map(|a| a.receipt.as_deref()).collect();
    assert_eq!(
        fired,
        [w3.as_str()],
        "only the third reading within 24 h fires"
    );
    let sent = receiver.wait_for(1, LIMIT).await;
    let data = &sent[0].json()["data"];
    assert_eq!(
        data["window"],
        serde_json::json!({"count": 3, "within_s": 86400, "observed": 3,
                           "since": "2026-02-28T23:59:59Z", "until": "2026-03-01T23:59:59Z"})
    );
    assert_eq!(data["observation"]["value"], 165);
    assert_eq!(data["observation"]["id"], "rq1-0-0#0");
    assert_eq!(
        data["test"],
        serde_json::json!({"code": "8480-6", "above": 160})
    );
    assert!(bg.stop(Duration::from_secs(5)).await);
}
