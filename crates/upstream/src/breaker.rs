//! A circuit breaker: failure rate over a rolling window, minimum calls, cool-down, one trial.
//!
//! The window is a ring of buckets so counting is O(1) and old outcomes age out without a
//! timer. State changes take a short mutex; the hot path (closed, recording an outcome) takes
//! the same mutex for a few instructions, which is cheaper than the network call it guards.
//!
//! A call is admitted with a [`Ticket`], an RAII guard. The half-open trial is the ticket that
//! matters: if its call never reports a verdict (the caller's future was dropped when a client
//! hung up, the caller's own deadline ran out, the gateway hit a local error), dropping the
//! ticket hands the trial back, so the breaker can never stay half-open with no trial running.
//! Every ticket remembers the breaker's generation (bumped on each state change): an outcome
//! from a call admitted before the state changed is stale and ignored, so a slow call started
//! while closed cannot decide a later half-open trial.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use medgate_core::config::BreakerConfig;
use medgate_core::CircuitState;

const BUCKETS: usize = 10;

/// How long a caller is told to wait while another caller holds the half-open trial.
const TRIAL_BUSY_RETRY: Duration = Duration::from_secs(1);

/// One source's breaker.
pub struct Breaker {
    config: BreakerConfig,
    bucket_len: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    state: CircuitState,
    /// Bumped on every state change; tickets from an older generation are stale.
    generation: u64,
    opened_at: Instant,
    trial_in_flight: bool,
    buckets: [(u32, u32); BUCKETS], // (calls, failures)
    bucket_start: Instant,
    head: usize,
}

/// Leave to make one call. Report its outcome with [`Ticket::record`]; a ticket dropped
/// without a verdict records nothing and, if it was the half-open trial, frees the trial.
#[must_use = "a ticket records the call's outcome; dropping it at once wastes a trial"]
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    generation: u64,
    trial: bool,
    settled: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        let bucket_len =
            Duration::from_millis(config.window_ms.max(BUCKETS as u64) / BUCKETS as u64);
        let now = Instant::now();
        let inner = Inner {
            state: CircuitState::Closed,
            generation: 0,
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
    ///
    /// # Errors
    /// While open, or while another caller holds the half-open trial: how long to wait.
    pub fn try_acquire(&self) -> Result<Ticket<'_>, Duration> {
        let mut inner = self.lock();
        let trial = match inner.state {
            CircuitState::Closed => false,
            CircuitState::Open => {
                let elapsed = inner.opened_at.elapsed();
                if elapsed < self.cool_down() {
                    return Err(self.cool_down() - elapsed);
                }
                inner.change(CircuitState::HalfOpen);
                true
            }
            CircuitState::HalfOpen if inner.trial_in_flight => return Err(TRIAL_BUSY_RETRY),
            CircuitState::HalfOpen => true,
        };
        inner.trial_in_flight |= trial;
        Ok(Ticket {
            breaker: self,
            generation: inner.generation,
            trial,
            settled: false,
        })
    }

    fn cool_down(&self) -> Duration {
        Duration::from_millis(self.config.open_ms)
    }

    /// Records a verdict from a ticket of `generation`; returns the new state if it changed.
    fn record(&self, generation: u64, trial: bool, failed: bool) -> Option<CircuitState> {
        let mut inner = self.lock();
        if inner.generation != generation {
            return None;
        }
        match inner.state {
            CircuitState::HalfOpen if trial => {
                inner.trial_in_flight = false;
                let next = if failed {
                    CircuitState::Open
                } else {
                    CircuitState::Closed
                };
                inner.change(next);
                Some(next)
            }
            CircuitState::Closed => self.record_closed(&mut inner, failed),
            CircuitState::HalfOpen | CircuitState::Open => None,
        }
    }

    fn record_closed(&self, inner: &mut Inner, failed: bool) -> Option<CircuitState> {
        self.rotate(inner);
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
            inner.change(CircuitState::Open);
            return Some(CircuitState::Open);
        }
        None
    }

    /// Hands back a trial that ended without a verdict.
    fn release(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation && inner.state == CircuitState::HalfOpen {
            inner.trial_in_flight = false;
        }
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

impl Ticket<'_> {
    /// Whether this ticket is the half-open trial.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// Records the call's verdict: `failed` is an availability failure of the upstream, and
    /// `false` means the upstream answered. Returns the new state when this changed it.
    pub fn record(mut self, failed: bool) -> Option<CircuitState> {
        self.settled = true;
        self.breaker.record(self.generation, self.trial, failed)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.trial && !self.settled {
            self.breaker.release(self.generation);
        }
    }
}

