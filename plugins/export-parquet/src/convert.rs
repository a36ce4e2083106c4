//! How typed cells become Parquet values, and when they cannot.
//!
//! Every typed value has a text twin in the file, so these conversions may refuse: a `None`
//! here is a null typed cell next to the written text, never a rounded or invented value.
//! - A number is a double only when the double holds the written number exactly
//!   ([`Decimal::to_f64_exact`]: `98.60` → 98.6, `1e-22` → 1e-22; `1e-400`, `1e400` and 30
//!   significant digits → none). Parquet's DECIMAL needs one scale per column, and `98.60`
//!   and `1e-22` in one column have none in common, so doubles are the typed form.
//! - A time of day is an instant only when it has an offset (written, `Z`, or assumed from
//!   the source's zone) and is a whole number of microseconds; a local time, a date, a month
//!   or a year is not an instant.
//! - A date (day precision only) is a day count; a month or a year would need an invented day.

use jiff::civil;
use medgate_core::{DateTime, Decimal, Precision};

/// The largest magnitude up to which every integer is a double: 2^53.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// The double that holds `d` exactly, or `None`.
pub(crate) fn exact_double(d: &Decimal) -> Option<f64> {
    d.to_f64_exact()
}

/// The double that holds `i` exactly, or `None` beyond ±2^53.
pub(crate) fn integer_double(i: i64) -> Option<f64> {
    // Exact: |i| ≤ 2^53 has at most 53 significant bits.
    (i.unsigned_abs() <= MAX_EXACT_INTEGER).then_some(i as f64)
}

/// Microseconds since 1970-01-01T00:00:00Z of a time of day with an offset, or `None` for
/// dates, local times and times finer than a microsecond.
pub(crate) fn instant_micros(d: &DateTime) -> Option<i64> {
    let instant = d.timestamp()?;
    (instant.subsec_nanosecond() % 1_000 == 0).then(|| instant.as_microsecond())
}

/// Days since 1970-01-01 of a date, or `None` for anything that is not exactly a day.
pub(crate) fn date_days(d: &DateTime) -> Option<i32> {
    if d.precision() != Precision::Day {
        return None;
    }
    // Dates are midnights, so the duration is a whole number of days; jiff's dates span
    // ±9999 years, well within an i32 of days.
    let seconds = d.date().duration_since(civil::date(1970, 1, 1)).as_secs();
    i32::try_from(seconds.div_euclid(86_400)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Option<f64> {
        exact_double(&Decimal::parse(text).unwrap())
    }

    fn dt(text: &str) -> DateTime {
        DateTime::parse(text).unwrap()
    }

    #[test]
    fn numbers_are_doubles_only_when_exact() {
        assert_eq!(number("98.60"), Some(98.6));
        assert_eq!(number("1e-22"), Some(1e-22));
        assert_eq!(number("-0.5"), Some(-0.5));
        assert_eq!(number("1.50e3"), Some(1500.0));
        assert_eq!(number("1000000000000000000"), Some(1e18));
        for inexact in [
            "1e-400",
            "1e400",
            "1.23456789012345678901234567890",
            "12345678901234567",
        ] {
            assert_eq!(number(inexact), None, "{inexact}");
        }
    }

    #[test]
    fn integers_are_doubles_up_to_two_to_the_53() {
        assert_eq!(integer_double(-3), Some(-3.0));
        assert_eq!(integer_double(1 << 53), Some(9_007_199_254_740_992.0));
        assert_eq!(integer_double(-(1 << 53)), Some(-9_007_199_254_740_992.0));
        assert_eq!(integer_double((1 << 53) + 1), None);
        assert_eq!(integer_double(i64::MIN), None);
    }

    #[test]
    fn instants_are_utc_microseconds_of_times_with_an_offset() {
        // 08:00 at +08:00 is midnight UTC.
        assert_eq!(
            instant_micros(&dt("2024-01-01T08:00:00+08:00")),
            Some(1_704_067_200_000_000)
        );
        assert_eq!(
            instant_micros(&dt("2024-01-01T00:00:00Z")),
            Some(1_704_067_200_000_000)
        );
        assert_eq!(instant_micros(&dt("1969-12-31T23:59:59.999999Z")), Some(-1));
        assert_eq!(
            instant_micros(&dt("2024-02-03T04:05:06.789123+05:30")),
            Some(1_706_913_306_789_123)
        );
        for none in [
            "2024-01-01",
            "2014-05",
            "1950",
            "2016-12-13T11:02:30.123",
            "2024-01-01T00:00:00.1234567Z",
        ] {
            assert_eq!(instant_micros(&dt(none)), None, "{none}");
        }
    }

    #[test]
    fn dates_are_day_counts_of_day_precision_values_only() {
        assert_eq!(date_days(&dt("1970-01-01")), Some(0));
        assert_eq!(date_days(&dt("2024-03-04")), Some(19_786));
        assert_eq!(date_days(&dt("1899-12-31")), Some(-25_568));
        for none in ["2014-05", "1950", "2024-01-01T08:00:00+08:00"] {
            assert_eq!(date_days(&dt(none)), None, "{none}");
        }
    }
}
