//! Export jobs: kick-off, claim, progress, files, finish, cancel, interrupted jobs, expiry.

use std::time::Duration;

use jiff::Timestamp;
use medgate_store::{
    ExportControl, ExportFile, ExportProgress, ExportState, NewExport, StoreError,
};

use crate::common::*;

fn new_export(partner: &str, expires_in: Duration) -> NewExport {
    NewExport {
        partner: partner.into(),
        request: serde_json::json!({"sources": ["his", "epro"], "patients": "all", "format": "csv"}),
        expires_at: Timestamp::now() + expires_in,
    }
}

fn file(n: u64) -> ExportFile {
    ExportFile {
        kind: "Observation".into(),
        url: format!("/v1/exports/x/files/{n}"),
        path: format!("x/{n}.csv"),
        size: 1000 + n,
        sha256: "ab".repeat(32),
        count: 10 * n,
    }
}

const DAY: Duration = Duration::from_secs(86_400);

mod lifecycle {
    crate::both!(super::lifecycle);
}

async fn lifecycle(db: &Db) {
    let job = db
        .store
        .create_export(new_export("research", DAY))
        .await
        .unwrap();
    assert_eq!(job.state, ExportState::Queued);
    assert!(job.request.contains("\"patients\":\"all\""));
    let claimed = db
        .store
        .claim_export("w1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a queued job");
    assert_eq!(claimed.id, job.id);
    assert_eq!(claimed.state, ExportState::Running);
    assert_eq!(claimed.owner.as_deref(), Some("w1"));
    assert!(claimed.transaction_time.is_some());
    assert!(db
        .store
        .claim_export("w2", Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());

    let progress = ExportProgress {
        patients_total: 10,
        patients_done: 4,
        patients_failed: 1,
        rows_written: 400,
    };
    let control = db
        .store
        .export_heartbeat(&job.id, "w1", progress, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(control, ExportControl::Continue);
    db.store
        .add_export_file(&job.id, "w1", file(1))
        .await
        .unwrap();
    db.store
        .add_export_file(&job.id, "w1", file(2))
        .await
        .unwrap();
    assert!(matches!(
        db.store.add_export_file(&job.id, "w2", file(3)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let done = ExportProgress {
        patients_done: 10,
        rows_written: 1000,
        ..progress
    };
    db.store
        .finish_export(&job.id, "w1", done, None)
        .await
        .unwrap();
    let finished = db.store.export(&job.id).await.unwrap().unwrap();
    assert_eq!(finished.state, ExportState::Completed);
    assert_eq!(finished.progress, done);
    assert_eq!(finished.files, vec![file(1), file(2)]);
    assert!(finished.lease_until.is_none());
    assert_eq!(
        db.store
            .cancel_export(&job.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ExportState::Completed,
        "final states stay"
    );

    // Listing is per partner, newest first.
    let second = db
        .store
        .create_export(new_export("research", DAY))
        .await
        .unwrap();
    db.store
        .create_export(new_export("someone-else", DAY))
        .await
        .unwrap();
    let listed = db.store.list_exports("research", 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        [second.id.as_str(), job.id.as_str()]
    );

    // Cancelled while running: the worker learns it at its heartbeat.
    let running = db
        .store
        .claim_export("w1", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running.id, second.id);
    db.store.cancel_export(&second.id).await.unwrap();
    let control = db
        .store
        .export_heartbeat(&second.id, "w1", progress, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(control, ExportControl::Cancelled);
    assert!(db.store.delete_export(&second.id).await.unwrap());
    assert!(db.store.export(&second.id).await.unwrap().is_none());
    assert!(db.store.export("no-such-job").await.unwrap().is_none());
}

mod interrupted {
    crate::both!(super::interrupted);
}

/// A job whose worker died is found at start (its lease passed), taken over with its
/// progress and files, and the dead worker's writes are refused.
async fn interrupted(db: &Db) {
    let job = db
        .store
        .create_export(new_export("research", DAY))
        .await
        .unwrap();
    db.store
        .claim_export("dead-worker", Duration::from_millis(150))
        .await
        .unwrap()
        .unwrap();
    db.store
        .add_export_file(&job.id, "dead-worker", file(1))
        .await
        .unwrap();
    assert!(
        db.store
            .claim_interrupted_exports("new-worker", Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty(),
        "not while its lease holds"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let after_restart = db.reopen().await;
    let taken = after_restart
        .claim_interrupted_exports("new-worker", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, job.id);
    assert_eq!(taken[0].owner.as_deref(), Some("new-worker"));
    assert_eq!(taken[0].attempts, 2);
    assert_eq!(
        taken[0].files,
        vec![file(1)],
        "files written before the crash are kept"
    );
    assert!(matches!(
        db.store
            .export_heartbeat(
                &job.id,
                "dead-worker",
                ExportProgress::default(),
                Duration::from_secs(60)
            )
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    after_restart
        .finish_export(
            &job.id,
            "new-worker",
            ExportProgress::default(),
            Some("interrupted by a restart"),
        )
        .await
        .unwrap();
    let failed = after_restart.export(&job.id).await.unwrap().unwrap();
    assert_eq!(failed.state, ExportState::Failed);
    assert_eq!(failed.error.as_deref(), Some("interrupted by a restart"));
    after_restart.close().await;
}

mod expiry {
    crate::both!(super::expiry);
}

async fn expiry(db: &Db) {
    let old = db
        .store
        .create_export(new_export("research", Duration::from_millis(1)))
        .await
        .unwrap();
    db.store
        .create_export(new_export("research", DAY))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let expired = db.store.expired_exports(Timestamp::now()).await.unwrap();
    assert_eq!(
        expired.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        [old.id.as_str()]
    );
}
