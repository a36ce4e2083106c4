//! HTTPS upstreams: a private CA through `tls_ca`, mutual TLS, and `check_tls` agreeing with
//! start-up about every file.

use medgate_core::{Error, Upstream};
use medgate_upstream::{check_tls, shared_client, HttpUpstream, UpstreamError};

use crate::support::{common, policy, request, Mode, Pki, Upstream as Loopback};

/// A patient id that must never appear in an error.
const PATIENT: &str = "P987654";

fn keys_of(issues: &[medgate_core::config::ConfigIssue]) -> Vec<&str> {
    issues.iter().map(|i| i.key.as_str()).collect()
}

#[tokio::test]
async fn https_fetch_succeeds_with_the_source_tls_ca() {
    let pki = Pki::new();
    let server = Loopback::https(Mode::Ok, pki.server_config(false)).await;
    let source = common(&pki.keys(Some("ca.pem"), None, None));
    assert!(check_tls(&source).is_empty(), "{:?}", check_tls(&source));
    let upstream = HttpUpstream::for_source(&source, &shared_client().unwrap()).unwrap();
    let body = upstream
        .get(&server.url("https", PATIENT), &request())
        .await
        .expect("the private CA is trusted through tls_ca");
    assert_eq!(&body.bytes[..], b"hello");
}

#[tokio::test]
async fn https_without_the_ca_fails_naming_tls_and_never_the_url() {
    let pki = Pki::new();
    let server = Loopback::https(Mode::Ok, pki.server_config(false)).await;
    let upstream = HttpUpstream::for_source(&common(""), &shared_client().unwrap()).unwrap();
    let error = upstream
        .get(&server.url("https", PATIENT), &request())
        .await
        .unwrap_err();
    let Error::Unreachable { ref detail, .. } = error else {
        panic!("expected an unreachable upstream, got {error:?}");
    };
    assert!(
        detail.starts_with("TLS failed: invalid peer certificate"),
        "{detail}"
    );
    assert!(
        detail.contains("UnknownIssuer") && detail.contains("tls_ca"),
        "{detail}"
    );
    let text = error.to_string();
    assert!(!text.contains(PATIENT), "{text}");
    assert!(!text.contains(&server.addr.to_string()), "{text}");
    assert!(
        server.peers.lock().unwrap().is_empty(),
        "no request was sent"
    );
}

#[tokio::test]
async fn plain_http_to_an_https_upstream_is_an_upstream_error() {
    let pki = Pki::new();
    let server = Loopback::https(Mode::Ok, pki.server_config(false)).await;
    let upstream = HttpUpstream::for_source(&common(""), &shared_client().unwrap()).unwrap();
    let error = upstream
        .get(&server.url("http", PATIENT), &request())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
    assert!(!error.to_string().contains(PATIENT), "{error}");
}

#[tokio::test]
async fn mutual_tls_succeeds_with_the_client_certificate() {
    let pki = Pki::new();
    let server = Loopback::https(Mode::Ok, pki.server_config(true)).await;
    let source = common(&pki.keys(Some("ca.pem"), Some("client.pem"), Some("client-key.pem")));
    assert!(check_tls(&source).is_empty(), "{:?}", check_tls(&source));
    let upstream = HttpUpstream::for_source(&source, &shared_client().unwrap()).unwrap();
    let body = upstream
        .get(&server.url("https", PATIENT), &request())
        .await
        .expect("the upstream accepts our client certificate");
    assert_eq!(&body.bytes[..], b"hello");
}

#[tokio::test]
async fn mutual_tls_fails_without_the_client_certificate() {
    let pki = Pki::new();
    let server = Loopback::https(Mode::Ok, pki.server_config(true)).await;
    let source = common(&pki.keys(Some("ca.pem"), None, None));
    let upstream = HttpUpstream::for_source(&source, &shared_client().unwrap()).unwrap();
    let error = upstream
        .get(&server.url("https", PATIENT), &request())
        .await
        .unwrap_err();
    let Error::Unreachable { ref detail, .. } = error else {
        panic!("expected an unreachable upstream, got {error:?}");
    };
    assert!(
        detail.starts_with("TLS failed: received fatal alert"),
        "{detail}"
    );
    assert!(detail.contains("tls_client_cert"), "{detail}");
    assert!(!error.to_string().contains(PATIENT), "{error}");
    assert!(
        server.peers.lock().unwrap().is_empty(),
        "no request was served"
    );
}

