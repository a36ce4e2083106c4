//! Alerts and webhook deliveries: record, claim, retry, deliver, dead-letter, list.

use std::time::Duration;

use jiff::Timestamp;
use medgate_store::{AlertQuery, AlertState, NewAlert, StoreError};

use crate::common::*;

fn alert(rule: &str, receipt: &str) -> NewAlert {
    NewAlert {
        rule: rule.into(),
        webhook: "safety".into(),
        receipt: Some(receipt.into()),
        source: Some("epro".into()),
        payload: serde_json::json!({"type": "alert", "rule": rule}),
    }
}

mod lifecycle {
    crate::both!(super::lifecycle);
}

async fn lifecycle(db: &Db) {
    let n = db
        .store
        .record_alerts(&[
            alert("sae", "r1"),
            alert("tachycardia", "r1"),
            alert("sae", "r2"),
        ])
        .await
        .unwrap();
    assert_eq!(n, 3);
    let claimed = db
        .store
        .claim_deliveries("d1", 2, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].payload, r#"{"type":"alert","rule":"sae"}"#);
    assert_eq!(claimed[0].attempt, 1);
    let delivering = db
        .store
        .alerts(AlertQuery {
            state: Some(AlertState::Delivering),
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(delivering.len(), 2);

    db.store.delivered(&claimed[0], 204).await.unwrap();
    let soon = Timestamp::now() + Duration::from_millis(300);
    db.store
        .retry_delivery(&claimed[1], Some(503), "HTTP 503", soon)
        .await
        .unwrap();
    assert!(matches!(
        db.store.delivered(&claimed[1], 200).await,
        Err(StoreError::LeaseLost { .. })
    ));
    // Only the third is due now.
    let third = db
        .store
        .claim_deliveries("d2", 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(third.len(), 1);
    // d2 dies; after its lease and the retry time, both come back.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let back = db
        .store
        .claim_deliveries("d3", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(back.len(), 2);
    assert!(back.iter().all(|d| d.attempt == 2));
    for d in &back {
        db.store
            .dead_delivery(d, None, "connection refused")
            .await
            .unwrap();
    }

    let all = db.store.alerts(AlertQuery::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let delivered: Vec<_> = all
        .iter()
        .filter(|a| a.state == AlertState::Delivered)
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].last_status, Some(204));
    assert!(delivered[0].delivered_at.is_some());
    let dead = db
        .store
        .alerts(AlertQuery {
            state: Some(AlertState::Dead),
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead
        .iter()
        .all(|a| a.last_error.as_deref() == Some("connection refused")));
    let page = db
        .store
        .alerts(AlertQuery {
            before_id: Some(all[0].id),
            limit: 1,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, all[1].id);
    assert!(db
        .store
        .claim_deliveries("d4", 10, Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());
}
