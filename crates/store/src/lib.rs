//! medgate-store: the durable store behind push ingestion (issue #8) and export jobs (#9).
//!
//! One [`Store`], two backends chosen by URL:
//! - `sqlite://path/to/file.db` (embedded default): WAL, one writer thread with **group
//!   commit** (concurrent [`Store::ingest`] calls share one transaction and one fsync, each
//!   in its own savepoint so one bad batch fails alone), the fsync pipelined on a second
//!   thread (see `sqlite::writer` for why this is as durable as `synchronous=FULL`), reads
//!   on a pool of read connections. One gateway process per database file.
//! - `postgres://…`: several gateway replicas share one database. Ingestion is also group
//!   committed (a committer task writes a group's reports, observations and jobs with one
//!   `UNNEST` statement); claims use `FOR UPDATE SKIP LOCKED`; lease times come from the
//!   database's clock, so replicas' clocks don't matter.
//!
//! What it keeps:
//! - **reports** (one receipt each) and their **observations** in core's serde JSON form
//!   (made compact and zstd-compressed against a fixed dictionary, ~50 bytes for a diary
//!   item; see [`encode`]) with indexed columns (source, patient, effective
//!   start/end as UTC instants, primary code); read back through
//!   [`medgate_core::ObservationStore`], streaming.
//! - **idempotency** records: a retried request with the same key and body gets its
//!   original receipts ([`Ingested::Replayed`]), a different body [`Ingested::KeyConflict`].
//! - the **outbox**: one job per report, SAE first; [`Store::claim`] leases jobs, expired
//!   leases are reclaimed, [`Store::complete`] records the alerts the job produced in the
//!   same transaction.
//! - **alerts** and their webhook deliveries, and **export jobs** with their files.
//!
//! Every call returns only after its effect is durable. Migrations run in [`Store::open`]
//! (sqlx's migrator for PostgreSQL, rusqlite_migration for SQLite).
//!
//! # What the server must do
//! - [`Store::open`] once at start (it starts the committer threads or tasks itself) and
//!   [`Store::close`] at shutdown, after the workers stopped.
//! - At start, call [`Store::reclaim_expired`] (claims also reclaim) and
//!   [`Store::claim_interrupted_exports`] to resume or fail export jobs whose worker died.
//! - Poll [`Store::outbox_stats`] (every few hundred ms) and keep the depth in memory for the
//!   high-water check; do not count per request.
//! - Renew leases ([`Store::renew`], [`Store::export_heartbeat`]) for work that may outlast
//!   them; a [`StoreError::LeaseLost`] means another worker has the job now: stop.
//! - Never put a patient identifier in a job error or export error text.
//!
//! Design decision: the store logs nothing that names a patient, and its errors carry no
//! stored values; types holding a patient id redact it in `Debug`.

mod clock;
pub mod encode;
mod error;
mod postgres;
pub mod rules;
mod sqlite;
mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use jiff::Timestamp;
use medgate_core::{FetchRequest, ObservationStore, ObservationStream};

pub use error::{Result, StoreError};
pub use types::*;

use postgres::PgStore;
use sqlite::{DeliveryOutcome, ExportClaim, SqliteStore};

/// Priority of an SAE report's job (others have 0).
pub(crate) const SAE_PRIORITY: i32 = 100;

/// Above this many codes a code filter is applied after reading, not in SQL.
pub(crate) const MAX_SQL_CODES: usize = 64;

/// Tuning knobs; [`Default`] suits a gateway.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Writes waiting for the committer before callers wait to enqueue.
    pub queue: usize,
    /// SQLite: read connections.
    pub readers: usize,
    /// PostgreSQL: most connections in the pool.
    pub pg_max_connections: u32,
    /// PostgreSQL: committer tasks (each commits one group at a time on its own connection).
    pub pg_committers: usize,
    /// PostgreSQL: the schema to use (created if missing), instead of the user's default.
    pub pg_schema: Option<String>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            queue: 4096,
            readers: 4,
            pg_max_connections: 16,
            pg_committers: 4,
            pg_schema: None,
        }
    }
}

/// A rule firing ready to insert.
#[derive(Debug, Clone)]
pub(crate) struct PreparedAlert {
    pub rule: String,
    pub webhook: String,
    pub receipt: Option<String>,
    pub source: Option<String>,
    pub payload: String,
}

