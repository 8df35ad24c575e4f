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
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::body::{ReqBody, ResBody};
use crate::breaker::{Breaker, BreakerState, Transition};
use crate::connect::{self, TimedStream};
use crate::error::{from_hyper, UpstreamError};
use crate::settings::{Address, BreakerSettings, PeerSettings, PoolSettings};

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

/// The I/O half of a client connection. It is polled by whichever task uses the connection
/// (the request's own task) instead of a task of its own: that saves two cross-task wake-ups
/// per request, which cost more than the proxying itself on small requests.
type Driver = Pin<Box<http1::Connection<TokioIo<TimedStream>, ReqBody>>>;

/// A connection checked out of a server's pool for one request.
pub struct Conn {
    tx: http1::SendRequest<ReqBody>,
    /// `None` when a spawned task drives it (upgrades) or once it has ended.
    driver: Option<Driver>,
    uses: u64,
    /// May go back to the pool (not when it carries one client's PROXY header).
    pooled: bool,
    peer: Arc<Peer>,
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
            pool,
            connect_timeout,
            send_timeout,
            stats: PeerStats::default(),
        }
    }

    /// Whether new requests may go here now.
    pub fn usable(&self, now: Instant) -> bool {
        self.usable_ignoring_breaker() && self.breaker.available(now)
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
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.breaker.on_chosen(Instant::now());
        InFlight(self.clone())
    }

    /// Records a success (for the breaker) and the response-head latency.
    pub fn record_success(&self, head_time: Duration) {
        let sample = head_time.as_micros().min(u128::from(u32::MAX)) as u64;
        let old = self.ewma_us.load(Ordering::Relaxed);
        // EWMA with α = 1/4: fast enough to follow a slowing server within a few requests.
        let new = if old == 0 {
            sample.max(1)
        } else {
            (old * 3 + sample) / 4
        };
        self.ewma_us.store(new.max(1), Ordering::Relaxed);
        if self.breaker.on_success(Instant::now()) == Transition::Closed {
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
        }
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

    /// A connection: an idle pooled one that is still good, else a new one.
    pub async fn checkout(self: &Arc<Self>) -> Result<Conn, UpstreamError> {
        let now = Instant::now();
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(Idle { mut conn, since }) = idle else {
                break;
            };
            if now.duration_since(since) > self.pool.idle_timeout {
                continue;
            }
            // Nobody polled it while idle: let it notice a close from the server and finish
            // the last exchange's bookkeeping before it is trusted with a request.
            let alive = std::future::poll_fn(|cx| Poll::Ready(conn.drive(cx))).await;
            if !alive || conn.tx.is_closed() {
                continue;
            }
            return Ok(conn);
        }
        self.handshake(false).await
    }

    /// A fresh connection that can switch protocols (WebSocket).
    pub async fn connect_upgradable(self: &Arc<Self>) -> Result<Conn, UpstreamError> {
        let mut c = self.handshake(true).await?;
        c.uses = self.pool.max_requests.max(1);
        Ok(c)
    }

    fn checkin(&self, c: Conn) {
        let uses = c.uses;
        if c.tx.is_closed()
            || !c.pooled
            || c.driver.is_none()
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
        idle.retain(|c| {
            !c.conn.tx.is_closed() && now.duration_since(c.since) <= self.pool.idle_timeout
        });
    }

    /// Idle pooled connections now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The outcome of [`send`] when it fails: the error, and the request back when hyper never
/// serialized it (a stale pooled connection), so it can go out on another connection as is.
pub struct SendFailure {
    /// Why.
    pub error: UpstreamError,
    /// The untouched request, if it was never sent.
    pub unsent: Option<Request<ReqBody>>,
}

/// Sends `req` on `conn` and waits for the response head, driving the connection's I/O in
/// this task. The head timeout starts once the request body has been sent (`body_done`), so
/// a slow upload is not a slow server.
pub async fn send(
    mut conn: Conn,
    req: Request<ReqBody>,
    read_timeout: Duration,
    body_done: Option<Arc<tokio::sync::Notify>>,
    inflight: InFlight,
) -> Result<Response<ResBody>, SendFailure> {
    let peer = conn.peer.clone();
    conn.uses += 1;
    let outcome = {
        let Conn { tx, driver, .. } = &mut conn;
        let fut = tx.try_send_request(req);
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
        match body_done {
            Some(n) => {
                let notified = n.notified();
                tokio::select! {
                    r = &mut exchange => Some(r),
                    _ = notified => tokio::time::timeout(read_timeout, &mut exchange).await.ok(),
                }
            }
            None => tokio::time::timeout(read_timeout, &mut exchange).await.ok(),
        }
    };
    match outcome {
        None => Err(SendFailure {
            error: UpstreamError::ReadTimeout {
                peer: peer.label.clone(),
            },
            unsent: None,
        }),
        Some(Err(mut e)) => {
            let unsent = e.take_message();
            Err(SendFailure {
                error: from_hyper(&peer.label, e.error()),
                unsent,
            })
        }
        Some(Ok(resp)) => {
            let reuse = !resp
                .headers()
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
                && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS;
            Ok(resp.map(|b: Incoming| ResBody::new(b, conn, reuse, inflight, read_timeout)))
        }
    }
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
            tx,
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
