//! Both backends enforce burst and rate; the Redis one is shared across instances.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use medgate_ratelimit::{
    Decision, InProcessLimiter, Quota, RateLimitError, RateLimiter, RedisLimiter,
};

async fn allowed_in_a_row(limiter: &dyn RateLimiter, key: &str, quota: Quota) -> (u32, Duration) {
    for n in 0..1000 {
        if let Decision::Deny { retry_after } = limiter.check(key, quota).await.unwrap() {
            return (n, retry_after);
        }
    }
    panic!("never denied");
}

#[tokio::test]
async fn memory_allows_the_burst_then_denies_until_the_next_token() {
    let l = InProcessLimiter::new();
    let q = Quota {
        per_second: 10,
        burst: 5,
    };
    let (n, retry) = allowed_in_a_row(&l, "acme", q).await;
    assert_eq!(n, 5);
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_millis(100),
        "{retry:?}"
    );
    tokio::time::sleep(retry + Duration::from_millis(5)).await;
    assert!(matches!(
        l.check("acme", q).await.unwrap(),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        l.check("acme", q).await.unwrap(),
        Decision::Deny { .. }
    ));
}

#[tokio::test]
async fn memory_keys_are_independent_and_quota_changes_apply() {
    let l = InProcessLimiter::new();
    let q = Quota {
        per_second: 1,
        burst: 2,
    };
    assert_eq!(allowed_in_a_row(&l, "a", q).await.0, 2);
    assert_eq!(
        allowed_in_a_row(&l, "b", q).await.0,
        2,
        "b has its own budget"
    );
    let bigger = Quota {
        per_second: 1,
        burst: 7,
    };
    assert_eq!(
        allowed_in_a_row(&l, "a", bigger).await.0,
        7,
        "a reload's new quota applies"
    );
    assert_eq!(l.backend(), "memory");
}

#[tokio::test]
async fn memory_reports_remaining_burst() {
    let l = InProcessLimiter::new();
    let q = Quota {
        per_second: 1,
        burst: 3,
    };
    assert_eq!(
        l.check("r", q).await.unwrap(),
        Decision::Allow { remaining: 2 }
    );
    assert_eq!(
        l.check("r", q).await.unwrap(),
        Decision::Allow { remaining: 1 }
    );
}

/// The Redis URL from `MEDGATE_TEST_REDIS_URL`; `None` (skip) only when it is unset.
fn redis_url() -> Option<String> {
    let url = std::env::var("MEDGATE_TEST_REDIS_URL").ok();
    if url.is_none() {
        eprintln!("MEDGATE_TEST_REDIS_URL is unset: skipping the Redis backend test");
    }
    url
}

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "medgate-test:{}:{nanos}:{}:{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[tokio::test]
async fn redis_allows_the_burst_then_denies() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("burst");
    let l = RedisLimiter::connect(&url, &prefix)
        .await
        .expect("MEDGATE_TEST_REDIS_URL is set but Redis is unreachable");
    let q = Quota {
        per_second: 2,
        burst: 4,
    };
    let (n, retry) = allowed_in_a_row(&l, "acme", q).await;
    assert_eq!(n, 4);
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_millis(500),
        "{retry:?}"
    );
    tokio::time::sleep(retry + Duration::from_millis(20)).await;
    assert!(matches!(
        l.check("acme", q).await.unwrap(),
        Decision::Allow { .. }
    ));
    assert_eq!(l.backend(), "redis");
}

#[tokio::test]
async fn redis_replicas_share_one_budget() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("shared");
    let a = RedisLimiter::connect(&url, &prefix)
        .await
        .expect("Redis reachable");
    let b = RedisLimiter::connect(&url, &prefix)
        .await
        .expect("Redis reachable");
    let q = Quota {
        per_second: 1,
        burst: 6,
    };
    let mut allowed = 0;
    for i in 0..12 {
        let replica: &dyn RateLimiter = if i % 2 == 0 { &a } else { &b };
        if matches!(
            replica.check("acme", q).await.unwrap(),
            Decision::Allow { .. }
        ) {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 6, "two replicas together allow one burst, not two");
    assert!(matches!(
        a.check("other", q).await.unwrap(),
        Decision::Allow { remaining: 5 }
    ));
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let started = std::time::Instant::now();
    let result = RedisLimiter::connect("redis://127.0.0.1:1", "x").await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_zero_quota_is_rejected_by_both_backends() {
    let l = InProcessLimiter::new();
    for q in [
        Quota {
            per_second: 0,
            burst: 1,
        },
        Quota {
            per_second: 1,
            burst: 0,
        },
    ] {
        assert!(matches!(
            l.check("z", q).await,
            Err(RateLimitError::InvalidQuota)
        ));
    }
    let Some(url) = redis_url() else { return };
    let r = RedisLimiter::connect(&url, &unique("zero"))
        .await
        .expect("Redis reachable");
    assert!(matches!(
        r.check(
            "z",
            Quota {
                per_second: 0,
                burst: 3
            }
        )
        .await,
        Err(RateLimitError::InvalidQuota)
    ));
}

#[tokio::test]
async fn redis_keys_are_independent_and_retry_after_is_at_most_one_interval() {
    let Some(url) = redis_url() else { return };
    let l = RedisLimiter::connect(&url, &unique("keys"))
        .await
        .expect("Redis reachable");
    let q = Quota {
        per_second: 4,
        burst: 3,
    };
    let (n, retry) = allowed_in_a_row(&l, "a", q).await;
    assert_eq!(n, 3);
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_millis(250),
        "{retry:?}"
    );
    assert_eq!(
        l.check("b", q).await.unwrap(),
        Decision::Allow { remaining: 2 },
        "b has its own budget"
    );
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_with_a_redis_error() {
    let started = std::time::Instant::now();
    let result = RedisLimiter::connect("redis://127.0.0.1:1", "x").await;
    assert!(matches!(result, Err(RateLimitError::Redis(_))));
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        RedisLimiter::connect("not a url", "x").await,
        Err(RateLimitError::Redis(_))
    ));
}
