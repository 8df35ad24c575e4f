//! One server of a group: its live state (in flight, response-time EWMA, health, breaker), its
//! keep-alive pool, and sending one request over a pooled connection.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::{BodySignal, ReqBody, ResBody};
use crate::breaker::{Breaker, BreakerState, Transition};
use crate::connect::{self, TimedStream};
use crate::error::{from_hyper, UpstreamError};
use crate::request::UpRequest;
use crate::settings::{Address, BreakerSettings, PeerSettings, PoolSettings, Protocol};

/// Counters per server, exported as metrics.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Requests that failed (connect, timeout, broken, or 5xx when those count).
    pub failures: AtomicU64,
    /// Connections opened.
    pub connects: AtomicU64,
    /// Times the breaker opened.
    pub ejections: AtomicU64,
    /// Times an active check changed the server's state.
    pub health_changes: AtomicU64,
}

/// A server and its state.
#[derive(Debug)]
pub struct Peer {
    /// Configured settings.
    pub settings: PeerSettings,
    /// Position in the group.
    pub index: usize,
    /// `host:port` text for logs.
    pub label: String,
    resolved: ArcSwap<Vec<SocketAddr>>,
    inflight: AtomicU32,
    ewma_us: AtomicU64,
    active_up: AtomicBool,
    breaker: Breaker,
    /// When the server last came back (slow start ramps from here).
    up_since: Mutex<Option<Instant>>,
    idle: Mutex<Vec<Idle>>,
    /// HTTP/2 servers: the one shared connection.
    h2: Mutex<H2Slot>,
    /// Held while an HTTP/2 connection is being opened, so concurrent requests wait for it
    /// instead of each opening their own.
    h2_opening: tokio::sync::Mutex<()>,
    pool: PoolSettings,
    connect_timeout: Duration,
    send_timeout: Duration,
    /// Counters.
    pub stats: PeerStats,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Idle(uses {})", self.conn.uses)
    }
}

/// The shared HTTP/2 connection of a server (see [`Peer::checkout`]).
#[derive(Default)]
struct H2Slot {
    /// Its request side; `None` before the first request, after it died or was retired.
    tx: Option<http2::SendRequest<ReqBody>>,
    /// Requests started on it (retired at `keepalive.max_requests`).
    uses: u64,
    /// Last request started on it (closed after `keepalive.idle_timeout` without any).
    last_used: Option<Instant>,
    /// Bumped by every attempt to open one.
    attempts: u64,
    /// Why the last attempt failed: requests that waited for it fail the same way instead
    /// of each waiting out its own connect timeout.
    failed: Option<(bool, String)>,
}

impl std::fmt::Debug for H2Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "H2Slot(open {}, uses {})", self.tx.is_some(), self.uses)
    }
}

/// Windows and buffers of HTTP/2 upstream connections. Explicit rather than h2's defaults
/// (64 KiB windows: too small for streaming; hyper's adaptive window: unbounded growth):
/// a stream may have 1 MiB and the connection 2 MiB of response data in flight unread, so
/// a server streams at full speed while a slow client still caps what is buffered.
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONN_WINDOW: u32 = 2 << 20;
/// Request bytes buffered per stream before the body is polled again.
const H2_SEND_BUF: usize = 64 << 10;
/// Pings while requests are open find a connection that died silently (no FIN): without
/// them every request on it would wait out its read timeout.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The request side of a connection.
pub(crate) enum Tx {
    /// hyper's HTTP/1 client: upgradable connections (WebSocket) only.
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
    /// Our own HTTP/1 client (`h1/`): every other HTTP/1 request.
    Own(crate::h1::Wire),
}

impl Tx {
    fn is_closed(&self) -> bool {
        match self {
            Tx::H1(t) => t.is_closed(),
            Tx::H2(t) => t.is_closed(),
            // Checked when taken from the pool (`Wire::idle_ok`).
            Tx::Own(_) => false,
        }
    }
}

/// Whether ordinary HTTP/1 requests use our own client (`h1/`). On unless the environment
/// sets `RAMPART_UPSTREAM_H1=hyper`: a way back to hyper's client if a server turns out to
/// need it, without a rebuild.
fn own_h1() -> bool {
    static OWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| std::env::var("RAMPART_UPSTREAM_H1").map_or(true, |v| v != "hyper"))
}

