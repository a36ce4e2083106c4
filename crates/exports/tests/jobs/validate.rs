//! Kick-off validation: errors a partner can act on, before anything runs.

use medgate_exports::{BulkQuery, ExportError, ExportRequest, Grant, Patients};

use crate::util::*;

async fn refused(h: &Harness, grant: &Grant<'_>, request: ExportRequest) -> ExportError {
    match h
        .exports
        .kick_off(grant, request, "http://gw.test/v1/exports")
        .await
    {
        Ok(k) => panic!("accepted: {:?}", k.request),
        Err(e) => e,
    }
}

fn all() -> Grant<'static> {
    Grant {
        partner: PARTNER,
        ..Grant::unrestricted()
    }
}

#[tokio::test]
async fn requests_are_checked_with_messages_that_say_what_to_change() {
    let h = harness(Setup::default()).await;
    let g = all();
    let base = || request(&["his"], &["P000001"], "csv");

    let e = refused(
        &h,
        &g,
        ExportRequest {
            format: "pdf".into(),
            ..base()
        },
    )
    .await;
    assert_eq!(e.status(), 400);
    assert!(
        e.to_string()
            .contains("csv, fhir-ndjson, json, ndjson, parquet, xlsx"),
        "{e}"
    );

    let e = refused(
        &h,
        &g,
        ExportRequest {
            cohort: Some("study".into()),
            ..base()
        },
    )
    .await;
    assert!(e.to_string().contains("either patients or cohort"), "{e}");

    let e = refused(
        &h,
        &g,
        ExportRequest {
            patients: None,
            ..base()
        },
    )
    .await;
    assert!(e.to_string().contains("is required"), "{e}");

    let e = refused(
        &h,
        &g,
        ExportRequest {
            sources: vec!["nope".into()],
            ..base()
        },
    )
    .await;
    assert_eq!(e.status(), 404);
    assert!(e.to_string().contains("no source is named `nope`"), "{e}");

    let e = refused(&h, &g, request(&["his"], &["P000001", "bad id"], "csv")).await;
    assert!(e.to_string().starts_with("patients[1]: "), "{e}");
    assert!(!e.to_string().contains("bad id"), "no id echoed: {e}");

    let e = refused(&h, &g, request(&["his"], &["P1", "P2", "P1"], "csv")).await;
    assert!(
        e.to_string().contains("patients[2] repeats patients[0]"),
        "{e}"
    );

    let e = refused(
        &h,
        &g,
        ExportRequest {
            patients: Some(Patients::All),
            ..base()
        },
    )
    .await;
    assert!(
        e.to_string()
            .contains("source his is of kind `his-xml` and cannot"),
        "{e}"
    );

    let e = refused(
        &h,
        &g,
        ExportRequest {
            since: Some("yesterday".into()),
            ..base()
        },
    )
    .await;
    assert!(e.to_string().contains("RFC 3339"), "{e}");

    let e = refused(
        &h,
        &g,
        ExportRequest {
            since: Some("2024-01-01T00:00:00Z".into()),
            profile: Some("research".into()),
            ..base()
        },
    )
    .await;
    assert!(e.to_string().contains("shifts or truncates dates"), "{e}");
    let e = refused(
        &h,
        &g,
        ExportRequest {
            since: Some("2024-01-01T00:00:00Z".into()),
            profile: Some("coarse".into()),
            ..base()
        },
    )
    .await;
    assert!(e.to_string().contains("profile coarse"), "{e}");

    let e = refused(
        &h,
        &g,
        ExportRequest {
            profile: Some("nope".into()),
            ..base()
        },
    )
    .await;
    assert!(e.to_string().contains("coarse, research"), "{e}");

    let e = refused(
        &h,
        &g,
        ExportRequest {
            codes: vec!["".into()],
            ..base()
        },
    )
    .await;
    assert!(e.to_string().starts_with("codes[0]"), "{e}");

    let e = refused(
        &h,
        &g,
        ExportRequest {
            patients: None,
            cohort: Some("nope".into()),
            ..base()
        },
    )
    .await;
    assert_eq!(e.status(), 404);
}

