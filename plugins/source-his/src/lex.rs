//! The XML tokenizer under [`Xml`](crate::xml::Xml): one UTF-8 check per payload, then
//! tokens that borrow from it.
//!
//! quick-xml's own reader validates UTF-8 once per event and copies every element name into
//! a stack of its own; on FHIR's short `<x value=".."/>` elements that per-event work costs
//! more than finding the markup. This tokenizer checks the whole payload once (SIMD), keeps
//! the open names as slices of the payload, and otherwise follows quick-xml 0.42's reader
//! rule for rule (the same markup boundaries, quote handling, end-name checks, whitespace
//! trimming and error kinds, so error messages read the same), which
//! `tests/parse/lexer.rs` checks against quick-xml's reader over every fixture and
//! thousands of mutated payloads. Attribute parsing off the fast path stays quick-xml's
//! ([`Start::attributes`]).
//!
//! Two deliberate differences: invalid UTF-8 is reported at the first invalid byte (quick-xml
//! reports the event holding it), and a DOCTYPE is a token as soon as `<!DOCTYPE` is seen,
//! without scanning the declaration (it is refused anyway).

use quick_xml::errors::{Error as XmlError, IllFormedError, SyntaxError};
use quick_xml::events::attributes::Attributes;
use quick_xml::parser::{Parser as _, PiParser};

/// A start tag's content (`name attrs`, without `<`, `>` or `/>`), borrowed from the payload
/// for the whole parse, so values read from it can outlive the token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start<'a> {
    content: &'a str,
    name_len: usize,
}

impl<'a> Start<'a> {
    /// The qualified name (`f:Observation`).
    pub(crate) fn name(&self) -> &'a str {
        &self.content[..self.name_len]
    }

    /// The name after the first `:` (as quick-xml's `local_name`).
    pub(crate) fn local(&self) -> &'a str {
        let name = self.name();
        match name.bytes().position(|b| b == b':') {
            Some(colon) => &name[colon + 1..],
            None => name,
        }
    }

    /// The prefix of the name, if it has one.
    pub(crate) fn prefix(&self) -> Option<&'a str> {
        let name = self.name();
        name.bytes()
            .position(|b| b == b':')
            .map(|colon| &name[..colon])
    }

    /// The text after the name (attributes and whitespace).
    pub(crate) fn attributes_raw(&self) -> &'a str {
        &self.content[self.name_len..]
    }

    /// quick-xml's attribute parser over this tag (it checks their syntax).
    pub(crate) fn attributes(&self) -> Attributes<'a> {
        Attributes::new(self.content, self.name_len)
    }

    /// The whole content, for comparisons in tests.
    #[cfg(test)]
    pub(crate) fn content(&self) -> &'a str {
        self.content
    }
}

