//! A small strict HL7 v2 ER7 ("pipe and hat") parser: body → messages → segments → fields,
//! with components, repetitions, subcomponents and escapes decoded on demand.
//!
//! Why not a published crate (evaluated with `cargo info` and their sources):
//! - `hl7-parser` 0.3.0: its escape decoder slices the value with a *character* index as a
//!   byte index: `µµ\S\L` panics ("byte index 3 is not a char boundary"), `µmol\S\L`
//!   decodes to `µmol\L` (both checked against 0.3.0). MSH-2 is taken as exactly four
//!   characters, so with `^~\&#` (the v2.7 truncation character, in three of our real
//!   samples) MSH-3 reads `#` and every MSH field shifts by one. Hex escapes (`\X0d0a\`)
//!   are not decoded; one message per call (no batches).
//! - `rust-hl7` 0.5.0: self-described as experimental; `unwrap`/`expect` on input (hex
//!   escapes, segment parsing), CR-only segment splitting.
//! - `hl7v2` 1.5.0: AGPL-3.0 (medgate is Apache-2.0) and pulls in sqlx, reqwest and tokio.
//! - `hl7` 0.2.3 / 0.1.5: need Rust 1.96 / 1.95, above the workspace's `rust-version`.
//!
//! What this parser does (the traps are from `shared/realdata/SOURCES.md` §7a):
//! - Segments end with CR, LF or CRLF; empty lines are dropped; the last segment needs no
//!   terminator; a UTF-8 byte order mark is skipped.
//! - Separators are read from every MSH (and FHS/BHS): field separator MSH-1, then 3–5
//!   encoding characters (component, repetition, escape, subcomponent, truncation). `^~&`
//!   (three characters, as in the HL7 ELR IG examples) is read the way its senders mean it:
//!   `&` is the subcomponent separator and there is no escape character.
//! - Escapes: `\F\ \S\ \T\ \R\ \E\` (decoded after splitting, so `10\S\9/L` is one
//!   component `10^9/L`), `\Xhh…\` (bytes, UTF-8 or else Latin-1), `\.br\` and `\.sp\` as
//!   line breaks; highlighting, character-set and other formatting escapes are dropped.
//!   An escape without its closing character is kept as written.
//! - Bounded: at most [`MAX_SEGMENTS`] segments, [`MAX_FIELDS`] fields per segment and
//!   [`MAX_FIELD_LEN`] bytes per field; beyond that the body is refused, so a body of one
//!   endless segment or one huge field costs one linear scan.

use std::borrow::Cow;

/// Most segments one body may hold.
pub const MAX_SEGMENTS: usize = 100_000;
/// Most fields one segment may hold.
pub const MAX_FIELDS: usize = 512;
/// Longest field accepted, in bytes.
pub const MAX_FIELD_LEN: usize = 65_536;

/// The separators of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Separators {
    /// MSH-1, usually `|`.
    pub field: char,
    /// Usually `^`.
    pub component: char,
    /// Usually `~`.
    pub repetition: char,
    /// Usually `\`; `None` when the message declares none.
    pub escape: Option<char>,
    /// Usually `&`; `None` when the message declares none.
    pub subcomponent: Option<char>,
}

impl Default for Separators {
    fn default() -> Self {
        Separators {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: Some('&'),
        }
    }
}

/// What is wrong with a header's separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError(pub &'static str);

