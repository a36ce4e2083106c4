//! End to end through a real loopback HTTP server and the real `HttpUpstream`.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use futures::StreamExt;
use medgate_core::{
    BuildContext, CodeFilter, Decimal, Error, FetchRequest, Quantity, SourceCommon, SourceConfig,
    Value,
};
use medgate_source_his::HisConfig;
use medgate_upstream::{shared_client, HttpUpstream, UpstreamPolicy};

const WORKLOAD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/fhir/workload-P000001.xml"
);

type Seen = Arc<Mutex<Vec<String>>>;

async fn serve(State(seen): State<Seen>, uri: Uri) -> (StatusCode, Vec<u8>) {
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    seen.lock().unwrap().push(path_and_query.clone());
    if path_and_query.contains("missing") {
        return (StatusCode::NOT_FOUND, Vec::new());
    }
    (StatusCode::OK, std::fs::read(WORKLOAD).unwrap())
}

#[tokio::test]
async fn fetches_parses_encodes_and_maps_404() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/fhir/Observation", get(serve))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let common: SourceCommon = toml::from_str("name = \"his\"\nkind = \"his-xml\"").unwrap();
    let upstream = HttpUpstream::new(
        "his",
        shared_client().unwrap(),
        UpstreamPolicy::from(&common),
    );
    let config: HisConfig = toml::from_str(&format!(
        "url = \"http://127.0.0.1:{port}/fhir/Observation?patient={{patient_id}}\"\nformat = \"fhir-r4\""
    ))
    .unwrap();
    assert!(config.validate().is_empty());
    let source = config.build(BuildContext::new("his", upstream)).unwrap();

    // The filter is the pipeline's job: this source returns everything it parsed.
    let mut request = FetchRequest::new("a/b c", "req-1");
    request.filter.codes = vec![CodeFilter::parse("http://loinc.org|0000-0")];
    let stream = source.fetch(&request).await.unwrap();
    let rows: Vec<_> = stream.map(Result::unwrap).collect().await;
    assert_eq!(rows.len(), 100);
    let first = &rows[0];
    assert_eq!(&*first.patient_id, "a/b c");
    assert_eq!(&*first.source, "his");
    assert_eq!(
        first.value,
        Value::Quantity(Quantity::ucum(Decimal::parse("130.3").unwrap(), "mg/dL"))
    );
    // One patient id and one source name per fetch, shared by every observation.
    assert!(rows
        .iter()
        .all(|o| Arc::ptr_eq(&o.patient_id, &first.patient_id)
            && Arc::ptr_eq(&o.source, &first.source)));
    assert_eq!(
        seen.lock().unwrap().first().map(String::as_str),
        Some("/fhir/Observation?patient=a%2Fb%20c")
    );

    let err = source
        .fetch(&FetchRequest::new("missing", "req-2"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::PatientNotFound { .. }), "{err:?}");
}

/// An upstream that answers every GET with a fixed body.
struct FixedBody(Vec<u8>);

#[async_trait::async_trait]
impl medgate_core::Upstream for FixedBody {
    async fn get(
        &self,
        _url: &str,
        _request: &FetchRequest,
    ) -> medgate_core::Result<medgate_core::UpstreamBody> {
        Ok(medgate_core::UpstreamBody {
            bytes: self.0.clone().into(),
            content_type: Some("application/fhir+xml".to_owned()),
        })
    }
}

fn fixed_source(body: Vec<u8>) -> std::sync::Arc<dyn medgate_core::DataSource> {
    let config: HisConfig =
        toml::from_str("url = \"http://127.0.0.1:1/o?p={patient_id}\"\nformat = \"fhir-r4\"")
            .unwrap();
    config
        .build(BuildContext::new("big", Arc::new(FixedBody(body))))
        .unwrap()
}

