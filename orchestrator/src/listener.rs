//! The HTTP accept loop: binds the listener, admits connections under a total and a per-address cap, serves
//! each with hyper's HTTP/1 (upgrades kept for `/ws` and `/rtc/v1`), closes connections that are too slow
//! to send a request head or idle too long, and drains on shutdown.
//!
//! Why not `axum::serve`: it has no header or idle timeout, so a client sending one header byte every few
//! seconds holds its socket for ever (issue 17). hyper has `header_read_timeout`, but in hyper 1.12 its timer
//! starts whenever the connection waits for a request head, right after the previous response too, so it
//! is both the slowloris bound and the keep-alive idle timeout: 10 s would cut a load balancer's pooled
//! connections (nginx keeps them 60 s; closing first races its next request into a 502), and 75 s would
//! let a slowloris hold each socket 75 s. So hyper's is off and each connection keeps its own
//! [`Activity`]: the bytes read (through [`Socket`]) and the requests started and answered (through the
//! service and the response body) move it; it answers when the connection must close, and why:
//! - no complete request head within `header_read_timeout` of accepting, or of the first byte of a later
//!   request: closed at once (`header`);
//! - nothing at all for `idle_timeout` after a response: hyper's graceful close (`idle`);
//! - a request in flight is never cut here: `request_timeout_secs` bounds it.
//!
//! An upgraded connection (a WebSocket) is no longer HTTP: its task ends, no timer watches it (WebSockets
//! have heartbeats), but it still holds its [`Slot`] in the caps until the socket closes.
//!
//! Shutdown follows mini-redis: a `watch` broadcast tells every connection task to close gracefully,
//! and the accept loop waits until every task has dropped its receiver (or the grace period ends, then
//! they drop their connections).

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
};
use hyper::{
    Request,
    body::{Frame, Incoming, SizeHint},
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
    time::Instant,
};
use tower::Service;

use crate::{
    config::Config,
    metrics::{ConnectionMetrics, ConnectionTimeout, Refusal},
};

/// Pending connections the kernel queues before `accept` (capped by `net.core.somaxconn`). Tokio's default
/// is 1,024: a class starting at once, or every client of a restarted node reconnecting, overflows that, and
/// each dropped handshake costs its client a one-second SYN retransmit.
pub const LISTEN_BACKLOG: u32 = 8192;

/// Binds the API listener with [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Tunes every accepted connection. TCP_NODELAY: the WebSocket write path already coalesces queued frames
/// into one write, and with Nagle's algorithm a frame sent while the previous one is unacknowledged waits
/// for the client's delayed ACK (up to 40 ms; a busy client reads late and ACKs late). Measured: at 97.5k
/// deliveries/s into a room of 1,000 it moved p99 from 25-46 ms to 20-22 ms and the worst case from
/// 58-91 ms to 30-37 ms.
pub fn accepted(tcp: &mut TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// The connection limits in force, resolved from the config once at start.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// `None`: connections are not counted per address (off, or behind a trusted proxy).
    pub max_connections_per_ip: Option<usize>,
    pub exempt_loopback: bool,
}

impl Limits {
    pub fn from_config(config: &Config) -> Self {
        let max_connections = match config.max_connections {
            0 => derived_max_connections(open_file_limit(), config.db_max_connections),
            n => n,
        };
        // Behind a trusted proxy every peer is the proxy: counting per peer would cap the proxy.
        let per_ip = config.max_connections_per_ip > 0 && !config.trust_forwarded_for;
        Limits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            max_connections: max_connections.clamp(1, Semaphore::MAX_PERMITS),
            max_connections_per_ip: per_ip.then_some(config.max_connections_per_ip),
            exempt_loopback: config.max_connections_per_ip_exempt_loopback,
        }
    }
}

