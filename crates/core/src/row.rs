//! The one tabular projection of an [`Observation`]: fixed columns, one row per result.
//!
//! CSV, Excel, Parquet and the flat JSON API all write [`Row`]s, so a column means the same
//! thing in every format. The first ten columns are medgate's original flat record and keep
//! their names, order and meaning; later columns are only ever appended (see [`COLUMNS`]).
//!
//! A panel gives one row for its own value (when it has one, or when it has no components)
//! and then one row per component, with id `<id>#<index>`; component rows inherit the
//! panel's status, category, times and warnings.

use std::borrow::Cow;

use crate::model::{
    CodeableConcept, Comparator, Component, Effective, Observation, Quantity, Range,
    ReferenceRange, Value,
};
use crate::{DateTime, Decimal};

/// Column names in order. The first ten are the original flat record.
pub const COLUMNS: [&str; 27] = [
    "patient_id",
    "source",
    "id",
    "category",
    "code_system",
    "code",
    "display",
    "value",
    "unit",
    "effective",
    "status",
    "value_type",
    "value_comparator",
    "value_code_system",
    "value_code",
    "interpretation",
    "reference_low",
    "reference_high",
    "reference_unit",
    "reference_text",
    "effective_end",
    "effective_zone",
    "issued",
    "category_system",
    "data_absent_reason",
    "mapped_from",
    "warnings",
];

/// Number of columns.
pub const COLUMN_COUNT: usize = COLUMNS.len();

/// Columns that always appear in the flat JSON shape (the original record); later ones are
/// omitted there when empty.
pub const CORE_COLUMNS: usize = 10;

/// Column indexes, for formats that treat some columns specially.
pub mod col {
    #![allow(missing_docs)]
    pub const PATIENT_ID: usize = 0;
    pub const SOURCE: usize = 1;
    pub const ID: usize = 2;
    pub const CATEGORY: usize = 3;
    pub const CODE_SYSTEM: usize = 4;
    pub const CODE: usize = 5;
    pub const DISPLAY: usize = 6;
    pub const VALUE: usize = 7;
    pub const UNIT: usize = 8;
    pub const EFFECTIVE: usize = 9;
    pub const STATUS: usize = 10;
    pub const VALUE_TYPE: usize = 11;
    pub const VALUE_COMPARATOR: usize = 12;
    pub const VALUE_CODE_SYSTEM: usize = 13;
    pub const VALUE_CODE: usize = 14;
    pub const INTERPRETATION: usize = 15;
    pub const REFERENCE_LOW: usize = 16;
    pub const REFERENCE_HIGH: usize = 17;
    pub const REFERENCE_UNIT: usize = 18;
    pub const REFERENCE_TEXT: usize = 19;
    pub const EFFECTIVE_END: usize = 20;
    pub const EFFECTIVE_ZONE: usize = 21;
    pub const ISSUED: usize = 22;
    pub const CATEGORY_SYSTEM: usize = 23;
    pub const DATA_ABSENT_REASON: usize = 24;
    pub const MAPPED_FROM: usize = 25;
    pub const WARNINGS: usize = 26;
}

/// One typed cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// Nothing.
    Empty,
    /// Text.
    Text(Cow<'a, str>),
    /// A number as written.
    Number(&'a Decimal),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Bool(bool),
    /// A date or date-time with its precision and offset.
    DateTime(&'a DateTime),
}

impl Cell<'_> {
    /// The cell as plain text: numbers as written, `true`/`false`, date-times in RFC 3339,
    /// empty for nothing.
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            Cell::Empty => Cow::Borrowed(""),
            Cell::Text(t) => Cow::Borrowed(t),
            Cell::Number(d) => Cow::Borrowed(d.as_str()),
            Cell::Integer(i) => Cow::Owned(i.to_string()),
            Cell::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Cell::DateTime(d) => Cow::Owned(d.to_string()),
        }
    }

    /// Nothing in it.
    pub fn is_empty(&self) -> bool {
        matches!(self, Cell::Empty)
    }
}

fn text<'a>(s: Option<&'a str>) -> Cell<'a> {
    s.map_or(Cell::Empty, |t| Cell::Text(Cow::Borrowed(t)))
}

/// One row: [`COLUMN_COUNT`] cells in [`COLUMNS`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// The cells.
    pub cells: [Cell<'a>; COLUMN_COUNT],
}

impl<'a> Row<'a> {
    /// The cell of `column` (an index from [`col`]).
    pub fn get(&self, column: usize) -> &Cell<'a> {
        &self.cells[column]
    }
}

