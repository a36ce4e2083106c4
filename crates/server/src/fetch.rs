//! Patient ids as partners send them: checked before they reach any source or URL.
//! (Calling plugins safely lives in `medgate-pipeline`.)

use crate::problem::ApiError;

pub use medgate_core::config::MAX_PATIENT_ID_LEN;

/// Checks a patient id with core's one rule (1–128 of `A-Z a-z 0-9 - . _ : @ ~`, not `.` or
/// `..`).
///
/// # Errors
/// A 400 problem saying what is wrong (without echoing the id).
pub fn validate_patient_id(id: &str) -> Result<(), ApiError> {
    medgate_core::config::check_patient_id(id).map_err(ApiError::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_ids() {
        for ok in ["P000001", "a", "12345", "urn:oid:1.2.3", "x_y-z.w@h~"] {
            assert!(validate_patient_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "a?b",
            "é",
            "a%2F",
            &"x".repeat(129),
        ] {
            assert!(validate_patient_id(bad).is_err(), "{bad}");
        }
    }
}