/// The I/O half of a client connection. It is polled by whichever task uses the connection
/// (the request's own task) instead of a task of its own: that saves two cross-task wake-ups
/// per request, which cost more than the proxying itself on small requests.
type Driver = Pin<Box<http1::Connection<TokioIo<TimedStream>, ReqBody>>>;

/// A connection checked out of a server's pool for one request.
pub struct Conn {
    pub(crate) tx: Tx,
    /// `None` when a spawned task drives it (upgrades, HTTP/2), once it has ended, and for
    /// our own HTTP/1 client (driven by `send` and `ResBody` directly).
    driver: Option<Driver>,
    pub(crate) uses: u64,
    /// May go back to the pool (not when it carries one client's PROXY header).
    pooled: bool,
    pub(crate) peer: Arc<Peer>,
}

impl Conn {
    /// Polls the connection's I/O. Returns `false` once the connection has ended.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        match self.driver.as_mut() {
            Some(d) => match d.as_mut().poll(cx) {
                Poll::Pending => true,
                Poll::Ready(_) => {
                    self.driver = None;
                    false
                }
            },
            None => !self.tx.is_closed(),
        }
    }

    /// Our own HTTP/1 connection's state, if it is one.
    pub(crate) fn wire(&mut self) -> Option<&mut crate::h1::Wire> {
        match &mut self.tx {
            Tx::Own(w) => Some(w),
            _ => None,
        }
    }

    /// Whether an idle pooled connection is still good for a request.
    fn idle_ok(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.tx {
            Tx::Own(w) => w.idle_ok(),
            // Nobody polled it while idle: let it notice a close from the server and finish
            // the last exchange's bookkeeping before it is trusted with a request.
            _ => self.drive(cx) && !self.tx.is_closed(),
        }
    }

    /// Puts the connection back in its server's pool (after a complete response).
    pub(crate) fn release(self) {
        let peer = self.peer.clone();
        peer.checkin(self);
    }
}

/// Counts a request in flight on a server until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Peer>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves a TCP address now (blocking; used at config compile time).
pub fn resolve(addr: &Address) -> std::io::Result<Vec<SocketAddr>> {
    match addr {
        Address::Tcp { host, port } => {
            let mut v: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs()?.collect();
            v.sort();
            v.dedup();
            if v.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} has no address"),
                ));
            }
            Ok(v)
        }
        Address::Unix(_) => Ok(Vec::new()),
    }
}

impl Peer {
    pub(crate) fn new(
        index: usize,
        settings: PeerSettings,
        resolved: Vec<SocketAddr>,
        pool: PoolSettings,
        breaker: BreakerSettings,
        connect_timeout: Duration,
        send_timeout: Duration,
    ) -> Peer {
        Peer {
            label: settings.addr.to_string(),
            settings,
            index,
            resolved: ArcSwap::from_pointee(resolved),
            inflight: AtomicU32::new(0),
            ewma_us: AtomicU64::new(0),
            active_up: AtomicBool::new(true),
            breaker: Breaker::new(breaker),
            up_since: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(H2Slot::default()),
            h2_opening: tokio::sync::Mutex::new(()),
            pool,
            connect_timeout,
            send_timeout,
            stats: PeerStats::default(),
        }
    }

    /// Whether new requests may go here now.
    pub fn usable(&self, now: Instant) -> bool {
        self.usable_ignoring_breaker() && self.breaker_available(now)
    }

    /// Its breaker lets a request through (closed, expired open, or half-open without a trial).
    pub(crate) fn breaker_available(&self, now: Instant) -> bool {
        self.breaker.available(now)
    }

    /// Usable but for an open breaker (panic mode: when every server's breaker is open,
    /// trying them beats refusing everything, as Envoy's panic threshold does).
    pub fn usable_ignoring_breaker(&self) -> bool {
        let s = &self.settings;
        !s.down
            && !s.drain
            && self.active_up.load(Ordering::Relaxed)
            && (s.max_conns == 0 || self.inflight.load(Ordering::Relaxed) < s.max_conns)
    }