/// The rows of one observation (see the module docs).
pub fn rows(o: &Observation) -> impl Iterator<Item = Row<'_>> {
    let own = (o.value.is_some() || o.data_absent_reason.is_some() || o.components.is_empty())
        .then(|| {
            let measured = Measured {
                code: &o.code,
                value: &o.value,
                data_absent_reason: o.data_absent_reason.as_ref(),
                interpretation: &o.interpretation,
                reference_range: &o.reference_range,
            };
            row(o, Cow::Borrowed(o.id.as_str()), measured)
        });
    let components = o
        .components
        .iter()
        .enumerate()
        .map(move |(i, c)| row(o, Cow::Owned(format!("{}#{i}", o.id)), Measured::of(c)));
    own.into_iter().chain(components)
}

/// The part of a row that differs between a panel and its components.
struct Measured<'a> {
    code: &'a CodeableConcept,
    value: &'a Value,
    data_absent_reason: Option<&'a CodeableConcept>,
    interpretation: &'a [CodeableConcept],
    reference_range: &'a [ReferenceRange],
}

impl<'a> Measured<'a> {
    fn of(c: &'a Component) -> Self {
        Measured {
            code: &c.code,
            value: &c.value,
            data_absent_reason: c.data_absent_reason.as_ref(),
            interpretation: &c.interpretation,
            reference_range: &c.reference_range,
        }
    }
}

fn row<'a>(o: &'a Observation, id: Cow<'a, str>, m: Measured<'a>) -> Row<'a> {
    let category = o.category.first().and_then(CodeableConcept::primary);
    let coding = m.code.primary();
    let (value, unit, comparator, value_coding) = value_cells(m.value);
    let range = m.reference_range.first();
    let bound = |q: Option<&'a Quantity>| {
        q.and_then(|q| q.value.as_ref())
            .map_or(Cell::Empty, Cell::Number)
    };
    let reference_unit = range.and_then(|r| {
        [r.low.as_ref(), r.high.as_ref()]
            .into_iter()
            .flatten()
            .find_map(Quantity::unit_code)
    });
    let effective = o.effective.as_ref();
    Row {
        cells: [
            Cell::Text(Cow::Borrowed(&o.patient_id)),
            Cell::Text(Cow::Borrowed(&o.source)),
            Cell::Text(id),
            text(category.and_then(|c| c.code.as_deref())),
            text(coding.and_then(|c| c.system.as_deref())),
            text(coding.and_then(|c| c.code.as_deref())),
            text(m.code.display()),
            value,
            unit,
            effective
                .and_then(Effective::start)
                .map_or(Cell::Empty, Cell::DateTime),
            text(o.status.map(|s| s.as_str())),
            text(Some(m.value.type_name()).filter(|t| !t.is_empty())),
            text(comparator.map(Comparator::as_str)),
            text(value_coding.and_then(|c| c.system.as_deref())),
            text(value_coding.and_then(|c| c.code.as_deref())),
            joined_codes(m.interpretation),
            bound(range.and_then(|r| r.low.as_ref())),
            bound(range.and_then(|r| r.high.as_ref())),
            text(reference_unit),
            text(range.and_then(|r| r.text.as_deref())),
            effective
                .and_then(Effective::end)
                .map_or(Cell::Empty, Cell::DateTime),
            zone_cell(o),
            o.issued.as_ref().map_or(Cell::Empty, Cell::DateTime),
            text(category.and_then(|c| c.system.as_deref())),
            text(
                m.data_absent_reason
                    .and_then(CodeableConcept::primary)
                    .and_then(|c| c.code.as_deref()),
            ),
            m.code.mapped_from().map_or(Cell::Empty, |c| {
                Cell::Text(Cow::Owned(format!(
                    "{}|{}",
                    c.system.as_deref().unwrap_or(""),
                    c.code.as_deref().unwrap_or("")
                )))
            }),
            warnings_cell(o),
        ],
    }
}

type ValueCells<'a> = (
    Cell<'a>,
    Cell<'a>,
    Option<Comparator>,
    Option<&'a crate::model::Coding>,
);

