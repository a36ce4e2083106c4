//! A hardened pull layer over `quick_xml::Reader` shared by the three formats.
//!
//! It refuses DOCTYPE (so no entity can ever be declared or expanded), decodes only the
//! predefined entities and character references, bounds the nesting depth without
//! recursion, and reports every problem with a line and column.
//!
//! Attribute values are returned borrowed from the payload whenever no entity or line end
//! needs decoding, so reading a value the parser then discards or converts costs no
//! allocation. Positions for data-quality warnings are computed incrementally (see
//! [`Xml::position_at`]), so a payload full of bad values stays linear to parse.

use std::borrow::Cow;
use std::cell::Cell;

use quick_xml::events::{BytesCData, BytesRef, BytesText};
use quick_xml::XmlVersion;

use crate::error::{Fail, ParseError, Position};
pub(crate) use crate::lex::Start;
use crate::lex::{LexError, Lexer, Token};
use medgate_core::Warning;

/// Default maximum element nesting depth.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// An event as the format parsers see it.
pub(crate) enum Ev<'a> {
    /// An element opened (empty elements are expanded into a start and an end).
    Start(Start<'a>),
    /// The innermost open element closed.
    End,
    /// Character data of the current element; decoded lazily because most is ignored.
    Text(Chunk<'a>),
}

/// One piece of character data, not yet EOL-normalized.
pub(crate) enum Chunk<'a> {
    /// Plain text (contains no references: those arrive as separate chunks).
    Text(BytesText<'a>),
    /// A CDATA section.
    CData(BytesCData<'a>),
    /// A resolved predefined entity or character reference (already final).
    Ref(Cow<'a, str>),
}

impl<'a> Chunk<'a> {
    /// The text with XML 1.0 line-end normalization applied.
    pub(crate) fn content(&self) -> Cow<'a, str> {
        match self {
            Chunk::Text(text) => text.xml10_content(),
            Chunk::CData(data) => data.xml10_content(),
            Chunk::Ref(text) => text.clone(),
        }
    }
}

/// The hardened reader over one in-memory payload.
pub(crate) struct Xml<'a> {
    lex: Lexer<'a>,
    bytes: &'a [u8],
    depth: usize,
    max_depth: usize,
    seen_root: bool,
    /// The last element opened was `<x/>`: its end is the next event.
    pending_end: bool,
    /// (offset, line, start of that line) of the last position computed.
    line_cache: Cell<(usize, u64, usize)>,
}

impl<'a> Xml<'a> {
    /// A reader over `bytes` refusing nesting deeper than `max_depth`.
    pub(crate) fn new(bytes: &'a [u8], max_depth: usize) -> Self {
        // Empty elements are expanded here (see `next`), not by the lexer: the synthetic end
        // then costs no trip through it, and FHIR is mostly `<x value=".."/>`.
        Xml {
            lex: Lexer::new(bytes),
            bytes,
            depth: 0,
            max_depth,
            seen_root: false,
            pending_end: false,
            line_cache: Cell::new((0, 1, 0)),
        }
    }

    /// Drops whitespace at the edges of text events inside the reader. Only for formats
    /// whose data is all in attributes (FHIR): it saves an event per indentation run.
    pub(crate) fn trim_text(mut self) -> Self {
        self.lex.set_trim(true);
        self
    }

    /// The payload's size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The current nesting depth (0 outside the root).
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// The position of the reader (just after the last event).
    pub(crate) fn position(&self) -> Position {
        self.position_at(self.offset())
    }

    /// The byte offset of the reader (just after the last event), for a position computed
    /// later with [`position_at`](Self::position_at).
    pub(crate) fn offset(&self) -> u64 {
        self.lex.offset() as u64
    }

    /// The line and column of byte `offset`. Scans forward from the last position computed,
    /// so positions requested in document order cost one pass over the payload in total.
    pub(crate) fn position_at(&self, offset: u64) -> Position {
        let end = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        let (mut from, mut line, mut line_start) = self.line_cache.get();
        if end < from {
            (from, line, line_start) = (0, 1, 0);
        }
        for (i, &b) in self.bytes[from..end].iter().enumerate() {
            if b == b'\n' {
                line += 1;
                line_start = from + i + 1;
            }
        }
        self.line_cache.set((end, line, line_start));
        Position {
            line,
            column: (end - line_start) as u64 + 1,
        }
    }

    /// A data-quality warning at the current position.
    pub(crate) fn warning(&self, message: impl Into<String>) -> Warning {
        Warning::new(self.position().to_string(), message)
    }

    /// A content error at the current position.
    #[cold]
    pub(crate) fn content_error(&self, detail: impl Into<String>) -> Fail {
        Box::new(ParseError::Content {
            detail: detail.into(),
            at: self.position(),
        })
    }

    #[cold]
    fn lex_failure(&self, e: &LexError) -> Fail {
        Box::new(ParseError::Syntax {
            detail: e.error.to_string(),
            at: self.position_at(e.offset as u64),
        })
    }

    #[cold]
    fn refused(&self, detail: impl Into<String>) -> Fail {
        Box::new(ParseError::Refused {
            detail: detail.into(),
            at: self.position(),
        })
    }

    #[cold]
    fn syntax(&self, detail: impl Into<String>) -> Fail {
        Box::new(ParseError::Syntax {
            detail: detail.into(),
            at: self.position(),
        })
    }

    /// Reads the root element's start tag, skipping the prolog.
    pub(crate) fn root(&mut self) -> Result<Start<'a>, Fail> {
        loop {
            match self.next()? {
                Some(Ev::Start(start)) => return Ok(start),
                Some(Ev::Text(_)) | Some(Ev::End) => {}
                None => return Err(self.syntax("no root element (not an XML document)")),
            }
        }
    }

    /// The next event; `None` at the end of a complete document.
    pub(crate) fn next(&mut self) -> Result<Option<Ev<'a>>, Fail> {
        if self.pending_end {
            self.pending_end = false;
            self.depth -= 1;
            return Ok(Some(Ev::End));
        }
        loop {
            let token = match self.lex.next() {
                Ok(token) => token,
                Err(e) => return Err(self.lex_failure(&e)),
            };
            match token {
                Token::Start(start) => return self.open(start).map(Some),
                Token::End => {
                    // The lexer checked that the name matched the innermost open element.
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Some(Ev::End));
                }
                Token::Text(text) => {
                    if self.depth == 0 {
                        self.outside_root_text(text.as_bytes())?;
                        continue;
                    }
                    return Ok(Some(Ev::Text(Chunk::Text(BytesText::from_escaped(text)))));
                }
                Token::CData(data) => {
                    if self.depth == 0 {
                        return Err(self.syntax("character data outside the root element"));
                    }
                    return Ok(Some(Ev::Text(Chunk::CData(BytesCData::new(data)))));
                }
                Token::Ref(name) => {
                    if self.depth == 0 {
                        return Err(self.syntax("entity reference outside the root element"));
                    }
                    return self
                        .resolve_ref(&BytesRef::new(name))
                        .map(|t| Some(Ev::Text(Chunk::Ref(t))));
                }
                Token::DocType => {
                    return Err(self.refused("DOCTYPE declarations are not allowed"));
                }
                Token::Empty(start) => {
                    let event = self.open(start)?;
                    self.pending_end = true;
                    return Ok(Some(event));
                }
                Token::Eof => {
                    if self.depth > 0 {
                        return Err(self.syntax("unexpected end of document"));
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn open(&mut self, start: Start<'a>) -> Result<Ev<'a>, Fail> {
        if self.depth == 0 {
            if self.seen_root {
                return Err(self.syntax("more than one root element"));
            }
            self.seen_root = true;
        }
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.refused(format!("element nesting depth exceeds {}", self.max_depth)));
        }
        Ok(Ev::Start(start))
    }

    fn outside_root_text(&self, text: &[u8]) -> Result<(), Fail> {
        // A UTF-8 BOM is not whitespace to quick-xml; tolerate it with the whitespace.
        let rest = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        if rest.iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else if self.seen_root {
            Err(self.syntax("content after the root element"))
        } else {
            Err(self.syntax("text before the root element (not an XML document)"))
        }
    }

    fn resolve_ref(&self, reference: &BytesRef<'a>) -> Result<Cow<'a, str>, Fail> {
        match reference.resolve_char_ref() {
            Ok(Some(c)) => return Ok(Cow::Owned(c.to_string())),
            Ok(None) => {}
            Err(err) => return Err(self.syntax(err.to_string())),
        }
        let name: &str = reference;
        match quick_xml::escape::resolve_predefined_entity(name) {
            Some(text) => Ok(Cow::Borrowed(text)),
            None => Err(self.refused(format!(
                "undeclared entity reference &{};",
                truncate(name, 32)
            ))),
        }
    }

    /// Skips the rest of the element whose start was just read, iteratively.
    pub(crate) fn skip(&mut self) -> Result<(), Fail> {
        // `<x .../>`, most of FHIR: its end is already known.
        if self.pending_end {
            self.pending_end = false;
            self.depth -= 1;
            return Ok(());
        }
        self.skip_until(self.depth.saturating_sub(1))
    }

    /// Skips events until the nesting depth is back to `depth` (closing every element open
    /// deeper than that), iteratively.
    pub(crate) fn skip_until(&mut self, depth: usize) -> Result<(), Fail> {
        let target = depth;
        while self.depth > target {
            if self.next()?.is_none() {
                return Err(self.syntax("unexpected end of document"));
            }
        }
        Ok(())
    }

    /// The next child element of the current element, or `None` once the current element
    /// has ended. Text between children is ignored.
    pub(crate) fn next_child(&mut self) -> Result<Option<Start<'a>>, Fail> {
        loop {
            match self.next()? {
                Some(Ev::Start(start)) => return Ok(Some(start)),
                Some(Ev::End) => return Ok(None),
                Some(Ev::Text(_)) => {}
                None => return Err(self.syntax("unexpected end of document")),
            }
        }
    }

    /// The text content of the current element (children's text included), consuming it.
    pub(crate) fn read_text(&mut self) -> Result<String, Fail> {
        let target = self.depth.saturating_sub(1);
        let mut out = String::new();
        while self.depth > target {
            match self.next()? {
                Some(Ev::Text(chunk)) => out.push_str(&chunk.content()),
                Some(_) => {}
                None => return Err(self.syntax("unexpected end of document")),
            }
        }
        Ok(out)
    }

    /// The value of attribute `local` (namespace prefix ignored) of `start`, entity-decoded,
    /// borrowed from the payload unless decoding changed it.
    pub(crate) fn attr<'s>(
        &self,
        start: &Start<'s>,
        local: &str,
    ) -> Result<Option<Cow<'s, str>>, Fail> {
        if let Some(value) = lone_plain_attribute(start.attributes_raw(), local) {
            return Ok(Some(Cow::Borrowed(value)));
        }
        let [value] = self.attrs(start, [local])?;
        Ok(value)
    }

    /// The values of several attributes of `start` in one pass over its attributes (same
    /// rules as [`attr`](Self::attr); `names` are local names).
    pub(crate) fn attrs<'s, const N: usize>(
        &self,
        start: &Start<'s>,
        names: [&str; N],
    ) -> Result<[Option<Cow<'s, str>>; N], Fail> {
        let mut found: [Option<Cow<'s, str>>; N] = std::array::from_fn(|_| None);
        // Duplicate-attribute checking allocates per element and is the hot path's largest
        // avoidable cost; syntax is still checked, and the first occurrence wins.
        let mut attributes = start.attributes();
        attributes.with_checks(false);
        for attr in attributes {
            let attr = attr.map_err(|e| self.syntax(e.to_string()))?;
            let key = attr.key.0;
            let key = key
                .bytes()
                .position(|b| b == b':')
                .map_or(key, |colon| &key[colon + 1..]);
            let Some(i) = names.iter().position(|n| *n == key) else {
                continue;
            };
            if found[i].is_none() {
                let value = attr
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| self.refused(e.to_string()))?;
                found[i] = Some(value);
            }
        }
        Ok(found)
    }

    /// The namespace URI bound to the prefix of `start`'s name, looked up on `start` itself
    /// (only meaningful for the root element, where all our formats declare it).
    pub(crate) fn root_namespace(&self, start: &Start<'_>) -> Result<Option<String>, Fail> {
        let wanted = match start.prefix() {
            Some(prefix) => format!("xmlns:{prefix}"),
            None => "xmlns".to_owned(),
        };
        for attr in start.attributes() {
            let attr = attr.map_err(|e| self.syntax(e.to_string()))?;
            if attr.key.as_ref() == wanted {
                let value = attr
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| self.refused(e.to_string()))?;
                return Ok(Some(value.into_owned()));
            }
        }
        Ok(None)
    }
}

