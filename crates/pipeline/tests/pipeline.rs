//! The pipeline's contract over the `DataSource` interface: order, per-patient failures,
//! panics, deadlines, cancellation, shutdown and the transform stage.
//!
//! The sources here are scripted implementations of the plugin trait (the unit under test is
//! the pipeline, not a plugin); the end-to-end suite drives the same pipeline through real
//! loopback upstreams.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use medgate_core::config::SourceCommon;
use medgate_core::registry::{SourceHandle, SourceInfo};
use medgate_core::{
    CodeFilter, CodeableConcept, DataSource, DateTime, Effective, Error, FetchRequest, Filter,
    Observation, ObservationStream, Upstream, UpstreamBody,
};
use medgate_pipeline::{CodeMap, OnError, Pipeline, Request, SourceTransform, Transforms};
use tokio_util::sync::CancellationToken;

/// What a scripted source does for one patient.
#[derive(Clone)]
enum Script {
    Rows(Vec<(&'static str, &'static str)>),
    NotFound,
    Down,
    Panic,
    Slow(Duration),
}

struct Scripted {
    name: &'static str,
    scripts: HashMap<&'static str, Script>,
    in_flight: Arc<AtomicUsize>,
}

/// Counts fetches in flight; decremented when the fetch future is dropped or finishes.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl DataSource for Scripted {
    async fn fetch(&self, request: &FetchRequest) -> medgate_core::Result<ObservationStream> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(self.in_flight.clone());
        let script = self.scripts.get(request.patient_id.as_str()).cloned();
        let rows = match script {
            Some(Script::Rows(rows)) => rows,
            Some(Script::NotFound) | None => {
                return Err(Error::PatientNotFound {
                    name: self.name.into(),
                })
            }
            Some(Script::Down) => {
                return Err(Error::UpstreamStatus {
                    name: self.name.into(),
                    status: 500,
                })
            }
            Some(Script::Panic) => panic!("plugin bug"),
            Some(Script::Slow(d)) => {
                tokio::time::sleep(d).await;
                vec![("slow", "8867-4")]
            }
        };
        let patient: Arc<str> = Arc::from(request.patient_id.as_str());
        let source: Arc<str> = Arc::from(self.name);
        let items: Vec<_> = rows
            .into_iter()
            .map(|(id, code)| {
                let mut o = Observation::new(patient.clone(), source.clone(), id);
                o.code = CodeableConcept::coded("urn:oid:1.2.3", code, None);
                o.effective = Some(Effective::DateTime(
                    DateTime::parse("2024-03-01T08:00:00").unwrap(),
                ));
                Ok(o)
            })
            .collect();
        Ok(futures::stream::iter(items).boxed())
    }
}

struct NoUpstream;

#[async_trait]
impl Upstream for NoUpstream {
    async fn get(&self, _: &str, _: &FetchRequest) -> medgate_core::Result<UpstreamBody> {
        unreachable!("scripted sources do not use HTTP")
    }
}

