//! Push ingestion end to end: uploads in three formats answered 202 only once durable, read
//! back through the same API as every other source, idempotent retries, every error a
//! partner can meet, and honest backpressure.

use crate::util::{audit_entries, header, start, start_in, start_with_server, tempdir, Gateway};

const EPRO: &str = r#"
[[sources]]
name = "epro"
kind = "store"
"#;

fn report(patient: &str, value: &str) -> String {
    format!(
        r#"{{"patient_id": "{patient}", "reported_at": "2026-03-01T08:00:00+08:00", "kind": "epro",
            "items": [{{"code": "8867-4", "code_system": "http://loinc.org", "display": "Heart rate",
                        "value": {value}, "unit": "/min", "effective": "2026-03-01T07:58:00+08:00"}},
                      {{"code": "72514-3", "code_system": "http://loinc.org", "display": "Pain severity",
                        "value": "moderate", "effective": "2026-03-01T07:58:00+08:00"}}]}}"#
    )
}

async fn post(
    gw: &Gateway,
    path: &str,
    content_type: &str,
    body: &str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = gw
        .client
        .post(format!("{}{path}", gw.base))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn an_accepted_report_is_served_back_like_any_source() {
    let gw = start(EPRO).await;
    let response = post(
        &gw,
        "/v1/ingest/epro",
        "application/json",
        &report("P42", "72.0"),
        None,
    )
    .await;
    assert_eq!(response.status(), 202);
    let location = header(&response, "location");
    let body: serde_json::Value = response.json().await.unwrap();
    let receipts = body["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0]["location"], location);
    assert!(location.starts_with("/v1/ingest/epro/receipts/"));

    let receipt = gw.json(&location, 200, "application/json").await;
    assert_eq!(receipt["observations"], 2);
    assert!(["accepted", "processing", "processed"].contains(&receipt["state"].as_str().unwrap()));

    // The store source serves it through the pipeline, flat and as FHIR, values as written.
    let data = gw
        .json("/v1/data/epro?patient_id=P42", 200, "application/json")
        .await;
    let rows = data["observations"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["code"], "8867-4");
    assert_eq!(rows[0]["value"].to_string(), "72.0");
    assert_eq!(rows[0]["unit"], "/min");
    assert_eq!(rows[0]["effective"], "2026-03-01T07:58:00+08:00");
    assert_eq!(rows[1]["category"], "survey");
    assert_eq!(rows[1]["value"], "moderate");
    let csv = gw
        .get("/v1/export?source=epro&patient_id=P42&format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 3);
    let fhir = gw
        .client
        .get(format!(
            "{}/fhir/Observation?patient=P42&_source=epro&code=8867-4",
            gw.base
        ))
        .send()
        .await
        .unwrap();
    let bundle: serde_json::Value = fhir.json().await.unwrap();
    assert_eq!(bundle["total"], 1);

    // The write is in the audit trail with its receipt.
    let entries = audit_entries(&gw);
    let upload = entries
        .iter()
        .find(|e| e["route"] == "/v1/ingest/{source}")
        .unwrap();
    assert_eq!(upload["status"], 202);
    assert_eq!(upload["patient_ids"], serde_json::json!(["P42"]));
    assert_eq!(upload["records"], 2);
    assert_eq!(upload["details"]["receipts"][0], receipts[0]["id"]);
}

#[tokio::test]
async fn fhir_bundles_and_hl7_v2_results_are_taken_too() {
    let gw = start(EPRO).await;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let hl7 = std::fs::read_to_string(
        root.join("hl7v2/ms-fhir-converter/LRI_2.0-NG_CBC_Typ_Message.hl7"),
    )
    .unwrap();
    let response = post(
        &gw,
        "/v1/ingest/epro",
        "x-application/hl7-v2+er7",
        &hl7,
        None,
    )
    .await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    let data = gw
        .json(
            "/v1/data/epro?patient_id=PATID1234",
            200,
            "application/json",
        )
        .await;
    let rows = data["observations"].as_array().unwrap();
    let hemoglobin = rows
        .iter()
        .find(|r| r["code"] == "718-7")
        .expect("hemoglobin");
    assert_eq!(hemoglobin["value"].to_string(), "12.5");
    assert_eq!(hemoglobin["unit"], "g/mL");
    assert_eq!(hemoglobin["interpretation"], "L");
    assert_eq!(hemoglobin["reference_low"].to_string(), "13");
    assert_eq!(hemoglobin["reference_high"].to_string(), "18");

    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": {"resourceType": "Observation", "id": "bp1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/P77"},
            "effectiveDateTime": "2026-03-02T09:00:00+01:00",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 141, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 92, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]}}]
    });
    let response = post(
        &gw,
        "/v1/ingest/epro",
        "application/fhir+json",
        &bundle.to_string(),
        None,
    )
    .await;
    assert_eq!(response.status(), 202);
    let data = gw
        .json("/v1/data/epro?patient_id=P77", 200, "application/json")
        .await;
    let rows = data["observations"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "one panel, two component rows");
    assert_eq!(
        rows[0]["id"].as_str().unwrap().rsplit('#').next(),
        Some("0")
    );
    assert_eq!(rows[0]["code"], "8480-6");
    assert_eq!(rows[0]["value"].to_string(), "141");
}

