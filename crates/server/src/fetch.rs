//! Patient ids as partners send them: checked before they reach any source or URL.
//! (Calling plugins safely lives in `medgate-pipeline`.)

use crate::problem::ApiError;

/// Longest patient id accepted.
pub const MAX_PATIENT_ID_LEN: usize = 128;

/// Checks a patient id: 1–128 ASCII letters, digits or `-._:@~`.
///
/// # Errors
/// A 400 problem saying what is wrong (without echoing the id).
pub fn validate_patient_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::BadRequest("patient_id is empty".into()));
    }
    if id.len() > MAX_PATIENT_ID_LEN {
        return Err(ApiError::BadRequest(format!(
            "patient_id is longer than {MAX_PATIENT_ID_LEN} characters"
        )));
    }
    if id == "." || id == ".." {
        // A dot segment would be normalised away by URL parsers and change the upstream path.
        return Err(ApiError::BadRequest(
            "patient_id may not be `.` or `..`".into(),
        ));
    }
    if let Some(pos) = id
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b"-._:@~".contains(&b)))
    {
        return Err(ApiError::BadRequest(format!(
            "patient_id has a character that is not allowed at position {}; allowed: A-Z a-z 0-9 - . _ : @ ~",
            pos + 1
        )));
    }
    Ok(())
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