fn prepare_alerts(alerts: &[NewAlert]) -> Result<Vec<PreparedAlert>> {
    alerts
        .iter()
        .map(|a| {
            Ok(PreparedAlert {
                rule: a.rule.clone(),
                webhook: a.webhook.clone(),
                receipt: a.receipt.clone(),
                source: a.source.clone(),
                payload: serde_json::to_string(&a.payload)
                    .map_err(|e| StoreError::Invalid(format!("alert payload is not JSON: {e}")))?,
            })
        })
        .collect()
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

/// The store: cheap to clone (one shared backend).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Sqlite(_) => "Store(sqlite)",
            Backend::Postgres(_) => "Store(postgres)",
        })
    }
}

/// Dispatches one call to the backend.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($s) => $call,
            Backend::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Opens the store at `url` with default options.
    ///
    /// # Errors
    /// A URL that is neither `sqlite://` nor `postgres://`, a database that cannot be
    /// opened, created or migrated.
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_with(url, StoreOptions::default()).await
    }

    /// Opens the store at `url`: `sqlite://relative/path.db`, `sqlite:///absolute/path.db`,
    /// or `postgres://user@host:port/db` (`postgresql://` too). Creates the SQLite file and its
    /// directories, runs migrations, and starts the committer.
    ///
    /// # Errors
    /// As [`open`](Store::open).
    pub async fn open_with(url: &str, options: StoreOptions) -> Result<Store> {
        let backend = if let Some(path) = url.strip_prefix("sqlite://") {
            let path = sqlite_path(path)?;
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, &options))
                .await
                .map_err(|e| StoreError::Open(e.to_string()))??;
            Backend::Sqlite(Arc::new(store))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(Arc::new(PgStore::open(url, &options).await?))
        } else {
            return Err(StoreError::Url(
                "expected sqlite://path or postgres://user@host/db".into(),
            ));
        };
        Ok(Store { backend })
    }

    /// Which backend: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Lets queued writes finish, then stops the committer. Later calls fail with
    /// [`StoreError::Closed`].
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => {
                let s = s.clone();
                let _ = tokio::task::spawn_blocking(move || s.close()).await;
            }
            Backend::Postgres(s) => s.close().await,
        }
    }

    // ---- ingestion -------------------------------------------------------------------

    /// Stores one request's reports all-or-nothing, with their observations, one outbox job
    /// per report and the idempotency record; returns once they are durable. Concurrent
    /// calls share a transaction and an fsync; a batch that fails fails alone.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a batch the store refuses (no reports, a NUL byte or an
    /// empty patient id), database and durability errors.
    pub async fn ingest(&self, batch: IngestBatch) -> Result<Ingested> {
        let prepared = encode::prepare(batch, Timestamp::now())?;
        dispatch!(self, s => s.ingest(prepared).await)
    }

    /// Like [`ingest`](Store::ingest), but the batch's last report reuses its first report's
    /// receipt, so the database refuses the batch midway (a unique-key violation after rows
    /// were written). Tests use it to prove that a batch is all-or-nothing and fails alone.
    #[doc(hidden)]
    pub async fn ingest_failing_midway(&self, batch: IngestBatch) -> Result<Ingested> {
        let mut prepared = encode::prepare(batch, Timestamp::now())?;
        if let Some(first) = prepared.reports.first().cloned() {
            if let Some(last) = prepared.reports.last_mut() {
                last.receipt = first.receipt;
                last.receipt_text = first.receipt_text;
            }
        }
        dispatch!(self, s => s.ingest(prepared).await)
    }

    /// Forgets idempotency records created before `older_than`; returns how many.
    ///
    /// # Errors
    /// Database errors.
    pub async fn purge_idempotency(&self, older_than: Timestamp) -> Result<u64> {
        dispatch!(self, s => s.purge_idempotency(older_than).await)
    }

    /// The processing state of receipt `id` posted to `source`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn receipt(&self, source: &str, id: &str) -> Result<Option<ReceiptStatus>> {
        dispatch!(self, s => s.receipt(source, id).await)
    }

    /// A stored report with its observations (for the worker processing its job).
    ///
    /// # Errors
    /// Database errors, an unreadable stored observation.
    pub async fn report(&self, receipt: &str) -> Result<Option<StoredReport>> {
        dispatch!(self, s => s.report(receipt).await)
    }

    // ---- reads -----------------------------------------------------------------------

    /// A patient's observations in `source` narrowed by `request.filter` (time through the
    /// index; codes through the primary-code column, with multi-coded rows checked after
    /// reading), ordered by effective start (none first), then insertion. Streams.
    pub fn observations_stream(
        &self,
        source: &str,
        request: &FetchRequest,
    ) -> BoxStream<'static, Result<medgate_core::Observation>> {
        dispatch!(self, s => s.observations(source, &request.patient_id, &request.filter))
    }

    /// Every patient with observations in `source`, ascending. Streams.
    pub fn patients_stream(&self, source: &str) -> BoxStream<'static, Result<String>> {
        dispatch!(self, s => s.patients(source))
    }

    /// How many of a patient's observations (or components) of `q.code` whose effective
    /// start lies in [`q.since`, `q.until`] pass `q.test`, compared exactly. Times without
    /// an offset are read as UTC here.
    ///
    /// # Errors
    /// Database errors, an unreadable stored observation.
    pub async fn count_matching(&self, q: &WindowQuery) -> Result<u64> {
        let bodies = dispatch!(self, s => s.window_bodies(q).await)?;
        let (patient, source): (Arc<str>, Arc<str>) =
            (q.patient_id.as_str().into(), q.source.as_str().into());
        let (since, until) = (q.since, q.until);
        let mut count = 0;
        for body in &bodies {
            let obs = encode::decode(body, &patient, &source)?;
            let start = obs
                .effective
                .as_ref()
                .and_then(|e| e.start())
                .map(|d| d.bounds().0);
            let inside = start.is_some_and(|t| t >= since && t <= until);
            if inside && rules::observation_passes(&obs, &q.code, &q.test) {
                count += 1;
            }
        }
        Ok(count)
    }

    // ---- outbox ----------------------------------------------------------------------

    /// Leases up to `n` due jobs to `worker` for `lease`: SAE jobs first, then the oldest.
    /// Jobs whose lease expired (their worker died) are reclaimed first. On PostgreSQL,
    /// `FOR UPDATE SKIP LOCKED` keeps replicas from taking the same job.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim(&self, worker: &str, n: usize, lease: Duration) -> Result<Vec<Job>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        dispatch!(self, s => s.claim(worker, n, lease).await)
    }

    /// Extends a job's lease; returns the job with its new `lease_until`.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] if the job is no longer this worker's.
    pub async fn renew(&self, job: &Job, lease: Duration) -> Result<Job> {
        dispatch!(self, s => s.renew(job, lease).await)
    }

    /// Completes a job: removes it, marks its report processed, counts it, and records the
    /// alerts it produced, all in one transaction (a job that crashes before this line
    /// records nothing, so its retry cannot alert twice).
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] if the job is no longer this worker's (nothing is recorded).
    pub async fn complete(&self, job: &Job, alerts: &[NewAlert]) -> Result<()> {
        let alerts = prepare_alerts(alerts)?;
        dispatch!(self, s => s.complete(job, alerts).await)
    }

    /// Puts a job back in the queue, due at `not_before`, with the error that stopped it.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`].
    pub async fn retry(&self, job: &Job, error: &str, not_before: Timestamp) -> Result<()> {
        dispatch!(self, s => s.retry(job, error, not_before).await)
    }

    /// Dead-letters a job after its last attempt; its report becomes `failed`.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`].
    pub async fn dead(&self, job: &Job, error: &str) -> Result<()> {
        dispatch!(self, s => s.dead(job, error).await)
    }

    /// Returns jobs whose lease expired to the queue; returns how many.
    ///
    /// # Errors
    /// Database errors.
    pub async fn reclaim_expired(&self) -> Result<u64> {
        dispatch!(self, s => s.reclaim_expired().await)
    }

    /// Queue depth, oldest job, dead jobs and the completed counter.
    ///
    /// # Errors
    /// Database errors.
    pub async fn outbox_stats(&self) -> Result<OutboxStats> {
        dispatch!(self, s => s.outbox_stats().await)
    }

    // ---- alerts ----------------------------------------------------------------------

    /// Records alerts outside a job (each (rule, webhook, receipt) once); returns how many
    /// were new.
    ///
    /// # Errors
    /// Database errors.
    pub async fn record_alerts(&self, alerts: &[NewAlert]) -> Result<u64> {
        let alerts = prepare_alerts(alerts)?;
        dispatch!(self, s => s.record_alerts(alerts).await)
    }

    /// Leases up to `n` due deliveries (oldest due first); expired leases are reclaimed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim_deliveries(
        &self,
        worker: &str,
        n: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        dispatch!(self, s => s.claim_deliveries(worker, n, lease).await)
    }

    /// The webhook accepted the delivery with `status`.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`].
    pub async fn delivered(&self, d: &Delivery, status: u16) -> Result<()> {
        let outcome = DeliveryOutcome::Delivered { status };
        dispatch!(self, s => s.finish_delivery(d, outcome).await)
    }

    /// The attempt failed (`status` if the webhook answered); try again at `next_attempt`.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`].
    pub async fn retry_delivery(
        &self,
        d: &Delivery,
        status: Option<u16>,
        error: &str,
        next_attempt: Timestamp,
    ) -> Result<()> {
        let outcome = DeliveryOutcome::Retry {
            status,
            error: error.to_owned(),
            next_attempt,
        };
        dispatch!(self, s => s.finish_delivery(d, outcome).await)
    }

    /// The last attempt failed: dead-letter the delivery.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`].
    pub async fn dead_delivery(
        &self,
        d: &Delivery,
        status: Option<u16>,
        error: &str,
    ) -> Result<()> {
        let outcome = DeliveryOutcome::Dead {
            status,
            error: error.to_owned(),
        };
        dispatch!(self, s => s.finish_delivery(d, outcome).await)
    }

    /// Alerts newest first (`GET /v1/alerts`), optionally in one state, paged by id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn alerts(&self, query: AlertQuery) -> Result<Vec<Alert>> {
        dispatch!(self, s => s.alerts(query).await)
    }

    // ---- export jobs -----------------------------------------------------------------

    /// Creates a queued export job.
    ///
    /// # Errors
    /// Database errors.
    pub async fn create_export(&self, job: NewExport) -> Result<ExportJob> {
        dispatch!(self, s => s.create_export(job).await)
    }

    /// An export job with its files.
    ///
    /// # Errors
    /// Database errors.
    pub async fn export(&self, id: &str) -> Result<Option<ExportJob>> {
        dispatch!(self, s => s.export(id).await)
    }

    /// A partner's export jobs, newest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_exports(&self, partner: &str, limit: u32) -> Result<Vec<ExportJob>> {
        dispatch!(self, s => s.list_exports(partner, limit).await)
    }

    /// Leases the oldest queued export job to `worker`, if any.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim_export(&self, worker: &str, lease: Duration) -> Result<Option<ExportJob>> {
        let jobs =
            dispatch!(self, s => s.claim_exports(worker, lease, ExportClaim::NextQueued).await)?;
        Ok(jobs.into_iter().next())
    }

    /// Takes over every running export job whose lease expired (its worker died): the
    /// caller resumes each (its progress and files are kept) or fails it with
    /// [`finish_export`](Store::finish_export). Call at start and now and then.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim_interrupted_exports(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Vec<ExportJob>> {
        dispatch!(self, s => s.claim_exports(worker, lease, ExportClaim::Interrupted).await)
    }

    /// Records progress and extends the lease; says whether the partner cancelled.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when another worker took the job over.
    pub async fn export_heartbeat(
        &self,
        id: &str,
        worker: &str,
        progress: ExportProgress,
        lease: Duration,
    ) -> Result<ExportControl> {
        dispatch!(self, s => s.export_heartbeat(id, worker, progress, lease).await)
    }

    /// Adds a written file to a running job.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`].
    pub async fn add_export_file(&self, id: &str, worker: &str, file: ExportFile) -> Result<()> {
        dispatch!(self, s => s.add_export_file(id, worker, file).await)
    }

    /// Finishes a running job: completed (`error` is `None`) or failed.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`].
    pub async fn finish_export(
        &self,
        id: &str,
        worker: &str,
        progress: ExportProgress,
        error: Option<&str>,
    ) -> Result<()> {
        let error = error.map(str::to_owned);
        dispatch!(self, s => s.finish_export(id, worker, progress, error).await)
    }

    /// Cancels a queued or running job (its worker learns it at its next heartbeat); returns
    /// the job as it is now, `None` if unknown.
    ///
    /// # Errors
    /// Database errors.
    pub async fn cancel_export(&self, id: &str) -> Result<Option<ExportJob>> {
        dispatch!(self, s => s.cancel_export(id).await)
    }

    /// Removes a job and its file records (the caller removes the files).
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_export(&self, id: &str) -> Result<bool> {
        dispatch!(self, s => s.delete_export(id).await)
    }

    /// Jobs whose files expired before `now` (to delete).
    ///
    /// # Errors
    /// Database errors.
    pub async fn expired_exports(&self, now: Timestamp) -> Result<Vec<ExportJob>> {
        dispatch!(self, s => s.expired_exports(now).await)
    }
}

