//! `format = "mapping"`: a repeating record element and per-field paths from config.
//!
//! Paths use local names (namespaces are ignored). The walk descends only into elements on
//! the record path and, inside a record, only into elements some field path still matches;
//! everything else is skipped iteratively. The first occurrence of a field wins.

use medgate_core::{Decimal, Observation, Value};
use quick_xml::events::BytesStart;

use crate::config::MappingConfig;
use crate::error::ParseError;
use crate::xml::{Ev, Xml};
use crate::ParseContext;

/// The Observation fields a mapping can fill, in wire order.
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
}

const FIELD_COUNT: usize = 8;

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
    ctx: &ParseContext<'_>,
) -> Result<Vec<Observation>, ParseError> {
    let mut xml = Xml::new(bytes, ctx.max_depth);
    let root = xml.root()?;
    let mut rows = Vec::new();
    if root.local_name().as_ref() != mapping.record[0] {
        return Err(xml.content_error("root element does not match mapping.record"));
    }
    if mapping.record.len() == 1 {
        rows.push(parse_record(mapping, &mut xml, &root, ctx, 0)?);
    } else {
        // Invariant: every open element is on the record path.
        while let Some(event) = xml.next()? {
            let Ev::Start(start) = event else { continue };
            let depth = xml.depth();
            if mapping.record.get(depth - 1).map(String::as_str)
                != Some(start.local_name().as_ref())
            {
                xml.skip()?;
            } else if depth == mapping.record.len() {
                let index = rows.len();
                rows.push(parse_record(mapping, &mut xml, &start, ctx, index)?);
            }
        }
    }
    while xml.next()?.is_some() {}
    Ok(rows)
}

/// One open element inside a record: which fields may still match below it, and which
/// fields capture its text.
struct Frame {
    candidates: u16,
    capture: u16,
}

/// Reads one record (its start was just read) and consumes it.
fn parse_record(
    mapping: &CompiledMapping,
    xml: &mut Xml<'_>,
    start: &BytesStart<'_>,
    ctx: &ParseContext<'_>,
    index: usize,
) -> Result<Observation, ParseError> {
    let mut values: [Option<String>; FIELD_COUNT] = Default::default();
    let mut texts: [String; FIELD_COUNT] = Default::default();
    let mut candidates = 0u16;
    for (i, (field, path)) in mapping.fields.iter().enumerate() {
        match (&path.attribute, path.elements.is_empty()) {
            (Some(attr), true) => values[*field as usize] = xml.attr(start, attr)?,
            _ => candidates |= 1 << i,
        }
    }
    let base = xml.depth();
    let mut stack = vec![Frame {
        candidates,
        capture: 0,
    }];
    let mut active = 0u16;
    while xml.depth() >= base {
        match xml.next()? {
            Some(Ev::Start(child)) => {
                let level = xml.depth() - base; // 1 for the record's children
                let parent = stack.last().map_or(0, |f| f.candidates);
                let frame = match_child(mapping, xml, &child, level, parent, &mut values)?;
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
                    if active & (1 << i) != 0 && values[*field as usize].is_none() {
                        texts[i].push_str(&text);
                    }
                }
            }
            Some(Ev::End) => {
                let Some(frame) = stack.pop() else { break };
                close_captures(mapping, frame.capture, &mut texts, &mut values);
                active = stack.iter().fold(0, |acc, f| acc | f.capture);
            }
            None => break,
        }
    }
    Ok(build_row(mapping, values, ctx, index))
}

fn match_child(
    mapping: &CompiledMapping,
    xml: &Xml<'_>,
    child: &BytesStart<'_>,
    level: usize,
    parent: u16,
    values: &mut [Option<String>; FIELD_COUNT],
) -> Result<Frame, ParseError> {
    let local = child.local_name();
    let name: &str = local.as_ref();
    let mut frame = Frame {
        candidates: 0,
        capture: 0,
    };
    for (i, (field, path)) in mapping.fields.iter().enumerate() {
        let bit = 1u16 << i;
        if parent & bit == 0 || path.elements.get(level - 1).map(String::as_str) != Some(name) {
            continue;
        }
        if path.elements.len() > level {
            frame.candidates |= bit;
        } else if values[*field as usize].is_none() {
            match &path.attribute {
                Some(attr) => values[*field as usize] = xml.attr(child, attr)?,
                None => frame.capture |= bit,
            }
        }
    }
    Ok(frame)
}

/// Stores the text of fields whose element just closed (empty text stays unset).
fn close_captures(
    mapping: &CompiledMapping,
    capture: u16,
    texts: &mut [String; FIELD_COUNT],
    values: &mut [Option<String>; FIELD_COUNT],
) {
    for (i, (field, _)) in mapping.fields.iter().enumerate() {
        if capture & (1 << i) != 0 && values[*field as usize].is_none() {
            let text = texts[i].trim();
            if !text.is_empty() {
                values[*field as usize] = Some(text.to_owned());
            }
            texts[i].clear();
        }
    }
}

fn build_row(
    mapping: &CompiledMapping,
    mut values: [Option<String>; FIELD_COUNT],
    ctx: &ParseContext<'_>,
    index: usize,
) -> Observation {
    let mut take = |field: Field| {
        values[field as usize]
            .take()
            .or_else(|| mapping.constants[field as usize].clone())
    };
    let value = match take(Field::Value) {
        None => Value::Null,
        Some(text) => match Decimal::parse(&text) {
            Some(number) => Value::Number(number),
            None => Value::Text(text),
        },
    };
    Observation {
        patient_id: ctx.patient_id.to_owned(),
        source: ctx.source.to_owned(),
        id: take(Field::Id).unwrap_or_else(|| index.to_string()),
        category: take(Field::Category),
        code_system: take(Field::CodeSystem),
        code: take(Field::Code),
        display: take(Field::Display),
        value,
        unit: take(Field::Unit),
        effective: take(Field::Effective),
    }
}
