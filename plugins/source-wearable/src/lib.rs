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
//! Every record becomes a typed [`Observation`](medgate_core::Observation): numbers keep
//! their written digits ([`Decimal`](medgate_core::Decimal), read from the payload's text,
//! never through `f64`; numbers written as strings in any lexical form are read too), times
//! keep their precision and offset ([`DateTime`](medgate_core::DateTime); a time without an
//! offset stays local for the pipeline's configured zone), units are mapped to UCUM through
//! one table (`units`), codes to LOINC where one fits.
//!
//! # Data quality
//! One bad value must not cost the payload. Only a body that is not JSON, nests deeper than
//! `max_depth` (default 64; the upstream's `max_body_bytes` bounds its size), or whose
//! envelope has the wrong shape is an error ([`ParseError`]). A value that cannot be read
//! gives an observation without a value, with `dataAbsentReason = error` and a
//! [`Warning`](medgate_core::Warning) naming the JSON Pointer of the node; other problems
//! (an unknown unit, an unreadable time) are warnings beside a value. Warnings and errors
//! describe the kind of node found, never its content, and never a patient id. Open mHealth
//! points of unknown schemas are skipped.
//!
//! # Layout
//! [`parse`](crate::parse()) is the payload parser (usable without a source: benches,
//! tools); `omh` and `mapping` are the two formats; `json` is a borrowed read-only view over
//! `serde_json`'s `RawValue`; `time` reads time frames and adds durations with jiff;
//! `source` is the [`DataSource`](medgate_core::DataSource) (bodies of [`STREAM_PARSE_MIN`]
//! and more are parsed on the blocking pool and stream out in batches, so a large body costs
//! its own size plus a few batches); `config` the `[[sources]]` keys.

mod config;
mod json;
mod mapping;
mod omh;
mod parse;
mod source;
mod time;
mod units;

pub use config::{Constants, Fields, Format, Mapping, WearableConfig};
pub use omh::OMH_CODES;
pub use parse::{
    parse, ParseContext, ParseError, PayloadFormat, DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT,
};
pub use source::{WearableSource, BLOCKING_PARSE_THRESHOLD, STREAM_PARSE_MIN};

/// The source kind this crate registers.
pub const KIND: &str = "wearable-json";

/// Registers the `wearable-json` source kind.
pub fn register(registry: &mut medgate_core::Registry) {
    registry.add_source_kind::<WearableConfig>(KIND);
}
