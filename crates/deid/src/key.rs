//! The pseudonym key and everything derived from it.
//!
//! Every derivation is HMAC-SHA256 under the one key with a domain label, so pseudonyms are
//! stable for one key, unlinkable across keys, and the date shift of a patient cannot be
//! computed from their pseudonym. The exact inputs are documented so that a study can
//! reproduce a pseudonym outside medgate (`printf 'patient-id:%s' "$ID" | openssl dgst
//! -sha256 -mac HMAC -macopt "hexkey:$MEDGATE_PSEUDONYM_KEY"`, first 32 hex digits):
//!
//! | what | HMAC input | output |
//! |---|---|---|
//! | patient id | `patient-id:` + id | `psn-` + 32 hex digits |
//! | date shift | `date-shift:` + id | ±1..±max days (first 8 bytes, big-endian, scaled) |
//! | observation id | `observation-id:` + source + `\x1f` + patient id + `\x1f` + id | `obs-` + 32 hex digits |
//! | other reference | `reference:` + source + `\x1f` + patient id + `\x1f` + reference | `ref-` + 32 hex digits, or a `urn:uuid:` |
//! | key id | `key-id` | 8 hex digits |
//!
//! 32 hex digits are 128 bits: collisions are out of reach for any cohort. Every output is a
//! valid FHIR id (`[A-Za-z0-9\-\.]{1,64}`) and a valid medgate patient id.

use std::ffi::OsString;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Error;

/// Fewest key bytes accepted (HMAC-SHA256's output size).
pub const MIN_KEY_BYTES: usize = 32;
/// Most key bytes accepted.
pub const MAX_KEY_BYTES: usize = 512;

/// Prefix of patient pseudonyms.
pub const PATIENT_PREFIX: &str = "psn-";
/// Prefix of pseudonymous observation ids.
pub const OBSERVATION_PREFIX: &str = "obs-";
/// Prefix of pseudonymous reference ids of other resource types.
pub const REFERENCE_PREFIX: &str = "ref-";

/// The secret under which pseudonyms and date shifts are derived. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct PseudonymKey {
    /// HMAC state already keyed: each derivation clones it instead of re-hashing the key.
    mac: Hmac<Sha256>,
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    /// A key from its bytes.
    ///
    /// # Errors
    /// [`Error::KeyLength`] outside 32..=512 bytes (`var` names where it came from).
    pub fn from_bytes(bytes: &[u8], var: &str) -> Result<PseudonymKey, Error> {
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(Error::KeyLength {
                var: var.to_owned(),
                bytes: bytes.len(),
                min: MIN_KEY_BYTES,
                max: MAX_KEY_BYTES,
            });
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(bytes).map_err(|_| Error::KeyLength {
            var: var.to_owned(),
            bytes: bytes.len(),
            min: MIN_KEY_BYTES,
            max: MAX_KEY_BYTES,
        })?;
        Ok(PseudonymKey { mac })
    }

    /// A key written as hex digits (either case; surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`Error::KeyNotHex`] or [`Error::KeyLength`], naming `var`, never the text.
    pub fn from_hex(text: &str, var: &str) -> Result<PseudonymKey, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::KeyMissing {
                var: var.to_owned(),
            });
        }
        let bytes = hex::decode(text).map_err(|_| Error::KeyNotHex {
            var: var.to_owned(),
        })?;
        PseudonymKey::from_bytes(&bytes, var)
    }

    /// The key in environment variable `var`, read through `env` (the process environment
    /// is `|v| std::env::var_os(v)`).
    ///
    /// # Errors
    /// [`Error::KeyMissing`] when unset or empty; otherwise as [`PseudonymKey::from_hex`].
    pub fn from_env(
        var: &str,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<PseudonymKey, Error> {
        let value = env(var).ok_or_else(|| Error::KeyMissing {
            var: var.to_owned(),
        })?;
        let text = value.to_str().ok_or_else(|| Error::KeyNotHex {
            var: var.to_owned(),
        })?;
        PseudonymKey::from_hex(text, var)
    }

    /// HMAC-SHA256 of the concatenated `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// A short public fingerprint (8 hex digits): tells whether two exports used the same
    /// key (and so whether their pseudonyms link) without revealing it.
    pub fn key_id(&self) -> String {
        hex::encode(&self.mac(&[b"key-id"])[..4])
    }

    /// The patient's pseudonym: `psn-` + 32 hex digits.
    pub fn patient_pseudonym(&self, patient_id: &str) -> String {
        let mac = self.mac(&[b"patient-id:", patient_id.as_bytes()]);
        prefixed(PATIENT_PREFIX, &mac)
    }

    /// The patient's date shift in days: ±1..=±`max` (never 0 unless `max` is 0), uniform
    /// over those `2 × max` values.
    pub fn date_shift(&self, patient_id: &str, max: u32) -> i32 {
        if max == 0 {
            return 0;
        }
        let mac = self.mac(&[b"date-shift:", patient_id.as_bytes()]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&mac[..8]);
        shift_from(u64::from_be_bytes(first), max)
    }

    /// The pseudonymous id of observation `id` of `patient_id` from `source`.
    pub fn observation_id(&self, source: &str, patient_id: &str, id: &str) -> String {
        let mac = self.mac(&[
            b"observation-id:",
            source.as_bytes(),
            b"\x1f",
            patient_id.as_bytes(),
            b"\x1f",
            id.as_bytes(),
        ]);
        prefixed(OBSERVATION_PREFIX, &mac)
    }

    /// The HMAC of any other reference text of `patient_id` from `source`.
    pub fn reference_mac(&self, source: &str, patient_id: &str, reference: &str) -> [u8; 32] {
        self.mac(&[
            b"reference:",
            source.as_bytes(),
            b"\x1f",
            patient_id.as_bytes(),
            b"\x1f",
            reference.as_bytes(),
        ])
    }
}

