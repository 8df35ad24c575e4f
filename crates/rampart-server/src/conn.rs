//! One accepted connection: HTTP/1.1 or HTTP/2 (prior knowledge) on the same port, served by
//! hyper, with our timeouts, per-connection request limits and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::guard::{ConnState, GuardTimeouts, GuardedIo, InFlight};
use crate::{Body, ConnLimits};

/// What a handler may know about the connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to (selects the virtual hosts).
    pub local: SocketAddr,
    /// Process-unique connection number.
    pub id: u64,
}

/// The request handler the server calls; implemented by the application.
pub trait HttpService: Send + Sync + 'static {
    /// Answers one request. Must not fail: errors become responses inside.
    fn call(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// The request header count hyper enforces when none is configured.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// Connection settings that change with the config (a reload applies them to new connections).
#[derive(Clone)]
pub struct ConnSettings {
    /// The limits in force.
    pub limits: ConnLimits,
    /// A hyper builder prepared from them.
    pub builder: Arc<auto::Builder<TokioExecutor>>,
    /// Listen addresses that require a PROXY protocol header (see `proxy_protocol.rs`).
    pub(crate) proxy_protocol: Arc<Vec<SocketAddr>>,
}

impl ConnSettings {
    /// Prepares a hyper builder for these limits.
    pub fn new(limits: ConnLimits) -> Self {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .keep_alive(true)
            .half_close(false)
            .max_buf_size(limits.max_header_size.max(8192));
        // hyper's own limit is 100. Setting any limit (even 100) makes it initialise two
        // 100-slot header arrays per request instead of using uninitialised stack arrays: ~6 KiB
        // copied per request, measured at 3% of a small static request. So only set others.
        if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            b.http1().max_headers(limits.max_headers);
        }
        // No `pipeline_flush`: in hyper it turns off the bound on buffered response bytes and
        // forces copying bodies into one flat buffer (a stalled client could pin a whole file
        // in memory). Without it responses go out with writev, bounded.
        b.http2()
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
            .enable_connect_protocol();
        ConnSettings {
            limits,
            builder: Arc::new(b),
            proxy_protocol: Arc::new(Vec::new()),
        }
    }
}

/// Serves one connection until it closes or the drain signal asks it to finish.
pub(crate) async fn serve<S: HttpService>(
    stream: TcpStream,
    info: ConnInfo,
    settings: ConnSettings,
    service: Arc<S>,
    mut drain: watch::Receiver<bool>,
) {
    let state = Arc::new(ConnState::default());
    let timeouts = GuardTimeouts {
        header_read: settings.limits.header_read_timeout,
        keepalive: settings.limits.keepalive_timeout,
    };
    let park = Arc::new(std::sync::Mutex::new(None));
    let io = TokioIo::new(GuardedIo::new(
        stream,
        park.clone(),
        state.clone(),
        timeouts,
    ));
    let max_requests = settings.limits.keepalive_requests;
    let svc_state = state.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let service = service.clone();
        let state = svc_state.clone();
        async move {
            let n = state.request_started();
            let guard = InFlight(state);
            let is_h1 = req.version() < Version::HTTP_2;
            let mut resp = service.call(req, &info).await;
            if is_h1 && n >= max_requests {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(resp.map(|body| TrackedBody {
                body,
                _guard: guard,
            }))
        }
    });
    let result = {
        let conn = settings.builder.serve_connection_with_upgrades(io, svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = signalled(&mut drain) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
        // `conn` is dropped here, which parks the socket.
    };
    let parked = park.lock().ok().and_then(|mut s| s.take());
    let Some(stream) = parked else {
        return; // upgraded (e.g. WebSocket): the socket belongs to the upgrade now
    };
    if let Err(e) = &result {
        tracing::trace!(peer = %info.peer, error = %e, "connection ended with an error");
    }
    answer_unanswered(&stream, &state, result.err().as_deref()).await;
    linger(&stream).await;
}

/// Closes like nginx's lingering_close: if the client sent bytes we never read (a rejected
/// body, a pipelined request after an error), closing at once would make the kernel answer with
/// RST, which can destroy the response before the client reads it. So half-close, then discard
/// input for a short, bounded while. Without unread input this is one non-blocking read.
async fn linger(stream: &TcpStream) {
    let mut buf = [0u8; 4096];
    match stream.try_read(&mut buf) {
        Ok(0) => return,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
        Err(_) => return,
        Ok(_) => {}
    }
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let mut total = 0usize;
        while total < (256 << 10) {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut buf) {
                Ok(0) => return,
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// hyper drops some malformed requests (a garbage head, broken chunking in a body being read)
/// without a word — even when the handler already produced a response. Answer them as nginx
/// does, with a 400 (431 when the head is too large) and a close.
async fn answer_unanswered(
    stream: &TcpStream,
    state: &ConnState,
    e: Option<&(dyn std::error::Error + Send + Sync + 'static)>,
) {
    if state.answered.load(Ordering::Acquire)
        || state.is_h2.load(Ordering::Acquire)
        || !state.response_not_started()
    {
        return;
    }
    let he = e.and_then(|e| e.downcast_ref::<hyper::Error>());
    let started = state.requests.load(Ordering::Acquire) > 0;
    let Some(he) = he else {
        // Ended without error but a request got no response at all: its body was malformed.
        if started && e.is_none() {
            write_all_bounded(stream, BAD_REQUEST).await;
        }
        return;
    };
    // Malformed input (a bad head, broken chunking) — not a peer that went away.
    let bad_input = he.is_parse()
        || std::error::Error::source(he)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                )
            });
    if !bad_input {
        return;
    }
    let resp: &[u8] = if he.is_parse_too_large() {
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n"
    } else {
        BAD_REQUEST
    };
    write_all_bounded(stream, resp).await;
}

const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";

/// Writes a short canned response, giving up after a second.
async fn write_all_bounded(stream: &TcpStream, resp: &[u8]) {
    let written = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let mut off = 0;
        while off < resp.len() {
            if stream.writable().await.is_err() {
                return;
            }
            match stream.try_write(&resp[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
    let _ = written;
}

/// A response body that marks its request finished when hyper is done with it.
struct TrackedBody {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Resolves once the watch holds `true` (or its sender is gone); the borrow ends inside, so the
/// caller's future stays `Send`.
pub(crate) async fn signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
