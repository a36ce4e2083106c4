//! [`DateTime`]: a clinical date-time that keeps its precision and its offset.
//!
//! Clinical times arrive as a bare year (`1950`), a month, a date, or a time of day with or
//! without an offset, in FHIR/RFC 3339 text or as HL7 `TS`. A date must never gain a
//! midnight, an offset must never be invented, and `Z` must stay `Z`: a [`DateTime`] remembers
//! exactly what was said and writes it back the same way. Calendar arithmetic (validation,
//! time zones, date shifting) is jiff's, never hand-written.

use std::fmt;
use std::str::FromStr;

use jiff::civil;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

/// How much of a date-time was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    /// `2024`
    Year,
    /// `2024-03`
    Month,
    /// `2024-03-01`
    Day,
    /// A time of day to the second (or finer: see [`DateTime::fraction_digits`]).
    Second,
}

/// Where a time of day's offset came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    /// None was given: a wall-clock time in an unknown zone. Written without an offset.
    Local,
    /// Written as `Z`.
    Utc,
    /// Written as `±hh:mm` (`+00:00` included) by the upstream.
    Offset(Offset),
    /// Not written upstream: medgate applied the source's configured time zone.
    Assumed(Offset),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Repr {
    Year(i16),
    Month(i16, i8),
    Date(civil::Date),
    Time {
        at: civil::DateTime,
        /// Digits of the fraction of a second as written (0–9).
        fraction: u8,
        zone: Zone,
    },
}

/// A date or date-time with its written precision and offset kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime(Repr);

/// Why a text is not a date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DateTimeError(&'static str);

type Parsed<T> = Result<T, DateTimeError>;

impl DateTime {
    /// A date.
    pub fn from_date(date: civil::Date) -> DateTime {
        DateTime(Repr::Date(date))
    }

    /// A time of day with a written offset (`Z` when the offset is zero and `zulu`).
    pub fn from_parts(at: civil::DateTime, fraction_digits: u8, zone: Zone) -> DateTime {
        DateTime(Repr::Time {
            at,
            fraction: fraction_digits.min(9),
            zone,
        })
    }

    /// An instant, written in UTC with `Z` and millisecond precision (medgate's own clocks).
    pub fn from_timestamp(ts: Timestamp) -> DateTime {
        let at = Offset::UTC.to_datetime(ts);
        DateTime::from_parts(at, 3, Zone::Utc)
    }

