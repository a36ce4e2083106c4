//! `format = "mapping"`: a repeating record element and per-field paths from config.
//!
//! Paths use local names (namespaces are ignored). The walk descends only into elements on
//! the record path and, inside a record, only into elements some field path still matches;
//! everything else is skipped iteratively. The first occurrence of a field wins.
//!
//! Turning the captured text into the record:
//! - `value`: a number in any lexical form (`00`, `+5`, `.5`, `5.`, `1E3`, via
//!   [`Decimal::parse_lenient`](medgate_core::Decimal::parse_lenient)) is a Quantity with
//!   `unit` (and `unit_system`, which also makes the unit its code); a number led by a
//!   comparator (`<5`, `>=10`) is a Quantity with that comparator; anything else is a string.
//!   A `comparator` field overrides the leading one; an unknown comparator makes the value
//!   unreadable (no value, `dataAbsentReason = error`, a warning).
//! - `effective`, `effective_end`, `issued`: `DateTime::parse` (FHIR/RFC 3339), then
//!   `DateTime::parse_hl7`; neither → no time and a warning. Both effective ends → a period.
//! - `status`: a FHIR observation status code, else none and a warning.
//! - `category`: a FHIR observation category code gets FHIR's category system; another
//!   category is kept as a code without system.
//! - `interpretation`: a v3 ObservationInterpretation code (`H`, `LL`, `N`, `POS` …) gets
//!   that system; other text is kept as the interpretation's text.
//! - `reference_low`, `reference_high` (numbers, in the value's unit), `reference_text`: one
//!   reference range.

use medgate_core::model::INTERPRETATION_SYSTEM;
use medgate_core::{
    CodeableConcept, Coding, Comparator, DateTime, Decimal, Effective, Observation, Period,
    Quantity, ReferenceRange, Status, Value, Warning,
};

use crate::config::MappingConfig;
use crate::error::Fail;
use crate::text::{decimal, quoted, unreadable_number};
use crate::xml::{local, Ev, Start, Xml};
use crate::{ParseContext, Sink};

/// The record fields a mapping can fill, in config order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Id,
    Category,
    CodeSystem,
    Code,
    Display,
    Value,
    Unit,
    Effective,
    Status,
    UnitSystem,
    Comparator,
    Interpretation,
    ReferenceLow,
    ReferenceHigh,
    ReferenceText,
    EffectiveEnd,
    Issued,
}

pub(crate) const FIELD_COUNT: usize = 17;

/// Config key of each field, indexed by `Field as usize`.
pub(crate) const FIELD_NAMES: [&str; FIELD_COUNT] = [
    "id",
    "category",
    "code_system",
    "code",
    "display",
    "value",
    "unit",
    "effective",
    "status",
    "unit_system",
    "comparator",
    "interpretation",
    "reference_low",
    "reference_high",
    "reference_text",
    "effective_end",
    "issued",
];

/// A field path: element names below the record, then an optional attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath {
    pub(crate) elements: Vec<String>,
    pub(crate) attribute: Option<String>,
}

impl FieldPath {
    /// Parses `A/B`, `A/@x` or `@x`; `None` for empty segments or `@` anywhere but last.
    pub(crate) fn parse(path: &str) -> Option<FieldPath> {
        let mut segments: Vec<&str> = path.split('/').collect();
        let last = segments.pop()?;
        let attribute = match last.strip_prefix('@') {
            Some(name) => Some(name.to_owned()),
            None => {
                segments.push(last);
                None
            }
        };
        let valid = |s: &&str| !s.is_empty() && !s.contains('@');
        if !segments.iter().all(valid) || attribute.as_deref().is_some_and(|a| !valid(&a)) {
            return None;
        }
        Some(FieldPath {
            elements: segments.into_iter().map(str::to_owned).collect(),
            attribute,
        })
    }
}

/// Splits a record path; `None` when empty or with empty segments or attributes.
pub(crate) fn record_path(path: &str) -> Option<Vec<String>> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| s.is_empty() || s.contains('@')) {
        return None;
    }
    Some(segments.into_iter().map(str::to_owned).collect())
}

/// A validated mapping, ready to parse with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledMapping {
    record: Vec<String>,
    /// At most [`FIELD_COUNT`] entries, so a `u32` bit set indexes them.
    fields: Vec<(Field, FieldPath)>,
    constants: [Option<String>; FIELD_COUNT],
}

