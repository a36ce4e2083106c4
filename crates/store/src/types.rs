//! The store's records as the server sees them: what goes in ([`IngestBatch`], [`NewAlert`],
//! [`NewExport`]) and what comes out (receipts, jobs, deliveries, export jobs).
//!
//! Types that carry a patient identifier implement `Debug` by hand and print it as
//! `<redacted>`, so a `?report` in a log line cannot leak one.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use medgate_core::{DateTime, Observation};

/// One request's reports, committed all-or-nothing.
#[derive(Clone)]
pub struct IngestBatch {
    /// The partner that sent it (its configured name).
    pub partner: String,
    /// The `store` source it was posted to.
    pub source: String,
    /// The request's `Idempotency-Key`, if it had one.
    pub idempotency: Option<IdempotencyKey>,
    /// The reports, in request order (receipts come back in the same order).
    pub reports: Vec<NewReport>,
}

impl fmt::Debug for IngestBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestBatch")
            .field("partner", &self.partner)
            .field("source", &self.source)
            .field("idempotency", &self.idempotency)
            .field("reports", &self.reports.len())
            .finish()
    }
}

/// An `Idempotency-Key` with the SHA-256 of the request body it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key as the partner sent it.
    pub key: String,
    /// SHA-256 of the raw request body.
    pub body_sha256: [u8; 32],
}

/// One report: a patient's diary entry, lab result set or SAE notice.
#[derive(Clone)]
pub struct NewReport {
    /// The patient (never logged).
    pub patient_id: String,
    /// `epro`, `lab`, `sae`, … as the request said.
    pub kind: String,
    /// When the patient or site reported it, as written.
    pub reported_at: Option<DateTime>,
    /// A serious adverse event: its job jumps the outbox queue.
    pub serious_adverse_event: bool,
    /// Anything else the report carried (device, app version), kept as JSON.
    pub meta: Option<serde_json::Value>,
    /// The observations, already normalized (patient and source are set by the store).
    pub observations: Vec<Observation>,
}

impl fmt::Debug for NewReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewReport")
            .field("patient_id", &"<redacted>")
            .field("kind", &self.kind)
            .field("serious_adverse_event", &self.serious_adverse_event)
            .field("observations", &self.observations.len())
            .finish()
    }
}

/// What a report got back: its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The receipt id (a UUIDv7 in text form), for `GET …/receipts/{id}`.
    pub id: String,
    /// When the gateway received the request.
    pub received_at: Timestamp,
}

/// The outcome of [`Store::ingest`](crate::Store::ingest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Stored and durable now; one receipt per report, in order.
    Stored(Vec<Receipt>),
    /// The same request (same partner, source, key and body) was stored before: its
    /// original receipts. Nothing was stored again.
    Replayed(Vec<Receipt>),
    /// The key was used before with a different body (HTTP 422). Nothing was stored.
    KeyConflict,
}

impl Ingested {
    /// The receipts of a stored or replayed request.
    pub fn receipts(&self) -> Option<&[Receipt]> {
        match self {
            Ingested::Stored(r) | Ingested::Replayed(r) => Some(r),
            Ingested::KeyConflict => None,
        }
    }
}

/// Processing state of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportState {
    /// Stored; its job waits in the outbox (or waits for a retry).
    Accepted,
    /// A worker holds its job now.
    Processing,
    /// Its job completed (rules evaluated, alerts recorded).
    Processed,
    /// Its job was dead-lettered after its last attempt.
    Failed,
}

impl ReportState {
    /// `accepted`, `processing`, `processed` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::Accepted => "accepted",
            ReportState::Processing => "processing",
            ReportState::Processed => "processed",
            ReportState::Failed => "failed",
        }
    }
}

/// What `GET /v1/ingest/{source}/receipts/{id}` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptStatus {
    /// The receipt id.
    pub id: String,
    /// The source it was posted to.
    pub source: String,
    /// The partner that posted it.
    pub partner: String,
    /// The report kind.
    pub kind: String,
    /// A serious adverse event.
    pub serious_adverse_event: bool,
    /// How many observations it carried.
    pub observations: u32,
    /// When it was received.
    pub received_at: Timestamp,
    /// Where its processing is.
    pub state: ReportState,
    /// Attempts its job has had so far.
    pub attempts: u32,
    /// When its job completed or was dead-lettered.
    pub processed_at: Option<Timestamp>,
    /// The last error of its job, if any.
    pub error: Option<String>,
}

