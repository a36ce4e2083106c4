//! Partner access: API keys, permissions, rate limits, concurrency caps and the audit trail.

use std::time::Duration;

use crate::util::{audit_entries, header, start, Gateway};

const LIMITED: &str = r#"
[[partners]]
name = "acme"
key_sha256 = "{acme}"
sources = ["his"]
formats = ["csv"]
rate_per_second = 100
burst = 100

[[partners]]
name = "slowpoke"
key_sha256 = "{slowpoke}"
sources = ["*"]
rate_per_second = 1
burst = 3
"#;

const ACME_KEY: &str = "acme-secret-key-42";
const SLOW_KEY: &str = "slowpoke-secret-key-7";

async fn start_acme() -> Gateway {
    let config = LIMITED
        .replace("{acme}", &medgate::access::sha256_hex(ACME_KEY))
        .replace("{slowpoke}", &medgate::access::sha256_hex(SLOW_KEY));
    start(&config).await
}

async fn get_as(gw: &Gateway, key: Option<&str>, path: &str) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{}{path}", gw.base));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn missing_or_unknown_keys_are_401_with_a_challenge() {
    let gw = start_acme().await;
    for key in [None, Some("wrong-key"), Some("")] {
        let response = get_as(&gw, key, "/v1/data/his?patient_id=P000001").await;
        assert_eq!(response.status(), 401, "{key:?}");
        assert_eq!(
            header(&response, "www-authenticate"),
            "Bearer realm=\"medgate\""
        );
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json"
        );
    }
    let response = reqwest::Client::new()
        .get(format!("{}/v1/sources", gw.base))
        .header("authorization", format!("Basic {ACME_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Health, readiness and the API description need no key; metrics (they name every
    // source and partner) are on the operators' listener only.
    for open in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(get_as(&gw, None, open).await.status(), 200, "{open}");
    }
    let metrics = get_as(&gw, None, "/metrics").await;
    assert_eq!(metrics.status(), 404);
    assert_eq!(header(&metrics, "content-type"), "application/problem+json");
    assert!(!metrics.text().await.unwrap().contains("partner"));
    for open in ["/healthz", "/readyz", "/metrics"] {
        let response = reqwest::get(format!("{}{open}", gw.ops)).await.unwrap();
        assert_eq!(response.status(), 200, "{open} on the operators' listener");
    }
}

#[tokio::test]
async fn a_partner_sees_and_reads_only_what_it_is_allowed() {
    let gw = start_acme().await;
    let body: serde_json::Value = get_as(&gw, Some(ACME_KEY), "/v1/sources")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["his"]);

    let forbidden = get_as(&gw, Some(ACME_KEY), "/v1/data/wearable?patient_id=P000001").await;
    assert_eq!(forbidden.status(), 403);
    let problem: serde_json::Value = forbidden.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        "partner acme may not read source wearable"
    );

    let forbidden = get_as(
        &gw,
        Some(ACME_KEY),
        "/v1/export?source=his&patient_id=P000001&format=xlsx",
    )
    .await;
    assert_eq!(forbidden.status(), 403);
    let problem: serde_json::Value = forbidden.json().await.unwrap();
    assert_eq!(
        problem["detail"],
        "partner acme may not download format xlsx"
    );

    // The fan-out only includes the sources the partner may read.
    let body: serde_json::Value = get_as(&gw, Some(ACME_KEY), "/v1/patients/P000001/observations")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["sources"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after() {
    let gw = start_acme().await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get_as(&gw, Some(SLOW_KEY), "/v1/sources").await);
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, vec![200, 200, 200, 429, 429], "burst 3 at 1/s");
    let limited = &statuses[3];
    assert_eq!(header(limited, "retry-after"), "1");
    // Another partner is unaffected.
    assert_eq!(gw.get("/v1/sources").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get_as(&gw, Some(SLOW_KEY), "/v1/sources").await.status(),
        200,
        "the bucket refills"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("medgate_rate_limit_rejections_total{partner=\"slowpoke\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_data_access_is_audited_before_the_answer_and_the_chain_verifies() {
    let gw = start("").await;
    assert_eq!(
        gw.get("/v1/data/his?patient_id=P000002").await.status(),
        200
    );
    assert_eq!(
        gw.get("/v1/data/his?patient_id=P999999").await.status(),
        404
    );
    assert_eq!(
        gw.get("/v1/patients/P000003/observations").await.status(),
        200
    );
    let csv = gw
        .get("/v1/export?source=his&patient_id=P000001,P000004&format=csv")
        .await;
    assert_eq!(csv.status(), 200);
    csv.bytes().await.unwrap();
    let entries = audit_entries(&gw);
    assert_eq!(entries.len(), 4, "{entries:#?}");
    let summary: Vec<(String, serde_json::Value, u64, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["route"].as_str().unwrap().to_owned(),
                e["patient_ids"].clone(),
                e["records"].as_u64().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let obs = u64::from(crate::util::OBS);
    assert_eq!(
        summary,
        vec![
            (
                "/v1/data/{source}".into(),
                serde_json::json!(["P000002"]),
                obs,
                200
            ),
            (
                "/v1/data/{source}".into(),
                serde_json::json!(["P999999"]),
                0,
                404
            ),
            (
                "/v1/patients/{patient_id}/observations".into(),
                serde_json::json!(["P000003"]),
                2 * obs,
                200
            ),
            (
                "/v1/export".into(),
                serde_json::json!(["P000001", "P000004"]),
                2 * obs,
                200
            ),
        ]
    );
    for e in &entries {
        assert_eq!(e["partner"], "test");
        assert!(!e["request_id"].as_str().unwrap().is_empty());
    }
    assert_eq!(entries[1]["outcome"], "patient-not-found");
    let report = medgate_audit::verify(&gw.audit).expect("the chain verifies");
    assert_eq!(report.entries, 4);
}
