//! The outbox: claims, priorities, leases, retries, dead letters, stats; alerts recorded
//! with completion.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use medgate_store::{NewAlert, ReportState, StoreError};

use crate::common::*;

const MINUTE: Duration = Duration::from_secs(60);

async fn ingest_n(db: &Db, n: usize, prefix: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let outcome = db
            .store
            .ingest(batch(vec![diary(&format!("{prefix}{i:03}"), 1)]))
            .await
            .unwrap();
        ids.extend(outcome.receipts().unwrap().iter().map(|r| r.id.clone()));
    }
    ids
}

mod sae_first_then_oldest {
    crate::both!(super::sae_first_then_oldest);
}

async fn sae_first_then_oldest(db: &Db) {
    let normal = ingest_n(db, 3, "P-n").await;
    let mut sae = diary("P-sae", 1);
    sae.serious_adverse_event = true;
    let sae_id = db
        .store
        .ingest(batch(vec![sae]))
        .await
        .unwrap()
        .receipts()
        .unwrap()[0]
        .id
        .clone();
    let first = db.store.claim("w1", 1, MINUTE).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receipt, sae_id, "the SAE jumps the queue");
    assert!(first[0].serious_adverse_event);
    assert_eq!(first[0].attempt, 1);
    let rest = db.store.claim("w1", 10, MINUTE).await.unwrap();
    let order: Vec<&str> = rest.iter().map(|j| j.receipt.as_str()).collect();
    assert_eq!(
        order,
        normal.iter().map(String::as_str).collect::<Vec<_>>(),
        "oldest first"
    );
    assert!(db.store.claim("w1", 10, MINUTE).await.unwrap().is_empty());
    let stats = db.store.outbox_stats().await.unwrap();
    assert_eq!((stats.queued, stats.running), (0, 4));
    let status = db.store.receipt("epro", &sae_id).await.unwrap().unwrap();
    assert_eq!(status.state, ReportState::Processing);
}

mod lifecycle {
    crate::both!(super::lifecycle);
}

/// complete (with alerts), retry (not before its time), dead; stats and receipts follow.
async fn lifecycle(db: &Db) {
    let ids = ingest_n(db, 3, "P-life").await;
    let before = Timestamp::now();
    let jobs = db.store.claim("w1", 3, MINUTE).await.unwrap();
    assert_eq!(jobs.len(), 3);
    let stats = db.store.outbox_stats().await.unwrap();
    assert!(stats.oldest.is_some_and(|t| t <= before));
    assert!(stats.oldest_age(Timestamp::now()).is_some());

    let alert = NewAlert {
        rule: "tachycardia".into(),
        webhook: "safety".into(),
        receipt: Some(jobs[0].receipt.clone()),
        source: Some("epro".into()),
        payload: serde_json::from_str(r#"{"rule": "tachycardia", "value": 121.50}"#).unwrap(),
    };
    db.store
        .complete(&jobs[0], std::slice::from_ref(&alert))
        .await
        .unwrap();
    assert!(
        matches!(
            db.store.complete(&jobs[0], &[]).await,
            Err(StoreError::LeaseLost { .. })
        ),
        "completing twice is refused"
    );
    let status = db.store.receipt("epro", &ids[0]).await.unwrap().unwrap();
    assert_eq!(status.state, ReportState::Processed);
    assert!(status.processed_at.is_some());
    let alerts = db.store.alerts(Default::default()).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].payload, r#"{"rule":"tachycardia","value":121.50}"#,
        "bytes kept"
    );
    assert_eq!(
        db.store.record_alerts(&[alert]).await.unwrap(),
        0,
        "recorded once"
    );

    let later = Timestamp::now() + Duration::from_millis(400);
    db.store
        .retry(&jobs[1], "webhook timeout", later)
        .await
        .unwrap();
    let status = db.store.receipt("epro", &ids[1]).await.unwrap().unwrap();
    assert_eq!(status.state, ReportState::Accepted);
    assert_eq!(status.error.as_deref(), Some("webhook timeout"));
    assert!(
        db.store.claim("w2", 5, MINUTE).await.unwrap().is_empty(),
        "not before its time"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = db.store.claim("w2", 5, MINUTE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].receipt.as_str(), again[0].attempt),
        (ids[1].as_str(), 2)
    );

    db.store.dead(&jobs[2], "rule engine failed").await.unwrap();
    let status = db.store.receipt("epro", &ids[2]).await.unwrap().unwrap();
    assert_eq!(status.state, ReportState::Failed);
    assert_eq!(status.error.as_deref(), Some("rule engine failed"));

    db.store.complete(&again[0], &[]).await.unwrap();
    let stats = db.store.outbox_stats().await.unwrap();
    assert_eq!(
        (stats.queued, stats.running, stats.dead, stats.completed),
        (0, 0, 1, 2)
    );
    assert_eq!(stats.depth(), 0);
    assert!(stats.oldest.is_none());
}

mod lease_expiry {
    crate::both!(super::lease_expiry);
}

/// A worker that dies holding a job: after its lease the job is claimed again, and the dead
/// worker's late completion is refused.
async fn lease_expiry(db: &Db) {
    let ids = ingest_n(db, 1, "P-lease").await;
    let crashed = db
        .store
        .claim("crashed", 1, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(crashed.len(), 1);
    assert!(
        db.store.claim("other", 1, MINUTE).await.unwrap().is_empty(),
        "still leased"
    );
    let renewed = db
        .store
        .renew(&crashed[0], Duration::from_millis(300))
        .await
        .unwrap();
    assert!(renewed.lease_until > crashed[0].lease_until);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let taken = db.store.claim("other", 1, MINUTE).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].receipt, ids[0]);
    assert_eq!(taken[0].attempt, 2);
    assert!(matches!(
        db.store.complete(&crashed[0], &[]).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        db.store.renew(&crashed[0], MINUTE).await,
        Err(StoreError::LeaseLost { .. })
    ));
    db.store.complete(&taken[0], &[]).await.unwrap();
    // reclaim_expired on its own (what a server calls at start).
    ingest_n(db, 2, "P-lease2").await;
    db.store
        .claim("gone", 2, Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(db.store.reclaim_expired().await.unwrap(), 2);
    assert_eq!(db.store.outbox_stats().await.unwrap().queued, 2);
}

mod claims_are_exclusive {
    crate::both!(super::claims_are_exclusive);
}

/// Two stores on one database (two replicas on PostgreSQL), 8 workers each, claiming in
/// small bites: every job is claimed exactly once and all complete.
async fn claims_are_exclusive(db: &Db) {
    let mut reports = Vec::new();
    for i in 0..300 {
        reports.push(diary(&format!("P-x{i:03}"), 1));
    }
    for chunk in reports.chunks(50) {
        db.store.ingest(batch(chunk.to_vec())).await.unwrap();
    }
    let second = db.reopen().await;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let store = if w % 2 == 0 {
            db.store.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let jobs = store.claim(&format!("w{w}"), 3, MINUTE).await.unwrap();
                if jobs.is_empty() {
                    break;
                }
                for j in jobs {
                    store.complete(&j, &[]).await.unwrap();
                    mine.push(j.receipt);
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 300, "every job ran");
    assert_eq!(distinct.len(), 300, "no job ran twice");
    let stats = second.outbox_stats().await.unwrap();
    assert_eq!((stats.depth(), stats.completed), (0, 300));
    second.close().await;
}