/// `prefix` + the first 16 bytes of `mac` in lowercase hex.
pub(crate) fn prefixed(prefix: &str, mac: &[u8; 32]) -> String {
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    out.push_str(&hex::encode(&mac[..16]));
    out
}

/// `mac`'s first 16 bytes as a version-4-shaped UUID URN.
pub(crate) fn uuid_urn(mac: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&mac[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Maps 64 random bits to ±1..=±max: Lemire's multiply-shift picks one of `2 × max` slots
/// (bias below 2⁻⁵³), slots `0..max` are the negative shifts, `max..2max` the positive ones.
fn shift_from(bits: u64, max: u32) -> i32 {
    let slots = 2 * u64::from(max);
    let slot = ((u128::from(bits) * u128::from(slots)) >> 64) as u64;
    let max = i64::from(max);
    let signed = slot as i64 - max;
    let shift = if signed >= 0 { signed + 1 } else { signed };
    // |shift| <= max <= u32::MAX / 2 in practice (validation caps max at 3650).
    i32::try_from(shift).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PseudonymKey {
        PseudonymKey::from_bytes(&[byte; 32], "K").unwrap()
    }

    #[test]
    fn shifts_cover_both_signs_and_never_zero() {
        assert_eq!(shift_from(0, 364), -364);
        assert_eq!(shift_from(u64::MAX, 364), 364);
        assert_eq!(shift_from(1 << 63, 364), 1);
        assert_eq!(shift_from((1 << 63) - 1, 364), -1);
        assert_eq!(shift_from(0, 1), -1);
        assert_eq!(shift_from(u64::MAX, 1), 1);
        assert_eq!(key(1).date_shift("P1", 0), 0);
    }

    #[test]
    fn keys_are_read_as_hex_and_errors_never_echo_them() {
        let hex64 = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        assert!(PseudonymKey::from_hex(&format!(" {hex64}\n"), "K").is_ok());
        let short = PseudonymKey::from_hex("abcd", "K").unwrap_err();
        assert_eq!(
            short.to_string(),
            "the key in environment variable K is 2 bytes; it must be 32 to 512 bytes \
             (64 to 1024 hex digits)"
        );
        let secret = "this-is-my-secret-passphrase-not-hex-at-all-0123456789";
        let err = PseudonymKey::from_hex(secret, "K").unwrap_err();
        assert!(matches!(err, Error::KeyNotHex { .. }));
        assert!(!err.to_string().contains(secret));
        assert!(!format!("{err:?}").contains(secret));
        assert_eq!(format!("{:?}", key(7)), "PseudonymKey(..)");
        let missing = PseudonymKey::from_env("MEDGATE_TEST_NOPE", |_| None).unwrap_err();
        assert!(missing
            .to_string()
            .starts_with("environment variable MEDGATE_TEST_NOPE is not set"));
        let empty = PseudonymKey::from_env("K", |_| Some(OsString::from("  "))).unwrap_err();
        assert!(matches!(empty, Error::KeyMissing { .. }));
    }

    #[test]
    fn uuids_are_well_formed() {
        let urn = uuid_urn(&[0xff; 32]);
        assert_eq!(urn, "urn:uuid:ffffffff-ffff-4fff-bfff-ffffffffffff");
    }
}
