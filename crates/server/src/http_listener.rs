//! The HTTPS listener of `palaver run`: accepts TCP connections, enforces the connection
//! limits of `[server.http]` and serves the axum application over HTTP/1.1 and HTTP/2 with
//! hyper, with upgrades (WebSocket).
//!
//! What it defends against, and how (see docs/security.md):
//! - **Too many connections**: a global cap (kept below the process's file-descriptor limit)
//!   and a cap per source address. A connection over a cap is closed at once, before any TLS
//!   work, and counted; the accept loop keeps serving everyone else. Accept errors (EMFILE,
//!   ENFILE, ...) are counted and back off briefly instead of spinning or stopping.
//! - **Slow or silent clients**: the TLS handshake must finish within `handshake_timeout_ms`;
//!   each request's headers within `header_read_timeout_ms` (hyper's header-read timer); a
//!   connection with no bytes read or written for `idle_timeout_ms` is shut down gracefully
//!   (an in-flight request still completes). Request bodies have their own timeout (a tower
//!   layer added by `serve.rs`). Upgraded (WebSocket) connections leave hyper's watch and are
//!   kept alive by the gateway's own ping/pong; they still count against the caps until closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// `[server.http]`: connection limits and timeouts of the HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Open connections at most (WebSockets included). Lowered at start so that it stays
    /// below the process's file-descriptor limit with room for media sockets and the database.
    pub max_connections: usize,
    /// Open connections at most from one source address.
    pub max_connections_per_ip: usize,
    pub handshake_timeout_ms: u64,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    /// A request body must arrive within this time.
    pub body_timeout_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 16_384,
            max_connections_per_ip: 1_024,
            handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 30_000,
        }
    }
}

/// File descriptors kept free for media sockets, the database, log files and the QUIC endpoint.
const FD_RESERVE: u64 = 512;
/// How long the accept loop pauses after an accept error (EMFILE and the like).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// How long a connection asked to close may take to finish its in-flight request.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

impl HttpLimits {
    /// The limits in force: `max_connections` no higher than the descriptor limit allows.
    pub fn effective(&self, fd_limit: u64) -> HttpLimits {
        let room = fd_limit.saturating_sub(FD_RESERVE).max(16) as usize;
        HttpLimits { max_connections: self.max_connections.min(room), ..self.clone() }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// Prometheus view of the listener.
#[derive(Clone)]
pub struct ListenerMetrics {
    open: IntGauge,
    refused: IntCounterVec,
    closed: IntCounterVec,
}

impl ListenerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let open = IntGauge::new("palaver_http_connections_open", "Open HTTPS connections (WebSockets included).")?;
        let refused = IntCounterVec::new(
            Opts::new(
                "palaver_http_connections_refused_total",
                "HTTPS connections closed at accept: over the global or per-address cap, or an accept error.",
            ),
            &["reason"],
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "palaver_http_connections_timed_out_total",
                "HTTPS connections closed by the server for being slow or silent.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        for r in ["global_cap", "per_ip_cap", "accept_error"] {
            refused.with_label_values(&[r]);
        }
        for r in ["handshake", "idle"] {
            closed.with_label_values(&[r]);
        }
        Ok(Self { open, refused, closed })
    }
}

/// Open connections, in total and per source address.
#[derive(Default)]
struct ConnectionTable {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    GlobalCap,
    PerIpCap,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::GlobalCap => "global_cap",
            Refusal::PerIpCap => "per_ip_cap",
        }
    }
}

struct Admission {
    table: Mutex<ConnectionTable>,
    limits: HttpLimits,
    metrics: ListenerMetrics,
}

impl Admission {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut t = self.table.lock().expect("connection table");
        if t.total >= self.limits.max_connections {
            return Err(Refusal::GlobalCap);
        }
        let n = t.per_ip.entry(ip).or_insert(0);
        if *n >= self.limits.max_connections_per_ip {
            return Err(Refusal::PerIpCap);
        }
        *n += 1;
        t.total += 1;
        self.metrics.open.set(t.total as i64);
        Ok(Slot { admission: self.clone(), ip })
    }
}

