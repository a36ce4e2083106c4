//! The typed `[[webhooks]]` and `[[rules]]` entries and their key-by-key checks.
//!
//! Core keeps both lists as raw TOML tables (`config.webhooks`, `config.rules`); this module
//! reads each table into its struct (unknown keys refused) and checks names and ranges.
//! [`Webhooks::build`](crate::Webhooks::build) and [`Rules::build`](crate::Rules::build)
//! turn them into what the workers use; every problem is a [`ConfigIssue`] keyed like
//! `rules[0] (tachycardia).above`, so `medgate check` names it.
//!
//! Ranges (inclusive), enforced by validation:
//!
//! | key | range | default |
//! |---|---|---|
//! | `webhooks[].timeout_ms` | 1..=60000 | 5000 |
//! | `webhooks[].attempts` | 1..=50 | 10 |
//! | `webhooks[].base_delay_ms` | 0..=3600000 | 1000 |
//! | `webhooks[].max_delay_ms` | 0..=86400000 | 600000 |
//! | `rules[].count` | 2..=10000 | (none: not a window rule) |
//! | `rules[].within_s` | 1..=31622400 (366 days) | (none) |

use medgate_core::bounds::Bound;
use medgate_core::ConfigIssue;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// One `[[webhooks]]` entry: where alerts are POSTed, signed the Standard Webhooks way.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Unique name that rules' `notify` and `[ingest] sae_notify` use: 1–64 of `a-z`, `0-9`,
    /// `-`, `_`.
    pub name: String,
    /// The `http` or `https` URL alerts are POSTed to (a redirect is a failed attempt).
    pub url: String,
    /// Environment variable holding the Standard Webhooks secret, `whsec_` followed by the
    /// base64 of 24 to 64 random bytes. Read when the config is loaded; never logged.
    pub secret_env: String,
    /// Time allowed for one attempt (connect, request, response headers), in ms
    /// (1..=60000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts in all, the first included (1..=50); after the last failed one the alert is
    /// dead-lettered (state `dead` in `GET /v1/alerts`).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Back-off before the second attempt, in ms (0..=3600000); doubles per attempt, with
    /// full jitter (a uniformly random wait between 0 and the doubled value).
    #[serde(default = "default_base_delay_ms")]
    pub base_delay_ms: u64,
    /// Longest back-off, in ms (0..=86400000); at least `base_delay_ms`.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token in its query: name and variable only.
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("secret_env", &self.secret_env)
            .field("timeout_ms", &self.timeout_ms)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

fn default_timeout_ms() -> u64 {
    5_000
}
fn default_attempts() -> u32 {
    10
}
fn default_base_delay_ms() -> u64 {
    1_000
}
fn default_max_delay_ms() -> u64 {
    600_000
}

/// Ranges of a `[[webhooks]]` entry's numeric keys.
pub const WEBHOOK_BOUNDS: &[Bound] = &[
    Bound {
        key: "timeout_ms",
        min: 1,
        max: 60_000,
    },
    Bound {
        key: "attempts",
        min: 1,
        max: 50,
    },
    Bound {
        key: "base_delay_ms",
        min: 0,
        max: 3_600_000,
    },
    Bound {
        key: "max_delay_ms",
        min: 0,
        max: 86_400_000,
    },
];

/// Ranges of a `[[rules]]` entry's numeric keys.
pub const RULE_BOUNDS: &[Bound] = &[
    Bound {
        key: "count",
        min: 2,
        max: 10_000,
    },
    Bound {
        key: "within_s",
        min: 1,
        max: 31_622_400,
    },
];

/// One `[[rules]]` entry: an early-warning rule on one `store` source's reports.
///
/// Exactly one test (`above`, `below` or `equals`); with `count` and `within_s` (always
/// together) it becomes a window rule: it fires when a report brings a reading that passes
/// the test and the patient has at least `count` such readings (this one included) whose
/// effective time lies in the `within_s` seconds up to this reading's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name, in alerts and metrics: 1–64 of `a-z`, `0-9`, `-`, `_`; `sae` is
    /// reserved for serious adverse events.
    pub name: String,
    /// The `store` source whose reports the rule watches.
    pub source: String,
    /// The code watched, as a FHIR token: `8867-4` (any system) or
    /// `http://loinc.org|8867-4`. Matched on an observation's codings and on its
    /// components' (a blood-pressure panel's systolic `8480-6`).
    pub code: String,
    /// Fires for a number strictly greater than this: a TOML integer, a TOML float (exact
    /// up to 15 significant digits) or a string holding a decimal (`"120.5"`, any number of
    /// digits). Compared exactly, as decimals.
    pub above: Option<toml::Value>,
    /// Fires for a number strictly less than this (written as `above`).
    pub below: Option<toml::Value>,
    /// Fires for an answer equal to this: a string (a coded answer's code or text, or a
    /// text answer), a boolean, or a number (equal in value).
    pub equals: Option<toml::Value>,
    /// Window rules: how many passing readings within `within_s` fire the rule (2..=10000).
    pub count: Option<u32>,
    /// Window rules: the window's length in seconds (1..=31622400).
    pub within_s: Option<u64>,
    /// Names of the `[[webhooks]]` to notify (at least one).
    pub notify: Vec<String>,
    /// Text for the people who receive the alert (`"Heart rate above 120/min"`); sent in
    /// the payload as `description`.
    #[serde(default)]
    pub description: Option<String>,
}

/// The label of entry `index` of `list`: `rules[0] (tachycardia)`, or `rules[0]` when it has
/// no readable name.
pub(crate) fn label(list: &str, index: usize, table: &toml::Table) -> String {
    match table.get("name").and_then(toml::Value::as_str) {
        Some(name) => format!("{list}[{index}] ({name})"),
        None => format!("{list}[{index}]"),
    }
}

/// Reads one table into `T`; serde's message (naming the key) on failure.
pub(crate) fn read_entry<T: DeserializeOwned>(
    label: &str,
    table: &toml::Table,
) -> Result<T, ConfigIssue> {
    T::deserialize(toml::Value::Table(table.clone()))
        .map_err(|e| ConfigIssue::new(label, one_line(&e.to_string())))
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `name` is 1–64 of `a-z`, `0-9`, `-`, `_`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Checks `values` (in the order of `bounds`) under `label`.
pub(crate) fn check_bounds(
    label: &str,
    bounds: &[Bound],
    values: &[Option<u64>],
    issues: &mut Vec<ConfigIssue>,
) {
    for (bound, value) in bounds.iter().zip(values) {
        let Some(value) = *value else { continue };
        if value < bound.min || value > bound.max {
            issues.push(ConfigIssue::new(
                format!("{label}.{}", bound.key),
                format!("must be in {}..={} (got {value})", bound.min, bound.max),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("tachycardia"));
        assert!(valid_name("bp-high_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("Tachy"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"a".repeat(65)));
    }

    #[test]
    fn labels_name_the_entry() {
        let t: toml::Table = toml::from_str("name = \"x\"").unwrap();
        assert_eq!(label("rules", 2, &t), "rules[2] (x)");
        assert_eq!(label("rules", 2, &toml::Table::new()), "rules[2]");
    }
}