    /// Requests in flight.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Response-head time EWMA in microseconds (0 = no sample yet).
    pub fn ewma_us(&self) -> u64 {
        self.ewma_us.load(Ordering::Relaxed)
    }

    /// Whether active checks consider it up.
    pub fn healthy(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    /// Breaker state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state(Instant::now())
    }

    /// Weight × 1000, ramped during slow start.
    pub(crate) fn effective_weight(&self, now: Instant, slow_start: Duration) -> u64 {
        let full = u64::from(self.settings.weight) * 1000;
        if slow_start.is_zero() {
            return full;
        }
        let since = *self.up_since.lock().unwrap_or_else(|e| e.into_inner());
        match since {
            Some(t) => {
                let el = now.duration_since(t);
                if el >= slow_start {
                    full
                } else {
                    let f = el.as_millis() as u64 * 1000 / slow_start.as_millis().max(1) as u64;
                    (full * f / 1000).max(1)
                }
            }
            None => full,
        }
    }

    /// Marks a request sent here; the guard ends it.
    pub fn start(self: &Arc<Self>, now: Instant) -> InFlight {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.breaker.on_chosen(now);
        InFlight(self.clone())
    }

    /// Records a success (for the breaker) and the response-head latency.
    /// `now` is when the head arrived.
    pub fn record_success(&self, head_time: Duration, now: Instant) {
        let sample = head_time.as_micros().min(u128::from(u32::MAX)) as u64;
        let old = self.ewma_us.load(Ordering::Relaxed);
        // EWMA with α = 1/4: fast enough to follow a slowing server within a few requests.
        let new = if old == 0 {
            sample.max(1)
        } else {
            (old * 3 + sample) / 4
        };
        self.ewma_us.store(new.max(1), Ordering::Relaxed);
        if self.breaker.on_success(now) == Transition::Closed {
            self.mark_recovered();
            tracing::info!(server = %self.label, "upstream server recovered (breaker closed)");
        }
    }