/// One token.
#[derive(Debug)]
pub(crate) enum Token<'a> {
    /// `<name attrs>`.
    Start(Start<'a>),
    /// `<name attrs/>` (no end token follows).
    Empty(Start<'a>),
    /// `</name>` of the innermost open element.
    End,
    /// Character data up to markup or a reference (trimmed when trimming is on).
    Text(&'a str),
    /// The content of `<![CDATA[…]]>`.
    CData(&'a str),
    /// The name of a reference `&name;` (without `&` and `;`).
    Ref(&'a str),
    /// `<!DOCTYPE` was seen (not scanned further).
    DocType,
    /// The end of the payload.
    Eof,
}

/// A tokenizer error: quick-xml's error value (for the same message) and its byte offset.
#[derive(Debug)]
pub(crate) struct LexError {
    pub(crate) error: XmlError,
    pub(crate) offset: usize,
}

/// Errors are rare and large: boxed, they keep every token's `Result` small.
#[cold]
fn lex_error(error: XmlError, offset: usize) -> Box<LexError> {
    Box::new(LexError { error, offset })
}

/// The tokenizer over one payload.
pub(crate) struct Lexer<'a> {
    /// The payload.
    bytes: &'a [u8],
    /// The longest valid UTF-8 prefix of the payload (all of it when it is valid).
    text: &'a str,
    /// Offset of the first invalid UTF-8 byte, if the payload is not UTF-8.
    invalid_at: Option<usize>,
    /// Next byte to read.
    pos: usize,
    /// Names of the open elements, innermost last.
    open: Vec<&'a str>,
    /// Skip whitespace before text and markup and cut it after text (quick-xml's
    /// `trim_text(true)`).
    trim: bool,
    /// An error or the end was reported: only `Eof` follows.
    done: bool,
}

impl<'a> Lexer<'a> {
    /// A tokenizer over `bytes`; a leading UTF-8 byte order mark is skipped.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        let (text, invalid_at) = match simdutf8::basic::from_utf8(bytes) {
            Ok(text) => (text, None),
            Err(_) => {
                // Only on failure: the standard library says where.
                let valid = std::str::from_utf8(bytes).map_or_else(|e| e.valid_up_to(), str::len);
                let text = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
                (text, Some(valid))
            }
        };
        let pos = if text.starts_with('\u{feff}') { 3 } else { 0 };
        Lexer {
            bytes,
            text,
            invalid_at,
            pos,
            open: Vec::with_capacity(16),
            trim: false,
            done: false,
        }
    }

    /// Turns whitespace trimming on or off.
    pub(crate) fn set_trim(&mut self, trim: bool) {
        self.trim = trim;
    }

    /// The offset just after the last token.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    /// The next token.
    pub(crate) fn next(&mut self) -> Result<Token<'a>, Box<LexError>> {
        if self.done {
            return Ok(Token::Eof);
        }
        let result = self.token();
        if matches!(result, Err(_) | Ok(Token::Eof | Token::DocType)) {
            self.done = true;
        }
        result
    }

    fn token(&mut self) -> Result<Token<'a>, Box<LexError>> {
        let bytes = self.text.as_bytes();
        loop {
            if self.trim {
                while self.pos < bytes.len() && is_whitespace(bytes[self.pos]) {
                    self.pos += 1;
                }
            }
            return match bytes.get(self.pos) {
                None => self.end_of_input(),
                // Comments, declarations and processing instructions give no token.
                Some(b'<') => match self.markup()? {
                    Some(token) => Ok(token),
                    None => continue,
                },
                Some(b'&') => self.reference(),
                Some(_) => self.text(),
            };
        }
    }

    /// The valid text ran out: the end of the payload, or its first invalid byte.
    fn end_of_input(&self) -> Result<Token<'a>, Box<LexError>> {
        match self.invalid_at {
            None => Ok(Token::Eof),
            Some(at) => Err(self.utf8_error(at)),
        }
    }

    #[cold]
    fn utf8_error(&self, at: usize) -> Box<LexError> {
        let error = match std::str::from_utf8(self.bytes) {
            Err(e) => XmlError::Encoding(e.into()),
            // Unreachable: `invalid_at` is only set for a payload that is not UTF-8.
            Ok(_) => XmlError::Syntax(SyntaxError::UnclosedTag),
        };
        lex_error(error, at)
    }

    /// An error found where the valid text ran out: when the payload is not UTF-8 that is
    /// the real problem, else `error` at `offset`.
    #[cold]
    fn fail(&self, error: XmlError, offset: usize) -> Box<LexError> {
        match self.invalid_at {
            Some(at) => self.utf8_error(at),
            None => lex_error(error, offset),
        }
    }

    fn text(&mut self) -> Result<Token<'a>, Box<LexError>> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let end = memchr::memchr2(b'<', b'&', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        if end == bytes.len() {
            if let Some(at) = self.invalid_at {
                return Err(self.utf8_error(at));
            }
        }
        self.pos = end;
        let mut text = &self.text[start..end];
        if self.trim {
            let kept = text
                .as_bytes()
                .iter()
                .rposition(|&b| !is_whitespace(b))
                .map_or(0, |p| p + 1);
            text = &text[..kept];
        }
        if end == bytes.len() && text.is_empty() {
            return Ok(Token::Eof);
        }
        Ok(Token::Text(text))
    }

    fn reference(&mut self) -> Result<Token<'a>, Box<LexError>> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        match memchr::memchr3(b';', b'&', b'<', &bytes[start + 1..]) {
            Some(i) if bytes[start + 1 + i] == b';' => {
                self.pos = start + i + 2;
                Ok(Token::Ref(&self.text[start + 1..start + 1 + i]))
            }
            found => {
                if found.is_none() {
                    if let Some(at) = self.invalid_at {
                        return Err(self.utf8_error(at));
                    }
                }
                Err(lex_error(
                    XmlError::IllFormed(IllFormedError::UnclosedReference),
                    start,
                ))
            }
        }
    }

    fn markup(&mut self) -> Result<Option<Token<'a>>, Box<LexError>> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        match bytes.get(start + 1) {
            Some(b'!') => self.bang(),
            Some(b'/') => {
                let end = self.element_end(start)?;
                self.end_tag(start, end).map(Some)
            }
            Some(b'?') => self.processing_instruction().map(|()| None),
            Some(_) => {
                let end = self.element_end(start)?;
                Ok(Some(self.start_tag(start, end)))
            }
            None => Err(self.fail(XmlError::Syntax(SyntaxError::UnclosedTag), start)),
        }
    }

    /// The offset of the `>` closing the tag at `start`, a `>` inside a quoted value not
    /// counting (quick-xml's `ElementParser` rule).
    fn element_end(&self, start: usize) -> Result<usize, Box<LexError>> {
        let bytes = self.text.as_bytes();
        let mut i = start + 1;
        while let Some(at) = find3(bytes, i, b'>', b'"', b'\'') {
            let b = bytes[at];
            if b == b'>' {
                return Ok(at);
            }
            match find1(bytes, at + 1, b) {
                Some(close) => i = close + 1,
                None => {
                    let error = if b == b'"' {
                        SyntaxError::UnclosedDoubleQuotedAttributeValue
                    } else {
                        SyntaxError::UnclosedSingleQuotedAttributeValue
                    };
                    return Err(self.fail(XmlError::Syntax(error), start));
                }
            }
        }
        Err(self.fail(XmlError::Syntax(SyntaxError::UnclosedTag), start))
    }

    fn start_tag(&mut self, start: usize, gt: usize) -> Token<'a> {
        self.pos = gt + 1;
        let inner = &self.text[start + 1..gt];
        if let Some(content) = inner.strip_suffix('/') {
            let name_len = name_len(content.as_bytes());
            return Token::Empty(Start { content, name_len });
        }
        let name_len = name_len(inner.as_bytes());
        self.open.push(&inner[..name_len]);
        Token::Start(Start {
            content: inner,
            name_len,
        })
    }

    fn end_tag(&mut self, start: usize, gt: usize) -> Result<Token<'a>, Box<LexError>> {
        self.pos = gt + 1;
        let content = &self.text[start + 2..gt];
        let kept = content
            .as_bytes()
            .iter()
            .rposition(|&b| !is_whitespace(b))
            .map_or(content.len(), |p| p + 1);
        let name = &content[..kept];
        match self.open.pop() {
            Some(expected) if expected == name => Ok(Token::End),
            Some(expected) => Err(lex_error(
                XmlError::IllFormed(IllFormedError::MismatchedEndTag {
                    expected: expected.to_owned(),
                    found: name.to_owned(),
                }),
                start,
            )),
            None => Err(lex_error(
                XmlError::IllFormed(IllFormedError::UnmatchedEndTag(name.to_owned())),
                start,
            )),
        }
    }

    fn processing_instruction(&mut self) -> Result<(), Box<LexError>> {
        let start = self.pos;
        let rest = &self.text.as_bytes()[start..];
        let mut parser = PiParser::default();
        let Some(i) = parser.feed(rest) else {
            return Err(self.fail(XmlError::Syntax(parser.eof_error(rest)), start));
        };
        // `<??>` at least, as quick-xml.
        if i < 3 {
            return Err(lex_error(XmlError::Syntax(SyntaxError::UnclosedPI), start));
        }
        self.pos = start + i + 1;
        Ok(())
    }

    fn bang(&mut self) -> Result<Option<Token<'a>>, Box<LexError>> {
        let start = self.pos;
        let rest = &self.text.as_bytes()[start..];
        let (ends_at, error) = match rest.get(2) {
            Some(b'[') => (find_gt_after(rest, b"]]", 0), SyntaxError::UnclosedCData),
            Some(b'-') => (find_gt_after(rest, b"--", 5), SyntaxError::UnclosedComment),
            Some(b'D' | b'd') => {
                if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"<!DOCTYPE") {
                    self.pos = start + 9;
                    return Ok(Some(Token::DocType));
                }
                return Err(self.fail(XmlError::Syntax(SyntaxError::UnclosedDoctype), start));
            }
            _ => {
                return Err(self.fail(XmlError::Syntax(SyntaxError::InvalidBangMarkup), start));
            }
        };
        let Some(gt) = ends_at else {
            return Err(self.fail(XmlError::Syntax(error), start));
        };
        let markup = &rest[..=gt];
        self.pos = start + gt + 1;
        if error == SyntaxError::UnclosedCData {
            if !markup.starts_with(b"<![CDATA[") {
                return Err(lex_error(XmlError::Syntax(error), start));
            }
            return Ok(Some(Token::CData(&self.text[start + 9..start + gt - 2])));
        }
        if !markup.starts_with(b"<!--") {
            return Err(lex_error(XmlError::Syntax(error), start));
        }
        Ok(None)
    }
}

