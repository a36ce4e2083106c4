//! PostgreSQL group commit: committer tasks write what is queued, a group per transaction.
//!
//! A group is written with three statements whatever its size: the idempotency records
//! (`INSERT … ON CONFLICT DO NOTHING RETURNING`, which waits for a concurrent insert of the
//! same key on another connection or replica and then sees it), the existing records of
//! keys already taken (replays and conflicts), and one `UNNEST` statement that inserts every
//! report, job and observation. Two requests with the same key in one group are not sent
//! together: the second runs after the group, on its own, and so finds the first's record.
//! When a group fails, each of its batches is retried alone, so a bad batch fails alone.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::postgres::PgPool;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::clock::ts;
use crate::encode::PreparedBatch;
use crate::error::{Result, StoreError};
use crate::types::{Ingested, Receipt};

/// Most batches in one transaction.
const MAX_GROUP: usize = 512;

pub(crate) struct Pending {
    pub batch: PreparedBatch,
    pub reply: oneshot::Sender<Result<Ingested>>,
}

/// One committer: takes a group, writes it, answers, until the queue closes.
pub(crate) async fn run(pool: PgPool, queue: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let group = {
            let mut rx = queue.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(p) => group.push(p),
                    Err(_) => break,
                }
            }
            group
        };
        commit(&pool, group).await;
    }
}

async fn commit(pool: &PgPool, group: Vec<Pending>) {
    let mut seen = HashSet::new();
    let (leaders, followers): (Vec<Pending>, Vec<Pending>) =
        group.into_iter().partition(|p| match &p.batch.idempotency {
            Some(k) => seen.insert((
                p.batch.partner.clone(),
                p.batch.source.clone(),
                k.key.clone(),
            )),
            None => true,
        });
    let batches: Vec<&PreparedBatch> = leaders.iter().map(|p| &p.batch).collect();
    match write(pool, &batches).await {
        Ok(outcomes) => {
            for (p, outcome) in leaders.into_iter().zip(outcomes) {
                let _ = p.reply.send(Ok(outcome));
            }
        }
        Err(e) if leaders.len() == 1 => {
            for p in leaders {
                let _ = p.reply.send(Err(e.duplicate()));
            }
        }
        Err(_) => {
            for p in leaders {
                alone(pool, p).await;
            }
        }
    }
    for p in followers {
        alone(pool, p).await;
    }
}

async fn alone(pool: &PgPool, p: Pending) {
    let outcome = write(pool, &[&p.batch])
        .await
        .and_then(|mut o| o.pop().ok_or(StoreError::Closed));
    let _ = p.reply.send(outcome);
}

/// Writes `batches` in one transaction; one outcome per batch, in order.
async fn write(pool: &PgPool, batches: &[&PreparedBatch]) -> Result<Vec<Ingested>> {
    let err = |e| StoreError::pg("ingest", e);
    let mut tx = pool.begin().await.map_err(err)?;
    let mut outcomes: Vec<Option<Ingested>> = vec![None; batches.len()];
    idempotency(&mut tx, batches, &mut outcomes).await?;
    let fresh: Vec<&PreparedBatch> = batches
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.is_none())
        .map(|(b, _)| *b)
        .collect();
    if !fresh.is_empty() {
        insert_reports(&mut tx, &fresh).await?;
    }
    tx.commit().await.map_err(err)?;
    batches
        .iter()
        .zip(outcomes)
        .map(|(b, o)| match o {
            Some(o) => Ok(o),
            None => stored(b),
        })
        .collect()
}

fn stored(b: &PreparedBatch) -> Result<Ingested> {
    let received_at = ts(b.received_at_us)?;
    Ok(Ingested::Stored(
        b.reports
            .iter()
            .map(|r| Receipt {
                id: r.receipt_text.clone(),
                received_at,
            })
            .collect(),
    ))
}

