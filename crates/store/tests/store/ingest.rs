//! Ingestion: all-or-nothing, group commit under concurrency, idempotency, receipts.

use std::collections::HashSet;

use medgate_store::{Ingested, ReportState, StoreError};

use crate::common::*;

/// Stored receipts or a panic.
fn stored(outcome: Ingested) -> Vec<String> {
    match outcome {
        Ingested::Stored(r) => r.into_iter().map(|r| r.id).collect(),
        other => panic!("expected Stored, got {other:?}"),
    }
}

mod round_trip {
    crate::both!(super::round_trip);
}

/// A report comes back as it went in: observations equal (patient and source restored),
/// receipt status, report fields.
async fn round_trip(db: &Db) {
    let mut r = diary("P-round", 1);
    let bp = report(
        "P-round",
        vec![blood_pressure("150", "95", "2026-03-01T08:00:00Z")],
    );
    r.observations.extend(bp.observations);
    let sent = r.observations.clone();
    let ids = stored(db.store.ingest(batch(vec![r])).await.unwrap());
    assert_eq!(ids.len(), 1);
    let back = all_of(&db.store, "P-round").await;
    assert_eq!(back.len(), sent.len());
    for o in &sent {
        assert!(back.contains(o), "missing {:?}", o.id);
    }
    let report = db.store.report(&ids[0]).await.unwrap().expect("report");
    assert_eq!(report.observations, sent, "a report keeps its order");
    assert_eq!(report.patient_id, "P-round");
    assert_eq!(report.kind, "epro");
    assert_eq!(
        report.reported_at.map(|d| d.to_string()).as_deref(),
        Some("2026-03-01T08:00:00+08:00")
    );
    assert_eq!(
        report.meta,
        Some(serde_json::json!({"app": "diary", "version": "1.2"}))
    );
    let status = db
        .store
        .receipt("epro", &ids[0])
        .await
        .unwrap()
        .expect("status");
    assert_eq!(status.state, ReportState::Accepted);
    assert_eq!(status.observations, 9);
    assert_eq!(status.partner, "app");
    assert!(db.store.receipt("other", &ids[0]).await.unwrap().is_none());
    assert!(db
        .store
        .receipt("epro", "not-a-receipt")
        .await
        .unwrap()
        .is_none());
    assert_eq!(db.store.outbox_stats().await.unwrap().queued, 1);
}

mod all_or_nothing {
    crate::both!(super::all_or_nothing);
}

/// A batch the database refuses midway leaves nothing behind, and the batches committed
/// beside it (same group) are stored.
async fn all_or_nothing(db: &Db) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let b = batch(vec![diary(&format!("P-good-{i:02}"), 2)]);
            store.ingest(b).await
        }));
    }
    let bad = db
        .store
        .ingest_failing_midway(batch(vec![diary("P-bad", 3), diary("P-bad2", 3)]))
        .await;
    assert!(
        matches!(bad, Err(StoreError::Database { .. })),
        "the refused batch fails: {bad:?}"
    );
    for t in tasks {
        stored(t.await.unwrap().unwrap());
    }
    assert!(
        all_of(&db.store, "P-bad").await.is_empty(),
        "its first report was rolled back"
    );
    assert!(all_of(&db.store, "P-bad2").await.is_empty());
    let everyone = patients(&db.store).await;
    assert_eq!(everyone.len(), 40);
    assert!(everyone.iter().all(|p| p.starts_with("P-good-")));
    assert_eq!(
        db.store.outbox_stats().await.unwrap().queued,
        40,
        "no job of the bad batch"
    );
    // Refused before the database: nothing stored either.
    let err = db
        .store
        .ingest(batch(vec![diary("P-ok", 1), diary("", 1)]))
        .await;
    assert!(matches!(err, Err(StoreError::Invalid(m)) if m.contains("reports[1].patient_id")));
    assert!(all_of(&db.store, "P-ok").await.is_empty());
    let err = db.store.ingest(batch(vec![diary("P\0nul", 1)])).await;
    assert!(matches!(err, Err(StoreError::Invalid(m)) if !m.contains("nul")));
    assert!(matches!(
        db.store.ingest(batch(vec![])).await,
        Err(StoreError::Invalid(_))
    ));
}

mod group_commit {
    crate::both!(super::group_commit);
}