#[tokio::test]
async fn the_grant_decides_sources_formats_and_profile() {
    let h = harness(Setup::default()).await;
    let only_his = |s: &str| s == "his";
    let only_csv = |f: &str| f == "csv";
    let g = Grant {
        partner: PARTNER,
        may_read: &only_his,
        may_export: &only_csv,
        profile: Some("research"),
    };
    let e = refused(&h, &g, request(&["wearable"], &["P000001"], "csv")).await;
    assert_eq!(e.status(), 403);
    // Outside the grant is 403 whether the source exists or not.
    let e = refused(&h, &g, request(&["nope"], &["P000001"], "csv")).await;
    assert_eq!(e.status(), 403);
    let e = refused(&h, &g, request(&["his"], &["P000001"], "xlsx")).await;
    assert_eq!(e.status(), 403);
    let mut other_profile = request(&["his"], &["P000001"], "csv");
    other_profile.profile = Some("coarse".into());
    let e = refused(&h, &g, other_profile).await;
    assert_eq!(e.status(), 403);
    assert!(e.to_string().contains("profile research only"), "{e}");

    // No sources: the partner's readable ones; the forced profile is put in.
    let mut r = request(&[], &["P000001"], "csv");
    r.sources.clear();
    let k = h.exports.kick_off(&g, r, "u").await.expect("accepted");
    assert_eq!(k.request.sources, ["his"]);
    assert_eq!(k.request.profile.as_deref(), Some("research"));
    assert_eq!(k.patients, Some(1));
    assert_eq!(
        k.key_id.as_ref().map(String::len),
        Some(8),
        "{:?}",
        k.key_id
    );
}

#[tokio::test]
async fn cohorts_come_from_config_and_files() {
    let h = harness(Setup::default()).await;
    let cohort = |name: &str| ExportRequest {
        sources: vec![],
        patients: None,
        cohort: Some(name.into()),
        format: "csv".into(),
        profile: None,
        since: None,
        codes: vec![],
    };
    let k = h
        .exports
        .kick_off(&all(), cohort("first-three"), "u")
        .await
        .unwrap();
    assert_eq!(k.request.sources, ["his"], "the cohort's sources");
    assert_eq!(k.patients, Some(3));
    // Inline P000001 plus the file's three (comments and blank lines skipped).
    let k = h
        .exports
        .kick_off(&all(), cohort("study"), "u")
        .await
        .unwrap();
    assert_eq!(k.patients, Some(4));
}

