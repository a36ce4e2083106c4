//! Large bodies (at least `STREAM_PARSE_MIN`) through a real loopback HTTP server, the real
//! `HttpUpstream` and the real source: streamed out in batches, errors where a collected
//! parse would give them, and the body (with its budget reservation) released when the
//! reader goes away.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use futures::StreamExt;
use medgate_core::{
    BuildContext, DataSource, Error, FetchRequest, Observation, SourceCommon, SourceConfig,
};
use medgate_source_wearable::{WearableConfig, STREAM_PARSE_MIN};
use medgate_upstream::{shared_client, BodyBudget, HttpUpstream, UpstreamPolicy};

/// Points in a large body: 30 000 of ~230 bytes, well over `STREAM_PARSE_MIN`.
const N: usize = 30_000;

fn point(i: usize) -> String {
    format!(
        r#"{{"header":{{"id":"hr-{i}","schema_id":{{"namespace":"omh","name":"heart-rate","version":"1.0"}}}},"body":{{"heart_rate":{{"value":72.50,"unit":"beats/min"}},"effective_time_frame":{{"date_time":"2024-01-01T00:00:00+08:00"}}}}}}"#
    )
}

/// `{"data": [N points]}`, with `tail` (raw text) after the last point.
fn omh_body(tail: &str) -> String {
    let points: Vec<String> = (0..N).map(point).collect();
    format!(r#"{{"data":[{}{tail}]}}"#, points.join(","))
}

/// Records in a large mapped body: 60 000 of ~85 bytes.
const MAPPED: usize = 60_000;

/// `{"log": {"weight": [MAPPED records]}}` for the mapping format.
fn mapped_body() -> String {
    let records: Vec<String> = (0..MAPPED)
        .map(|i| format!(r#"{{"logId":{i},"weight":"64.2","date":"2024-01-01","time":"07:30:00","source":"Aria"}}"#))
        .collect();
    format!(r#"{{"log":{{"weight":[{}]}}}}"#, records.join(","))
}

async fn body(Path(name): Path<String>) -> (StatusCode, String) {
    let body = match name.as_str() {
        "good" => omh_body(""),
        "mapped" => mapped_body(),
        // Refused at the root: not JSON from the first byte on.
        "not-json" => format!("x{}", omh_body("")),
        // A wrong envelope, found before any point.
        "bad-envelope" => format!(r#"{{"data":"none","padding":{:?}}}"#, omh_body("")),
        // Malformed after N good points: the JSON is broken only near its end.
        "late" => omh_body(r#",{"header":oops}"#),
        _ => return (StatusCode::NOT_FOUND, String::new()),
    };
    assert!(body.len() >= STREAM_PARSE_MIN, "{name}: {}", body.len());
    (StatusCode::OK, body)
}

/// A source of `format` (with `extra` config) reading the loopback server, its bodies
/// admitted by `budget`.
async fn source(format: &str, extra: &str, budget: Arc<BodyBudget>) -> Arc<dyn DataSource> {
    let app = axum::Router::new().route("/w/{name}", get(body));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let common: SourceCommon =
        toml::from_str("name = \"band\"\nkind = \"wearable-json\"\nretry = { attempts = 1 }")
            .unwrap();
    let upstream = HttpUpstream::with_budget(
        "band",
        shared_client().unwrap(),
        UpstreamPolicy::from(&common),
        budget,
    );
    let config: WearableConfig = toml::from_str(&format!(
        "url = \"http://127.0.0.1:{port}/w/{{patient_id}}\"\nformat = \"{format}\"\n{extra}"
    ))
    .unwrap();
    assert!(config.validate().is_empty());
    config.build(BuildContext::new("band", upstream)).unwrap()
}

async fn all(
    source: &dyn DataSource,
    name: &str,
) -> Result<Vec<Result<Observation, Error>>, Error> {
    Ok(source
        .fetch(&FetchRequest::new(name, "req"))
        .await?
        .collect()
        .await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_streams_every_record_in_order() {
    let budget = BodyBudget::new(256 << 20);
    let omh = source("openmhealth", "", budget.clone()).await;
    let rows = all(omh.as_ref(), "good").await.unwrap();
    assert_eq!(rows.len(), N);
    for (i, row) in rows.iter().enumerate() {
        let o = row.as_ref().unwrap();
        assert_eq!(o.id, format!("hr-{i}"));
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    }
    // One patient id and source name per fetch, shared by every streamed observation.
    let first = rows[0].as_ref().unwrap();
    assert!(rows.iter().all(|r| {
        let r = r.as_ref().unwrap();
        Arc::ptr_eq(&r.patient_id, &first.patient_id) && Arc::ptr_eq(&r.source, &first.source)
    }));
    assert_eq!(&*first.patient_id, "good");
    drop(rows);

    let mapped = source(
        "mapping",
        "[mapping]\nrecords = \"/log/weight\"\n\
         fields = { id = \"/logId\", value = \"/weight\", effective = \"/date\", effective_time = \"/time\", device = \"/source\" }\n\
         constants = { unit = \"kg\", code = \"29463-7\", code_system = \"http://loinc.org\" }\n",
        budget.clone(),
    )
    .await;
    let rows = all(mapped.as_ref(), "mapped").await.unwrap();
    assert_eq!(rows.len(), MAPPED);
    let last = rows[MAPPED - 1].as_ref().unwrap();
    assert_eq!(last.id, (MAPPED - 1).to_string());
    assert!(last.warnings.is_empty(), "{:?}", last.warnings);
    assert_eq!(budget.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_in_a_large_body_come_from_fetch_before_any_record() {
    let budget = BodyBudget::new(256 << 20);
    let omh = source("openmhealth", "", budget.clone()).await;
    for name in ["not-json", "bad-envelope", "late"] {
        let err = all(omh.as_ref(), name).await.err().unwrap_or_else(|| {
            panic!("{name}: a refused body gave records");
        });
        let Error::Malformed {
            name: source,
            detail,
        } = &err
        else {
            panic!("{name}: {err:?}")
        };
        assert_eq!(source, "band");
        assert!(!detail.contains(name), "{detail}");
        if name == "bad-envelope" {
            assert_eq!(detail, "/data: expected an array, found a string");
        } else {
            assert!(detail.contains("line 1 column"), "{name}: {detail}");
        }
    }
    assert_eq!(budget.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_is_released_when_its_reader_goes_away() {
    let budget = BodyBudget::new(256 << 20);
    let omh = source("openmhealth", "", budget.clone()).await;
    let mut stream = omh.fetch(&FetchRequest::new("good", "req")).await.unwrap();
    for i in 0..10 {
        assert_eq!(stream.next().await.unwrap().unwrap().id, format!("hr-{i}"));
    }
    // The parser is waiting for the reader; the body is still held.
    assert!(budget.in_flight() > 0);
    drop(stream);
    // The parser stops at its next hand-over and drops the body with its reservation.
    tokio::time::timeout(Duration::from_secs(10), async {
        while budget.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the body was released");
}