// Tags and attribute values are a few dozen bytes: too short for a vectorized search to pay
// for its set-up, too long for a byte loop. These look at eight bytes per step (SWAR); the
// lowest flagged byte of each step is exact, which is the only one they use.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit set in every byte of `x` that is zero (exact for the lowest such byte).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

/// The index of the first byte from `from` equal to `a`.
#[inline]
pub(crate) fn find1(bytes: &[u8], from: usize, a: u8) -> Option<usize> {
    let mut i = from;
    while let Some(x) = word_at(bytes, i) {
        let hits = zero_bytes(x ^ (LO * u64::from(a)));
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes.get(i..)?.iter().position(|&c| c == a).map(|p| i + p)
}

/// The index of the first byte from `from` equal to `a`, `b` or `c`.
#[inline]
pub(crate) fn find3(bytes: &[u8], from: usize, a: u8, b: u8, c: u8) -> Option<usize> {
    let mut i = from;
    while let Some(x) = word_at(bytes, i) {
        let hits = zero_bytes(x ^ (LO * u64::from(a)))
            | zero_bytes(x ^ (LO * u64::from(b)))
            | zero_bytes(x ^ (LO * u64::from(c)));
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes
        .get(i..)?
        .iter()
        .position(|&x| x == a || x == b || x == c)
        .map(|p| i + p)
}

/// Whether `bytes` holds anything that makes an attribute value differ from its text once
/// normalized: a reference (`&`), `<` (an error), either quote (the value's own quote
/// cannot occur; the other is legal but rare) or a control byte (line ends and tabs become
/// spaces). Such values take quick-xml's full attribute path.
pub(crate) fn needs_decoding(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let control = x.wrapping_sub(LO * 0x20) & !x & HI;
        let hits = zero_bytes(x ^ (LO * u64::from(b'&')))
            | zero_bytes(x ^ (LO * u64::from(b'<')))
            | zero_bytes(x ^ (LO * u64::from(b'"')))
            | zero_bytes(x ^ (LO * u64::from(b'\'')))
            | control;
        if hits != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || matches!(c, b'&' | b'<' | b'"' | b'\''))
}

/// The index of the first `>` in `bytes` preceded by `suffix` and past index `min`
/// (quick-xml's rule for comments, `<!---->` at least, and CDATA sections).
fn find_gt_after(bytes: &[u8], suffix: &[u8], min: usize) -> Option<usize> {
    memchr::memchr_iter(b'>', bytes).find(|&i| i > min && bytes[..i].ends_with(suffix))
}

/// XML whitespace as quick-xml defines it.
fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\r' | b'\n' | b'\t')
}