    /// Parses FHIR `date`/`dateTime`/`instant` and RFC 3339 text: `YYYY`, `YYYY-MM`,
    /// `YYYY-MM-DD`, or `YYYY-MM-DDThh:mm[:ss[.f]]` with `Z`, `±hh:mm`, `±hhmm` or no offset
    /// (a local time). `t` or a space may separate date and time.
    ///
    /// # Errors
    /// What is wrong, without echoing the text.
    pub fn parse(text: &str) -> Parsed<DateTime> {
        let b = text.trim().as_bytes();
        let year = year(b.get(..4).ok_or(BAD)?)?;
        if b.len() == 4 {
            return Ok(DateTime(Repr::Year(year)));
        }
        expect(b, 4, b'-')?;
        let month = two(b, 5)?;
        if b.len() == 7 {
            return month_of(year, month);
        }
        expect(b, 7, b'-')?;
        let date = date(year, month, two(b, 8)?)?;
        if b.len() == 10 {
            return Ok(DateTime(Repr::Date(date)));
        }
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(BAD);
        }
        let hour = two(b, 11)?;
        expect(b, 13, b':')?;
        let minute = two(b, 14)?;
        let mut i = 16;
        let mut second = 0;
        if b.get(i) == Some(&b':') {
            second = two(b, i + 1)?;
            i += 3;
        }
        let (nanos, fraction, after) = fraction_at(b, i)?;
        let zone = zone_at(&b[after..])?;
        let time = civil::Time::new(hour, minute, second, nanos).map_err(|_| BAD_TIME)?;
        Ok(DateTime::from_parts(date.to_datetime(time), fraction, zone))
    }

    /// Parses HL7 v2/v3 `TS`/`DTM`: `YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ]`. An offset on a
    /// value without a time of day is dropped (RFC 3339 cannot carry it).
    ///
    /// # Errors
    /// What is wrong, without echoing the text.
    pub fn parse_hl7(text: &str) -> Parsed<DateTime> {
        let text = text.trim();
        let (main, offset) = match text.find(['+', '-']) {
            Some(at) => (&text[..at], Some(&text[at..])),
            None => (text, None),
        };
        let (digits, fraction) = match main.find('.') {
            Some(at) => (&main[..at], Some(&main[at..])),
            None => (main, None),
        };
        let b = digits.as_bytes();
        if !b.iter().all(u8::is_ascii_digit) {
            return Err(BAD);
        }
        if fraction.is_some() && b.len() != 14 {
            return Err(BAD);
        }
        let zone = match offset {
            Some(o) => hl7_offset(o)?,
            None => Zone::Local,
        };
        let year = year(b.get(..4).ok_or(BAD)?)?;
        let value = match b.len() {
            4 => return Ok(DateTime(Repr::Year(year))),
            6 => return month_of(year, two(b, 4)?),
            8 => return Ok(DateTime(Repr::Date(date(year, two(b, 4)?, two(b, 6)?)?))),
            10 | 12 | 14 => {
                let date = date(year, two(b, 4)?, two(b, 6)?)?;
                let hour = two(b, 8)?;
                let minute = if b.len() >= 12 { two(b, 10)? } else { 0 };
                let second = if b.len() == 14 { two(b, 12)? } else { 0 };
                let (nanos, digits) = match fraction {
                    Some(f) if b.len() == 14 => {
                        let (nanos, digits, end) = fraction_at(f.as_bytes(), 0)?;
                        if end != f.len() {
                            return Err(BAD);
                        }
                        (nanos, digits)
                    }
                    _ => (0, 0),
                };
                let time = civil::Time::new(hour, minute, second, nanos).map_err(|_| BAD_TIME)?;
                DateTime::from_parts(date.to_datetime(time), digits, zone)
            }
            _ => return Err(BAD),
        };
        Ok(value)
    }

    /// How much was given.
    pub fn precision(&self) -> Precision {
        match self.0 {
            Repr::Year(_) => Precision::Year,
            Repr::Month(..) => Precision::Month,
            Repr::Date(_) => Precision::Day,
            Repr::Time { .. } => Precision::Second,
        }
    }

    /// Digits of the fraction of a second as written (0 for dates).
    pub fn fraction_digits(&self) -> u8 {
        match self.0 {
            Repr::Time { fraction, .. } => fraction,
            _ => 0,
        }
    }

    /// The offset's origin for a time of day; `None` for dates.
    pub fn zone(&self) -> Option<Zone> {
        match self.0 {
            Repr::Time { zone, .. } => Some(zone),
            _ => None,
        }
    }

    /// A time of day that carries no offset.
    pub fn is_local(&self) -> bool {
        self.zone() == Some(Zone::Local)
    }

    /// The first calendar day it covers.
    pub fn date(&self) -> civil::Date {
        match self.0 {
            Repr::Year(y) => civil::Date::new(y, 1, 1).unwrap_or_default(),
            Repr::Month(y, m) => civil::Date::new(y, m, 1).unwrap_or_default(),
            Repr::Date(d) => d,
            Repr::Time { at, .. } => at.date(),
        }
    }

    /// The wall-clock date-time of a time of day.
    pub fn civil(&self) -> Option<civil::DateTime> {
        match self.0 {
            Repr::Time { at, .. } => Some(at),
            _ => None,
        }
    }

    /// The offset of a time of day that has one.
    pub fn offset(&self) -> Option<Offset> {
        match self.zone()? {
            Zone::Local => None,
            Zone::Utc => Some(Offset::UTC),
            Zone::Offset(o) | Zone::Assumed(o) => Some(o),
        }
    }

    /// The instant of a time of day with an offset.
    pub fn timestamp(&self) -> Option<Timestamp> {
        let at = self.civil()?;
        self.offset()?.to_timestamp(at).ok()
    }

    /// The instants it covers, `[start, end)`, for search filters. Dates and local times are
    /// read in UTC (the gateway has no better knowledge).
    pub fn bounds(&self) -> (Timestamp, Timestamp) {
        let utc = |dt: civil::DateTime| Offset::UTC.to_timestamp(dt).unwrap_or(Timestamp::MIN);
        let start_day = self.date();
        let end_day = match self.0 {
            Repr::Year(_) => start_day.checked_add(jiff::Span::new().years(1)),
            Repr::Month(..) => start_day.checked_add(jiff::Span::new().months(1)),
            _ => start_day.checked_add(jiff::Span::new().days(1)),
        };
        match self.timestamp() {
            Some(ts) => (ts, ts),
            None => match self.0 {
                Repr::Time { at, .. } => (utc(at), utc(at)),
                _ => (
                    utc(start_day.to_datetime(civil::Time::midnight())),
                    end_day
                        .map(|d| utc(d.to_datetime(civil::Time::midnight())))
                        .unwrap_or(Timestamp::MAX),
                ),
            },
        }
    }

    /// A local time placed in `tz` (its offset becomes [`Zone::Assumed`]); anything else is
    /// returned unchanged. Ambiguous wall-clock times take the earlier offset, as RFC 5545
    /// and Temporal's "compatible" rule do.
    pub fn assume_zone(self, tz: &TimeZone) -> DateTime {
        match self.0 {
            Repr::Time {
                at,
                fraction,
                zone: Zone::Local,
            } => match at.to_zoned_datetime(tz.clone()) {
                Ok(zoned) => DateTime::from_parts(at, fraction, Zone::Assumed(zoned.offset())),
                Err(_) => self,
            },
            _ => self,
        }
    }

    /// Moved by `days` calendar days, keeping precision, time of day and offset. A year or
    /// month moves with its first day and is then cut back to its precision.
    pub fn shift_days(self, days: i32) -> DateTime {
        let span = jiff::Span::new().days(days);
        match self.0 {
            Repr::Time { at, fraction, zone } => match at.checked_add(span) {
                Ok(at) => DateTime::from_parts(at, fraction, zone),
                Err(_) => self,
            },
            _ => match self.date().checked_add(span) {
                Ok(d) => DateTime(Repr::Date(d)).truncate(self.precision()),
                Err(_) => self,
            },
        }
    }

    /// Cut to at most `precision` (a time of day cut to a day keeps its own calendar day).
    pub fn truncate(self, precision: Precision) -> DateTime {
        if precision >= self.precision() {
            return self;
        }
        let d = self.date();
        DateTime(match precision {
            Precision::Year => Repr::Year(d.year()),
            Precision::Month => Repr::Month(d.year(), d.month()),
            Precision::Day | Precision::Second => Repr::Date(d),
        })
    }
}

