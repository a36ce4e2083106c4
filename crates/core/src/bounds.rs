//! The documented range of every numeric config key, enforced by validation.
//!
//! `medgate check` and `serve` run the same checks, so a value that would make start-up or a
//! reload fail (a semaphore larger than tokio allows, a timer past the end of time) is refused
//! up front with its key and range, never discovered as a panic. The ranges are also the
//! documentation: README's configuration section lists this table.

use crate::config::{Config, ConfigIssue, SourceCommon};

/// One numeric key's inclusive range.
pub struct Bound {
    /// Key relative to its table (`timeout_ms`, `retry.attempts`).
    pub key: &'static str,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value.
    pub max: u64,
}

const fn b(key: &'static str, min: u64, max: u64) -> Bound {
    Bound { key, min, max }
}

const HOUR_MS: u64 = 3_600_000;

/// `[server]` keys.
pub const SERVER: &[Bound] = &[
    b("max_export_patients", 1, 1_000_000),
    b("export_concurrency", 1, 1_024),
    b("request_timeout_ms", 1, HOUR_MS),
    b("max_request_timeout_ms", 1, HOUR_MS),
    b("shutdown_grace_ms", 0, 600_000),
    b("header_read_timeout_ms", 100, 600_000),
    b("idle_timeout_ms", 100, HOUR_MS),
    b("max_connections", 1, 1_000_000),
    b("max_concurrent_exports", 1, 10_000),
    b("max_inflight_body_bytes", 1, 1 << 40),
];

/// Keys of every `[[sources]]` entry.
pub const SOURCE: &[Bound] = &[
    b("timeout_ms", 1, 600_000),
    b("deadline_ms", 1, HOUR_MS),
    b("max_body_bytes", 1, 1 << 30),
    b("max_concurrency", 1, 65_536),
    b("retry.attempts", 1, 10),
    b("retry.base_delay_ms", 0, 60_000),
    b("retry.max_delay_ms", 0, 600_000),
    b("breaker.window_ms", 100, HOUR_MS),
    b("breaker.min_calls", 1, 1_000_000),
    b("breaker.open_ms", 100, HOUR_MS),
];

/// Keys of every `[[partners]]` entry.
pub const PARTNER: &[Bound] = &[
    b("rate_per_second", 1, 1_000_000),
    b("burst", 1, 1_000_000),
    b("max_concurrency", 1, 65_536),
];

/// `[demo]` keys.
pub const DEMO: &[Bound] = &[b("patients", 1, 1_000_000), b("observations", 0, 100_000)];

/// `[ingest]` keys.
pub const INGEST: &[Bound] = &[
    b("workers", 1, 256),
    b("queue_capacity", 1, 100_000_000),
    b("high_water", 1, 100_000_000),
    b("max_body_bytes", 1_024, 64 << 20),
];

/// `[exports]` keys.
pub const EXPORTS: &[Bound] = &[
    b("expire_after_s", 60, 90 * 86_400),
    b("max_file_bytes", 1 << 20, 1 << 40),
    b("concurrency", 1, 64),
];

/// `[audit]` keys.
pub const AUDIT: &[Bound] = &[
    b("checkpoint_every_entries", 1, 1_000_000),
    b("checkpoint_interval_ms", 1_000, 86_400_000),
    b("max_rejected_patient_ids", 0, 10_000),
];

/// Checks `values` (in the order of `bounds`) under `label`.
fn check(label: &str, bounds: &[Bound], values: &[u64], issues: &mut Vec<ConfigIssue>) {
    for (bound, &value) in bounds.iter().zip(values) {
        if value < bound.min || value > bound.max {
            let key = if label.is_empty() {
                bound.key.to_owned()
            } else {
                format!("{label}.{}", bound.key)
            };
            issues.push(ConfigIssue::new(
                key,
                format!("must be in {}..={} (got {value})", bound.min, bound.max),
            ));
        }
    }
}

fn n(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The ranges of a source's common keys.
pub(crate) fn check_source(label: &str, c: &SourceCommon, issues: &mut Vec<ConfigIssue>) {
    let values = [
        c.timeout_ms,
        c.deadline_ms,
        c.max_body_bytes,
        n(c.max_concurrency),
        u64::from(c.retry.attempts),
        c.retry.base_delay_ms,
        c.retry.max_delay_ms,
        c.breaker.window_ms,
        u64::from(c.breaker.min_calls),
        c.breaker.open_ms,
    ];
    check(label, SOURCE, &values, issues);
}

/// The ranges of `[server]`, `[[partners]]`, `[demo]` and `[audit]`.
pub(crate) fn check_config(config: &Config, issues: &mut Vec<ConfigIssue>) {
    let s = &config.server;
    let server = [
        n(s.max_export_patients),
        n(s.export_concurrency),
        s.request_timeout_ms,
        s.max_request_timeout_ms,
        s.shutdown_grace_ms,
        s.header_read_timeout_ms,
        s.idle_timeout_ms,
        n(s.max_connections),
        n(s.max_concurrent_exports),
        s.max_inflight_body_bytes,
    ];
    check("server", SERVER, &server, issues);
    for (i, p) in config.partners.iter().enumerate() {
        let values = [
            u64::from(p.rate_per_second),
            u64::from(p.burst),
            n(p.max_concurrency),
        ];
        check(
            &format!("partners[{i}] ({})", p.name),
            PARTNER,
            &values,
            issues,
        );
    }
    if let Some(d) = &config.demo {
        check(
            "demo",
            DEMO,
            &[u64::from(d.patients), u64::from(d.observations)],
            issues,
        );
    }
    let a = &config.audit;
    let audit = [
        a.checkpoint_every_entries,
        a.checkpoint_interval_ms,
        n(a.max_rejected_patient_ids),
    ];
    check("audit", AUDIT, &audit, issues);
    let i = &config.ingest;
    let ingest = [
        n(i.workers),
        i.queue_capacity,
        i.high_water,
        i.max_body_bytes,
    ];
    check("ingest", INGEST, &ingest, issues);
    if i.high_water > i.queue_capacity {
        issues.push(ConfigIssue::new(
            "ingest.high_water",
            "must not exceed ingest.queue_capacity",
        ));
    }
    let e = &config.exports;
    check(
        "exports",
        EXPORTS,
        &[e.expire_after_s, e.max_file_bytes, n(e.concurrency)],
        issues,
    );
}

/// Every bounded key with its range, as `table.key: min..=max` lines (for docs and tests).
pub fn table() -> Vec<String> {
    let tables: [(&str, &[Bound]); 7] = [
        ("server", SERVER),
        ("sources[]", SOURCE),
        ("partners[]", PARTNER),
        ("demo", DEMO),
        ("audit", AUDIT),
        ("ingest", INGEST),
        ("exports", EXPORTS),
    ];
    tables
        .iter()
        .flat_map(|(t, bounds)| {
            bounds
                .iter()
                .map(move |b| format!("{t}.{}: {}..={}", b.key, b.min, b.max))
        })
        .collect()
}