#[tokio::test]
async fn every_bad_field_is_listed_and_nothing_is_stored() {
    let gw = start(EPRO).await;
    let bad = r#"[{"patient_id": "P1", "reported_at": "2026-03-01T08:00:00+08:00", "kind": "epro",
                   "items": [{"code": "8867-4", "value": 72, "unit": "bpm"}]},
                  {"patient_id": "..", "reported_at": "yesterday", "kind": "epro", "items": []}]"#;
    let response = post(&gw, "/v1/ingest/epro", "application/json", bad, None).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    let paths: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/0/items/0/unit"), "{paths:?}");
    assert!(paths.contains(&"/1/patient_id"), "{paths:?}");
    assert!(paths.contains(&"/1/reported_at"), "{paths:?}");
    // All or nothing: the valid first report was not stored either.
    let data = gw.get("/v1/data/epro?patient_id=P1").await;
    assert_eq!(data.status(), 200);
    let data: serde_json::Value = data.json().await.unwrap();
    assert!(data["observations"].as_array().unwrap().is_empty());

    let response = post(&gw, "/v1/ingest/epro", "text/plain", "hello", None).await;
    assert_eq!(response.status(), 415);
    let response = post(
        &gw,
        "/v1/ingest/his",
        "application/json",
        &report("P1", "1"),
        None,
    )
    .await;
    assert_eq!(response.status(), 404, "his is not a store");
}

#[tokio::test]
async fn uploads_over_the_cap_are_413_and_a_partner_needs_an_ingest_grant() {
    let gw = start_with_server("", &format!("{EPRO}\n[ingest]\nmax_body_bytes = 2048\n")).await;
    let big = format!("[{}]", vec![report("P1", "1"); 10].join(","));
    let response = post(&gw, "/v1/ingest/epro", "application/json", &big, None).await;
    assert_eq!(response.status(), 413);
    let key = "reader-only-partner-key";
    let config = format!(
        "{EPRO}\n[[partners]]\nname = \"reader\"\nkey_sha256 = \"{}\"\nsources = [\"*\"]\n",
        medgate::access::sha256_hex(key)
    );
    let gw = start(&config).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/ingest/epro", gw.base))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(report("P1", "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_retried_upload_is_stored_once_even_after_a_restart() {
    let dir = tempdir();
    let config = format!(
        "[[sources]]\nname = \"epro\"\nkind = \"store\"\n[[partners]]\nname = \"test\"\nkey_sha256 = \"{}\"\nsources = [\"*\"]\ningest = [\"epro\"]\n",
        medgate::access::sha256_hex(crate::util::KEY),
    );
    let body = report("P9", "88");
    let gw = start_in(&config, crate::util::workload(), &dir).await;
    let first: serde_json::Value = post(
        &gw,
        "/v1/ingest/epro",
        "application/json",
        &body,
        Some("k-1"),
    )
    .await
    .json()
    .await
    .unwrap();
    let again = post(
        &gw,
        "/v1/ingest/epro",
        "application/json",
        &body,
        Some("k-1"),
    )
    .await;
    assert_eq!(again.status(), 202);
    assert_eq!(header(&again, "idempotent-replayed"), "true");
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again, first, "the original receipts");
    let other = post(
        &gw,
        "/v1/ingest/epro",
        "application/json",
        &report("P9", "89"),
        Some("k-1"),
    )
    .await;
    assert_eq!(other.status(), 422);
    gw.handle.state.services().store.close().await;
    drop(gw);

    // A new gateway on the same store: the key is still known.
    let gw = start_in(&config, crate::util::workload(), &dir).await;
    let after: serde_json::Value = post(
        &gw,
        "/v1/ingest/epro",
        "application/json",
        &body,
        Some("k-1"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(after, first);
    let data = gw
        .json("/v1/data/epro?patient_id=P9", 200, "application/json")
        .await;
    assert_eq!(
        data["observations"].as_array().unwrap().len(),
        2,
        "stored once"
    );
}

#[tokio::test]
async fn a_full_backlog_sheds_uploads_with_retry_after_and_stores_nothing() {
    // Nothing drains this backlog faster than uploads arrive here: a high-water mark of 2 is
    // reached at once.
    let gw = start_with_server(
        "",
        &format!("{EPRO}\n[ingest]\nhigh_water = 2\nqueue_capacity = 3\nworkers = 1\n"),
    )
    .await;
    let mut accepted = Vec::new();
    let mut shed = Vec::new();
    for i in 0..6 {
        let patient = format!("Q{i}");
        let response = post(
            &gw,
            "/v1/ingest/epro",
            "application/json",
            &report(&patient, "70"),
            None,
        )
        .await;
        match response.status().as_u16() {
            202 => accepted.push(patient),
            503 => {
                let retry = header(&response, "retry-after");
                assert!(
                    retry.parse::<u64>().is_ok_and(|s| (1..=300).contains(&s)),
                    "{retry}"
                );
                let problem: serde_json::Value = response.json().await.unwrap();
                assert!(problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("nothing was stored"));
                shed.push(patient);
            }
            other => panic!("unexpected {other}"),
        }
        // Let the backlog poller see the new depth.
        tokio::time::sleep(crate::util::BACKLOG_POLL * 2).await;
    }
    let ready: serde_json::Value = reqwest::get(format!("{}/readyz", gw.ops))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let depth = ready["ingest"]["depth"].as_u64().unwrap();
    if depth >= 2 {
        assert!(
            !shed.is_empty(),
            "a full backlog sheds: accepted {accepted:?}"
        );
    }
    // Whatever was shed was not stored; whatever was accepted was.
    for p in &shed {
        let data = gw
            .json(
                &format!("/v1/data/epro?patient_id={p}"),
                200,
                "application/json",
            )
            .await;
        assert!(data["observations"].as_array().unwrap().is_empty(), "{p}");
    }
    for p in &accepted {
        let data = gw
            .json(
                &format!("/v1/data/epro?patient_id={p}"),
                200,
                "application/json",
            )
            .await;
        assert_eq!(data["observations"].as_array().unwrap().len(), 2, "{p}");
    }
}
