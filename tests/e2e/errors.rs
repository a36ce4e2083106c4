//! Every error a partner can meet, as problem+json with the right status.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::util::start;

const PROBLEM: &str = "application/problem+json";

/// A misbehaving upstream: every route is one way real upstreams fail.
pub fn faulty_upstream() -> Router {
    Router::new()
        .route("/status500/{id}", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }))
        .route("/hang/{id}", get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }))
        .route("/truncated/{id}", get(|Path(_): Path<String>| async {
            ([("content-type", "application/fhir+xml")], "<Bundle xmlns=\"http://hl7.org/fhir\">\n  <entry><resource><Observation>\n    <id value=\"x\"/>").into_response()
        }))
        .route("/laughs/{id}", get(|| async {
            concat!(
                "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]>\n",
                "<Bundle xmlns=\"http://hl7.org/fhir\"><id value=\"&lol2;\"/></Bundle>"
            )
        }))
        .route("/badjson/{id}", get(|| async { ([("content-type", "application/json")], "[{\"header\": {\"id\": 1}, ") }))
}

const FAULTY_SOURCES: &str = r#"
[[sources]]
name = "broken"
kind = "his-xml"
url = "http://{faulty}/status500/{patient_id}"
format = "fhir-r4"

[[sources]]
name = "slow"
kind = "his-xml"
url = "http://{faulty}/hang/{patient_id}"
format = "fhir-r4"
timeout_ms = 300

[[sources]]
name = "garbled"
kind = "his-xml"
url = "http://{faulty}/truncated/{patient_id}"
format = "fhir-r4"

[[sources]]
name = "laughs"
kind = "his-xml"
url = "http://{faulty}/laughs/{patient_id}"
format = "fhir-r4"

[[sources]]
name = "badjson"
kind = "wearable-json"
url = "http://{faulty}/badjson/{patient_id}"
format = "openmhealth"

[[sources]]
name = "down"
kind = "his-xml"
url = "http://127.0.0.1:9/fhir/{patient_id}"
format = "fhir-r4"
"#;

/// Asserts a problem response and returns its detail.
async fn problem(gw: &crate::util::Gateway, path: &str, status: u16) -> String {
    let body = gw.json(path, status, PROBLEM).await;
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:medgate:problem:"),
        "{body}"
    );
    assert!(body["title"].is_string());
    body["detail"].as_str().expect("detail").to_owned()
}

#[tokio::test]
async fn client_errors_are_problems_a_partner_can_act_on() {
    let gw = start("").await;
    let detail = problem(&gw, "/v1/data/nope?patient_id=P000001", 404).await;
    assert!(detail.contains("unknown source `nope`"), "{detail}");
    let detail = problem(&gw, "/v1/data/his", 400).await;
    assert!(detail.contains("patient_id is required"), "{detail}");
    let detail = problem(&gw, "/v1/data/his?patient_id=a%20b", 400).await;
    assert!(detail.contains("not allowed at position 2"), "{detail}");
    let detail = problem(&gw, "/v1/data/his?patient_id=", 400).await;
    assert!(detail.contains("empty"), "{detail}");
    let detail = problem(&gw, "/v1/nothing-here", 404).await;
    assert!(detail.contains("openapi.json"), "{detail}");
}

#[tokio::test]
async fn unknown_patient_is_404_naming_the_source() {
    let gw = start("").await;
    let detail = problem(&gw, "/v1/data/his?patient_id=P999999", 404).await;
    assert_eq!(detail, "patient not found in source his");
    let detail = problem(&gw, "/v1/data/wearable?patient_id=P999999", 404).await;
    assert_eq!(detail, "patient not found in source wearable");
}

#[tokio::test]
async fn upstream_failures_map_to_502_and_504() {
    let gw = start(FAULTY_SOURCES).await;
    let detail = problem(&gw, "/v1/data/broken?patient_id=P000001", 502).await;
    assert!(
        detail.contains("source broken answered HTTP 500"),
        "{detail}"
    );

    let started = Instant::now();
    let detail = problem(&gw, "/v1/data/slow?patient_id=P000001", 504).await;
    let took = started.elapsed();
    assert!(
        detail.contains("source slow did not answer within"),
        "{detail}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "timed out after {took:?}"
    );

    let detail = problem(&gw, "/v1/data/garbled?patient_id=P000001", 502).await;
    assert!(
        detail.contains("malformed payload") && detail.contains("line"),
        "names the position: {detail}"
    );

    let detail = problem(&gw, "/v1/data/laughs?patient_id=P000001", 502).await;
    assert!(
        detail.contains("DOCTYPE"),
        "entities refused, not expanded: {detail}"
    );

    let detail = problem(&gw, "/v1/data/badjson?patient_id=P000001", 502).await;
    assert!(
        detail.contains("malformed payload") && detail.contains("line 1"),
        "{detail}"
    );

    let detail = problem(&gw, "/v1/data/down?patient_id=P000001", 502).await;
    assert!(detail.contains("source down is unreachable"), "{detail}");
    assert!(
        !detail.contains("P000001"),
        "no patient id in error details: {detail}"
    );
}

#[tokio::test]
async fn one_failing_source_gives_partial_results_not_a_failed_request() {
    let gw = start(FAULTY_SOURCES).await;
    let started = Instant::now();
    let body = gw
        .json("/v1/patients/P000001/observations", 200, "application/json")
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the hung source is cut at its timeout"
    );
    let status = |name: &str| {
        body["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(status("his")["status"], "ok");
    assert_eq!(status("wearable")["status"], "ok");
    for (name, code) in [
        ("broken", 502),
        ("slow", 504),
        ("garbled", 502),
        ("laughs", 502),
        ("badjson", 502),
        ("down", 502),
    ] {
        let s = status(name);
        assert_eq!(s["status"], "error", "{s}");
        assert_eq!(s["error"]["status"], code, "{s}");
        assert_eq!(s["observations"], 0);
    }
    let rows = body["observations"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * crate::util::OBS as usize);
}

#[tokio::test]
async fn every_source_failing_is_a_problem_with_each_status() {
    let gw = start("").await;
    let body = gw
        .json("/v1/patients/P999999/observations", 404, PROBLEM)
        .await;
    assert_eq!(body["detail"], "patient not found in any source");
    assert_eq!(body["sources"].as_array().unwrap().len(), 2);
}