const BAD: DateTimeError =
    DateTimeError("not a date or date-time (expected YYYY[-MM[-DD[Thh:mm[:ss[.f]][Z|±hh:mm]]]])");
const BAD_DATE: DateTimeError = DateTimeError("not a valid calendar date");
const BAD_TIME: DateTimeError = DateTimeError("not a valid time of day");
const BAD_OFFSET: DateTimeError = DateTimeError("not a valid UTC offset");

fn year(b: &[u8]) -> Parsed<i16> {
    if b.len() != 4 || !b.iter().all(u8::is_ascii_digit) {
        return Err(BAD);
    }
    Ok(b.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0')))
}

fn two(b: &[u8], at: usize) -> Parsed<i8> {
    match b.get(at..at + 2) {
        Some([h, l]) if h.is_ascii_digit() && l.is_ascii_digit() => {
            Ok(((h - b'0') * 10 + (l - b'0')) as i8)
        }
        _ => Err(BAD),
    }
}

fn expect(b: &[u8], at: usize, c: u8) -> Parsed<()> {
    (b.get(at) == Some(&c)).then_some(()).ok_or(BAD)
}

fn month_of(year: i16, month: i8) -> Parsed<DateTime> {
    if !(1..=12).contains(&month) {
        return Err(BAD_DATE);
    }
    Ok(DateTime(Repr::Month(year, month)))
}

fn date(year: i16, month: i8, day: i8) -> Parsed<civil::Date> {
    civil::Date::new(year, month, day).map_err(|_| BAD_DATE)
}

/// A `.digits` fraction at `at` (if any): (nanoseconds, digits written, index after it).
fn fraction_at(b: &[u8], at: usize) -> Parsed<(i32, u8, usize)> {
    if b.get(at) != Some(&b'.') {
        return Ok((0, 0, at));
    }
    let digits = b[at + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 || digits > 9 {
        return Err(BAD);
    }
    let mut nanos = 0i32;
    for d in &b[at + 1..at + 1 + digits] {
        nanos = nanos * 10 + i32::from(d - b'0');
    }
    nanos *= 10i32.pow(9 - digits as u32);
    Ok((nanos, digits as u8, at + 1 + digits))
}

/// `Z`, `±hh:mm`, `±hhmm`, `±hh`, or nothing.
fn zone_at(b: &[u8]) -> Parsed<Zone> {
    match b {
        [] => Ok(Zone::Local),
        [b'Z' | b'z'] => Ok(Zone::Utc),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [_, _] => (two(rest, 0)?, 0),
                [_, _, b':', _, _] => (two(rest, 0)?, two(rest, 3)?),
                [_, _, _, _] => (two(rest, 0)?, two(rest, 2)?),
                _ => return Err(BAD_OFFSET),
            };
            offset(*sign, h, m).map(Zone::Offset)
        }
        _ => Err(BAD),
    }
}