/// Inserts the keyed batches' idempotency records; fills in replays and conflicts for keys
/// that were taken.
async fn idempotency(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    batches: &[&PreparedBatch],
    outcomes: &mut [Option<Ingested>],
) -> Result<()> {
    let err = |e| StoreError::pg("ingest", e);
    // Sorted by key: two committers inserting overlapping keys lock them in one order.
    let mut keyed: Vec<usize> = (0..batches.len())
        .filter(|i| batches[*i].idempotency.is_some())
        .collect();
    if keyed.is_empty() {
        return Ok(());
    }
    let key = |i: usize| {
        let b = batches[i];
        let k = b.idempotency.as_ref().map(|k| k.key.as_str()).unwrap_or("");
        (b.partner.as_str(), b.source.as_str(), k)
    };
    keyed.sort_by(|a, b| key(*a).cmp(&key(*b)));
    let partners: Vec<&str> = keyed.iter().map(|i| key(*i).0).collect();
    let sources: Vec<&str> = keyed.iter().map(|i| key(*i).1).collect();
    let keys: Vec<&str> = keyed.iter().map(|i| key(*i).2).collect();
    let hashes: Vec<Vec<u8>> = keyed
        .iter()
        .map(|i| {
            batches[*i]
                .idempotency
                .as_ref()
                .map(|k| k.body_sha256.to_vec())
                .unwrap_or_default()
        })
        .collect();
    let receipts: Vec<String> = keyed.iter().map(|i| batches[*i].receipts_json()).collect();
    let created: Vec<i64> = keyed.iter().map(|i| batches[*i].received_at_us).collect();
    let inserted: HashSet<(String, String, String)> = sqlx::query(
        "INSERT INTO idempotency (partner, source, key, body_sha256, receipts, created_us)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::int8[])
         ON CONFLICT DO NOTHING
         RETURNING partner, source, key",
    )
    .bind(&partners)
    .bind(&sources)
    .bind(&keys)
    .bind(&hashes)
    .bind(&receipts)
    .bind(&created)
    .fetch_all(&mut **tx)
    .await
    .map_err(err)?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
    .collect::<std::result::Result<_, sqlx::Error>>()
    .map_err(err)?;
    let taken: Vec<usize> = keyed
        .into_iter()
        .filter(|i| {
            let (p, s, k) = key(*i);
            !inserted.contains(&(p.to_owned(), s.to_owned(), k.to_owned()))
        })
        .collect();
    for i in taken {
        let (p, s, k) = key(i);
        let row = sqlx::query(
            "SELECT body_sha256, receipts, created_us FROM idempotency
             WHERE partner = $1 AND source = $2 AND key = $3",
        )
        .bind(p)
        .bind(s)
        .bind(k)
        .fetch_one(&mut **tx)
        .await
        .map_err(err)?;
        let hash: Vec<u8> = row.try_get(0).map_err(err)?;
        let receipts: String = row.try_get(1).map_err(err)?;
        let created: i64 = row.try_get(2).map_err(err)?;
        let sent = batches[i]
            .idempotency
            .as_ref()
            .map(|k| k.body_sha256)
            .unwrap_or_default();
        outcomes[i] = Some(crate::replay(&hash, &sent, &receipts, created)?);
    }
    Ok(())
}