/// The length of the name at the start of a tag's content (up to the first whitespace).
fn name_len(content: &[u8]) -> usize {
    content
        .iter()
        .position(|&b| is_whitespace(b))
        .unwrap_or(content.len())
}

#[cfg(test)]
mod tests {
    //! The tokenizer against quick-xml's reader (configured as medgate used it) over every
    //! XML fixture and thousands of mutations of them: the same tokens, and an error exactly
    //! where quick-xml has one (at the same offset, except for invalid UTF-8, reported at
    //! the first invalid byte, and DOCTYPE, a token as soon as it starts).

    use quick_xml::events::Event;
    use quick_xml::Reader;

    use super::*;

    #[derive(Debug, PartialEq)]
    enum Tok {
        Start(String),
        Empty(String),
        End,
        Text(String),
        CData(String),
        Ref(String),
        DocType,
        Eof,
        Err(Option<u64>),
    }

    fn ours(bytes: &[u8], trim: bool) -> Vec<Tok> {
        let mut lex = Lexer::new(bytes);
        lex.set_trim(trim);
        let mut out = Vec::new();
        loop {
            let tok = match lex.next() {
                Ok(Token::Start(s)) => Tok::Start(s.content().to_owned()),
                Ok(Token::Empty(s)) => Tok::Empty(s.content().to_owned()),
                Ok(Token::End) => Tok::End,
                Ok(Token::Text(t)) => Tok::Text(t.to_owned()),
                Ok(Token::CData(t)) => Tok::CData(t.to_owned()),
                Ok(Token::Ref(t)) => Tok::Ref(t.to_owned()),
                Ok(Token::DocType) => Tok::DocType,
                Ok(Token::Eof) => Tok::Eof,
                Err(e) => match e.error {
                    XmlError::Encoding(_) => Tok::Err(None),
                    _ => Tok::Err(Some(e.offset as u64)),
                },
            };
            let stop = matches!(tok, Tok::Eof | Tok::Err(_) | Tok::DocType);
            out.push(tok);
            if stop {
                return out;
            }
        }
    }

