//! A bounded, read-only view over borrowed JSON, on serde_json's [`RawValue`].
//!
//! The whole body is checked once for well-formedness ([`parse_body`]: serde_json's parser,
//! which also refuses nesting deeper than 128 levels), without building a tree. After that a
//! [`Node`] is one value's text plus its JSON Pointer; arrays and objects are split into
//! borrowed children only when read, with a limit on how many children they may have, so a
//! million-element array costs one linear scan and an early stop, not a million allocations.
//! Numbers are handed out as their written text and never pass through `f64`.

use std::cell::Cell;
use std::fmt;

use medgate_core::Decimal;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::IngestError;

/// Most elements one array or members one object may have (the tighter limits of each
/// format, such as reports per body, are checked by their readers).
pub const MAX_CHILDREN: usize = 10_000;
/// Deepest nesting of arrays and objects accepted (FHIR resources need about 10).
pub const MAX_DEPTH: usize = 64;

/// The JSON type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl Kind {
    /// `a string`, `an object` …
    pub fn article(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// Checks the body is UTF-8 JSON (a leading UTF-8 byte order mark is skipped) and returns
/// its root value.
///
/// # Errors
/// [`IngestError::Malformed`] with the byte, line and column of the first fault.
pub fn parse_body<'a>(body: &'a [u8], format: &'static str) -> Result<&'a RawValue, IngestError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| IngestError::Malformed {
        format,
        at: format!("byte {}", e.valid_up_to()),
        detail: "the body is not valid UTF-8".into(),
    })?;
    let root = serde_json::from_str::<&RawValue>(text).map_err(|e| malformed(&e, format))?;
    if let Some(at) = too_deep(text.as_bytes()) {
        return Err(IngestError::Malformed {
            format,
            at: format!("byte {at}"),
            detail: format!("nested deeper than {MAX_DEPTH} levels"),
        });
    }
    Ok(root)
}

/// The byte offset where nesting first exceeds [`MAX_DEPTH`], in one pass over text that is
/// already known to be valid JSON (so brackets inside strings are the only trap).
fn too_deep(text: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in text.iter().enumerate() {
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
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn malformed(e: &serde_json::Error, format: &'static str) -> IngestError {
    // serde_json's messages describe the syntax, never the payload; the recursion limit is
    // named explicitly because it is the hostile case.
    let text = e.to_string();
    let detail = if text.contains("recursion limit") {
        "nested deeper than 128 levels".to_owned()
    } else {
        match text.rfind(" at line ") {
            Some(cut) => text[..cut].to_owned(),
            None => text,
        }
    };
    IngestError::Malformed {
        format,
        at: format!("line {}, column {}", e.line(), e.column()),
        detail,
    }
}

/// One JSON value of the body and where it is.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    raw: &'a RawValue,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the payload: it may be patient data.
        write!(f, "Node({})", self.kind().article())
    }
}

/// Why an array or object could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// More than the limit of children.
    TooMany(usize),
    /// Not the expected kind.
    WrongKind(Kind),
}

