//! End to end through a real loopback HTTP server and the real `HttpUpstream`.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::Router;
use futures::TryStreamExt;
use medgate_core::{
    BuildContext, DataSource, Error, ExportSummary, Exporter, FetchRequest, Observation,
    ObservationStream, SourceCommon, SourceConfig,
};
use medgate_source_wearable::{WearableConfig, BLOCKING_PARSE_THRESHOLD};
use medgate_upstream::{shared_client, HttpUpstream, UpstreamPolicy};

type Seen = Arc<Mutex<Vec<String>>>;

const POINT: &str = r#"{"header":{"id":"hr-1","schema_id":{"namespace":"omh","name":"heart-rate","version":"1.0"}},"body":{"heart_rate":{"value":72.50,"unit":"beats/min"},"effective_time_frame":{"date_time":"2024-01-01T00:00:00+08:00"}}}"#;

async fn omh(State(seen): State<Seen>, uri: Uri) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    seen.lock().unwrap().push(path.clone());
    if path.ends_with("/unknown") {
        return (StatusCode::NOT_FOUND, String::new());
    }
    if path.ends_with("/html") {
        return (StatusCode::OK, "<html>oops</html>".into());
    }
    if path.ends_with("/big") {
        // Well over the blocking threshold: exercises the spawn_blocking path.
        let n = BLOCKING_PARSE_THRESHOLD / POINT.len() + 10;
        let points = vec![POINT; n].join(",");
        return (StatusCode::OK, format!(r#"{{"data":[{points}]}}"#));
    }
    (StatusCode::OK, format!("[{POINT}]"))
}

async fn serve() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/omh/{id}", get(omh))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/omh/{{patient_id}}"), seen)
}

fn common(name: &str) -> SourceCommon {
    serde_json::from_value(
        serde_json::json!({"name": name, "kind": "wearable-json", "retry": {"attempts": 1}}),
    )
    .unwrap()
}

fn upstream(name: &str) -> Arc<HttpUpstream> {
    HttpUpstream::new(
        name,
        shared_client().unwrap(),
        UpstreamPolicy::from(&common(name)),
    )
}

async fn fetch(source: &dyn DataSource, patient: &str) -> Result<Vec<Observation>, Error> {
    source
        .fetch(&FetchRequest::new(patient, "req-1"))
        .await?
        .try_collect()
        .await
}

