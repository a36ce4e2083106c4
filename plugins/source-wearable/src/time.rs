//! Times: Open mHealth time frames, and durations added to date-times with jiff.
//!
//! - `{date_time}` → a date-time; `{time_interval: {start_date_time, end_date_time}}` → a
//!   period; `{start_date_time, duration}` (or `{end_date_time, duration}`) → a period whose
//!   other end is computed in the written offset (wall-clock arithmetic under a fixed offset
//!   is exact; a local time stays local).
//! - `{date, part_of_day}` → the date, at day precision. `part_of_day` (`morning`,
//!   `afternoon`, `evening`, `night`) has no FHIR equivalent and medgate will not invent
//!   clock times for it, so it is dropped with a warning.
//! - Anything unreadable gives no time (or an open period) and a warning at its pointer;
//!   a missing time frame gives no time and a warning, because an observation without a time
//!   falls out of every time filter.

use jiff::{civil, SignedDuration, Span};
use medgate_core::{DateTime, Decimal, Effective, Period, Warning};
use serde_json::value::RawValue;

use crate::json::{self, bad, Object, Ptr};
use crate::units;

/// A date or date-time string at `pointer`.
pub(crate) fn date_time(raw: &RawValue, pointer: &Ptr<'_>) -> Result<DateTime, Warning> {
    let text = json::text(raw, pointer)?;
    DateTime::parse(&text).map_err(|e| bad(pointer, e.to_string()))
}

/// An optional date-time member: absent → `None`; unreadable → `None` and a warning.
fn member(
    obj: &Object<'_>,
    name: &str,
    pointer: &Ptr<'_>,
    w: &mut Vec<Warning>,
) -> Option<DateTime> {
    let raw = json::optional(obj, name)?;
    date_time(raw, &pointer.at(name))
        .map_err(|e| w.push(e))
        .ok()
}

/// The `effective_time_frame` of a body at `body_ptr`, and whether it was one `date_time`
/// (rather than an interval).
pub(crate) fn time_frame(
    body: &Object<'_>,
    body_ptr: &Ptr<'_>,
    w: &mut Vec<Warning>,
) -> (Option<Effective>, bool) {
    let ptr = body_ptr.at("effective_time_frame");
    let Some(raw) = json::optional(body, "effective_time_frame") else {
        w.push(bad(&ptr, "missing: the observation has no time"));
        return (None, false);
    };
    let Ok(frame) = json::object(raw, &ptr).map_err(|e| w.push(e)) else {
        return (None, false);
    };
    if json::optional(&frame, "date_time").is_some() {
        let at = member(&frame, "date_time", &ptr, w).map(Effective::DateTime);
        return (at, true);
    }
    let Some(interval) = json::optional(&frame, "time_interval") else {
        w.push(bad(&ptr, "expected date_time or time_interval"));
        return (None, false);
    };
    let iptr = ptr.at("time_interval");
    let Ok(interval) = json::object(interval, &iptr).map_err(|e| w.push(e)) else {
        return (None, false);
    };
    (time_interval(&interval, &iptr, w), false)
}

fn time_interval(i: &Object<'_>, ptr: &Ptr<'_>, w: &mut Vec<Warning>) -> Option<Effective> {
    let start = member(i, "start_date_time", ptr, w);
    let end = member(i, "end_date_time", ptr, w);
    let dptr = ptr.at("duration");
    let duration = json::optional(i, "duration")
        .and_then(|raw| amount(raw, &dptr).map_err(|e| w.push(e)).ok());
    let period = match (start, end, duration) {
        (Some(s), Some(e), _) => Period {
            start: Some(s),
            end: Some(e),
        },
        (Some(s), None, Some((n, unit))) => Period {
            start: Some(s),
            end: shift(s, &n, unit, 1)
                .map_err(|m| w.push(bad(&dptr, m)))
                .ok(),
        },
        (None, Some(e), Some((n, unit))) => Period {
            start: shift(e, &n, unit, -1)
                .map_err(|m| w.push(bad(&dptr, m)))
                .ok(),
            end: Some(e),
        },
        (Some(s), None, None) => {
            w.push(bad(ptr, "no end_date_time or duration: the period is open"));
            Period {
                start: Some(s),
                end: None,
            }
        }
        (None, Some(e), None) => {
            w.push(bad(
                ptr,
                "no start_date_time or duration: the period is open",
            ));
            Period {
                start: None,
                end: Some(e),
            }
        }
        (None, None, _) => return date_of_day(i, ptr, w),
    };
    if let (Some(s), Some(e)) = (&period.start, &period.end) {
        if ends_before_start(s, e) {
            w.push(bad(ptr, "the period ends before it starts"));
        }
    }
    Some(Effective::Period(period))
}