    fn quick_xml(bytes: &[u8], trim: bool) -> Vec<Tok> {
        let mut reader = Reader::from_reader(bytes);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        config.check_comments = false;
        config.trim_text(trim);
        let mut out = Vec::new();
        loop {
            let tok = match reader.read_event() {
                Ok(Event::Start(s)) => Tok::Start((*s).to_owned()),
                Ok(Event::Empty(s)) => Tok::Empty((*s).to_owned()),
                Ok(Event::End(_)) => Tok::End,
                Ok(Event::Text(t)) => Tok::Text((*t).to_owned()),
                Ok(Event::CData(t)) => Tok::CData((*t).to_owned()),
                Ok(Event::GeneralRef(t)) => Tok::Ref((*t).to_owned()),
                Ok(Event::DocType(_)) => Tok::DocType,
                Ok(Event::Comment(_) | Event::PI(_) | Event::Decl(_)) => continue,
                Ok(Event::Eof) => Tok::Eof,
                Err(quick_xml::Error::Encoding(_)) => Tok::Err(None),
                Err(_) => Tok::Err(Some(reader.error_position())),
            };
            let stop = matches!(tok, Tok::Eof | Tok::Err(_) | Tok::DocType);
            out.push(tok);
            if stop {
                return out;
            }
        }
    }

    fn agree(bytes: &[u8], what: &str) {
        for trim in [false, true] {
            let mut ours = ours(bytes, trim);
            let theirs = quick_xml(bytes, trim);
            // A DOCTYPE is ours as soon as it starts; quick-xml may first find it malformed.
            if ours.last() == Some(&Tok::DocType) && matches!(theirs.last(), Some(Tok::Err(_))) {
                ours.pop();
                ours.push(theirs.last().map_or(Tok::Eof, |t| match t {
                    Tok::Err(at) => Tok::Err(*at),
                    _ => Tok::Eof,
                }));
            }
            // quick-xml's offsets do not count a byte order mark.
            if bytes.starts_with(b"\xEF\xBB\xBF") {
                for t in &mut ours {
                    if let Tok::Err(Some(at)) = t {
                        *at -= 3;
                    }
                }
            }
            assert_eq!(ours, theirs, "{what} (trim {trim})");
        }
    }

