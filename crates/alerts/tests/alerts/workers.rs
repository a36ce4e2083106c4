//! The worker pool under failure: a worker that dies mid-job, a graceful stop, two pools
//! (two replicas on PostgreSQL) on one queue, the backlog figures, and throughput.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use medgate_alerts::{ReportWorkers, Wake};
use medgate_store::{ReportState, StoreError};
use tokio_util::sync::CancellationToken;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(30);

fn config(url: &str) -> String {
    format!(
        r#"{}
[[rules]]
name = "tachycardia"
source = "epro"
code = "8867-4"
above = 120
notify = ["safety"]
"#,
        webhook_toml("safety", url, 3)
    )
}

fn fast_heart(patient: &str) -> medgate_store::NewReport {
    report(
        patient,
        vec![numeric(
            "hr",
            "8867-4",
            "130",
            "/min",
            "2026-03-01T07:58:00+08:00",
        )],
    )
}

async fn ingest_many(db: &Db, n: usize, prefix: &str) -> Vec<String> {
    let mut receipts = Vec::with_capacity(n);
    for i in 0..n {
        receipts.push(ingest(&db.store, "epro", fast_heart(&format!("{prefix}{i:04}"))).await);
    }
    receipts
}

/// Only the report workers (no delivery loop), with these options.
fn pool(
    db: &Db,
    store: &medgate_store::Store,
    url: &str,
    options: medgate_alerts::PoolOptions,
    stop: &CancellationToken,
) -> ReportWorkers {
    let _ = db;
    let rules = Arc::new(ArcSwap::from_pointee(alerting(&config(url), &[]).rules));
    ReportWorkers::spawn(store.clone(), rules, options, Wake::new(), stop.clone())
}

/// Every receipt processed after exactly `attempts` claims, with exactly one alert each,
/// and the store's completed counter equal to the number of reports.
async fn assert_processed_once(db: &Db, receipts: &[String]) {
    let s = &db.store;
    let alerts = all_alerts(s).await;
    let alerted: Vec<&str> = alerts.iter().filter_map(|a| a.receipt.as_deref()).collect();
    let unique: HashSet<&str> = alerted.iter().copied().collect();
    assert_eq!(alerted.len(), receipts.len(), "one alert per report");
    assert_eq!(unique.len(), receipts.len());
    for r in receipts {
        assert!(unique.contains(r.as_str()));
        let st = s.receipt("epro", r).await.unwrap().unwrap();
        assert_eq!(st.state, ReportState::Processed);
    }
    let stats = s.outbox_stats().await.unwrap();
    assert_eq!(
        stats.completed,
        receipts.len() as u64,
        "completed exactly once each"
    );
    assert_eq!(stats.depth(), 0);
}

mod dead_worker_is_reclaimed {
    crate::both!(super::dead_worker_is_reclaimed);
}