    /// Records a failure; may eject the server.
    pub fn record_failure(&self, why: &str) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        if let Transition::Opened(d) = self.breaker.on_failure(Instant::now()) {
            self.stats.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(server = %self.label, cooldown = ?d, reason = why, "upstream server ejected (breaker open)");
        }
    }

    pub(crate) fn set_health(&self, up: bool) -> bool {
        let was = self.active_up.swap(up, Ordering::Relaxed);
        if was != up {
            self.stats.health_changes.fetch_add(1, Ordering::Relaxed);
            if up {
                self.mark_recovered();
            }
            // Connections to a server that failed its checks are suspect.
            if !up {
                let stale =
                    std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
                drop(stale);
                self.retire_h2();
            }
            true
        } else {
            false
        }
    }

    fn mark_recovered(&self) {
        *self.up_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    pub(crate) fn set_resolved(&self, addrs: Vec<SocketAddr>) {
        if **self.resolved.load() != addrs {
            tracing::info!(server = %self.label, ?addrs, "upstream address changed");
            self.resolved.store(Arc::new(addrs));
            // Idle connections lead to the old addresses: new requests must use the new ones
            // (requests in flight finish where they are).
            let stale = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
            drop(stale);
            self.retire_h2();
        }
    }

    /// Drops the shared HTTP/2 connection: new requests open another; requests in flight
    /// keep their clone, and hyper closes it when the last one ends.
    fn retire_h2(&self) {
        let old = self.h2.lock().unwrap_or_else(|e| e.into_inner()).tx.take();
        drop(old);
    }

    /// Opens a raw connection (health checks and upgrades use their own).
    pub async fn open(&self) -> Result<connect::Stream, UpstreamError> {
        let r = match &self.settings.addr {
            Address::Tcp { .. } => {
                let addrs = self.resolved.load_full();
                connect::tcp(&addrs, self.connect_timeout).await
            }
            Address::Unix(p) => connect::unix(p, self.connect_timeout).await,
        };
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        r.map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                UpstreamError::ConnectTimeout {
                    peer: self.label.clone(),
                }
            } else {
                UpstreamError::Connect {
                    peer: self.label.clone(),
                    source: e,
                }
            }
        })
    }

    async fn handshake(self: &Arc<Self>, upgrades: bool) -> Result<Conn, UpstreamError> {
        let stream = self.open().await?;
        let mut c = self.handshake_over(stream, upgrades).await?;
        c.pooled = true;
        Ok(c)
    }

    /// A connection: an idle pooled one that is still good, else a new one. For an HTTP/2
    /// server, the shared connection (opened on first use, again when it dies).
    /// `now` (the attempt's clock reading) ages the idle connections.
    pub async fn checkout(self: &Arc<Self>, now: Instant) -> Result<Conn, UpstreamError> {
        // The rare paths (HTTP/2, a new connection) are boxed: their futures (connect, DNS,
        // handshakes) would otherwise size every request's future.
        if self.settings.protocol == Protocol::H2c {
            return Box::pin(self.checkout_h2()).await;
        }
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(Idle { mut conn, since }) = idle else {
                break;
            };
            if now.duration_since(since) > self.pool.idle_timeout {
                continue;
            }
            let alive = std::future::poll_fn(|cx| Poll::Ready(conn.idle_ok(cx))).await;
            if !alive {
                continue;
            }
            return Ok(conn);
        }
        Box::pin(self.handshake(false)).await
    }

    /// The shared HTTP/2 connection, if it is alive; counts the request against it.
    fn h2_current(self: &Arc<Self>, slot: &mut H2Slot) -> Option<Conn> {
        let tx = slot.tx.as_ref().filter(|t| !t.is_closed())?.clone();
        slot.uses += 1;
        slot.last_used = Some(Instant::now());
        if self.pool.max_requests > 0 && slot.uses >= self.pool.max_requests {
            // Retired: this request is its last; the next one opens a new connection.
            slot.tx = None;
        }
        Some(self.h2_conn(tx))
    }

    fn h2_conn(self: &Arc<Self>, tx: http2::SendRequest<ReqBody>) -> Conn {
        Conn {
            tx: Tx::H2(tx),
            driver: None,
            uses: 0,
            pooled: false,
            peer: self.clone(),
        }
    }

    /// One connection per server carries every request (multiplexed streams). Opening is
    /// single-flight: requests that arrive meanwhile wait for it (bounded by the connect
    /// timeout of the one opening it) and share its outcome.
    async fn checkout_h2(self: &Arc<Self>) -> Result<Conn, UpstreamError> {
        let attempts = {
            let mut slot = self.h2.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = self.h2_current(&mut slot) {
                return Ok(c);
            }
            slot.attempts
        };
        let _opening = self.h2_opening.lock().await;
        {
            let mut slot = self.h2.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = self.h2_current(&mut slot) {
                return Ok(c);
            }
            if slot.attempts != attempts {
                if let Some((timed_out, why)) = &slot.failed {
                    let peer = self.label.clone();
                    return Err(if *timed_out {
                        UpstreamError::ConnectTimeout { peer }
                    } else {
                        UpstreamError::Connect {
                            peer,
                            source: std::io::Error::other(why.clone()),
                        }
                    });
                }
            }
            slot.attempts += 1;
        }
        let opened = async {
            let stream = self.open().await?;
            self.handshake_h2(stream).await
        };
        // `open` has its own timeout; this one bounds the handshake too.
        let r = match tokio::time::timeout(self.connect_timeout, opened).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::ConnectTimeout {
                peer: self.label.clone(),
            }),
        };
        let mut slot = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(tx) => {
                slot.failed = None;
                slot.uses = 0;
                slot.tx = Some(tx.clone());
                slot.uses += 1;
                slot.last_used = Some(Instant::now());
                Ok(self.h2_conn(tx))
            }
            Err(e) => {
                slot.failed = Some((
                    matches!(e, UpstreamError::ConnectTimeout { .. }),
                    match &e {
                        UpstreamError::Connect { source, .. } => source.to_string(),
                        other => other.to_string(),
                    },
                ));
                Err(e)
            }
        }
    }

    /// An HTTP/2 connection over `stream`. Unlike HTTP/1, its I/O runs in a task of its own:
    /// many requests share it, so no single request's task can drive it (one that finished
    /// early would stall every other stream). The task ends when the server closes the
    /// connection, or once every handle is dropped and its last stream is done.
    async fn handshake_h2(
        self: &Arc<Self>,
        stream: connect::Stream,
    ) -> Result<http2::SendRequest<ReqBody>, UpstreamError> {
        let io = TokioIo::new(TimedStream::new(stream, self.send_timeout));
        let frame = u32::try_from(self.pool.buffer_size.clamp(16 << 10, (16 << 20) - 1))
            .unwrap_or(16 << 10);
        let header_list = u32::try_from(self.pool.buffer_size.max(16 << 10)).unwrap_or(u32::MAX);
        let (tx, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONN_WINDOW)
            .adaptive_window(false)
            .max_frame_size(frame)
            .max_header_list_size(header_list)
            .max_send_buf_size(H2_SEND_BUF)
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT)
            .keep_alive_while_idle(false)
            .handshake(io)
            .await
            .map_err(|e| from_hyper(&self.label, &e))?;
        let label = self.label.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(server = %label, error = %e, "HTTP/2 upstream connection ended");
            }
        });
        Ok(tx)
    }

    /// A fresh connection that can switch protocols (WebSocket).
    pub async fn connect_upgradable(self: &Arc<Self>) -> Result<Conn, UpstreamError> {
        let mut c = self.handshake(true).await?;
        c.uses = self.pool.max_requests.max(1);
        Ok(c)
    }

    fn checkin(&self, c: Conn) {
        let uses = c.uses;
        let driven = match c.tx {
            Tx::H1(_) => c.driver.is_some(),
            Tx::Own(_) => true,
            Tx::H2(_) => false,
        };
        if c.tx.is_closed()
            || !c.pooled
            || !driven
            || self.pool.max_idle == 0
            || (self.pool.max_requests > 0 && uses >= self.pool.max_requests)
            || self.settings.down
            || self.settings.drain
        {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.pool.max_idle {
            idle.push(Idle {
                conn: c,
                since: Instant::now(),
            });
        }
    }

    /// Closes idle connections past their idle timeout.
    pub(crate) fn sweep(&self, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain_mut(|c| {
            let open = match &mut c.conn.tx {
                Tx::Own(w) => w.idle_ok(),
                t => !t.is_closed(),
            };
            open && now.duration_since(c.since) <= self.pool.idle_timeout
        });
        drop(idle);
        // The shared HTTP/2 connection closes when unused past the idle timeout (not while
        // a request, say a long gRPC stream, still runs on it).
        let mut slot = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        let idle_long = slot
            .last_used
            .is_some_and(|t| now.duration_since(t) > self.pool.idle_timeout);
        if slot.tx.as_ref().is_some_and(|t| t.is_closed()) || (idle_long && self.inflight() == 0) {
            slot.tx = None;
        }
    }

    /// Idle pooled connections now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The outcome of [`send`] when it fails: the error, and the request back when it never went
/// out (a stale pooled connection), or went out on a reused connection that died before any
/// answer and its method is idempotent, so it can go out on another connection as is.
pub struct SendFailure {
    /// Why.
    pub error: UpstreamError,
    /// The untouched request, if it was never sent.
    pub unsent: Option<UpRequest>,
}

/// Sends `req` on `conn` and waits for the response head, driving an HTTP/1 connection's I/O
/// in this task. The head timeout starts once the request body has been sent (`body_done`),
/// so a slow upload is not a slow server.
pub async fn send(
    mut conn: Conn,
    req: UpRequest,
    read_timeout: Duration,
    body_done: Option<Arc<BodySignal>>,
    inflight: InFlight,
) -> Result<Response<ResBody>, SendFailure> {
    conn.uses += 1;
    if matches!(conn.tx, Tx::Own(_)) {
        return crate::h1::send(conn, req, read_timeout, inflight).await;
    }
    // Boxed: hyper's futures are large, and inline they made every proxied request's future
    // (moved into its box per request) as large as this rarer path's.
    Box::pin(send_hyper(conn, req, read_timeout, body_done, inflight)).await
}

/// `send` over a hyper connection (upgrades, h2c).
async fn send_hyper(
    mut conn: Conn,
    req: UpRequest,
    read_timeout: Duration,
    body_done: Option<Arc<BodySignal>>,
    inflight: InFlight,
) -> Result<Response<ResBody>, SendFailure> {
    let peer = conn.peer.clone();
    let h2 = matches!(conn.tx, Tx::H2(_));
    let outcome = {
        let Conn { tx, driver, .. } = &mut conn;
        match tx {
            Tx::H1(tx) => {
                let fut = tx.try_send_request(to_h1(req.into_http()));
                head(fut, driver, read_timeout, None, body_done).await
            }
            Tx::H2(tx) => {
                let fut = tx.try_send_request(to_h2(req.into_http(), &peer.label));
                let stall = Some(peer.send_timeout);
                head(fut, &mut None, read_timeout, stall, body_done).await
            }
            // Sent by `h1::send` above; never reached.
            Tx::Own(_) => Head::Misrouted,
        }
    };
    match outcome {
        Head::ReadTimeout => Err(SendFailure {
            error: UpstreamError::ReadTimeout {
                peer: peer.label.clone(),
            },
            unsent: None,
        }),
        Head::Misrouted => Err(SendFailure {
            error: UpstreamError::Broken {
                peer: peer.label.clone(),
                reason: "internal: request on the wrong connection kind".into(),
            },
            unsent: None,
        }),
        Head::SendStalled => Err(SendFailure {
            error: UpstreamError::SendTimeout {
                peer: peer.label.clone(),
            },
            unsent: None,
        }),
        Head::Done(Err(mut e)) => {
            let unsent = e.take_message().map(UpRequest::from_http);
            Err(SendFailure {
                error: from_hyper(&peer.label, e.error()),
                unsent,
            })
        }
        Head::Done(Ok(resp)) => {
            let reuse = !h2
                && !resp
                    .headers()
                    .get(http::header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
                && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS;
            Ok(resp.map(|b: Incoming| ResBody::new(b, conn, reuse, inflight, read_timeout)))
        }
    }
}

type Sent = Result<Response<Incoming>, TrySendError<Request<ReqBody>>>;

/// How waiting for a response head ended. Lives on the stack for one await: boxing the
/// large variant would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Head {
    Done(Sent),
    ReadTimeout,
    SendStalled,
    Misrouted,
}

/// Waits for the response head of `fut`, polling `driver` (HTTP/1) alongside. With a
/// streamed body, the read timeout starts at the body's end; with `stall` (HTTP/2), a body
/// that the connection stops taking for that long (flow control, no free stream) fails the
/// request, since no socket write is pending for the send timeout of `TimedStream` to see.
async fn head(
    fut: impl Future<Output = Sent>,
    driver: &mut Option<Driver>,
    read_timeout: Duration,
    stall: Option<Duration>,
    body: Option<Arc<BodySignal>>,
) -> Head {
    let mut fut = std::pin::pin!(fut);
    let exchange = std::future::poll_fn(|cx| {
        if let Some(d) = driver.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                *driver = None;
            }
        }
        fut.as_mut().poll(cx)
    });
    let mut exchange = std::pin::pin!(exchange);
    let timed = |r: Result<Sent, tokio::time::error::Elapsed>| match r {
        Ok(s) => Head::Done(s),
        Err(_) => Head::ReadTimeout,
    };
    let Some(body) = body else {
        return timed(tokio::time::timeout(read_timeout, &mut exchange).await);
    };
    let check = stall.unwrap_or(Duration::MAX);
    let mut frames = body.frames.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        tokio::select! {
            r = &mut exchange => return Head::Done(r),
            _ = body.end.notified() => {
                return timed(tokio::time::timeout(read_timeout, &mut exchange).await);
            }
            _ = tokio::time::sleep(check), if stall.is_some() => {
                let now = body.frames.load(std::sync::atomic::Ordering::Relaxed);
                // No progress while the connection was not waiting for the client.
                if now == frames && !body.waiting.load(std::sync::atomic::Ordering::Relaxed) {
                    return Head::SendStalled;
                }
                frames = now;
            }
        }
    }
}

