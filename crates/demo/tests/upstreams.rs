//! The simulated upstreams answer like real ones, over a real loopback socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use medgate_demo::{his_router, spawn_demo, wearable_router, Workload};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn workload() -> Arc<Workload> {
    Arc::new(Workload {
        patients: 3,
        observations: 4,
        ..Workload::default()
    })
}

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn get(url: String) -> (u16, String, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn his_serves_bundles_and_fhir_errors() {
    let w = workload();
    let his = serve(his_router(w.clone())).await;
    let url = |query: &str| format!("http://{his}/fhir/Observation{query}");

    let (status, content_type, body) = get(url("?patient=P000003")).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/fhir+xml")
    );
    assert_eq!(body, w.fhir_bundle(2));
    assert_eq!(body.matches("<entry>").count(), 4);

    for unknown in [
        "?patient=P000004",
        "?patient=P000000",
        "?patient=nobody&x=1",
    ] {
        let (status, content_type, body) = get(url(unknown)).await;
        assert_eq!(
            (status, content_type.as_str()),
            (404, "application/fhir+xml"),
            "{unknown}"
        );
        assert!(body.contains("<OperationOutcome"), "{unknown}");
        assert!(body.contains("<code value=\"not-found\"/>"), "{unknown}");
        // Error bodies never echo the id that was asked for.
        assert!(
            !body.contains("P00000") && !body.contains("nobody"),
            "{unknown}"
        );
    }

    for missing in ["", "?patient=", "?subject=P000001"] {
        let (status, content_type, body) = get(url(missing)).await;
        assert_eq!(
            (status, content_type.as_str()),
            (400, "application/fhir+xml"),
            "{missing}"
        );
        assert!(body.contains("<code value=\"required\"/>"), "{missing}");
    }

    // Invalid percent-escapes decode leniently to text that is no patient id.
    let (status, _, body) = get(url("?patient=%ZZ")).await;
    assert_eq!(status, 404);
    assert!(body.contains("<code value=\"not-found\"/>"));
}

#[tokio::test]
async fn wearable_serves_data_points_and_json_errors() {
    let w = workload();
    let wearable = serve(wearable_router(w.clone())).await;

    let (status, content_type, body) = get(format!("http://{wearable}/omh/P000001")).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(body, w.omh_json(0));
    let points: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(points.as_array().unwrap().len(), 4);

    let (status, content_type, body) = get(format!("http://{wearable}/omh/P000009")).await;
    assert_eq!((status, content_type.as_str()), (404, "application/json"));
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "not_found");
    assert!(!body.contains("P000009"));
}

/// True while something accepts connections on `addr` and answers HTTP.
async fn answers(addr: SocketAddr) -> bool {
    // A fresh client: no pooled keep-alive connection from earlier requests.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client
        .get(format!("http://{addr}/omh/P000001"))
        .send()
        .await
        .is_ok()
}

async fn stops_answering(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !answers(addr).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn spawn_demo_serves_both_and_stops_on_cancel() {
    let w = workload();
    let stop = CancellationToken::new();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let up = spawn_demo(any, any, w.clone(), stop.clone()).await.unwrap();
    assert_ne!(up.his.port(), 0);
    assert_ne!(up.wearable.port(), 0);
    assert_ne!(up.his, up.wearable);

    let (status, _, body) = get(format!(
        "http://{}/fhir/Observation?patient=P000001",
        up.his
    ))
    .await;
    assert_eq!((status, body), (200, w.fhir_bundle(0)));
    let (status, _, body) = get(format!("http://{}/omh/P000002", up.wearable)).await;
    assert_eq!((status, body), (200, w.omh_json(1)));

    stop.cancel();
    assert!(
        stops_answering(up.wearable).await,
        "the wearable still answers after cancel"
    );
    assert!(
        stops_answering(up.his).await,
        "the HIS still answers after cancel"
    );
}

#[tokio::test]
async fn spawn_demo_reports_the_address_it_cannot_bind() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let stop = CancellationToken::new();

    let err = spawn_demo(any, taken_addr, workload(), stop.clone())
        .await
        .unwrap_err();
    assert_eq!(err.addr, taken_addr);
    assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err
        .to_string()
        .starts_with(&format!("cannot listen on {taken_addr}: ")));

    let err = spawn_demo(taken_addr, any, workload(), stop)
        .await
        .unwrap_err();
    assert_eq!(err.addr, taken_addr);
}
