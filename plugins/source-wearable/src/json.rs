//! A small read-only view over borrowed JSON, built on `serde_json`'s [`RawValue`].
//!
//! Numbers are never converted to `f64`: a number node is handed out as its written text, so
//! `98.60` and `1e-22` survive untouched. Every accessor takes the JSON Pointer of the node it
//! reads ([`Ptr`]), and a node of the wrong type comes back as a [`Warning`] located at that
//! pointer: the caller decides whether that costs one value (a warning on the observation)
//! or the whole payload (a [`ParseError`](crate::ParseError), for the envelope only).
//!
//! Two choices keep the happy path cheap: a [`Ptr`] is a chain of borrowed steps on the stack
//! that is only written out when something is wrong, and an [`Object`] is a small vector of
//! borrowed members (data point objects have a handful; a tree map costs more to build and
//! free than it saves in lookups).
//!
//! Messages describe the *kind* of node found, never its content, because payloads carry
//! patient data.

use std::borrow::Cow;
use std::fmt;
use std::ops::ControlFlow;

use medgate_core::{Decimal, Warning};
use serde_json::value::RawValue;

/// An RFC 6901 JSON Pointer, written out only when needed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ptr<'a> {
    /// Pointer text as is (already escaped): the root `""`, `/data`, a record's pointer.
    Text(&'a str),
    /// A member of the parent; the name is escaped when written.
    Member(&'a Ptr<'a>, &'a str),
    /// An element of the parent array.
    Index(&'a Ptr<'a>, usize),
}

/// The root pointer.
pub(crate) const ROOT: Ptr<'static> = Ptr::Text("");

impl<'a> Ptr<'a> {
    /// The member `name` of this node.
    pub(crate) fn at(&'a self, name: &'a str) -> Ptr<'a> {
        Ptr::Member(self, name)
    }

    /// The element `i` of this node.
    pub(crate) fn index(&'a self, i: usize) -> Ptr<'a> {
        Ptr::Index(self, i)
    }
}

impl fmt::Display for Ptr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ptr::Text(t) => f.write_str(t),
            Ptr::Member(parent, name) => {
                write!(f, "{parent}/")?;
                for c in name.chars() {
                    match c {
                        '~' => f.write_str("~0")?,
                        '/' => f.write_str("~1")?,
                        c => write!(f, "{c}")?,
                    }
                }
                Ok(())
            }
            Ptr::Index(parent, i) => write!(f, "{parent}/{i}"),
        }
    }
}

/// An object's members in payload order, names unescaped.
#[derive(Debug, Default)]
pub(crate) struct Object<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Object<'a> {
    /// The member `name`; with duplicate names the last one wins, as in serde_json's maps.
    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|&(_, raw)| raw)
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Object<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

struct ObjectVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for ObjectVisitor<'a> {
    type Value = Object<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Object<'a>, M::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((Key(name), raw)) = map.next_entry::<Key<'a>, &'a RawValue>()? {
            members.push((name, raw));
        }
        Ok(Object(members))
    }
}

/// A member name, borrowed from the payload unless it contains escapes.
struct Key<'a>(Cow<'a, str>);

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

/// A problem at `pointer` (the root is written `/` so it is never blank).
pub(crate) fn bad(pointer: &Ptr<'_>, message: impl Into<String>) -> Warning {
    Warning::new(written(pointer), message)
}

/// The pointer's text; the root is written `/` so it is never blank.
pub(crate) fn written(pointer: &Ptr<'_>) -> String {
    let text = pointer.to_string();
    if text.is_empty() {
        "/".to_owned()
    } else {
        text
    }
}

/// `raw` as an object.
pub(crate) fn object<'a>(raw: &'a RawValue, pointer: &Ptr<'_>) -> Result<Object<'a>, Warning> {
    expect_kind(raw, b'{', "an object", pointer)?;
    serde_json::from_str(raw.get()).map_err(|_| unreadable(pointer))
}

/// `raw` as an array.
pub(crate) fn array<'a>(
    raw: &'a RawValue,
    pointer: &Ptr<'_>,
) -> Result<Vec<&'a RawValue>, Warning> {
    expect_kind(raw, b'[', "an array", pointer)?;
    serde_json::from_str(raw.get()).map_err(|_| unreadable(pointer))
}

