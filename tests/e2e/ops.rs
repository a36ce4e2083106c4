//! Operations: metrics, health, readiness, config reload, graceful shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::start;

#[tokio::test]
async fn metrics_expose_requests_latency_upstreams_and_breakers() {
    let gw = start("").await;
    assert_eq!(
        gw.get("/v1/data/his?patient_id=P000001").await.status(),
        200
    );
    assert_eq!(
        gw.get("/v1/data/his?patient_id=P999999").await.status(),
        404
    );
    let response = reqwest::get(format!("{}/metrics", gw.ops)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(crate::util::header(&response, "content-type").starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for wanted in [
        "medgate_http_requests_total{route=\"/v1/data/{source}\",status=\"200\"}",
        "medgate_http_requests_total{route=\"/v1/data/{source}\",status=\"404\"}",
        "medgate_http_request_duration_seconds_bucket{route=\"/v1/data/{source}\",status=\"200\",le=\"0.005\"}",
        "medgate_upstream_duration_seconds_bucket{source=\"his\",outcome=\"ok\"",
        "medgate_upstream_errors_total{source=\"his\",kind=\"patient-not-found\"}",
        "medgate_breaker_state{source=\"his\"} 0",
    ] {
        assert!(text.contains(wanted), "missing {wanted}");
    }
    assert!(!text.contains("P000001"), "no patient ids in metrics");
}

#[tokio::test]
async fn health_and_readiness() {
    let gw = start("").await;
    let health: serde_json::Value = gw.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready: serde_json::Value = gw.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["sources"], 2);
}

#[tokio::test]
async fn reload_swaps_a_valid_config_and_keeps_the_old_one_on_error() {
    let gw = start("").await;
    let original = std::fs::read_to_string(&gw.config).unwrap();
    let extra = original.replacen(
        "[exporters]",
        "[[sources]]\nname = \"his2\"\nkind = \"his-xml\"\nurl = \"http://127.0.0.1:9/x/{patient_id}\"\nformat = \"fhir-r4\"\n\n[exporters]",
        1,
    );
    std::fs::write(&gw.config, &extra).unwrap();
    gw.handle.reload(&gw.config).expect("valid config reloads");
    let names = source_names(&gw).await;
    assert_eq!(names, vec!["his", "wearable", "his2"]);

    std::fs::write(&gw.config, original.replace("his-xml", "no-such-kind")).unwrap();
    let error = gw
        .handle
        .reload(&gw.config)
        .expect_err("invalid config is rejected")
        .to_string();
    assert!(error.contains("unknown kind `no-such-kind`"), "{error}");
    assert_eq!(
        source_names(&gw).await,
        vec!["his", "wearable", "his2"],
        "the old registry keeps serving"
    );
    assert_eq!(
        gw.get("/v1/data/his?patient_id=P000001").await.status(),
        200
    );
}

async fn source_names(gw: &crate::util::Gateway) -> Vec<String> {
    let body: serde_json::Value = gw.get("/v1/sources").await.json().await.unwrap();
    body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_then_stops() {
    let workload = crate::util::workload();
    let slow = crate::util::serve_router(axum::Router::new().route(
        "/fhir/{id}",
        axum::routing::get(move || {
            let bundle = workload.fhir_bundle(0);
            async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                bundle
            }
        }),
    ))
    .await;
    let dir = crate::util::tempdir();
    let path = dir.join("medgate.toml");
    let config = format!(
        "[auth]\nrequired = false\n[store]\nurl = \"sqlite://{}\"\n[audit]\npath = {:?}\n[[sources]]\nname = \"slow\"\nkind = \"his-xml\"\nurl = \"http://{slow}/fhir/{{patient_id}}\"\nformat = \"fhir-r4\"\n",
        dir.join("store.db").display(),
        dir.join("audit.jsonl").display().to_string()
    );
    std::fs::write(&path, config).unwrap();
    let gateway = Arc::new(
        medgate::startup::build(medgate::startup::load(&path).unwrap())
            .await
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listeners = medgate::startup::Listeners {
        api: listener,
        ops: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(medgate::startup::serve(gateway, listeners, async {
        let _ = stop_rx.await;
    }));
    let in_flight = tokio::spawn(reqwest::get(format!(
        "http://{addr}/v1/data/slow?patient_id=P000001"
    )));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stopped_at = Instant::now();
    stop_tx.send(()).unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["observations"]
            .as_array()
            .unwrap()
            .len(),
        crate::util::OBS as usize
    );
    server.await.unwrap().expect("serve returns cleanly");
    assert!(stopped_at.elapsed() < Duration::from_secs(5));
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err(),
        "no longer accepting"
    );
}