impl<'a> Node<'a> {
    /// The node of a raw value.
    pub fn new(raw: &'a RawValue) -> Node<'a> {
        Node { raw }
    }

    /// Its type, by its first byte (the text is already known to be valid JSON).
    pub fn kind(&self) -> Kind {
        match self.raw.get().trim_start().as_bytes().first() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    /// The elements of an array, at most `limit` of them.
    ///
    /// # Errors
    /// Not an array, or more than `limit` elements (parsing stops at the first extra one).
    pub fn elements(&self, limit: usize) -> Result<Vec<Node<'a>>, SplitError> {
        if self.kind() != Kind::Array {
            return Err(SplitError::WrongKind(self.kind()));
        }
        let over = Cell::new(false);
        let mut de = serde_json::Deserializer::from_str(self.raw.get());
        let seed = LimitedSeq { limit, over: &over };
        match seed.deserialize(&mut de) {
            Ok(items) => Ok(items.into_iter().map(Node::new).collect()),
            Err(_) if over.get() => Err(SplitError::TooMany(limit)),
            // The text was validated by `parse_body`; a failure here is not expected.
            Err(_) => Err(SplitError::WrongKind(Kind::Array)),
        }
    }

    /// The members of an object in written order, at most `limit` of them (duplicates kept,
    /// so the caller can refuse them).
    ///
    /// # Errors
    /// Not an object, or more than `limit` members.
    pub fn members(&self, limit: usize) -> Result<Vec<(String, Node<'a>)>, SplitError> {
        if self.kind() != Kind::Object {
            return Err(SplitError::WrongKind(self.kind()));
        }
        let over = Cell::new(false);
        let mut de = serde_json::Deserializer::from_str(self.raw.get());
        let seed = LimitedMap { limit, over: &over };
        match seed.deserialize(&mut de) {
            Ok(members) => Ok(members
                .into_iter()
                .map(|(k, v)| (k, Node::new(v)))
                .collect()),
            Err(_) if over.get() => Err(SplitError::TooMany(limit)),
            Err(_) => Err(SplitError::WrongKind(Kind::Object)),
        }
    }

    /// The string's unescaped text, or `None` if it is not a string.
    pub fn as_str(&self) -> Option<String> {
        if self.kind() != Kind::String {
            return None;
        }
        serde_json::from_str::<String>(self.raw.get()).ok()
    }

    /// The boolean, or `None`.
    pub fn as_bool(&self) -> Option<bool> {
        match self.raw.get().trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// The number as written, or `None` if it is not a number.
    pub fn as_decimal(&self) -> Option<Decimal> {
        if self.kind() != Kind::Number {
            return None;
        }
        Decimal::parse(self.raw.get().trim())
    }

    /// The number's written text, or `None`.
    pub fn number_text(&self) -> Option<&'a str> {
        (self.kind() == Kind::Number).then(|| self.raw.get().trim())
    }
}

/// `pointer` + `/` + `token`, escaped per RFC 6901.
pub fn child(pointer: &str, token: &str) -> String {
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

/// `pointer` + `/` + `index`.
pub fn index(pointer: &str, index: usize) -> String {
    format!("{pointer}/{index}")
}

struct LimitedSeq<'c> {
    limit: usize,
    over: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for LimitedSeq<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for LimitedSeq<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if out.len() == self.limit {
                self.over.set(true);
                return Err(de::Error::custom("too many elements"));
            }
            out.push(item);
        }
        Ok(out)
    }
}

struct LimitedMap<'c> {
    limit: usize,
    over: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for LimitedMap<'_> {
    type Value = Vec<(String, &'de RawValue)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LimitedMap<'_> {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
            if out.len() == self.limit {
                self.over.set(true);
                return Err(de::Error::custom("too many members"));
            }
            out.push((key, value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_digits() {
        let root = parse_body(br#"[98.60, 1e-22, -0, 1000000000000000000]"#, "JSON").unwrap();
        let items = Node::new(root).elements(10).unwrap();
        let texts: Vec<_> = items
            .iter()
            .map(|n| n.as_decimal().unwrap().as_str().to_owned())
            .collect();
        assert_eq!(texts, ["98.60", "1e-22", "-0", "1000000000000000000"]);
    }

    #[test]
    fn limits_stop_early() {
        let body = format!("[{}0]", "0,".repeat(100));
        let root = parse_body(body.as_bytes(), "JSON").unwrap();
        assert_eq!(
            Node::new(root).elements(100).unwrap_err(),
            SplitError::TooMany(100)
        );
        assert_eq!(Node::new(root).elements(101).unwrap().len(), 101);
    }

    #[test]
    fn malformed_bodies_say_where() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        match parse_body(deep.as_bytes(), "JSON").unwrap_err() {
            IngestError::Malformed { detail, at, .. } => {
                assert_eq!(detail, "nested deeper than 64 levels");
                assert_eq!(at, "byte 64");
            }
            other => panic!("{other:?}"),
        }
        match parse_body(b"{\"a\": \xff}", "JSON").unwrap_err() {
            IngestError::Malformed { at, detail, .. } => {
                assert_eq!(at, "byte 6");
                assert!(detail.contains("UTF-8"));
            }
            other => panic!("{other:?}"),
        }
        match parse_body(b"{\"a\":\n 1,}", "JSON").unwrap_err() {
            IngestError::Malformed { at, .. } => assert_eq!(at, "line 2, column 4"),
            other => panic!("{other:?}"),
        }
        assert!(parse_body(b"\xEF\xBB\xBF{}", "JSON").is_ok());
        let fine = format!("{}\"[[[\\\"{{\"{}", "[".repeat(63), "]".repeat(63));
        assert!(parse_body(fine.as_bytes(), "JSON").is_ok(), "{fine}");
    }

    #[test]
    fn pointers_escape_tokens() {
        assert_eq!(child("/a", "b/c~d"), "/a/b~1c~0d");
        assert_eq!(index("", 3), "/3");
    }
}
