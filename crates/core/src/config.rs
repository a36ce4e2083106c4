//! The typed configuration file (TOML) and its pure, I/O-free validation.
//!
//! Parsing happens in two steps: the file into [`Config`] (unknown keys are refused), then each
//! `[[sources]]` entry into its plugin's own typed struct by the [`Registry`](crate::Registry).
//! Every problem is reported as a [`ConfigIssue`] naming the key, e.g.
//! `sources[1] (wearable).format: unknown variant ...`.

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// Built-in simulated upstreams, for the demo only.
    pub demo: Option<DemoConfig>,
    /// Data sources; each entry's keys beyond [`SourceCommon`] belong to its `kind`'s plugin.
    #[serde(default)]
    pub sources: Vec<toml::Table>,
    /// Download formats.
    #[serde(default)]
    pub exporters: ExportersConfig,
    /// Partner authentication.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Partners allowed to call the API, each with an API key, permissions and limits.
    #[serde(default)]
    pub partners: Vec<PartnerConfig>,
    /// Where partner rate limits are kept.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// The audit trail of every access to patient data.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Terminology maps (local code → standard code), applied by sources that list them.
    #[serde(default)]
    pub code_maps: Vec<CodeMapConfig>,
    /// medgate's own store (pushed reports, background jobs, export jobs).
    #[serde(default)]
    pub store: StoreConfig,
    /// Push ingestion (`POST /v1/ingest/{source}`) and its background workers.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Webhooks notified of rule firings and serious adverse events; typed and validated by
    /// `medgate-alerts`.
    #[serde(default)]
    pub webhooks: Vec<toml::Table>,
    /// Early-warning rules over pushed data; typed and validated by `medgate-alerts`.
    #[serde(default)]
    pub rules: Vec<toml::Table>,
    /// De-identification profiles; typed and validated by `medgate-deid`.
    #[serde(default)]
    pub profiles: Vec<toml::Table>,
    /// Export jobs (FHIR Bulk Data).
    #[serde(default)]
    pub exports: ExportsConfig,
    /// Named patient lists for exports.
    #[serde(default)]
    pub cohorts: Vec<CohortConfig>,
}

/// `[store]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` (embedded, one gateway) or `postgres://user@host/db`
    /// (several replicas on one database). `MEDGATE_STORE_URL` wins when set.
    #[serde(default = "default_store_url")]
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: default_store_url(),
        }
    }
}

fn default_store_url() -> String {
    "sqlite://data/medgate.db".into()
}

/// `[ingest]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Background workers processing accepted reports (rules, notifications).
    #[serde(default = "default_ingest_workers")]
    pub workers: usize,
    /// Jobs the backlog may hold (accepted reports not yet processed).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: u64,
    /// Above this backlog new uploads get 503 with a `Retry-After` from the drain rate.
    #[serde(default = "default_high_water")]
    pub high_water: u64,
    /// Largest upload body accepted, in bytes (413 beyond).
    #[serde(default = "default_ingest_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Webhooks told of every serious adverse event at once. Required (it may be `[]`, on
    /// purpose) once webhooks and store sources exist: an SAE nobody hears of is the failure
    /// this exists to prevent.
    #[serde(default)]
    pub sae_notify: Option<Vec<String>>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            workers: default_ingest_workers(),
            queue_capacity: default_queue_capacity(),
            high_water: default_high_water(),
            max_body_bytes: default_ingest_max_body_bytes(),
            sae_notify: None,
        }
    }
}

fn default_ingest_workers() -> usize {
    16
}
fn default_queue_capacity() -> u64 {
    100_000
}
fn default_high_water() -> u64 {
    80_000
}
fn default_ingest_max_body_bytes() -> u64 {
    1024 * 1024
}

/// `[exports]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportsConfig {
    /// Where job files go (a shared volume when replicas share PostgreSQL).
    #[serde(default = "default_exports_dir")]
    pub dir: std::path::PathBuf,
    /// Files and job state are deleted this long after the job finishes, in seconds.
    #[serde(default = "default_expire_after_s")]
    pub expire_after_s: u64,
    /// A file is split into parts of at most this many bytes.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Export jobs running at once in this gateway.
    #[serde(default = "default_job_concurrency")]
    pub concurrency: usize,
}

