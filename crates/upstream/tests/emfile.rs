//! Issue #7: when the gateway runs out of file descriptors (EMFILE), a call is the gateway's
//! own failure, never "source unreachable", and never counted against the source's breaker.
//!
//! This binary holds exactly one test because it lowers `RLIMIT_NOFILE` and fills the
//! descriptor table of its process: cargo runs each test binary as its own process, so no
//! other test can be starved of descriptors, and the limit is restored before it returns.

#[path = "upstream/support.rs"]
mod support;

use std::fs::File;

use medgate_core::{CircuitState, Error, Upstream};
use medgate_upstream::{shared_client, HttpUpstream};

use support::{policy, request, Mode, Upstream as Loopback};

/// Lowers the soft descriptor limit to `limit` and opens `/dev/null` until the table is full;
/// the returned guard closes them and restores the limit.
struct Exhausted {
    fillers: Vec<File>,
    saved: libc::rlimit,
}

impl Exhausted {
    fn new(limit: libc::rlim_t) -> Exhausted {
        let mut saved = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain syscalls on a valid, owned struct.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut saved), 0);
            let lowered = libc::rlimit {
                rlim_cur: limit.min(saved.rlim_cur),
                rlim_max: saved.rlim_max,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lowered), 0);
        }
        let mut fillers = Vec::new();
        loop {
            match File::open("/dev/null") {
                Ok(f) => fillers.push(f),
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                Err(e) => panic!("unexpected error filling the descriptor table: {e}"),
            }
            assert!(fillers.len() < 100_000, "the limit did not take");
        }
        Exhausted { fillers, saved }
    }
}

impl Drop for Exhausted {
    fn drop(&mut self) {
        self.fillers.clear();
        // SAFETY: as above.
        unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &self.saved);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_the_gateways_error_not_the_sources() {
    let server = Loopback::http(Mode::Ok).await;
    let mut p = policy(); // the breaker opens on the first counted failure
    p.retry.attempts = 3;
    let upstream = HttpUpstream::new("his", shared_client().unwrap(), p);
    let url = server.url("http", "P000001");

    let errors = {
        let exhausted = Exhausted::new(256);
        assert!(!exhausted.fillers.is_empty());
        let mut errors = Vec::new();
        for _ in 0..5 {
            errors.push(upstream.get(&url, &request()).await.unwrap_err());
        }
        errors
    };
    for e in &errors {
        let Error::Overloaded {
            reason: message, ..
        } = e
        else {
            panic!("expected the gateway's own error, got {e:?}");
        };
        assert!(message.contains("file descriptors"), "{message}");
        assert!(!e.to_string().contains("unreachable"), "{e}");
        assert!(!e.to_string().contains("P000001"), "{e}");
    }
    assert_eq!(
        upstream.circuit(),
        Some(CircuitState::Closed),
        "not counted"
    );
    assert!(
        server.peers.lock().unwrap().is_empty(),
        "the upstream was never called"
    );

    let body = upstream
        .get(&url, &request())
        .await
        .expect("with descriptors back, the source serves at once");
    assert_eq!(&body.bytes[..], b"hello");
}
