//! medgate-upstream: the HTTP implementation of medgate-core's [`Upstream`] port.
//!
//! One [`reqwest::Client`] (one connection pool, keep-alive) is shared by every source; each
//! source gets an [`HttpUpstream`] bound to its own [`UpstreamPolicy`]. A source with TLS keys
//! (`tls_ca`, `tls_client_cert` + `tls_client_key`) gets a client of its own, built once by
//! [`client_for`]; [`check_tls`] checks those keys for `medgate check` exactly as start-up
//! reads them (see [`tls`]). All protection against a misbehaving upstream lives here, written
//! once for every plugin:
//! - a per-attempt timeout and the caller's overall deadline, covering the whole body read (an
//!   upstream that trickles bytes still ends on time);
//! - a body cap checked against `Content-Length` and again while reading;
//! - one byte budget for the bodies in flight of every source ([`budget`]): a body that does
//!   not fit fails fast with 503 ([`medgate_core::Error::Overloaded`]) before it is read;
//! - HTTP outcomes mapped to [`medgate_core::Error`] (404 → patient not found, other statuses,
//!   connect and TLS failures, timeouts → upstream errors);
//! - a bulkhead (at most N calls in flight; beyond that fail fast with 503, never queue);
//! - a [`breaker::Breaker`] per source (fail fast with 503 and `Retry-After` while open);
//! - bounded retries with exponential back-off and full jitter, for retryable failures only
//!   (connect errors, 502/503/504, the source's own timeouts), never past the request's deadline.
//!
//! Only failures *of the upstream* feed the breaker: its own `timeout_ms`/`deadline_ms`
//! running out, connect and TLS failures, 5xx. A timeout caused by the caller's shorter
//! budget (a partner's `Request-Timeout`) and a local resource error of the gateway (out of
//! file descriptors) say nothing about the upstream: they are reported, never counted. Every
//! slot a call holds (bulkhead permit, half-open trial) is an RAII guard, so a call whose
//! future is dropped (the client hung up) gives everything back.
//!
//! Metrics (through the `metrics` facade): `medgate_upstream_duration_seconds` (by `outcome`),
//! `medgate_upstream_errors_total` (by `kind`: an error kind, or `caller-deadline` for a
//! timeout of the caller's budget), `medgate_upstream_retries_total`, `medgate_breaker_state`
//! (0 closed, 1 half-open, 2 open), `medgate_bulkhead_rejections_total`,
//! `medgate_body_budget_rejections_total` (bodies shed by the byte budget), all by `source`;
//! `medgate_upstream_body_bytes_in_flight` (a gauge of the bytes the budget holds, no labels).
//!
//! Invariant: error details never contain the request URL (it carries the patient id).

pub mod breaker;
pub mod budget;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use breaker::{Breaker, Ticket};
use bytes::{Bytes, BytesMut};
use medgate_core::config::{BreakerConfig, ConfigIssue, RetryConfig};
use medgate_core::{
    CircuitState, Error, FetchRequest, Result, SourceCommon, Upstream, UpstreamBody,
};
use tokio::sync::Semaphore;

pub use budget::{body_budget, BodyBudget, Reservation, DEFAULT_MAX_INFLIGHT_BODY_BYTES};
pub use tls::{check_tls, client_for, load_certified, CertifiedPem};

/// Errors building a source's upstream (the data path itself reports [`medgate_core::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The source's TLS keys name unusable files; the issues are those [`check_tls`] reports.
    #[error("source {name}: {}", join_issues(issues))]
    Tls {
        /// The source.
        name: String,
        /// Each problem, keyed `tls_ca`, `tls_client_cert` or `tls_client_key`.
        issues: Vec<ConfigIssue>,
    },
    /// The HTTP client could not be built.
    #[error("source {name}: the HTTP client could not be built: {detail}")]
    Client {
        /// The source.
        name: String,
        /// Why.
        detail: String,
    },
}

fn join_issues(issues: &[ConfigIssue]) -> String {
    let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
    text.join("; ")
}

/// The settings every upstream client shares: pooled keep-alive connections, no proxy lookups
/// from the environment, `TCP_NODELAY`, no redirects, HTTPS through rustls with the
/// platform's roots.
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("medgate/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(512)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
}

