//! The Parquet schema of the tabular projection, and the column builders that fill it.
//!
//! The file's first 27 columns are [`COLUMNS`], same names, same order, one type each; the
//! columns whose cells can be numbers or times are typed, and their text twins (and the other
//! typed forms of `value`) follow as companion columns, in the order of their columns:
//!
//! | column | Parquet type |
//! |---|---|
//! | `value`, `reference_low`, `reference_high` | DOUBLE: the number when a double holds it exactly (an integer value too, up to 2^53), else null |
//! | `effective`, `effective_end`, `issued` | INT64 TIMESTAMP(MICROS, isAdjustedToUTC = true): the instant of a time with an offset, else null |
//! | every other of the 27 | BYTE_ARRAY STRING (`patient_id`, `source` and `id` required, the rest optional) |
//! | `value_text` | STRING: the value as CSV writes it (number as written, RFC 3339, `true`, text …) |
//! | `value_integer` | INT64: an integer value |
//! | `value_boolean` | BOOLEAN: a boolean value |
//! | `value_timestamp`, `value_date` | TIMESTAMP as above / DATE: a dateTime value |
//! | `effective_date` | DATE: the value when it is a date |
//! | `effective_text` | STRING: the RFC 3339 text as written, offset included |
//! | `reference_low_text`, `reference_high_text` | STRING: the bound as written |
//! | `effective_end_date`, `effective_end_text`, `issued_date`, `issued_text` | as `effective_date`, `effective_text` |
//!
//! A `*_text` column holds exactly the CSV cell of its column (null where CSV is empty), so
//! nothing typed is ever the only copy of a value.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use medgate_core::row::col;
use medgate_core::row::COLUMN_COUNT;
use medgate_core::{Cell, Error, Result, Row, COLUMNS};

use crate::convert;

/// The time zone of every timestamp column: values are UTC-adjusted instants.
const UTC: &str = "UTC";

/// How one of core's columns is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A string column.
    Text,
    /// A double and its text.
    Number,
    /// A timestamp, a date and the text.
    Time,
    /// `value`: a double, the text, an integer, a boolean, a timestamp and a date.
    Value,
}