/// Files kept back from the open-file limit for everything that is not a client connection: the database
/// pool (a SQLite connection holds three: the file, its WAL and shared memory), Redis, the SFU's UDP socket,
/// outgoing HTTP clients, static files being served, the runtime's own descriptors.
fn derived_max_connections(file_limit: Option<u64>, db_max_connections: u32) -> usize {
    let limit = usize::try_from(file_limit.unwrap_or(1024)).unwrap_or(usize::MAX).min(1 << 24);
    let reserve = 256 + 4 * db_max_connections as usize;
    limit.saturating_sub(reserve).max(limit / 2)
}

/// The soft `RLIMIT_NOFILE`: what this process may open now.
#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok().map(|(soft, _)| soft)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Where the drain is: connection tasks watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish in-flight requests, close idle connections.
    Draining,
    /// The grace period is over: drop whatever is left.
    Stopped,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets in-flight requests
/// finish within `grace`, and returns. Never blocks on a full server: a connection over a cap is answered
/// 503 and closed at once.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    tracing::info!(
        max_connections = limits.max_connections,
        max_connections_per_ip = ?limits.max_connections_per_ip,
        header_read_timeout = ?limits.header_read_timeout,
        idle_timeout = ?limits.idle_timeout,
        "serving HTTP"
    );
    let admission = Admission::new(&limits, metrics.clone());
    let timeouts = Timeouts { header: limits.header_read_timeout, idle: limits.idle_timeout };
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (mut tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            res = listener.accept() => match res {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let slot = match admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics.refused(refusal);
                tracing::debug!(%peer, ?refusal, "connection refused");
                refuse(&tcp, refusal);
                continue;
            }
        };
        accepted(&mut tcp);
        let conn = Conn { peer, app: app.clone(), timeouts, metrics: metrics.clone() };
        tokio::spawn(conn.serve(tcp, slot, phase_rx.clone()));
    }
    // From here the kernel refuses new connections.
    drop(listener);
    drop(phase_rx);
    let _ = phase_tx.send(Phase::Draining);
    if tokio::time::timeout(grace, phase_tx.closed()).await.is_err() {
        tracing::warn!(?grace, "in-flight requests did not finish in time; dropping them");
        let _ = phase_tx.send(Phase::Stopped);
        let _ = tokio::time::timeout(Duration::from_secs(1), phase_tx.closed()).await;
    }
}

/// As hyper 0.14 did: a connection error is the client's and is ignored; anything else (`EMFILE`: out of
/// files) is logged and the loop pauses a second for connections to close rather than spin.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Answers a connection over a cap with the JSON error shape, without waiting: a fresh socket's send buffer
/// is empty, so the write completes or is skipped, and the accept loop never blocks on a client. What the
/// client has sent already is read and discarded, so the close is a FIN the answer arrives before, not a
/// reset that may destroy it.
fn refuse(tcp: &TcpStream, refusal: Refusal) {
    let _ = tcp.try_write(busy_response(refusal).as_bytes());
    let mut sink = [0u8; 4096];
    let _ = tcp.try_read(&mut sink);
}

fn busy_response(refusal: Refusal) -> String {
    let message = match refusal {
        Refusal::Total => "the server is at its connection limit; try again shortly",
        Refusal::PerIp => "too many connections from this address; close some and try again",
    };
    let body = serde_json::json!({"error": {"code": "too_many_connections", "message": message}}).to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 5\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The caps: a semaphore for the total, a count per client address.
struct Admission {
    total: Arc<Semaphore>,
    per_ip: Option<Arc<PerIp>>,
    exempt_loopback: bool,
    metrics: ConnectionMetrics,
}

struct PerIp {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    fn new(limits: &Limits, metrics: ConnectionMetrics) -> Self {
        Admission {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip: limits.max_connections_per_ip.map(|max| Arc::new(PerIp { max, counts: Mutex::default() })),
            exempt_loopback: limits.exempt_loopback,
            metrics,
        }
    }

    fn admit(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        let permit = self.total.clone().try_acquire_owned().map_err(|_| Refusal::Total)?;
        let key = client_key(ip);
        let per_ip = match &self.per_ip {
            Some(per_ip) if !(self.exempt_loopback && key.is_loopback()) => {
                let mut counts = per_ip.counts.lock().expect("per-IP counts");
                let n = counts.entry(key).or_insert(0);
                if *n >= per_ip.max {
                    return Err(Refusal::PerIp);
                }
                *n += 1;
                Some((per_ip.clone(), key))
            }
            _ => None,
        };
        self.metrics.opened();
        Ok(Slot { _permit: permit, per_ip, metrics: self.metrics.clone() })
    }
}

/// The address a connection is counted under: IPv4 (also when mapped into IPv6 by a dual-stack listener),
/// and for IPv6 its /64, the block one subscriber or host gets (counting single addresses would give an
/// IPv6 client 2^64 separate allowances).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        other => other,
    }
}