/// A worker that claimed a job and died (its lease is all that is left) does not lose it:
/// after the lease the pool processes it, once; the dead worker can no longer complete it.
async fn dead_worker_is_reclaimed(db: &Db) {
    let s = &db.store;
    let receipt = ingest(s, "epro", fast_heart("P1")).await;
    let lease = Duration::from_millis(800);
    let claimed = s.claim("crashed-worker", 1, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let started = Instant::now();
    let receiver = Receiver::start().await;
    let stop = CancellationToken::new();
    let workers = pool(db, s, &receiver.url, fast_options().pool, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = s.receipt("epro", &receipt).await.unwrap().unwrap();
    assert_eq!(
        held.state,
        ReportState::Processing,
        "still the dead worker's"
    );
    assert_eq!(workers.stats().claimed, 0);
    wait_processed(s, "epro", std::slice::from_ref(&receipt), LIMIT).await;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "taken only after the lease expired ({:?})",
        started.elapsed()
    );
    assert!(matches!(
        s.complete(&claimed[0], &[]).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_processed_once(db, &[receipt]).await;
    stop.cancel();
    let stats = workers.join().await;
    assert_eq!(
        (stats.claimed, stats.completed, stats.lease_lost),
        (1, 1, 0)
    );
}

mod aborted_pool_mid_job {
    crate::both!(super::aborted_pool_mid_job);
}

/// A pool aborted mid-work (as a killed process) leaves jobs leased; a new pool takes them
/// after their lease and every report is processed exactly once.
async fn aborted_pool_mid_job(db: &Db) {
    let s = &db.store;
    let receipts = ingest_many(db, 60, "P").await;
    let receiver = Receiver::start().await;
    let mut options = fast_options().pool;
    options.workers = 1;
    options.batch = 30;
    options.lease = Duration::from_millis(1500);
    let stop = CancellationToken::new();
    let first = pool(db, s, &receiver.url, options.clone(), &stop);
    eventually("the first pool completes a job", LIMIT, || async {
        s.outbox_stats().await.unwrap().completed >= 1
    })
    .await;
    let first_stats = first.abort().await;
    let after_abort = s.outbox_stats().await.unwrap();
    assert!(
        after_abort.running > 0,
        "jobs were left leased: {after_abort:?}"
    );
    assert!(after_abort.completed < 60);
    let second = pool(db, s, &receiver.url, options, &stop);
    wait_processed(s, "epro", &receipts, LIMIT).await;
    assert_processed_once(db, &receipts).await;
    stop.cancel();
    let second_stats = second.join().await;
    // (The first pool's own counts may miss a completion its abort cut off after the
    // store committed it; the store's counter above is the exact one.)
    assert!(first_stats.completed < 60);
    assert_eq!(second_stats.lease_lost, 0);
}

mod graceful_stop {
    crate::both!(super::graceful_stop);
}

/// A stop lets the job in hand finish and hands the rest of the batch back: nothing stays
/// leased, and a later pool finishes the queue.
async fn graceful_stop(db: &Db) {
    let s = &db.store;
    let receipts = ingest_many(db, 40, "P").await;
    let receiver = Receiver::start().await;
    let mut options = fast_options().pool;
    options.workers = 2;
    options.batch = 10;
    options.lease = Duration::from_secs(60);
    let stop = CancellationToken::new();
    let first = pool(db, s, &receiver.url, options.clone(), &stop);
    eventually("a job completes", LIMIT, || async {
        s.outbox_stats().await.unwrap().completed >= 1
    })
    .await;
    stop.cancel();
    let first_stats = tokio::time::timeout(Duration::from_secs(10), first.join())
        .await
        .expect("the pool stops within the grace period");
    assert_eq!(
        first_stats.claimed,
        first_stats.completed + first_stats.released,
        "every claimed job finished or handed back: {first_stats:?}"
    );
    let stats = s.outbox_stats().await.unwrap();
    assert_eq!(stats.running, 0, "nothing left leased: {stats:?}");
    assert_eq!(stats.queued + stats.completed, 40);
    // With a 60 s lease, only a handed-back job can be taken this soon.
    let stop2 = CancellationToken::new();
    let second = pool(db, s, &receiver.url, options, &stop2);
    wait_processed(s, "epro", &receipts, Duration::from_secs(20)).await;
    assert_processed_once(db, &receipts).await;
    stop2.cancel();
    second.join().await;
}

mod backlog_reflects_depth {
    crate::both!(super::backlog_reflects_depth);
}

/// The outbox figures the server's backlog poller reads follow the pool: 25 queued, then
/// drained to none, with the completed counter (the drain rate's source) at 25.
async fn backlog_reflects_depth(db: &Db) {
    let s = &db.store;
    let before = s.outbox_stats().await.unwrap();
    assert_eq!((before.depth(), before.completed), (0, 0));
    let receipts = ingest_many(db, 25, "P").await;
    let queued = s.outbox_stats().await.unwrap();
    assert_eq!((queued.queued, queued.running, queued.dead), (25, 0, 0));
    assert!(queued.oldest.is_some());
    let receiver = Receiver::start().await;
    let stop = CancellationToken::new();
    let workers = pool(db, s, &receiver.url, fast_options().pool, &stop);
    let mut depths = Vec::new();
    eventually("the queue drains", LIMIT, async || {
        let st = s.outbox_stats().await.unwrap();
        depths.push(st.depth());
        st.depth() == 0
    })
    .await;
    assert!(
        depths.windows(2).all(|w| w[1] <= w[0]),
        "the depth only falls: {depths:?}"
    );
    let drained = s.outbox_stats().await.unwrap();
    assert_eq!((drained.completed, drained.oldest), (25, None));
    wait_processed(s, "epro", &receipts, LIMIT).await;
    stop.cancel();
    assert_eq!(workers.join().await.completed, 25);
}

mod two_pools_one_queue {
    crate::both!(super::two_pools_one_queue);
}

/// Two pools on two `Store`s over one PostgreSQL database (two replicas; on SQLite two pools
/// in one process) never take the same job: every report is claimed exactly once.
async fn two_pools_one_queue(db: &Db) {
    let receipts = ingest_many(db, 200, "P").await;
    let receiver = Receiver::start().await;
    let replica = db.replica().await;
    let mut options = fast_options().pool;
    options.workers = 3;
    options.batch = 4;
    let stop = CancellationToken::new();
    let a = pool(db, &db.store, &receiver.url, options.clone(), &stop);
    let b = pool(db, &replica, &receiver.url, options, &stop);
    wait_processed(&db.store, "epro", &receipts, LIMIT).await;
    stop.cancel();
    let (a, b) = (a.join().await, b.join().await);
    assert_eq!(
        a.claimed + b.claimed,
        200,
        "no job claimed twice: {a:?} {b:?}"
    );
    assert_eq!(a.completed + b.completed, 200);
    assert_eq!(a.lease_lost + b.lease_lost + a.retried + b.retried, 0);
    assert!(
        a.completed > 0 && b.completed > 0,
        "both took part: {a:?} {b:?}"
    );
    assert_processed_once(db, &receipts).await;
    if db.schema.is_some() {
        replica.close().await;
    }
}

/// Throughput of the pool: `cargo test -p medgate-alerts --release --test alerts --
/// --ignored --nocapture throughput`. Reports of 8 diary items, one threshold rule firing
/// on a quarter of them, 4 workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn throughput() {
    for db in [Some(Db::sqlite().await), Db::postgres().await]
        .into_iter()
        .flatten()
    {
        let n = 5000;
        let t = "2026-03-01T07:58:00+08:00";
        let mut batch = Vec::new();
        for i in 0..n {
            let hr = if i % 4 == 0 { "130" } else { "72" };
            let mut r = report(
                &format!("P{i:05}"),
                vec![
                    numeric("hr", "8867-4", hr, "/min", t),
                    numeric("sys", "8480-6", "120", "mm[Hg]", t),
                    numeric("dia", "8462-4", "80", "mm[Hg]", t),
                    numeric("temp", "8310-5", "36.60", "Cel", t),
                    numeric("wt", "29463-7", "70.5", "kg", t),
                    numeric("spo2", "59408-5", "98", "%", t),
                    answer("q1", "72514-3", medgate_core::Value::String("2".into()), t),
                    answer("q2", "44250-9", medgate_core::Value::String("no".into()), t),
                ],
            );
            let patient: Arc<str> = r.patient_id.as_str().into();
            for o in &mut r.observations {
                o.patient_id = patient.clone();
                o.source = "epro".into();
            }
            batch.push(r);
            if batch.len() == 100 {
                db.store
                    .ingest(medgate_store::IngestBatch {
                        partner: "app".into(),
                        source: "epro".into(),
                        idempotency: None,
                        reports: std::mem::take(&mut batch),
                    })
                    .await
                    .unwrap();
            }
        }
        let receiver = Receiver::start().await;
        let mut options = fast_options().pool;
        let env = |k: &str, d: usize| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        options.workers = env("THROUGHPUT_WORKERS", 4);
        options.batch = env("THROUGHPUT_BATCH", 16);
        let stop = CancellationToken::new();
        let started = Instant::now();
        let options_used = (options.workers, options.batch);
        let workers = pool(&db, &db.store, &receiver.url, options, &stop);
        eventually("the queue drains", Duration::from_secs(600), || async {
            db.store.outbox_stats().await.unwrap().completed == n
        })
        .await;
        let elapsed = started.elapsed();
        stop.cancel();
        workers.join().await;
        assert_eq!(all_alerts(&db.store).await.len(), 1000.min(n as usize / 4));
        eprintln!(
            "{}: {n} report jobs in {elapsed:.2?} = {:.0} jobs/s ({} workers, batch {})",
            db.store.backend(),
            n as f64 / elapsed.as_secs_f64(),
            options_used.0,
            options_used.1
        );
        db.finish().await;
    }
}
