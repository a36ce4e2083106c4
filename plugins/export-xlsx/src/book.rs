//! The synchronous workbook writer: one constant-memory sheet after another.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom};

use medgate_core::model::COLUMNS;
use medgate_core::{Decimal, Error, Observation, Result, Value};
use rust_xlsxwriter::{ColNum, ExcelDateTime, Format, RowNum, Workbook, Worksheet, XlsxError};

use crate::effective::{self, Effective};

/// Rows per sheet in Excel, header included.
pub(crate) const EXCEL_MAX_ROWS: RowNum = 1_048_576;

/// Base sheet name; later sheets are `observations-2`, `observations-3`, ….
const SHEET_NAME: &str = "observations";

/// Column widths in [`COLUMNS`] order (set up front: constant-memory sheets cannot autofit).
const WIDTHS: [f64; 10] = [14.0, 14.0, 22.0, 14.0, 22.0, 12.0, 36.0, 12.0, 10.0, 28.0];

/// Excel number formats support at most 30 decimal places; beyond that the cell is General.
const MAX_FRACTION_DIGITS: usize = 30;

const LAST_COL: ColNum = COLUMNS.len() as ColNum - 1;
const VALUE_COL: ColNum = 7;
const EFFECTIVE_COL: ColNum = 9;

/// A workbook being filled row by row, rolling over to a new sheet when one is full.
pub(crate) struct Book {
    workbook: Workbook,
    formats: Formats,
    max_rows: RowNum,
    /// Index of the sheet being written and its next free row (row 0 is the header).
    sheet: usize,
    next_row: RowNum,
    rows: u64,
}

impl Book {
    /// A workbook with its first (header-only) sheet; `max_rows` counts the header.
    pub(crate) fn new(max_rows: RowNum) -> Result<Book> {
        let mut book = Book {
            workbook: Workbook::new(),
            formats: Formats::default(),
            // A sheet needs room for the header and at least one row.
            max_rows: max_rows.clamp(2, EXCEL_MAX_ROWS),
            sheet: 0,
            next_row: 1,
            rows: 0,
        };
        book.start_sheet(1)?;
        Ok(book)
    }

    /// Appends one observation, starting a new sheet first when the current one is full.
    pub(crate) fn push(&mut self, observation: &Observation) -> Result<()> {
        if self.next_row >= self.max_rows {
            self.finish_sheet()?;
            self.start_sheet(self.sheet + 2)?;
            self.sheet += 1;
            self.next_row = 1;
        }
        let row = self.next_row;
        let sheet = self
            .workbook
            .worksheet_from_index(self.sheet)
            .map_err(xlsx)?;
        write_row(sheet, &mut self.formats, row, observation)?;
        self.next_row += 1;
        self.rows += 1;
        Ok(())
    }

    /// Saves the workbook into an anonymous temporary file, rewound for reading.
    pub(crate) fn finish(mut self) -> Result<(File, u64)> {
        self.finish_sheet()?;
        // Anonymous: the file has no name and disappears when closed, even after a crash.
        let mut file = tempfile::tempfile()?;
        self.workbook.save_to_writer(&file).map_err(xlsx)?;
        file.seek(SeekFrom::Start(0))?;
        Ok((file, self.rows))
    }

    /// Adds sheet number `number` (1-based) with its header, frozen header row and widths.
    fn start_sheet(&mut self, number: usize) -> Result<()> {
        let name = if number == 1 {
            SHEET_NAME.to_owned()
        } else {
            format!("{SHEET_NAME}-{number}")
        };
        let sheet = self
            .workbook
            .add_worksheet_with_constant_memory()
            .map_err(xlsx)?;
        sheet.set_name(name).map_err(xlsx)?;
        sheet.set_freeze_panes(1, 0).map_err(xlsx)?;
        for (col, (title, width)) in (0..).zip(COLUMNS.iter().zip(WIDTHS)) {
            sheet.set_column_width(col, width).map_err(xlsx)?;
            sheet
                .write_string_with_format(0, col, *title, &self.formats.header)
                .map_err(xlsx)?;
        }
        Ok(())
    }

    /// Sets the autofilter over the rows the current sheet received.
    fn finish_sheet(&mut self) -> Result<()> {
        let last_row = self.next_row - 1;
        let sheet = self
            .workbook
            .worksheet_from_index(self.sheet)
            .map_err(xlsx)?;
        sheet.autofilter(0, 0, last_row, LAST_COL).map_err(xlsx)?;
        Ok(())
    }
}

/// Writes `o` into `row`; absent values leave the cell blank.
fn write_row(
    sheet: &mut Worksheet,
    formats: &mut Formats,
    row: RowNum,
    o: &Observation,
) -> Result<()> {
    let texts = [
        Some(o.patient_id.as_str()),
        Some(o.source.as_str()),
        Some(o.id.as_str()),
        o.category.as_deref(),
        o.code_system.as_deref(),
        o.code.as_deref(),
        o.display.as_deref(),
    ];
    for (col, text) in (0..).zip(texts) {
        if let Some(text) = text {
            write_text(sheet, row, col, text)?;
        }
    }
    write_value(sheet, formats, row, &o.value)?;
    if let Some(unit) = &o.unit {
        write_text(sheet, row, VALUE_COL + 1, unit)?;
    }
    if let Some(effective) = &o.effective {
        write_effective(sheet, formats, row, effective)?;
    }
    Ok(())
}