/// Hands each element of the array `raw` to `f` in order, as it is read, without collecting
/// them (a payload's array can hold hundreds of thousands of data points); stops when `f`
/// breaks. `f` gets the element's index and the element.
pub(crate) fn each<'a>(
    raw: &'a RawValue,
    pointer: &Ptr<'_>,
    mut f: impl FnMut(usize, &'a RawValue) -> ControlFlow<()>,
) -> Result<(), Warning> {
    expect_kind(raw, b'[', "an array", pointer)?;
    let mut stopped = false;
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let visitor = EachVisitor {
        f: &mut f,
        stopped: &mut stopped,
    };
    let read = serde::Deserializer::deserialize_seq(&mut de, visitor);
    // Stopped early, the rest of the array is not read: serde_json then finds the seq
    // unfinished, which is no error of the payload.
    if stopped {
        return Ok(());
    }
    read.and_then(|()| de.end())
        .map_err(|_| unreadable(pointer))
}

struct EachVisitor<'f, F> {
    f: &'f mut F,
    stopped: &'f mut bool,
}

impl<'de, F: FnMut(usize, &'de RawValue) -> ControlFlow<()>> serde::de::Visitor<'de>
    for EachVisitor<'_, F>
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let mut i = 0;
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if (self.f)(i, item).is_break() {
                *self.stopped = true;
                return Ok(());
            }
            i += 1;
        }
        Ok(())
    }
}

/// `raw` as a string.
pub(crate) fn string(raw: &RawValue, pointer: &Ptr<'_>) -> Result<String, Warning> {
    expect_kind(raw, b'"', "a string", pointer)?;
    serde_json::from_str(raw.get()).map_err(|_| unreadable(pointer))
}

/// `raw` as a string, borrowed from the payload unless it contains escapes.
pub(crate) fn text<'a>(raw: &'a RawValue, pointer: &Ptr<'_>) -> Result<Cow<'a, str>, Warning> {
    expect_kind(raw, b'"', "a string", pointer)?;
    if let Ok(s) = serde_json::from_str::<&'a str>(raw.get()) {
        return Ok(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(raw.get())
        .map(Cow::Owned)
        .map_err(|_| unreadable(pointer))
}

/// How a number was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// As a JSON number.
    Number,
    /// As a string holding a number (`"64.2"`, `"+5"`, `".5"`).
    String,
}

/// `raw` as a number, kept as written: a JSON number, or a string holding a number in any
/// lexical form [`Decimal::parse_lenient`] accepts.
pub(crate) fn number(raw: &RawValue, pointer: &Ptr<'_>) -> Result<(Decimal, Written), Warning> {
    if let Some(d) = Decimal::parse(raw.get().trim()) {
        return Ok((d, Written::Number));
    }
    if kind(raw) == "a string" {
        let inner = text(raw, pointer)?;
        if let Some(d) = Decimal::parse_lenient(&inner) {
            return Ok((d, Written::String));
        }
    }
    Err(bad(
        pointer,
        format!("expected a number, found {}", kind(raw)),
    ))
}

/// A scalar as text: strings unescaped, numbers and booleans as written.
pub(crate) fn scalar_text(raw: &RawValue, pointer: &Ptr<'_>) -> Result<String, Warning> {
    match kind(raw) {
        "a string" => string(raw, pointer),
        "a number" | "a boolean" => Ok(raw.get().trim().to_owned()),
        other => Err(bad(
            pointer,
            format!("expected a string or number, found {other}"),
        )),
    }
}

/// A required member of `obj`.
pub(crate) fn required<'a>(
    obj: &Object<'a>,
    name: &str,
    pointer: &Ptr<'_>,
) -> Result<&'a RawValue, Warning> {
    optional(obj, name).ok_or_else(|| bad(&pointer.at(name), "missing"))
}

/// An optional member of `obj`; `null` counts as absent.
pub(crate) fn optional<'a>(obj: &Object<'a>, name: &str) -> Option<&'a RawValue> {
    obj.get(name).filter(|raw| !is_null(raw))
}

/// Resolves an RFC 6901 pointer below `root`; `None` when a step does not exist (or steps
/// into a scalar).
pub(crate) fn resolve<'a>(root: &'a RawValue, pointer: &str) -> Option<&'a RawValue> {
    let mut node = root;
    for token in tokens(pointer) {
        let token = unescape(token);
        node = match kind(node) {
            "an object" => object(node, &ROOT).ok()?.get(&token)?,
            "an array" if is_index(&token) => {
                let i = token.parse::<usize>().ok()?;
                array(node, &ROOT).ok()?.get(i).copied()?
            }
            _ => return None,
        };
    }
    Some(node)
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

