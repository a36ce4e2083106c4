//! Field rules shared by every format: patient ids, codes, code systems, UCUM-looking units,
//! free text and RFC 3339 instants. Each returns what is wrong without quoting the value.

use medgate_core::{DateTime, Precision};

/// Longest patient id accepted (the server's rule for `patient_id` parameters).
pub const MAX_PATIENT_ID_LEN: usize = 128;
/// Longest code accepted.
pub const MAX_CODE_LEN: usize = 256;
/// Longest code system URI accepted.
pub const MAX_URI_LEN: usize = 1024;
/// Longest unit accepted.
pub const MAX_UNIT_LEN: usize = 64;
/// Longest short text (display, ids, versions) accepted.
pub const MAX_TEXT_LEN: usize = 1024;
/// Longest free-text answer accepted.
pub const MAX_LONG_TEXT_LEN: usize = 10_000;

/// The server's patient id rule: 1–128 of `A-Z a-z 0-9 - . _ : @ ~`, and not `.` or `..`.
///
/// # Errors
/// What is wrong, without the id.
pub fn patient_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("patient id is empty".into());
    }
    if id.len() > MAX_PATIENT_ID_LEN {
        return Err(format!(
            "patient id is longer than {MAX_PATIENT_ID_LEN} characters"
        ));
    }
    if id == "." || id == ".." {
        return Err("patient id may not be `.` or `..`".into());
    }
    if let Some(pos) = id
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b"-._:@~".contains(&b)))
    {
        return Err(format!(
            "patient id has a character that is not allowed at position {}; allowed: A-Z a-z 0-9 - . _ : @ ~",
            pos + 1
        ));
    }
    Ok(())
}

/// A code: non-empty, at most [`MAX_CODE_LEN`] characters, no control characters and no
/// leading or trailing whitespace.
///
/// # Errors
/// What is wrong.
pub fn code(code: &str) -> Result<(), String> {
    if code.is_empty() {
        return Err("code is empty".into());
    }
    if code.chars().count() > MAX_CODE_LEN {
        return Err(format!("code is longer than {MAX_CODE_LEN} characters"));
    }
    if code.chars().any(char::is_control) {
        return Err("code contains a control character".into());
    }
    if code.trim() != code {
        return Err("code has leading or trailing whitespace".into());
    }
    Ok(())
}

/// A code system: an absolute URI (`scheme:rest`, no whitespace), at most [`MAX_URI_LEN`].
///
/// # Errors
/// What is wrong.
pub fn system_uri(uri: &str) -> Result<(), String> {
    if uri.is_empty() {
        return Err("code system is empty".into());
    }
    if uri.len() > MAX_URI_LEN {
        return Err(format!(
            "code system is longer than {MAX_URI_LEN} characters"
        ));
    }
    let scheme_ok = uri.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !scheme_ok || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "code system must be an absolute URI such as `http://loinc.org` or `urn:oid:1.2.3`"
                .into(),
        );
    }
    Ok(())
}

/// Common unit spellings that are not UCUM, with the UCUM code to send instead.
const NOT_UCUM: &[(&str, &str)] = &[
    ("mmHg", "mm[Hg]"),
    ("mm Hg", "mm[Hg]"),
    ("bpm", "/min"),
    ("beats/min", "/min"),
    ("beats/minute", "/min"),
    ("breaths/min", "/min"),
    ("degC", "Cel"),
    ("°C", "Cel"),
    ("C", "Cel"),
    ("degF", "[degF]"),
    ("°F", "[degF]"),
    ("F", "[degF]"),
    ("lb", "[lb_av]"),
    ("lbs", "[lb_av]"),
    ("in", "[in_i]"),
    ("inch", "[in_i]"),
    ("ft", "[ft_i]"),
    ("mcg", "ug"),
    ("cc", "mL"),
    ("hr", "h"),
    ("hrs", "h"),
    ("sec", "s"),
    ("steps", "{steps}"),
    ("kcal/day", "kcal/d"),
];

/// A unit that looks like UCUM (case-sensitive syntax): printable ASCII without spaces,
/// balanced `()` / `[]` / `{}` with no braces inside an annotation, at most
/// [`MAX_UNIT_LEN`] characters, and not one of the common non-UCUM spellings (`mmHg`,
/// `bpm`, `lbs` …, for which the message names the UCUM code). The check is syntactic: it
/// does not prove every atom exists.
///
/// # Errors
/// What is wrong, with the UCUM replacement when one is known.
pub fn ucum_unit(unit: &str) -> Result<(), String> {
    if let Some((_, ucum)) = NOT_UCUM.iter().find(|(bad, _)| *bad == unit) {
        return Err(format!("unit is not UCUM; send `{ucum}`"));
    }
    if unit.is_empty() {
        return Err("unit is empty; leave it out for a unitless number, or send `1`".into());
    }
    if unit.len() > MAX_UNIT_LEN {
        return Err(format!("unit is longer than {MAX_UNIT_LEN} characters"));
    }
    if !unit.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("unit is not UCUM: only printable ASCII without spaces is allowed".into());
    }
    if !brackets_balanced(unit) {
        return Err("unit is not UCUM: unbalanced (), [] or {}".into());
    }
    Ok(())
}