impl Separators {
    /// The separators declared by a header segment (`MSH`, `FHS`, `BHS`) line.
    ///
    /// # Errors
    /// A field separator or encoding characters HL7 does not allow.
    pub fn of_header(line: &str) -> Result<Separators, HeaderError> {
        let mut chars = line.chars().skip(3);
        let field = chars
            .next()
            .ok_or(HeaderError("the header ends before its field separator"))?;
        let encoding: Vec<char> = chars.take_while(|&c| c != field).collect();
        if !usable(field) {
            return Err(HeaderError(
                "the field separator must be an ASCII punctuation character",
            ));
        }
        if !(3..=5).contains(&encoding.len()) {
            return Err(HeaderError(
                "the encoding characters (field 2) must be 4 characters, e.g. ^~\\&",
            ));
        }
        let mut all = encoding.clone();
        all.push(field);
        let mut dedup = all.clone();
        dedup.sort_unstable();
        dedup.dedup();
        if dedup.len() != all.len() || !encoding.iter().all(|&c| usable(c)) {
            return Err(HeaderError(
                "the separators must be distinct ASCII punctuation characters",
            ));
        }
        let (escape, subcomponent) = match encoding.len() {
            // `^~&`: senders mean "no escape character, & separates subcomponents".
            3 if encoding[2] == '&' => (None, Some('&')),
            3 => (Some(encoding[2]), None),
            _ => (Some(encoding[2]), Some(encoding[3])),
        };
        Ok(Separators {
            field,
            component: encoding[0],
            repetition: encoding[1],
            escape,
            subcomponent,
        })
    }
}

fn usable(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// One segment: its name, line, and fields (index `n` is field `n`; for `MSH`, `FHS` and
/// `BHS` field 1 is the field separator and field 2 the encoding characters).
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    /// `MSH`, `PID`, `OBX` …
    pub name: &'a str,
    /// 1-based line of the body.
    pub line: usize,
    fields: Vec<&'a str>,
}

impl<'a> Segment<'a> {
    /// Field `n` as written (escapes not decoded); `""` when absent.
    pub fn field(&self, n: usize) -> &'a str {
        let raw = self.fields.get(n).copied().unwrap_or("");
        // `""` is HL7's explicit null.
        if raw == "\"\"" {
            ""
        } else {
            raw
        }
    }

    /// How many fields the segment has (the name excluded).
    pub fn len(&self) -> usize {
        self.fields.len().saturating_sub(1)
    }

    /// No field at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One message: its separators and segments (MSH first).
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// Its separators.
    pub separators: Separators,
    /// Its segments, MSH first.
    pub segments: Vec<Segment<'a>>,
}

/// A body split into messages, with the batch envelope's counts.
#[derive(Debug, Clone, Default)]
pub struct Body<'a> {
    /// The messages in body order.
    pub messages: Vec<Message<'a>>,
    /// Each BTS segment: (line, BTS-1 as written, messages since the last BHS).
    pub batch_trailers: Vec<(usize, &'a str, usize)>,
}

/// Why a body is not ER7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not UTF-8 (byte offset).
    Utf8(usize),
    /// Not well-formed: (line, what).
    Malformed(usize, String),
    /// A limit was passed: (what, limit).
    TooLarge(&'static str, usize),
    /// Well-formed lines that are not segments, or segments outside a message: (line, what).
    Segments(Vec<(usize, String)>),
}

/// Splits a body into messages.
///
/// # Errors
/// See [`ParseError`].
pub fn parse(body: &[u8]) -> Result<Body<'_>, ParseError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|e| ParseError::Utf8(e.valid_up_to()))?;
    let mut out = Body::default();
    let mut bad = Vec::new();
    let mut separators: Option<Separators> = None;
    let mut since_bhs = 0;
    let mut count = 0;
    for (line_no, line) in lines(text) {
        if line.trim().is_empty() {
            continue;
        }
        count += 1;
        if count > MAX_SEGMENTS {
            return Err(ParseError::TooLarge("segments in one body", MAX_SEGMENTS));
        }
        let name = line.get(..3).unwrap_or("");
        if matches!(name, "MSH" | "FHS" | "BHS") {
            match Separators::of_header(line) {
                Ok(s) => separators = Some(s),
                Err(HeaderError(what)) => {
                    return Err(ParseError::Malformed(line_no, format!("{name}: {what}")))
                }
            }
        }
        let Some(seps) = separators else {
            return Err(ParseError::Malformed(
                line_no,
                "not HL7 v2 ER7: the body must start with an MSH segment (or FHS/BHS of a batch)"
                    .into(),
            ));
        };
        let segment = match split_segment(line, line_no, seps)? {
            Some(s) => s,
            None => {
                bad.push((
                    line_no,
                    "not a segment: a segment starts with a three-character name (e.g. OBX) and the field separator"
                        .to_owned(),
                ));
                continue;
            }
        };
        match segment.name {
            "MSH" => {
                since_bhs += 1;
                out.messages.push(Message {
                    separators: seps,
                    segments: vec![segment],
                });
            }
            "BHS" => since_bhs = 0,
            "FHS" | "FTS" => {}
            "BTS" => out
                .batch_trailers
                .push((line_no, segment.field(1), since_bhs)),
            _ => match out.messages.last_mut() {
                Some(m) => m.segments.push(segment),
                None => bad.push((
                    line_no,
                    format!("{} segment before the first MSH", segment.name),
                )),
            },
        }
    }
    if !bad.is_empty() {
        return Err(ParseError::Segments(bad));
    }
    if out.messages.is_empty() {
        return Err(ParseError::Malformed(
            1,
            "the body holds no MSH segment".into(),
        ));
    }
    Ok(out)
}

