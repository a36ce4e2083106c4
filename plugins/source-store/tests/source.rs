//! The `store` source over a real SQLite store: registration, config, build, fetch.

use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use medgate_core::registry::SourceConfig;
use medgate_core::{
    BuildContext, CodeFilter, CodeableConcept, DateTime, Decimal, Effective, FetchRequest,
    Observation, Quantity, Registry, Upstream, UpstreamBody, Value,
};
use medgate_source_store::{register, StoreSourceConfig, KIND};
use medgate_store::{IngestBatch, NewReport, Store};

/// The port a store source never uses; building needs one.
struct NoUpstream;

#[async_trait]
impl Upstream for NoUpstream {
    async fn get(&self, _: &str, _: &FetchRequest) -> medgate_core::Result<UpstreamBody> {
        Err(medgate_core::Error::Internal(
            "a store source has no upstream".into(),
        ))
    }
}

fn context(store: Option<Arc<Store>>) -> BuildContext {
    let mut ctx = BuildContext::new("epro", Arc::new(NoUpstream));
    ctx.store = store.map(|s| s as Arc<dyn medgate_core::ObservationStore>);
    ctx
}

fn reading(patient: &str, code: &str, value: &str, at: &str) -> Observation {
    let mut o = Observation::new(patient.into(), "epro".into(), format!("{code}@{at}"));
    o.code = CodeableConcept::coded(medgate_core::model::LOINC, code, None);
    o.effective = Some(Effective::DateTime(DateTime::parse(at).unwrap()));
    o.value = Value::Quantity(Quantity::ucum(Decimal::parse(value).unwrap(), "/min"));
    o
}

#[test]
fn registers_the_store_kind_without_keys() {
    let mut registry = Registry::new();
    register(&mut registry);
    assert!(registry.source_kinds().contains(&KIND));
    assert!(toml::from_str::<StoreSourceConfig>("").is_ok());
    let err = toml::from_str::<StoreSourceConfig>("url = \"x\"").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn building_without_a_store_names_the_source() {
    let err = match StoreSourceConfig::default().build(context(None)) {
        Ok(_) => panic!("built without a store"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("source epro"), "{err}");
    assert!(err.contains("[store]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_pushed_observations_narrowed_by_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/m.db", dir.path().display()))
        .await
        .unwrap();
    let observations = vec![
        reading("P1", "8867-4", "72", "2026-03-01T08:00:00+08:00"),
        reading("P1", "9279-1", "16", "2026-03-01T08:00:00+08:00"),
    ];
    store
        .ingest(IngestBatch {
            partner: "app".into(),
            source: "epro".into(),
            idempotency: None,
            reports: vec![NewReport {
                patient_id: "P1".into(),
                kind: "epro".into(),
                reported_at: None,
                serious_adverse_event: false,
                meta: None,
                observations: observations.clone(),
            }],
        })
        .await
        .unwrap();
    let source = StoreSourceConfig::default()
        .build(context(Some(Arc::new(store.clone()))))
        .unwrap();
    let all: Vec<Observation> = source
        .fetch(&FetchRequest::new("P1", "r1"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all, observations);
    let mut request = FetchRequest::new("P1", "r2");
    request.filter.codes = vec![CodeFilter::parse("9279-1")];
    let narrowed: Vec<Observation> = source
        .fetch(&request)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(narrowed, vec![observations[1].clone()]);
    let nobody: Vec<Observation> = source
        .fetch(&FetchRequest::new("P2", "r3"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(nobody.is_empty());
    store.close().await;
}