impl Default for ExportsConfig {
    fn default() -> Self {
        ExportsConfig {
            dir: default_exports_dir(),
            expire_after_s: default_expire_after_s(),
            max_file_bytes: default_max_file_bytes(),
            concurrency: default_job_concurrency(),
        }
    }
}

fn default_exports_dir() -> std::path::PathBuf {
    "data/exports".into()
}
fn default_expire_after_s() -> u64 {
    86_400
}
fn default_max_file_bytes() -> u64 {
    1 << 30
}
fn default_job_concurrency() -> usize {
    2
}

/// One `[[cohorts]]` entry: a named patient list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohortConfig {
    /// Name used in `/fhir/Group/{name}/$export`.
    pub name: String,
    /// File with one patient id per line (blank lines and `#` comments ignored).
    #[serde(default)]
    pub patients_file: Option<std::path::PathBuf>,
    /// Patient ids given inline.
    #[serde(default)]
    pub patients: Vec<String>,
    /// Sources the cohort is exported from (default: every source the partner may read).
    #[serde(default)]
    pub sources: Vec<String>,
}

/// One `[[code_maps]]` entry: a CSV dictionary from local codes to standard ones.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeMapConfig {
    /// Name that sources use in their `code_maps` list.
    pub name: String,
    /// CSV file with the header
    /// `source_system,source_code,target_system,target_code,target_display`; relative
    /// paths are relative to the working directory.
    pub file: std::path::PathBuf,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Require a partner API key on `/v1/*`. `false` is for demos only and is logged loudly.
    #[serde(default = "default_true")]
    pub required: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { required: true }
    }
}

fn default_true() -> bool {
    true
}

/// One `[[partners]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// Partner name (appears in the audit trail and metrics).
    pub name: String,
    /// Hex SHA-256 of the partner's API key; the key itself is never stored.
    pub key_sha256: String,
    /// Source names the partner may read; `["*"]` for all.
    pub sources: Vec<String>,
    /// Export formats the partner may download; `["*"]` for all enabled.
    #[serde(default)]
    pub formats: Vec<String>,
    /// Sustained requests per second.
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Requests allowed at once from idle.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Requests in flight at once.
    #[serde(default = "default_partner_concurrency")]
    pub max_concurrency: usize,
    /// `store` sources the partner may push reports to (`POST /v1/ingest/{source}`); `["*"]`
    /// for every store source.
    #[serde(default)]
    pub ingest: Vec<String>,
    /// Whether the partner may start export jobs (`POST /v1/exports`, `$export`).
    #[serde(default)]
    pub export_jobs: bool,
    /// A de-identification profile applied to everything this partner reads (it cannot ask
    /// for another one).
    #[serde(default)]
    pub profile: Option<String>,
    /// May list alerts (`GET /v1/alerts`; they name patients).
    #[serde(default)]
    pub read_alerts: bool,
}

fn default_rate() -> u32 {
    100
}
fn default_burst() -> u32 {
    20
}
fn default_partner_concurrency() -> usize {
    32
}

/// `[rate_limit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `memory` (per process, the default) or `redis` (shared by every replica).
    #[serde(default)]
    pub backend: RateLimitBackend,
    /// Redis URL for `backend = "redis"`; the `MEDGATE_REDIS_URL` environment variable wins.
    pub redis_url: Option<String>,
    /// When Redis is unreachable: `true` lets requests through (logged and counted),
    /// `false` refuses them with 503.
    #[serde(default = "default_true")]
    pub fail_open: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            backend: RateLimitBackend::Memory,
            redis_url: None,
            fail_open: true,
        }
    }
}