/// The lines of `text` with their 1-based numbers (CR, LF and CRLF each end one line).
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text;
    let mut line_no = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            usize::from(end < rest.len())
        };
        rest = &rest[end + skip..];
        line_no += 1;
        Some((line_no, line))
    })
}

/// Splits a line into a segment, or `None` if it does not start like one.
fn split_segment(
    line: &str,
    line_no: usize,
    seps: Separators,
) -> Result<Option<Segment<'_>>, ParseError> {
    let b = line.as_bytes();
    let named = b.len() >= 3
        && b[0].is_ascii_uppercase()
        && b[1..3]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    let Some(name) = line.get(..3).filter(|_| named) else {
        return Ok(None);
    };
    let rest = &line[3..];
    if !(rest.is_empty() || rest.starts_with(seps.field)) {
        return Ok(None);
    }
    let mut fields = Vec::with_capacity(16);
    fields.push(name);
    let header = matches!(name, "MSH" | "FHS" | "BHS");
    let mut pieces = rest.split(seps.field).skip(1);
    if header {
        fields.push(&rest[..seps.field.len_utf8()]);
    }
    for piece in pieces.by_ref() {
        if fields.len() > MAX_FIELDS {
            return Err(ParseError::TooLarge("fields in one segment", MAX_FIELDS));
        }
        if piece.len() > MAX_FIELD_LEN {
            return Err(ParseError::TooLarge("bytes in one field", MAX_FIELD_LEN));
        }
        fields.push(piece);
    }
    Ok(Some(Segment {
        name,
        line: line_no,
        fields,
    }))
}

/// The repetitions of a field (one, empty, for an empty field).
pub fn repetitions<'a>(raw: &'a str, seps: &Separators) -> impl Iterator<Item = &'a str> + 'a {
    let rep = seps.repetition;
    raw.split(rep)
}

/// Component `n` (1-based) of one repetition, as written; `""` when absent.
pub fn component<'a>(raw: &'a str, seps: &Separators, n: usize) -> &'a str {
    raw.split(seps.component)
        .nth(n.saturating_sub(1))
        .unwrap_or("")
}

/// Subcomponent `n` (1-based) of a component, as written.
pub fn subcomponent<'a>(raw: &'a str, seps: &Separators, n: usize) -> &'a str {
    match seps.subcomponent {
        Some(sub) => raw.split(sub).nth(n.saturating_sub(1)).unwrap_or(""),
        None if n == 1 => raw,
        None => "",
    }
}

