//! medgate-deid: de-identification profiles, applied in the pipeline before any exporter.
//!
//! A `[[profiles]]` entry ([`ProfileConfig`]) says what a de-identified export looks like,
//! modelled on HIPAA Safe Harbor and REDCap's export options: patient ids replaced by keyed
//! pseudonyms (stable for one key, unlinkable across keys), every date of a patient shifted
//! by one secret per-patient offset (intervals kept) and optionally truncated, free text
//! dropped, and whole parts of the record removed. A [`Profile`] is a
//! `medgate_pipeline::Transform`, so every output — CSV, JSON, NDJSON, Excel, FHIR, Parquet —
//! sees the same de-identified record; no exporter has to know.
//!
//! - [`config`]: the typed `[[profiles]]` entry and its pure validation.
//! - [`key`]: the pseudonym key (hex in an environment variable) and every HMAC derivation,
//!   with the exact inputs documented so a study can reproduce pseudonyms.
//! - [`profile`]: the transform and the profiles by name.
//! - [`text`]: free text, patient-id replacement and warning redaction.
//!
//! Design decision: everything secret derives from one HMAC-SHA256 key with a domain label
//! per use, computed once per patient and cached; nothing is stored, so the same key gives
//! the same pseudonyms and shifts in every run, on every replica, for every source.

pub mod config;
pub mod error;
pub mod key;
pub mod profile;
pub mod text;

pub use config::{validate_profiles, DropField, ProfileConfig, TruncateTo, MAX_SHIFT_DAYS};
pub use error::Error;
pub use key::{PseudonymKey, MAX_KEY_BYTES, MIN_KEY_BYTES};
pub use profile::{Profile, Profiles};
