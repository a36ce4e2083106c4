//! The synchronous workbook writer: one constant-memory sheet after another.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom};

use medgate_core::{rows, Cell, DateTime, Decimal, Error, Observation, Result, Row, COLUMNS};
use rust_xlsxwriter::{ColNum, Format, RowNum, Workbook, Worksheet, XlsxError};

use crate::cell::{self, DateFormat, NumberFormat};

/// Rows per sheet in Excel, header included.
pub(crate) const EXCEL_MAX_ROWS: RowNum = 1_048_576;

/// Base sheet name; later sheets are `observations-2`, `observations-3`, ….
const SHEET_NAME: &str = "observations";

/// Column widths in [`COLUMNS`] order (set up front: constant-memory sheets cannot autofit);
/// each fits its header and the usual values (date-time columns fit an offset and millis).
const WIDTHS: [f64; COLUMNS.len()] = [
    14.0, // patient_id
    12.0, // source
    24.0, // id
    14.0, // category
    24.0, // code_system
    12.0, // code
    36.0, // display
    16.0, // value
    10.0, // unit
    30.0, // effective
    10.0, // status
    16.0, // value_type
    18.0, // value_comparator
    24.0, // value_code_system
    14.0, // value_code
    16.0, // interpretation
    15.0, // reference_low
    16.0, // reference_high
    16.0, // reference_unit
    20.0, // reference_text
    30.0, // effective_end
    16.0, // effective_zone
    30.0, // issued
    24.0, // category_system
    20.0, // data_absent_reason
    24.0, // mapped_from
    48.0, // warnings
];

const LAST_COL: ColNum = COLUMNS.len() as ColNum - 1;

/// Integers beyond this are text: Excel shows 15 significant digits.
const MAX_EXCEL_INTEGER: i64 = 999_999_999_999_999;

/// A workbook being filled row by row, rolling over to a new sheet when one is full.
pub(crate) struct Book {
    workbook: Workbook,
    formats: Formats,
    max_rows: RowNum,
    /// Index of the sheet being written and its next free row (row 0 is the header).
    sheet: usize,
    next_row: RowNum,
    observations: u64,
}

/// Deflate level of the zip. Deflate is a third of an export's CPU at the default level 6;
/// on 300k workload rows level 3 wrote 1.38x faster for a 7 % larger file, level 1 1.52x
/// faster for a 64 % larger one (`examples/export_rows` of the server crate).
const ZIP_LEVEL: u8 = 3;

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
            observations: 0,
        };
        book.workbook.set_zip_compression_level(ZIP_LEVEL);
        book.start_sheet(1)?;
        Ok(book)
    }

    /// Appends the rows of one observation.
    pub(crate) fn push(&mut self, observation: &Observation) -> Result<()> {
        for row in rows(observation) {
            self.push_row(&row)?;
        }
        self.observations += 1;
        Ok(())
    }

    /// Saves the workbook into an anonymous temporary file, rewound for reading; also
    /// returns the number of observations written.
    pub(crate) fn finish(mut self) -> Result<(File, u64)> {
        self.finish_sheet()?;
        // Anonymous: the file has no name and disappears when closed, even after a crash.
        let mut file = tempfile::tempfile()?;
        self.workbook.save_to_writer(&file).map_err(xlsx)?;
        file.seek(SeekFrom::Start(0))?;
        Ok((file, self.observations))
    }

    /// Appends one row, starting a new sheet first when the current one is full.
    fn push_row(&mut self, row: &Row<'_>) -> Result<()> {
        if self.next_row >= self.max_rows {
            self.finish_sheet()?;
            self.start_sheet(self.sheet + 2)?;
            self.sheet += 1;
            self.next_row = 1;
        }
        let at = self.next_row;
        let sheet = self
            .workbook
            .worksheet_from_index(self.sheet)
            .map_err(xlsx)?;
        for (col, cell) in (0..).zip(&row.cells) {
            write_cell(sheet, &mut self.formats, at, col, cell)?;
        }
        self.next_row += 1;
        Ok(())
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

/// Writes one typed cell; an empty cell stays blank.
fn write_cell(
    sheet: &mut Worksheet,
    formats: &mut Formats,
    row: RowNum,
    col: ColNum,
    cell: &Cell<'_>,
) -> Result<()> {
    let written = match cell {
        Cell::Empty => return Ok(()),
        Cell::Text(text) => return write_text(sheet, row, col, text),
        Cell::Number(d) => return write_decimal(sheet, formats, row, col, d),
        Cell::DateTime(d) => return write_date_time(sheet, formats, row, col, d),
        Cell::Bool(b) => sheet.write_boolean(row, col, *b),
        Cell::Integer(i) if i.unsigned_abs() <= MAX_EXCEL_INTEGER.unsigned_abs() => {
            // Exact: |i| < 2^53.
            let format = formats.number(NumberFormat::Fixed(0));
            sheet.write_number_with_format(row, col, *i as f64, format)
        }
        Cell::Integer(i) => sheet.write_string(row, col, i.to_string()),
    };
    written.map(drop).map_err(xlsx)
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

/// A number cell showing the written digits, or the written text when Excel would change
/// the number (see [`cell::excel_number`]).
fn write_decimal(
    sheet: &mut Worksheet,
    formats: &mut Formats,
    row: RowNum,
    col: ColNum,
    d: &Decimal,
) -> Result<()> {
    let Some(number) = cell::excel_number(d) else {
        return write_text(sheet, row, col, d.as_str());
    };
    let format = formats.number(cell::number_format(d));
    sheet
        .write_number_with_format(row, col, number, format)
        .map(drop)
        .map_err(xlsx)
}

/// A date or date-time cell displaying the RFC 3339 text, or that text as a string cell when
/// Excel cannot show it exactly (see [`cell::excel_date_time`]).
fn write_date_time(
    sheet: &mut Worksheet,
    formats: &mut Formats,
    row: RowNum,
    col: ColNum,
    d: &DateTime,
) -> Result<()> {
    let Some((serial, format)) = cell::excel_date_time(d) else {
        return write_text(sheet, row, col, &d.to_string());
    };
    let format = formats.date(format, d);
    sheet
        .write_datetime_with_format(row, col, serial, format)
        .map(drop)
        .map_err(xlsx)
}

/// Formats created once and reused: Excel files have a format limit, and creating formats
/// per cell would be slow. Both maps are bounded: ≤ 63 number formats, and date-time formats
/// per fraction digits (0–3) and offset (≤ ~2,900 offsets).
struct Formats {
    header: Format,
    numbers: HashMap<NumberFormat, Format>,
    dates: HashMap<DateFormat, Format>,
}

impl Default for Formats {
    fn default() -> Self {
        Formats {
            header: Format::new().set_bold(),
            numbers: HashMap::new(),
            dates: HashMap::new(),
        }
    }
}

impl Formats {
    fn number(&mut self, key: NumberFormat) -> &Format {
        self.numbers
            .entry(key)
            .or_insert_with(|| Format::new().set_num_format(key.code()))
    }

    /// The format of `key`, made for `written` on first use.
    fn date(&mut self, key: DateFormat, written: &DateTime) -> &Format {
        self.dates
            .entry(key)
            .or_insert_with(|| Format::new().set_num_format(key.code(written)))
    }
}

/// rust_xlsxwriter errors describe the operation, never the cell contents.
fn xlsx(e: XlsxError) -> Error {
    Error::Export(format!("xlsx: {e}"))
}