/// A stored report with its observations (for the worker that processes its job).
#[derive(Clone)]
pub struct StoredReport {
    /// The receipt id.
    pub receipt: String,
    /// The source.
    pub source: String,
    /// The partner.
    pub partner: String,
    /// The patient (never logged).
    pub patient_id: String,
    /// The report kind.
    pub kind: String,
    /// When it was reported, as written.
    pub reported_at: Option<DateTime>,
    /// When it was received.
    pub received_at: Timestamp,
    /// A serious adverse event.
    pub serious_adverse_event: bool,
    /// Extra JSON it carried.
    pub meta: Option<serde_json::Value>,
    /// Its observations in request order.
    pub observations: Vec<Observation>,
}

impl fmt::Debug for StoredReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredReport")
            .field("receipt", &self.receipt)
            .field("source", &self.source)
            .field("patient_id", &"<redacted>")
            .field("kind", &self.kind)
            .field("serious_adverse_event", &self.serious_adverse_event)
            .field("observations", &self.observations.len())
            .finish()
    }
}

/// A claimed outbox job: process the report `receipt`, then call
/// [`complete`](crate::Store::complete), [`retry`](crate::Store::retry) or
/// [`dead`](crate::Store::dead) before `lease_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The report to process; a report has one job, so this is the job's id too.
    pub receipt: String,
    /// Its source.
    pub source: String,
    /// An SAE report (claimed before any other).
    pub serious_adverse_event: bool,
    /// 1 on the first attempt.
    pub attempt: u32,
    /// The worker that holds the lease.
    pub worker: String,
    /// The lease ends here; after it another worker may take the job.
    pub lease_until: Timestamp,
    /// When the job was queued (with its report).
    pub created_at: Timestamp,
}

/// The outbox at a glance, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Jobs waiting (including those waiting for a retry).
    pub queued: u64,
    /// Jobs leased to a worker.
    pub running: u64,
    /// Jobs dead-lettered.
    pub dead: u64,
    /// When the oldest unfinished job was queued.
    pub oldest: Option<Timestamp>,
    /// Jobs completed since the store was created (monotonic: the difference of two readings
    /// over their time difference is the drain rate).
    pub completed: u64,
    /// Alerts waiting to be delivered to their webhook (pending or being sent).
    pub deliveries_pending: u64,
}

impl OutboxStats {
    /// Unfinished jobs: queued plus running.
    pub fn depth(&self) -> u64 {
        self.queued + self.running
    }

    /// Age of the oldest unfinished job at `now`.
    pub fn oldest_age(&self, now: Timestamp) -> Option<Duration> {
        let oldest = self.oldest?;
        Some(
            now.duration_since(oldest)
                .try_into()
                .unwrap_or(Duration::ZERO),
        )
    }
}

/// A test on a value, for rules (`above = 120`, `below = 90`, `equals = "yes"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueTest {
    /// A number strictly greater than this (compared exactly, as decimals).
    Above(medgate_core::Decimal),
    /// A number strictly less than this.
    Below(medgate_core::Decimal),
    /// An answer equal to this: a coded answer's code, a string, `true`/`false`, or a number
    /// of equal value.
    Equals(String),
}

/// "How many of this patient's observations of `code` in `source` passed `test` within
/// [`since`, `until`]": the count behind "3 systolic readings > 160 within 24 h".
#[derive(Debug, Clone)]
pub struct WindowQuery {
    /// The source.
    pub source: String,
    /// The patient (never logged).
    pub patient_id: String,
    /// The code (a `code`, `system|code` token), matched on an observation's codings or on a
    /// component's (whose value is then the one tested).
    pub code: medgate_core::CodeFilter,
    /// Window start (inclusive), on the observation's effective start.
    pub since: Timestamp,
    /// Window end (inclusive).
    pub until: Timestamp,
    /// The test the value must pass.
    pub test: ValueTest,
}

/// A rule firing (or an SAE) to deliver to one webhook.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// The rule's name (`sae` for serious adverse events).
    pub rule: String,
    /// The webhook's configured name.
    pub webhook: String,
    /// The report that fired it. (rule, webhook, receipt) is recorded once.
    pub receipt: Option<String>,
    /// The source of that report.
    pub source: Option<String>,
    /// The JSON to send; stored and delivered as these exact bytes.
    pub payload: serde_json::Value,
}

/// Delivery state of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    /// Waiting for its (next) attempt.
    Pending,
    /// A worker is sending it.
    Delivering,
    /// The webhook answered 2xx.
    Delivered,
    /// Given up after the last attempt.
    Dead,
}

impl AlertState {
    /// `pending`, `delivering`, `delivered` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Delivering => "delivering",
            AlertState::Delivered => "delivered",
            AlertState::Dead => "dead",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<AlertState> {
        Some(match s {
            "pending" => AlertState::Pending,
            "delivering" => AlertState::Delivering,
            "delivered" => AlertState::Delivered,
            "dead" => AlertState::Dead,
            _ => return None,
        })
    }
}

