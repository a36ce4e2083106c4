//! Shared helpers: loopback upstreams (plain HTTP and HTTPS), test PKI, policies.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use medgate_core::config::{BreakerConfig, RetryConfig};
use medgate_core::{FetchRequest, SourceCommon};
use medgate_upstream::UpstreamPolicy;
use tokio::sync::mpsc;

/// What the `/switch/{id}` route does; tests flip it while running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// 200 with a small body.
    Ok = 0,
    /// 500.
    Fail = 1,
    /// Reports its arrival, then never answers.
    Hang = 2,
    /// Answers 200 after 100 ms.
    Slow = 3,
}

/// A loopback upstream whose behaviour can be switched.
pub struct Upstream {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// One message per request that reached a hanging handler.
    pub arrivals: mpsc::UnboundedReceiver<()>,
    /// Remote address of every request served.
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
}

#[derive(Clone)]
struct AppState {
    mode: Arc<AtomicU8>,
    arrived: mpsc::UnboundedSender<()>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

async fn switch(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> (StatusCode, &'static str) {
    state.peers.lock().unwrap().push(peer);
    match state.mode.load(Ordering::SeqCst) {
        0 => (StatusCode::OK, "hello"),
        1 => (StatusCode::INTERNAL_SERVER_ERROR, "down"),
        2 => {
            let _ = state.arrived.send(());
            std::future::pending::<()>().await;
            unreachable!()
        }
        _ => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            (StatusCode::OK, "slow hello")
        }
    }
}

fn router(
    mode: Arc<AtomicU8>,
) -> (
    Router,
    mpsc::UnboundedReceiver<()>,
    Arc<Mutex<Vec<SocketAddr>>>,
) {
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let peers = Arc::new(Mutex::new(Vec::new()));
    let state = AppState {
        mode,
        arrived,
        peers: peers.clone(),
    };
    let router = Router::new()
        .route("/switch/{id}", get(switch))
        .with_state(state);
    (router, arrivals, peers)
}

impl Upstream {
    /// A plain HTTP upstream on 127.0.0.1:0.
    pub async fn http(mode: Mode) -> Upstream {
        let mode = Arc::new(AtomicU8::new(mode as u8));
        let (router, arrivals, peers) = router(mode.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Upstream {
            addr,
            mode,
            arrivals,
            peers,
        }
    }

    /// An HTTPS upstream on 127.0.0.1:0 with `config` (see [`Pki::server_config`]).
    pub async fn https(mode: Mode, config: Arc<rustls::ServerConfig>) -> Upstream {
        let mode = Arc::new(AtomicU8::new(mode as u8));
        let (router, arrivals, peers) = router(mode.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(config);
        let server = axum_server::tls_rustls::from_tcp_rustls(listener, tls).unwrap();
        tokio::spawn(async move {
            server
                .serve(router.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .unwrap();
        });
        Upstream {
            addr,
            mode,
            arrivals,
            peers,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// The URL of one patient's data, over `scheme`.
    pub fn url(&self, scheme: &str, patient: &str) -> String {
        format!("{scheme}://{}/switch/{patient}", self.addr)
    }
}

/// A policy with generous limits, one attempt and a breaker that opens on the first failure;
/// tests change what they exercise.
pub fn policy() -> UpstreamPolicy {
    UpstreamPolicy {
        attempt_timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(20),
        max_body_bytes: 1 << 20,
        max_concurrency: 16,
        retry: RetryConfig {
            attempts: 1,
            base_delay_ms: 1,
            max_delay_ms: 5,
        },
        breaker: BreakerConfig {
            failure_rate: 0.5,
            window_ms: 10_000,
            min_calls: 1,
            open_ms: 100,
        },
    }
}

pub fn request() -> FetchRequest {
    FetchRequest::new("P000001", "req-1")
}

/// A source's common keys from TOML (so tests survive new optional keys in core).
pub fn common(extra: &str) -> SourceCommon {
    toml::from_str(&format!("name = \"his\"\nkind = \"his-xml\"\n{extra}")).unwrap()
}

/// A test PKI made with rcgen: a CA, a server certificate for 127.0.0.1 signed by it, a
/// client certificate signed by it, and a second, unrelated key.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    server_cert_der: rustls::pki_types::CertificateDer<'static>,
    server_key_der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "medgate test hospital CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let server_key = rcgen::KeyPair::generate().unwrap();
        let mut server_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        server_params.use_authority_key_identifier_extension = true;
        server_params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "medgate");
        client_params.use_authority_key_identifier_extension = true;
        client_params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", &ca_cert.pem());
        write("client.pem", &client_cert.pem());
        write("client-key.pem", &client_key.serialize_pem());
        write("other-key.pem", &other_key.serialize_pem());
        write("not-pem.txt", "this is not a certificate\n");
        Pki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server_cert_der: server_cert.der().clone(),
            server_key_der: server_key.serialize_der(),
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// TOML lines pointing a source's TLS keys at this PKI's files (`None` leaves a key out).
    pub fn keys(&self, ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> String {
        let line = |k: &str, f: Option<&str>| {
            f.map(|f| format!("{k} = {:?}\n", toml_path(&self.path(f))))
                .unwrap_or_default()
        };
        line("tls_ca", ca) + &line("tls_client_cert", cert) + &line("tls_client_key", key)
    }

    /// A server config presenting the server certificate; with `require_client_cert`, it
    /// demands a client certificate signed by the test CA (mutual TLS).
    pub fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = rustls::pki_types::PrivateKeyDer::try_from(self.server_key_der.clone()).unwrap();
        let mut config = builder
            .with_single_cert(vec![self.server_cert_der.clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

fn toml_path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}
