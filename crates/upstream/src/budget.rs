//! One byte budget for every upstream response body in flight, across all sources.
//!
//! A body reserves its bytes before they are held: its `Content-Length` up front when the
//! upstream sends one, otherwise chunk by chunk as the read buffer grows. When the budget
//! cannot admit a reservation the read stops at once and the call fails with
//! [`Error::Overloaded`](medgate_core::Error::Overloaded) (503 with `Retry-After`): load is
//! shed before memory grows, never queued. A [`Reservation`] is an RAII guard: it travels with
//! the body's [`Bytes`](bytes::Bytes) (see [`Reservation::attach`]) and gives its bytes back
//! when the last clone of the body is dropped, after the parser that borrows it has finished;
//! a read whose future is dropped midway gives them back with its local guard.
//!
//! The budget is an atomic counter against an atomic limit, so a reload can change the limit
//! without touching reservations in flight (a lower limit only stops new admissions until
//! enough bodies are released). `medgate_upstream_body_bytes_in_flight` (a gauge, no labels)
//! follows every reservation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// The default limit: 256 MiB, the `[server] max_inflight_body_bytes` default.
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: u64 = 256 * 1024 * 1024;

const GAUGE: &str = "medgate_upstream_body_bytes_in_flight";

/// A byte budget shared by every body read under it.
#[derive(Debug)]
pub struct BodyBudget {
    limit: AtomicU64,
    held: AtomicU64,
}

/// The process-wide budget every [`HttpUpstream`](crate::HttpUpstream) uses unless built
/// with one of its own; start-up sets its limit from `[server] max_inflight_body_bytes`.
pub fn body_budget() -> &'static Arc<BodyBudget> {
    static GLOBAL: OnceLock<Arc<BodyBudget>> = OnceLock::new();
    GLOBAL.get_or_init(|| BodyBudget::new(DEFAULT_MAX_INFLIGHT_BODY_BYTES))
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            limit: AtomicU64::new(limit),
            held: AtomicU64::new(0),
        })
    }

    /// Changes the limit; reservations in flight keep their bytes.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes reserved by bodies in flight.
    pub fn in_flight(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// Bytes a new reservation could take now.
    pub fn available(&self) -> u64 {
        self.limit().saturating_sub(self.in_flight())
    }

    /// An empty reservation, to be grown with [`Reservation::try_grow_to`].
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            bytes: 0,
        }
    }

    /// Takes `bytes` more if they fit under the limit; never waits.
    fn try_take(&self, bytes: u64) -> bool {
        let limit = self.limit();
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok();
        if taken {
            metrics::gauge!(GAUGE).increment(bytes as f64);
        }
        taken
    }

    fn give_back(&self, bytes: u64) {
        if bytes > 0 {
            self.held.fetch_sub(bytes, Ordering::AcqRel);
            metrics::gauge!(GAUGE).decrement(bytes as f64);
        }
    }
}

/// Bytes held against a [`BodyBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

/// Not enough of the budget is left for a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Grows the reservation to `total` bytes (no-op when it already holds that many).
    ///
    /// # Errors
    /// The budget cannot admit the difference; the reservation keeps what it held.
    pub fn try_grow_to(&mut self, total: u64) -> Result<(), Exhausted> {
        let more = total.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        if self.budget.try_take(more) {
            self.bytes = total;
            Ok(())
        } else {
            Err(Exhausted)
        }
    }

    /// `body` carrying this reservation: the bytes are given back when the last clone or
    /// slice of the returned [`Bytes`] is dropped. No copy of the body is made.
    pub fn attach(self, body: Bytes) -> Bytes {
        if self.bytes == 0 {
            return body;
        }
        Bytes::from_owner(Reserved { body, _hold: self })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(std::mem::take(&mut self.bytes));
    }
}

/// A body and the reservation that admitted it, as the owner of a [`Bytes`].
struct Reserved {
    body: Bytes,
    _hold: Reservation,
}

impl AsRef<[u8]> for Reserved {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_given_back() {
        let budget = BodyBudget::new(100);
        let mut a = budget.reservation();
        assert!(a.try_grow_to(60).is_ok());
        let mut b = budget.reservation();
        assert_eq!(b.try_grow_to(41), Err(Exhausted));
        assert_eq!(b.bytes(), 0);
        assert!(b.try_grow_to(40).is_ok());
        assert_eq!(budget.available(), 0);
        drop(a);
        assert_eq!(budget.in_flight(), 40);
        let body = b.attach(Bytes::from_static(b"0123456789"));
        let slice = body.slice(2..4);
        drop(body);
        assert_eq!(budget.in_flight(), 40, "a slice still borrows the body");
        assert_eq!(&slice[..], b"23");
        drop(slice);
        assert_eq!(budget.in_flight(), 0);
    }

    #[test]
    fn a_lower_limit_stops_new_admissions_only() {
        let budget = BodyBudget::new(100);
        let mut a = budget.reservation();
        a.try_grow_to(80).unwrap();
        budget.set_limit(50);
        assert_eq!(budget.available(), 0);
        assert!(budget.reservation().try_grow_to(1).is_err());
        drop(a);
        assert!(budget.reservation().try_grow_to(50).is_ok());
    }
}