/// A recorded alert and how its delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Its id (increasing: newer alerts have larger ids).
    pub id: i64,
    /// The rule.
    pub rule: String,
    /// The webhook.
    pub webhook: String,
    /// The report that fired it.
    pub receipt: Option<String>,
    /// That report's source.
    pub source: Option<String>,
    /// The JSON payload, as sent.
    pub payload: String,
    /// Delivery state.
    pub state: AlertState,
    /// Attempts so far.
    pub attempts: u32,
    /// The HTTP status of the last attempt, if one was received.
    pub last_status: Option<u16>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it fired.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// When the next attempt is due (pending alerts).
    pub next_attempt_at: Timestamp,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
}

/// A claimed alert delivery: send `payload` to `webhook`, then report the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The alert id (also a stable `webhook-id`).
    pub id: i64,
    /// The rule.
    pub rule: String,
    /// The webhook.
    pub webhook: String,
    /// The JSON payload to sign and send, byte for byte.
    pub payload: String,
    /// 1 on the first attempt.
    pub attempt: u32,
    /// The worker holding the lease.
    pub worker: String,
    /// The lease ends here.
    pub lease_until: Timestamp,
}

/// Filter for [`Store::alerts`](crate::Store::alerts).
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    /// Only alerts in this state.
    pub state: Option<AlertState>,
    /// Only alerts older than this id (the next page of a newest-first listing).
    pub before_id: Option<i64>,
    /// At most this many (0 means 100).
    pub limit: u32,
}

/// A new bulk export job.
#[derive(Debug, Clone)]
pub struct NewExport {
    /// The partner that kicked it off.
    pub partner: String,
    /// The kick-off request (sources, patients or cohort, format, profile, since, codes).
    pub request: serde_json::Value,
    /// When its files expire.
    pub expires_at: Timestamp,
}

/// State of an export job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportState {
    /// Waiting for a worker.
    Queued,
    /// A worker holds it (or held it and died: see [`ExportJob::lease_until`]).
    Running,
    /// Every file written; the manifest can be served.
    Completed,
    /// Given up; `error` says why.
    Failed,
    /// Cancelled by the partner.
    Cancelled,
}

impl ExportState {
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportState::Queued => "queued",
            ExportState::Running => "running",
            ExportState::Completed => "completed",
            ExportState::Failed => "failed",
            ExportState::Cancelled => "cancelled",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<ExportState> {
        Some(match s {
            "queued" => ExportState::Queued,
            "running" => ExportState::Running,
            "completed" => ExportState::Completed,
            "failed" => ExportState::Failed,
            "cancelled" => ExportState::Cancelled,
            _ => return None,
        })
    }

    /// Completed, failed or cancelled.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ExportState::Completed | ExportState::Failed | ExportState::Cancelled
        )
    }
}

/// An export job with its progress and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    /// Its id (a UUIDv7 in text form).
    pub id: String,
    /// The partner that owns it.
    pub partner: String,
    /// The kick-off request, JSON text.
    pub request: String,
    /// State.
    pub state: ExportState,
    /// The worker that holds (or last held) it.
    pub owner: Option<String>,
    /// Its lease; a running job whose lease passed was interrupted (its worker died).
    pub lease_until: Option<Timestamp>,
    /// How often a worker claimed it.
    pub attempts: u32,
    /// Progress.
    pub progress: ExportProgress,
    /// Kick-off time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Files expire here.
    pub expires_at: Timestamp,
    /// The Bulk Data `transactionTime`: when a worker first started it.
    pub transaction_time: Option<Timestamp>,
    /// Why it failed.
    pub error: Option<String>,
    /// Files written so far, in order.
    pub files: Vec<ExportFile>,
}

/// Progress counters of an export job (the `X-Progress` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportProgress {
    /// Patients to export.
    pub patients_total: u64,
    /// Patients done (exported or failed).
    pub patients_done: u64,
    /// Patients that failed.
    pub patients_failed: u64,
    /// Rows written.
    pub rows_written: u64,
}

/// One output file of an export job (a Bulk Data manifest `output` or `error` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    /// The FHIR resource type in it (`Observation`; `OperationOutcome` for errors).
    pub kind: String,
    /// Where partners download it.
    pub url: String,
    /// Where it is on disk (relative to the exports directory).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// Resources (rows) in it.
    pub count: u64,
}

/// What a running export's worker should do after a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportControl {
    /// Keep going; the lease was extended.
    Continue,
    /// The partner cancelled it: stop and remove its files.
    Cancelled,
}