fn hl7_offset(text: &str) -> Parsed<Zone> {
    let b = text.as_bytes();
    if b.len() != 5 {
        return Err(BAD_OFFSET);
    }
    offset(b[0], two(b, 1)?, two(b, 3)?).map(Zone::Offset)
}

fn offset(sign: u8, hours: i8, minutes: i8) -> Parsed<Offset> {
    if hours > 23 || minutes > 59 {
        return Err(BAD_OFFSET);
    }
    let seconds = i32::from(hours) * 3600 + i32::from(minutes) * 60;
    let seconds = if sign == b'-' { -seconds } else { seconds };
    Offset::from_seconds(seconds).map_err(|_| BAD_OFFSET)
}

/// A date-time's RFC 3339 text, built without the formatting machinery (rows and JSON
/// answers write one per observation).
struct Text {
    buf: [u8; 40],
    len: usize,
}

impl Text {
    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn digits(&mut self, n: u32, width: usize) {
        let mut n = n;
        for i in (0..width).rev() {
            self.buf[self.len + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len += width;
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl DateTime {
    /// The text [`Display`](fmt::Display) writes, for years 0–9999 (all that FHIR and HL7
    /// text can say); `None` for others, which take the general path.
    fn text(&self) -> Option<Text> {
        let mut t = Text {
            buf: [0; 40],
            len: 0,
        };
        let year = |y: i16| u32::try_from(y).ok().filter(|y| *y <= 9999);
        let date = |t: &mut Text, d: civil::Date| -> Option<()> {
            t.digits(year(d.year())?, 4);
            t.push(b'-');
            t.digits(d.month().unsigned_abs().into(), 2);
            t.push(b'-');
            t.digits(d.day().unsigned_abs().into(), 2);
            Some(())
        };
        match self.0 {
            Repr::Year(y) => t.digits(year(y)?, 4),
            Repr::Month(y, m) => {
                t.digits(year(y)?, 4);
                t.push(b'-');
                t.digits(m.unsigned_abs().into(), 2);
            }
            Repr::Date(d) => date(&mut t, d)?,
            Repr::Time { at, fraction, zone } => {
                date(&mut t, at.date())?;
                t.push(b'T');
                t.digits(at.hour().unsigned_abs().into(), 2);
                t.push(b':');
                t.digits(at.minute().unsigned_abs().into(), 2);
                t.push(b':');
                t.digits(at.second().unsigned_abs().into(), 2);
                if fraction > 0 {
                    let scaled = at.subsec_nanosecond() / 10i32.pow(9 - u32::from(fraction));
                    t.push(b'.');
                    t.digits(scaled.unsigned_abs(), usize::from(fraction));
                }
                match zone {
                    Zone::Local => {}
                    Zone::Utc => t.push(b'Z'),
                    Zone::Offset(o) | Zone::Assumed(o) => {
                        let seconds = o.seconds();
                        t.push(if seconds < 0 { b'-' } else { b'+' });
                        let minutes = seconds.unsigned_abs() / 60;
                        t.digits(minutes / 60, 2);
                        t.push(b':');
                        t.digits(minutes % 60, 2);
                    }
                }
            }
        }
        Some(t)
    }
}

impl DateTime {
    /// Appends the RFC 3339 text ([`Display`](fmt::Display)'s) to `out`.
    pub(crate) fn write_text(&self, out: &mut String) {
        match self.text() {
            Some(text) => out.push_str(text.as_str()),
            None => {
                use fmt::Write as _;
                let _ = write!(out, "{self}");
            }
        }
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(text) => f.write_str(text.as_str()),
            None => self.fmt_general(f),
        }
    }
}

impl DateTime {
    /// Any year (a shifted date may leave 0–9999), through the formatting machinery.
    fn fmt_general(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Repr::Year(y) => write!(f, "{y:04}"),
            Repr::Month(y, m) => write!(f, "{y:04}-{m:02}"),
            Repr::Date(d) => write_date(f, d),
            Repr::Time { at, fraction, zone } => {
                write_date(f, at.date())?;
                write!(f, "T{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())?;
                if fraction > 0 {
                    let scaled = at.subsec_nanosecond() / 10i32.pow(9 - u32::from(fraction));
                    write!(f, ".{scaled:0width$}", width = usize::from(fraction))?;
                }
                match zone {
                    Zone::Local => Ok(()),
                    Zone::Utc => f.write_str("Z"),
                    Zone::Offset(o) | Zone::Assumed(o) => write_offset(f, o),
                }
            }
        }
    }
}

fn write_date(f: &mut fmt::Formatter<'_>, d: civil::Date) -> fmt::Result {
    write!(f, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

fn write_offset(f: &mut fmt::Formatter<'_>, o: Offset) -> fmt::Result {
    let seconds = o.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    write!(f, "{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

impl FromStr for DateTime {
    type Err = DateTimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse(s)
    }
}

impl serde::Serialize for DateTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.text() {
            Some(text) => s.serialize_str(text.as_str()),
            None => s.collect_str(self),
        }
    }
}

impl<'de> serde::Deserialize<'de> for DateTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let parsed = DateTime::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed.to_string(), text);
    }

    /// The fast text and the general formatter agree on every shape, and JSON gets the same.
    #[test]
    fn fast_text_matches_the_general_formatter() {
        struct General<'a>(&'a DateTime);
        impl fmt::Display for General<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt_general(f)
            }
        }
        let mut cases = Vec::new();
        for year in ["0001", "0999", "1950", "2024", "9999"] {
            cases.push(year.to_owned());
            cases.push(format!("{year}-02"));
            cases.push(format!("{year}-12-31"));
            for zone in ["", "Z", "+00:00", "-05:30", "+14:00", "-00:45"] {
                cases.push(format!("{year}-06-30T23:59:59{zone}"));
                for digits in 1..=9 {
                    let fraction = &"123456789"[..digits];
                    cases.push(format!("{year}-01-01T00:00:00.{fraction}{zone}"));
                    cases.push(format!(
                        "{year}-01-01T00:00:00.{}{zone}",
                        "0".repeat(digits)
                    ));
                }
            }
        }
        for text in &cases {
            let d = DateTime::parse(text).unwrap();
            assert_eq!(d.to_string(), *text);
            assert_eq!(General(&d).to_string(), *text);
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{text}\""));
        }
        // Out of 0-9999 only through date shifting: the general path writes it.
        let far = DateTime::parse("0001-01-01").unwrap().shift_days(-800);
        assert_eq!(far.to_string(), General(&far).to_string());
        assert!(far.to_string().starts_with('-'), "{far}");
        assert_eq!(serde_json::to_string(&far).unwrap(), format!("\"{far}\""));
    }

    #[test]
    fn fhir_and_rfc3339_text_round_trips_exactly() {
        for t in [
            "1950",
            "2014-05",
            "1999-07-02",
            "2016-05-18T22:33:22Z",
            "2024-01-01T05:23:10+08:00",
            "2020-06-30T09:50:55.300Z",
            "2014-12-05T09:30:10+01:00",
            "2023-03-21T23:16:00+10:00",
            "2024-01-01T00:00:00+00:00",
            "2024-01-01T00:00:00-05:30",
            "2016-12-13T11:02:30.000",
            "2016-12-13T11:02:30.123456789Z",
        ] {
            round_trip(t);
        }
    }

    #[test]
    fn precision_and_zone_are_kept() {
        let d = DateTime::parse("2016-12-13T11:02:30.000").unwrap();
        assert_eq!(d.precision(), Precision::Second);
        assert!(d.is_local());
        assert_eq!(d.offset(), None);
        assert_eq!(d.fraction_digits(), 3);
        assert_eq!(
            DateTime::parse("2014-05").unwrap().precision(),
            Precision::Month
        );
        assert_eq!(
            DateTime::parse("2016-05-18 22:33").unwrap().to_string(),
            "2016-05-18T22:33:00"
        );
        assert_eq!(
            DateTime::parse("2016-05-18T22:33:00+0800")
                .unwrap()
                .to_string(),
            "2016-05-18T22:33:00+08:00"
        );
    }

    #[test]
    fn invalid_text_is_refused() {
        for bad in [
            "",
            "20",
            "2024-13",
            "2024-02-30",
            "2024-01-01T25:00:00Z",
            "2024-01-01T10:00:00+25:00",
            "2024-01-01T10",
            "yesterday",
            "2024-01-01T10:00:00.Z",
            "2024-1-1",
        ] {
            assert!(DateTime::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hl7_timestamps() {
        let check = |ts: &str, want: &str| {
            assert_eq!(DateTime::parse_hl7(ts).unwrap().to_string(), want, "{ts}");
        };
        check("20140520193605-0500", "2014-05-20T19:36:05-05:00");
        check("201208151005-0800", "2012-08-15T10:05:00-08:00");
        check("20140520", "2014-05-20");
        check("201405201936", "2014-05-20T19:36:00");
        check("1950", "1950");
        check("195007", "1950-07");
        check("20140520193605.123+0130", "2014-05-20T19:36:05.123+01:30");
        check("20121114+0500", "2012-11-14");
        for bad in [
            "",
            "garbage",
            "2014-05",
            "20141320",
            "2014052019360",
            "20140520.5",
        ] {
            assert!(DateTime::parse_hl7(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_configured_zone_applies_only_to_local_times() {
        let tz = jiff::tz::db().get("Asia/Shanghai").unwrap();
        let local = DateTime::parse("2016-12-13T11:02:30")
            .unwrap()
            .assume_zone(&tz);
        assert_eq!(local.to_string(), "2016-12-13T11:02:30+08:00");
        assert!(matches!(local.zone(), Some(Zone::Assumed(_))));
        let written = DateTime::parse("2016-12-13T11:02:30-05:00").unwrap();
        assert_eq!(written.assume_zone(&tz), written);
        let date = DateTime::parse("2016-12-13").unwrap();
        assert_eq!(date.assume_zone(&tz), date);
        // New York's DST gap and fold are resolved by jiff, not by hand.
        let ny = jiff::tz::db().get("America/New_York").unwrap();
        let summer = DateTime::parse("2024-07-01T12:00:00")
            .unwrap()
            .assume_zone(&ny);
        assert_eq!(summer.to_string(), "2024-07-01T12:00:00-04:00");
    }

    #[test]
    fn shifting_and_truncating_keep_the_shape() {
        let t = DateTime::parse("2024-02-28T23:30:00.50+08:00").unwrap();
        assert_eq!(t.shift_days(2).to_string(), "2024-03-01T23:30:00.50+08:00");
        assert_eq!(
            t.shift_days(-365).to_string(),
            "2023-02-28T23:30:00.50+08:00"
        );
        assert_eq!(t.truncate(Precision::Day).to_string(), "2024-02-28");
        assert_eq!(t.truncate(Precision::Month).to_string(), "2024-02");
        assert_eq!(t.truncate(Precision::Year).to_string(), "2024");
        let month = DateTime::parse("2024-01").unwrap();
        assert_eq!(month.shift_days(40).to_string(), "2024-02");
    }

    #[test]
    fn bounds_cover_the_written_precision() {
        let (s, e) = DateTime::parse("2024-02").unwrap().bounds();
        assert_eq!(s.to_string(), "2024-02-01T00:00:00Z");
        assert_eq!(e.to_string(), "2024-03-01T00:00:00Z");
        let (s, e) = DateTime::parse("2024-02-01T08:00:00+08:00")
            .unwrap()
            .bounds();
        assert_eq!((s.to_string(), e), ("2024-02-01T00:00:00Z".to_owned(), s));
    }
}
