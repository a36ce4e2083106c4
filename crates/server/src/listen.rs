//! Accepting connections: TLS, connection cap, header-read and idle timeouts, descriptor
//! exhaustion.
//!
//! axum's own `serve` has none of the limits a gateway facing the Internet needs, so the accept
//! loop is written here over hyper-util, once, for the API listener and the operators' one:
//! - a cap on open connections: beyond it a new connection gets a `503` problem (plain HTTP)
//!   and is closed at once, instead of the process running out of descriptors;
//! - a header-read timeout (slowloris) and an idle timeout for keep-alive connections with no
//!   request in flight;
//! - when `accept` fails with EMFILE/ENFILE, one reserved descriptor is released to accept and
//!   close the waiting connection, so clients see a close instead of a hang and the loop does
//!   not spin; the error is the gateway's own and never touches any source;
//! - TLS with rustls when `[server] tls_cert`/`tls_key` are set, the certificate swapped on
//!   reload (SIGHUP) without dropping connections.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use medgate_core::config::ServerConfig;
use medgate_core::{ConfigIssue, ConfigIssues};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The limits one listener enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send a request's headers (and to finish a TLS handshake).
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Limits {
    /// The API listener's limits from `[server]`, with the connection cap lowered to what the
    /// process's descriptor limit leaves after [`RESERVED_DESCRIPTORS`] (upstream connections,
    /// the audit file, the operators' listener).
    pub fn from_config(server: &ServerConfig) -> Limits {
        let available = descriptor_limit()
            .saturating_sub(RESERVED_DESCRIPTORS)
            .max(1);
        let max_connections = server.max_connections.min(available);
        if max_connections < server.max_connections {
            tracing::warn!(
                configured = server.max_connections,
                effective = max_connections,
                "max_connections lowered to fit the open-file limit (raise it with ulimit -n)"
            );
        }
        Limits {
            header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(server.idle_timeout_ms),
            max_connections,
        }
    }

    /// The operators' listener: few connections, short timeouts.
    pub fn ops() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_connections: 64,
        }
    }
}

/// Descriptors kept free of client connections: upstream connections, files, the operators'
/// listener and its clients.
pub const RESERVED_DESCRIPTORS: usize = 128;

/// The open-file limit, raised to the hard limit first (the soft default of 1024 is a
/// relic); `usize::MAX` when unknown.
pub fn descriptor_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return usize::MAX;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// The server certificate, swappable on reload.
#[derive(Clone)]
pub struct Tls(Arc<ArcSwap<rustls::ServerConfig>>);

impl Tls {
    /// Loads `[server] tls_cert` / `tls_key`; `None` for plain HTTP.
    ///
    /// # Errors
    /// The files' problems, keyed `server.tls_cert` / `server.tls_key`.
    pub fn from_config(server: &ServerConfig) -> Result<Option<Tls>, ConfigIssues> {
        Ok(server_config(server)?.map(|c| Tls(Arc::new(ArcSwap::from_pointee(c)))))
    }

    /// Swaps in the certificate `server` names (a reload); the old one keeps serving if the
    /// new files are unusable.
    ///
    /// # Errors
    /// The files' problems.
    pub fn reload(&self, server: &ServerConfig) -> Result<(), ConfigIssues> {
        if let Some(config) = server_config(server)? {
            self.0.store(Arc::new(config));
        }
        Ok(())
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.0.load_full())
    }
}

/// Checks the server certificate files exactly as start-up loads them (for `medgate check`).
pub fn check_tls(server: &ServerConfig) -> Vec<ConfigIssue> {
    server_config(server).err().map(|i| i.0).unwrap_or_default()
}

fn server_config(server: &ServerConfig) -> Result<Option<rustls::ServerConfig>, ConfigIssues> {
    let (Some(cert), Some(key)) = (&server.tls_cert, &server.tls_key) else {
        return Ok(None);
    };
    let prefixed = |issue: ConfigIssue| {
        ConfigIssues(vec![ConfigIssue::new(
            format!("server.{}", issue.key),
            issue.message,
        )])
    };
    let pair =
        medgate_upstream::load_certified(cert, key, "tls_cert", "tls_key").map_err(prefixed)?;
    // An explicit provider: the default would panic if another dependency enabled a second one.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(pair.chain, pair.key)
        })
        .map_err(|e| prefixed(ConfigIssue::new("tls_cert", format!("unusable: {e}"))))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(config))
}

