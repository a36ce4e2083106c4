//! A panicking plugin fails its request with a 500 problem; the process keeps serving.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use futures::StreamExt;
use medgate::state::{AppState, Runtime, Services};
use medgate_core::{
    BuildContext, Config, DataSource, FetchRequest, ObservationStream, SourceConfig,
};
use serde::Deserialize;
use tower::ServiceExt;

/// `kind = "panics"`: `when = "fetch"` panics in `fetch`, `when = "stream"` while streaming.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PanicConfig {
    when: String,
}

struct Panicky(String);

#[async_trait]
impl DataSource for Panicky {
    async fn fetch(&self, _: &FetchRequest) -> medgate_core::Result<ObservationStream> {
        if self.0 == "fetch" {
            panic!("plugin bug in fetch");
        }
        Ok(futures::stream::once(async { panic!("plugin bug while streaming") }).boxed())
    }
}

impl SourceConfig for PanicConfig {
    fn build(&self, _: BuildContext) -> medgate_core::Result<Arc<dyn DataSource>> {
        Ok(Arc::new(Panicky(self.when.clone())))
    }
}

async fn state() -> AppState {
    let mut registry = medgate::registry();
    registry.add_source_kind::<PanicConfig>("panics");
    let dir = std::env::temp_dir().join(format!("medgate-panic-{}", std::process::id()));
    let text = format!(
        "[auth]\nrequired = false\n[audit]\npath = {:?}\n[[sources]]\nname = \"a\"\nkind = \"panics\"\nwhen = \"fetch\"\n[[sources]]\nname = \"b\"\nkind = \"panics\"\nwhen = \"stream\"\n",
        dir.join("audit.jsonl").display().to_string()
    );
    let config = Config::from_toml(&text).unwrap();
    let plan = registry.validate(config).unwrap();
    let client = medgate_upstream::shared_client().unwrap();
    let upstream_for = |c: &medgate_core::SourceCommon| -> Arc<dyn medgate_core::Upstream> {
        medgate_upstream::HttpUpstream::new(
            c.name.clone(),
            client.clone(),
            medgate_upstream::UpstreamPolicy::from(c),
        )
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let catalog = plan.build(&upstream_for, None, &shutdown).unwrap();
    let transforms = medgate_pipeline::Transforms::build(&catalog, &Default::default()).unwrap();
    let pipeline = medgate_pipeline::Pipeline::new(Arc::new(transforms), shutdown);
    let jobs = Arc::new(medgate_exports::Snapshot::new(
        &catalog,
        pipeline.clone(),
        Default::default(),
        &plan.config,
        None,
    ));
    let runtime = Runtime {
        pipeline,
        jobs,
        profiles: Default::default(),
        catalog,
        server: plan.config.server.clone(),
        access: medgate::access::Access::from_config(&plan.config),
        exports: Arc::new(tokio::sync::Semaphore::new(1)),
        metrics_token: None,
        ingest: Default::default(),
        audit_max_rejected_ids: 100,
    };
    let audit =
        medgate_audit::AuditLog::open(&plan.config.audit.path, medgate_audit::Durability::Flush)
            .unwrap();
    let store = medgate_store::Store::open(&format!("sqlite://{}", dir.join("store.db").display()))
        .await
        .unwrap();
    let services = Services {
        limiter: Arc::new(medgate_ratelimit::InProcessLimiter::new()),
        fail_open: true,
        audit,
        store,
        backlog: Default::default(),
    };
    AppState::new(runtime, services, medgate_alerts::Wake::new())
}

async fn get(app: &axum::Router, uri: &str) -> (u16, serde_json::Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn plugin_panics_become_500_problems_and_serving_goes_on() {
    let app = medgate::app(state().await);
    for source in ["a", "b"] {
        let (status, body) = get(&app, &format!("/v1/data/{source}?patient_id=P1")).await;
        assert_eq!(status, 500, "{body}");
        assert_eq!(
            body["detail"],
            format!("internal error: source {source} failed unexpectedly")
        );
    }
    let (status, body) = get(&app, "/v1/patients/P1/observations").await;
    assert_eq!(status, 502, "both sources failed: {body}");
    assert_eq!(body["sources"][0]["error"]["status"], 500);
    let (status, _) = get(&app, "/healthz").await;
    assert_eq!(status, 200, "still serving");
}
