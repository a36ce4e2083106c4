//! End-to-end tests of the XLSX exporter: export the shared rich observations, reopen the
//! workbook with calamine (and read its XML for formats), and compare with the source values.

#[path = "../../export-csv/tests/fixture/mod.rs"]
mod fixture;

use std::io::{Cursor, Read};

use calamine::{open_workbook_from_rs, Data, Range, Reader, Xlsx};
use fixture::{assert_stream_error, failing_stream, ok_stream};
use medgate_core::row::col;
use medgate_core::{rows, Cell, Exporter, Observation, ObservationStream, Result, COLUMNS};
use medgate_export_xlsx::XlsxExporter;

async fn export_with(
    exporter: XlsxExporter,
    observations: ObservationStream,
) -> (Result<u64>, Vec<u8>) {
    fixture::export_bytes(&exporter, observations).await
}

async fn export(observations: ObservationStream) -> (Result<u64>, Vec<u8>) {
    export_with(XlsxExporter::default(), observations).await
}

fn open(bytes: &[u8]) -> Xlsx<Cursor<Vec<u8>>> {
    open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap()
}

fn sheet(bytes: &[u8], name: &str) -> Range<Data> {
    open(bytes).worksheet_range(name).unwrap()
}

fn part(bytes: &[u8], path: &str) -> String {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut xml = String::new();
    zip.by_name(path).unwrap().read_to_string(&mut xml).unwrap();
    xml
}

fn cell(range: &Range<Data>, row: usize, column: usize) -> Data {
    range
        .get_value((row as u32, column as u32))
        .cloned()
        .unwrap_or(Data::Empty)
}

fn string(s: &str) -> Data {
    Data::String(s.into())
}

/// `A1`-style reference of a 0-based row and column.
fn reference(row: usize, column: usize) -> String {
    let mut letters = String::new();
    let mut n = column + 1;
    while n > 0 {
        letters.insert(0, char::from(b'A' + ((n - 1) % 26) as u8));
        n = (n - 1) / 26;
    }
    format!("{letters}{}", row + 1)
}