/// Builds the HTTP client shared by all sources without TLS keys.
///
/// On a host without a system CA store (a slim container without `ca-certificates`), the
/// platform verifier has no roots and refuses to build; medgate then still starts, with a
/// warning, and HTTPS upstreams can be trusted only through their source's `tls_ca` (or by
/// pointing `SSL_CERT_FILE`/`SSL_CERT_DIR` at a bundle). Plain HTTP is unaffected.
///
/// # Errors
/// If the TLS backend cannot initialise.
pub fn shared_client() -> reqwest::Result<reqwest::Client> {
    let error = match client_builder().build() {
        Ok(client) => return Ok(client),
        Err(e) => e,
    };
    match client_builder().tls_certs_only(Vec::new()).build() {
        Ok(client) => {
            tracing::warn!(
                error = %describe(&error),
                "no system CA certificates could be loaded: HTTPS upstreams are trusted only through their source's tls_ca"
            );
            Ok(client)
        }
        Err(_) => Err(error),
    }
}

/// How one source's upstream is called.
#[derive(Debug, Clone)]
pub struct UpstreamPolicy {
    /// Time allowed for one attempt, headers and body included.
    pub attempt_timeout: Duration,
    /// Time allowed for the whole call, retries included.
    pub deadline: Duration,
    /// Largest body accepted.
    pub max_body_bytes: u64,
    /// Most calls in flight.
    pub max_concurrency: usize,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Breaker policy.
    pub breaker: BreakerConfig,
}

impl From<&SourceCommon> for UpstreamPolicy {
    fn from(c: &SourceCommon) -> Self {
        UpstreamPolicy {
            attempt_timeout: Duration::from_millis(c.timeout_ms),
            deadline: Duration::from_millis(c.deadline_ms),
            max_body_bytes: c.max_body_bytes,
            max_concurrency: c.max_concurrency,
            retry: c.retry.clone(),
            breaker: c.breaker.clone(),
        }
    }
}

/// What a failed attempt says about the upstream's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The upstream answered (404, another 4xx, an oversized body): it is available.
    Answered,
    /// The upstream failed: its own time ran out, it could not be reached, it answered 5xx.
    Failed,
    /// Nothing is known about the upstream: the caller's budget ran out first, or the gateway
    /// itself failed before reaching it.
    Unknown,
}

/// A failed attempt: the error to report and what it means for the breaker and retries.
struct Fault {
    error: Error,
    verdict: Verdict,
    retryable: bool,
}

impl Fault {
    fn answered(error: Error) -> Fault {
        Fault {
            error,
            verdict: Verdict::Answered,
            retryable: false,
        }
    }

    fn failed(error: Error, retryable: bool) -> Fault {
        Fault {
            error,
            verdict: Verdict::Failed,
            retryable,
        }
    }

    /// The metrics label: the error's kind, except that a timeout of the caller's own
    /// budget is told apart from the upstream's.
    fn kind(&self) -> &'static str {
        match (&self.error, self.verdict) {
            (Error::Timeout { .. }, Verdict::Unknown) => "caller-deadline",
            (error, _) => error.kind(),
        }
    }

    fn unknown(error: Error) -> Fault {
        Fault {
            error,
            verdict: Verdict::Unknown,
            retryable: false,
        }
    }
}

/// The time one attempt may take, and whose limit that is.
#[derive(Debug, Clone, Copy)]
struct Budget {
    time: Duration,
    /// The caller's deadline is shorter than the source's own limits.
    callers: bool,
}

/// A source's upstream over HTTP.
pub struct HttpUpstream {
    name: String,
    client: reqwest::Client,
    policy: UpstreamPolicy,
    breaker: Breaker,
    bulkhead: Semaphore,
    budget: Arc<BodyBudget>,
}

impl HttpUpstream {
    /// An upstream for source `name`, sharing `client`'s connection pool and the
    /// process-wide [`body_budget`].
    pub fn new(
        name: impl Into<String>,
        client: reqwest::Client,
        policy: UpstreamPolicy,
    ) -> Arc<Self> {
        HttpUpstream::with_budget(name, client, policy, Arc::clone(body_budget()))
    }

