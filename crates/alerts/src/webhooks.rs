//! [`Webhooks`]: the configured receivers with their secrets, and Standard Webhooks
//! signing.
//!
//! Signing follows <https://www.standardwebhooks.com/>: the secret is `whsec_` + base64 of
//! its bytes; the signed content is `{webhook-id}.{webhook-timestamp}.{payload}` with the
//! payload's exact bytes; the `webhook-signature` header is `v1,` + base64 of its
//! HMAC-SHA256.
//!
//! Secrets are read from their environment variable at build time and live only in
//! [`WebhookSecret`], whose `Debug` prints `<redacted>`; no error message quotes one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use medgate_core::ConfigIssue;
use sha2::Sha256;

use crate::backoff::Backoff;
use crate::config::{check_bounds, label, read_entry, valid_name, WebhookConfig, WEBHOOK_BOUNDS};

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Fewest and most bytes a secret may decode to (the Standard Webhooks range).
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A webhook's signing key (the decoded bytes of `whsec_<base64>`).
#[derive(Clone)]
pub struct WebhookSecret(Arc<[u8]>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    /// Reads `whsec_<base64>` (standard alphabet, padded) of 24 to 64 bytes.
    ///
    /// # Errors
    /// What is wrong with it, never quoting it.
    pub fn parse(text: &str) -> Result<WebhookSecret, String> {
        let Some(encoded) = text.trim().strip_prefix(SECRET_PREFIX) else {
            return Err(format!("must start with `{SECRET_PREFIX}`"));
        };
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| format!("is not `{SECRET_PREFIX}` followed by standard base64"))?;
        if !SECRET_BYTES.contains(&bytes.len()) {
            return Err(format!(
                "must decode to {} to {} bytes (got {})",
                SECRET_BYTES.start(),
                SECRET_BYTES.end(),
                bytes.len()
            ));
        }
        Ok(WebhookSecret(bytes.into()))
    }

    /// The `webhook-signature` header value for one message: `v1,<base64 HMAC-SHA256>` of
    /// `{id}.{timestamp}.{payload}`.
    pub fn sign(&self, id: &str, timestamp: i64, payload: &[u8]) -> String {
        // Any key length is valid for HMAC; the fallback is unreachable.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// One configured receiver, ready to call.
#[derive(Clone)]
pub struct Webhook {
    /// Its name.
    pub name: String,
    /// Where alerts are POSTed.
    pub url: url::Url,
    /// Its signing key.
    pub secret: WebhookSecret,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// Attempts in all before the alert is dead-lettered.
    pub attempts: u32,
    /// Back-off between attempts.
    pub backoff: Backoff,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token in its query.
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Every configured webhook by name. Cheap to share (`Arc` it); swap a new one in on reload.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    by_name: HashMap<String, Arc<Webhook>>,
}

impl Webhooks {
    /// Reads and checks every `[[webhooks]]` table and reads each secret through `env`
    /// (pass `|var| std::env::var(var).ok()`).
    ///
    /// # Errors
    /// Every problem found, keyed like `webhooks[0] (safety).secret_env`.
    pub fn build(
        tables: &[toml::Table],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Webhooks, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut by_name = HashMap::new();
        for (i, table) in tables.iter().enumerate() {
            let label = label("webhooks", i, table);
            let config: WebhookConfig = match read_entry(&label, table) {
                Ok(c) => c,
                Err(issue) => {
                    issues.push(issue);
                    continue;
                }
            };
            let before = issues.len();
            let hook = check_webhook(&label, &config, &env, &mut issues);
            if by_name.contains_key(&config.name) {
                issues.push(ConfigIssue::new(
                    format!("{label}.name"),
                    format!("duplicate webhook name `{}`", config.name),
                ));
            }
            if let (Some(hook), true) = (hook, issues.len() == before) {
                by_name.insert(config.name.clone(), Arc::new(hook));
            }
        }
        if issues.is_empty() {
            Ok(Webhooks { by_name })
        } else {
            Err(issues)
        }
    }

    /// The names the tables declare (entries with a string `name`), for checking rules'
    /// `notify` even when a webhook entry has other problems.
    pub fn names(tables: &[toml::Table]) -> Vec<String> {
        tables
            .iter()
            .filter_map(|t| t.get("name").and_then(toml::Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// The webhook named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Webhook>> {
        self.by_name.get(name)
    }

    /// How many are configured.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// None configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The longest attempt timeout (delivery leases must outlast it).
    pub fn max_timeout(&self) -> Duration {
        self.by_name
            .values()
            .map(|w| w.timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

fn check_webhook(
    label: &str,
    c: &WebhookConfig,
    env: &impl Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Webhook> {
    if !valid_name(&c.name) {
        issues.push(ConfigIssue::new(
            format!("{label}.name"),
            "must be 1-64 of a-z, 0-9, '-', '_'",
        ));
    }
    check_bounds(
        label,
        WEBHOOK_BOUNDS,
        &[
            Some(c.timeout_ms),
            Some(u64::from(c.attempts)),
            Some(c.base_delay_ms),
            Some(c.max_delay_ms),
        ],
        issues,
    );
    if c.base_delay_ms > c.max_delay_ms {
        issues.push(ConfigIssue::new(
            format!("{label}.base_delay_ms"),
            "must not exceed max_delay_ms",
        ));
    }
    let url = check_url(label, &c.url, issues);
    let secret = read_secret(label, &c.secret_env, env, issues);
    Some(Webhook {
        name: c.name.clone(),
        url: url?,
        secret: secret?,
        timeout: Duration::from_millis(c.timeout_ms),
        attempts: c.attempts,
        backoff: Backoff::new(
            Duration::from_millis(c.base_delay_ms),
            Duration::from_millis(c.max_delay_ms),
        ),
    })
}

fn check_url(label: &str, text: &str, issues: &mut Vec<ConfigIssue>) -> Option<url::Url> {
    let key = format!("{label}.url");
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if u.password().is_some() || !u.username().is_empty() {
                issues.push(ConfigIssue::new(
                    key,
                    "must not carry credentials (the payload is signed with secret_env instead)",
                ));
                return None;
            }
            Some(u)
        }
        Ok(u) => {
            issues.push(ConfigIssue::new(
                key,
                format!(
                    "must be an http or https URL with a host, not `{}:`",
                    u.scheme()
                ),
            ));
            None
        }
        Err(e) => {
            issues.push(ConfigIssue::new(key, format!("is not a valid URL: {e}")));
            None
        }
    }
}

fn read_secret(
    label: &str,
    var: &str,
    env: &impl Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<WebhookSecret> {
    let key = format!("{label}.secret_env");
    if var.is_empty() {
        issues.push(ConfigIssue::new(key, "must name an environment variable"));
        return None;
    }
    let Some(text) = env(var) else {
        issues.push(ConfigIssue::new(
            key,
            format!("the environment variable `{var}` is not set (it must hold the webhook's `{SECRET_PREFIX}<base64>` secret)"),
        ));
        return None;
    };
    match WebhookSecret::parse(&text) {
        Ok(s) => Some(s),
        Err(why) => {
            issues.push(ConfigIssue::new(
                key,
                format!("the secret in `{var}` {why}"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's reference implementations.
    #[test]
    fn signs_the_reference_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let payload = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, payload),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_err()
            .contains("whsec_"));
        assert!(WebhookSecret::parse("whsec_!!!").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=")
            .unwrap_err()
            .contains("got 5"));
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{s:?}"), "WebhookSecret(<redacted>)");
    }
}