/// `{date, part_of_day}`: the date only (see the module docs).
fn date_of_day(i: &Object<'_>, ptr: &Ptr<'_>, w: &mut Vec<Warning>) -> Option<Effective> {
    if json::optional(i, "date").is_none() {
        w.push(bad(
            ptr,
            "expected start_date_time, end_date_time, duration or date",
        ));
        return None;
    }
    let date = member(i, "date", ptr, w)?;
    if json::optional(i, "part_of_day").is_some() {
        w.push(bad(
            &ptr.at("part_of_day"),
            "part of day is not kept: the time is the date only",
        ));
    }
    Some(Effective::DateTime(date))
}

/// `{value, unit}` of a duration, the unit as its UCUM code.
fn amount(raw: &RawValue, ptr: &Ptr<'_>) -> Result<(Decimal, &'static str), Warning> {
    let obj = json::object(raw, ptr)?;
    let (value, _) = json::number(json::required(&obj, "value", ptr)?, &ptr.at("value"))?;
    let uptr = ptr.at("unit");
    let unit = json::text(json::required(&obj, "unit", ptr)?, &uptr)?;
    let code = units::duration_code(&unit).ok_or_else(|| bad(&uptr, "not a duration unit"))?;
    Ok((value, code))
}

/// Whether `e` is before `s`, when both can be compared (both instants, both local times,
/// or both dates).
fn ends_before_start(s: &DateTime, e: &DateTime) -> bool {
    match (s.timestamp(), e.timestamp()) {
        (Some(a), Some(b)) => b < a,
        _ if s.is_local() && e.is_local() => e.civil() < s.civil(),
        _ if s.civil().is_none() && e.civil().is_none() => e.date() < s.date(),
        _ => false,
    }
}

/// `at` moved by `sign` × `n` `unit` (a UCUM duration code), keeping its offset (or its
/// being local). Months and years are calendar arithmetic and must be whole; shorter units
/// must come to a whole number of nanoseconds.
///
/// # Errors
/// Why the move is not possible, as a message for a warning.
pub(crate) fn shift(
    at: DateTime,
    n: &Decimal,
    unit: &str,
    sign: i8,
) -> Result<DateTime, &'static str> {
    let (Some(civil), Some(zone)) = (at.civil(), at.zone()) else {
        return Err("cannot add a duration to a date without a time of day");
    };
    if n.as_str().starts_with('-') {
        return Err("negative duration");
    }
    let moved = match unit {
        "mo" | "a" => {
            let whole = n.to_i64().ok_or("months and years must be whole numbers")?;
            let whole = whole.checked_mul(i64::from(sign)).ok_or(TOO_FAR)?;
            let span = if unit == "mo" {
                Span::new().try_months(whole)
            } else {
                Span::new().try_years(whole)
            }
            .map_err(|_| TOO_FAR)?;
            civil.checked_add(span).map_err(|_| TOO_FAR)?
        }
        _ => {
            let picos = picos_per(unit).ok_or("not a duration unit")?;
            let nanos = exact_nanos(n, picos).ok_or(INEXACT)?;
            let nanos = nanos.checked_mul(i128::from(sign)).ok_or(TOO_FAR)?;
            let d = SignedDuration::try_from_nanos_i128(nanos).ok_or(TOO_FAR)?;
            civil.checked_add(d).map_err(|_| TOO_FAR)?
        }
    };
    let digits = at.fraction_digits().max(fraction_digits(moved));
    Ok(DateTime::from_parts(moved, digits, zone))
}

const TOO_FAR: &str = "duration moves the time out of range";
const INEXACT: &str = "duration is not a whole number of nanoseconds, or too large";

/// Picoseconds per unit, so that every Open mHealth duration unit (`ps` included) is exact.
fn picos_per(ucum: &str) -> Option<i128> {
    const S: i128 = 1_000_000_000_000;
    Some(match ucum {
        "ps" => 1,
        "ns" => 1_000,
        "us" => 1_000_000,
        "ms" => 1_000_000_000,
        "s" => S,
        "min" => 60 * S,
        "h" => 3_600 * S,
        "d" => 86_400 * S,
        "wk" => 7 * 86_400 * S,
        _ => return None,
    })
}

