//! The in-process backend: governor's GCRA.

use std::num::NonZeroU32;
use std::sync::Arc;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};

use crate::{Decision, Quota, RateLimitError, RateLimiter};

type Limiter =
    governor::RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One GCRA limiter per key, in this process.
#[derive(Default)]
pub struct InProcessLimiter {
    limiters: DashMap<String, (Quota, Arc<Limiter>)>,
    clock: DefaultClock,
}

impl InProcessLimiter {
    /// An empty limiter set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The limiter of `key`, replaced when its quota changed (a config reload).
    fn limiter(&self, key: &str, quota: Quota) -> Result<Arc<Limiter>, RateLimitError> {
        if let Some(entry) = self.limiters.get(key) {
            if entry.0 == quota {
                return Ok(entry.1.clone());
            }
        }
        let rate = NonZeroU32::new(quota.per_second).ok_or(RateLimitError::InvalidQuota)?;
        let burst = NonZeroU32::new(quota.burst).ok_or(RateLimitError::InvalidQuota)?;
        let gcra = governor::Quota::per_second(rate).allow_burst(burst);
        let build = || {
            Arc::new(
                governor::RateLimiter::direct_with_clock(gcra, self.clock.clone())
                    .with_middleware::<StateInformationMiddleware>(),
            )
        };
        // Compare and replace under the shard's lock, so concurrent requests that see a
        // reloaded quota install one fresh limiter rather than each granting a new burst.
        let mut slot = self
            .limiters
            .entry(key.to_owned())
            .or_insert_with(|| (quota, build()));
        if slot.0 != quota {
            *slot = (quota, build());
        }
        Ok(Arc::clone(&slot.1))
    }
}

#[async_trait::async_trait]
impl RateLimiter for InProcessLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, RateLimitError> {
        let limiter = self.limiter(key, quota)?;
        Ok(match limiter.check() {
            Ok(state) => Decision::Allow {
                remaining: state.remaining_burst_capacity(),
            },
            Err(not_until) => Decision::Deny {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        })
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