/// A connection's place in the table, released when the connection's I/O is dropped (for a
/// WebSocket that is when the upgraded socket closes, not when hyper lets go of it).
struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.admission.table.lock().expect("connection table");
        t.total -= 1;
        if let Some(n) = t.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&self.ip);
            }
        }
        self.admission.metrics.open.set(t.total as i64);
    }
}

/// The connection's I/O, recording when bytes last moved (for the idle timeout) and holding
/// its [`Slot`].
struct TrackedIo<T> {
    inner: T,
    last_activity: Arc<AtomicU64>,
    epoch: Instant,
    _slot: Slot,
}

impl<T> TrackedIo<T> {
    fn touch(&self) {
        self.last_activity.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `shutdown` turns true; then stops accepting, asks every
/// connection to finish gracefully and waits up to `grace` for them.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    limits: HttpLimits,
    metrics: ListenerMetrics,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let admission = Arc::new(Admission { table: Mutex::default(), limits, metrics });
    let mut tasks = tokio::task::JoinSet::new();
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match admission.admit(peer.ip()) {
                    Ok(slot) => {
                        let (tls, app, shutdown) = (tls.clone(), app.clone(), for_connections.clone());
                        let admission = admission.clone();
                        tasks.spawn(serve_connection(stream, peer, slot, tls, app, admission, shutdown));
                    }
                    Err(refusal) => {
                        admission.metrics.refused.with_label_values(&[refusal.label()]).inc();
                        tracing::debug!(%peer, reason = refusal.label(), "connection refused");
                        drop(stream);
                    }
                },
                Err(error) => {
                    admission.metrics.refused.with_label_values(&["accept_error"]).inc();
                    tracing::warn!(%error, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(left = tasks.len(), "connections still open after the grace period; closing them");
        tasks.abort_all();
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    admission: Arc<Admission>,
    shutdown: watch::Receiver<bool>,
) {
    let limits = &admission.limits;
    let _ = stream.set_nodelay(true);
    let last_activity = Arc::new(AtomicU64::new(0));
    let io = TrackedIo { inner: stream, last_activity: last_activity.clone(), epoch: Instant::now(), _slot: slot };
    let epoch = io.epoch;
    match tls {
        Some(acceptor) => {
            let handshake = Duration::from_millis(limits.handshake_timeout_ms);
            match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                Ok(Ok(tls_stream)) => {
                    drive(tls_stream, peer, app, limits, &admission, last_activity, epoch, shutdown).await
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => {
                    admission.metrics.closed.with_label_values(&["handshake"]).inc();
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        }
        None => drive(io, peer, app, limits, &admission, last_activity, epoch, shutdown).await,
    }
}

/// Runs hyper on one connection with the header-read timer, the idle watchdog and graceful
/// shutdown.
#[allow(clippy::too_many_arguments)]
async fn drive<I>(
    io: I,
    peer: SocketAddr,
    app: axum::Router,
    limits: &HttpLimits,
    admission: &Admission,
    last_activity: Arc<AtomicU64>,
    epoch: Instant,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
    builder.http2().timer(TokioTimer::new());
    // Handlers that limit per source address read it as `ConnectInfo<SocketAddr>`.
    let service = TowerToHyperService::new(tower::ServiceExt::map_request(
        app,
        move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            req
        },
    ));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = Duration::from_millis(limits.idle_timeout_ms.max(1));
    let mut check = tokio::time::interval(idle.min(Duration::from_secs(1)).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = &mut conn => return,
            _ = stopped(&mut shutdown) => break,
            _ = check.tick() => {
                let quiet_ms = (epoch.elapsed().as_millis() as u64).saturating_sub(last_activity.load(Ordering::Relaxed));
                if quiet_ms >= idle.as_millis() as u64 {
                    admission.metrics.closed.with_label_values(&["idle"]).inc();
                    break;
                }
            }
        }
    }
    // Finish what is in flight (keep-alive off, HTTP/2 GOAWAY), then drop the socket.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
}

/// Resolves once shutdown is asked for (or its sender is gone); holds no borrow afterwards.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests;