/// Text is always a string cell, so `=…` is never evaluated as a formula.
fn write_text(sheet: &mut Worksheet, row: RowNum, col: ColNum, text: &str) -> Result<()> {
    sheet
        .write_string(row, col, text)
        .map(drop)
        .map_err(|e| match e {
            // Name the column only: the text itself may identify the patient.
            XlsxError::MaxStringLengthExceeded => Error::Export(format!(
                "xlsx: a `{}` value exceeds Excel's 32,767-character cell limit",
                COLUMNS[usize::from(col)]
            )),
            other => xlsx(other),
        })
}

fn write_value(
    sheet: &mut Worksheet,
    formats: &mut Formats,
    row: RowNum,
    value: &Value,
) -> Result<()> {
    match value {
        Value::Number(d) => write_decimal(sheet, formats, row, d),
        Value::Text(t) => write_text(sheet, row, VALUE_COL, t),
        Value::Bool(b) => sheet
            .write_boolean(row, VALUE_COL, *b)
            .map(drop)
            .map_err(xlsx),
        Value::Null => Ok(()),
    }
}

/// A number cell showing the written fraction digits (`98.60` → `0.00`).
fn write_decimal(
    sheet: &mut Worksheet,
    formats: &mut Formats,
    row: RowNum,
    d: &Decimal,
) -> Result<()> {
    let number = d.to_f64();
    if !number.is_finite() {
        // Beyond f64 range (e.g. `1e400`): Excel cannot hold it as a number; keep the text.
        return write_text(sheet, row, VALUE_COL, d.as_str());
    }
    let written = match formats.number(d.fraction_digits()) {
        Some(format) => sheet.write_number_with_format(row, VALUE_COL, number, format),
        None => sheet.write_number(row, VALUE_COL, number),
    };
    written.map(drop).map_err(xlsx)
}

/// A real Excel date or date-time in the upstream's wall-clock time, else the text as written.
fn write_effective(
    sheet: &mut Worksheet,
    formats: &mut Formats,
    row: RowNum,
    text: &str,
) -> Result<()> {
    let cell = effective::parse(text).and_then(|parsed| {
        let (datetime, format) = match parsed {
            Effective::Date(d) => (
                ExcelDateTime::from_ymd(d.year, d.month, d.day).ok()?,
                &formats.date,
            ),
            Effective::DateTime {
                date: d,
                time: t,
                has_fraction,
                offset,
            } => (
                ExcelDateTime::from_ymd(d.year, d.month, d.day)
                    .and_then(|day| {
                        day.and_hms_milli(u16::from(t.hour), t.minute, t.second, t.milli)
                    })
                    .ok()?,
                formats.datetime(offset, has_fraction),
            ),
        };
        Some((datetime, format))
    });
    match cell {
        Some((datetime, format)) => sheet
            .write_datetime_with_format(row, EFFECTIVE_COL, &datetime, format)
            .map(drop)
            .map_err(xlsx),
        None => write_text(sheet, row, EFFECTIVE_COL, text),
    }
}

/// Formats created once and reused: Excel files have a format limit, and creating formats
/// per cell would be slow.
struct Formats {
    header: Format,
    date: Format,
    /// Index = fraction digits.
    numbers: Vec<Format>,
    /// Per offset as written, `[without, with]` fractional seconds. Offsets are validated
    /// `Z` or `±HH:MM`, so at most ~2,900 entries can exist.
    datetimes: [HashMap<String, Format>; 2],
}

impl Default for Formats {
    fn default() -> Self {
        Formats {
            header: Format::new().set_bold(),
            date: Format::new().set_num_format("yyyy-mm-dd"),
            numbers: (0..=MAX_FRACTION_DIGITS)
                .map(|digits| Format::new().set_num_format(number_format(digits)))
                .collect(),
            datetimes: [HashMap::new(), HashMap::new()],
        }
    }
}

impl Formats {
    /// The format showing `digits` decimals; `None` (General) for exponent form or too many.
    fn number(&self, digits: Option<usize>) -> Option<&Format> {
        self.numbers.get(digits?)
    }

    /// `yyyy-mm-dd hh:mm:ss[.000]"<offset>"`, the offset shown literally.
    fn datetime(&mut self, offset: &str, has_fraction: bool) -> &Format {
        // `z` and `Z` mean the same; show the canonical form.
        let offset = if offset.eq_ignore_ascii_case("z") {
            "Z"
        } else {
            offset
        };
        let cache = &mut self.datetimes[usize::from(has_fraction)];
        // Look up by `&str` first so the common case allocates nothing.
        if !cache.contains_key(offset) {
            let seconds = if has_fraction { "ss.000" } else { "ss" };
            let format =
                Format::new().set_num_format(format!("yyyy-mm-dd hh:mm:{seconds}\"{offset}\""));
            cache.insert(offset.to_owned(), format);
        }
        &cache[offset]
    }
}

/// `0`, `0.0`, `0.00`, … for `digits` decimals.
fn number_format(digits: usize) -> String {
    if digits == 0 {
        "0".to_owned()
    } else {
        format!("0.{}", "0".repeat(digits))
    }
}

/// rust_xlsxwriter errors describe the operation, never the cell contents.
fn xlsx(e: XlsxError) -> Error {
    Error::Export(format!("xlsx: {e}"))
}