/// Rate-limit storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateLimitBackend {
    /// In this process.
    #[default]
    Memory,
    /// In Redis, through an atomic GCRA script.
    Redis,
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The hash-chained JSON Lines file.
    #[serde(default = "default_audit_path")]
    pub path: std::path::PathBuf,
    /// fdatasync every entry before the response completes (slower; survives power loss).
    #[serde(default)]
    pub fsync: bool,
    /// Environment variable holding the HMAC key (at least 32 bytes) that signs periodic
    /// checkpoints of the chain's head; without it there are no checkpoints.
    #[serde(default)]
    pub checkpoint_key_env: Option<String>,
    /// Sign a checkpoint at least every this many entries (1..=1000000).
    #[serde(default = "default_checkpoint_every_entries")]
    pub checkpoint_every_entries: u64,
    /// Sign a checkpoint at least this often, in ms (1000..=86400000).
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// Most patient ids recorded for a rejected request (0..=10000); the count of the rest
    /// is recorded instead.
    #[serde(default = "default_max_rejected_patient_ids")]
    pub max_rejected_patient_ids: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: default_audit_path(),
            fsync: false,
            checkpoint_key_env: None,
            checkpoint_every_entries: default_checkpoint_every_entries(),
            checkpoint_interval_ms: default_checkpoint_interval_ms(),
            max_rejected_patient_ids: default_max_rejected_patient_ids(),
        }
    }
}

fn default_checkpoint_every_entries() -> u64 {
    1000
}
fn default_checkpoint_interval_ms() -> u64 {
    60_000
}
fn default_max_rejected_patient_ids() -> usize {
    100
}

fn default_audit_path() -> std::path::PathBuf {
    "data/audit.jsonl".into()
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Most patients one export request may name.
    #[serde(default = "default_max_export_patients")]
    pub max_export_patients: usize,
    /// Sources fetched at once for one export (patients are still written in the order asked).
    #[serde(default = "default_export_concurrency")]
    pub export_concurrency: usize,
    /// Time budget of a data request when the partner sends no `Request-Timeout`, in ms.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Largest `Request-Timeout` a partner may ask for, in ms.
    #[serde(default = "default_max_request_timeout_ms")]
    pub max_request_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish, in ms.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// PEM certificate chain for serving HTTPS (with `tls_key`); plain HTTP without it.
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
    /// Time a client has to send a request's headers, in ms (slowloris guard).
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// How long an idle keep-alive connection is kept open, in ms.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Most client connections open at once; beyond it new ones are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Downloads streaming at once, across every partner; beyond it new ones get 503.
    #[serde(default = "default_max_concurrent_exports")]
    pub max_concurrent_exports: usize,
    /// A second listener for operators: `/healthz`, `/readyz` and `/metrics`, with its own
    /// connections, so health checks keep answering when the API's connection cap is full.
    /// `/metrics` is served here; on the API listener only with `metrics_token_env`.
    #[serde(default)]
    pub ops_listen: Option<SocketAddr>,
    /// Environment variable holding a bearer token that also opens `/metrics` on the API
    /// listener (for scrapers that cannot reach `ops_listen`).
    #[serde(default)]
    pub metrics_token_env: Option<String>,
    /// Bytes of upstream response bodies held at once, across every source; a body that does
    /// not fit is not read and its request gets 503 with `Retry-After`. At least every
    /// source's `max_body_bytes`.
    #[serde(default = "default_max_inflight_body_bytes")]
    pub max_inflight_body_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_export_patients: default_max_export_patients(),
            export_concurrency: default_export_concurrency(),
            request_timeout_ms: default_request_timeout_ms(),
            max_request_timeout_ms: default_max_request_timeout_ms(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            tls_cert: None,
            tls_key: None,
            header_read_timeout_ms: default_header_read_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            max_connections: default_max_connections(),
            max_concurrent_exports: default_max_concurrent_exports(),
            ops_listen: None,
            metrics_token_env: None,
            max_inflight_body_bytes: default_max_inflight_body_bytes(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_export_patients() -> usize {
    10_000
}
fn default_export_concurrency() -> usize {
    8
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_max_request_timeout_ms() -> u64 {
    30_000
}
fn default_shutdown_grace_ms() -> u64 {
    10_000
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_concurrent_exports() -> usize {
    16
}
fn default_max_inflight_body_bytes() -> u64 {
    256 * 1024 * 1024
}

/// `[demo]`: simulated upstreams with deterministic synthetic patients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Where the simulated FHIR XML hospital system listens.
    #[serde(default = "default_demo_his")]
    pub his_listen: SocketAddr,
    /// Where the simulated Open mHealth wearable cloud listens.
    #[serde(default = "default_demo_wearable")]
    pub wearable_listen: SocketAddr,
    /// Patients P000001..=P{patients}.
    #[serde(default = "default_demo_patients")]
    pub patients: u32,
    /// Observations per patient.
    #[serde(default = "default_demo_observations")]
    pub observations: u32,
    /// An API key for a `demo` partner allowed everything; printed at start-up. Demo only.
    pub api_key: Option<String>,
}

fn default_demo_his() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 18101))
}
fn default_demo_wearable() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 18102))
}
fn default_demo_patients() -> u32 {
    100
}
fn default_demo_observations() -> u32 {
    20
}

