//! The crate's one error type: what can go wrong loading a profile's key.
//!
//! Messages name the environment variable, never its value: they end up in `medgate check`
//! output and in logs.

/// Why a profile could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The environment variable that should hold the key is not set (or is empty).
    #[error(
        "environment variable {var} is not set; it must hold the pseudonym key as at least \
         64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`"
    )]
    KeyMissing {
        /// The variable's name.
        var: String,
    },
    /// The variable holds something other than an even number of hex digits.
    #[error(
        "environment variable {var} does not hold a hex key (an even number of the digits \
         0-9, a-f; e.g. from `openssl rand -hex 32`)"
    )]
    KeyNotHex {
        /// The variable's name.
        var: String,
    },
    /// The key is shorter than [`MIN_KEY_BYTES`](crate::MIN_KEY_BYTES) or longer than
    /// [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
    #[error(
        "the key in environment variable {var} is {bytes} bytes; it must be {min} to {max} \
         bytes ({} to {} hex digits)",
        2 * min,
        2 * max
    )]
    KeyLength {
        /// The variable's name.
        var: String,
        /// The decoded length.
        bytes: usize,
        /// The least accepted.
        min: usize,
        /// The most accepted.
        max: usize,
    },
    /// A profile that pseudonymizes or shifts dates was built without a key.
    #[error("profile `{profile}` pseudonymizes or shifts dates and needs a pseudonym key")]
    KeyRequired {
        /// The profile's name.
        profile: String,
    },
}
