//! A small read-only view over borrowed JSON, built on `serde_json`'s [`RawValue`].
//!
//! Numbers are never converted to `f64`: a number node is handed out as its written text, so
//! `98.60` and `1e-22` survive untouched. Every accessor takes the JSON Pointer of the node it
//! reads so that a shape error can name exactly where the payload went wrong.
//!
//! Error messages describe the *kind* of node found, never its content, because payloads carry
//! patient data and these messages end up in logs and HTTP responses.

use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::fmt;

use medgate_core::Decimal;
use serde_json::value::RawValue;

use crate::ParseError;

/// An object's members, keyed by their (unescaped) names.
pub(crate) type Object<'a> = BTreeMap<Key<'a>, &'a RawValue>;

/// An object member name, borrowed from the payload unless it contains escapes.
///
/// Borrowing saves an allocation per member on the hot path (a data point has a dozen).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key<'a>(Cow<'a, str>);

impl Borrow<str> for Key<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Key<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
}

struct KeyVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for KeyVisitor<'a> {
    type Value = Key<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'a>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'a>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }
}

/// The JSON type of a node, judged by its first byte (the text has already been validated).
pub(crate) fn kind(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// True for JSON `null`.
pub(crate) fn is_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}

/// Appends one reference token to `pointer`, escaping it per RFC 6901.
pub(crate) fn child(pointer: &str, token: &str) -> String {
    let mut out = String::with_capacity(pointer.len() + token.len() + 1);
    out.push_str(pointer);
    out.push('/');
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

/// `raw` as an object.
pub(crate) fn object<'a>(raw: &'a RawValue, pointer: &str) -> Result<Object<'a>, ParseError> {
    expect_kind(raw, b'{', "an object", pointer)?;
    serde_json::from_str(raw.get()).map_err(|_| unreadable(pointer))
}

/// `raw` as an array.
pub(crate) fn array<'a>(raw: &'a RawValue, pointer: &str) -> Result<Vec<&'a RawValue>, ParseError> {
    expect_kind(raw, b'[', "an array", pointer)?;
    serde_json::from_str(raw.get()).map_err(|_| unreadable(pointer))
}

/// `raw` as a string.
pub(crate) fn string(raw: &RawValue, pointer: &str) -> Result<String, ParseError> {
    expect_kind(raw, b'"', "a string", pointer)?;
    serde_json::from_str(raw.get()).map_err(|_| unreadable(pointer))
}

/// `raw` as a number, kept as written.
pub(crate) fn number(raw: &RawValue, pointer: &str) -> Result<Decimal, ParseError> {
    Decimal::parse(raw.get().trim()).ok_or_else(|| {
        ParseError::shape(pointer, format!("expected a number, found {}", kind(raw)))
    })
}

/// A required member of `obj`.
pub(crate) fn required<'a>(
    obj: &Object<'a>,
    name: &str,
    pointer: &str,
) -> Result<&'a RawValue, ParseError> {
    obj.get(name)
        .copied()
        .ok_or_else(|| ParseError::shape(child(pointer, name), "missing"))
}

/// An optional member of `obj`; `null` counts as absent.
pub(crate) fn optional<'a>(obj: &Object<'a>, name: &str) -> Option<&'a RawValue> {
    obj.get(name).copied().filter(|raw| !is_null(raw))
}

/// Resolves an RFC 6901 pointer below `root`; `Ok(None)` when a step does not exist.
///
/// `base` is the pointer of `root` itself, used only to name the node in errors.
pub(crate) fn resolve<'a>(
    root: &'a RawValue,
    pointer: &str,
    base: &str,
) -> Result<Option<&'a RawValue>, ParseError> {
    let mut node = root;
    let mut at = base.to_owned();
    for token in tokens(pointer) {
        let token = unescape(token);
        let next = match kind(node) {
            "an object" => object(node, &at)?.get(token.as_str()).copied(),
            "an array" => token
                .parse::<usize>()
                .ok()
                .filter(|_| is_index(&token))
                .and_then(|i| array(node, &at).ok()?.get(i).copied()),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return Ok(None),
        }
        at = child(&at, &token);
    }
    Ok(Some(node))
}

/// True when `pointer` is a syntactically valid RFC 6901 pointer.
pub(crate) fn is_valid_pointer(pointer: &str) -> bool {
    if !(pointer.is_empty() || pointer.starts_with('/')) {
        return false;
    }
    // `~` must be followed by `0` or `1`.
    let bytes = pointer.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'~')
        .all(|(i, _)| matches!(bytes.get(i + 1), Some(b'0' | b'1')))
}

fn tokens(pointer: &str) -> impl Iterator<Item = &str> {
    // The leading "/" yields an empty first piece, which is not a token.
    pointer.split('/').skip(1)
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Array indexes are decimal with no leading zeros (RFC 6901 §4).
fn is_index(token: &str) -> bool {
    token == "0" || (!token.starts_with('0') && token.bytes().all(|b| b.is_ascii_digit()))
}

fn expect_kind(raw: &RawValue, first: u8, what: &str, pointer: &str) -> Result<(), ParseError> {
    if raw.get().trim_start().as_bytes().first() == Some(&first) {
        Ok(())
    } else {
        Err(ParseError::shape(
            pointer,
            format!("expected {what}, found {}", kind(raw)),
        ))
    }
}

fn unreadable(pointer: &str) -> ParseError {
    ParseError::shape(pointer, "could not be read")
}

/// Finds the first place where `bytes` nests arrays/objects deeper than `max_depth`.
///
/// `serde_json` skips over a `RawValue` iteratively and does not apply its recursion limit
/// there, so depth is bounded here, before any parsing, in one linear pass.
/// Returns the 1-based line and column of the offending bracket.
pub(crate) fn too_deep(bytes: &[u8], max_depth: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Some(position(bytes, i));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// 1-based line and column (in bytes) of `index`, as serde_json counts them.
fn position(bytes: &[u8], index: usize) -> (usize, usize) {
    let before = &bytes[..index];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, index - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn resolves_pointers_with_escapes_and_indexes() {
        let doc = raw(r#"{"a/b":{"m~n":[10,20.50]},"x":1}"#);
        let found = resolve(&doc, "/a~1b/m~0n/1", "").unwrap().unwrap();
        assert_eq!(found.get(), "20.50");
        assert!(resolve(&doc, "/a~1b/m~0n/01", "").unwrap().is_none());
        assert!(resolve(&doc, "/missing", "").unwrap().is_none());
        assert!(resolve(&doc, "/x/deeper", "").unwrap().is_none());
        assert_eq!(resolve(&doc, "", "").unwrap().unwrap().get(), doc.get());
    }

    #[test]
    fn pointer_syntax() {
        for ok in ["", "/", "/a", "/a~0b~1c", "/0/x"] {
            assert!(is_valid_pointer(ok), "{ok}");
        }
        for bad in ["a", "weight", "/a~", "/a~2"] {
            assert!(!is_valid_pointer(bad), "{bad}");
        }
    }

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        assert_eq!(too_deep(br#"[["[[[[", "\"[["]]"#, 2), None);
        assert_eq!(too_deep(b"[\n [[1]]]", 2), Some((2, 3)));
        assert_eq!(too_deep(b"{}", 0), Some((1, 1)));
    }

    #[test]
    fn kinds_are_named_without_content() {
        let e = number(&raw(r#""P000001""#), "/0/value").unwrap_err();
        assert_eq!(e.to_string(), "/0/value: expected a number, found a string");
    }
}