fn expect_kind(raw: &RawValue, first: u8, what: &str, pointer: &Ptr<'_>) -> Result<(), Warning> {
    if raw.get().trim_start().as_bytes().first() == Some(&first) {
        Ok(())
    } else {
        Err(bad(
            pointer,
            format!("expected {what}, found {}", kind(raw)),
        ))
    }
}

fn unreadable(pointer: &Ptr<'_>) -> Warning {
    bad(pointer, "could not be read")
}

/// Finds the first place where `bytes` nests arrays/objects deeper than `max_depth`.
///
/// `serde_json` skips over a `RawValue` iteratively and does not apply its recursion limit
/// there, so depth is bounded here, before any parsing, in one linear pass.
/// Returns the 1-based line and column of the offending bracket.
pub(crate) fn too_deep(bytes: &[u8], max_depth: usize) -> Option<(usize, usize)> {
    let (mut depth, mut i, n) = (0usize, 0usize, bytes.len());
    while i < n {
        match bytes[i] {
            b'"' => {
                // Strings are skipped in a tight loop of their own: this scan runs over every
                // byte of every payload, and most bytes are inside strings.
                i += 1;
                while i < n {
                    match bytes[i] {
                        b'"' => break,
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Some(position(bytes, i));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
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
        let found = resolve(&doc, "/a~1b/m~0n/1").unwrap();
        assert_eq!(found.get(), "20.50");
        assert!(resolve(&doc, "/a~1b/m~0n/01").is_none());
        assert!(resolve(&doc, "/a~1b/m~0n/2").is_none());
        assert!(resolve(&doc, "/missing").is_none());
        assert!(resolve(&doc, "/x/deeper").is_none());
        assert_eq!(resolve(&doc, "").unwrap().get(), doc.get());
    }

    #[test]
    fn pointers_are_escaped_when_written() {
        let data = Ptr::Text("/data");
        let point = data.index(3);
        let body = point.at("body");
        let odd = body.at("a/b~c");
        assert_eq!(odd.to_string(), "/data/3/body/a~1b~0c");
        assert_eq!(written(&ROOT), "/");
    }

    #[test]
    fn duplicate_members_keep_the_last_as_serde_json_does() {
        let doc = raw(r#"{"a":1,"b":2,"a":3}"#);
        let obj = object(&doc, &ROOT).unwrap();
        assert_eq!(obj.get("a").unwrap().get(), "3");
        assert_eq!(obj.get("b").unwrap().get(), "2");
        assert!(obj.get("c").is_none());
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
        assert_eq!(too_deep(br#"["\\", [["x"]]]"#, 2), Some((1, 9)));
        assert_eq!(too_deep(br#"["\\\"[[[", []]"#, 2), None);
        assert_eq!(too_deep(br#"["unterminated [[[["#, 1), None);
        assert_eq!(too_deep(b"\"\\", 0), None);
        assert_eq!(too_deep(b"[\n [[1]]]", 2), Some((2, 3)));
        assert_eq!(too_deep(b"{}", 0), Some((1, 1)));
    }

    #[test]
    fn kinds_are_named_without_content() {
        let at = ROOT.index(0);
        let e = number(&raw(r#""P000001""#), &at.at("value")).unwrap_err();
        assert_eq!(e.to_string(), "/0/value: expected a number, found a string");
        let e = object(&raw("[]"), &ROOT).unwrap_err();
        assert_eq!(e.to_string(), "/: expected an object, found an array");
    }

    #[test]
    fn text_is_borrowed_unless_escaped() {
        let plain = raw(r#""omh""#);
        assert!(matches!(text(&plain, &ROOT), Ok(Cow::Borrowed("omh"))));
        let escaped = raw(r#""o\u006dh""#);
        assert!(matches!(text(&escaped, &ROOT), Ok(Cow::Owned(s)) if s == "omh"));
        assert!(text(&raw("1"), &ROOT).is_err());
    }

    #[test]
    fn numbers_in_every_lexical_form() {
        let n = |t: &str| number(&raw(t), &ROOT).map(|(d, w)| (d.as_str().to_owned(), w));
        assert_eq!(n("98.60"), Ok(("98.60".into(), Written::Number)));
        assert_eq!(n("1e-22"), Ok(("1e-22".into(), Written::Number)));
        assert_eq!(n(r#""64.2""#), Ok(("64.2".into(), Written::String)));
        assert_eq!(n(r#"" +.5 ""#), Ok(("0.5".into(), Written::String)));
        assert_eq!(n(r#""007""#), Ok(("7".into(), Written::String)));
        assert!(n(r#""1,5""#).is_err());
        assert!(n("true").is_err());
        assert!(n("{}").is_err());
    }
}
