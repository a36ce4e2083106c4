//! Advisory locks between medgate processes sharing one audit file.
//!
//! A running log holds a *shared* lock; `repair` and `sign_head` need an *exclusive* one, so
//! they refuse to cut or re-sign a file that a live gateway is appending to. Two logs in one
//! process (tests, a reload) share the lock without conflict.

use std::fs::File;

/// The kind of lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Appending: any number at once.
    Shared,
    /// Rewriting: alone.
    Exclusive,
}

/// Takes `lock` on `file` without waiting; `Ok(false)` when another holder prevents it. The
/// lock lasts as long as the file stays open.
#[cfg(unix)]
pub(crate) fn try_lock(file: &File, lock: Lock) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let operation = match lock {
        Lock::Shared => libc::LOCK_SH,
        Lock::Exclusive => libc::LOCK_EX,
    } | libc::LOCK_NB;
    // SAFETY: flock on a descriptor we own for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(error),
    }
}

/// Elsewhere there is no lock: repair is then the operator's responsibility.
#[cfg(not(unix))]
pub(crate) fn try_lock(_file: &File, _lock: Lock) -> std::io::Result<bool> {
    Ok(true)
}
