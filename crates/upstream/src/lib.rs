//! medgate-upstream: the HTTP implementation of medgate-core's [`Upstream`] port.
//!
//! One [`reqwest::Client`] (one connection pool, keep-alive) is shared by every source; each
//! source gets an [`HttpUpstream`] bound to its own [`UpstreamPolicy`]. All protection against
//! a misbehaving upstream lives here, written once for every plugin:
//! - a per-attempt timeout and the caller's overall deadline, covering the whole body read (an
//!   upstream that trickles bytes still ends on time);
//! - a body cap checked against `Content-Length` and again while reading;
//! - HTTP outcomes mapped to [`medgate_core::Error`] (404 → patient not found, other statuses,
//!   connect failures, timeouts → upstream errors);
//! - a bulkhead (at most N calls in flight; beyond that fail fast with 503, never queue);
//! - a [`breaker::Breaker`] per source (fail fast with 503 and `Retry-After` while open);
//! - bounded retries with exponential back-off and full jitter, for retryable failures only
//!   (connect errors, 502/503/504, timeouts), never past the request's deadline.
//!
//! Metrics (through the `metrics` facade): `medgate_upstream_duration_seconds`,
//! `medgate_upstream_errors_total`, `medgate_upstream_retries_total`, `medgate_breaker_state`
//! (0 closed, 1 half-open, 2 open), `medgate_bulkhead_rejections_total`, all by `source`.
//!
//! Invariant: error details never contain the request URL (it carries the patient id).

pub mod breaker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use breaker::{Breaker, Permit};
use bytes::{Bytes, BytesMut};
use medgate_core::config::{BreakerConfig, RetryConfig};
use medgate_core::{
    CircuitState, Error, FetchRequest, Result, SourceCommon, Upstream, UpstreamBody,
};
use tokio::sync::Semaphore;

/// Builds the HTTP client shared by all sources: pooled keep-alive connections, no proxy
/// lookups from the environment, `TCP_NODELAY`.
///
/// # Errors
/// If the TLS backend cannot initialise.
pub fn shared_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("medgate/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(512)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
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

/// A source's upstream over HTTP.
pub struct HttpUpstream {
    name: String,
    client: reqwest::Client,
    policy: UpstreamPolicy,
    breaker: Breaker,
    bulkhead: Semaphore,
}

impl HttpUpstream {
    /// An upstream for source `name`, sharing `client`'s connection pool.
    pub fn new(
        name: impl Into<String>,
        client: reqwest::Client,
        policy: UpstreamPolicy,
    ) -> Arc<Self> {
        let name = name.into();
        metrics::gauge!("medgate_breaker_state", "source" => name.clone()).set(0.0);
        Arc::new(HttpUpstream {
            breaker: Breaker::new(policy.breaker.clone()),
            bulkhead: Semaphore::new(policy.max_concurrency),
            name,
            client,
            policy,
        })
    }

    fn unavailable(&self, reason: &str, retry_after: Duration) -> Error {
        Error::Unavailable {
            name: self.name.clone(),
            reason: reason.to_owned(),
            retry_after: Some(retry_after),
        }
    }

    /// One attempt under `budget`, its outcome reported to the breaker and to metrics.
    async fn timed_attempt(
        &self,
        url: &str,
        request: &FetchRequest,
        budget: Duration,
    ) -> Result<UpstreamBody> {
        let started = Instant::now();
        let result = match tokio::time::timeout(budget, self.attempt(url, request)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                name: self.name.clone(),
                after: budget,
            }),
        };
        let outcome = result.as_ref().map_or_else(Error::kind, |_| "ok");
        metrics::histogram!("medgate_upstream_duration_seconds", "source" => self.name.clone(), "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            metrics::counter!("medgate_upstream_errors_total", "source" => self.name.clone(), "kind" => e.kind())
                .increment(1);
        }
        let failed = result.as_ref().err().is_some_and(is_availability_failure);
        match self.breaker.record(failed) {
            Some(state) => self.breaker_changed(state),
            None if result.is_err() && !failed => self.breaker.release_trial(),
            None => {}
        }
        result
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

    async fn attempt(&self, url: &str, request: &FetchRequest) -> Result<UpstreamBody> {
        let response = self
            .client
            .get(url)
            .header("x-request-id", &request.request_id)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::PatientNotFound {
                name: self.name.clone(),
            });
        }
        if !status.is_success() {
            return Err(Error::UpstreamStatus {
                name: self.name.clone(),
                status: status.as_u16(),
            });
        }
        let limit = self.policy.max_body_bytes;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(Error::BodyTooLarge {
                name: self.name.clone(),
                limit,
            });
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

    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Bytes> {
        let limit = self.policy.max_body_bytes;
        let capacity = response.content_length().unwrap_or(16 * 1024).min(limit);
        let mut body = BytesMut::with_capacity(capacity as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Error::BodyTooLarge {
                    name: self.name.clone(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn transport_error(&self, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                name: self.name.clone(),
                after: self.policy.attempt_timeout,
            };
        }
        Error::Unreachable {
            name: self.name.clone(),
            detail: describe(&e.without_url()),
        }
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

/// Failures that say the upstream is unavailable (they feed the breaker).
fn is_availability_failure(e: &Error) -> bool {
    match e {
        Error::Timeout { .. } | Error::Unreachable { .. } => true,
        Error::UpstreamStatus { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Failures worth another attempt of an idempotent GET.
fn is_retryable(e: &Error) -> bool {
    match e {
        Error::Timeout { .. } | Error::Unreachable { .. } => true,
        Error::UpstreamStatus { status, .. } => matches!(status, 502..=504),
        _ => false,
    }
}

#[async_trait]
impl Upstream for HttpUpstream {
    fn circuit(&self) -> Option<CircuitState> {
        Some(self.breaker.state())
    }

    async fn get(&self, url: &str, request: &FetchRequest) -> Result<UpstreamBody> {
        let own_deadline = Instant::now() + self.policy.deadline;
        let deadline = request
            .deadline
            .map_or(own_deadline, |d| d.min(own_deadline));
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
            if let Permit::Rejected(wait) = self.breaker.try_acquire() {
                return Err(self.unavailable(
                    "circuit breaker is open after repeated upstream failures",
                    wait,
                ));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Timeout {
                    name: self.name.clone(),
                    after: self.policy.deadline,
                });
            }
            // One timer over headers and body: a trickling upstream cannot outlive the budget.
            let budget = self.policy.attempt_timeout.min(remaining);
            let error = match self.timed_attempt(url, request, budget).await {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            if !is_retryable(&error) || attempt >= self.policy.retry.attempts {
                return Err(error);
            }
            let pause = self.backoff(attempt);
            if Instant::now() + pause >= deadline {
                return Err(error);
            }
            metrics::counter!("medgate_upstream_retries_total", "source" => self.name.clone())
                .increment(1);
            tracing::debug!(source = %self.name, attempt, error = %error, "retrying upstream call");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}
