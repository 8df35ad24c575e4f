//! One accepted connection: HTTP/1.1 (our own loop, `h1/`) or HTTP/2 with prior knowledge
//! (hyper's) on the same port, told apart by the first bytes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::guard::{ConnState, GuardedIo, InFlight};
use crate::request_body::RequestBody;
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
        req: Request<RequestBody>,
        conn: &ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// Connection settings that change with the config (a reload applies them to new connections).
#[derive(Clone)]
pub struct ConnSettings {
    /// The limits in force.
    pub limits: ConnLimits,
    /// The HTTP/2 side (hyper), prepared from them.
    pub h2: Arc<http2::Builder<TokioExecutor>>,
    /// Listen addresses that require a PROXY protocol header (see `proxy_protocol.rs`).
    pub(crate) proxy_protocol: Arc<Vec<SocketAddr>>,
}

impl ConnSettings {
    /// Prepares the connection settings for these limits.
    pub fn new(limits: ConnLimits) -> Self {
        let mut b = http2::Builder::new(TokioExecutor::new());
        b.max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
            .enable_connect_protocol();
        ConnSettings {
            limits,
            h2: Arc::new(b),
            proxy_protocol: Arc::new(Vec::new()),
        }
    }
}

/// The HTTP/2 connection preface (prior knowledge, RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one already-accepted connection until it closes (for harnesses such as the fuzz
/// targets; listeners use the same path with their drain signal).
pub async fn serve_connection<S: HttpService>(
    stream: TcpStream,
    info: ConnInfo,
    settings: ConnSettings,
    service: Arc<S>,
) {
    let (_keep, drain) = watch::channel(false);
    serve(stream, info, settings, service, drain, None).await;
}

/// Serves one connection until it closes or the drain signal asks it to finish: HTTP/2 when
/// it opens with the preface, HTTP/1 otherwise.
pub(crate) async fn serve<S: HttpService>(
    stream: TcpStream,
    info: ConnInfo,
    settings: ConnSettings,
    service: Arc<S>,
    mut drain: watch::Receiver<bool>,
    guard: crate::upgrade::ConnGuard,
) {
    let mut buf = BytesMut::new();
    // Read until the first bytes tell the protocol; idle connections hold no buffer.
    let h2 = loop {
        if buf.len() >= PREFACE.len() || !PREFACE.starts_with(&buf) {
            break buf.starts_with(PREFACE);
        }
        let ready = tokio::select! {
            biased;
            r = tokio::time::timeout(settings.limits.keepalive_timeout, stream.readable()) => r,
            _ = signalled(&mut drain) => return,
        };
        if !matches!(ready, Ok(Ok(()))) {
            return;
        }
        if buf.capacity() == 0 {
            buf.reserve(1024);
        }
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    };
    if !h2 {
        let (r, w) = stream.into_split();
        crate::h1::serve(r, w, buf, info, settings, service, drain, guard).await;
        return;
    }
    // Boxed: hyper's HTTP/2 connection state is large, and only HTTP/2 connections need it.
    Box::pin(serve_h2(stream, buf, info, settings, service, drain)).await;
}

async fn serve_h2<S: HttpService>(
    stream: TcpStream,
    buf: BytesMut,
    info: ConnInfo,
    settings: ConnSettings,
    service: Arc<S>,
    mut drain: watch::Receiver<bool>,
) {
    let state = Arc::new(ConnState::default());
    let io = TokioIo::new(GuardedIo::new(
        stream,
        buf,
        state.clone(),
        settings.limits.keepalive_timeout,
    ));
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let service = service.clone();
        let state = state.clone();
        // Boxed: hyper runs each stream as a task holding this future by value, and the
        // pipeline's future is several KiB; moving it through the task's stages cost more
        // than one allocation (callgrind).
        Box::pin(async move {
            state.request_started();
            let guard = InFlight(state);
            let resp = service.call(req.map(RequestBody::H2), &info).await;
            Ok::<_, Infallible>(resp.map(|body| TrackedBody {
                body,
                _guard: guard,
            }))
        })
    });
    let conn = settings.h2.serve_connection(io, svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = signalled(&mut drain) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::trace!(peer = %info.peer, error = %e, "HTTP/2 connection ended with an error");
    }
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