impl Inner {
    fn change(&mut self, state: CircuitState) {
        self.state = state;
        self.generation += 1;
        match state {
            CircuitState::Open => {
                self.opened_at = Instant::now();
                self.trial_in_flight = false;
                self.reset_window();
            }
            CircuitState::Closed => self.reset_window(),
            CircuitState::HalfOpen => {}
        }
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

    /// One call with outcome `failed`, admitted now.
    fn call(b: &Breaker, failed: bool) -> Option<CircuitState> {
        b.try_acquire().expect("admitted").record(failed)
    }

    /// Opens `b` (min_calls 1) and waits out its cool-down.
    fn open_and_cool(b: &Breaker) {
        assert_eq!(call(b, true), Some(CircuitState::Open));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), CircuitState::HalfOpen);
    }

    #[test]
    fn opens_at_the_failure_rate_after_min_calls() {
        let b = breaker(4, 60_000);
        assert_eq!(call(&b, true), None);
        assert_eq!(call(&b, false), None);
        assert_eq!(call(&b, false), None, "3 calls < min_calls");
        assert_eq!(
            call(&b, true),
            Some(CircuitState::Open),
            "2 of 4 failed = 50%"
        );
        assert!(matches!(b.try_acquire(), Err(d) if d > Duration::from_secs(59)));
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn stays_closed_below_the_rate() {
        let b = breaker(4, 60_000);
        for i in 0..40 {
            call(&b, i % 4 == 0);
        }
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn half_open_allows_one_trial_then_closes_or_reopens() {
        let b = breaker(1, 30);
        open_and_cool(&b);
        let trial = b.try_acquire().expect("the trial");
        assert!(trial.is_trial());
        assert!(b.try_acquire().is_err(), "one trial at a time");
        assert_eq!(
            trial.record(true),
            Some(CircuitState::Open),
            "a failed trial reopens"
        );
        std::thread::sleep(Duration::from_millis(40));
        let trial = b.try_acquire().expect("a new trial after the cool-down");
        assert_eq!(trial.record(false), Some(CircuitState::Closed));
        assert!(!b.try_acquire().unwrap().is_trial());
    }

    #[test]
    fn a_dropped_trial_frees_the_trial_for_the_next_caller() {
        let b = breaker(1, 30);
        open_and_cool(&b);
        let trial = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        drop(trial);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let next = b.try_acquire().expect("the trial was handed back");
        assert!(next.is_trial());
        assert_eq!(next.record(false), Some(CircuitState::Closed));
    }

    #[test]
    fn outcomes_of_calls_admitted_before_a_state_change_are_ignored() {
        let b = breaker(1, 30);
        let old = b.try_acquire().unwrap(); // admitted while closed
        open_and_cool(&b);
        let trial = b.try_acquire().unwrap();
        assert_eq!(
            old.record(false),
            None,
            "a stale success does not close the breaker"
        );
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert!(
            b.try_acquire().is_err(),
            "and does not end the running trial"
        );
        assert_eq!(trial.record(false), Some(CircuitState::Closed));
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
            call(&b, true);
        }
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            call(&b, true),
            None,
            "the three earlier failures left the window"
        );
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