fn handle(
    name: &'static str,
    scripts: Vec<(&'static str, Script)>,
    in_flight: &Arc<AtomicUsize>,
) -> SourceHandle {
    let common: SourceCommon =
        toml::from_str(&format!("name = \"{name}\"\nkind = \"scripted\"")).unwrap();
    SourceHandle {
        info: SourceInfo {
            name: name.into(),
            kind: "scripted".into(),
            format: None,
        },
        common,
        source: Arc::new(Scripted {
            name,
            scripts: scripts.into_iter().collect(),
            in_flight: in_flight.clone(),
        }),
        upstream: Arc::new(NoUpstream),
    }
}

fn pipeline() -> (Pipeline, CancellationToken) {
    let token = CancellationToken::new();
    (
        Pipeline::new(Arc::new(Transforms::default()), token.clone()),
        token,
    )
}

fn ids(rows: &[Observation]) -> Vec<String> {
    rows.iter()
        .map(|o| format!("{}/{}/{}", o.patient_id, o.source, o.id))
        .collect()
}

fn patients(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn rows_come_in_request_order_and_a_failed_patient_is_recorded_not_fatal() {
    let n = Arc::new(AtomicUsize::new(0));
    let his = handle(
        "his",
        vec![
            ("P1", Script::Rows(vec![("a", "1"), ("b", "2")])),
            ("P2", Script::NotFound),
            ("P3", Script::Rows(vec![("c", "3")])),
        ],
        &n,
    );
    let lab = handle(
        "lab",
        vec![
            ("P1", Script::Rows(vec![("x", "9")])),
            ("P2", Script::Rows(vec![("y", "9")])),
            ("P3", Script::Down),
        ],
        &n,
    );
    let (p, _) = pipeline();
    let mut request = Request::new(vec![his, lab], patients(&["P1", "P2", "P3"]), "r1");
    request.concurrency = 4;
    let (rows, summary) = p.run(request).collect().await.unwrap();
    assert_eq!(
        ids(&rows),
        ["P1/his/a", "P1/his/b", "P1/lab/x", "P2/lab/y", "P3/his/c"]
    );
    let s = summary.snapshot();
    assert_eq!(
        (s.patients, s.patients_done, s.rows, s.failed),
        (3, 3, 5, 2)
    );
    assert_eq!(s.sources["his"].failed, 1);
    assert_eq!(s.failures[0].patient_index, 1);
    assert_eq!(s.failures[0].failure.kind, "patient-not-found");
    assert_eq!(s.failures[1].failure.kind, "upstream-status");
    assert_eq!(n.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_run_with_no_result_answers_its_most_telling_error() {
    let n = Arc::new(AtomicUsize::new(0));
    let his = handle(
        "his",
        vec![("P1", Script::NotFound), ("P2", Script::Down)],
        &n,
    );
    let (p, _) = pipeline();
    let run = p.run(Request::new(
        vec![his.clone()],
        patients(&["P1", "P2"]),
        "r",
    ));
    let e = run.ready().await.err().unwrap();
    assert_eq!(e.kind(), "upstream-status");
    let run = p.run(Request::new(vec![his], patients(&["P1"]), "r"));
    assert_eq!(run.ready().await.err().unwrap().kind(), "patient-not-found");
}

#[tokio::test]
async fn an_empty_but_successful_run_is_not_an_error() {
    let n = Arc::new(AtomicUsize::new(0));
    let his = handle("his", vec![("P1", Script::Rows(vec![]))], &n);
    let (p, _) = pipeline();
    let run = p
        .run(Request::new(vec![his], patients(&["P1"]), "r"))
        .ready()
        .await
        .unwrap();
    assert_eq!(run.rows.count().await, 0);
}

#[tokio::test]
async fn a_panicking_plugin_fails_its_own_fetch_only() {
    let n = Arc::new(AtomicUsize::new(0));
    let his = handle(
        "his",
        vec![
            ("P1", Script::Panic),
            ("P2", Script::Rows(vec![("a", "1")])),
        ],
        &n,
    );
    let (p, _) = pipeline();
    let (rows, summary) = p
        .run(Request::new(vec![his], patients(&["P1", "P2"]), "r"))
        .collect()
        .await
        .unwrap();
    assert_eq!(ids(&rows), ["P2/his/a"]);
    assert_eq!(summary.snapshot().failures[0].failure.kind, "internal");
}

#[tokio::test]
async fn stop_on_error_ends_the_stream_with_the_error() {
    let n = Arc::new(AtomicUsize::new(0));
    let his = handle(
        "his",
        vec![
            ("P1", Script::Rows(vec![("a", "1")])),
            ("P2", Script::Down),
            ("P3", Script::Rows(vec![("c", "1")])),
        ],
        &n,
    );
    let (p, _) = pipeline();
    let mut request = Request::new(vec![his], patients(&["P1", "P2", "P3"]), "r");
    request.on_error = OnError::Stop;
    let items: Vec<_> = p.run(request).rows.collect().await;
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    assert_eq!(items[1].as_ref().err().unwrap().kind(), "upstream-status");
}

#[tokio::test]
async fn an_interactive_deadline_ends_a_slow_fetch_as_a_timeout() {
    let n = Arc::new(AtomicUsize::new(0));
    let his = handle(
        "his",
        vec![("P1", Script::Slow(Duration::from_secs(5)))],
        &n,
    );
    let lab = handle("lab", vec![("P1", Script::Rows(vec![("x", "1")]))], &n);
    let (p, _) = pipeline();
    let mut request = Request::new(vec![his, lab], patients(&["P1"]), "r");
    request.deadline = Some(Instant::now() + Duration::from_millis(100));
    let started = Instant::now();
    let (rows, summary) = p.run(request).collect().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(ids(&rows), ["P1/lab/x"]);
    assert_eq!(summary.snapshot().failures[0].failure.kind, "timeout");
    assert_eq!(n.load(Ordering::SeqCst), 0, "the slow fetch was dropped");
}

#[tokio::test]
async fn dropping_the_stream_cancels_every_fetch_in_flight() {
    let n = Arc::new(AtomicUsize::new(0));
    let scripts = (0..8)
        .map(|i| {
            (
                ["P0", "P1", "P2", "P3", "P4", "P5", "P6", "P7"][i],
                Script::Slow(Duration::from_secs(30)),
            )
        })
        .collect();
    let his = handle("his", scripts, &n);
    let (p, _) = pipeline();
    let mut request = Request::new(
        vec![his],
        patients(&["P0", "P1", "P2", "P3", "P4", "P5", "P6", "P7"]),
        "r",
    );
    request.concurrency = 4;
    let mut run = p.run(request);
    let next = tokio::time::timeout(Duration::from_millis(100), run.rows.next()).await;
    assert!(next.is_err(), "nothing is ready yet");
    assert_eq!(n.load(Ordering::SeqCst), 4, "four fetches in flight");
    drop(run);
    assert_eq!(
        n.load(Ordering::SeqCst),
        0,
        "every fetch was dropped with the stream"
    );
}

#[tokio::test]
async fn shutdown_interrupts_a_run() {
    let n = Arc::new(AtomicUsize::new(0));
    let his = handle(
        "his",
        vec![
            ("P1", Script::Rows(vec![("a", "1")])),
            ("P2", Script::Slow(Duration::from_secs(30))),
        ],
        &n,
    );
    let (p, token) = pipeline();
    let mut run = p.run(Request::new(vec![his], patients(&["P1", "P2"]), "r"));
    assert!(run.rows.next().await.unwrap().is_ok());
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        token.cancel();
    });
    let item = run.rows.next().await.unwrap();
    assert_eq!(item.err().unwrap().kind(), "interrupted");
    assert!(run.rows.next().await.is_none());
    assert!(run.summary.snapshot().interrupted);
    stopper.await.unwrap();
}

#[tokio::test]
async fn transforms_map_codes_zone_times_and_filter() {
    let n = Arc::new(AtomicUsize::new(0));
    let his = handle(
        "his",
        vec![("P1", Script::Rows(vec![("a", "GLU"), ("b", "NA")]))],
        &n,
    );
    let map = CodeMap::parse(
        "lis",
        "lis.csv",
        b"source_system,source_code,target_system,target_code,target_display\nurn:oid:1.2.3,GLU,http://loinc.org,2345-7,Glucose\n",
    )
    .unwrap();
    let mut transforms = Transforms::default();
    let tz = jiff::tz::db().get("Asia/Shanghai").unwrap();
    transforms.insert(
        "his",
        SourceTransform::new("his", Some(tz), vec![Arc::new(map)]),
    );
    let p = Pipeline::new(Arc::new(transforms), CancellationToken::new());

    let (rows, _) = p
        .run(Request::new(vec![his.clone()], patients(&["P1"]), "r"))
        .collect()
        .await
        .unwrap();
    assert_eq!(
        rows[0].code.primary().unwrap().code.as_deref(),
        Some("2345-7")
    );
    assert_eq!(
        rows[0].effective.unwrap().start().unwrap().to_string(),
        "2024-03-01T08:00:00+08:00"
    );

    // The filter sees mapped codes: asking for LOINC 2345-7 finds the local GLU result.
    let mut request = Request::new(vec![his], patients(&["P1"]), "r");
    request.filter = Filter {
        codes: vec![CodeFilter::parse("http://loinc.org|2345-7")],
        since: Some("2024-03-01T00:00:00Z".parse().unwrap()),
        until: None,
    };
    let (rows, summary) = p.run(request).collect().await.unwrap();
    assert_eq!(ids(&rows), ["P1/his/a"]);
    assert_eq!(summary.snapshot().rows, 1);
}