#[tokio::test]
async fn fetches_and_parses_through_http() {
    let (url, seen) = serve().await;
    let config: WearableConfig =
        toml::from_str(&format!("url = \"{url}\"\nformat = \"openmhealth\"\n")).unwrap();
    assert!(config.validate().is_empty());
    let source = config
        .build(BuildContext::new("band", upstream("band")))
        .unwrap();

    // The id is percent-encoded: it cannot add path segments or a query.
    let rows = fetch(source.as_ref(), "P 1/../x?y#z").await.unwrap();
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        "/omh/P%201%2F..%2Fx%3Fy%23z"
    );
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(&*r.patient_id, "P 1/../x?y#z");
    assert_eq!(&*r.source, "band");
    assert_eq!(r.id, "hr-1");
    assert_eq!(
        common::summary(r),
        "vital-signs 8867-4 72.50 /min @2024-01-01T00:00:00+08:00"
    );

    // Unreserved characters pass through unchanged.
    fetch(source.as_ref(), "P-00_1.a~b").await.unwrap();
    assert_eq!(seen.lock().unwrap().last().unwrap(), "/omh/P-00_1.a~b");

    // A large body (parsed on the blocking pool) gives every row.
    let big = fetch(source.as_ref(), "big").await.unwrap();
    assert_eq!(big.len(), BLOCKING_PARSE_THRESHOLD / POINT.len() + 10);
    assert!(big
        .iter()
        .all(|r| common::qty(r).value.as_ref().unwrap().as_str() == "72.50"));
    // One patient id and one source name per fetch, shared by every observation.
    assert!(big
        .iter()
        .all(|r| Arc::ptr_eq(&r.patient_id, &big[0].patient_id)
            && Arc::ptr_eq(&r.source, &big[0].source)));
    assert_eq!(&*big[0].patient_id, "big");

    // Upstream 404 and a non-JSON body map to the core errors.
    assert!(matches!(
        fetch(source.as_ref(), "unknown").await,
        Err(Error::PatientNotFound { name }) if name == "band"
    ));
    match fetch(source.as_ref(), "html").await {
        Err(Error::Malformed { name, detail }) => {
            assert_eq!(name, "band");
            assert!(detail.contains("line 1"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        fetch(source.as_ref(), "").await,
        Err(Error::BadRequest(_))
    ));
}

#[tokio::test]
async fn a_body_over_the_cap_is_an_error_and_the_filter_is_left_to_the_pipeline() {
    let (url, _seen) = serve().await;
    let config: WearableConfig =
        toml::from_str(&format!("url = \"{url}\"\nformat = \"openmhealth\"\n")).unwrap();
    let common: SourceCommon = serde_json::from_value(serde_json::json!({
        "name": "band", "kind": "wearable-json", "retry": {"attempts": 1}, "max_body_bytes": 4096
    }))
    .unwrap();
    let upstream = HttpUpstream::new(
        "band",
        shared_client().unwrap(),
        UpstreamPolicy::from(&common),
    );
    let source = config.build(BuildContext::new("band", upstream)).unwrap();
    assert!(matches!(
        fetch(source.as_ref(), "big").await,
        Err(Error::BodyTooLarge { name, limit: 4096 }) if name == "band"
    ));
    // A code filter that matches nothing: the source still returns what the upstream sent.
    let mut request = FetchRequest::new("P1", "req-2");
    request.filter.codes = vec![medgate_core::CodeFilter::parse("http://loinc.org|0000-0")];
    let rows: Vec<Observation> = source
        .fetch(&request)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

/// An exporter that does nothing: the registry requires one enabled format.
struct NullExporter;

#[async_trait]
impl Exporter for NullExporter {
    fn format(&self) -> &'static str {
        "null"
    }
    fn content_type(&self) -> &'static str {
        "application/octet-stream"
    }
    fn extension(&self) -> &'static str {
        "bin"
    }
    async fn export(
        &self,
        _rows: ObservationStream,
        _out: &mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    ) -> medgate_core::Result<ExportSummary> {
        Ok(ExportSummary { rows: 0 })
    }
}

#[tokio::test]
async fn registered_kind_builds_from_a_gateway_config() {
    let (url, _seen) = serve().await;
    let text = format!(
        r#"
[exporters]
enabled = ["null"]

[[sources]]
name = "band"
kind = "wearable-json"
timeout_ms = 2000
url = "{url}"
format = "openmhealth"
max_depth = 32
"#
    );
    let config: medgate_core::Config = toml::from_str(&text).unwrap();
    let mut registry = medgate_core::Registry::new();
    medgate_source_wearable::register(&mut registry);
    registry.add_exporter(Arc::new(NullExporter));
    let plan = registry.validate(config).unwrap();
    let catalog = plan
        .build(
            &|c: &SourceCommon| upstream(&c.name) as Arc<dyn medgate_core::Upstream>,
            None,
            &tokio_util::sync::CancellationToken::new(),
        )
        .unwrap();
    let handle = catalog.source("band").unwrap();
    assert_eq!(handle.info.kind, "wearable-json");
    assert_eq!(handle.info.format.as_deref(), Some("openmhealth"));
    let rows = fetch(handle.source.as_ref(), "P000001").await.unwrap();
    assert_eq!(rows[0].code.coding[0].code.as_deref(), Some("8867-4"));
    assert_eq!(&*rows[0].patient_id, "P000001");
}

#[test]
fn registry_reports_plugin_issues_with_entry_labels() {
    let text = r#"
[exporters]
enabled = ["null"]

[[sources]]
name = "band"
kind = "wearable-json"
url = "http://h/omh"
format = "mapping"
"#;
    let config: medgate_core::Config = toml::from_str(text).unwrap();
    let mut registry = medgate_core::Registry::new();
    medgate_source_wearable::register(&mut registry);
    registry.add_exporter(Arc::new(NullExporter));
    let Err(issues) = registry.validate(config) else {
        panic!("expected issues");
    };
    let keys: Vec<_> = issues.0.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["sources[0] (band).url", "sources[0] (band).mapping"]);
}
