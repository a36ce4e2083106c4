//! A hardened pull layer over `quick_xml::Reader` shared by the three formats.
//!
//! It refuses DOCTYPE (so no entity can ever be declared or expanded), decodes only the
//! predefined entities and character references, bounds the nesting depth without
//! recursion, and reports every problem with a line and column.

use std::borrow::Cow;

use quick_xml::events::{BytesCData, BytesRef, BytesStart, BytesText, Event};
use quick_xml::{Reader, XmlVersion};

use crate::error::{ParseError, Position};

/// Default maximum element nesting depth.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// An event as the format parsers see it.
pub(crate) enum Ev<'a> {
    /// An element opened (empty elements are expanded into a start and an end).
    Start(BytesStart<'a>),
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
    reader: Reader<&'a [u8]>,
    bytes: &'a [u8],
    depth: usize,
    max_depth: usize,
    seen_root: bool,
}

impl<'a> Xml<'a> {
    /// A reader over `bytes` refusing nesting deeper than `max_depth`.
    pub(crate) fn new(bytes: &'a [u8], max_depth: usize) -> Self {
        let mut reader = Reader::from_reader(bytes);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = true;
        config.check_comments = false;
        Xml {
            reader,
            bytes,
            depth: 0,
            max_depth,
            seen_root: false,
        }
    }

    /// Drops whitespace at the edges of text events inside the reader. Only for formats
    /// whose data is all in attributes (FHIR): it saves an event per indentation run.
    pub(crate) fn trim_text(mut self) -> Self {
        self.reader.config_mut().trim_text(true);
        self
    }

    /// The current nesting depth (0 outside the root).
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// The position of the reader (just after the last event).
    pub(crate) fn position(&self) -> Position {
        Position::of(self.bytes, self.reader.buffer_position())
    }

    /// A content error at the current position.
    pub(crate) fn content_error(&self, detail: impl Into<String>) -> ParseError {
        ParseError::Content {
            detail: detail.into(),
            at: self.position(),
        }
    }

    fn refused(&self, detail: impl Into<String>) -> ParseError {
        ParseError::Refused {
            detail: detail.into(),
            at: self.position(),
        }
    }

    fn syntax(&self, detail: impl Into<String>) -> ParseError {
        ParseError::Syntax {
            detail: detail.into(),
            at: self.position(),
        }
    }

    /// Reads the root element's start tag, skipping the prolog.
    pub(crate) fn root(&mut self) -> Result<BytesStart<'a>, ParseError> {
        loop {
            match self.next()? {
                Some(Ev::Start(start)) => return Ok(start),
                Some(Ev::Text(_)) | Some(Ev::End) => {}
                None => return Err(self.syntax("no root element (not an XML document)")),
            }
        }
    }

    /// The next event; `None` at the end of a complete document.
    pub(crate) fn next(&mut self) -> Result<Option<Ev<'a>>, ParseError> {
        loop {
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(err) => {
                    return Err(ParseError::Syntax {
                        detail: err.to_string(),
                        at: Position::of(self.bytes, self.reader.error_position()),
                    })
                }
            };
            match event {
                Event::Start(start) => return self.open(start).map(Some),
                Event::End(_) => {
                    // check_end_names guarantees the name matched the innermost open element.
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Some(Ev::End));
                }
                Event::Text(text) => {
                    if self.depth == 0 {
                        self.outside_root_text(text.as_bytes())?;
                        continue;
                    }
                    return Ok(Some(Ev::Text(Chunk::Text(text))));
                }
                Event::CData(data) => {
                    if self.depth == 0 {
                        return Err(self.syntax("character data outside the root element"));
                    }
                    return Ok(Some(Ev::Text(Chunk::CData(data))));
                }
                Event::GeneralRef(reference) => {
                    if self.depth == 0 {
                        return Err(self.syntax("entity reference outside the root element"));
                    }
                    return self
                        .resolve_ref(&reference)
                        .map(|t| Some(Ev::Text(Chunk::Ref(t))));
                }
                Event::DocType(_) => {
                    return Err(self.refused("DOCTYPE declarations are not allowed"));
                }
                Event::Empty(_) => {
                    // Unreachable with expand_empty_elements; refuse rather than mis-nest.
                    return Err(self.syntax("unexpected empty element event"));
                }
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
                Event::Eof => {
                    if self.depth > 0 {
                        return Err(self.syntax("unexpected end of document"));
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn open(&mut self, start: BytesStart<'a>) -> Result<Ev<'a>, ParseError> {
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

    fn outside_root_text(&self, text: &[u8]) -> Result<(), ParseError> {
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

    fn resolve_ref(&self, reference: &BytesRef<'a>) -> Result<Cow<'a, str>, ParseError> {
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
    pub(crate) fn skip(&mut self) -> Result<(), ParseError> {
        let target = self.depth.saturating_sub(1);
        while self.depth > target {
            if self.next()?.is_none() {
                return Err(self.syntax("unexpected end of document"));
            }
        }
        Ok(())
    }

    /// The next child element of the current element, or `None` once the current element
    /// has ended. Text between children is ignored.
    pub(crate) fn next_child(&mut self) -> Result<Option<BytesStart<'a>>, ParseError> {
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
    pub(crate) fn read_text(&mut self) -> Result<String, ParseError> {
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

    /// The value of attribute `local` (namespace prefix ignored) of `start`, entity-decoded.
    pub(crate) fn attr(
        &self,
        start: &BytesStart<'a>,
        local: &str,
    ) -> Result<Option<String>, ParseError> {
        // Duplicate-attribute checking allocates per element and is the hot path's largest
        // avoidable cost; syntax is still checked, and the first occurrence wins.
        let mut attributes = start.attributes();
        attributes.with_checks(false);
        for attr in attributes {
            let attr = attr.map_err(|e| self.syntax(e.to_string()))?;
            if attr.key.local_name().as_ref() == local {
                let value = attr
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| self.refused(e.to_string()))?;
                return Ok(Some(value.into_owned()));
            }
        }
        Ok(None)
    }

    /// The namespace URI bound to the prefix of `start`'s name, looked up on `start` itself
    /// (only meaningful for the root element, where all our formats declare it).
    pub(crate) fn root_namespace(
        &self,
        start: &BytesStart<'a>,
    ) -> Result<Option<String>, ParseError> {
        let name = start.name();
        let wanted = match name.prefix() {
            Some(prefix) => format!("xmlns:{}", prefix.as_ref()),
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