fn layout(column: usize) -> Layout {
    match column {
        col::VALUE => Layout::Value,
        col::REFERENCE_LOW | col::REFERENCE_HIGH => Layout::Number,
        col::EFFECTIVE | col::EFFECTIVE_END | col::ISSUED => Layout::Time,
        _ => Layout::Text,
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

/// The file's schema (see the module docs).
pub(crate) fn schema() -> SchemaRef {
    let mut fields = Vec::with_capacity(COLUMN_COUNT + 13);
    for (column, name) in COLUMNS.iter().enumerate() {
        let (data_type, nullable) = match layout(column) {
            Layout::Text => (DataType::Utf8, column > col::ID),
            Layout::Number | Layout::Value => (DataType::Float64, true),
            Layout::Time => (timestamp(), true),
        };
        fields.push(Field::new(*name, data_type, nullable));
    }
    for (column, name) in COLUMNS.iter().enumerate() {
        let companions = match layout(column) {
            Layout::Text => vec![],
            Layout::Number => vec![("text", DataType::Utf8)],
            Layout::Time => vec![("date", DataType::Date32), ("text", DataType::Utf8)],
            Layout::Value => vec![
                ("text", DataType::Utf8),
                ("integer", DataType::Int64),
                ("boolean", DataType::Boolean),
                ("timestamp", timestamp()),
                ("date", DataType::Date32),
            ],
        };
        for (suffix, data_type) in companions {
            fields.push(Field::new(format!("{name}_{suffix}"), data_type, true));
        }
    }
    Arc::new(Schema::new(fields))
}

/// Names of the columns that hold (nearly) unique values: a dictionary would only cost memory
/// before Parquet gives up on it, and they are most of the file's bytes.
pub(crate) const UNIQUE_COLUMNS: [&str; 8] = [
    "id",
    "effective",
    "effective_end",
    "issued",
    "effective_text",
    "effective_end_text",
    "issued_text",
    "value_timestamp",
];

/// Column builders for one record batch, in schema order.
pub(crate) struct Columns {
    schema: SchemaRef,
    slots: Vec<Slot>,
    rows: usize,
    /// Bytes of text appended to this batch (the bulk of a wide batch's memory).
    text_bytes: usize,
}

impl Columns {
    pub(crate) fn new(schema: SchemaRef) -> Columns {
        Columns {
            schema,
            slots: (0..COLUMN_COUNT).map(|c| Slot::new(layout(c))).collect(),
            rows: 0,
            text_bytes: 0,
        }
    }

    /// Rows appended since the last [`Columns::finish`].
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Text bytes appended since the last [`Columns::finish`] (each text is counted once,
    /// though a value's text may also be in a companion column).
    pub(crate) fn text_bytes(&self) -> usize {
        self.text_bytes
    }

    pub(crate) fn push(&mut self, row: &Row<'_>) {
        for (slot, cell) in self.slots.iter_mut().zip(&row.cells) {
            if let Cell::Text(t) = cell {
                self.text_bytes += t.len();
            }
            slot.push(cell);
        }
        self.rows += 1;
    }

    /// The rows appended so far as one batch; the builders start over empty.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = self.slots.iter_mut().map(Slot::finish_main).collect();
        for slot in &mut self.slots {
            slot.finish_companions(&mut arrays);
        }
        self.rows = 0;
        self.text_bytes = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| Error::Internal(format!("parquet: record batch: {e}")))
    }
}

/// The builders of one of core's columns.
enum Slot {
    Text(StringBuilder),
    Number {
        number: Float64Builder,
        text: StringBuilder,
    },
    Time {
        time: TimeBuilders,
        text: StringBuilder,
    },
    /// Boxed: six builders, against one to three for the other columns.
    Value(Box<ValueBuilders>),
}

/// The builders of `value` and its companions.
struct ValueBuilders {
    number: Float64Builder,
    text: StringBuilder,
    integer: Int64Builder,
    boolean: BooleanBuilder,
    time: TimeBuilders,
}

/// The instant and the date of a date-time.
struct TimeBuilders {
    instant: TimestampMicrosecondBuilder,
    date: Date32Builder,
}

impl TimeBuilders {
    fn new() -> TimeBuilders {
        TimeBuilders {
            instant: TimestampMicrosecondBuilder::new().with_timezone(UTC),
            date: Date32Builder::new(),
        }
    }

    fn push(&mut self, cell: &Cell<'_>) {
        let Cell::DateTime(d) = cell else {
            self.instant.append_null();
            self.date.append_null();
            return;
        };
        self.instant.append_option(convert::instant_micros(d));
        self.date.append_option(convert::date_days(d));
    }
}

impl Slot {
    fn new(layout: Layout) -> Slot {
        match layout {
            Layout::Text => Slot::Text(StringBuilder::new()),
            Layout::Number => Slot::Number {
                number: Float64Builder::new(),
                text: StringBuilder::new(),
            },
            Layout::Time => Slot::Time {
                time: TimeBuilders::new(),
                text: StringBuilder::new(),
            },
            Layout::Value => Slot::Value(Box::new(ValueBuilders {
                number: Float64Builder::new(),
                text: StringBuilder::new(),
                integer: Int64Builder::new(),
                boolean: BooleanBuilder::new(),
                time: TimeBuilders::new(),
            })),
        }
    }

    fn push(&mut self, cell: &Cell<'_>) {
        match self {
            Slot::Text(text) => push_text(text, cell),
            Slot::Number { number, text } => {
                number.append_option(number_of(cell));
                push_text(text, cell);
            }
            Slot::Time { time, text } => {
                time.push(cell);
                push_text(text, cell);
            }
            Slot::Value(value) => {
                value.number.append_option(number_of(cell));
                push_text(&mut value.text, cell);
                value.integer.append_option(match cell {
                    Cell::Integer(i) => Some(*i),
                    _ => None,
                });
                value.boolean.append_option(match cell {
                    Cell::Bool(b) => Some(*b),
                    _ => None,
                });
                value.time.push(cell);
            }
        }
    }

    /// The array of the column itself (one of the first 27).
    fn finish_main(&mut self) -> ArrayRef {
        match self {
            Slot::Text(text) => Arc::new(text.finish()),
            Slot::Number { number, .. } => Arc::new(number.finish()),
            Slot::Value(value) => Arc::new(value.number.finish()),
            Slot::Time { time, .. } => Arc::new(time.instant.finish()),
        }
    }

    /// The companion arrays, in the order [`schema`] lists them.
    fn finish_companions(&mut self, arrays: &mut Vec<ArrayRef>) {
        match self {
            Slot::Text(_) => {}
            Slot::Number { text, .. } => arrays.push(Arc::new(text.finish())),
            Slot::Time { time, text } => {
                arrays.push(Arc::new(time.date.finish()));
                arrays.push(Arc::new(text.finish()));
            }
            Slot::Value(value) => {
                arrays.push(Arc::new(value.text.finish()));
                arrays.push(Arc::new(value.integer.finish()));
                arrays.push(Arc::new(value.boolean.finish()));
                arrays.push(Arc::new(value.time.instant.finish()));
                arrays.push(Arc::new(value.time.date.finish()));
            }
        }
    }
}

/// The double of a number or integer cell, when exact.
fn number_of(cell: &Cell<'_>) -> Option<f64> {
    match cell {
        Cell::Number(d) => convert::exact_double(d),
        Cell::Integer(i) => convert::integer_double(*i),
        _ => None,
    }
}

/// Appends the cell's text as CSV writes it ([`Cell::as_text`]); null when empty. Formatted
/// values are written straight into the builder, without a temporary string.
fn push_text(builder: &mut StringBuilder, cell: &Cell<'_>) {
    match cell {
        Cell::Empty => builder.append_null(),
        Cell::Text(t) => builder.append_value(t),
        Cell::Number(d) => builder.append_value(d.as_str()),
        Cell::Bool(b) => builder.append_value(if *b { "true" } else { "false" }),
        Cell::Integer(i) => {
            // Writing into the builder cannot fail.
            let _ = write!(builder, "{i}");
            builder.append_value("");
        }
        Cell::DateTime(d) => {
            let _ = write!(builder, "{d}");
            builder.append_value("");
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, StringArray};
    use medgate_core::{DateTime, Decimal};

    use super::*;

    #[test]
    fn the_first_columns_are_cores_and_companions_follow() {
        let schema = schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[..COLUMN_COUNT], COLUMNS);
        assert_eq!(
            names[COLUMN_COUNT..],
            [
                "value_text",
                "value_integer",
                "value_boolean",
                "value_timestamp",
                "value_date",
                "effective_date",
                "effective_text",
                "reference_low_text",
                "reference_high_text",
                "effective_end_date",
                "effective_end_text",
                "issued_date",
                "issued_text",
            ]
        );
        for unique in UNIQUE_COLUMNS {
            assert!(names.contains(&unique), "{unique}");
        }
    }

    #[test]
    fn text_companions_hold_what_csv_writes() {
        let d = Decimal::parse("98.60").unwrap();
        let t = DateTime::parse("2024-01-01T08:00:00.250+05:30").unwrap();
        let cells = [
            Cell::Empty,
            Cell::Text("x".into()),
            Cell::Number(&d),
            Cell::Bool(false),
            Cell::Integer(-3),
            Cell::DateTime(&t),
        ];
        let mut builder = StringBuilder::new();
        for cell in &cells {
            push_text(&mut builder, cell);
        }
        let array: StringArray = builder.finish();
        assert!(array.is_null(0));
        for (i, cell) in cells.iter().enumerate().skip(1) {
            assert_eq!(array.value(i), cell.as_text(), "{cell:?}");
        }
    }
}
