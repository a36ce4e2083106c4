//! Per-partner rate limits with the generic cell rate algorithm (GCRA): `per_second` sustained,
//! `burst` at once.
//!
//! Two backends behind one [`RateLimiter`] trait:
//! - [`InProcessLimiter`] (default): governor, one limiter per partner in a `DashMap`.
//! - [`RedisLimiter`]: one atomic Lua script per check, keyed by partner, using the Redis
//!   server's clock, so every gateway replica draws from the same budget.

mod memory;
mod redis_gcra;

use std::time::Duration;

pub use memory::InProcessLimiter;
pub use redis_gcra::RedisLimiter;

/// A partner's allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead; `remaining` more would be allowed right now.
    Allow {
        /// Requests left in the burst.
        remaining: u32,
    },
    /// Over the limit; the next request conforms after `retry_after`.
    Deny {
        /// When to try again.
        retry_after: Duration,
    },
}

/// Why a limit could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// `per_second` or `burst` is zero.
    #[error("invalid quota: per_second and burst must be greater than 0")]
    InvalidQuota,
    /// The Redis backend failed or did not answer in time.
    #[error("redis rate limiter: {0}")]
    Redis(String),
}

/// Checks requests against quotas.
#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request of `key` against `quota`.
    ///
    /// # Errors
    /// The backend is unavailable (the caller decides between failing open and closed).
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, RateLimitError>;

    /// `memory` or `redis`, for logs and metrics.
    fn backend(&self) -> &'static str;
}