#[async_trait]
impl ObservationStore for Store {
    async fn observations(
        &self,
        source: &str,
        request: &FetchRequest,
    ) -> medgate_core::Result<ObservationStream> {
        let name = source.to_owned();
        Ok(self
            .observations_stream(source, request)
            .map(move |item| item.map_err(|e| core_error(&name, e)))
            .boxed())
    }

    async fn patients(
        &self,
        source: &str,
    ) -> medgate_core::Result<BoxStream<'static, medgate_core::Result<String>>> {
        let name = source.to_owned();
        Ok(self
            .patients_stream(source)
            .map(move |item| item.map_err(|e| core_error(&name, e)))
            .boxed())
    }
}

/// A store error seen by the data path: the store being unreachable is the source being
/// unavailable (503), an unreadable record is internal.
fn core_error(source: &str, e: StoreError) -> medgate_core::Error {
    match e {
        StoreError::Database { .. } | StoreError::Closed => medgate_core::Error::Unavailable {
            name: source.to_owned(),
            reason: e.to_string(),
            retry_after: None,
        },
        other => other.into(),
    }
}

/// `sqlite://` URL path → file path (`sqlite:///abs` is absolute, `sqlite://rel` relative).
fn sqlite_path(rest: &str) -> Result<PathBuf> {
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == "/" {
        return Err(StoreError::Url("sqlite:// needs a file path".into()));
    }
    if path == ":memory:" {
        return Err(StoreError::Url(
            "an in-memory SQLite database is not durable; give a file path".into(),
        ));
    }
    Ok(PathBuf::from(path))
}

