//! The outbox backlog as the API sees it: admission control for uploads.
//!
//! A poller reads the store's outbox statistics a few times a second (never per request) and
//! keeps the depth — reports not yet processed plus alerts not yet delivered to their webhook,
//! since both are work an upload adds —, the oldest job's age and the drain rate (jobs
//! completed per second over the last readings). An upload is admitted only below the high-water mark; above it the
//! answer is 503 with a `Retry-After` of how long the workers need to drain back below it at
//! the observed rate. The handler never blocks on a full queue, and nothing already accepted
//! is ever dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use medgate_core::Error;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::problem::ApiError;

/// Readings kept for the drain rate (at the poll interval, about 10 s).
const WINDOW: usize = 40;
/// How often the store is asked.
pub const POLL: Duration = Duration::from_millis(250);

/// The last observed backlog.
#[derive(Debug, Default)]
pub struct Backlog {
    depth: AtomicU64,
    /// Jobs completed per second × 1000.
    drain_milli: AtomicU64,
    oldest_ms: AtomicU64,
    dead: AtomicU64,
    readings: Mutex<VecDeque<(Instant, u64)>>,
}

/// What `/readyz` shows.
#[derive(Debug, Serialize)]
pub struct BacklogView {
    /// Reports accepted and not yet processed.
    pub depth: u64,
    /// Jobs completed per second over the last seconds.
    pub drain_per_second: f64,
    /// Age of the oldest unprocessed report, in seconds.
    pub oldest_job_age_seconds: f64,
    /// Jobs dead-lettered.
    pub dead: u64,
}

impl Backlog {
    /// Admits an upload of `reports` reports unless the backlog is at `high_water` or the
    /// upload would pass `capacity`.
    ///
    /// # Errors
    /// 503 with a `Retry-After` from the drain rate.
    pub fn admit(&self, reports: u64, high_water: u64, capacity: u64) -> Result<(), ApiError> {
        let depth = self.depth.load(Ordering::Relaxed);
        if depth < high_water && depth.saturating_add(reports) <= capacity {
            return Ok(());
        }
        metrics::counter!("medgate_ingest_shed_total").increment(1);
        Err(ApiError::Core(Error::Overloaded {
            reason: format!(
                "{depth} reports are waiting to be processed (high-water mark {high_water}); nothing was stored, retry later"
            ),
            retry_after: Some(self.retry_after(depth, high_water)),
        }))
    }

    /// Time to drain from `depth` to 80 % of the high-water mark at the observed rate.
    fn retry_after(&self, depth: u64, high_water: u64) -> Duration {
        let rate = self.drain_milli.load(Ordering::Relaxed) as f64 / 1000.0;
        let excess = depth.saturating_sub(high_water * 4 / 5) as f64;
        let secs = if rate > 0.0 { excess / rate } else { 30.0 };
        Duration::from_secs_f64(secs.clamp(1.0, 300.0))
    }

    /// The current readings.
    pub fn view(&self) -> BacklogView {
        BacklogView {
            depth: self.depth.load(Ordering::Relaxed),
            drain_per_second: self.drain_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            oldest_job_age_seconds: self.oldest_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            dead: self.dead.load(Ordering::Relaxed),
        }
    }

    fn record(&self, stats: &medgate_store::OutboxStats, capacity: u64) {
        let depth = stats.depth() + stats.deliveries_pending;
        metrics::gauge!("medgate_webhook_deliveries_pending").set(stats.deliveries_pending as f64);
        self.depth.store(depth, Ordering::Relaxed);
        self.dead.store(stats.dead, Ordering::Relaxed);
        let oldest = stats
            .oldest_age(jiff::Timestamp::now())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.oldest_ms.store(oldest, Ordering::Relaxed);
        let now = Instant::now();
        let rate = {
            let mut readings = self.readings.lock().unwrap_or_else(|p| p.into_inner());
            readings.push_back((now, stats.completed));
            while readings.len() > WINDOW {
                readings.pop_front();
            }
            match (readings.front(), readings.back()) {
                (Some(&(t0, c0)), Some(&(t1, c1))) if t1 > t0 => {
                    c1.saturating_sub(c0) as f64 / (t1 - t0).as_secs_f64()
                }
                _ => 0.0,
            }
        };
        self.drain_milli
            .store((rate * 1000.0) as u64, Ordering::Relaxed);
        metrics::gauge!("medgate_ingest_backlog_depth").set(depth as f64);
        metrics::gauge!("medgate_ingest_backlog_capacity").set(capacity as f64);
        metrics::gauge!("medgate_ingest_drain_rate").set(rate);
        metrics::gauge!("medgate_ingest_oldest_job_age_seconds").set(oldest as f64 / 1000.0);
        metrics::gauge!("medgate_ingest_dead_jobs").set(stats.dead as f64);
    }

    /// Polls `store` until `stop`; `capacity` is read from the current config each time.
    pub async fn poll(
        &self,
        store: medgate_store::Store,
        capacity: impl Fn() -> u64,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match store.outbox_stats().await {
                Ok(stats) => self.record(&stats, capacity()),
                Err(e) => tracing::warn!(error = %e, "reading the outbox backlog failed"),
            }
        }
    }
}
