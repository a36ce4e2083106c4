//! Instants as stored: microseconds since the Unix epoch.

use std::time::Duration;

use jiff::Timestamp;

use crate::error::{Result, StoreError};

/// `ts` in microseconds.
pub(crate) fn us(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

/// Now, in microseconds.
pub(crate) fn now_us() -> i64 {
    us(Timestamp::now())
}

/// A duration in microseconds, saturated.
pub(crate) fn dur_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A stored instant.
pub(crate) fn ts(us: i64) -> Result<Timestamp> {
    Timestamp::from_microsecond(us).map_err(|e| StoreError::corrupt("instant", e))
}

/// An optional stored instant.
pub(crate) fn ts_opt(us: Option<i64>) -> Result<Option<Timestamp>> {
    us.map(ts).transpose()
}
