//! RFC 3339 UTC timestamps with milliseconds, through jiff (the workspace's date-time crate).

use std::time::SystemTime;

use jiff::Timestamp;

/// Formats `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), milliseconds truncated. A clock beyond
/// jiff's range (years -9999..=9999, only a wildly wrong clock) is written as the nearest
/// end of that range rather than failing the audit write.
pub(crate) fn rfc3339_millis(at: SystemTime) -> String {
    let at = Timestamp::try_from(at).unwrap_or_else(|_| {
        if at > SystemTime::UNIX_EPOCH {
            Timestamp::MAX
        } else {
            Timestamp::MIN
        }
    });
    format!("{at:.3}")
}

/// Now, as [`rfc3339_millis`] writes it.
pub(crate) fn now() -> String {
    rfc3339_millis(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn formats_the_epoch() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn formats_known_instants() {
        // date -u -d @1795381445 → 2026-11-22T21:04:05Z
        assert_eq!(
            rfc3339_millis(at(1_795_381_445, 123)),
            "2026-11-22T21:04:05.123Z"
        );
        // Leap day and end of a leap year.
        assert_eq!(
            rfc3339_millis(at(951_782_400, 7)),
            "2000-02-29T00:00:00.007Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_735_689_599, 999)),
            "2024-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn truncates_below_a_millisecond() {
        let t = at(1_735_689_599, 999) + Duration::from_micros(999);
        assert_eq!(rfc3339_millis(t), "2024-12-31T23:59:59.999Z");
    }

    #[test]
    fn writes_times_before_the_epoch_as_they_are() {
        // A badly set clock is recorded faithfully (the old hand-written code clamped it).
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_secs(5)),
            "1969-12-31T23:59:55.000Z"
        );
    }

    #[test]
    fn a_clock_beyond_the_range_does_not_fail() {
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        // jiff's last representable instant (its range leaves room for any UTC offset).
        assert_eq!(rfc3339_millis(far), "9999-12-30T22:00:00.999Z");
    }
}
