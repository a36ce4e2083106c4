//! The happy paths of every route.

use medgate_core::{Observation, Value};

use crate::util::{flat, header, start, OBS, PATIENTS};

#[tokio::test]
async fn sources_lists_name_kind_format_and_formats() {
    let gw = start("").await;
    let body = gw.json("/v1/sources", 200, "application/json").await;
    let sources: Vec<(String, String, String)> = body["sources"]
        .as_array()
        .expect("sources array")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["kind"].as_str().unwrap().into(),
                s["format"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        vec![
            ("his".into(), "his-xml".into(), "fhir-r4".into()),
            (
                "wearable".into(),
                "wearable-json".into(),
                "openmhealth".into()
            )
        ]
    );
    assert_eq!(
        body["formats"],
        serde_json::json!(["csv", "fhir-ndjson", "json", "ndjson", "xlsx"])
    );
}

#[tokio::test]
async fn his_rows_equal_the_workload_exactly_with_written_precision() {
    let gw = start("").await;
    for index in [0u32, 7] {
        let pid = medgate_demo::patient_id(index);
        let response = gw.get(&format!("/v1/data/his?patient_id={pid}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "application/json");
        let text = response.text().await.unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(body["source"], "his");
        assert_eq!(body["patient_id"], pid);
        let expected: Vec<Observation> = (0..OBS)
            .map(|j| gw.workload.observation(index, j))
            .collect();
        assert_eq!(body["observations"], flat(&expected));
        assert_eq!(body["warnings"]["count"], 0);
        // The first ten keys of every row are the original flat record, in order.
        let first = body["observations"][0].as_object().unwrap();
        let keys: Vec<&str> = first.keys().map(String::as_str).take(10).collect();
        assert_eq!(keys, medgate_core::COLUMNS[..10]);
        assert_eq!(first["status"], "final");
        assert_eq!(first["value_type"], "Quantity");
        assert_eq!(
            first["category_system"],
            medgate_core::model::CATEGORY_SYSTEM
        );
        assert!(text.contains("+08:00"), "offsets kept");
    }
    // Decimals keep the instrument's precision on the wire (36.0, not 36): find a patient
    // whose rows include a value written with a trailing zero and check the raw JSON text.
    let (index, fixed) = (0..PATIENTS)
        .find_map(|i| {
            (0..OBS).find_map(|j| match gw.workload.observation(i, j).value {
                Value::Quantity(q) => q
                    .value
                    .filter(|d| d.as_str().contains('.') && d.as_str().ends_with('0'))
                    .map(|d| (i, d.as_str().to_owned())),
                _ => None,
            })
        })
        .expect("the workload has a value written with a trailing zero");
    let pid = medgate_demo::patient_id(index);
    let text = gw
        .get(&format!("/v1/data/his?patient_id={pid}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!("\"value\":{fixed},")),
        "{fixed} kept verbatim"
    );
}

#[tokio::test]
async fn wearable_rows_are_normalized_open_mhealth() {
    let gw = start("").await;
    let body = gw
        .json(
            "/v1/data/wearable?patient_id=P000002",
            200,
            "application/json",
        )
        .await;
    let rows = body["observations"].as_array().expect("observations");
    assert_eq!(rows.len(), OBS as usize);
    let heart = &rows[0];
    assert_eq!(heart["source"], "wearable");
    assert_eq!(heart["patient_id"], "P000002");
    assert_eq!(heart["code"], "8867-4");
    assert_eq!(heart["code_system"], "http://loinc.org");
    assert_eq!(heart["unit"], "/min");
    assert!(heart["value"].is_number());
    assert_eq!(heart["effective"], "2024-01-01T00:00:00+08:00");
    let steps = &rows[1];
    assert_eq!(steps["code"], "55423-8");
    assert_eq!(steps["effective"], "2024-01-01T00:15:00+08:00");
    assert_eq!(steps["effective_end"], "2024-01-01T00:30:00+08:00");
    let expected: Vec<Observation> = (0..OBS)
        .map(|j| gw.workload.wearable_observation(1, j))
        .collect();
    assert_eq!(body["observations"], flat(&expected));
}

#[tokio::test]
async fn patient_fan_out_merges_every_source_with_statuses() {
    let gw = start("").await;
    let body = gw
        .json("/v1/patients/P000003/observations", 200, "application/json")
        .await;
    assert_eq!(body["patient_id"], "P000003");
    let statuses = body["sources"].as_array().unwrap();
    assert_eq!(statuses.len(), 2);
    for s in statuses {
        assert_eq!(s["status"], "ok", "{s}");
        assert_eq!(s["observations"], OBS);
    }
    let rows = body["observations"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * OBS as usize);
    assert_eq!(
        rows.iter().filter(|r| r["source"] == "his").count(),
        OBS as usize
    );
    assert_eq!(
        rows.iter().filter(|r| r["source"] == "wearable").count(),
        OBS as usize
    );
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let gw = start("").await;
    let response = gw
        .client
        .get(format!("{}/v1/sources", gw.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-request-id"), "abc-123");
    let generated = header(&gw.get("/v1/sources").await, "x-request-id");
    let again = header(&gw.get("/v1/sources").await, "x-request-id");
    assert!(!generated.is_empty());
    assert_ne!(generated, again);
    // A hostile id (control characters would forge log lines) is replaced.
    let response = gw
        .client
        .get(format!("{}/v1/sources", gw.base))
        .header("x-request-id", "a".repeat(300))
        .send()
        .await
        .unwrap();
    assert_ne!(header(&response, "x-request-id"), "a".repeat(300));
}

#[tokio::test]
async fn openapi_describes_every_route_and_the_record_shape() {
    let gw = start("").await;
    let doc = gw.json("/openapi.json", 200, "application/json").await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/v1/sources",
        "/v1/data/{source}",
        "/v1/patients/{patient_id}/observations",
        "/v1/export",
        "/fhir/metadata",
        "/fhir/Observation",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }
    let props: Vec<&str> = doc["components"]["schemas"]["Observation"]["properties"]
        .as_object()
        .expect("Observation schema")
        .keys()
        .map(String::as_str)
        .collect();
    let mut columns = medgate_core::COLUMNS.to_vec();
    let mut props_sorted = props.clone();
    columns.sort_unstable();
    props_sorted.sort_unstable();
    assert_eq!(
        props_sorted, columns,
        "the documented record is the served record"
    );
    let export_params: Vec<&str> = doc["paths"]["/v1/export"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        export_params,
        vec!["source", "patient_id", "format", "on_error", "profile"]
    );
}