/// `n` units of `picos` picoseconds each, in whole nanoseconds, exactly, from the decimal's
/// digits (never through `f64`); `None` when not whole or too large.
fn exact_nanos(n: &Decimal, picos: i128) -> Option<i128> {
    let text = n.as_str();
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = int.chars().chain(frac.chars()).collect();
    // Picoseconds to nanoseconds is one more division by 10^3.
    let scale = exp
        .checked_sub(i32::try_from(frac.len()).ok()?)?
        .checked_sub(3)?;
    if !(-60..=40).contains(&scale) || digits.len() > 30 {
        return None;
    }
    let mut value = digits.parse::<i128>().ok()?.checked_mul(picos)?;
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(scale.unsigned_abs())?)?;
    } else {
        let div = 10i128.checked_pow(scale.unsigned_abs())?;
        if value % div != 0 {
            return None;
        }
        value /= div;
    }
    Some(value)
}

/// Digits needed to write `at`'s fraction of a second.
fn fraction_digits(at: civil::DateTime) -> u8 {
    let mut nanos = at.subsec_nanosecond();
    if nanos == 0 {
        return 0;
    }
    let mut digits = 9;
    while nanos % 10 == 0 {
        nanos /= 10;
        digits -= 1;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(start: &str, n: &str, unit: &str, sign: i8, want: Result<&str, &str>) {
        let at = DateTime::parse(start).unwrap();
        let n = Decimal::parse(n).unwrap();
        let got = shift(at, &n, unit, sign).map(|d| d.to_string());
        assert_eq!(got.as_deref().map_err(|e| *e), want, "{start} {n} {unit}");
    }

    #[test]
    fn durations_keep_the_offset_and_the_precision() {
        check(
            "2015-10-21T00:00:00-06:00",
            "1",
            "d",
            1,
            Ok("2015-10-22T00:00:00-06:00"),
        );
        check(
            "2024-01-01T23:30:00Z",
            "90",
            "min",
            1,
            Ok("2024-01-02T01:00:00Z"),
        );
        check(
            "2024-01-01T00:00:00+08:00",
            "1.5",
            "s",
            1,
            Ok("2024-01-01T00:00:01.5+08:00"),
        );
        check(
            "2024-01-01T00:00:00.000",
            "250",
            "ms",
            1,
            Ok("2024-01-01T00:00:00.250"),
        );
        check(
            "2024-01-31T08:00:00+01:00",
            "1",
            "mo",
            1,
            Ok("2024-02-29T08:00:00+01:00"),
        );
        check(
            "2024-02-29T08:00:00Z",
            "1",
            "a",
            1,
            Ok("2025-02-28T08:00:00Z"),
        );
        check(
            "2024-01-01T08:00:00Z",
            "2",
            "wk",
            -1,
            Ok("2023-12-18T08:00:00Z"),
        );
        check(
            "2024-01-01T08:00:00Z",
            "1e2",
            "s",
            1,
            Ok("2024-01-01T08:01:40Z"),
        );
        check(
            "2024-01-01T08:00:00Z",
            "0.5",
            "h",
            1,
            Ok("2024-01-01T08:30:00Z"),
        );
        check(
            "2024-01-01T08:00:00Z",
            "2000",
            "ps",
            1,
            Ok("2024-01-01T08:00:00.000000002Z"),
        );
        check(
            "2016-12-13T11:02:30",
            "3780000",
            "ms",
            1,
            Ok("2016-12-13T12:05:30"),
        );
    }

    #[test]
    fn impossible_durations_are_refused() {
        check(
            "2024-01-01",
            "1",
            "d",
            1,
            Err("cannot add a duration to a date without a time of day"),
        );
        check(
            "2024-01-01T00:00:00Z",
            "-1",
            "d",
            1,
            Err("negative duration"),
        );
        check(
            "2024-01-01T00:00:00Z",
            "1.5",
            "mo",
            1,
            Err("months and years must be whole numbers"),
        );
        check("2024-01-01T00:00:00Z", "0.5", "ns", 1, Err(INEXACT));
        check("2024-01-01T00:00:00Z", "1500", "ps", 1, Err(INEXACT));
        check("2024-01-01T00:00:00Z", "1e30", "s", 1, Err(INEXACT));
        check("2024-01-01T00:00:00Z", "100000", "a", 1, Err(TOO_FAR));
        check(
            "2024-01-01T00:00:00Z",
            "1",
            "kg",
            1,
            Err("not a duration unit"),
        );
    }
}