/// (value, unit, comparator, coding of a coded value).
fn value_cells(value: &Value) -> ValueCells<'_> {
    match value {
        Value::None => (Cell::Empty, Cell::Empty, None, None),
        Value::Quantity(q) => (
            q.value.as_ref().map_or(Cell::Empty, Cell::Number),
            text(q.unit_code()),
            q.comparator,
            None,
        ),
        Value::CodeableConcept(c) => (text(c.display()), Cell::Empty, None, c.primary()),
        Value::String(s) => (Cell::Text(Cow::Borrowed(s)), Cell::Empty, None, None),
        Value::Boolean(b) => (Cell::Bool(*b), Cell::Empty, None, None),
        Value::Integer(i) => (Cell::Integer(i64::from(*i)), Cell::Empty, None, None),
        Value::Range(r) => (range_text(r), text(range_unit(r)), None, None),
        Value::Ratio(r) => {
            let part = |q: &Option<Quantity>| {
                q.as_ref()
                    .and_then(|q| q.value.as_ref())
                    .map_or("", Decimal::as_str)
                    .to_owned()
            };
            let unit = |q: &Option<Quantity>| {
                q.as_ref()
                    .and_then(Quantity::unit_code)
                    .unwrap_or("")
                    .to_owned()
            };
            let units = match (unit(&r.numerator), unit(&r.denominator)) {
                (n, d) if n.is_empty() && d.is_empty() => Cell::Empty,
                (n, d) => Cell::Text(Cow::Owned(format!("{n}/{d}"))),
            };
            let value = format!("{}:{}", part(&r.numerator), part(&r.denominator));
            (Cell::Text(Cow::Owned(value)), units, None, None)
        }
        Value::Period(p) => {
            let part = |d: &Option<DateTime>| d.map(|d| d.to_string()).unwrap_or_default();
            let value = format!("{}/{}", part(&p.start), part(&p.end));
            (Cell::Text(Cow::Owned(value)), Cell::Empty, None, None)
        }
        Value::DateTime(d) => (Cell::DateTime(d), Cell::Empty, None, None),
        Value::Time(t) => (Cell::Text(Cow::Borrowed(t)), Cell::Empty, None, None),
    }
}

/// `low..high`, `>=low` or `<=high` (FHIR Range bounds are inclusive).
fn range_text(r: &Range) -> Cell<'_> {
    fn bound(q: &Option<Quantity>) -> Option<&Decimal> {
        q.as_ref().and_then(|q| q.value.as_ref())
    }
    let text = match (bound(&r.low), bound(&r.high)) {
        (Some(l), Some(h)) => format!("{l}..{h}"),
        (Some(l), None) => format!(">={l}"),
        (None, Some(h)) => format!("<={h}"),
        (None, None) => return Cell::Empty,
    };
    Cell::Text(Cow::Owned(text))
}

fn range_unit(r: &Range) -> Option<&str> {
    [r.low.as_ref(), r.high.as_ref()]
        .into_iter()
        .flatten()
        .find_map(Quantity::unit_code)
}

/// Codes joined by `;` (`H`, `A;H`), falling back to text.
fn joined_codes(concepts: &[CodeableConcept]) -> Cell<'_> {
    match concepts {
        [] => Cell::Empty,
        [one] => text(
            one.primary()
                .and_then(|c| c.code.as_deref())
                .or(one.text.as_deref()),
        ),
        many => {
            let parts: Vec<&str> = many
                .iter()
                .filter_map(|c| {
                    c.primary()
                        .and_then(|c| c.code.as_deref())
                        .or(c.text.as_deref())
                })
                .collect();
            Cell::Text(Cow::Owned(parts.join(";")))
        }
    }
}

/// How `effective`'s offset came about: `as-sent`, the configured zone's name, or `local`.
fn zone_cell(o: &Observation) -> Cell<'_> {
    use crate::datetime::Zone;
    let Some(zone) = o
        .effective
        .as_ref()
        .and_then(Effective::start)
        .and_then(DateTime::zone)
    else {
        return Cell::Empty;
    };
    match zone {
        Zone::Local => Cell::Text(Cow::Borrowed("local")),
        Zone::Utc | Zone::Offset(_) => Cell::Text(Cow::Borrowed("as-sent")),
        Zone::Assumed(_) => Cell::Text(Cow::Borrowed("assumed")),
    }
}

fn warnings_cell(o: &Observation) -> Cell<'_> {
    match o.warnings.as_slice() {
        [] => Cell::Empty,
        ws => Cell::Text(Cow::Owned(
            ws.iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

impl serde::Serialize for Cell<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Empty => s.serialize_none(),
            Cell::Text(t) => s.serialize_str(t),
            Cell::Number(d) => d.serialize(s),
            Cell::Integer(i) => s.serialize_i64(*i),
            Cell::Bool(b) => s.serialize_bool(*b),
            Cell::DateTime(d) => d.serialize(s),
        }
    }
}

