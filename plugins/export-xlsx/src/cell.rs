//! How a [`Cell`](medgate_core::Cell) becomes an Excel cell: which values may be Excel numbers
//! and date-times, and the number format that makes each one display exactly as written.
//!
//! Excel holds numbers as binary doubles and shows at most 15 significant digits, and holds
//! date-times as a day count in no time zone, to the millisecond. Whatever does not survive
//! that unchanged is written as a text cell holding the written value instead: a reader sees
//! text (Excel flags it "number stored as text"), never a silently rounded number.
//!
//! Date-times: a cell's serial is the wall-clock time in the value's own offset, and its number
//! format spells the rest of the RFC 3339 text around it (`yyyy-mm-dd"T"hh:mm:ss.000"+05:30"`),
//! so the displayed text is exactly the RFC 3339 text, offset or `Z` included, and a local time
//! (no offset) shows none. The offset itself lives in the format, so sorting the column orders
//! wall-clock times, not instants; the `effective_zone` column says whether the offset was sent,
//! assumed from the source's configured zone, or absent.

use medgate_core::{DateTime, Decimal, Precision, Zone};
use rust_xlsxwriter::ExcelDateTime;

/// Excel shows and keeps 15 significant digits.
const EXCEL_DIGITS: usize = 15;

/// Excel's largest number (`9.99999999999999E+307`); beyond it a cell is an error.
const EXCEL_MAX: f64 = 9.999_999_999_999_99e307;

/// Excel number formats show at most 30 decimal places.
const MAX_FORMAT_DECIMALS: usize = 30;

/// Excel keeps milliseconds; finer fractions are written as text.
const MAX_FRACTION_DIGITS: u8 = 3;

/// A number format, by what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NumberFormat {
    /// `0`, `0.0`, `0.00` … with this many decimals.
    Fixed(u8),
    /// `0E+00`, `0.0E+00` … with this many decimals in the mantissa.
    Scientific(u8),
    /// Excel's General.
    General,
}

impl NumberFormat {
    /// The Excel format code.
    pub(crate) fn code(self) -> String {
        let decimals = |n: u8| {
            if n == 0 {
                String::new()
            } else {
                format!(".{}", "0".repeat(usize::from(n)))
            }
        };
        match self {
            NumberFormat::Fixed(n) => format!("0{}", decimals(n)),
            NumberFormat::Scientific(n) => format!("0{}E+00", decimals(n)),
            NumberFormat::General => "General".to_owned(),
        }
    }
}

/// The double an Excel number cell holds for `d`, when Excel keeps and shows it unchanged:
/// exact in an `f64` ([`Decimal::to_f64_exact`]), at most 15 significant digits, and within
/// Excel's range (Excel turns subnormal doubles into 0).
pub(crate) fn excel_number(d: &Decimal) -> Option<f64> {
    let value = d.to_f64_exact()?;
    let magnitude = value.abs();
    let in_range = magnitude == 0.0 || (f64::MIN_POSITIVE..=EXCEL_MAX).contains(&magnitude);
    (in_range && significant_digits(d.as_str()) <= EXCEL_DIGITS).then_some(value)
}

/// The format that shows `d`'s written digits: `98.60` → `0.00`, `1.50e3` → `0.00E+00`.
pub(crate) fn number_format(d: &Decimal) -> NumberFormat {
    let text = d.as_str().trim_start_matches('-');
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], true),
        None => (text, false),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let decimals = if exponent {
        // Excel's scientific format has one integer digit; the written significant digits
        // after the first are its decimals.
        let digits = int.len() + frac.len();
        let leading_zeros = int.chars().chain(frac.chars()).take_while(|&c| c == '0');
        digits
            .saturating_sub(leading_zeros.count())
            .saturating_sub(1)
    } else {
        frac.len()
    };
    match u8::try_from(decimals) {
        Ok(n) if decimals <= MAX_FORMAT_DECIMALS && exponent => NumberFormat::Scientific(n),
        Ok(n) if decimals <= MAX_FORMAT_DECIMALS => NumberFormat::Fixed(n),
        _ => NumberFormat::General,
    }
}

/// Digits between the first and the last non-zero digit of the mantissa: what an `f64` and
/// Excel must keep.
fn significant_digits(text: &str) -> usize {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let first = digits.iter().position(|&d| d != b'0');
    let last = digits.iter().rposition(|&d| d != b'0');
    match (first, last) {
        (Some(first), Some(last)) => last - first + 1,
        _ => 0,
    }
}

/// A date-time number format, by what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DateFormat {
    /// `yyyy-mm-dd`.
    Date,
    /// `yyyy-mm-dd"T"hh:mm:ss`, `fraction` digits of seconds, then the offset.
    Time { fraction: u8, zone: ZoneKey },
}

/// Which offset a time format shows (the same offset shows the same text whether it was sent
/// or assumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ZoneKey {
    /// No offset: a local time.
    Local,
    /// `Z`.
    Utc,
    /// `±hh:mm`, by its seconds.
    Offset(i32),
}