impl CompiledMapping {
    /// Compiles a mapping; `None` if a path is invalid (validation reports which).
    pub fn compile(config: &MappingConfig) -> Option<CompiledMapping> {
        let record = record_path(&config.record)?;
        let mut fields = Vec::new();
        for (field, path) in config.fields.entries() {
            if let Some(path) = path {
                fields.push((field, FieldPath::parse(path)?));
            }
        }
        let mut constants: [Option<String>; FIELD_COUNT] = Default::default();
        for (field, constant) in config.constants.entries() {
            constants[field as usize] = constant.map(str::to_owned);
        }
        Some(CompiledMapping {
            record,
            fields,
            constants,
        })
    }
}

/// Parses a payload with `mapping`.
pub(crate) fn parse(
    mapping: &CompiledMapping,
    bytes: &[u8],
    ctx: &ParseContext,
    rows: &mut impl Sink,
) -> Result<(), Fail> {
    let mut xml = Xml::new(bytes, ctx.max_depth);
    let root = xml.root()?;
    if local(&root) != mapping.record[0] {
        return Err(xml.content_error("root element does not match mapping.record"));
    }
    if mapping.record.len() == 1 {
        rows.emit(parse_record(mapping, &mut xml, &root, ctx, 0)?)?;
    } else {
        // Invariant: every open element is on the record path.
        while let Some(event) = xml.next()? {
            let Ev::Start(start) = event else { continue };
            let depth = xml.depth();
            if mapping.record.get(depth - 1).map(String::as_str) != Some(local(&start)) {
                xml.skip()?;
            } else if depth == mapping.record.len() {
                let index = rows.count();
                rows.emit(parse_record(mapping, &mut xml, &start, ctx, index)?)?;
            }
        }
    }
    while xml.next()?.is_some() {}
    Ok(())
}

/// One open element inside a record: which fields may still match below it, and which
/// fields capture its text (bit `i` = `mapping.fields[i]`).
struct Frame {
    candidates: u32,
    capture: u32,
}

/// What one record said, field by field, with the byte offset where each was found (for
/// warnings' positions, computed only when needed).
struct Captured {
    values: [Option<String>; FIELD_COUNT],
    offsets: [u64; FIELD_COUNT],
}

impl Captured {
    fn set(&mut self, field: Field, value: Option<String>, offset: u64) {
        if value.is_some() {
            self.values[field as usize] = value;
            self.offsets[field as usize] = offset;
        }
    }

    fn has(&self, field: Field) -> bool {
        self.values[field as usize].is_some()
    }
}

/// Reads one record (its start was just read) and consumes it.
fn parse_record(
    mapping: &CompiledMapping,
    xml: &mut Xml<'_>,
    start: &Start<'_>,
    ctx: &ParseContext,
    index: usize,
) -> Result<Observation, Fail> {
    let mut captured = Captured {
        values: Default::default(),
        offsets: [xml.offset(); FIELD_COUNT],
    };
    let mut texts: [String; FIELD_COUNT] = Default::default();
    let mut candidates = 0u32;
    for (i, (field, path)) in mapping.fields.iter().enumerate() {
        match (&path.attribute, path.elements.is_empty()) {
            (Some(attr), true) => {
                let value = xml.attr(start, attr)?.map(|v| v.into_owned());
                captured.set(*field, value, xml.offset());
            }
            _ => candidates |= 1 << i,
        }
    }
    let base = xml.depth();
    let mut stack = vec![Frame {
        candidates,
        capture: 0,
    }];
    let mut active = 0u32;
    while xml.depth() >= base {
        match xml.next()? {
            Some(Ev::Start(child)) => {
                let level = xml.depth() - base; // 1 for the record's children
                let parent = stack.last().map_or(0, |f| f.candidates);
                let frame = match_child(mapping, xml, &child, level, parent, &mut captured)?;
                if frame.candidates == 0 && frame.capture == 0 {
                    xml.skip()?;
                    continue;
                }
                active |= frame.capture;
                stack.push(frame);
            }
            Some(Ev::Text(chunk)) => {
                let text = chunk.content();
                for (i, (field, _)) in mapping.fields.iter().enumerate() {
                    if active & (1 << i) != 0 && !captured.has(*field) {
                        texts[i].push_str(&text);
                    }
                }
            }
            Some(Ev::End) => {
                let Some(frame) = stack.pop() else { break };
                let offset = xml.offset();
                for (i, (field, _)) in mapping.fields.iter().enumerate() {
                    if frame.capture & (1 << i) != 0 && !captured.has(*field) {
                        // Empty text stays unset.
                        let text = texts[i].trim();
                        captured.set(*field, (!text.is_empty()).then(|| text.to_owned()), offset);
                        texts[i].clear();
                    }
                }
                active = stack.iter().fold(0, |acc, f| acc | f.capture);
            }
            None => break,
        }
    }
    Ok(build(mapping, captured, xml, ctx, index))
}