/// The flat JSON shape: an object with the ten original keys always present (`null` when
/// empty) and the appended ones only when they have a value.
impl serde::Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let present = self.cells[CORE_COLUMNS..]
            .iter()
            .filter(|c| !c.is_empty())
            .count();
        let mut map = s.serialize_map(Some(CORE_COLUMNS + present))?;
        for (i, (name, cell)) in COLUMNS.iter().zip(&self.cells).enumerate() {
            if i < CORE_COLUMNS || !cell.is_empty() {
                map.serialize_entry(name, cell)?;
            }
        }
        map.end()
    }
}

impl Row<'_> {
    /// Appends the row's flat JSON object (exactly what serializing it with serde_json
    /// gives, byte for byte) to `out`. The JSON API writes a hundred rows per answer: the
    /// keys here are constants, so only values are escaped.
    pub fn write_json(&self, out: &mut String) {
        out.push('{');
        let mut first = true;
        for (i, (key, cell)) in JSON_KEYS.iter().zip(&self.cells).enumerate() {
            if i >= CORE_COLUMNS && cell.is_empty() {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(key);
            cell.write_json(out);
        }
        out.push('}');
    }
}

/// `"name":` for every column, ready to copy (column names need no escaping).
const JSON_KEYS: [&str; COLUMN_COUNT] = [
    "\"patient_id\":",
    "\"source\":",
    "\"id\":",
    "\"category\":",
    "\"code_system\":",
    "\"code\":",
    "\"display\":",
    "\"value\":",
    "\"unit\":",
    "\"effective\":",
    "\"status\":",
    "\"value_type\":",
    "\"value_comparator\":",
    "\"value_code_system\":",
    "\"value_code\":",
    "\"interpretation\":",
    "\"reference_low\":",
    "\"reference_high\":",
    "\"reference_unit\":",
    "\"reference_text\":",
    "\"effective_end\":",
    "\"effective_zone\":",
    "\"issued\":",
    "\"category_system\":",
    "\"data_absent_reason\":",
    "\"mapped_from\":",
    "\"warnings\":",
];

impl Cell<'_> {
    /// The cell as a JSON value, as serde_json writes it.
    fn write_json(&self, out: &mut String) {
        match self {
            Cell::Empty => out.push_str("null"),
            Cell::Text(t) => write_json_string(out, t),
            Cell::Number(d) => out.push_str(d.as_str()),
            Cell::Integer(i) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{i}");
            }
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Cell::DateTime(d) => {
                // RFC 3339 text is ASCII letters, digits and punctuation: nothing to escape.
                out.push('"');
                d.write_text(out);
                out.push('"');
            }
        }
    }
}

