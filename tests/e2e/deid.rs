//! De-identification on the read routes: a partner bound to a profile gets de-identified
//! data from every route (flat JSON, FHIR, downloads), cannot ask for another profile, and
//! cannot filter on real dates; another partner may choose a profile per download.

use std::collections::HashMap;

use crate::util::{audit_entries, header, start, Gateway};

const KEY_ENV: &str = "MEDGATE_E2E_READ_PSEUDONYM_KEY";
const PSEUDONYM_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const BOUND_KEY: &str = "bound-partner-key-0123456789";

async fn gateway() -> Gateway {
    // SAFETY: every test of this module sets the same value before any gateway reads it.
    unsafe { std::env::set_var(KEY_ENV, PSEUDONYM_KEY) };
    start(&format!(
        r#"
[[profiles]]
name = "research"
pseudonymize_patient_ids = true
pseudonym_key_env = "{KEY_ENV}"
date_shift_max_days = 200
drop_free_text = true

[[profiles]]
name = "coarse"
truncate_to = "year"

[[partners]]
name = "bound"
key_sha256 = "{}"
sources = ["*"]
formats = ["*"]
profile = "research"
rate_per_second = 100000
burst = 100000
"#,
        medgate::access::sha256_hex(BOUND_KEY)
    ))
    .await
}

async fn get_as(gw: &Gateway, key: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", gw.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

fn csv_rows(body: &[u8]) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_reader(body);
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_bound_partner_downloads_pseudonyms_and_shifted_dates_with_intervals_kept() {
    let gw = gateway().await;
    let query = "/v1/export?source=his,wearable&patient_id=P000001,P000002&format=csv";
    let plain = csv_rows(&gw.get(query).await.bytes().await.unwrap());
    let response = get_as(&gw, BOUND_KEY, query).await;
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(
        !text.contains("P000001") && !text.contains("P000002"),
        "an original id survived"
    );
    let deid = csv_rows(&body);
    assert_eq!(
        deid.len(),
        plain.len(),
        "the same observations, de-identified"
    );
    let mut shift_of: HashMap<String, jiff::SignedDuration> = HashMap::new();
    for (p, d) in plain.iter().zip(&deid) {
        assert!(d["patient_id"].starts_with("psn-"), "{}", d["patient_id"]);
        assert_eq!(
            (&p["code"], &p["unit"], &p["value"]),
            (&d["code"], &d["unit"], &d["value"])
        );
        let (real, moved) = (&p["effective"], &d["effective"]);
        assert_ne!(real, moved, "an exact date survived");
        let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
        let shift = at(moved).duration_since(at(real));
        // One shift per patient, whole days, the same on every row: intervals are kept.
        assert_eq!(shift.as_secs() % 86_400, 0, "{real} → {moved}");
        let first = *shift_of.entry(d["patient_id"].clone()).or_insert(shift);
        assert_eq!(
            first, shift,
            "{}: one shift for all its rows",
            d["patient_id"]
        );
        // Offsets are kept: the partner still sees the patient's local time zone.
        assert_eq!(real[real.len() - 6..], moved[moved.len() - 6..]);
    }
    assert_eq!(shift_of.len(), 2, "two patients, two pseudonyms");
    // The audit entry names the profile and its key id, not just the partner.
    let entry = audit_entries(&gw)
        .into_iter()
        .rfind(|e| e["partner"] == "bound" && e["route"] == "/v1/export")
        .expect("audited");
    assert_eq!(entry["details"]["profile"], "research");
    assert!(entry["details"]["key_id"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
}

#[tokio::test]
async fn a_bound_partner_cannot_ask_for_another_profile_nor_filter_real_dates() {
    let gw = gateway().await;
    let other = get_as(
        &gw,
        BOUND_KEY,
        "/v1/export?source=his&patient_id=P000001&format=csv&profile=coarse",
    )
    .await;
    let p = problem(other, 403).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("profile research only"),
        "{p}"
    );
    // Naming its own profile is fine.
    let own = get_as(
        &gw,
        BOUND_KEY,
        "/v1/export?source=his&patient_id=P000001&format=csv&profile=research",
    )
    .await;
    assert_eq!(own.status(), 200);
    assert!(!own.text().await.unwrap().contains("P000001"));
    let dated = get_as(
        &gw,
        BOUND_KEY,
        "/fhir/Observation?patient=P000001&date=ge2024-01-01",
    )
    .await;
    assert_eq!(dated.status(), 400);
    let body: serde_json::Value = dated.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(body.to_string().contains("reveal"), "{body}");
}

#[tokio::test]
async fn fhir_search_for_a_bound_partner_names_no_original_patient_or_free_text() {
    let gw = gateway().await;
    let response = get_as(&gw, BOUND_KEY, "/fhir/Observation?patient=P000003").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Observation")
    {
        let subject = e["resource"]["subject"]["reference"].as_str().unwrap();
        assert!(subject.starts_with("Patient/psn-"), "{subject}");
        assert!(e["resource"].get("note").is_none(), "free text dropped");
    }
    // The partner's own query string is echoed in the self link; nothing else names P000003.
    let without_self = text.replace("patient=P000003", "");
    assert!(!without_self.contains("P000003"), "{text}");
}

#[tokio::test]
async fn any_partner_may_choose_a_profile_per_download_and_unknown_ones_are_named() {
    let gw = gateway().await;
    let coarse = gw
        .get("/v1/export?source=his&patient_id=P000001&format=csv&profile=coarse")
        .await;
    assert_eq!(coarse.status(), 200);
    let rows = csv_rows(&coarse.bytes().await.unwrap());
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!(r["patient_id"], "P000001", "coarse does not pseudonymize");
        assert_eq!(
            r["effective"].len(),
            4,
            "cut to the year: {}",
            r["effective"]
        );
    }
    let unknown = gw
        .get("/v1/export?source=his&patient_id=P000001&format=csv&profile=nope")
        .await;
    let p = problem(unknown, 404).await;
    assert_eq!(p["type"], "urn:medgate:problem:unknown-profile");
    assert!(
        p["detail"].as_str().unwrap().contains("research, coarse")
            || p["detail"].as_str().unwrap().contains("coarse, research"),
        "{p}"
    );
}

#[tokio::test]
async fn flat_json_routes_answer_a_bound_partner_with_pseudonyms_only() {
    let gw = gateway().await;
    for path in [
        "/v1/data/his?patient_id=P000004",
        "/v1/patients/P000004/observations",
    ] {
        let plain: serde_json::Value = gw.get(path).await.json().await.unwrap();
        let response = get_as(&gw, BOUND_KEY, path).await;
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.unwrap();
        assert!(!text.contains("P000004"), "{path}: an original id survived");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        let pseudonym = body["patient_id"].as_str().unwrap();
        assert!(pseudonym.starts_with("psn-"), "{path}: {pseudonym}");
        let rows = body["observations"].as_array().unwrap();
        assert_eq!(rows.len(), plain["observations"].as_array().unwrap().len());
        assert!(!rows.is_empty());
        for (row, real) in rows.iter().zip(plain["observations"].as_array().unwrap()) {
            assert_eq!(row["patient_id"], pseudonym, "{path}");
            assert_eq!(
                (&row["code"], &row["value"]),
                (&real["code"], &real["value"])
            );
            assert_ne!(row["effective"], real["effective"], "{path}: dates shifted");
        }
        let entry = audit_entries(&gw)
            .into_iter()
            .rfind(|e| e["partner"] == "bound")
            .expect("audited");
        assert_eq!(entry["details"]["profile"], "research", "{path}");
    }
}
