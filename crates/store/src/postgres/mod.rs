//! The PostgreSQL backend: several gateway replicas on one database.
//!
//! Ingestion is group committed by committer tasks ([`committer`]): each takes what is
//! queued and writes the whole group with a few statements (`UNNEST` arrays, one round trip
//! for all reports, observations and jobs) in one transaction; if the group fails, each
//! batch is retried alone so one bad batch fails alone. PostgreSQL's own
//! `synchronous_commit` makes the commit durable before it returns.
//!
//! Claims lock with `FOR UPDATE SKIP LOCKED`, so replicas never take the same job; leases are
//! computed with the database's clock (`clock_timestamp()`), so replicas' clocks don't matter.
//! Migrations: sqlx's migrator, which holds an advisory lock so replicas starting together
//! migrate once.

mod committer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::TryStreamExt;
use jiff::Timestamp;
use medgate_core::{Filter, Observation};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use crate::clock::{dur_us, ts, ts_opt, us};
use crate::encode::{decode, PreparedBatch};
use crate::error::{Result, StoreError};
use crate::sqlite::{DeliveryOutcome, ExportClaim};
use crate::types::*;
use crate::{PreparedAlert, StoreOptions};
use committer::Pending;

/// The database's clock in microseconds: leases compare against one clock for all replicas.
macro_rules! now_us {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000000)::int8"
    };
}

/// Rows in flight between a streaming query and its consumer.
const STREAM_BUFFER: usize = 256;

pub(crate) struct PgStore {
    pool: PgPool,
    queue: std::sync::Mutex<Option<mpsc::Sender<Pending>>>,
    committers: Mutex<Vec<JoinHandle<()>>>,
}

fn pg_err(op: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::pg(op, e)
}

fn lease_lost(what: &'static str, id: &str) -> StoreError {
    StoreError::LeaseLost {
        what,
        id: id.to_owned(),
    }
}

fn uuid_of(text: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(text).ok()
}

