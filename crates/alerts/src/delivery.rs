//! [`Deliveries`]: the loop that sends recorded alerts to their webhooks.
//!
//! It claims due deliveries ([`Store::claim_deliveries`], oldest due first) up to
//! `concurrency` in flight, and for each POSTs the stored payload bytes unchanged with the
//! Standard Webhooks headers:
//! - `webhook-id`: `alert_<alert id>_<first 16 hex digits of the payload's SHA-256>`, the
//!   same on every attempt (receivers de-duplicate on it) and distinct across gateways
//!   (the payload holds the report's UUID receipt);
//! - `webhook-timestamp`: the attempt's time, in Unix seconds;
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{payload}")>`.
//!
//! A 2xx answer within the webhook's `timeout_ms` is delivered ([`Store::delivered`]).
//! Anything else (another status, a redirect, a timeout, a refused connection) is retried
//! with exponential back-off and full jitter ([`Store::retry_delivery`]) until the
//! webhook's `attempts`, then dead-lettered ([`Store::dead_delivery`]); every outcome is in
//! `GET /v1/alerts` and in `medgate_webhook_deliveries_total{webhook, outcome}`. A
//! delivery whose webhook is no longer configured is dead-lettered at once.
//!
//! Recorded errors name the status or the kind of failure, never the response body (it
//! may echo the payload) nor the URL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jiff::Timestamp;
use medgate_store::{Delivery, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::webhooks::{Webhook, Webhooks};
use crate::worker::{default_prefix, Wake};

/// Most bytes of a response body read (then dropped) so the connection can be reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Tuning of the delivery loop; [`Default`] suits a gateway.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Deliveries in flight at once (across webhooks).
    pub concurrency: usize,
    /// The loop polls for due deliveries this often (it also wakes at once when a report
    /// job records alerts in this process).
    pub idle_poll: Duration,
    /// A claimed delivery's lease is the longest webhook timeout plus this.
    pub lease_margin: Duration,
    /// The id leases carry (unique per process; the default is the pid and a random
    /// suffix).
    pub worker_id: String,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            concurrency: 16,
            idle_poll: Duration::from_millis(250),
            lease_margin: Duration::from_secs(30),
            worker_id: default_prefix("deliveries"),
        }
    }
}

/// The running delivery loop.
#[derive(Debug)]
pub struct Deliveries {
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    store: Store,
    webhooks: Arc<ArcSwap<Webhooks>>,
    client: reqwest::Client,
    options: DeliveryOptions,
    wake: Wake,
    shutdown: CancellationToken,
}

/// How one attempt ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry,
    Dead,
    LeaseLost,
    Unrecorded,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
            Outcome::LeaseLost => "lease_lost",
            Outcome::Unrecorded => "unrecorded",
        }
    }
}

impl Deliveries {
    /// Starts the loop on the current runtime. `wake` is the [`Wake`] given to the report
    /// workers (so a fired alert is sent at once); `webhooks` may be swapped on reload.
    /// `client` should not follow redirects (the gateway's shared client does not).
    pub fn spawn(
        store: Store,
        webhooks: Arc<ArcSwap<Webhooks>>,
        client: reqwest::Client,
        options: DeliveryOptions,
        wake: Wake,
        shutdown: CancellationToken,
    ) -> Deliveries {
        let shared = Arc::new(Shared {
            store,
            webhooks,
            client,
            options,
            wake,
            shutdown,
        });
        Deliveries {
            task: tokio::spawn(run(shared)),
        }
    }

    /// Waits until the loop has stopped (after the shutdown token was cancelled, attempts
    /// in flight finish, each within its webhook's timeout). Dropping the handle leaves the
    /// loop running; [`abort`](Deliveries::abort) stops it at once.
    pub async fn join(self) {
        let _ = self.task.await;
    }

    pub(crate) fn task_abort_handle(&self) -> tokio::task::AbortHandle {
        self.task.abort_handle()
    }