/// A connection's place under the caps, held by its socket: an upgraded WebSocket keeps it until it closes.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    per_ip: Option<(Arc<PerIp>, IpAddr)>,
    metrics: ConnectionMetrics,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((per_ip, key)) = &self.per_ip {
            let mut counts = per_ip.counts.lock().expect("per-IP counts");
            if let Some(n) = counts.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(key);
                }
            }
        }
        self.metrics.closed();
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// Why a connection's time is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No complete request head in time: drop the connection.
    Header,
    /// Idle keep-alive: close it gracefully.
    Idle,
    /// Asked to close, it still hasn't (a partial head arrived meanwhile): drop it.
    Linger,
}

/// What a connection has been doing, and so when it must close. Sans-IO: every change and question takes
/// `now`; [`Conn::serve`] drives it with a timer.
#[derive(Debug)]
struct Activity {
    /// Requests handed to the router whose responses are not finished.
    in_flight: u32,
    /// Whether a request head has arrived yet (before that, `header` counts from the accept).
    served: bool,
    /// Since when there is nothing to do: the accept, or the end of the last response.
    idle_since: Instant,
    /// When the first bytes of the next request arrived, while idle.
    head_since: Option<Instant>,
    /// When the server asked the connection to close (idle timeout, shutdown).
    closing_since: Option<Instant>,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Activity { in_flight: 0, served: false, idle_since: now, head_since: None, closing_since: None }
    }

    /// Bytes arrived. True when this starts a request head (the deadline moved).
    fn read(&mut self, now: Instant) -> bool {
        if self.in_flight > 0 || self.head_since.is_some() {
            return false;
        }
        self.head_since = Some(now);
        true
    }

    fn request_started(&mut self) {
        self.in_flight += 1;
        self.served = true;
        self.head_since = None;
    }

    /// True when the connection became idle (the deadline moved).
    fn response_finished(&mut self, now: Instant) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight > 0 {
            return false;
        }
        self.idle_since = now;
        true
    }

    fn closing(&mut self, now: Instant) {
        self.closing_since.get_or_insert(now);
    }

    fn deadline(&self, t: &Timeouts) -> Option<(Instant, Expiry)> {
        if self.in_flight > 0 {
            return None;
        }
        if let Some(since) = self.closing_since {
            return Some((since.max(self.idle_since) + t.header, Expiry::Linger));
        }
        if !self.served {
            return Some((self.idle_since + t.header, Expiry::Header));
        }
        Some(match self.head_since {
            Some(since) => (since + t.header, Expiry::Header),
            None => (self.idle_since + t.idle, Expiry::Idle),
        })
    }

    fn expired(&self, now: Instant, t: &Timeouts) -> Option<Expiry> {
        self.deadline(t).filter(|(at, _)| *at <= now).map(|(_, why)| why)
    }
}

/// A connection's [`Activity`], shared by its socket, its service and its task.
struct Tracker {
    activity: Mutex<Activity>,
    /// Wakes the task when the deadline moved earlier or appeared.
    moved: Notify,
    /// Set when the HTTP connection is over; an upgraded socket's reads are no longer tracked.
    done: std::sync::atomic::AtomicBool,
}

impl Tracker {
    fn update<R>(&self, f: impl FnOnce(&mut Activity) -> R) -> R {
        f(&mut self.activity.lock().expect("connection activity"))
    }
}