impl DateFormat {
    /// The Excel format code for `written`, a date-time this is the format of: the offset is
    /// spelled as core's own RFC 3339 text spells it, so the cell can never disagree with it.
    pub(crate) fn code(self, written: &DateTime) -> String {
        let DateFormat::Time { fraction, zone } = self else {
            return "yyyy-mm-dd".to_owned();
        };
        let mut code = "yyyy-mm-dd\"T\"hh:mm:ss".to_owned();
        if fraction > 0 {
            code.push('.');
            code.push_str(&"0".repeat(usize::from(fraction)));
        }
        if zone != ZoneKey::Local {
            // `YYYY-MM-DDThh:mm:ss` is 19 bytes for the years 1900–9999 Excel takes, then
            // the fraction, then the offset.
            let text = written.to_string();
            let start = 19
                + if fraction > 0 {
                    usize::from(fraction) + 1
                } else {
                    0
                };
            code.push('"');
            code.push_str(text.get(start..).unwrap_or_default());
            code.push('"');
        }
        code
    }
}

/// The Excel date-time and the format that displays `d` exactly as its RFC 3339 text, or
/// `None` when Excel cannot: a year or a month alone (Excel has no partial dates, and a day
/// would be invented), a time finer than milliseconds, or a date outside 1900-03-01 to
/// 9999-12-31 (before March 1900, Excel's phantom 1900-02-29 makes readers disagree by a
/// day: LibreOffice shows 1900-01-01 as 1899-12-31, Excel shows 1899-12-31 as 1900-01-00).
pub(crate) fn excel_date_time(d: &DateTime) -> Option<(ExcelDateTime, DateFormat)> {
    let date = d.date();
    if date < jiff::civil::date(1900, 3, 1) {
        return None;
    }
    let day = ExcelDateTime::from_ymd(
        u16::try_from(date.year()).ok()?,
        u8::try_from(date.month()).ok()?,
        u8::try_from(date.day()).ok()?,
    )
    .ok()?;
    match d.precision() {
        Precision::Year | Precision::Month => None,
        Precision::Day => Some((day, DateFormat::Date)),
        Precision::Second => {
            let fraction = d.fraction_digits();
            if fraction > MAX_FRACTION_DIGITS {
                return None;
            }
            let at = d.civil()?;
            let milli = u16::try_from(at.subsec_nanosecond() / 1_000_000).ok()?;
            let time = day
                .and_hms_milli(
                    u16::try_from(at.hour()).ok()?,
                    u8::try_from(at.minute()).ok()?,
                    u8::try_from(at.second()).ok()?,
                    milli,
                )
                .ok()?;
            let zone = match d.zone()? {
                Zone::Local => ZoneKey::Local,
                Zone::Utc => ZoneKey::Utc,
                Zone::Offset(o) | Zone::Assumed(o) => ZoneKey::Offset(o.seconds()),
            };
            Some((time, DateFormat::Time { fraction, zone }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).unwrap()
    }

    #[test]
    fn numbers_excel_keeps_are_numbers() {
        let number = |t: &str| excel_number(&d(t));
        assert_eq!(number("98.60"), Some(98.6));
        assert_eq!(number("1e-22"), Some(1e-22));
        assert_eq!(number("-0.5"), Some(-0.5));
        assert_eq!(number("0"), Some(0.0));
        assert_eq!(number("123456789012345"), Some(123_456_789_012_345.0));
        assert_eq!(number("1000000000000000000"), Some(1e18));
        assert_eq!(number("98.600000000000000000"), Some(98.6));
        // Rounded by an f64, beyond Excel's 15 digits, or flushed to 0 by Excel.
        for t in [
            "1e-400",
            "1e400",
            "123456789012345678901234567890",
            "0.1234567890123456",
            "1234567890123456",
            "1e-320",
        ] {
            assert_eq!(number(t), None, "{t}");
        }
    }

    #[test]
    fn number_formats_show_the_written_digits() {
        let format = |t: &str| number_format(&d(t)).code();
        assert_eq!(format("98.60"), "0.00");
        assert_eq!(format("72"), "0");
        assert_eq!(format("-0.5"), "0.0");
        assert_eq!(format("1e-22"), "0E+00");
        assert_eq!(format("1.50e3"), "0.00E+00");
        assert_eq!(format("0.050E2"), "0.0E+00");
        assert_eq!(format(&format!("0.{}1", "0".repeat(30))), "General");
    }

    #[test]
    fn date_times_display_as_their_rfc3339_text() {
        let excel = |t: &str| {
            let written = DateTime::parse(t).unwrap();
            excel_date_time(&written).map(|(_, f)| f.code(&written))
        };
        assert_eq!(excel("2024-01-01").as_deref(), Some("yyyy-mm-dd"));
        assert_eq!(excel("1900-03-01").as_deref(), Some("yyyy-mm-dd"));
        assert_eq!(
            excel("2024-01-01T08:00:00+08:00").as_deref(),
            Some("yyyy-mm-dd\"T\"hh:mm:ss\"+08:00\"")
        );
        assert_eq!(
            excel("2020-06-30T09:50:55.300Z").as_deref(),
            Some("yyyy-mm-dd\"T\"hh:mm:ss.000\"Z\"")
        );
        assert_eq!(
            excel("2016-12-13T11:02:30.5").as_deref(),
            Some("yyyy-mm-dd\"T\"hh:mm:ss.0")
        );
        assert_eq!(
            excel("2024-01-01T00:00:00-05:30").as_deref(),
            Some("yyyy-mm-dd\"T\"hh:mm:ss\"-05:30\"")
        );
        for text in [
            "1950",
            "2014-05",
            "1899-12-31",
            "1900-01-01",
            "1900-02-28T10:00:00Z",
            "2024-01-01T08:00:00.1234+08:00",
        ] {
            assert_eq!(excel(text), None, "{text}");
        }
    }
}
