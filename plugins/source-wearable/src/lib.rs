//! Wearable JSON source, kind `wearable-json`.
//!
//! Reads one patient's JSON from a wearable cloud (through the policy-bound
//! [`Upstream`](medgate_core::Upstream) the server provides) and normalizes it into
//! [`Observation`](medgate_core::Observation)s. Two payload formats:
//!
//! - `format = "openmhealth"`: Open mHealth data points (heart rate, steps, blood pressure,
//!   body weight, temperature, SpO2, ...) mapped to LOINC and UCUM; see the policy below.
//! - `format = "mapping"`: any JSON whose records and fields are described in the config by
//!   RFC 6901 JSON Pointers (e.g. Fitbit Web API responses).
//!
//! Numbers keep their written text throughout (`98.60` stays `98.60`): the payload is read
//! through `serde_json`'s `RawValue`, never through `f64`. Nesting depth is bounded
//! (`max_depth`, default 64) before parsing, and every shape error names the JSON Pointer of
//! the offending node. Error messages never contain payload content or patient ids.
//!
//! # Open mHealth policy
//! Unknown schemas (and non-`omh` namespaces) are skipped; a known schema with a missing or
//! non-numeric measure fails the payload; unknown units are passed through verbatim; a
//! missing time frame gives no `effective`.

mod config;
mod json;
mod mapping;
mod omh;
mod parse;
mod source;

pub use config::{Constants, Fields, Format, Mapping, WearableConfig};
pub use parse::{
    parse, ParseContext, ParseError, PayloadFormat, DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT,
};
pub use source::{WearableSource, BLOCKING_PARSE_THRESHOLD};

/// The source kind this crate registers.
pub const KIND: &str = "wearable-json";

/// Registers the `wearable-json` source kind.
pub fn register(registry: &mut medgate_core::Registry) {
    registry.add_source_kind::<WearableConfig>(KIND);
}