/// Marks one request in flight until dropped, with the response body (or with the service future, if the
/// connection goes first).
struct InFlight(Arc<Tracker>);

impl InFlight {
    fn start(tracker: &Arc<Tracker>) -> Self {
        tracker.update(Activity::request_started);
        InFlight(tracker.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.update(|a| a.response_finished(Instant::now())) {
            self.0.moved.notify_one();
        }
    }
}

/// A response body that ends its request's [`InFlight`] when hyper is done with it.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        hyper::body::Body::poll_frame(Pin::new(&mut self.body), cx)
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.body)
    }
}

/// The accepted TCP stream, noting reads in the connection's [`Activity`] and holding its [`Slot`].
struct Socket {
    tcp: TcpStream,
    tracker: Arc<Tracker>,
    _slot: Slot,
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if buf.filled().len() > before
            && !this.tracker.done.load(std::sync::atomic::Ordering::Relaxed)
            && this.tracker.update(|a| a.read(Instant::now()))
        {
            this.tracker.moved.notify_one();
        }
        res
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// One accepted connection's task.
struct Conn {
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    metrics: ConnectionMetrics,
}

impl Conn {
    async fn serve(self, tcp: TcpStream, slot: Slot, mut phase: watch::Receiver<Phase>) {
        let Conn { peer, app, timeouts, metrics } = self;
        let tracker = Arc::new(Tracker {
            activity: Mutex::new(Activity::new(Instant::now())),
            moved: Notify::new(),
            done: Default::default(),
        });
        let io = TokioIo::new(Socket { tcp, tracker: tracker.clone(), _slot: slot });
        let service = {
            let tracker = tracker.clone();
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                // What `into_make_service_with_connect_info` gave handlers (`ClientInfo`, login limits).
                req.extensions_mut().insert(ConnectInfo(peer));
                let in_flight = InFlight::start(&tracker);
                let response = app.clone().call(req);
                async move {
                    let res = response.await?;
                    Ok::<_, std::convert::Infallible>(res.map(|body| TrackedBody { body, _in_flight: in_flight }))
                }
            })
        };
        // hyper's header timer is off: `Activity` keeps both timeouts (see the module doc).
        let conn = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(io, service)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let timer = tokio::time::sleep(Duration::ZERO);
        let mut timer = std::pin::pin!(timer);
        loop {
            let deadline = tracker.update(|a| a.deadline(&timeouts));
            if let Some((at, _)) = deadline {
                timer.as_mut().reset(at);
            }
            tokio::select! {
                biased;
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = tracker.moved.notified() => {}
                changed = phase.changed() => match changed.map(|()| *phase.borrow_and_update()) {
                    Ok(Phase::Serving) => {}
                    Ok(Phase::Draining) => {
                        conn.as_mut().graceful_shutdown();
                        tracker.update(|a| a.closing(Instant::now()));
                    }
                    Ok(Phase::Stopped) | Err(_) => break,
                },
                () = timer.as_mut(), if deadline.is_some() => {
                    match tracker.update(|a| a.expired(Instant::now(), &timeouts)) {
                        None => {}
                        Some(Expiry::Header) => {
                            metrics.timed_out(ConnectionTimeout::Header);
                            tracing::debug!(%peer, "no request head in time: closing");
                            break;
                        }
                        Some(Expiry::Idle) => {
                            metrics.timed_out(ConnectionTimeout::Idle);
                            conn.as_mut().graceful_shutdown();
                            tracker.update(|a| a.closing(Instant::now()));
                        }
                        Some(Expiry::Linger) => break,
                    }
                }
            }
        }
        tracker.done.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts { header: Duration::from_secs(10), idle: Duration::from_secs(75) };
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_new_connection_has_the_header_timeout_from_its_accept_even_if_it_trickles() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        assert_eq!(a.deadline(&T), Some((t0 + 10 * S, Expiry::Header)));
        a.read(t0 + 5 * S);
        assert_eq!(a.expired(t0 + 9 * S, &T), None);
        assert_eq!(a.expired(t0 + 10 * S, &T), Some(Expiry::Header));
    }

    #[test]
    fn between_requests_idle_counts_until_the_first_byte_then_the_head_has_the_header_timeout() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        a.read(t0);
        a.request_started();
        assert_eq!(a.deadline(&T), None, "a request in flight is never cut");
        assert!(!a.read(t0 + S), "body bytes of the request in flight");
        assert_eq!(a.expired(t0 + 100 * S, &T), None);
        assert!(a.response_finished(t0 + 2 * S));
        assert_eq!(a.deadline(&T), Some((t0 + 77 * S, Expiry::Idle)));
        assert_eq!(a.expired(t0 + 76 * S, &T), None, "longer than the header timeout");
        assert!(a.read(t0 + 60 * S), "a new head starts: the deadline moves");
        assert!(!a.read(t0 + 61 * S));
        assert_eq!(a.deadline(&T), Some((t0 + 70 * S, Expiry::Header)));
        a.request_started();
        a.response_finished(t0 + 71 * S);
        assert_eq!(a.deadline(&T), Some((t0 + 146 * S, Expiry::Idle)));
    }

    #[test]
    fn a_connection_asked_to_close_gets_the_header_timeout_to_do_it_unless_a_request_runs() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        a.request_started();
        a.closing(t0 + S);
        assert_eq!(a.deadline(&T), None);
        a.response_finished(t0 + 3 * S);
        assert_eq!(a.deadline(&T), Some((t0 + 13 * S, Expiry::Linger)));
        a.closing(t0 + 4 * S);
        assert_eq!(a.deadline(&T), Some((t0 + 13 * S, Expiry::Linger)), "the first request to close counts");
    }

    #[test]
    fn the_file_limit_leaves_room_for_the_pool_and_the_rest() {
        assert_eq!(derived_max_connections(Some(20_000), 10), 19_704);
        assert_eq!(derived_max_connections(Some(1024), 10), 728);
        assert_eq!(derived_max_connections(Some(300), 10), 150, "never below half");
        assert_eq!(derived_max_connections(Some(u64::MAX), 10), (1 << 24) - 296, "unlimited");
        assert_eq!(derived_max_connections(None, 10), 728);
    }

    #[test]
    fn addresses_are_counted_as_v4_or_per_ipv6_64() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(client_key("::ffff:203.0.113.7".parse().unwrap()), v4);
        let a = client_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = client_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        let other = client_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(client_key("::1".parse().unwrap()), "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_caps_count_per_address_release_on_drop_and_spare_loopback_when_asked() {
        let limits = Limits {
            header_read_timeout: T.header,
            idle_timeout: T.idle,
            max_connections: 3,
            max_connections_per_ip: Some(2),
            exempt_loopback: true,
        };
        let adm = Admission::new(&limits, ConnectionMetrics::default());
        let (a, b, lo) = ("203.0.113.1".parse().unwrap(), "203.0.113.2".parse().unwrap(), "127.0.0.1".parse().unwrap());
        let a1 = adm.admit(a).unwrap();
        let _a2 = adm.admit(a).unwrap();
        assert_eq!(adm.admit(a).err(), Some(Refusal::PerIp));
        let _l = adm.admit(lo).unwrap();
        assert_eq!(adm.admit(b).err(), Some(Refusal::Total));
        drop(a1);
        let _b1 = adm.admit(b).unwrap();
        assert_eq!(adm.per_ip.as_ref().unwrap().counts.lock().unwrap().len(), 2, "loopback isn't counted");
    }

    #[tokio::test]
    async fn accepted_connections_send_without_nagle_delay() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server_side, _) = listener.accept().await.unwrap();
        assert!(!server_side.nodelay().unwrap(), "the kernel's default has Nagle on");
        accepted(&mut server_side);
        assert!(server_side.nodelay().unwrap());
        drop(client);
    }

    #[test]
    fn the_refusal_is_a_complete_http_response_with_the_error_shape() {
        let text = busy_response(Refusal::PerIp);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }
}