#[test]
fn the_request_body_is_strict_and_patients_is_all_or_a_list() {
    let r: ExportRequest =
        serde_json::from_str(r#"{"sources":["epro"],"patients":"all","format":"csv"}"#).unwrap();
    assert_eq!(r.patients, Some(Patients::All));
    let r: ExportRequest =
        serde_json::from_str(r#"{"patients":["P1","P2"],"format":"csv","codes":["8867-4"]}"#)
            .unwrap();
    assert_eq!(
        r.patients,
        Some(Patients::List(vec!["P1".into(), "P2".into()]))
    );
    let e = serde_json::from_str::<ExportRequest>(r#"{"patients":"some","format":"csv"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"all\" or an array of patient ids"), "{e}");
    let e = serde_json::from_str::<ExportRequest>(r#"{"patients":"all","format":"csv","x":1}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `x`"), "{e}");
    // Round trip, as the job table keeps it.
    let text = serde_json::to_string(&r_full()).unwrap();
    assert_eq!(
        serde_json::from_str::<ExportRequest>(&text).unwrap(),
        r_full()
    );
}

fn r_full() -> ExportRequest {
    ExportRequest {
        sources: vec!["his".into()],
        patients: Some(Patients::List(vec!["P1".into()])),
        cohort: None,
        format: "xlsx".into(),
        profile: Some("research".into()),
        since: None,
        codes: vec!["http://loinc.org|8867-4".into()],
    }
}

#[test]
fn bulk_data_queries_map_to_requests() {
    let q = BulkQuery {
        output_format: Some("application/fhir+ndjson".into()),
        since: Some("2024-01-01T00:00:00Z".into()),
        types: Some("Observation".into()),
        ..BulkQuery::default()
    };
    let r = q.to_request(Some("study")).unwrap();
    assert_eq!(r.format, "fhir-ndjson");
    assert_eq!(r.cohort.as_deref(), Some("study"));
    assert_eq!(r.patients, None);
    let r = BulkQuery::default().to_request(None).unwrap();
    assert_eq!(r.patients, Some(Patients::All));
    let e = BulkQuery {
        types: Some("Observation,Patient".into()),
        ..BulkQuery::default()
    }
    .to_request(None)
    .unwrap_err();
    assert!(e.to_string().contains("_type `Patient`"), "{e}");
    let e = BulkQuery {
        output_format: Some("text/html".into()),
        ..BulkQuery::default()
    }
    .to_request(None)
    .unwrap_err();
    assert_eq!(e.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_patients_of_a_store_source_are_exported() {
    use medgate_store::{IngestBatch, NewReport};
    let h = harness(Setup::default()).await;
    let mut want = Vec::new();
    // Pushed out of order: the store lists patients sorted.
    for (id, index) in [("S3", 2u32), ("S1", 0), ("S2", 1)] {
        let observations: Vec<_> = (0..3).map(|j| h.workload.observation(index, j)).collect();
        h.store
            .ingest(IngestBatch {
                partner: PARTNER.into(),
                source: "epro".into(),
                idempotency: None,
                reports: vec![NewReport {
                    patient_id: id.into(),
                    kind: "lab".into(),
                    reported_at: None,
                    serious_adverse_event: false,
                    meta: None,
                    observations,
                }],
            })
            .await
            .unwrap();
        want.push((id, index));
    }
    want.sort();
    let runner = h.exports.start(h.shutdown.clone());
    let job = h
        .kick_off(ExportRequest {
            sources: vec!["epro".into()],
            patients: Some(Patients::All),
            cohort: None,
            format: "ndjson".into(),
            profile: None,
            since: None,
            codes: vec![],
        })
        .await;
    let m = h.manifest(&job.id).await;
    assert_eq!(m.extension.patients, 3);
    let rows = ndjson(&h.download(&job.id, 1).await);
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["patient_id"].as_str().unwrap().into(),
                r["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for (id, index) in &want {
        for j in 0..3 {
            expected.push((id.to_string(), h.workload.observation(*index, j).id));
        }
    }
    assert_eq!(got, expected);
    h.shutdown.cancel();
    runner.stopped().await;
}

#[test]
fn the_request_schema_documents_every_field() {
    use utoipa::{PartialSchema, ToSchema};
    let mut components = Vec::new();
    <ExportRequest as ToSchema>::schemas(&mut components);
    let schema = serde_json::to_value(ExportRequest::schema()).unwrap();
    let props = schema["properties"].as_object().unwrap();
    let keys: Vec<&str> = props.keys().map(String::as_str).collect();
    for key in [
        "sources", "patients", "cohort", "format", "profile", "since", "codes",
    ] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    assert_eq!(schema["required"], serde_json::json!(["format"]));
    assert_eq!(schema["additionalProperties"], false);
    let patients = serde_json::to_value(Patients::schema()).unwrap();
    assert_eq!(patients["oneOf"][0]["enum"], serde_json::json!(["all"]));
    assert_eq!(patients["oneOf"][1]["type"], "array");
    assert!(
        components.iter().any(|(name, _)| name == "Patients"),
        "registered for $ref"
    );
}