#[test]
fn check_tls_accepts_no_keys_and_a_complete_set() {
    let pki = Pki::new();
    assert!(check_tls(&common("")).is_empty());
    let all = common(&pki.keys(Some("ca.pem"), Some("client.pem"), Some("client-key.pem")));
    assert_eq!(check_tls(&all), vec![]);
}

#[test]
fn check_tls_names_each_unusable_key() {
    let pki = Pki::new();
    let cases: [(&str, Vec<&str>, &str); 7] = [
        (
            &pki.keys(Some("missing.pem"), None, None),
            vec!["tls_ca"],
            "cannot read",
        ),
        (
            &pki.keys(Some("not-pem.txt"), None, None),
            vec!["tls_ca"],
            "holds no PEM certificate",
        ),
        (
            &pki.keys(Some("client-key.pem"), None, None),
            vec!["tls_ca"],
            "holds no PEM certificate",
        ),
        (
            &pki.keys(None, Some("client.pem"), None),
            vec!["tls_client_key"],
            "is required with tls_client_cert",
        ),
        (
            &pki.keys(None, None, Some("client-key.pem")),
            vec!["tls_client_cert"],
            "is required with tls_client_key",
        ),
        (
            &pki.keys(None, Some("client.pem"), Some("other-key.pem")),
            vec!["tls_client_key"],
            "is not the private key of the certificate",
        ),
        (
            &pki.keys(None, Some("client.pem"), Some("ca.pem")),
            vec!["tls_client_key"],
            "holds no usable PEM private key",
        ),
    ];
    for (keys, expected, message) in cases {
        let issues = check_tls(&common(keys));
        assert_eq!(keys_of(&issues), expected, "{keys}");
        assert!(issues[0].message.contains(message), "{keys}: {}", issues[0]);
    }
}

#[test]
fn check_tls_reports_every_problem_at_once() {
    let pki = Pki::new();
    let issues = check_tls(&common(&pki.keys(
        Some("missing.pem"),
        Some("client.pem"),
        None,
    )));
    assert_eq!(keys_of(&issues), ["tls_ca", "tls_client_key"]);
}

/// `medgate check` and `serve` agree: building refuses exactly what the check reports.
#[test]
fn building_refuses_what_check_tls_reports() {
    let pki = Pki::new();
    let source = common(&pki.keys(Some("ca.pem"), Some("client.pem"), Some("other-key.pem")));
    let shared = shared_client().unwrap();
    match HttpUpstream::for_source(&source, &shared) {
        Err(UpstreamError::Tls { name, issues }) => {
            assert_eq!(name, "his");
            assert_eq!(issues, check_tls(&source));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a source with a mismatched key was built"),
    }
    let text = HttpUpstream::for_source(&source, &shared)
        .err()
        .unwrap()
        .to_string();
    assert!(text.starts_with("source his: tls_client_key: `"), "{text}");
}

/// Sources without TLS keys share one connection pool: a second source reuses the
/// keep-alive connection the first one opened.
#[tokio::test]
async fn sources_without_tls_keys_share_one_connection_pool() {
    let server = Loopback::http(Mode::Ok).await;
    let shared = shared_client().unwrap();
    let a = HttpUpstream::for_source(&common(""), &shared).unwrap();
    let b = HttpUpstream::for_source(&common(""), &shared).unwrap();
    a.get(&server.url("http", "P1"), &request()).await.unwrap();
    b.get(&server.url("http", "P2"), &request()).await.unwrap();
    let peers = server.peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0], peers[1], "one TCP connection served both sources");
    // The control: a client of its own opens its own connection.
    let own = HttpUpstream::new("own", shared_client().unwrap(), policy());
    own.get(&server.url("http", "P3"), &request())
        .await
        .unwrap();
    assert_ne!(server.peers.lock().unwrap()[2], peers[0]);
}