    /// Stops the loop at once; deliveries in flight stay leased until their lease expires,
    /// then are sent again (a receiver may see a message twice: de-duplicate on
    /// `webhook-id`).
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn run(shared: Arc<Shared>) {
    let o = &shared.options;
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut failures = 0u32;
    loop {
        let stopping = shared.shutdown.is_cancelled();
        if stopping && in_flight.is_empty() {
            return;
        }
        let free = o.concurrency.max(1).saturating_sub(in_flight.len());
        let mut claimed = 0;
        if !stopping && free > 0 {
            let hooks = shared.webhooks.load_full();
            let lease = hooks.max_timeout() + o.lease_margin;
            match shared
                .store
                .claim_deliveries(&o.worker_id, free, lease)
                .await
            {
                Ok(batch) => {
                    failures = 0;
                    claimed = batch.len();
                    for d in batch {
                        let (shared, hooks) = (shared.clone(), hooks.clone());
                        in_flight.spawn(async move { deliver(&shared, &hooks, d).await });
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "claiming webhook deliveries failed");
                }
            }
        }
        if claimed > 0 && claimed == free {
            // More may be due: claim again as soon as a slot frees.
            in_flight.join_next().await;
            continue;
        }
        let wait = if failures > 0 {
            o.idle_poll
                .max(Duration::from_millis(100) * failures.min(50))
        } else {
            o.idle_poll
        };
        tokio::select! {
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            () = shared.wake.notified(), if !stopping => {}
            () = tokio::time::sleep(wait), if !stopping => {}
            () = shared.shutdown.cancelled(), if !stopping => {}
        }
    }
}

/// One attempt of one delivery, recorded.
async fn deliver(shared: &Shared, hooks: &Webhooks, d: Delivery) {
    let started = Instant::now();
    let Some(hook) = hooks.get(&d.webhook) else {
        let why = format!("webhook `{}` is not configured any more", d.webhook);
        let outcome = record(
            shared,
            &d,
            Attempt::Failed {
                status: None,
                error: why,
            },
            None,
        )
        .await;
        count(&d.webhook, outcome, started);
        return;
    };
    let attempt = send(&shared.client, hook, &d).await;
    let outcome = record(shared, &d, attempt, Some(hook)).await;
    if outcome != Outcome::Delivered {
        tracing::warn!(webhook = %d.webhook, alert = d.id, attempt = d.attempt, outcome = outcome.as_str(), "webhook delivery failed");
    }
    count(&d.webhook, outcome, started);
}

fn count(webhook: &str, outcome: Outcome, started: Instant) {
    metrics::counter!("medgate_webhook_deliveries_total", "webhook" => webhook.to_owned(), "outcome" => outcome.as_str())
        .increment(1);
    metrics::histogram!("medgate_webhook_attempt_seconds", "webhook" => webhook.to_owned())
        .record(started.elapsed().as_secs_f64());
}

/// What one attempt got.
#[derive(Debug)]
enum Attempt {
    Accepted(u16),
    Failed { status: Option<u16>, error: String },
}

/// The stable `webhook-id` of an alert.
pub fn message_id(alert_id: i64, payload: &[u8]) -> String {
    let digest = Sha256::digest(payload);
    let mut hex = String::with_capacity(16);
    for b in &digest[..8] {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("alert_{alert_id}_{hex}")
}

/// POSTs the payload, signed.
async fn send(client: &reqwest::Client, hook: &Webhook, d: &Delivery) -> Attempt {
    let payload = d.payload.as_bytes();
    let id = message_id(d.id, payload);
    let timestamp = Timestamp::now().as_second();
    let signature = hook.secret.sign(&id, timestamp, payload);
    let request = client
        .post(hook.url.clone())
        .timeout(hook.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.payload.clone().into_bytes());
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            return Attempt::Failed {
                status: None,
                error: describe(&e, hook.timeout),
            }
        }
    };
    let status = response.status().as_u16();
    // Read a little of the body so the connection can be reused; its bytes are not kept.
    let mut read = 0;
    while read < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
    if response.status().is_success() {
        Attempt::Accepted(status)
    } else {
        Attempt::Failed {
            status: Some(status),
            error: format!("the webhook answered HTTP {status}"),
        }
    }
}

/// A transport error's kind, without the URL.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "could not connect to the webhook".to_owned()
    } else {
        format!("the request failed: {}", error_chain(e))
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.is_empty() {
        "unknown error".into()
    } else {
        text
    }
}

/// Records the attempt: delivered, retried later, or dead after the webhook's last attempt
/// (at once without a webhook).
async fn record(
    shared: &Shared,
    d: &Delivery,
    attempt: Attempt,
    hook: Option<&Webhook>,
) -> Outcome {
    let attempts = hook.map_or(1, |h| h.attempts);
    let result = match attempt {
        Attempt::Accepted(status) => shared
            .store
            .delivered(d, status)
            .await
            .map(|()| Outcome::Delivered),
        Attempt::Failed { status, error } if d.attempt >= attempts => shared
            .store
            .dead_delivery(d, status, &error)
            .await
            .map(|()| Outcome::Dead),
        Attempt::Failed { status, error } => {
            let backoff = hook.map(|h| h.backoff.delay(d.attempt)).unwrap_or_default();
            shared
                .store
                .retry_delivery(d, status, &error, Timestamp::now() + backoff)
                .await
                .map(|()| Outcome::Retry)
        }
    };
    match result {
        Ok(outcome) => outcome,
        Err(StoreError::LeaseLost { .. }) => Outcome::LeaseLost,
        Err(e) => {
            tracing::warn!(webhook = %d.webhook, alert = d.id, error = %e, "recording a delivery failed; it is sent again when its lease expires");
            Outcome::Unrecorded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_and_distinct() {
        let a = message_id(7, b"{\"a\":1}");
        assert_eq!(a, message_id(7, b"{\"a\":1}"));
        assert!(a.starts_with("alert_7_"));
        assert_eq!(a.len(), "alert_7_".len() + 16);
        assert_ne!(a, message_id(7, b"{\"a\":2}"));
    }
}