/// The request as an HTTP/1.1 client sends it (undoes [`to_h2`] for a request that comes
/// back unsent from an HTTP/2 connection and goes to an HTTP/1 server).
fn to_h1(mut req: Request<ReqBody>) -> Request<ReqBody> {
    if req.version() != http::Version::HTTP_2 {
        return req;
    }
    *req.version_mut() = http::Version::HTTP_11;
    if let Some(a) = req.uri().authority() {
        if !req.headers().contains_key(http::header::HOST) {
            if let Ok(v) = http::HeaderValue::from_str(a.as_str()) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
    }
    let origin = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse::<http::Uri>();
    if let Ok(u) = origin {
        *req.uri_mut() = u;
    }
    req
}

/// The request as an HTTP/2 server must get it: connection-specific fields removed
/// (RFC 9113 §8.2.2: `Connection` and what it names, `Keep-Alive`, `Proxy-Connection`,
/// `Transfer-Encoding`, `Upgrade`; `TE` unless it is `trailers`, which gRPC needs), and
/// `Host` moved into the `:authority` of an absolute URI with scheme `http` (h2 builds the
/// pseudo-headers from the URI). The authority is the `Host` the proxy chose, else the
/// server's address.
fn to_h2(mut req: Request<ReqBody>, peer_label: &str) -> Request<ReqBody> {
    use http::header;
    let h = req.headers_mut();
    let named: Vec<http::HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| http::HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        http::HeaderName::from_static("keep-alive"),
        http::HeaderName::from_static("proxy-connection"),
    ] {
        h.remove(n);
    }
    if h.get(header::TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        h.remove(header::TE);
    }
    let host = h.remove(header::HOST);
    let authority = host
        .as_ref()
        .and_then(|v| http::uri::Authority::try_from(v.as_bytes()).ok())
        .or_else(|| req.uri().authority().cloned())
        .or_else(|| http::uri::Authority::try_from(peer_label).ok())
        .unwrap_or_else(|| http::uri::Authority::from_static("localhost"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(
        req.uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    if let Ok(u) = http::Uri::from_parts(parts) {
        *req.uri_mut() = u;
    }
    *req.version_mut() = http::Version::HTTP_2;
    req
}

impl Peer {
    /// An HTTP/1 connection over `stream`, which the caller opened (and wrote a preamble to,
    /// see `proxy_header.rs`). It is not taken from the pool; whether it goes back depends on
    /// the request (`Connection: close` keeps it out).
    pub(crate) async fn handshake_over(
        self: &Arc<Self>,
        stream: connect::Stream,
        upgrades: bool,
    ) -> Result<Conn, UpstreamError> {
        if self.settings.protocol == Protocol::H2c {
            if upgrades {
                // The proxy refuses these first (WebSocket needs HTTP/1.1 upgrades).
                return Err(UpstreamError::Broken {
                    peer: self.label.clone(),
                    reason: "protocol upgrades need HTTP/1.1".into(),
                });
            }
            // Its own connection (a PROXY header names one client): not shared, it closes
            // when this request's response is done with it.
            let tx = self.handshake_h2(stream).await?;
            return Ok(self.h2_conn(tx));
        }
        if !upgrades && own_h1() {
            return Ok(Conn {
                tx: Tx::Own(crate::h1::Wire::new(
                    stream,
                    self.send_timeout,
                    self.pool.buffer_size,
                )),
                driver: None,
                uses: 0,
                pooled: false,
                peer: self.clone(),
            });
        }
        let io = TokioIo::new(TimedStream::new(stream, self.send_timeout));
        // A fixed read buffer: hyper's adaptive one grows to ~400 KiB per connection on
        // large bodies (26 MiB for 64 connections streaming 64 KiB responses, measured).
        let (tx, conn) = http1::Builder::new()
            .read_buf_exact_size(Some(self.pool.buffer_size.max(8 << 10)))
            .max_header_size(self.pool.buffer_size.max(8 << 10))
            .handshake(io)
            .await
            .map_err(|e| from_hyper(&self.label, &e))?;
        let driver = if upgrades {
            // The upgraded stream is handed over by the connection future when it ends, so
            // it runs in a task of its own.
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
            None
        } else {
            Some(Box::pin(conn) as Driver)
        };
        Ok(Conn {
            tx: Tx::H1(tx),
            driver,
            uses: 0,
            pooled: false,
            peer: self.clone(),
        })
    }

    /// The send timeout (bounds writing a PROXY header too).
    pub(crate) fn send_timeout(&self) -> Duration {
        self.send_timeout
    }
}