/// The answer to a request whose idempotency key is already stored.
pub(crate) fn replay(
    stored_hash: &[u8],
    hash: &[u8; 32],
    receipts: &str,
    created_us: i64,
) -> Result<Ingested> {
    if stored_hash != hash.as_slice() {
        return Ok(Ingested::KeyConflict);
    }
    let ids: Vec<String> =
        serde_json::from_str(receipts).map_err(|e| StoreError::corrupt("idempotency record", e))?;
    let received_at = clock::ts(created_us)?;
    Ok(Ingested::Replayed(
        ids.into_iter()
            .map(|id| Receipt { id, received_at })
            .collect(),
    ))
}

/// A report's state from its own column and its job's.
pub(crate) fn report_state(report: &str, job: Option<&str>) -> ReportState {
    match (report, job) {
        ("processed", _) => ReportState::Processed,
        ("failed", _) => ReportState::Failed,
        (_, Some("running")) => ReportState::Processing,
        _ => ReportState::Accepted,
    }
}

pub(crate) fn parse_reported_at(text: Option<String>) -> Result<Option<medgate_core::DateTime>> {
    text.map(|t| {
        medgate_core::DateTime::parse(&t).map_err(|e| StoreError::corrupt("report time", e))
    })
    .transpose()
}

pub(crate) fn parse_meta(text: Option<String>) -> Result<Option<serde_json::Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::corrupt("report meta", e)))
        .transpose()
}

/// SQL bounds on `start_us` for a rule window: widened by the local-time slack, since a
/// local time's indexed start is 14 h early; the exact check happens after reading.
pub(crate) fn window_bounds_us(q: &WindowQuery) -> (i64, i64) {
    let slack = 14 * 3_600_000_000;
    (clock::us(q.since).saturating_sub(slack), clock::us(q.until))
}