/// The fast path of [`Xml::attr`] for the shape FHIR writes every primitive in: exactly one
/// attribute, `local="text"`, unprefixed, whose text needs no decoding (no `&`, no line end
/// or tab to normalize, no `<`). Anything else returns `None` and takes quick-xml's full
/// attribute parser, so the result is the same either way and malformed attributes are
/// still reported by that parser.
fn lone_plain_attribute<'s>(raw: &'s str, local: &str) -> Option<&'s str> {
    let b = raw.as_bytes();
    let skip_ws = |mut i: usize| {
        while b.get(i).is_some_and(|&c| is_xml_whitespace(c)) {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(0);
    if !b[i..].starts_with(local.as_bytes()) {
        return None;
    }
    i = skip_ws(i + local.len());
    if b.get(i) != Some(&b'=') {
        return None;
    }
    i = skip_ws(i + 1);
    let quote = *b.get(i)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let start = i + 1;
    let end = crate::lex::find1(b, start, quote)?;
    if crate::lex::needs_decoding(&b[start..end]) {
        return None;
    }
    // Both ends are ASCII quotes, so both are character boundaries.
    (skip_ws(end + 1) == b.len()).then(|| &raw[start..end])
}

fn is_xml_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// The local name of an element (after the first `:`, as quick-xml defines it).
pub(crate) fn local<'s>(start: &Start<'s>) -> &'s str {
    start.local()
}