fn match_child(
    mapping: &CompiledMapping,
    xml: &Xml<'_>,
    child: &Start<'_>,
    level: usize,
    parent: u32,
    captured: &mut Captured,
) -> Result<Frame, Fail> {
    let name = local(child);
    let mut frame = Frame {
        candidates: 0,
        capture: 0,
    };
    for (i, (field, path)) in mapping.fields.iter().enumerate() {
        let bit = 1u32 << i;
        if parent & bit == 0 || path.elements.get(level - 1).map(String::as_str) != Some(name) {
            continue;
        }
        if path.elements.len() > level {
            frame.candidates |= bit;
        } else if !captured.has(*field) {
            match &path.attribute {
                Some(attr) => {
                    let value = xml.attr(child, attr)?.map(|v| v.into_owned());
                    captured.set(*field, value, xml.offset());
                }
                None => frame.capture |= bit,
            }
        }
    }
    Ok(frame)
}

/// Turns one record's captured text into an observation (see the module docs).
fn build(
    mapping: &CompiledMapping,
    captured: Captured,
    xml: &Xml<'_>,
    ctx: &ParseContext,
    index: usize,
) -> Observation {
    let Captured {
        mut values,
        offsets,
    } = captured;
    let mut take = |field: Field| {
        values[field as usize]
            .take()
            .or_else(|| mapping.constants[field as usize].clone())
    };
    let at = |field: Field| xml.position_at(offsets[field as usize]).to_string();
    let id = take(Field::Id).unwrap_or_else(|| index.to_string());
    let mut o = Observation::new(ctx.patient_id.clone(), ctx.source.clone(), id);

    if let Some(code) = take(Field::Category) {
        o.category.push(category(code));
    }
    let (system, code, display) = (
        take(Field::CodeSystem),
        take(Field::Code),
        take(Field::Display),
    );
    if code.is_some() || system.is_some() {
        o.code.coding.push(Coding {
            system,
            code,
            display,
            mapped: false,
        });
    } else {
        o.code.text = display;
    }
    if let Some(text) = take(Field::Status) {
        o.status = Status::from_fhir(text.trim());
        if o.status.is_none() {
            let message = format!("status {} is not a FHIR observation status", quoted(&text));
            o.warnings.push(Warning::new(at(Field::Status), message));
        }
    }

    let unit = Unit {
        text: take(Field::Unit),
        system: take(Field::UnitSystem),
    };
    let comparator = take(Field::Comparator);
    match take(Field::Value) {
        None => {}
        Some(text) => match value(&text, comparator.as_deref(), &unit) {
            Ok(value) => o.value = value,
            Err(message) => o.value_unreadable(at(Field::Value), message),
        },
    }
    if let Some(text) = take(Field::Interpretation) {
        o.interpretation.push(interpretation(text));
    }
    let mut range = ReferenceRange {
        text: take(Field::ReferenceText),
        ..ReferenceRange::default()
    };
    for (field, bound) in [
        (Field::ReferenceLow, &mut range.low),
        (Field::ReferenceHigh, &mut range.high),
    ] {
        let Some(text) = take(field) else { continue };
        match decimal(&text) {
            Some(number) => *bound = Some(unit.quantity(number)),
            None => {
                let message = unreadable_number(FIELD_NAMES[field as usize], &text);
                o.warnings.push(Warning::new(at(field), message));
            }
        }
    }
    if !range.is_empty() {
        o.reference_range.push(range);
    }

    let mut time = |field: Field, o: &mut Observation| {
        let text = take(field)?;
        date_time(&text)
            .map_err(|message| {
                o.warnings.push(Warning::new(
                    at(field),
                    format!("{} {message}", FIELD_NAMES[field as usize]),
                ));
            })
            .ok()?
    };
    let start = time(Field::Effective, &mut o);
    let end = time(Field::EffectiveEnd, &mut o);
    o.issued = time(Field::Issued, &mut o);
    o.effective = match (start, end) {
        (None, None) => None,
        (Some(at), None) => Some(Effective::DateTime(at)),
        (start, end) => Some(Effective::Period(Period { start, end })),
    };
    o
}

/// The unit text and system a mapping gives, shared by the value and the range bounds.
struct Unit {
    text: Option<String>,
    system: Option<String>,
}

impl Unit {
    /// A quantity of `value` in this unit; with a system, the unit is also its code (a
    /// system without a unit says nothing and is left out).
    fn quantity(&self, value: Decimal) -> Quantity {
        let coded = self.text.is_some() && self.system.is_some();
        Quantity {
            value: Some(value),
            comparator: None,
            unit: self.text.clone(),
            system: if coded { self.system.clone() } else { None },
            code: if coded { self.text.clone() } else { None },
        }
    }
}