/// The text of a component or subcomponent with its escapes decoded.
pub fn decode<'a>(raw: &'a str, seps: &Separators) -> Cow<'a, str> {
    let Some(esc) = seps.escape else {
        return Cow::Borrowed(raw);
    };
    if !raw.contains(esc) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(esc) {
        out.push_str(&rest[..start]);
        let after = &rest[start + esc.len_utf8()..];
        let Some(end) = after.find(esc) else {
            // No closing escape character: keep the text as written.
            out.push_str(&rest[start..]);
            return Cow::Owned(out);
        };
        let sequence = &after[..end];
        match sequence {
            "F" => out.push(seps.field),
            "S" => out.push(seps.component),
            "T" => out.push(seps.subcomponent.unwrap_or('&')),
            "R" => out.push(seps.repetition),
            "E" => out.push(esc),
            ".br" => out.push('\n'),
            "H" | "N" => {}
            s if s.starts_with(".sp") => out.push('\n'),
            s if s.starts_with('X') || s.starts_with('x') => out.push_str(&hex(&s[1..])),
            // Character-set switches, local escapes and other formatting: dropped.
            _ => {}
        }
        rest = &after[end + esc.len_utf8()..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Hex digits as bytes, read as UTF-8 or else Latin-1; odd or invalid digits give nothing.
fn hex(digits: &str) -> String {
    if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return String::new();
    }
    let bytes: Vec<u8> = digits
        .as_bytes()
        .chunks(2)
        .filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect();
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().into_iter().map(char::from).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_from_headers() {
        let s = Separators::of_header("MSH|^~\\&|A").unwrap();
        assert_eq!(s, Separators::default());
        let t = Separators::of_header("MSH|^~\\&#|A").unwrap();
        assert_eq!(t, Separators::default());
        let elr = Separators::of_header("MSH|^~&|A").unwrap();
        assert_eq!((elr.escape, elr.subcomponent), (None, Some('&')));
        let custom = Separators::of_header("MSH#!@%*#A").unwrap();
        assert_eq!(
            (custom.field, custom.component, custom.repetition),
            ('#', '!', '@')
        );
        assert_eq!((custom.escape, custom.subcomponent), (Some('%'), Some('*')));
        for bad in ["MSH", "MSH|^|", "MSH|^^\\&|", "MSHa^~\\&|", "MSH|^~\\&x|"] {
            assert!(Separators::of_header(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escapes_decode_after_splitting() {
        let s = Separators::default();
        assert_eq!(decode(r"10\S\9/L", &s), "10^9/L");
        assert_eq!(decode(r"a\F\b\T\c\R\d\E\e\S\f", &s), "a|b&c~d\\e^f");
        assert_eq!(decode(r"line\X0d0a\next", &s), "line\r\nnext");
        assert_eq!(decode(r"x\.br\y", &s), "x\ny");
        assert_eq!(decode(r"µmol\S\L", &s), "µmol^L");
        assert_eq!(decode(r"\H\bold\N\", &s), "bold");
        assert_eq!(decode(r"open\escape", &s), r"open\escape");
        assert_eq!(decode(r"\XE9\", &s), "é");
        assert_eq!(decode(r"\XC3A9\", &s), "é");
    }

    #[test]
    fn segments_lines_and_messages() {
        let body = b"MSH|^~\\&|A|B|||20240101||ORU^R01|1|P|2.5\r\nPID|1||X\n\nOBX|1|NM|a^b^LN||5\rMSH|^~\\&|C\rPID|1";
        let parsed = parse(body).unwrap();
        assert_eq!(parsed.messages.len(), 2);
        let m = &parsed.messages[0];
        assert_eq!(m.segments.len(), 3);
        assert_eq!(m.segments[0].field(1), "|");
        assert_eq!(m.segments[0].field(2), "^~\\&");
        assert_eq!(m.segments[0].field(9), "ORU^R01");
        assert_eq!(m.segments[2].line, 4);
        assert_eq!(m.segments[2].field(5), "5");
        assert_eq!(m.segments[2].field(40), "");
        assert_eq!(parsed.messages[1].segments[1].line, 6);
    }

    #[test]
    fn bad_bodies() {
        assert_eq!(
            parse(b"PID|1").unwrap_err(),
            ParseError::Malformed(
                1,
                "not HL7 v2 ER7: the body must start with an MSH segment (or FHS/BHS of a batch)"
                    .into()
            )
        );
        assert_eq!(parse(b"MSH|^~\\&|\xff").unwrap_err(), ParseError::Utf8(9));
        match parse(b"MSH|^~\\&|A\r5.1|||x\rPID|1").unwrap_err() {
            ParseError::Segments(bad) => assert_eq!(bad[0].0, 2),
            other => panic!("{other:?}"),
        }
        let long = format!("MSH|^~\\&|{}", "x".repeat(MAX_FIELD_LEN + 1));
        assert_eq!(
            parse(long.as_bytes()).unwrap_err(),
            ParseError::TooLarge("bytes in one field", MAX_FIELD_LEN)
        );
    }
}