/// `[exporters]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportersConfig {
    /// Format keys offered for download, e.g. `["csv", "json", "ndjson", "xlsx"]`.
    #[serde(default = "default_enabled_formats")]
    pub enabled: Vec<String>,
}

impl Default for ExportersConfig {
    fn default() -> Self {
        ExportersConfig {
            enabled: default_enabled_formats(),
        }
    }
}

fn default_enabled_formats() -> Vec<String> {
    ["csv", "json", "ndjson", "xlsx"].map(String::from).to_vec()
}

/// The keys every `[[sources]]` entry has, whatever its kind: identity and upstream protection.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceCommon {
    /// Unique name, used in URLs (`/v1/data/{name}`): lowercase letters, digits, `-`, `_`.
    pub name: String,
    /// Plugin kind, e.g. `his-xml`.
    pub kind: String,
    /// Time allowed for one upstream attempt (headers and body), in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Time allowed for one request to this source, retries and back-off included, in ms.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Largest upstream body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Bulkhead: most upstream calls in flight at once; beyond it calls fail fast with 503.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Retries of failed idempotent fetches.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Names of `[[code_maps]]` applied to this source's codes, in order (the first map that
    /// knows a code wins).
    #[serde(default)]
    pub code_maps: Vec<String>,
    /// IANA time zone (`Asia/Shanghai`) applied to this source's times that carry no UTC
    /// offset; without it such times stay local and are marked so.
    #[serde(default)]
    pub timezone: Option<String>,
    /// PEM file of CA certificates trusted for this source's HTTPS upstream, in addition to
    /// the platform's roots.
    #[serde(default)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate chain for mutual TLS (with `tls_client_key`).
    #[serde(default)]
    pub tls_client_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_client_cert`.
    #[serde(default)]
    pub tls_client_key: Option<std::path::PathBuf>,
}

impl SourceCommon {
    /// The keys above; everything else in the entry goes to the plugin.
    pub const KEYS: [&'static str; 13] = [
        "name",
        "kind",
        "timeout_ms",
        "deadline_ms",
        "max_body_bytes",
        "max_concurrency",
        "retry",
        "breaker",
        "code_maps",
        "timezone",
        "tls_ca",
        "tls_client_cert",
        "tls_client_key",
    ];

    /// The configured time zone, if any.
    ///
    /// # Errors
    /// The name is not in the time zone database (validation reports this first).
    pub fn time_zone(&self) -> Result<Option<jiff::tz::TimeZone>, String> {
        match &self.timezone {
            None => Ok(None),
            Some(name) => jiff::tz::db().get(name).map(Some).map_err(|_| {
                format!("unknown time zone `{name}` (expected an IANA name such as Asia/Shanghai)")
            }),
        }
    }
}

/// `[sources.retry]`: retries only for connect errors, 502/503/504 and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 = no retry).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First back-off, in ms; doubles per retry, with full jitter.
    #[serde(default = "default_base_delay_ms")]
    pub base_delay_ms: u64,
    /// Longest back-off, in ms.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: default_attempts(),
            base_delay_ms: default_base_delay_ms(),
            max_delay_ms: default_max_delay_ms(),
        }
    }
}

/// `[sources.breaker]`: opens when the failure rate over a rolling window crosses a threshold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failure rate (0 < r <= 1) over the window that opens the breaker.
    #[serde(default = "default_failure_rate")]
    pub failure_rate: f64,
    /// Length of the rolling window, in ms.
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    /// Calls in the window before the rate is trusted.
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
    /// How long the breaker stays open before a trial call, in ms.
    #[serde(default = "default_open_ms")]
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate: default_failure_rate(),
            window_ms: default_window_ms(),
            min_calls: default_min_calls(),
            open_ms: default_open_ms(),
        }
    }
}

fn default_timeout_ms() -> u64 {
    2_000
}
fn default_deadline_ms() -> u64 {
    5_000
}
fn default_max_body_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_max_concurrency() -> usize {
    64
}
fn default_attempts() -> u32 {
    3
}
fn default_base_delay_ms() -> u64 {
    50
}
fn default_max_delay_ms() -> u64 {
    1_000
}
fn default_failure_rate() -> f64 {
    0.5
}
fn default_window_ms() -> u64 {
    10_000
}
fn default_min_calls() -> u32 {
    20
}
fn default_open_ms() -> u64 {
    5_000
}

impl Config {
    /// Parses TOML text. Does not check kinds or plugin keys; [`Registry::validate`](crate::Registry::validate) does.
    ///
    /// # Errors
    /// One issue naming the key and position TOML reports.
    pub fn from_toml(text: &str) -> Result<Config, ConfigIssues> {
        toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| line_col(text, s.start))
                .unwrap_or_default();
            ConfigIssues(vec![ConfigIssue::new(key, e.message().trim())])
        })
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

/// One problem in the config, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where: a key path such as `sources[0] (his).url`, or a file position.
    pub key: String,
    /// What is wrong and, where possible, what would be right.
    pub message: String,
}

impl ConfigIssue {
    /// An issue at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssues(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigIssues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigIssues {}

/// Everything but RFC 3986 unreserved characters is percent-encoded, so a patient id can never
/// add a path segment, a query or a fragment to an upstream URL.
const PATIENT_ID_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The URL for one patient: `template` (checked by [`check_url_template`]) with its
/// `{patient_id}` replaced by the percent-encoded id.
///
/// The id must have passed [`check_patient_id`]: the dot segments `.` and `..` (which URL
/// parsers remove or resolve, encoded or not) are refused there.
pub fn fill_url_template(template: &str, patient_id: &str) -> String {
    let encoded = percent_encoding::utf8_percent_encode(patient_id, PATIENT_ID_ENCODE).to_string();
    template.replace("{patient_id}", &encoded)
}

/// Longest patient id accepted.
pub const MAX_PATIENT_ID_LEN: usize = 128;

/// Checks a patient id as partners and pushed reports give it: 1–128 ASCII letters, digits or
/// `-._:@~`, and not the dot segments `.` or `..`. The one rule for every entry point.
///
/// # Errors
/// What is wrong, without echoing the id.
pub fn check_patient_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("patient_id is empty".into());
    }
    if id.len() > MAX_PATIENT_ID_LEN {
        return Err(format!(
            "patient_id is longer than {MAX_PATIENT_ID_LEN} characters"
        ));
    }
    if id == "." || id == ".." {
        // A dot segment would be normalised away by URL parsers and change the upstream path.
        return Err("patient_id may not be `.` or `..`".into());
    }
    if let Some(pos) = id
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b"-._:@~".contains(&b)))
    {
        return Err(format!(
            "patient_id has a character that is not allowed at position {}; allowed: A-Z a-z 0-9 - . _ : @ ~",
            pos + 1
        ));
    }
    Ok(())
}

/// Checks an `http(s)` URL template containing `{patient_id}`; for plugins' `url` keys.
pub fn check_url_template(key: &str, template: &str) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    if !template.contains("{patient_id}") {
        issues.push(ConfigIssue::new(
            key,
            "must contain the placeholder {patient_id}",
        ));
    }
    match url::Url::parse(&template.replace("{patient_id}", "P1")) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(u) => issues.push(ConfigIssue::new(
            key,
            format!(
                "must be an http or https URL with a host, not `{}:`",
                u.scheme()
            ),
        )),
        Err(e) => issues.push(ConfigIssue::new(key, format!("is not a valid URL: {e}"))),
    }
    issues
}

/// The `name` of each `[[profiles]]` table.
pub fn profile_names(config: &Config) -> impl Iterator<Item = &str> {
    config
        .profiles
        .iter()
        .filter_map(|t| t.get("name").and_then(|n| n.as_str()))
}

/// `[[cohorts]]`: unique names, known sources, and patient lists whose every id is valid
/// (a file's problems name its line).
fn check_cohorts(
    config: &Config,
    source_names: &std::collections::HashSet<String>,
) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, c) in config.cohorts.iter().enumerate() {
        let label = format!("cohorts[{i}] ({})", c.name);
        let valid_name = !c.name.is_empty()
            && c.name.len() <= 64
            && c.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !valid_name || !names.insert(c.name.as_str()) {
            issues.push(ConfigIssue::new(
                format!("{label}.name"),
                "must be unique, 1-64 of A-Z a-z 0-9 - _ . (it is used in URLs)",
            ));
        }
        for (j, s) in c.sources.iter().enumerate() {
            if !source_names.contains(s) {
                issues.push(ConfigIssue::new(
                    format!("{label}.sources[{j}]"),
                    format!("no source is named `{s}`"),
                ));
            }
        }
        for (j, id) in c.patients.iter().enumerate() {
            if let Err(e) = check_patient_id(id) {
                issues.push(ConfigIssue::new(format!("{label}.patients[{j}]"), e));
            }
        }
        if let Some(file) = &c.patients_file {
            if let Err(e) = read_cohort_file(file) {
                issues.push(ConfigIssue::new(format!("{label}.patients_file"), e));
            }
        }
        if c.patients.is_empty() && c.patients_file.is_none() {
            issues.push(ConfigIssue::new(&label, "needs patients or patients_file"));
        }
    }
    issues
}

/// The patient ids of a cohort file: one per line, blank lines and `#` comments ignored.
///
/// # Errors
/// The file cannot be read, or a line is not a valid patient id (`file: line N: …`).
pub fn read_cohort_file(file: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let id = line.trim();
        if id.is_empty() || id.starts_with('#') {
            continue;
        }
        check_patient_id(id).map_err(|e| format!("{}: line {}: {e}", file.display(), n + 1))?;
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// Checks `[auth]`, `[[partners]]`, `[rate_limit]`, `[server]` budgets and `[demo]` against
/// the configured source names.
pub(crate) fn check_access(
    config: &Config,
    source_names: &std::collections::HashSet<String>,
) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    for (i, p) in config.partners.iter().enumerate() {
        let label = format!("partners[{i}] ({})", p.name);
        if p.name.is_empty() || !names.insert(p.name.as_str()) {
            issues.push(ConfigIssue::new(
                format!("{label}.name"),
                "must be non-empty and unique",
            ));
        }
        let hex_ok =
            p.key_sha256.len() == 64 && p.key_sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_ok {
            issues.push(ConfigIssue::new(
                format!("{label}.key_sha256"),
                "must be 64 hex digits (sha256sum of the API key, e.g. `printf %s KEY | sha256sum`)",
            ));
        } else if !keys.insert(p.key_sha256.to_ascii_lowercase()) {
            issues.push(ConfigIssue::new(
                format!("{label}.key_sha256"),
                "the same key is given to another partner",
            ));
        }
        for (j, s) in p.sources.iter().enumerate() {
            if s != "*" && !source_names.contains(s) {
                issues.push(ConfigIssue::new(
                    format!("{label}.sources[{j}]"),
                    format!("no source is named `{s}`"),
                ));
            }
        }
        for (j, f) in p.formats.iter().enumerate() {
            if f != "*" && !config.exporters.enabled.contains(f) {
                issues.push(ConfigIssue::new(
                    format!("{label}.formats[{j}]"),
                    format!("format `{f}` is not enabled"),
                ));
            }
        }
        for (j, s) in p.ingest.iter().enumerate() {
            if s != "*" && !source_names.contains(s) {
                issues.push(ConfigIssue::new(
                    format!("{label}.ingest[{j}]"),
                    format!("no source is named `{s}`"),
                ));
            }
        }
        if let Some(profile) = &p.profile {
            if !profile_names(config).any(|n| n == profile) {
                issues.push(ConfigIssue::new(
                    format!("{label}.profile"),
                    format!("no [[profiles]] entry is named `{profile}`"),
                ));
            }
        }
    }
    issues.extend(check_cohorts(config, source_names));
    let redis_env = std::env::var_os("MEDGATE_REDIS_URL").is_some();
    if config.rate_limit.backend == RateLimitBackend::Redis
        && config.rate_limit.redis_url.is_none()
        && !redis_env
    {
        issues.push(ConfigIssue::new(
            "rate_limit.redis_url",
            "is required with backend = \"redis\" (or set MEDGATE_REDIS_URL)",
        ));
    }
    let s = &config.server;
    if s.request_timeout_ms > s.max_request_timeout_ms {
        issues.push(ConfigIssue::new(
            "server.request_timeout_ms",
            "must be at most server.max_request_timeout_ms",
        ));
    }
    if let Some(var) = &s.metrics_token_env {
        match std::env::var(var) {
            Ok(token) if token.len() >= 16 => {}
            Ok(_) => issues.push(ConfigIssue::new(
                "server.metrics_token_env",
                format!("environment variable {var} must hold at least 16 characters"),
            )),
            Err(_) => issues.push(ConfigIssue::new(
                "server.metrics_token_env",
                format!("environment variable {var} is not set"),
            )),
        }
    }
    if s.ops_listen.is_some() && s.ops_listen == Some(s.listen) && s.listen.port() != 0 {
        issues.push(ConfigIssue::new(
            "server.ops_listen",
            "must differ from server.listen",
        ));
    }
    if s.tls_cert.is_some() != s.tls_key.is_some() {
        issues.push(ConfigIssue::new(
            "server.tls_cert",
            "tls_cert and tls_key are given together (the certificate chain and its key)",
        ));
    }
    if let Some(key) = config.demo.as_ref().and_then(|d| d.api_key.as_ref()) {
        if key.len() < 8 {
            issues.push(ConfigIssue::new(
                "demo.api_key",
                "must be at least 8 characters",
            ));
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_top_level_key_names_its_position() {
        let e = Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("lisen"), "{text}");
    }

    #[test]
    fn patient_ids_are_percent_encoded_into_templates() {
        assert_eq!(
            fill_url_template("http://h/p?id={patient_id}", "a/b c?x#y&z=1"),
            "http://h/p?id=a%2Fb%20c%3Fx%23y%26z%3D1"
        );
        assert_eq!(
            fill_url_template("http://h/{patient_id}", "P-1.2_3~"),
            "http://h/P-1.2_3~"
        );
    }

    #[test]
    fn no_patient_id_changes_the_url_outside_its_placeholder() {
        // Every short id over an alphabet of the characters that matter, plus hostile ones.
        let alphabet = [
            'a', '.', '/', '?', '#', '%', ':', '@', '~', ' ', '&', '\\', 'é',
        ];
        let mut ids: Vec<String> = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = ids
                .iter()
                .flat_map(|id| alphabet.iter().map(move |c| format!("{id}{c}")))
                .collect();
            ids.extend(longer);
        }
        for template in [
            "http://h:1/fhir/{patient_id}/Observation?x=1",
            "http://h:1/obs?patient={patient_id}&y=2",
        ] {
            let (before, after) = template.split_once("{patient_id}").unwrap();
            // Dot segments are refused by `check_patient_id` before any URL is built.
            for id in ids
                .iter()
                .filter(|i| !i.is_empty() && *i != "." && *i != "..")
            {
                let url = url::Url::parse(&fill_url_template(template, id)).unwrap();
                let text = url.as_str();
                assert!(text.starts_with(before), "{id:?}: {text}");
                assert!(text.ends_with(after), "{id:?}: {text}");
                let middle = &text[before.len()..text.len() - after.len()];
                assert!(
                    middle
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                    "{id:?}: {middle}"
                );
                let decoded = percent_encoding::percent_decode_str(middle)
                    .decode_utf8()
                    .unwrap();
                assert_eq!(decoded, id.as_str());
            }
        }
    }

    #[test]
    fn url_templates() {
        assert!(check_url_template("url", "http://h:1/p/{patient_id}").is_empty());
        assert_eq!(check_url_template("url", "http://h:1/p").len(), 1);
        assert!(check_url_template("url", "ftp://h/{patient_id}")[0]
            .message
            .contains("http"));
        assert!(check_url_template("url", "not a url {patient_id}")[0]
            .message
            .contains("valid URL"));
    }
}