/// A number (optionally led by a comparator) → Quantity; other text → string; `Err` when
/// a comparator is given that is not one.
fn value(text: &str, comparator: Option<&str>, unit: &Unit) -> Result<Value, String> {
    let explicit = match comparator.map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            Comparator::parse(c)
                .ok_or_else(|| format!("comparator {} is not <, <=, >= or >", quoted(c)))?,
        ),
    };
    let (leading, number) = split_comparator(text.trim());
    match decimal(number) {
        Some(n) => Ok(Value::Quantity(Quantity {
            comparator: explicit.or(leading),
            ..unit.quantity(n)
        })),
        None if explicit.is_some() => Err(unreadable_number("value", text)),
        None => Ok(Value::String(text.to_owned())),
    }
}

/// `<5` → (`<`, `5`); text without a leading comparator is returned whole.
fn split_comparator(text: &str) -> (Option<Comparator>, &str) {
    for symbol in ["<=", ">=", "<", ">"] {
        if let Some(rest) = text.strip_prefix(symbol) {
            return (Comparator::parse(symbol), rest.trim_start());
        }
    }
    (None, text)
}

/// FHIR/RFC 3339 text first, then HL7 TS.
fn date_time(text: &str) -> Result<Option<DateTime>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    DateTime::parse(text)
        .or_else(|_| DateTime::parse_hl7(text))
        .map(Some)
        .map_err(|_| {
            format!(
                "{} is neither an RFC 3339 nor an HL7 date-time",
                quoted(text)
            )
        })
}

fn category(code: String) -> CodeableConcept {
    const FHIR_CATEGORIES: [&str; 9] = [
        "social-history",
        "vital-signs",
        "imaging",
        "laboratory",
        "procedure",
        "survey",
        "exam",
        "therapy",
        "activity",
    ];
    let code = code.trim();
    if FHIR_CATEGORIES.contains(&code) {
        return CodeableConcept::category(code);
    }
    CodeableConcept {
        coding: vec![Coding {
            code: Some(code.to_owned()),
            ..Coding::default()
        }],
        text: None,
    }
}

fn interpretation(text: String) -> CodeableConcept {
    // The v3 ObservationInterpretation codes labs actually send.
    const CODES: [&str; 24] = [
        "<", ">", "A", "AA", "B", "D", "DET", "H", "HH", "HU", "I", "IND", "L", "LL", "LU", "N",
        "NEG", "ND", "POS", "R", "S", "U", "W", "E",
    ];
    let code = text.trim();
    if CODES.contains(&code) {
        CodeableConcept::coded(INTERPRETATION_SYSTEM, code, None)
    } else {
        CodeableConcept::text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_numbers_comparators_and_text() {
        let unit = Unit {
            text: Some("mg/dL".to_owned()),
            system: Some(medgate_core::model::UCUM.to_owned()),
        };
        let q = |text: &str, cmp: Option<&str>| match value(text, cmp, &unit) {
            Ok(Value::Quantity(q)) => (
                q.value.map(|d| d.to_string()),
                q.comparator.map(Comparator::as_str),
                q.code,
            ),
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            q("00", None),
            (Some("0".into()), None, Some("mg/dL".into()))
        );
        assert_eq!(q(" +5 ", None).0.as_deref(), Some("5"));
        assert_eq!(q(".5", None).0.as_deref(), Some("0.5"));
        assert_eq!(q("5.", None).0.as_deref(), Some("5"));
        assert_eq!(q("1E3", None).0.as_deref(), Some("1E3"));
        assert_eq!(q("<5", None).1, Some("<"));
        assert_eq!(q(">= 10", None).1, Some(">="));
        assert_eq!(q("10", Some(">")).1, Some(">"));
        assert_eq!(
            value("see note", None, &unit),
            Ok(Value::String("see note".into()))
        );
        assert!(value("10", Some("about"), &unit).is_err());
        assert!(value("n/a", Some("<"), &unit).is_err());
        assert_eq!(category("chemistry".into()).coding[0].system, None);
        assert_eq!(
            category("laboratory".into()).coding[0].system.as_deref(),
            Some(medgate_core::model::CATEGORY_SYSTEM)
        );
    }

    #[test]
    fn times_try_rfc3339_then_hl7() {
        let t = |s: &str| date_time(s).map(|d| d.map(|d| d.to_string()));
        assert_eq!(
            t("2024-01-01T08:00:00+01:00"),
            Ok(Some("2024-01-01T08:00:00+01:00".into()))
        );
        assert_eq!(
            t("20140520193605-0500"),
            Ok(Some("2014-05-20T19:36:05-05:00".into()))
        );
        assert_eq!(t("20240101"), Ok(Some("2024-01-01".into())));
        assert_eq!(t(""), Ok(None));
        assert!(t("yesterday").is_err());
    }
}