    /// [`HttpUpstream::new`] reading bodies under `budget` instead of the process-wide one.
    pub fn with_budget(
        name: impl Into<String>,
        client: reqwest::Client,
        policy: UpstreamPolicy,
        budget: Arc<BodyBudget>,
    ) -> Arc<Self> {
        let name = name.into();
        metrics::gauge!("medgate_breaker_state", "source" => name.clone()).set(0.0);
        Arc::new(HttpUpstream {
            breaker: Breaker::new(policy.breaker.clone()),
            bulkhead: Semaphore::new(policy.max_concurrency.min(Semaphore::MAX_PERMITS)),
            name,
            client,
            policy,
            budget,
        })
    }

    /// The upstream for a configured source: its policy from `common`, the `shared` client
    /// unless the source has TLS keys (then a client of its own, see [`client_for`]).
    ///
    /// # Errors
    /// The source's TLS files are unusable (the same problems [`check_tls`] reports).
    pub fn for_source(
        common: &SourceCommon,
        shared: &reqwest::Client,
    ) -> std::result::Result<Arc<Self>, UpstreamError> {
        let client = client_for(shared, common)?;
        Ok(HttpUpstream::new(
            common.name.clone(),
            client,
            UpstreamPolicy::from(common),
        ))
    }

    fn unavailable(&self, reason: &str, retry_after: Duration) -> Error {
        Error::Unavailable {
            name: self.name.clone(),
            reason: reason.to_owned(),
            retry_after: Some(retry_after),
        }
    }

    /// What the next attempt may take: the source's own attempt timeout and what is left of
    /// its deadline, or what is left of the caller's deadline when that is shorter.
    fn budget(&self, own_deadline: Option<Instant>, caller_deadline: Option<Instant>) -> Budget {
        let now = Instant::now();
        let own_left = own_deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
        let own = self.policy.attempt_timeout.min(own_left);
        match caller_deadline.map(|d| d.saturating_duration_since(now)) {
            Some(callers) if callers < own => Budget {
                time: callers,
                callers: true,
            },
            _ => Budget {
                time: own,
                callers: false,
            },
        }
    }