/// At most `max` bytes of `text`, cut on a char boundary (keeps error messages short).
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first start tag of `doc`, and the reader positioned after it.
    fn first_start(doc: &str) -> (Xml<'_>, Start<'_>) {
        let mut xml = Xml::new(doc.as_bytes(), DEFAULT_MAX_DEPTH);
        let start = xml.root().unwrap();
        (xml, start)
    }

    #[test]
    fn the_attribute_fast_path_agrees_with_the_full_parser() {
        let cases = [
            (r#"<x value="2339-0"/>"#, Some("2339-0")),
            (r#"<x  value = '7.10' />"#, Some("7.10")),
            (r#"<x value=""/>"#, Some("")),
            (r#"<x value="a &amp; b"/>"#, Some("a & b")),
            (r#"<x value="a&#x41;"/>"#, Some("aA")),
            ("<x value=\"a\tb\nc\"/>", Some("a b c")),
            (r#"<x value="it's"/>"#, Some("it's")),
            (r#"<x f:value="p"/>"#, Some("p")),
            (r#"<x valueX="no"/>"#, None),
            (r#"<x id="1" value="second"/>"#, Some("second")),
            (r#"<x value="first" id="1"/>"#, Some("first")),
            (r#"<x value="first" value="dup"/>"#, Some("first")),
            (r#"<x other="1"/>"#, None),
            (r#"<x/>"#, None),
        ];
        for (doc, want) in cases {
            let (xml, start) = first_start(doc);
            let fast = lone_plain_attribute(start.attributes_raw(), "value");
            let [full] = xml.attrs(&start, ["value"]).unwrap();
            assert_eq!(full.as_deref(), want, "{doc}");
            if let Some(fast) = fast {
                assert_eq!(Some(fast), want, "{doc}");
            }
            assert_eq!(xml.attr(&start, "value").unwrap().as_deref(), want, "{doc}");
        }
        // Only the plain single-attribute shapes take the fast path.
        let fast = |doc: &str| {
            lone_plain_attribute(first_start(doc).1.attributes_raw(), "value").map(str::to_owned)
        };
        assert_eq!(fast(r#"<x value="2339-0"/>"#).as_deref(), Some("2339-0"));
        assert_eq!(fast(r#"<x value="a &amp; b"/>"#), None);
        assert_eq!(fast(r#"<x id="1" value="v"/>"#), None);
    }

    #[test]
    fn incremental_positions_match_a_scan_from_the_start() {
        let doc = "<a>\n  <b/>\r\n<c>text\n</c>\n</a>\n";
        let xml = Xml::new(doc.as_bytes(), DEFAULT_MAX_DEPTH);
        let offsets = [0u64, 3, 4, 9, 12, 20, 5, 1, 25, 999];
        for offset in offsets {
            assert_eq!(
                xml.position_at(offset),
                Position::of(doc.as_bytes(), offset),
                "{offset}"
            );
        }
    }
}
