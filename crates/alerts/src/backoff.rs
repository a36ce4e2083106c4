//! [`Backoff`]: exponential back-off with full jitter.
//!
//! Full jitter (a uniformly random wait between zero and the exponential bound) spreads the
//! retries of many failed jobs or deliveries, so a receiver that comes back is not hit by
//! all of them at once (AWS architecture blog, "Exponential Backoff And Jitter").

use std::time::Duration;

use rand::Rng as _;

/// Waits of `base · 2^(n-1)`, capped at `max`, drawn uniformly from `[0, bound]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The bound after the first failed attempt.
    pub base: Duration,
    /// The largest bound.
    pub max: Duration,
}

impl Backoff {
    /// A back-off starting at `base`, never above `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max }
    }

    /// The upper bound of the wait after failed attempt `attempt` (1 for the first).
    pub fn bound(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        let base = self.base.as_nanos();
        let max = self.max.as_nanos();
        if base == 0 {
            return Duration::ZERO;
        }
        let bound = if doublings >= base.leading_zeros() {
            max
        } else {
            (base << doublings).min(max)
        };
        if bound >= max {
            self.max
        } else {
            Duration::from_nanos(u64::try_from(bound).unwrap_or(u64::MAX))
        }
    }

    /// A random wait after failed attempt `attempt`: uniform in `[0, bound(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let bound = self.bound(attempt);
        let micros = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::rng().random_range(0..=micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let bounds: Vec<u128> = (1..=6).map(|n| b.bound(n).as_millis()).collect();
        assert_eq!(bounds, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.bound(0), Duration::from_millis(100));
        assert_eq!(b.bound(u32::MAX), Duration::from_secs(1), "no overflow");
    }

    #[test]
    fn delays_stay_within_their_bound_and_vary() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(400)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "full jitter spreads the waits");
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::ZERO).delay(5),
            Duration::ZERO
        );
    }
}