    /// One attempt under `budget`, its verdict reported to the breaker (through `ticket`)
    /// and its outcome to metrics.
    async fn timed_attempt(
        &self,
        url: &str,
        request: &FetchRequest,
        budget: Budget,
        ticket: Ticket<'_>,
    ) -> std::result::Result<UpstreamBody, Fault> {
        let started = Instant::now();
        let result = match tokio::time::timeout(budget.time, self.attempt(url, request)).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout_fault(budget)),
        };
        let outcome = result.as_ref().map_or_else(Fault::kind, |_| "ok");
        metrics::histogram!("medgate_upstream_duration_seconds", "source" => self.name.clone(), "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        if let Err(f) = &result {
            metrics::counter!("medgate_upstream_errors_total", "source" => self.name.clone(), "kind" => f.kind())
                .increment(1);
        }
        let verdict = match &result {
            Ok(_) => Verdict::Answered,
            Err(f) => f.verdict,
        };
        let changed = match verdict {
            Verdict::Answered => ticket.record(false),
            Verdict::Failed => ticket.record(true),
            // Dropping the ticket hands a half-open trial back without a verdict.
            Verdict::Unknown => None,
        };
        if let Some(state) = changed {
            self.breaker_changed(state);
        }
        result
    }

    /// A timeout: the upstream's failure when the source's own limit ran out, no verdict
    /// when the caller's shorter budget did.
    fn timeout_fault(&self, budget: Budget) -> Fault {
        let error = Error::Timeout {
            name: self.name.clone(),
            after: budget.time,
        };
        if budget.callers {
            Fault::unknown(error)
        } else {
            Fault::failed(error, true)
        }
    }

    fn breaker_changed(&self, state: CircuitState) {
        let value = match state {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        };
        metrics::gauge!("medgate_breaker_state", "source" => self.name.clone()).set(value);
        tracing::warn!(source = %self.name, state = ?state, "circuit breaker changed state");
    }

    /// Full-jitter exponential back-off before retry number `retry` (1-based).
    fn backoff(&self, retry: u32) -> Duration {
        let r = &self.policy.retry;
        let ceiling = r
            .base_delay_ms
            .saturating_mul(1u64 << retry.saturating_sub(1).min(20))
            .min(r.max_delay_ms);
        Duration::from_millis(rand::random_range(0..=ceiling))
    }

    async fn attempt(
        &self,
        url: &str,
        request: &FetchRequest,
    ) -> std::result::Result<UpstreamBody, Fault> {
        let response = self
            .client
            .get(url)
            .header("x-request-id", &request.request_id)
            .send()
            .await
            .map_err(|e| self.transport_fault(e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Fault::answered(Error::PatientNotFound {
                name: self.name.clone(),
            }));
        }
        if !status.is_success() {
            let error = Error::UpstreamStatus {
                name: self.name.clone(),
                status: status.as_u16(),
            };
            return Err(if status.is_server_error() {
                Fault::failed(error, matches!(status.as_u16(), 502..=504))
            } else {
                Fault::answered(error)
            });
        }
        let limit = self.policy.max_body_bytes;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(self.too_large());
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = self.read_capped(response).await?;
        Ok(UpstreamBody {
            bytes,
            content_type,
        })
    }

    fn too_large(&self) -> Fault {
        Fault::answered(Error::BodyTooLarge {
            name: self.name.clone(),
            limit: self.policy.max_body_bytes,
        })
    }

    /// Reads the body under the cap and the byte budget. The budget admits the declared
    /// `Content-Length` before the first byte is read, otherwise each growth of the buffer
    /// before it is allocated. A body that arrives as one chunk is returned as that chunk
    /// (no copy); otherwise the chunks are joined into one buffer sized from
    /// `Content-Length` (or doubled as they arrive, up to the cap). The reservation travels
    /// with the returned bytes; on an error, or when this future is dropped midway, it is
    /// given back here.
    async fn read_capped(
        &self,
        mut response: reqwest::Response,
    ) -> std::result::Result<Bytes, Fault> {
        let limit = self.policy.max_body_bytes;
        let declared = response.content_length().filter(|&len| len <= limit);
        let mut reservation = self.budget.reservation();
        if let Some(len) = declared {
            self.admit(&mut reservation, len)?;
        }
        let mut first: Option<Bytes> = None;
        let mut joined = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_fault(e))?
        {
            let held = first.as_ref().map_or(0, Bytes::len) + joined.len();
            let need = held + chunk.len();
            if need as u64 > limit {
                return Err(self.too_large());
            }
            if held == 0 {
                self.admit(&mut reservation, need as u64)?;
                first = Some(chunk);
                continue;
            }
            if need > joined.capacity() {
                // `need <= limit`, so the target fits in usize and is at least `need`.
                let target = declared
                    .unwrap_or(0)
                    .max(need as u64)
                    .max(2 * held as u64)
                    .max(16 * 1024)
                    .min(limit);
                self.admit(&mut reservation, target)?;
                let mut grown = BytesMut::with_capacity(target as usize);
                if let Some(first) = first.take() {
                    grown.extend_from_slice(&first);
                }
                grown.extend_from_slice(&joined);
                joined = grown;
            }
            joined.extend_from_slice(&chunk);
        }
        let body = first.unwrap_or_else(|| joined.freeze());
        Ok(reservation.attach(body))
    }

    /// Grows `reservation` to `total` bytes, or sheds the body: 503, not retried, and no
    /// verdict on the upstream (the gateway is full, the upstream did nothing wrong).
    fn admit(&self, reservation: &mut Reservation, total: u64) -> std::result::Result<(), Fault> {
        reservation.try_grow_to(total).map_err(|_| {
            metrics::counter!("medgate_body_budget_rejections_total", "source" => self.name.clone())
                .increment(1);
            Fault::unknown(Error::Overloaded {
                reason: "the gateway's budget for upstream bodies in flight \
                         ([server] max_inflight_body_bytes) is used up; the body was not read"
                    .to_owned(),
                retry_after: Some(Duration::from_secs(1)),
            })
        })
    }

    /// Classifies a transport error: the gateway's own resource exhaustion, a TLS failure,
    /// a connect timeout, or an unreachable upstream.
    fn transport_fault(&self, e: reqwest::Error) -> Fault {
        let cause = error_chain::Cause::of(&e);
        if cause.local_resource {
            return Fault::unknown(Error::Overloaded {
                reason: "the gateway has run out of file descriptors (too many open files); \
                         the source was not called"
                    .to_owned(),
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        if let Some(tls) = cause.tls {
            // A certificate problem does not go away on a second try.
            return Fault::failed(
                Error::Unreachable {
                    name: self.name.clone(),
                    detail: tls,
                },
                false,
            );
        }
        if e.is_timeout() {
            return Fault::failed(
                Error::Timeout {
                    name: self.name.clone(),
                    after: self.policy.attempt_timeout,
                },
                true,
            );
        }
        Fault::failed(
            Error::Unreachable {
                name: self.name.clone(),
                detail: describe(&e.without_url()),
            },
            true,
        )
    }
}

mod error_chain {
    //! Finding the cause of a transport error deep in reqwest's, hyper's and rustls' chain.

    use std::error::Error as StdError;

    /// What a transport error's chain reveals.
    pub(crate) struct Cause {
        /// EMFILE/ENFILE: the gateway is out of file descriptors.
        pub(crate) local_resource: bool,
        /// A TLS failure, described for an operator (no URL).
        pub(crate) tls: Option<String>,
    }

    impl Cause {
        pub(crate) fn of(e: &(dyn StdError + 'static)) -> Cause {
            let mut cause = Cause {
                local_resource: false,
                tls: None,
            };
            let mut next = Some(e);
            while let Some(e) = next {
                cause.inspect(e);
                next = match e.downcast_ref::<std::io::Error>() {
                    // io::Error::source skips the error it wraps: descend into it instead.
                    Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
                    None => e.source(),
                };
            }
            cause
        }

        fn inspect(&mut self, e: &(dyn StdError + 'static)) {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    self.local_resource = true;
                }
            }
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                if self.tls.is_none() {
                    self.tls = Some(describe_tls(tls));
                }
            }
        }
    }

    fn describe_tls(e: &rustls::Error) -> String {
        use rustls::{AlertDescription, CertificateError};
        let hint = match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                " (the upstream's certificate is not signed by a trusted CA: set the source's tls_ca)"
            }
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::HandshakeFailure,
            ) => " (the upstream refused the client certificate: check tls_client_cert and tls_client_key)",
            _ => "",
        };
        format!("TLS failed: {e}{hint}")
    }
}