/// The number format codes of a sheet's cells, read from the workbook's XML.
struct Formats {
    sheet: String,
    /// `numFmtId` per cell style index.
    styles: Vec<u32>,
    /// Custom format codes by id.
    codes: Vec<(u32, String)>,
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(
        tag[start..start + len]
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

impl Formats {
    fn read(bytes: &[u8], sheet_path: &str) -> Formats {
        let styles = part(bytes, "xl/styles.xml");
        let xfs = styles
            .split("<cellXfs")
            .nth(1)
            .unwrap()
            .split("</cellXfs>")
            .next()
            .unwrap();
        let styles_ids = xfs
            .split("<xf ")
            .skip(1)
            .map(|xf| {
                attribute(&format!(" {xf}"), "numFmtId")
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let codes = styles
            .split("<numFmt ")
            .skip(1)
            .map(|f| {
                let f = format!(" {f}");
                let id = attribute(&f, "numFmtId").unwrap().parse().unwrap();
                (id, attribute(&f, "formatCode").unwrap())
            })
            .collect();
        Formats {
            sheet: part(bytes, sheet_path),
            styles: styles_ids,
            codes,
        }
    }

    /// The format code of the cell at (row, column).
    fn code(&self, row: usize, column: usize) -> String {
        let at = format!("<c r=\"{}\"", reference(row, column));
        let tag = self
            .sheet
            .split(&at)
            .nth(1)
            .unwrap()
            .split('>')
            .next()
            .unwrap();
        let style: usize = attribute(tag, "s").map_or(0, |s| s.parse().unwrap());
        let id = self.styles[style];
        let builtin = match id {
            0 => Some("General"),
            1 => Some("0"),
            2 => Some("0.00"),
            11 => Some("0.00E+00"),
            _ => None,
        };
        builtin.map(str::to_owned).unwrap_or_else(|| {
            let (_, code) = self.codes.iter().find(|(i, _)| *i == id).unwrap();
            code.clone()
        })
    }
}

/// What Excel displays for a date-time serial under `code`, for the tokens date-time formats
/// here use: `yyyy mm dd hh mm ss .0…` and quoted literals. The serial is converted with
/// jiff, independently of both the writer and calamine.
fn display_date_time(serial: f64, code: &str) -> String {
    let days = serial.floor();
    let millis = ((serial - days) * 86_400_000.0).round() as i64;
    let date = jiff::civil::date(1899, 12, 30)
        .checked_add(jiff::Span::new().days(days as i64))
        .unwrap();
    let (h, m, s, ms) = (
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000,
    );
    let mut out = String::new();
    let mut rest = code;
    let mut after_hour = false;
    while !rest.is_empty() {
        let (piece, len) = if rest.starts_with("yyyy") {
            (format!("{:04}", date.year()), 4)
        } else if rest.starts_with("mm") {
            let v = if after_hour {
                m
            } else {
                i64::from(date.month())
            };
            (format!("{v:02}"), 2)
        } else if rest.starts_with("dd") {
            (format!("{:02}", date.day()), 2)
        } else if rest.starts_with("hh") {
            after_hour = true;
            (format!("{h:02}"), 2)
        } else if rest.starts_with("ss") {
            (format!("{s:02}"), 2)
        } else if rest.starts_with(".0") {
            let digits = rest[1..].chars().take_while(|&c| c == '0').count();
            (format!(".{}", &format!("{ms:03}")[..digits]), digits + 1)
        } else if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap();
            (quoted[..end].to_owned(), end + 2)
        } else {
            (rest[..1].to_owned(), 1)
        };
        out.push_str(&piece);
        rest = &rest[len..];
    }
    out
}

/// The export of the rich fixture, its rows, and sheet 1 as calamine and the XML see it.
struct Exported {
    bytes: Vec<u8>,
    range: Range<Data>,
    formats: Formats,
    observations: Vec<Observation>,
}

impl Exported {
    async fn rich() -> Exported {
        let observations = fixture::rich();
        let (result, bytes) = export(ok_stream(observations.clone())).await;
        assert_eq!(result.unwrap(), observations.len() as u64);
        Exported {
            range: sheet(&bytes, "observations"),
            formats: Formats::read(&bytes, "xl/worksheets/sheet1.xml"),
            bytes,
            observations,
        }
    }

    /// The sheet row (1-based, after the header) whose `id` is `id`.
    fn row(&self, id: &str) -> usize {
        (1..self.range.height())
            .find(|&r| cell(&self.range, r, col::ID) == string(id))
            .unwrap_or_else(|| panic!("no row {id}"))
    }

    fn get(&self, id: &str, column: usize) -> Data {
        cell(&self.range, self.row(id), column)
    }

    /// The cell's text as Excel displays it, for a date-time cell.
    fn displayed(&self, id: &str, column: usize) -> String {
        let row = self.row(id);
        let Data::DateTime(serial) = cell(&self.range, row, column) else {
            panic!("{id}: not a date-time cell");
        };
        display_date_time(serial.as_f64(), &self.formats.code(row, column))
    }
}

/// The cell a typed [`Cell`] must read back as. Numbers and date-times have two lawful forms,
/// checked here by value; which form each fixture value takes is asserted by name below.
fn assert_cell(exported: &Exported, row: usize, column: usize, expected: &Cell<'_>) {
    let actual = cell(&exported.range, row, column);
    let at = format!("{} of row {row}", COLUMNS[column]);
    match (expected, &actual) {
        (Cell::Empty, _) => assert_eq!(actual, Data::Empty, "{at}"),
        (Cell::Text(t), _) => assert_eq!(actual, string(t), "{at}"),
        (Cell::Bool(b), _) => assert_eq!(actual, Data::Bool(*b), "{at}"),
        (Cell::Integer(i), _) => assert_eq!(actual, Data::Float(*i as f64), "{at}"),
        // A number cell holds exactly the written value; a text cell the written text.
        (Cell::Number(d), Data::Float(v)) => assert_eq!(d.to_f64_exact(), Some(*v), "{at}"),
        (Cell::Number(d), _) => assert_eq!(actual, string(d.as_str()), "{at}"),
        // A date-time cell displays exactly the RFC 3339 text; a text cell holds it.
        (Cell::DateTime(d), Data::DateTime(serial)) => {
            let code = exported.formats.code(row, column);
            assert_eq!(
                display_date_time(serial.as_f64(), &code),
                d.to_string(),
                "{at}"
            );
        }
        (Cell::DateTime(d), _) => assert_eq!(actual, string(&d.to_string()), "{at}"),
    }
}

#[tokio::test]
async fn every_cell_of_every_row_round_trips() {
    let exported = Exported::rich().await;
    let expected: Vec<_> = exported.observations.iter().flat_map(rows).collect();
    assert_eq!(
        expected.len(),
        exported.observations.len() + 2,
        "a panel of three adds two rows"
    );
    assert_eq!(
        exported.range.get_size(),
        (expected.len() + 1, COLUMNS.len())
    );
    let header: Vec<Data> = (0..COLUMNS.len())
        .map(|c| cell(&exported.range, 0, c))
        .collect();
    assert_eq!(header, COLUMNS.map(string));
    for (r, row) in expected.iter().enumerate() {
        for (c, expected) in row.cells.iter().enumerate() {
            assert_cell(&exported, r + 1, c, expected);
        }
    }
}

#[tokio::test]
async fn numbers_are_numbers_unless_excel_would_change_them() {
    let exported = Exported::rich().await;
    let value = |id: &str| exported.get(id, col::VALUE);
    assert_eq!(value("q-precision"), Data::Float(98.6));
    assert_eq!(value("q-tiny"), Data::Float(1e-22));
    assert_eq!(value("q-negative"), Data::Float(-0.5));
    assert_eq!(value("q-exponent"), Data::Float(1500.0));
    assert_eq!(value("q-integer"), Data::Float(72.0));
    assert_eq!(value("q-big"), Data::Float(1e18));
    assert_eq!(value("int-negative"), Data::Float(-3.0));
    assert_eq!(value("bool-true"), Data::Bool(true));
    assert_eq!(
        exported.get("q-precision", col::REFERENCE_LOW),
        Data::Float(97.0)
    );
    // Beyond a double, beyond Excel's 15 digits, or flushed to 0 by Excel: the written text.
    assert_eq!(value("q-underflow"), string("1e-400"));
    assert_eq!(
        value("q-30-digits"),
        string("1.23456789012345678901234567890")
    );
    assert_eq!(value("q-16-digits"), string("0.1234567890123456"));
    assert_eq!(value("q-subnormal"), string("1e-320"));
    // Formats show the written digits.
    let format = |id: &str, column: usize| exported.formats.code(exported.row(id), column);
    assert_eq!(format("q-precision", col::VALUE), "0.00");
    assert_eq!(format("q-precision", col::REFERENCE_LOW), "0.0");
    assert_eq!(format("q-negative", col::VALUE), "0.0");
    assert_eq!(format("q-tiny", col::VALUE), "0E+00");
    assert_eq!(format("q-exponent", col::VALUE), "0.00E+00");
    assert_eq!(format("q-integer", col::VALUE), "0");
    assert_eq!(format("bp#1", col::VALUE), "0.0");
}

#[tokio::test]
async fn times_display_their_rfc3339_text_with_the_offset() {
    let exported = Exported::rich().await;
    let effective = |id: &str| exported.displayed(id, col::EFFECTIVE);
    assert_eq!(effective("q-precision"), "2024-01-01T08:00:00+08:00");
    assert_eq!(effective("q-tiny"), "2024-01-01T08:00:00-05:00");
    assert_eq!(effective("q-negative"), "2024-01-01T08:00:00Z");
    assert_eq!(effective("q-big"), "2024-01-01T00:00:00+00:00");
    assert_eq!(effective("q-subnormal"), "2024-02-03T04:05:06.789+05:30");
    assert_eq!(effective("assumed"), "2016-12-13T11:02:30.5+08:00");
    assert_eq!(
        exported.get("assumed", col::EFFECTIVE_ZONE),
        string("assumed")
    );
    // A local time shows no offset, and says so.
    assert_eq!(effective("q-30-digits"), "2016-12-13T11:02:30.123");
    assert_eq!(
        exported.get("q-30-digits", col::EFFECTIVE_ZONE),
        string("local")
    );
    assert_eq!(
        exported.displayed("datetime-value", col::VALUE),
        "2016-12-13T11:02:30"
    );
    assert_eq!(
        exported.displayed("q-precision", col::ISSUED),
        "2024-01-01T08:05:00.250Z"
    );
    assert_eq!(
        exported.displayed("bp#0", col::EFFECTIVE_END),
        "2024-01-01T08:15:30+08:00"
    );
    // Dates are dates.
    assert_eq!(effective("q-underflow"), "2024-01-01");
    assert_eq!(
        exported
            .formats
            .code(exported.row("q-underflow"), col::EFFECTIVE),
        "yyyy-mm-dd"
    );
    let Data::DateTime(date) = exported.get("coded", col::EFFECTIVE) else {
        panic!("a date cell");
    };
    assert!(date.is_datetime());
    assert_eq!(date.to_ymd_hms_milli(), (2024, 3, 4, 0, 0, 0, 0));
    // What Excel cannot show exactly stays the RFC 3339 text.
    let text = |id: &str| exported.get(id, col::EFFECTIVE);
    assert_eq!(
        text("q-16-digits"),
        string("2024-02-03T04:05:06.789123+05:30")
    );
    assert_eq!(text("q-exponent"), string("1950"));
    assert_eq!(text("q-integer"), string("2014-05"));
    assert_eq!(text("before-1900"), string("1899-12-31"));
}

#[tokio::test]
async fn text_is_never_a_formula() {
    let exported = Exported::rich().await;
    assert_eq!(
        exported.get("t-formula", col::VALUE),
        string("=cmd|' /C calc'!A0")
    );
    assert_eq!(
        exported.get("t-formula", col::DISPLAY),
        string("@SUM(A1:A2)")
    );
    assert_eq!(exported.get("t-plus", col::VALUE), string("+1"));
    assert_eq!(
        exported.get("t-quote", col::VALUE),
        string("say \"hi\"\nnext")
    );
    assert_eq!(
        exported.get("before-1900", col::PATIENT_ID),
        string("-P000002")
    );
    assert!(!exported.formats.sheet.contains("<f>"), "no formula cells");
}

#[tokio::test]
async fn header_is_bold_frozen_filtered_and_every_column_has_a_width() {
    let exported = Exported::rich().await;
    let sheet = &exported.formats.sheet;
    assert!(
        sheet.contains(r#"<pane ySplit="1" topLeftCell="A2""#),
        "{sheet}"
    );
    let last = exported.range.height();
    assert!(
        sheet.contains(&format!(r#"<autoFilter ref="A1:AA{last}"/>"#)),
        "{sheet}"
    );
    // Widths: `<col min max width>` ranges covering columns 1..=27.
    let cols = sheet
        .split("<cols>")
        .nth(1)
        .unwrap()
        .split("</cols>")
        .next()
        .unwrap();
    let mut covered = Vec::new();
    for tag in cols.split("<col ").skip(1) {
        let tag = format!(" {tag}");
        let min: usize = attribute(&tag, "min").unwrap().parse().unwrap();
        let max: usize = attribute(&tag, "max").unwrap().parse().unwrap();
        let width: f64 = attribute(&tag, "width").unwrap().parse().unwrap();
        assert!(width > 8.0, "{tag}");
        covered.extend(min..=max);
    }
    assert_eq!(covered, (1..=COLUMNS.len()).collect::<Vec<_>>());
    // The header cells use a style whose font is bold.
    let styles = part(&exported.bytes, "xl/styles.xml");
    assert!(styles.contains("<b/>"), "{styles}");
    let header_style = attribute(
        sheet
            .split(r#"<c r="A1""#)
            .nth(1)
            .unwrap()
            .split('>')
            .next()
            .unwrap(),
        "s",
    );
    assert!(
        header_style.is_some_and(|s| s != "0"),
        "header cells carry a (bold) style"
    );
}

#[tokio::test]
async fn empty_export_is_a_header_only_sheet() {
    let (result, out) = export(ok_stream(Vec::new())).await;
    assert_eq!(result.unwrap(), 0);
    let sheet_xml = part(&out, "xl/worksheets/sheet1.xml");
    assert!(
        sheet_xml.contains(r#"<autoFilter ref="A1:AA1"/>"#),
        "{sheet_xml}"
    );
    assert_eq!(sheet(&out, "observations").get_size(), (1, COLUMNS.len()));
}

#[tokio::test]
async fn stream_error_writes_nothing() {
    let (result, out) = export(failing_stream(&fixture::rich())).await;
    assert_stream_error(result);
    assert!(out.is_empty(), "an incomplete workbook must not be sent");
}

#[tokio::test]
async fn oversized_text_fails_without_leaking_it() {
    let mut o = fixture::workload(0);
    o.value = medgate_core::Value::String("S".repeat(40_000));
    let (result, out) = export(ok_stream(vec![o])).await;
    let Err(medgate_core::Error::Export(message)) = result else {
        panic!("expected an export error");
    };
    assert!(message.contains("`value`"), "{message}");
    assert!(!message.contains("SSS"), "{message}");
    assert!(out.is_empty());
}

#[tokio::test]
async fn large_exports_stream_through() {
    const COUNT: u64 = 3_000;
    let observations: Vec<Observation> = (0..COUNT).map(fixture::workload).collect();
    let (result, out) = export(ok_stream(observations.clone())).await;
    assert_eq!(result.unwrap(), COUNT);
    let range = sheet(&out, "observations");
    assert_eq!(range.height() as u64, COUNT + 1);
    for (r, o) in observations.iter().enumerate().step_by(97) {
        let medgate_core::Value::Quantity(q) = &o.value else {
            unreachable!()
        };
        let value = q.value.as_ref().unwrap().to_f64_exact().unwrap();
        assert_eq!(cell(&range, r + 1, col::ID), string(&o.id));
        assert_eq!(cell(&range, r + 1, col::VALUE), Data::Float(value));
    }
}

#[tokio::test]
async fn full_sheets_roll_over_with_their_own_header() {
    // 4 rows per sheet including the header: 7 observations → 3 + 3 + 1.
    let observations: Vec<Observation> = (0..7).map(fixture::workload).collect();
    let (result, out) = export_with(
        XlsxExporter::with_max_rows(4),
        ok_stream(observations.clone()),
    )
    .await;
    assert_eq!(result.unwrap(), 7);
    let mut book = open(&out);
    assert_eq!(
        book.sheet_names(),
        ["observations", "observations-2", "observations-3"]
    );
    let mut next = observations.iter();
    for (name, count) in [
        ("observations", 3),
        ("observations-2", 3),
        ("observations-3", 1),
    ] {
        let range = book.worksheet_range(name).unwrap();
        assert_eq!(range.height(), count + 1, "{name}");
        assert_eq!(cell(&range, 0, 0), string("patient_id"));
        for r in 1..=count {
            assert_eq!(cell(&range, r, col::ID), string(&next.next().unwrap().id));
        }
    }
}

#[tokio::test]
async fn an_exactly_full_sheet_adds_no_empty_sheet() {
    let observations: Vec<Observation> = (0..3).map(fixture::workload).collect();
    let (_, out) = export_with(XlsxExporter::with_max_rows(4), ok_stream(observations)).await;
    assert_eq!(open(&out).sheet_names(), ["observations"]);
}

#[test]
fn registers_the_xlsx_format() {
    fixture::assert_registers(
        medgate_export_xlsx::register,
        &[(
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        )],
    );
}

/// The tests' own reading of Excel date-time formats, checked against known serials.
#[test]
fn the_display_renderer_reads_what_excel_shows() {
    // 2024-01-01 is serial 45292; 08:00:00.250 is 0.3333362… of a day.
    let serial = 45_292.0 + (8.0 * 3_600_000.0 + 250.0) / 86_400_000.0;
    assert_eq!(
        display_date_time(serial, "yyyy-mm-dd\"T\"hh:mm:ss.000\"Z\""),
        "2024-01-01T08:00:00.250Z"
    );
    assert_eq!(display_date_time(45_292.0, "yyyy-mm-dd"), "2024-01-01");
    assert_eq!(
        display_date_time(45_292.5, "yyyy-mm-dd\"T\"hh:mm:ss\"-05:30\""),
        "2024-01-01T12:00:00-05:30"
    );
}

/// Excel's real row limit and the 32 MB memory budget: too slow for CI, run with
/// `cargo test --release -p medgate-export-xlsx -- --ignored`.
#[tokio::test]
#[ignore = "exports 1,048,576 rows; run explicitly in release mode"]
async fn a_full_sheet_rolls_over_within_the_memory_budget() {
    const ROWS: u64 = 1_048_576; // header + this many rows needs two sheets
    let observations = futures::stream::iter((0..ROWS).map(|i| Ok(fixture::workload(i))));
    let path = std::env::temp_dir().join(format!("medgate-xlsx-{}.xlsx", std::process::id()));
    let mut out = tokio::fs::File::create(&path).await.unwrap();
    let started = std::time::Instant::now();
    let summary = XlsxExporter::default()
        .export(Box::pin(observations), &mut out)
        .await
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.rows, ROWS);
    let bytes = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "{ROWS} rows in {seconds:.1} s: {:.0} rows/s, {bytes} bytes",
        ROWS as f64 / seconds
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(peak) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
        let kib: u64 = peak.trim().trim_end_matches("kB").trim().parse().unwrap();
        eprintln!("peak RSS after {ROWS} rows: {kib} KiB");
        assert!(kib < 32 * 1024, "peak RSS {kib} KiB");
    }
    // The last row did not fit on the first sheet: it is alone on `observations-2`.
    let file = std::fs::File::open(&path).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut workbook = String::new();
    zip.by_name("xl/workbook.xml")
        .unwrap()
        .read_to_string(&mut workbook)
        .unwrap();
    assert!(workbook.contains(r#"name="observations-2""#), "{workbook}");
    let mut second = String::new();
    zip.by_name("xl/worksheets/sheet2.xml")
        .unwrap()
        .read_to_string(&mut second)
        .unwrap();
    assert!(second.contains(r#"<autoFilter ref="A1:AA2"/>"#), "{second}");
    std::fs::remove_file(&path).unwrap();
}