fn brackets_balanced(unit: &str) -> bool {
    let mut stack = Vec::new();
    let mut in_annotation = false;
    for c in unit.chars() {
        if in_annotation {
            match c {
                '}' => in_annotation = false,
                '{' => return false,
                _ => {}
            }
            continue;
        }
        match c {
            '{' => in_annotation = true,
            '(' | '[' => stack.push(c),
            ')' if stack.pop() != Some('(') => return false,
            ']' if stack.pop() != Some('[') => return false,
            '}' => return false,
            _ => {}
        }
    }
    stack.is_empty() && !in_annotation
}

/// Free text: at most `max` characters and no control characters other than tab, CR, LF.
///
/// # Errors
/// What is wrong.
pub fn text(value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        return Err(format!("text is longer than {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Err("text contains a control character".into());
    }
    Ok(())
}

/// A short identifier-like text (app id, version, device id): 1 to [`MAX_TEXT_LEN`]
/// characters, no control characters.
///
/// # Errors
/// What is wrong.
pub fn short_text(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("is empty".into());
    }
    if value.chars().count() > MAX_TEXT_LEN {
        return Err(format!("is longer than {MAX_TEXT_LEN} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    Ok(())
}

/// An RFC 3339 date-time with seconds and an offset (`Z` or `±hh:mm`), e.g.
/// `2026-03-01T08:00:00+08:00`: an instant.
///
/// # Errors
/// What is wrong (a local time without offset is named as such).
pub fn instant(text: &str) -> Result<DateTime, String> {
    let parsed = DateTime::parse(text).map_err(|e| format!("{e}"))?;
    if parsed.precision() != Precision::Second || !has_seconds(text) {
        return Err(
            "expected an RFC 3339 date-time with seconds and offset, e.g. 2026-03-01T08:00:00+08:00"
                .into(),
        );
    }
    if parsed.is_local() {
        return Err("the date-time has no UTC offset; add `Z` or `±hh:mm`".into());
    }
    Ok(parsed)
}

/// A FHIR-style date-time for `effective`: a year, year-month, date, or a date-time with
/// seconds and offset. A time of day without offset is refused: an app knows its offset.
///
/// # Errors
/// What is wrong.
pub fn date_or_instant(text: &str) -> Result<DateTime, String> {
    if text.len() <= 10 {
        let parsed = DateTime::parse(text).map_err(|e| format!("{e}"))?;
        if parsed.precision() == Precision::Second {
            return Err("expected a date or an RFC 3339 date-time".into());
        }
        return Ok(parsed);
    }
    instant(text)
}

/// `YYYY-MM-DDThh:mm:ss…`: the seconds were written (RFC 3339 requires them).
fn has_seconds(text: &str) -> bool {
    text.as_bytes().get(16) == Some(&b':')
}

/// A FHIR `id`: 1–64 of `A-Z a-z 0-9 - .`.
///
/// # Errors
/// What is wrong.
pub fn fhir_id(id: &str) -> Result<(), String> {
    if medgate_core::fhir::is_fhir_id(id) {
        Ok(())
    } else {
        Err("must be 1-64 characters of A-Z a-z 0-9 - .".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_ids_follow_the_server_rule() {
        for ok in ["P000001", "a", "urn:oid:1.2.3", "x_y-z.w@h~"] {
            assert_eq!(patient_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(patient_id(bad).is_err(), "{bad}");
        }
        assert!(patient_id("ab cd").unwrap_err().contains("position 3"));
    }

    #[test]
    fn units_that_look_like_ucum() {
        for ok in [
            "/min",
            "mm[Hg]",
            "10*3/uL",
            "{cells}/uL",
            "mL/min/{1.73_m2}",
            "kg/m2",
            "%",
            "1",
            "[degF]",
            "ug/dL",
            "{score}",
        ] {
            assert_eq!(ucum_unit(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            ucum_unit("mmHg").unwrap_err(),
            "unit is not UCUM; send `mm[Hg]`"
        );
        for bad in ["", "mg dl", "mm[Hg", "{a{b}}", "µmol/L", "x)", "}"] {
            assert!(ucum_unit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instants_need_seconds_and_an_offset() {
        assert_eq!(
            instant("2026-03-01T08:00:00+08:00").unwrap().to_string(),
            "2026-03-01T08:00:00+08:00"
        );
        assert!(instant("2026-03-01T08:00:00.123Z").is_ok());
        assert!(instant("2026-03-01T08:00:00")
            .unwrap_err()
            .contains("no UTC offset"));
        assert!(instant("2026-03-01T08:00+08:00").is_err());
        assert!(instant("2026-03-01").is_err());
        assert!(date_or_instant("2026-03-01").is_ok());
        assert!(date_or_instant("2026-03").is_ok());
        assert!(date_or_instant("2026-03-01T08:00:00").is_err());
        assert!(date_or_instant("2026-02-30").is_err());
    }

    #[test]
    fn codes_and_systems() {
        assert!(code("8867-4").is_ok());
        assert!(code("").is_err());
        assert!(code(" x").is_err());
        assert!(system_uri("http://loinc.org").is_ok());
        assert!(system_uri("urn:oid:2.16.840.1.113883.6.1").is_ok());
        for bad in ["loinc", "", "http://x y", ":x", "1http:x"] {
            assert!(system_uri(bad).is_err(), "{bad}");
        }
    }
}