/// `text` as a JSON string with serde_json's escaping: `"` and `\\` escaped, control
/// characters as `\\b \\t \\n \\f \\r` or `\\u00xx`, everything else (`/`, non-ASCII) as is.
fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut rest = text;
    while let Some(at) = rest
        .bytes()
        .position(|b| b < 0x20 || b == b'"' || b == b'\\')
    {
        out.push_str(&rest[..at]);
        let b = rest.as_bytes()[at];
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0x0c => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        // The byte is ASCII, so the next one starts a character.
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Coding, Component, Status};

    fn d(t: &str) -> Decimal {
        Decimal::parse(t).unwrap()
    }

    fn bp() -> Observation {
        let mut o = Observation::new(Arc::from("P1"), Arc::from("his"), "bp1");
        o.status = Some(Status::Final);
        o.category = vec![CodeableConcept::category("vital-signs")];
        o.code = CodeableConcept::coded(crate::model::LOINC, "85354-9", Some("Blood pressure"));
        o.effective = Some(Effective::DateTime(
            DateTime::parse("2024-01-01T08:00:00+08:00").unwrap(),
        ));
        for (code, value) in [("8480-6", "120"), ("8462-4", "80")] {
            o.components.push(Component {
                code: CodeableConcept::coded(crate::model::LOINC, code, None),
                value: Value::Quantity(Quantity::ucum(d(value), "mm[Hg]")),
                interpretation: vec![CodeableConcept::coded(
                    crate::model::INTERPRETATION_SYSTEM,
                    "N",
                    None,
                )],
                ..Component::default()
            });
        }
        o
    }

    #[test]
    fn a_panel_is_one_row_per_component() {
        let o = bp();
        let rows: Vec<Row<'_>> = rows(&o).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].get(col::ID).as_text(), "bp1#1");
        assert_eq!(rows[1].get(col::CODE).as_text(), "8462-4");
        assert_eq!(rows[1].get(col::VALUE), &Cell::Number(&d("80")));
        assert_eq!(rows[1].get(col::UNIT).as_text(), "mm[Hg]");
        assert_eq!(rows[1].get(col::STATUS).as_text(), "final");
        assert_eq!(rows[1].get(col::INTERPRETATION).as_text(), "N");
        assert_eq!(rows[0].get(col::EFFECTIVE_ZONE).as_text(), "as-sent");
        assert_eq!(
            rows[0].get(col::CATEGORY_SYSTEM).as_text(),
            crate::model::CATEGORY_SYSTEM
        );
    }

    #[test]
    fn comparators_ranges_and_reference_ranges_have_their_own_columns() {
        let mut o = Observation::new(Arc::from("P1"), Arc::from("lab"), "x");
        o.value = Value::Quantity(Quantity {
            comparator: Some(Comparator::Greater),
            ..Quantity::ucum(d("10"), "mg/dL")
        });
        o.reference_range = vec![ReferenceRange {
            low: Some(Quantity::ucum(d("3.5"), "mmol/L")),
            high: Some(Quantity::ucum(d("5.1"), "mmol/L")),
            ..ReferenceRange::default()
        }];
        let row = rows(&o).next().unwrap();
        assert_eq!(row.get(col::VALUE).as_text(), "10");
        assert_eq!(row.get(col::VALUE_COMPARATOR).as_text(), ">");
        assert_eq!(row.get(col::REFERENCE_LOW).as_text(), "3.5");
        assert_eq!(row.get(col::REFERENCE_HIGH).as_text(), "5.1");
        assert_eq!(row.get(col::REFERENCE_UNIT).as_text(), "mmol/L");

        o.value = Value::Range(Range {
            low: Some(Quantity::ucum(d("1"), "g")),
            high: None,
        });
        let row = rows(&o).next().unwrap();
        assert_eq!(row.get(col::VALUE).as_text(), ">=1");
        assert_eq!(row.get(col::VALUE_TYPE).as_text(), "Range");
    }

    /// The hand-written JSON is serde_json's, byte for byte, on every kind of cell and on
    /// text that needs escaping.
    #[test]
    fn write_json_is_serde_json_byte_for_byte() {
        let mut odd = Observation::new(
            Arc::from("P\"1\\"),
            Arc::from("his/é"),
            "id\u{1}\u{1f}\u{7f}\t\n\r\u{8}\u{c}<&>'",
        );
        odd.status = Some(Status::Amended);
        odd.value = Value::Integer(-42);
        odd.code = CodeableConcept::text("naïve \"quoted\" 😀");
        odd.issued = Some(DateTime::parse("2024-01-01T00:00:00.5Z").unwrap());
        odd.warnings = vec![crate::model::Warning::new(
            "line 1, column 2",
            "bad \\ value",
        )];
        let mut flag = Observation::new(Arc::from("P1"), Arc::from("his"), "b");
        flag.value = Value::Boolean(false);
        let mut with_range = Observation::new(Arc::from("P1"), Arc::from("lab"), "x");
        with_range.value = Value::Range(Range {
            low: Some(Quantity::ucum(d("1"), "g")),
            high: Some(Quantity::ucum(d("1e-22"), "g")),
        });
        for o in [bp(), odd, flag, with_range] {
            for row in rows(&o) {
                let mut ours = String::new();
                row.write_json(&mut ours);
                assert_eq!(ours, serde_json::to_string(&row).unwrap());
            }
        }
        for text in ["", "plain", "\u{0}", "a\"b", "\\\\", "\u{2028}", "end\\"] {
            let mut ours = String::new();
            write_json_string(&mut ours, text);
            assert_eq!(ours, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn flat_json_keeps_the_original_keys_and_omits_empty_new_ones() {
        let mut o = Observation::new(Arc::from("P1"), Arc::from("his"), "1");
        o.value = Value::number(d("98.60"));
        o.code.coding.push(Coding {
            mapped: true,
            ..Coding::new(crate::model::LOINC, "8310-5", None)
        });
        o.code
            .coding
            .push(Coding::new("urn:oid:1.2.3", "TEMP", None));
        let json = serde_json::to_string(&rows(&o).next().unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"patient_id":"P1","source":"his","id":"1","category":null,"code_system":"http://loinc.org","code":"8310-5","display":"8310-5","value":98.60,"unit":null,"effective":null,"value_type":"Quantity","mapped_from":"urn:oid:1.2.3|TEMP"}"#
        );
    }
}