/// Every report, job and observation of `batches` in one statement.
async fn insert_reports(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    batches: &[&PreparedBatch],
) -> Result<()> {
    let reports = batches.iter().map(|b| b.reports.len()).sum();
    let observations = batches.iter().map(|b| b.observation_count()).sum();
    let mut r = ReportColumns::with_capacity(reports);
    let mut o = ObservationColumns::with_capacity(observations);
    for b in batches {
        for report in &b.reports {
            r.receipt.push(report.receipt);
            r.source.push(b.source.as_str());
            r.partner.push(b.partner.as_str());
            r.patient.push(report.patient_id.as_str());
            r.kind.push(report.kind.as_str());
            r.reported_at.push(report.reported_at.as_deref());
            r.meta.push(report.meta.as_deref());
            r.received.push(b.received_at_us);
            r.sae.push(report.sae);
            r.count.push(report.observations.len() as i32);
            for (seq, obs) in report.observations.iter().enumerate() {
                o.receipt.push(report.receipt);
                o.seq.push(seq as i32);
                o.source.push(b.source.as_str());
                o.patient.push(report.patient_id.as_str());
                o.start.push(obs.start_us);
                o.end.push(obs.end_us);
                o.system.push(obs.code_system.as_deref());
                o.code.push(obs.code.as_deref());
                o.other.push(obs.other_codes);
                o.body.push(obs.body.as_slice());
            }
        }
    }
    sqlx::query(
        "WITH r AS (
            INSERT INTO reports (receipt, source, partner, patient_id, kind, reported_at, meta,
                                 received_at_us, sae, state, observation_count)
            SELECT t.receipt, t.source, t.partner, t.patient_id, t.kind, t.reported_at, t.meta,
                   t.received_at_us, t.sae, 'accepted', t.n
            FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                        $7::text[], $8::int8[], $9::bool[], $10::int4[])
                 AS t(receipt, source, partner, patient_id, kind, reported_at, meta,
                      received_at_us, sae, n)
         ), j AS (
            INSERT INTO jobs (receipt, source, sae, priority, state, not_before_us, created_us,
                              updated_us)
            SELECT t.receipt, t.source, t.sae, CASE WHEN t.sae THEN 100 ELSE 0 END, 'queued',
                   t.at, t.at, t.at
            FROM UNNEST($1::uuid[], $2::text[], $9::bool[], $8::int8[]) AS t(receipt, source, sae, at)
         )
         INSERT INTO observations (receipt, seq, source, patient_id, start_us, end_us,
                                   code_system, code, other_codes, body)
         SELECT * FROM UNNEST($11::uuid[], $12::int4[], $13::text[], $14::text[], $15::int8[],
                              $16::int8[], $17::text[], $18::text[], $19::bool[], $20::bytea[])",
    )
    .bind(&r.receipt)
    .bind(&r.source)
    .bind(&r.partner)
    .bind(&r.patient)
    .bind(&r.kind)
    .bind(&r.reported_at)
    .bind(&r.meta)
    .bind(&r.received)
    .bind(&r.sae)
    .bind(&r.count)
    .bind(&o.receipt)
    .bind(&o.seq)
    .bind(&o.source)
    .bind(&o.patient)
    .bind(&o.start)
    .bind(&o.end)
    .bind(&o.system)
    .bind(&o.code)
    .bind(&o.other)
    .bind(&o.body)
    .execute(&mut **tx)
    .await
    .map_err(|e| StoreError::pg("ingest", e))?;
    Ok(())
}

#[derive(Default)]
struct ReportColumns<'a> {
    receipt: Vec<uuid::Uuid>,
    source: Vec<&'a str>,
    partner: Vec<&'a str>,
    patient: Vec<&'a str>,
    kind: Vec<&'a str>,
    reported_at: Vec<Option<&'a str>>,
    meta: Vec<Option<&'a str>>,
    received: Vec<i64>,
    sae: Vec<bool>,
    count: Vec<i32>,
}

impl ReportColumns<'_> {
    fn with_capacity(n: usize) -> Self {
        ReportColumns {
            receipt: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            partner: Vec::with_capacity(n),
            patient: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            reported_at: Vec::with_capacity(n),
            meta: Vec::with_capacity(n),
            received: Vec::with_capacity(n),
            sae: Vec::with_capacity(n),
            count: Vec::with_capacity(n),
        }
    }
}

#[derive(Default)]
struct ObservationColumns<'a> {
    receipt: Vec<uuid::Uuid>,
    seq: Vec<i32>,
    source: Vec<&'a str>,
    patient: Vec<&'a str>,
    start: Vec<Option<i64>>,
    end: Vec<Option<i64>>,
    system: Vec<Option<&'a str>>,
    code: Vec<Option<&'a str>>,
    other: Vec<bool>,
    body: Vec<&'a [u8]>,
}

impl ObservationColumns<'_> {
    fn with_capacity(n: usize) -> Self {
        ObservationColumns {
            receipt: Vec::with_capacity(n),
            seq: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            patient: Vec::with_capacity(n),
            start: Vec::with_capacity(n),
            end: Vec::with_capacity(n),
            system: Vec::with_capacity(n),
            code: Vec::with_capacity(n),
            other: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
        }
    }
}