    fn fixtures() -> Vec<(String, Vec<u8>)> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
        let mut out = Vec::new();
        for family in ["fhir", "cda"] {
            let dir = std::fs::read_dir(format!("{root}/{family}")).unwrap();
            for entry in dir {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "xml") {
                    out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
                }
            }
        }
        assert!(out.len() > 30, "fixtures found: {}", out.len());
        out
    }

    #[test]
    fn word_searches_find_the_first_match() {
        let text = b"0123456789abcdef>\"'x>";
        for from in 0..text.len() + 2 {
            let slow1 = text
                .iter()
                .skip(from)
                .position(|&c| c == b'>')
                .map(|p| p + from);
            assert_eq!(find1(text, from, b'>'), slow1, "{from}");
            let slow3 = text
                .iter()
                .skip(from)
                .position(|&c| c == b'x' || c == b'"' || c == b'\'')
                .map(|p| p + from);
            assert_eq!(find3(text, from, b'x', b'"', b'\''), slow3, "{from}");
        }
        for value in ["", "plain", "http://loinc.org", "2024-01-01T00:13:38+08:00"] {
            assert!(!needs_decoding(value.as_bytes()), "{value}");
        }
        for value in [
            "a&b",
            "0123456789<",
            "it's",
            "say \"x\"",
            "tab\there",
            "line\nend",
            "\r",
        ] {
            assert!(needs_decoding(value.as_bytes()), "{value:?}");
        }
        // A byte just above a match (borrow propagation) must not be reported first.
        assert_eq!(find1(b"\x01\x00aaaaaaaaaa", 0, 0), Some(1));
        assert_eq!(find1(b"a\x3e\x3faaaaaaaaa", 0, b'>'), Some(1));
    }

    #[test]
    fn every_fixture_tokenizes_as_quick_xml_reads_it() {
        for (name, bytes) in fixtures() {
            agree(&bytes, &name);
        }
    }

    /// Small documents aimed at each rule.
    #[test]
    fn edge_cases_tokenize_as_quick_xml_reads_them() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"\xEF\xBB\xBF<a/>",
            b"<a>",
            b"<a></b>",
            b"</a>",
            b"<a></a >",
            b"<a></ a>",
            b"<a x='>'>t</a>",
            b"<a x=\"'\">t</a>",
            b"<a x=\"t",
            b"<a x='t",
            b"<",
            b"<a",
            b"<a/ >",
            b"<>",
            b"<></>",
            b"<a>&amp;</a>",
            b"<a>x &amp; y</a>",
            b"<a>&amp</a>",
            b"<a>&amp",
            b"<a>&;</a>",
            b"<a>& x;</a>",
            b"<a>&#x41;&#65;</a>",
            b"<a><![CDATA[x]]></a>",
            b"<a><![CDATA[x]></a>",
            b"<a><![CDATA[]]></a>",
            b"<a><![CDAT[x]]></a>",
            b"<a><!-- c --></a>",
            b"<a><!----></a>",
            b"<a><!---></a>",
            b"<a><!--></a>",
            b"<a><!-x--></a>",
            b"<a><!- c --></a>",
            b"<a><!x></a>",
            b"<a><!</a>",
            b"<?xml version='1.0'?><a/>",
            b"<?xml version='1.0'><a/>",
            b"<?><a/>",
            b"<??><a/>",
            b"<?pi x?><a/>",
            b"<!DOCTYPE a><a/>",
            b"<!doctype a><a/>",
            b"<!DOCTYPE a [<!ENTITY x 'y'>]><a/>",
            b"<!DOCTYP a><a/>",
            b"<!Da><a/>",
            b"<a>\xff</a>",
            b"<a x='\xc3'/>",
            b"<a>t</a>\xff",
            b"<a>\r\n t \r\n</a>",
            b"<a>  <b/>  </a>  ",
            b"text<a/>",
            b"<a/>text",
            b"<a:b xmlns:a='u'></a:b>",
            b"<a\tx='1'\n/>",
        ];
        for case in cases {
            agree(case, &String::from_utf8_lossy(case));
        }
    }

    /// Deterministic mutations of every fixture: cuts, deletions, insertions of markup
    /// characters and invalid UTF-8, and windows starting anywhere.
    #[test]
    fn mutated_fixtures_tokenize_as_quick_xml_reads_them() {
        const INSERTS: &[&[u8]] = &[
            b"<",
            b">",
            b"/",
            b"!",
            b"?",
            b"&",
            b";",
            b"\"",
            b"'",
            b"-",
            b"]",
            b"]]>",
            b"-->",
            b"<!--",
            b"<![CDATA[",
            b"<?",
            b"?>",
            b"</",
            b"/>",
            b"\xff",
            b"\xc3",
            b" ",
            b"\n",
            b"<!DOCTYPE",
            b"&amp;",
            b"&#",
            b"=",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        let mut cases = 0;
        for (name, bytes) in fixtures() {
            for _ in 0..60 {
                let at = random(bytes.len());
                let mut doc = bytes.clone();
                match random(4) {
                    0 => doc.truncate(at),
                    1 => {
                        let len = random(8) + 1;
                        doc.drain(at..(at + len).min(bytes.len()));
                    }
                    2 => {
                        let insert = INSERTS[random(INSERTS.len())];
                        doc.splice(at..at, insert.iter().copied());
                    }
                    _ => {
                        let len = random(4096) + 1;
                        doc = bytes[at..(at + len).min(bytes.len())].to_vec();
                    }
                }
                agree(&doc, &format!("{name} mutated at {at}"));
                cases += 1;
            }
        }
        assert!(cases > 2000, "{cases}");
    }
}
