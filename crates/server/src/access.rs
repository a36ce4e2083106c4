//! Partner authentication and permissions.
//!
//! API keys arrive as `Authorization: Bearer <key>`; only their SHA-256 is configured and
//! compared, and neither the key nor its hash is ever logged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::http::HeaderValue;
use medgate_core::config::PartnerConfig;
use medgate_core::Config;
use medgate_ratelimit::Quota;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::problem::ApiError;

/// What a partner may use.
#[derive(Debug)]
enum Allow {
    All,
    Only(HashSet<String>),
}

impl Allow {
    fn from_list(list: &[String]) -> Allow {
        if list.iter().any(|s| s == "*") {
            Allow::All
        } else {
            Allow::Only(list.iter().cloned().collect())
        }
    }

    fn permits(&self, name: &str) -> bool {
        match self {
            Allow::All => true,
            Allow::Only(set) => set.contains(name),
        }
    }
}

/// An authenticated caller.
#[derive(Debug)]
pub struct Partner {
    /// The configured name.
    pub name: String,
    sources: Allow,
    formats: Allow,
    ingest: Allow,
    /// May start export jobs.
    pub export_jobs: bool,
    /// The de-identification profile forced on everything this partner reads.
    pub profile: Option<String>,
    /// May list alerts.
    pub read_alerts: bool,
    /// Its rate limit; `None` for the anonymous demo caller.
    pub quota: Option<Quota>,
    /// Its concurrency cap.
    pub in_flight: Arc<Semaphore>,
}

impl Partner {
    fn from_config(p: &PartnerConfig) -> Partner {
        Partner {
            name: p.name.clone(),
            sources: Allow::from_list(&p.sources),
            formats: Allow::from_list(&p.formats),
            ingest: Allow::from_list(&p.ingest),
            export_jobs: p.export_jobs,
            profile: p.profile.clone(),
            read_alerts: p.read_alerts,
            quota: Some(Quota {
                per_second: p.rate_per_second,
                burst: p.burst,
            }),
            in_flight: Arc::new(Semaphore::new(p.max_concurrency)),
        }
    }

    fn unrestricted(name: &str, quota: Option<Quota>) -> Partner {
        Partner {
            name: name.to_owned(),
            sources: Allow::All,
            formats: Allow::All,
            ingest: Allow::All,
            export_jobs: true,
            profile: None,
            read_alerts: true,
            quota,
            in_flight: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
        }
    }

    /// 403 unless the partner may read `source`.
    ///
    /// # Errors
    /// The forbidden problem.
    pub fn check_source(&self, source: &str) -> Result<(), ApiError> {
        if self.sources.permits(source) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "partner {} may not read source {source}",
                self.name
            )))
        }
    }

    /// 403 unless the partner may push to `source` (its `ingest` grant).
    ///
    /// # Errors
    /// The forbidden problem.
    pub fn check_ingest(&self, source: &str) -> Result<(), ApiError> {
        if self.ingest.permits(source) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "partner {} may not push to source {source}",
                self.name
            )))
        }
    }

    /// 403 unless the partner may download `format`.
    ///
    /// # Errors
    /// The forbidden problem.
    pub fn check_format(&self, format: &str) -> Result<(), ApiError> {
        if self.formats.permits(format) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "partner {} may not download format {format}",
                self.name
            )))
        }
    }
}

/// The partners of one config.
pub struct Access {
    required: bool,
    by_key: HashMap<String, Arc<Partner>>,
    anonymous: Arc<Partner>,
}

impl Access {
    /// Builds the partner table (`[demo].api_key` adds an unrestricted `demo` partner).
    pub fn from_config(config: &Config) -> Access {
        let mut by_key: HashMap<String, Arc<Partner>> = config
            .partners
            .iter()
            .map(|p| {
                (
                    p.key_sha256.to_ascii_lowercase(),
                    Arc::new(Partner::from_config(p)),
                )
            })
            .collect();
        if let Some(key) = config.demo.as_ref().and_then(|d| d.api_key.as_deref()) {
            let quota = Quota {
                per_second: 100,
                burst: 20,
            };
            by_key.insert(
                sha256_hex(key),
                Arc::new(Partner::unrestricted("demo", Some(quota))),
            );
        }
        Access {
            required: config.auth.required,
            by_key,
            anonymous: Arc::new(Partner::unrestricted("anonymous", None)),
        }
    }

    /// Whether a key is required.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The partner presenting `authorization`.
    ///
    /// # Errors
    /// 401 when the header is missing, malformed or names no partner.
    pub fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Arc<Partner>, ApiError> {
        if !self.required {
            return Ok(self.anonymous.clone());
        }
        let header = authorization.ok_or(ApiError::Unauthorized(
            "an API key is required: send Authorization: Bearer <key>",
        ))?;
        let key = header
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must be: Bearer <key>",
            ))?;
        self.by_key
            .get(&sha256_hex(key))
            .cloned()
            .ok_or(ApiError::Unauthorized("unknown API key"))
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110 §11.1), any amount of spaces may separate it from the token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(rest.trim()).filter(|t| !t.is_empty() && !t.contains(' '))
}

/// Compares two secrets in time independent of where they differ (hashes first, so the
/// lengths leak nothing either).
pub fn same_secret(expected: &str, presented: &str) -> bool {
    let (a, b) = (
        Sha256::digest(expected.as_bytes()),
        Sha256::digest(presented.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Lowercase hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for ok in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "BeArEr   abc ",
            " Bearer abc",
        ] {
            assert_eq!(bearer_token(ok), Some("abc"), "{ok:?}");
        }
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearerabc",
            "Bearer a b",
            "abc",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sha256_matches_sha256sum() {
        // printf %s medgate-demo | sha256sum
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
