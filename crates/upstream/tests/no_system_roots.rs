//! A host without a system CA store still runs: plain HTTP works, and an HTTPS upstream is
//! trusted through its source's `tls_ca`.
//!
//! One test in its own binary (its own process), because it points `SSL_CERT_FILE` at an
//! empty file for the whole process before any client is built.

#[path = "upstream/support.rs"]
mod support;

use medgate_core::{Error, Upstream};
use medgate_upstream::{shared_client, HttpUpstream};

use support::{common, request, Mode, Pki, Upstream as Loopback};

#[tokio::test]
async fn without_system_roots_http_and_tls_ca_still_work() {
    let empty = tempfile::NamedTempFile::new().unwrap();
    // The only test in this process: nothing else reads the environment concurrently.
    std::env::set_var("SSL_CERT_FILE", empty.path());
    std::env::remove_var("SSL_CERT_DIR");

    let shared = shared_client().expect("starts without system roots");
    let plain = Loopback::http(Mode::Ok).await;
    let upstream = HttpUpstream::for_source(&common(""), &shared).unwrap();
    let body = upstream
        .get(&plain.url("http", "P1"), &request())
        .await
        .unwrap();
    assert_eq!(&body.bytes[..], b"hello");

    let pki = Pki::new();
    let tls = Loopback::https(Mode::Ok, pki.server_config(false)).await;
    let e = upstream
        .get(&tls.url("https", "P1"), &request())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Unreachable { detail, .. } if detail.contains("UnknownIssuer")),
        "{e:?}"
    );
    let trusted = common(&pki.keys(Some("ca.pem"), None, None));
    let upstream = HttpUpstream::for_source(&trusted, &shared).unwrap();
    let body = upstream
        .get(&tls.url("https", "P1"), &request())
        .await
        .unwrap();
    assert_eq!(&body.bytes[..], b"hello");
}
