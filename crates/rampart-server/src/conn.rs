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
use crate::h1::head::RawHead;
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
    /// `raw` is the head as the client sent it (HTTP/1 only; HTTP/2 has no such text).
    fn call(
        &self,
        req: Request<RequestBody>,
        raw: Option<RawHead>,
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

/// Serves one already-accepted connection until it closes (for harnesses such as the fuzz
/// targets; listeners use the same path with their drain signal).
pub async fn serve_connection<S: HttpService>(
    stream: TcpStream,
    info: ConnInfo,
    settings: ConnSettings,
    service: Arc<S>,
) {
    let (_keep, drain) = watch::channel(false);
    serve(Box::new(Start {
        stream,
        info,
        settings: Arc::new(settings),
        service,
        drain,
        guard: None,
    }))
    .await;
}

/// What a connection starts with, in one box: an async fn keeps its arguments in its future
/// for the future's whole life, so passing these by value through the accept, sniff and HTTP/1
/// layers stored each of them up to four times (1.7 KiB per connection task; a box is one
/// pointer per layer, and is freed once unpacked).
pub(crate) struct Start<S> {
    pub stream: TcpStream,
    pub info: ConnInfo,
    pub settings: Arc<ConnSettings>,
    pub service: Arc<S>,
    pub drain: watch::Receiver<bool>,
    pub guard: crate::upgrade::ConnGuard,
}

impl<S> Start<S> {
    #[allow(clippy::boxed_local)] // the point: the box is freed on return
    fn unbox(b: Box<Self>) -> Self {
        *b
    }
}

/// Serves one connection until it closes or the drain signal asks it to finish: HTTP/1, or
/// HTTP/2 when it opens with the preface (told apart by the HTTP/1 loop's first read).
pub(crate) async fn serve<S: HttpService>(start: Box<Start<S>>) {
    // Unboxed by a call: moving fields out of `*start` here would keep the box allocated
    // until this function returns, i.e. for the connection's life.
    let Start {
        stream,
        info,
        settings,
        service,
        drain,
        guard,
    } = Start::unbox(start);
    let (r, w) = stream.into_split();
    let conn = crate::h1::Conn::new(r, w, BytesMut::new(), info, settings, service, drain, guard);
    Box::new(conn).run().await;
}

pub(crate) async fn serve_h2<S: HttpService>(
    stream: TcpStream,
    buf: BytesMut,
    info: ConnInfo,
    settings: Arc<ConnSettings>,
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
            let resp = service.call(req.map(RequestBody::H2), None, &info).await;
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