#[tokio::test]
async fn large_body_is_parsed_off_the_runtime_and_errors_name_the_source() {
    let entry = r#"<entry><resource><Observation><id value="o"/><valueQuantity><value value="36.0"/></valueQuantity></Observation></resource></entry>"#;
    let mut body = String::from(r#"<Bundle xmlns="http://hl7.org/fhir">"#);
    for _ in 0..3_000 {
        body.push_str(entry);
    }
    body.push_str("</Bundle>");
    assert!(body.len() > medgate_source_his::INLINE_PARSE_LIMIT);
    let source = fixed_source(body.into_bytes());
    let rows: Vec<_> = source
        .fetch(&FetchRequest::new("P1", "r"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(rows.len(), 3_000);
    assert_eq!(
        rows[2_999].as_ref().unwrap().value,
        Value::number(Decimal::parse("36.0").unwrap())
    );

    let source = fixed_source(b"<!DOCTYPE x><Bundle/>".to_vec());
    let err = source
        .fetch(&FetchRequest::new("SECRET-ID", "r"))
        .await
        .err()
        .unwrap();
    let Error::Malformed { name, detail } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(name, "big");
    assert!(detail.contains("DOCTYPE"), "{detail}");
    assert!(!err.to_string().contains("SECRET-ID"));
}

/// A bundle of `n` small Observation entries, then `tail` before the closing tag.
fn bundle_of(n: usize, tail: &str) -> Vec<u8> {
    let entry = r#"<entry><resource><Observation><id value="o"/><valueQuantity><value value="36.0"/></valueQuantity></Observation></resource></entry>"#;
    let mut body = String::from(r#"<Bundle xmlns="http://hl7.org/fhir">"#);
    for _ in 0..n {
        body.push_str(entry);
    }
    body.push_str(tail);
    body.push_str("</Bundle>");
    body.into_bytes()
}

#[tokio::test]
async fn a_streamed_body_reports_early_errors_from_fetch_and_late_ones_in_the_stream() {
    let n = 40_000;
    let good = bundle_of(n, "");
    assert!(good.len() >= medgate_source_his::STREAM_PARSE_MIN);
    let rows: Vec<_> = fixed_source(good)
        .fetch(&FetchRequest::new("P1", "r"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(rows.len(), n);
    assert!(rows.iter().all(Result::is_ok));

    // Refused before the first observation: `fetch` fails, as for a collected parse.
    let mut hostile = b"<!DOCTYPE x>".to_vec();
    hostile.extend(bundle_of(n, ""));
    let err = fixed_source(hostile)
        .fetch(&FetchRequest::new("P1", "r"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");

    // Malformed after 40 000 observations: they are delivered, then the error ends the stream.
    let rows: Vec<_> = fixed_source(bundle_of(n, "<entry><oops></entry>"))
        .fetch(&FetchRequest::new("P1", "r"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(rows.len(), n + 1);
    assert!(rows[..n].iter().all(Result::is_ok));
    let Err(Error::Malformed { name, detail }) = &rows[n] else {
        panic!("{:?}", rows[n])
    };
    assert_eq!(name, "big");
    assert!(detail.contains("line 1"), "{detail}");
}

#[tokio::test]
async fn a_streamed_body_is_released_when_its_reader_goes_away() {
    let body = bundle_of(40_000, "");
    let app = axum::Router::new().route(
        "/fhir/Observation",
        get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let common: SourceCommon = toml::from_str("name = \"his\"\nkind = \"his-xml\"").unwrap();
    let budget = medgate_upstream::BodyBudget::new(64 << 20);
    let upstream = HttpUpstream::with_budget(
        "his",
        shared_client().unwrap(),
        UpstreamPolicy::from(&common),
        budget.clone(),
    );
    let config: HisConfig = toml::from_str(&format!(
        "url = \"http://127.0.0.1:{port}/fhir/Observation?patient={{patient_id}}\"\nformat = \"fhir-r4\""
    ))
    .unwrap();
    let source = config.build(BuildContext::new("his", upstream)).unwrap();

    let mut stream = source.fetch(&FetchRequest::new("P1", "r")).await.unwrap();
    for _ in 0..10 {
        stream.next().await.unwrap().unwrap();
    }
    // The parser is waiting for the reader; the body is still held.
    assert!(budget.in_flight() > 0);
    drop(stream);
    // The parser stops at its next hand-over and drops the body with its reservation.
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while budget.in_flight() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the body was released");
}