impl PgStore {
    pub async fn open(url: &str, options: &StoreOptions) -> Result<PgStore> {
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(format!("not a PostgreSQL URL: {e}")))?;
        if let Some(schema) = &options.pg_schema {
            if schema.is_empty()
                || !schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(StoreError::Url(
                    "the schema name must be of a-z, 0-9 and _".into(),
                ));
            }
            let mut conn = sqlx::PgConnection::connect_with(&connect)
                .await
                .map_err(|e| StoreError::Open(StoreError::pg("connect", e).to_string()))?;
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&mut conn)
            .await
            .map_err(|e| StoreError::Open(StoreError::pg("create schema", e).to_string()))?;
            let _ = conn.close().await;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.pg_max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await
            .map_err(|e| StoreError::Open(StoreError::pg("connect", e).to_string()))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Open(format!("migration failed: {e}")))?;
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let committers = (0..options.pg_committers.max(1))
            .map(|_| tokio::spawn(committer::run(pool.clone(), rx.clone())))
            .collect();
        Ok(PgStore {
            pool,
            queue: std::sync::Mutex::new(Some(tx)),
            committers: Mutex::new(committers),
        })
    }

    pub async fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
        let committers = std::mem::take(&mut *self.committers.lock().await);
        for c in committers {
            let _ = c.await;
        }
        self.pool.close().await;
    }

    // ---- ingestion -------------------------------------------------------------------

    pub async fn ingest(&self, batch: PreparedBatch) -> Result<Ingested> {
        let queue = self
            .queue
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        queue
            .send(Pending { batch, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn purge_idempotency(&self, older_than: Timestamp) -> Result<u64> {
        sqlx::query("DELETE FROM idempotency WHERE created_us < $1")
            .bind(us(older_than))
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(pg_err("purge idempotency keys"))
    }

    pub async fn receipt(&self, source: &str, id: &str) -> Result<Option<ReceiptStatus>> {
        let Some(receipt) = uuid_of(id) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT r.source, r.partner, r.kind, r.sae, r.observation_count, r.received_at_us,
                    r.state, r.processed_at_us, r.error, j.state AS job_state, j.attempts,
                    j.last_error
             FROM reports r LEFT JOIN jobs j ON j.receipt = r.receipt
             WHERE r.receipt = $1 AND r.source = $2",
        )
        .bind(receipt)
        .bind(source)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_err("read a receipt"))?;
        let Some(r) = row else { return Ok(None) };
        let get = pg_err("read a receipt");
        let state: String = r.try_get("state").map_err(&get)?;
        let job_state: Option<String> = r.try_get("job_state").map_err(&get)?;
        let error: Option<String> = r.try_get("error").map_err(&get)?;
        let job_error: Option<String> = r.try_get("last_error").map_err(&get)?;
        Ok(Some(ReceiptStatus {
            id: id.to_owned(),
            source: r.try_get("source").map_err(&get)?,
            partner: r.try_get("partner").map_err(&get)?,
            kind: r.try_get("kind").map_err(&get)?,
            serious_adverse_event: r.try_get("sae").map_err(&get)?,
            observations: r.try_get::<i32, _>("observation_count").map_err(&get)? as u32,
            received_at: ts(r.try_get("received_at_us").map_err(&get)?)?,
            state: crate::report_state(&state, job_state.as_deref()),
            attempts: r
                .try_get::<Option<i32>, _>("attempts")
                .map_err(&get)?
                .unwrap_or(0) as u32,
            processed_at: ts_opt(r.try_get("processed_at_us").map_err(&get)?)?,
            error: error.or(job_error),
        }))
    }

    pub async fn report(&self, receipt: &str) -> Result<Option<StoredReport>> {
        let Some(id) = uuid_of(receipt) else {
            return Ok(None);
        };
        let get = pg_err("read a report");
        let row = sqlx::query(
            "SELECT source, partner, patient_id, kind, reported_at, meta, received_at_us, sae
             FROM reports WHERE receipt = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(&get)?;
        let Some(r) = row else { return Ok(None) };
        let source: String = r.try_get("source").map_err(&get)?;
        let patient_id: String = r.try_get("patient_id").map_err(&get)?;
        let bodies: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM observations WHERE receipt = $1 ORDER BY seq")
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(&get)?;
        let (p, s): (Arc<str>, Arc<str>) = (patient_id.as_str().into(), source.as_str().into());
        let observations = bodies
            .iter()
            .map(|b| decode(b, &p, &s))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(StoredReport {
            receipt: receipt.to_owned(),
            partner: r.try_get("partner").map_err(&get)?,
            kind: r.try_get("kind").map_err(&get)?,
            reported_at: crate::parse_reported_at(r.try_get("reported_at").map_err(&get)?)?,
            received_at: ts(r.try_get("received_at_us").map_err(&get)?)?,
            serious_adverse_event: r.try_get("sae").map_err(&get)?,
            meta: crate::parse_meta(r.try_get("meta").map_err(&get)?)?,
            source,
            patient_id,
            observations,
        }))
    }

    // ---- reads -----------------------------------------------------------------------

    pub fn observations(
        &self,
        source: &str,
        patient_id: &str,
        filter: &Filter,
    ) -> BoxStream<'static, Result<Observation>> {
        let (sql, params) = observation_query(source, patient_id, filter);
        let patient: Arc<str> = patient_id.into();
        let src: Arc<str> = source.into();
        let codes = Filter {
            codes: filter.codes.clone(),
            ..Filter::default()
        };
        let pool = self.pool.clone();
        stream(move |tx| async move {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for p in params {
                query = match p {
                    Param::Text(t) => query.bind(t),
                    Param::Int(i) => query.bind(i),
                };
            }
            let mut rows = query.fetch(&pool);
            while let Some(row) = rows.try_next().await.map_err(pg_err("read observations"))? {
                let body: &[u8] = row.try_get(0).map_err(pg_err("read observations"))?;
                let other: bool = row.try_get(1).map_err(pg_err("read observations"))?;
                let item = decode(body, &patient, &src);
                if let Ok(o) = &item {
                    if other && !codes.codes.is_empty() && !codes.matches(o) {
                        continue;
                    }
                }
                if tx.send(item).await.is_err() {
                    break;
                }
            }
            Ok(())
        })
    }

    pub fn patients(&self, source: &str) -> BoxStream<'static, Result<String>> {
        let pool = self.pool.clone();
        let source = source.to_owned();
        stream(move |tx| async move {
            let mut rows = sqlx::query_scalar::<_, String>(PATIENTS_SQL)
                .bind(source)
                .fetch(&pool);
            while let Some(id) = rows.try_next().await.map_err(pg_err("list patients"))? {
                if tx.send(Ok(id)).await.is_err() {
                    break;
                }
            }
            Ok(())
        })
    }

    pub async fn window_bodies(&self, q: &WindowQuery) -> Result<Vec<Vec<u8>>> {
        let (since, until) = crate::window_bounds_us(q);
        sqlx::query_scalar(
            "SELECT body FROM observations WHERE source = $1 AND patient_id = $2
             AND start_us >= $3 AND start_us <= $4 ORDER BY start_us, receipt, seq",
        )
        .bind(&q.source)
        .bind(&q.patient_id)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("count observations"))
    }

    // ---- outbox ----------------------------------------------------------------------

    pub async fn reclaim_expired(&self) -> Result<u64> {
        sqlx::query(concat!(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until_us = NULL, updated_us = ",
            now_us!(),
            " WHERE state = 'running' AND lease_until_us < ",
            now_us!()
        ))
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(pg_err("reclaim expired jobs"))
    }

    pub async fn claim(&self, worker: &str, n: usize, lease: Duration) -> Result<Vec<Job>> {
        self.reclaim_expired().await?;
        let rows = sqlx::query(concat!(
            "WITH c AS (SELECT receipt FROM jobs WHERE state = 'queued' AND not_before_us <= ",
            now_us!(),
            " ORDER BY priority DESC, receipt LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE jobs j SET state = 'running', lease_owner = $1, attempts = j.attempts + 1,
                    lease_until_us = ",
            now_us!(),
            " + $3, updated_us = ",
            now_us!(),
            " FROM c WHERE j.receipt = c.receipt
             RETURNING j.priority, j.receipt, j.source, j.sae, j.attempts, j.created_us, j.lease_until_us"
        ))
        .bind(worker)
        .bind(n as i64)
        .bind(dur_us(lease))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("claim jobs"))?;
        let get = pg_err("claim jobs");
        let mut jobs = Vec::with_capacity(rows.len());
        for r in rows {
            let receipt: uuid::Uuid = r.try_get("receipt").map_err(&get)?;
            let priority: i32 = r.try_get("priority").map_err(&get)?;
            jobs.push((
                priority,
                Job {
                    receipt: receipt.hyphenated().to_string(),
                    source: r.try_get("source").map_err(&get)?,
                    serious_adverse_event: r.try_get("sae").map_err(&get)?,
                    attempt: r.try_get::<i32, _>("attempts").map_err(&get)? as u32,
                    worker: worker.to_owned(),
                    lease_until: ts(r.try_get("lease_until_us").map_err(&get)?)?,
                    created_at: ts(r.try_get("created_us").map_err(&get)?)?,
                },
            ));
        }
        // RETURNING order is unspecified: SAE first, then oldest (UUIDv7 order).
        jobs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.receipt.cmp(&b.1.receipt)));
        Ok(jobs.into_iter().map(|(_, j)| j).collect())
    }

    pub async fn renew(&self, job: &Job, lease: Duration) -> Result<Job> {
        let until: Option<i64> = sqlx::query_scalar(concat!(
            "UPDATE jobs SET lease_until_us = ",
            now_us!(),
            " + $1, updated_us = ",
            now_us!(),
            " WHERE receipt = $2 AND state = 'running' AND lease_owner = $3 AND attempts = $4
             RETURNING lease_until_us"
        ))
        .bind(dur_us(lease))
        .bind(uuid_of(&job.receipt))
        .bind(&job.worker)
        .bind(job.attempt as i32)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_err("renew a job lease"))?;
        let until = until.ok_or_else(|| lease_lost("job", &job.receipt))?;
        let mut job = job.clone();
        job.lease_until = ts(until)?;
        Ok(job)
    }

    pub async fn complete(&self, job: &Job, alerts: Vec<PreparedAlert>) -> Result<()> {
        let err = pg_err("complete a job");
        let mut tx = self.pool.begin().await.map_err(&err)?;
        let receipt = uuid_of(&job.receipt);
        let deleted = sqlx::query(
            "DELETE FROM jobs WHERE receipt = $1 AND state = 'running' AND lease_owner = $2
             AND attempts = $3",
        )
        .bind(receipt)
        .bind(&job.worker)
        .bind(job.attempt as i32)
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
        if deleted.rows_affected() == 0 {
            return Err(lease_lost("job", &job.receipt));
        }
        sqlx::query(concat!(
            "UPDATE reports SET state = 'processed', error = NULL, processed_at_us = ",
            now_us!(),
            " WHERE receipt = $1"
        ))
        .bind(receipt)
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
        sqlx::query(
            "INSERT INTO outbox_completed (worker, completed) VALUES ($1, 1)
             ON CONFLICT (worker) DO UPDATE SET completed = outbox_completed.completed + 1",
        )
        .bind(&job.worker)
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
        insert_alerts(&mut tx, &alerts).await?;
        tx.commit().await.map_err(&err)
    }

    pub async fn retry(&self, job: &Job, error: &str, not_before: Timestamp) -> Result<()> {
        let n = sqlx::query(concat!(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until_us = NULL,
             not_before_us = $1, last_error = $2, updated_us = ",
            now_us!(),
            " WHERE receipt = $3 AND state = 'running' AND lease_owner = $4 AND attempts = $5"
        ))
        .bind(us(not_before))
        .bind(error)
        .bind(uuid_of(&job.receipt))
        .bind(&job.worker)
        .bind(job.attempt as i32)
        .execute(&self.pool)
        .await
        .map_err(pg_err("retry a job"))?;
        if n.rows_affected() == 0 {
            return Err(lease_lost("job", &job.receipt));
        }
        Ok(())
    }

    pub async fn dead(&self, job: &Job, error: &str) -> Result<()> {
        let err = pg_err("dead-letter a job");
        let mut tx = self.pool.begin().await.map_err(&err)?;
        let receipt = uuid_of(&job.receipt);
        let n = sqlx::query(concat!(
            "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_until_us = NULL,
             last_error = $1, updated_us = ",
            now_us!(),
            " WHERE receipt = $2 AND state = 'running' AND lease_owner = $3 AND attempts = $4"
        ))
        .bind(error)
        .bind(receipt)
        .bind(&job.worker)
        .bind(job.attempt as i32)
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
        if n.rows_affected() == 0 {
            return Err(lease_lost("job", &job.receipt));
        }
        sqlx::query(concat!(
            "UPDATE reports SET state = 'failed', error = $1, processed_at_us = ",
            now_us!(),
            " WHERE receipt = $2"
        ))
        .bind(error)
        .bind(receipt)
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
        tx.commit().await.map_err(&err)
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats> {
        let get = pg_err("outbox stats");
        let r = sqlx::query(
            "SELECT (SELECT count(*) FROM jobs WHERE state = 'queued') AS queued,
                    (SELECT count(*) FROM jobs WHERE state = 'running') AS running,
                    (SELECT count(*) FROM jobs WHERE state = 'dead') AS dead,
                    (SELECT min(created_us) FROM jobs WHERE state IN ('queued', 'running')) AS oldest,
                    (SELECT coalesce(sum(completed), 0)::int8 FROM outbox_completed) AS completed,
                    (SELECT count(*) FROM alerts WHERE state IN ('pending', 'delivering')) AS deliveries",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(&get)?;
        Ok(OutboxStats {
            queued: r.try_get::<i64, _>("queued").map_err(&get)? as u64,
            running: r.try_get::<i64, _>("running").map_err(&get)? as u64,
            dead: r.try_get::<i64, _>("dead").map_err(&get)? as u64,
            oldest: ts_opt(r.try_get("oldest").map_err(&get)?)?,
            completed: r.try_get::<i64, _>("completed").map_err(&get)? as u64,
            deliveries_pending: r.try_get::<i64, _>("deliveries").map_err(&get)? as u64,
        })
    }

    // ---- alerts ----------------------------------------------------------------------

    pub async fn record_alerts(&self, alerts: Vec<PreparedAlert>) -> Result<u64> {
        let err = pg_err("record alerts");
        let mut tx = self.pool.begin().await.map_err(&err)?;
        let n = insert_alerts(&mut tx, &alerts).await?;
        tx.commit().await.map_err(&err)?;
        Ok(n)
    }

    pub async fn claim_deliveries(
        &self,
        worker: &str,
        n: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>> {
        let err = pg_err("claim deliveries");
        sqlx::query(concat!(
            "UPDATE alerts SET state = 'pending', lease_owner = NULL, lease_until_us = NULL,
             updated_us = ",
            now_us!(),
            " WHERE state = 'delivering' AND lease_until_us < ",
            now_us!()
        ))
        .execute(&self.pool)
        .await
        .map_err(&err)?;
        let rows = sqlx::query(concat!(
            "WITH c AS (SELECT id FROM alerts WHERE state = 'pending' AND next_attempt_us <= ",
            now_us!(),
            " ORDER BY next_attempt_us, id LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE alerts a SET state = 'delivering', lease_owner = $1, attempts = a.attempts + 1,
                    lease_until_us = ",
            now_us!(),
            " + $3, updated_us = ",
            now_us!(),
            " FROM c WHERE a.id = c.id
             RETURNING a.id, a.rule, a.webhook, a.payload, a.attempts, a.lease_until_us"
        ))
        .bind(worker)
        .bind(n as i64)
        .bind(dur_us(lease))
        .fetch_all(&self.pool)
        .await
        .map_err(&err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(Delivery {
                id: r.try_get("id").map_err(&err)?,
                rule: r.try_get("rule").map_err(&err)?,
                webhook: r.try_get("webhook").map_err(&err)?,
                payload: r.try_get("payload").map_err(&err)?,
                attempt: r.try_get::<i32, _>("attempts").map_err(&err)? as u32,
                worker: worker.to_owned(),
                lease_until: ts(r.try_get("lease_until_us").map_err(&err)?)?,
            });
        }
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    pub async fn finish_delivery(&self, d: &Delivery, outcome: DeliveryOutcome) -> Result<()> {
        let now = crate::clock::now_us();
        let (state, status, error, next, delivered) = outcome.columns(now);
        let n = sqlx::query(
            "UPDATE alerts SET state = $1, last_status = $2, last_error = $3,
             next_attempt_us = coalesce($4, next_attempt_us), delivered_us = $5,
             lease_owner = NULL, lease_until_us = NULL, updated_us = $6
             WHERE id = $7 AND state = 'delivering' AND lease_owner = $8 AND attempts = $9",
        )
        .bind(state)
        .bind(status.map(|s| s as i32))
        .bind(error)
        .bind(next)
        .bind(delivered)
        .bind(now)
        .bind(d.id)
        .bind(&d.worker)
        .bind(d.attempt as i32)
        .execute(&self.pool)
        .await
        .map_err(pg_err("record a delivery"))?;
        if n.rows_affected() == 0 {
            return Err(lease_lost("delivery", &d.id.to_string()));
        }
        Ok(())
    }

    pub async fn alerts(&self, q: AlertQuery) -> Result<Vec<Alert>> {
        let limit = i64::from(if q.limit == 0 { 100 } else { q.limit.min(1000) });
        let rows = sqlx::query(
            "SELECT id, rule, webhook, receipt, source, payload, state, attempts, last_status,
                    last_error, created_us, updated_us, next_attempt_us, delivered_us
             FROM alerts WHERE ($1::text IS NULL OR state = $1) AND ($2::int8 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(q.state.map(AlertState::as_str))
        .bind(q.before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("list alerts"))?;
        rows.iter().map(alert_from_row).collect()
    }

    // ---- exports ---------------------------------------------------------------------

    pub async fn create_export(&self, job: NewExport) -> Result<ExportJob> {
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        let request = serde_json::to_string(&job.request)
            .map_err(|e| StoreError::Invalid(format!("the export request is not JSON: {e}")))?;
        let now = crate::clock::now_us();
        sqlx::query(
            "INSERT INTO export_jobs (id, partner, request, state, created_us, updated_us, expires_us)
             VALUES ($1, $2, $3, 'queued', $4, $4, $5)",
        )
        .bind(&id)
        .bind(&job.partner)
        .bind(request)
        .bind(now)
        .bind(us(job.expires_at))
        .execute(&self.pool)
        .await
        .map_err(pg_err("create an export"))?;
        self.export(&id)
            .await?
            .ok_or(StoreError::NotFound { what: "export", id })
    }

    pub async fn export(&self, id: &str) -> Result<Option<ExportJob>> {
        load_export(&self.pool, id).await
    }

    pub async fn list_exports(&self, partner: &str, limit: u32) -> Result<Vec<ExportJob>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM export_jobs WHERE partner = $1 ORDER BY created_us DESC, id DESC LIMIT $2",
        )
        .bind(partner)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("list exports"))?;
        load_exports(&self.pool, &ids).await
    }

    pub async fn expired_exports(&self, now: Timestamp) -> Result<Vec<ExportJob>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM export_jobs WHERE expires_us < $1 ORDER BY expires_us",
        )
        .bind(us(now))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err("list expired exports"))?;
        load_exports(&self.pool, &ids).await
    }

    pub async fn claim_exports(
        &self,
        worker: &str,
        lease: Duration,
        which: ExportClaim,
    ) -> Result<Vec<ExportJob>> {
        let sql = match which {
            ExportClaim::NextQueued => concat!(
                "WITH c AS (SELECT id FROM export_jobs WHERE state = 'queued'
                            ORDER BY created_us, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 UPDATE export_jobs e SET state = 'running', owner = $1, attempts = e.attempts + 1,
                        lease_until_us = ",
                now_us!(),
                " + $2, updated_us = ",
                now_us!(),
                ", transaction_time_us = coalesce(e.transaction_time_us, ",
                now_us!(),
                ") FROM c WHERE e.id = c.id RETURNING e.id"
            ),
            ExportClaim::Interrupted => concat!(
                "WITH c AS (SELECT id FROM export_jobs WHERE state = 'running' AND lease_until_us < ",
                now_us!(),
                " FOR UPDATE SKIP LOCKED)
                 UPDATE export_jobs e SET owner = $1, attempts = e.attempts + 1, lease_until_us = ",
                now_us!(),
                " + $2, updated_us = ",
                now_us!(),
                " FROM c WHERE e.id = c.id RETURNING e.id"
            ),
        };
        let ids: Vec<String> = sqlx::query_scalar(sql)
            .bind(worker)
            .bind(dur_us(lease))
            .fetch_all(&self.pool)
            .await
            .map_err(pg_err("claim exports"))?;
        load_exports(&self.pool, &ids).await
    }

    pub async fn export_heartbeat(
        &self,
        id: &str,
        worker: &str,
        progress: ExportProgress,
        lease: Duration,
    ) -> Result<ExportControl> {
        let n = sqlx::query(concat!(
            "UPDATE export_jobs SET lease_until_us = ",
            now_us!(),
            " + $1, updated_us = ",
            now_us!(),
            ", patients_total = $2, patients_done = $3, patients_failed = $4, rows_written = $5
             WHERE id = $6 AND owner = $7 AND state = 'running'"
        ))
        .bind(dur_us(lease))
        .bind(progress.patients_total as i64)
        .bind(progress.patients_done as i64)
        .bind(progress.patients_failed as i64)
        .bind(progress.rows_written as i64)
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(pg_err("export heartbeat"))?;
        if n.rows_affected() == 1 {
            return Ok(ExportControl::Continue);
        }
        self.export_lost(id).await
    }

    async fn export_lost(&self, id: &str) -> Result<ExportControl> {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM export_jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(pg_err("export heartbeat"))?;
        match state.as_deref() {
            Some("cancelled") => Ok(ExportControl::Cancelled),
            Some(_) => Err(lease_lost("export", id)),
            None => Err(StoreError::NotFound {
                what: "export",
                id: id.to_owned(),
            }),
        }
    }

    pub async fn add_export_file(&self, id: &str, worker: &str, file: ExportFile) -> Result<()> {
        let err = pg_err("add an export file");
        let mut tx = self.pool.begin().await.map_err(&err)?;
        let owned: Option<String> = sqlx::query_scalar(
            "SELECT id FROM export_jobs WHERE id = $1 AND owner = $2 AND state = 'running' FOR UPDATE",
        )
        .bind(id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await
        .map_err(&err)?;
        if owned.is_none() {
            drop(tx);
            self.export_lost(id).await?;
            return Err(lease_lost("export", id));
        }
        sqlx::query(
            "INSERT INTO export_files (job_id, seq, kind, url, path, size, sha256, count)
             VALUES ($1, (SELECT coalesce(max(seq), 0) + 1 FROM export_files WHERE job_id = $1),
                     $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(&file.kind)
        .bind(&file.url)
        .bind(&file.path)
        .bind(file.size as i64)
        .bind(&file.sha256)
        .bind(file.count as i64)
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
        sqlx::query(concat!(
            "UPDATE export_jobs SET updated_us = ",
            now_us!(),
            " WHERE id = $1"
        ))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
        tx.commit().await.map_err(&err)
    }

    pub async fn finish_export(
        &self,
        id: &str,
        worker: &str,
        progress: ExportProgress,
        error: Option<String>,
    ) -> Result<()> {
        let state = if error.is_some() {
            "failed"
        } else {
            "completed"
        };
        let n = sqlx::query(concat!(
            "UPDATE export_jobs SET state = $1, error = $2, lease_until_us = NULL, updated_us = ",
            now_us!(),
            ", patients_total = $3, patients_done = $4, patients_failed = $5, rows_written = $6
             WHERE id = $7 AND owner = $8 AND state = 'running'"
        ))
        .bind(state)
        .bind(error)
        .bind(progress.patients_total as i64)
        .bind(progress.patients_done as i64)
        .bind(progress.patients_failed as i64)
        .bind(progress.rows_written as i64)
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(pg_err("finish an export"))?;
        if n.rows_affected() == 0 {
            self.export_lost(id).await?;
            return Err(lease_lost("export", id));
        }
        Ok(())
    }

    pub async fn cancel_export(&self, id: &str) -> Result<Option<ExportJob>> {
        sqlx::query(concat!(
            "UPDATE export_jobs SET state = 'cancelled', lease_until_us = NULL, updated_us = ",
            now_us!(),
            " WHERE id = $1 AND state IN ('queued', 'running')"
        ))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(pg_err("cancel an export"))?;
        self.export(id).await
    }

    pub async fn delete_export(&self, id: &str) -> Result<bool> {
        // export_files go with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM export_jobs WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(pg_err("delete an export"))
    }
}

/// Runs `produce` in a task that sends into a bounded channel; the stream reads it.
fn stream<T, F, Fut>(produce: F) -> BoxStream<'static, Result<T>>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let errors = tx.clone();
        if let Err(e) = produce(tx).await {
            let _ = errors.send(Err(e)).await;
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

enum Param {
    Text(String),
    Int(i64),
}

const PATIENTS_SQL: &str = "WITH RECURSIVE p(patient_id) AS (
        SELECT (SELECT patient_id FROM observations WHERE source = $1 ORDER BY patient_id LIMIT 1)
        UNION ALL
        SELECT (SELECT o.patient_id FROM observations o
                WHERE o.source = $1 AND o.patient_id > p.patient_id
                ORDER BY o.patient_id LIMIT 1)
        FROM p WHERE p.patient_id IS NOT NULL
    )
    SELECT patient_id FROM p WHERE patient_id IS NOT NULL";

fn observation_query(source: &str, patient_id: &str, filter: &Filter) -> (String, Vec<Param>) {
    let mut sql = String::from(
        "SELECT body, other_codes FROM observations WHERE source = $1 AND patient_id = $2",
    );
    let mut params = vec![
        Param::Text(source.to_owned()),
        Param::Text(patient_id.to_owned()),
    ];
    let mut push = |sql: &mut String, clause: &str, p: Param| {
        params.push(p);
        sql.push_str(&clause.replace('#', &format!("${}", params.len())));
    };
    if let Some(until) = filter.until {
        push(&mut sql, " AND start_us <= #", Param::Int(us(until)));
    }
    if let Some(since) = filter.since {
        push(&mut sql, " AND end_us >= #", Param::Int(us(since)));
    }
    if !filter.codes.is_empty() && filter.codes.len() <= crate::MAX_SQL_CODES {
        sql.push_str(" AND (other_codes");
        for c in &filter.codes {
            push(&mut sql, " OR (code = #", Param::Text(c.code.clone()));
            match c.system.as_deref() {
                None => {}
                Some("") => sql.push_str(" AND code_system IS NULL"),
                Some(system) => push(
                    &mut sql,
                    " AND code_system = #",
                    Param::Text(system.to_owned()),
                ),
            }
            sql.push(')');
        }
        sql.push(')');
    }
    sql.push_str(" ORDER BY start_us NULLS FIRST, receipt, seq");
    (sql, params)
}

async fn insert_alerts(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    alerts: &[PreparedAlert],
) -> Result<u64> {
    if alerts.is_empty() {
        return Ok(0);
    }
    let col = |f: fn(&PreparedAlert) -> Option<String>| alerts.iter().map(f).collect::<Vec<_>>();
    let n = sqlx::query(concat!(
        "INSERT INTO alerts (rule, webhook, receipt, source, payload, state, next_attempt_us,
                             created_us, updated_us)
         SELECT t.rule, t.webhook, t.receipt, t.source, t.payload, 'pending', ",
        now_us!(),
        ", ",
        now_us!(),
        ", ",
        now_us!(),
        " FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
              AS t(rule, webhook, receipt, source, payload)
         ON CONFLICT (rule, webhook, receipt) DO NOTHING"
    ))
    .bind(col(|a| Some(a.rule.clone())))
    .bind(col(|a| Some(a.webhook.clone())))
    .bind(col(|a| a.receipt.clone()))
    .bind(col(|a| a.source.clone()))
    .bind(col(|a| Some(a.payload.clone())))
    .execute(&mut **tx)
    .await
    .map_err(pg_err("record alerts"))?;
    Ok(n.rows_affected())
}

fn alert_from_row(r: &PgRow) -> Result<Alert> {
    let get = pg_err("list alerts");
    let raw = crate::sqlite::RawAlert {
        id: r.try_get("id").map_err(&get)?,
        rule: r.try_get("rule").map_err(&get)?,
        webhook: r.try_get("webhook").map_err(&get)?,
        receipt: r.try_get("receipt").map_err(&get)?,
        source: r.try_get("source").map_err(&get)?,
        payload: r.try_get("payload").map_err(&get)?,
        state: r.try_get("state").map_err(&get)?,
        attempts: i64::from(r.try_get::<i32, _>("attempts").map_err(&get)?),
        last_status: r
            .try_get::<Option<i32>, _>("last_status")
            .map_err(&get)?
            .map(i64::from),
        last_error: r.try_get("last_error").map_err(&get)?,
        created_us: r.try_get("created_us").map_err(&get)?,
        updated_us: r.try_get("updated_us").map_err(&get)?,
        next_attempt_us: r.try_get("next_attempt_us").map_err(&get)?,
        delivered_us: r.try_get("delivered_us").map_err(&get)?,
    };
    raw.into_alert()
}

async fn load_exports(pool: &PgPool, ids: &[String]) -> Result<Vec<ExportJob>> {
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(job) = load_export(pool, id).await? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

async fn load_export(pool: &PgPool, id: &str) -> Result<Option<ExportJob>> {
    let get = pg_err("read an export");
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {} FROM export_jobs WHERE id = $1",
        crate::sqlite::EXPORT_COLUMNS
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(&get)?;
    let Some(r) = row else { return Ok(None) };
    let raw = crate::sqlite::RawExport {
        id: r.try_get("id").map_err(&get)?,
        partner: r.try_get("partner").map_err(&get)?,
        request: r.try_get("request").map_err(&get)?,
        state: r.try_get("state").map_err(&get)?,
        owner: r.try_get("owner").map_err(&get)?,
        lease_until_us: r.try_get("lease_until_us").map_err(&get)?,
        attempts: i64::from(r.try_get::<i32, _>("attempts").map_err(&get)?),
        progress: [
            r.try_get("patients_total").map_err(&get)?,
            r.try_get("patients_done").map_err(&get)?,
            r.try_get("patients_failed").map_err(&get)?,
            r.try_get("rows_written").map_err(&get)?,
        ],
        created_us: r.try_get("created_us").map_err(&get)?,
        updated_us: r.try_get("updated_us").map_err(&get)?,
        expires_us: r.try_get("expires_us").map_err(&get)?,
        transaction_time_us: r.try_get("transaction_time_us").map_err(&get)?,
        error: r.try_get("error").map_err(&get)?,
    };
    let files = sqlx::query(
        "SELECT kind, url, path, size, sha256, count FROM export_files WHERE job_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(&get)?
    .iter()
    .map(|f| {
        Ok(ExportFile {
            kind: f.try_get("kind").map_err(&get)?,
            url: f.try_get("url").map_err(&get)?,
            path: f.try_get("path").map_err(&get)?,
            size: f.try_get::<i64, _>("size").map_err(&get)?.max(0) as u64,
            sha256: f.try_get("sha256").map_err(&get)?,
            count: f.try_get::<i64, _>("count").map_err(&get)?.max(0) as u64,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    raw.into_job(files).map(Some)
}