/// 64 writers × 25 requests of 1–3 reports: every receipt is distinct and stored once,
/// with its observations and its job.
async fn group_commit(db: &Db) {
    let mut tasks = Vec::new();
    for w in 0..64 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for i in 0..25 {
                let reports = (0..(1 + (w + i) % 3))
                    .map(|k| diary(&format!("P{w:02}-{i:02}-{k}"), 1 + (i % 28) as u32))
                    .collect();
                let ids = stored(store.ingest(batch(reports)).await.expect("ingest"));
                receipts.extend(ids);
            }
            receipts
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "receipts are unique");
    let expected: usize = (0..64)
        .flat_map(|w| (0..25).map(move |i| 1 + (w + i) % 3))
        .sum();
    assert_eq!(all.len(), expected);
    let stats = db.store.outbox_stats().await.unwrap();
    assert_eq!(stats.queued as usize, expected, "one job per report");
    let people = patients(&db.store).await;
    assert_eq!(people.len(), expected, "one patient per report");
    for id in all.iter().step_by(97) {
        let status = db.store.receipt("epro", id).await.unwrap().expect("stored");
        assert_eq!(status.observations, 8);
    }
    assert_eq!(all_of(&db.store, "P07-03-1").await.len(), 8, "exactly once");
}

mod idempotency {
    crate::both!(super::idempotency);
}

/// Same key and body: the original receipts, nothing stored twice; another body: a
/// conflict; another partner or source: its own key space.
async fn idempotency(db: &Db) {
    let body = r#"{"patient_id":"P-idem"}"#;
    let first = db
        .store
        .ingest(keyed(
            vec![diary("P-idem", 1), diary("P-idem2", 1)],
            "k-1",
            body,
        ))
        .await
        .unwrap();
    let ids = stored(first.clone());
    let again = db
        .store
        .ingest(keyed(
            vec![diary("P-idem", 1), diary("P-idem2", 1)],
            "k-1",
            body,
        ))
        .await
        .unwrap();
    assert_eq!(
        again,
        Ingested::Replayed(first.receipts().unwrap().to_vec())
    );
    assert_eq!(
        all_of(&db.store, "P-idem").await.len(),
        8,
        "not stored twice"
    );
    assert_eq!(db.store.outbox_stats().await.unwrap().queued, 2);
    let other_body = db
        .store
        .ingest(keyed(vec![diary("P-idem", 1)], "k-1", "{}"))
        .await
        .unwrap();
    assert_eq!(other_body, Ingested::KeyConflict);
    let mut other_partner = keyed(vec![diary("P-idem", 1)], "k-1", body);
    other_partner.partner = "lab".into();
    stored(db.store.ingest(other_partner).await.unwrap());
    assert_eq!(all_of(&db.store, "P-idem").await.len(), 16);
    // After a restart (a new store on the same database): still the original receipts.
    db.store.close().await;
    let reopened = db.reopen().await;
    let after = reopened
        .ingest(keyed(
            vec![diary("P-idem", 1), diary("P-idem2", 1)],
            "k-1",
            body,
        ))
        .await
        .unwrap();
    assert_eq!(
        after
            .receipts()
            .map(|r| r.iter().map(|r| r.id.clone()).collect::<Vec<_>>()),
        Some(ids)
    );
    assert!(matches!(after, Ingested::Replayed(_)));
    assert_eq!(
        reopened
            .purge_idempotency(jiff::Timestamp::now())
            .await
            .unwrap(),
        2
    );
    reopened.close().await;
}

mod concurrent_idempotency {
    crate::both!(super::concurrent_idempotency);
}

/// 32 identical requests at once (two stores on one database: two replicas for
/// PostgreSQL): one insert, 31 replays of the same receipts.
async fn concurrent_idempotency(db: &Db) {
    let second = db.reopen().await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .ingest(keyed(vec![diary("P-race", 1)], "same-key", "same-body"))
                .await
                .expect("ingest")
        }));
    }
    let mut stored_count = 0;
    let mut receipts = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            Ingested::Stored(r) => {
                stored_count += 1;
                receipts.insert(r[0].id.clone());
            }
            Ingested::Replayed(r) => {
                receipts.insert(r[0].id.clone());
            }
            Ingested::KeyConflict => panic!("same body is no conflict"),
        }
    }
    assert_eq!(stored_count, 1, "exactly one insert");
    assert_eq!(receipts.len(), 1, "everyone got the same receipt");
    assert_eq!(all_of(&db.store, "P-race").await.len(), 8);
    assert_eq!(db.store.outbox_stats().await.unwrap().queued, 1);
    second.close().await;
}
