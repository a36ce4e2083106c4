//! A circuit breaker: failure rate over a rolling window, minimum calls, cool-down, one trial.
//!
//! The window is a ring of buckets so counting is O(1) and old outcomes age out without a
//! timer. State changes take a short mutex; the hot path (closed, recording an outcome) takes
//! the same mutex for a few instructions, which is cheaper than the network call it guards.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use medgate_core::config::BreakerConfig;
use medgate_core::CircuitState;

const BUCKETS: usize = 10;

/// Whether a call may proceed.
#[derive(Debug, PartialEq, Eq)]
pub enum Permit {
    /// Go ahead; report the outcome with [`Breaker::record`].
    Allowed,
    /// The breaker is open: fail fast, try again after this long.
    Rejected(Duration),
}

/// One source's breaker.
pub struct Breaker {
    config: BreakerConfig,
    bucket_len: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    state: CircuitState,
    opened_at: Instant,
    trial_in_flight: bool,
    buckets: [(u32, u32); BUCKETS], // (calls, failures)
    bucket_start: Instant,
    head: usize,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        let bucket_len =
            Duration::from_millis(config.window_ms.max(BUCKETS as u64) / BUCKETS as u64);
        let now = Instant::now();
        let inner = Inner {
            state: CircuitState::Closed,
            opened_at: now,
            trial_in_flight: false,
            buckets: [(0, 0); BUCKETS],
            bucket_start: now,
            head: 0,
        };
        Breaker {
            config,
            bucket_len,
            inner: Mutex::new(inner),
        }
    }

    /// The current state (an open breaker whose cool-down ended reads as half-open).
    pub fn state(&self) -> CircuitState {
        let inner = self.lock();
        match inner.state {
            CircuitState::Open if inner.opened_at.elapsed() >= self.cool_down() => {
                CircuitState::HalfOpen
            }
            s => s,
        }
    }

    /// Asks to make a call.
    pub fn try_acquire(&self) -> Permit {
        let mut inner = self.lock();
        match inner.state {
            CircuitState::Closed => Permit::Allowed,
            CircuitState::Open => {
                let elapsed = inner.opened_at.elapsed();
                if elapsed < self.cool_down() {
                    return Permit::Rejected(self.cool_down() - elapsed);
                }
                inner.state = CircuitState::HalfOpen;
                inner.trial_in_flight = true;
                Permit::Allowed
            }
            CircuitState::HalfOpen if inner.trial_in_flight => {
                Permit::Rejected(Duration::from_secs(1))
            }
            CircuitState::HalfOpen => {
                inner.trial_in_flight = true;
                Permit::Allowed
            }
        }
    }

    /// Records a call's outcome; `failed` is an availability failure of the upstream.
    /// Returns the new state when this outcome changed it.
    pub fn record(&self, failed: bool) -> Option<CircuitState> {
        let mut inner = self.lock();
        match inner.state {
            CircuitState::HalfOpen => {
                inner.trial_in_flight = false;
                if failed {
                    inner.open();
                } else {
                    inner.reset_window();
                    inner.state = CircuitState::Closed;
                }
                Some(inner.state)
            }
            CircuitState::Open => None,
            CircuitState::Closed => {
                self.rotate(&mut inner);
                let head = inner.head;
                inner.buckets[head].0 += 1;
                inner.buckets[head].1 += u32::from(failed);
                let (calls, failures) = inner
                    .buckets
                    .iter()
                    .fold((0, 0), |(c, f), b| (c + b.0, f + b.1));
                let tripped = calls >= self.config.min_calls
                    && f64::from(failures) >= self.config.failure_rate * f64::from(calls);
                if failed && tripped {
                    inner.open();
                    return Some(CircuitState::Open);
                }
                None
            }
        }
    }

    /// Releases a half-open trial that ended without an availability verdict (e.g. a 404).
    pub fn release_trial(&self) {
        let mut inner = self.lock();
        if inner.state == CircuitState::HalfOpen {
            inner.trial_in_flight = false;
        }
    }

    fn cool_down(&self) -> Duration {
        Duration::from_millis(self.config.open_ms)
    }

    /// Advances the ring so the head bucket covers now, clearing buckets that aged out.
    fn rotate(&self, inner: &mut Inner) {
        let elapsed = inner.bucket_start.elapsed();
        if elapsed < self.bucket_len {
            return;
        }
        let steps = (elapsed.as_nanos() / self.bucket_len.as_nanos().max(1)) as usize;
        for _ in 0..steps.min(BUCKETS) {
            inner.head = (inner.head + 1) % BUCKETS;
            inner.buckets[inner.head] = (0, 0);
        }
        inner.bucket_start += self.bucket_len * steps as u32;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn open(&mut self) {
        self.state = CircuitState::Open;
        self.opened_at = Instant::now();
        self.trial_in_flight = false;
        self.reset_window();
    }

    fn reset_window(&mut self) {
        self.buckets = [(0, 0); BUCKETS];
        self.bucket_start = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(min_calls: u32, open_ms: u64) -> Breaker {
        Breaker::new(BreakerConfig {
            failure_rate: 0.5,
            window_ms: 10_000,
            min_calls,
            open_ms,
        })
    }

    #[test]
    fn opens_at_the_failure_rate_after_min_calls() {
        let b = breaker(4, 60_000);
        assert_eq!(b.record(true), None);
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), None, "3 calls < min_calls");
        assert_eq!(
            b.record(true),
            Some(CircuitState::Open),
            "2 of 4 failed = 50%"
        );
        assert!(matches!(b.try_acquire(), Permit::Rejected(d) if d > Duration::from_secs(59)));
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn stays_closed_below_the_rate() {
        let b = breaker(4, 60_000);
        for i in 0..40 {
            b.record(i % 4 == 0);
        }
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn half_open_allows_one_trial_then_closes_or_reopens() {
        let b = breaker(1, 30);
        b.record(true);
        assert_eq!(b.state(), CircuitState::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.try_acquire(), Permit::Allowed);
        assert!(
            matches!(b.try_acquire(), Permit::Rejected(_)),
            "one trial at a time"
        );
        assert_eq!(
            b.record(true),
            Some(CircuitState::Open),
            "a failed trial reopens"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.try_acquire(), Permit::Allowed);
        assert_eq!(b.record(false), Some(CircuitState::Closed));
        assert_eq!(b.try_acquire(), Permit::Allowed);
    }

    #[test]
    fn old_failures_age_out_of_the_window() {
        let b = Breaker::new(BreakerConfig {
            failure_rate: 0.5,
            window_ms: 100,
            min_calls: 4,
            open_ms: 1000,
        });
        for _ in 0..3 {
            b.record(true);
        }
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            b.record(true),
            None,
            "the three earlier failures left the window"
        );
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