/// Whether a pause of `pause` from now would reach `deadline` (never, without a deadline).
fn sleeps_past(pause: Duration, deadline: Option<Instant>) -> bool {
    match (Instant::now().checked_add(pause), deadline) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(resumes), Some(deadline)) => resumes >= deadline,
    }
}

/// The error and its causes on one line, without the URL.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[async_trait]
impl Upstream for HttpUpstream {
    fn circuit(&self) -> Option<CircuitState> {
        Some(self.breaker.state())
    }

    async fn get(&self, url: &str, request: &FetchRequest) -> Result<UpstreamBody> {
        let started = Instant::now();
        // `None`: a deadline too far away to represent, i.e. none.
        let own_deadline = started.checked_add(self.policy.deadline);
        // Released on every return and when this future is dropped mid-call.
        let Ok(_slot) = self.bulkhead.try_acquire() else {
            metrics::counter!("medgate_bulkhead_rejections_total", "source" => self.name.clone())
                .increment(1);
            return Err(self.unavailable(
                "too many concurrent calls to this source",
                Duration::from_secs(1),
            ));
        };
        let mut attempt = 1;
        loop {
            // Checked before asking the breaker, so a call with no time left never takes
            // (and then sits on) the half-open trial.
            let budget = self.budget(own_deadline, request.deadline);
            if budget.time.is_zero() {
                return Err(Error::Timeout {
                    name: self.name.clone(),
                    after: started.elapsed(),
                });
            }
            let ticket = match self.breaker.try_acquire() {
                Ok(ticket) => ticket,
                Err(wait) => {
                    return Err(self.unavailable(
                        "circuit breaker is open after repeated upstream failures",
                        wait,
                    ))
                }
            };
            // One timer over headers and body: a trickling upstream cannot outlive the budget.
            let fault = match self.timed_attempt(url, request, budget, ticket).await {
                Ok(body) => return Ok(body),
                Err(fault) => fault,
            };
            if !fault.retryable || attempt >= self.policy.retry.attempts {
                return Err(fault.error);
            }
            let pause = self.backoff(attempt);
            let deadline = match (request.deadline, own_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if sleeps_past(pause, deadline) {
                return Err(fault.error);
            }
            metrics::counter!("medgate_upstream_retries_total", "source" => self.name.clone())
                .increment(1);
            tracing::debug!(source = %self.name, attempt, error = %fault.error, "retrying upstream call");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}