/// Serves `app` on `listener` until `stop` is cancelled; connections are tracked by
/// `connections` so shutdown can wait for them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Tls>,
    limits: Limits,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut reserve = Reserve::new();
    let name = if tls.is_some() { "https" } else { "http" };
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                on_accept_error(&listener, &e, &mut reserve).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("medgate_connections_shed_total", "listener" => name).increment(1);
            shed(stream, tls.is_some());
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            metrics::gauge!("medgate_connections_open", "listener" => name).increment(1.0);
            serve_connection(stream, peer, app, tls, limits, stop).await;
            metrics::gauge!("medgate_connections_open", "listener" => name).decrement(1.0);
            drop(slot);
        });
    }
}

/// Over the cap: a plain-HTTP client gets a 503 problem and a close; a TLS client a close
/// (nothing can be said before a handshake that would cost what is being saved).
fn shed(mut stream: TcpStream, tls: bool) {
    if tls {
        return;
    }
    tokio::spawn(async move {
        const BODY: &str = r#"{"type":"urn:medgate:problem:overloaded","title":"Service Unavailable","status":503,"detail":"the gateway is at its connection limit; retry shortly"}"#;
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        let write = stream.write_all(response.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
        let _ = stream.shutdown().await;
    });
}

/// What `accept` failing means. EMFILE/ENFILE: free the reserved descriptor, accept the
/// waiting connection and close it (the client sees a close, not a hang), take the reserve
/// again, and pause briefly so the loop does not spin. Other errors (a connection reset
/// before accept) are transient.
async fn on_accept_error(listener: &TcpListener, e: &io::Error, reserve: &mut Reserve) {
    let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    if !exhausted {
        tracing::debug!(error = %e, "accept failed");
        return;
    }
    metrics::counter!("medgate_accept_descriptor_exhausted_total").increment(1);
    tracing::warn!("out of file descriptors: closing a new connection at once");
    reserve.release();
    if let Ok(Ok((stream, _))) =
        tokio::time::timeout(Duration::from_millis(10), listener.accept()).await
    {
        drop(stream);
    }
    reserve.take();
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// One descriptor held in reserve for the moment the process runs out.
struct Reserve(Option<std::fs::File>);

impl Reserve {
    fn new() -> Reserve {
        let mut r = Reserve(None);
        r.take();
        r
    }

    fn take(&mut self) {
        if self.0.is_none() {
            self.0 = std::fs::File::open("/dev/null").ok();
        }
    }

    fn release(&mut self) {
        self.0 = None;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    tls: Option<Tls>,
    limits: Limits,
    stop: CancellationToken,
) {
    let activity = Activity::new();
    let stream = Tracked {
        inner: stream,
        activity: activity.clone(),
    };
    match tls {
        None => http(stream, peer, app, limits, stop, activity).await,
        Some(tls) => {
            let handshake = tls.acceptor().accept(stream);
            match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                Ok(Ok(stream)) => http(stream, peer, app, limits, stop, activity).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn http<S>(
    io: S,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    activity: Activity,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counted = activity.clone();
    let service = tower::ServiceBuilder::new()
        .map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        )
        .layer(InFlightLayer(counted))
        .service(app);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(crate::edge::MAX_BUF_BYTES)
        .max_headers(crate::edge::MAX_HEADERS)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut tick = tokio::time::interval(
        limits
            .idle_timeout
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(100)),
    );
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = stop.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tick.tick(), if !closing => {
                if activity.idle_for() >= limits.idle_timeout {
                    closing = true;
                    metrics::counter!("medgate_connections_idle_closed_total").increment(1);
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// When a connection last moved bytes, and how many requests it has in flight.
#[derive(Clone)]
struct Activity(Arc<ActivityState>);

struct ActivityState {
    last: Mutex<Instant>,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity(Arc::new(ActivityState {
            last: Mutex::new(Instant::now()),
            in_flight: AtomicUsize::new(0),
        }))
    }

    fn touch(&self) {
        if let Ok(mut last) = self.0.last.lock() {
            *last = Instant::now();
        }
    }

    /// Idle time; zero while a request is in flight (a long download is not idle).
    fn idle_for(&self) -> Duration {
        if self.0.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        self.0
            .last
            .lock()
            .map_or(Duration::ZERO, |last| last.elapsed())
    }
}

/// The connection's stream, recording activity on every read and write.
struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a connection's requests in flight, until their response bodies end.
#[derive(Clone)]
struct InFlightLayer(Activity);

impl<S> tower::Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> InFlight<S> {
        InFlight {
            inner,
            activity: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct InFlight<S> {
    inner: S,
    activity: Activity,
}

/// Decrements the in-flight count when dropped (with the response body).
struct InFlightGuard(Activity);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0 .0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

impl<S, B> tower::Service<axum::http::Request<B>> for InFlight<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::response::Response>,
    S::Future: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        self.activity.0.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlightGuard(self.activity.clone());
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(crate::guard::hold_until_sent(response, guard))
        })
    }
}
