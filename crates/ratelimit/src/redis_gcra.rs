//! The Redis backend: GCRA in one Lua script, so replicas share one budget atomically.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{Decision, Quota, RateLimitError, RateLimiter};

/// How long a check may take before the request is decided without Redis.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting may take at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// GCRA over the theoretical arrival time (TAT), in microseconds of the Redis server's clock
/// (so every replica uses the same clock). KEYS[1] = key; ARGV[1] = emission interval T (µs);
/// ARGV[2] = burst B. A request is allowed when its new TAT is at most T*B ahead of now.
/// Returns {allowed (0|1), retry_after_us, remaining}. Numbers are stored with `%.0f` because
/// Lua's default number formatting would round a microsecond timestamp to 14 digits.
const GCRA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, allow_at - now, 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0, math.floor((now + tolerance - new_tat) / interval)}
";

/// Rate limits shared by every replica that points at the same Redis.
pub struct RedisLimiter {
    connection: ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl RedisLimiter {
    /// Connects to `url` and checks the server answers; keys are `<prefix>:<key>`.
    ///
    /// # Errors
    /// The URL is invalid or the server does not answer within 2 s.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisLimiter, RateLimitError> {
        let client = redis::Client::open(url).map_err(redis_error)?;
        let manager = ConnectionManager::new_with_config(client, manager_config());
        let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, manager)
            .await
            .map_err(|_| RateLimitError::Redis(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(redis_error)?;
        let ping = redis::cmd("PING");
        let pong =
            tokio::time::timeout(CONNECT_TIMEOUT, ping.query_async::<String>(&mut connection))
                .await
                .map_err(|_| {
                    RateLimitError::Redis(format!("PING not answered within {CONNECT_TIMEOUT:?}"))
                })?
                .map_err(redis_error)?;
        if pong != "PONG" {
            return Err(RateLimitError::Redis(format!(
                "unexpected PING answer {pong:?}"
            )));
        }
        Ok(RedisLimiter {
            connection,
            script: redis::Script::new(GCRA),
            prefix: prefix.to_owned(),
        })
    }
}

/// Reconnects quickly and a few times only: a check waits at most [`CALL_TIMEOUT`] anyway,
/// and an unreachable server at start-up should fail fast rather than back off for seconds.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CALL_TIMEOUT))
}

fn redis_error(e: redis::RedisError) -> RateLimitError {
    RateLimitError::Redis(e.to_string())
}

#[async_trait::async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<Decision, RateLimitError> {
        if quota.per_second == 0 || quota.burst == 0 {
            return Err(RateLimitError::InvalidQuota);
        }
        let interval_us = (1_000_000 / u64::from(quota.per_second)).max(1);
        let mut connection = self.connection.clone();
        let mut invocation = self.script.key(format!("{}:{key}", self.prefix));
        invocation.arg(interval_us).arg(quota.burst);
        let reply: Vec<i64> =
            tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| RateLimitError::Redis(format!("no answer within {CALL_TIMEOUT:?}")))?
                .map_err(redis_error)?;
        match reply.as_slice() {
            [1, _, remaining] => Ok(Decision::Allow {
                remaining: u32::try_from(*remaining).unwrap_or(0),
            }),
            [0, retry_us, _] => Ok(Decision::Deny {
                retry_after: Duration::from_micros(u64::try_from(*retry_us).unwrap_or(0).max(1)),
            }),
            other => Err(RateLimitError::Redis(format!(
                "unexpected script reply {other:?}"
            ))),
        }
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
