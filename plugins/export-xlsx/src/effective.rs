//! Parsing of `effective` timestamps into Excel date-time parts.
//!
//! Only the shapes medgate sources produce are recognised: RFC 3339 date-times with an offset
//! (`2024-01-01T08:00:00+08:00`, `…Z`, optional fractional seconds) and date-only values
//! (`2024-01-01`). Anything else is `None` and is exported as text, so no value is altered.

/// A recognised `effective` value, in the upstream's local wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effective<'a> {
    /// A calendar date.
    Date(Date),
    /// A date-time; `offset` is `Z` or `±HH:MM` exactly as written.
    DateTime {
        date: Date,
        time: Time,
        has_fraction: bool,
        offset: &'a str,
    },
}

/// Year, month, day as written (ranges checked; day-of-month checked by Excel's own validator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// Wall-clock time; Excel keeps milliseconds, so finer fractions are truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Time {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub milli: u16,
}

/// Parses `text`, or `None` when it is not a date or an RFC 3339 date-time with offset.
pub(crate) fn parse(text: &str) -> Option<Effective<'_>> {
    let b = text.as_bytes();
    let date = parse_date(b.get(..10)?)?;
    if b.len() == 10 {
        return Some(Effective::Date(date));
    }
    if !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    let (time, has_fraction, rest) = parse_time(b.get(11..)?)?;
    let offset = parse_offset(rest)?;
    // `offset` is the ASCII tail of `text`, so this slice is on a char boundary.
    let offset = text.get(text.len() - offset..)?;
    Some(Effective::DateTime {
        date,
        time,
        has_fraction,
        offset,
    })
}

fn parse_date(b: &[u8]) -> Option<Date> {
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let year = u16::try_from(digits(b.get(0..4)?)?).ok()?;
    let month = u8::try_from(digits(b.get(5..7)?)?).ok()?;
    let day = u8::try_from(digits(b.get(8..10)?)?).ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some(Date { year, month, day })
}

/// Parses `hh:mm:ss[.f+]`, returning the time and the unparsed tail.
fn parse_time(b: &[u8]) -> Option<(Time, bool, &[u8])> {
    if b.get(2) != Some(&b':') || b.get(5) != Some(&b':') {
        return None;
    }
    let hour = u8::try_from(digits(b.get(0..2)?)?).ok()?;
    let minute = u8::try_from(digits(b.get(3..5)?)?).ok()?;
    // A leap second (60) has no Excel representation: such values stay text.
    let second = u8::try_from(digits(b.get(6..8)?)?).ok()?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = b.get(8..)?;
    let mut milli = 0u16;
    let mut has_fraction = false;
    if rest.first() == Some(&b'.') {
        let len = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        let fraction = &rest[1..=len];
        // First three digits, right-padded: `.5` is 500 ms, `.123456` is 123 ms.
        for i in 0..3 {
            let digit = fraction.get(i).map_or(0, |c| u16::from(c - b'0'));
            milli = milli * 10 + digit;
        }
        has_fraction = true;
        rest = &rest[len + 1..];
    }
    let time = Time {
        hour,
        minute,
        second,
        milli,
    };
    Some((time, has_fraction, rest))
}

/// Validates the whole tail as `Z` or `±HH:MM`; returns its length.
fn parse_offset(b: &[u8]) -> Option<usize> {
    match b {
        [b'Z' | b'z'] => Some(1),
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            (hours <= 23 && minutes <= 59).then_some(6)
        }
        _ => None,
    }
}

/// The value of an all-ASCII-digit slice (at most 4 digits here, so no overflow).
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: u16, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    #[test]
    fn parses_dates_and_datetimes() {
        assert_eq!(parse("2024-01-01"), Some(Effective::Date(date(2024, 1, 1))));
        assert_eq!(
            parse("2024-01-01T08:00:00+08:00"),
            Some(Effective::DateTime {
                date: date(2024, 1, 1),
                time: Time {
                    hour: 8,
                    minute: 0,
                    second: 0,
                    milli: 0
                },
                has_fraction: false,
                offset: "+08:00",
            })
        );
        assert_eq!(
            parse("2023-12-31T23:59:58.5Z"),
            Some(Effective::DateTime {
                date: date(2023, 12, 31),
                time: Time {
                    hour: 23,
                    minute: 59,
                    second: 58,
                    milli: 500
                },
                has_fraction: true,
                offset: "Z",
            })
        );
        let Some(Effective::DateTime { time, offset, .. }) =
            parse("2024-06-01T10:20:30.123456-05:00")
        else {
            panic!("not parsed");
        };
        assert_eq!((time.milli, offset), (123, "-05:00"));
    }

    #[test]
    fn rejects_everything_else() {
        for text in [
            "",
            "2024",
            "2024-13-01",
            "2024-00-10",
            "2024-01-32",
            "2024-01-01T08:00:00",
            "2024-01-01T24:00:00Z",
            "2024-01-01T08:00:60Z",
            "2024-01-01T08:00:00.Z",
            "2024-01-01T08:00:00+8:00",
            "2024-01-01T08:00:00+24:00",
            "2024-01-01 08:00:00Z",
            "2024-01-01T08:00:00Zjunk",
            "２０２４-01-01",
            "2024-01-01T08:00:00+08:0é",
            "yesterday",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
