//! Protocol switches (WebSocket): the client's connection handed to the handler after a `101`
//! (HTTP/1.1) or a `200` to an extended CONNECT (HTTP/2, through hyper).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// What an accepted connection holds while it lives (its `max_connections` permit, its
/// per-address slot). An upgraded connection (WebSocket, CONNECT tunnel) takes it along, so
/// tunnels stay within the connection limits.
pub(crate) type ConnGuard = Option<Box<dyn std::any::Any + Send + Sync>>;

/// Request extension: the HTTP/1 connection, delivered once the `101` is written. (Shared and
/// optional because request extensions must be `Clone`; only the first taker gets it.)
#[derive(Clone)]
pub(crate) struct H1Upgrade(pub Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

/// The client side of a protocol switch, for [`on`].
pub enum OnUpgrade {
    /// HTTP/1.1: our connection loop hands the socket over.
    H1(oneshot::Receiver<Upgraded>),
    /// HTTP/2 extended CONNECT, via hyper.
    Hyper(hyper::upgrade::OnUpgrade),
}

/// Takes the upgrade handle of a request (call before splitting the request up).
pub fn on<B>(req: &mut http::Request<B>) -> OnUpgrade {
    match req.extensions_mut().remove::<H1Upgrade>() {
        Some(H1Upgrade(slot)) => match slot.lock().ok().and_then(|mut s| s.take()) {
            Some(rx) => OnUpgrade::H1(rx),
            None => OnUpgrade::H1(oneshot::channel().1),
        },
        None => OnUpgrade::Hyper(hyper::upgrade::on(req)),
    }
}

/// The upgrade did not happen (the response was not a switch, or the client left).
#[derive(Debug, thiserror::Error)]
#[error("protocol upgrade failed: {0}")]
pub struct UpgradeError(String);

impl Future for OnUpgrade {
    type Output = Result<Upgraded, UpgradeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            OnUpgrade::H1(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.map_err(|_| UpgradeError("connection closed".into()))),
            OnUpgrade::Hyper(u) => Pin::new(u).poll(cx).map(|r| {
                r.map(|io| Upgraded(Inner::Hyper(TokioIo::new(io))))
                    .map_err(|e| UpgradeError(e.to_string()))
            }),
        }
    }
}

/// A switched connection: bytes both ways, as `AsyncRead + AsyncWrite`.
pub struct Upgraded(Inner);

enum Inner {
    H1 {
        stream: TcpStream,
        pre: Bytes,
        _guard: ConnGuard,
    },
    Hyper(TokioIo<hyper::upgrade::Upgraded>),
}

impl Upgraded {
    /// The socket and bytes the client sent after its head (already read).
    pub(crate) fn h1(stream: TcpStream, pre: Bytes, guard: ConnGuard) -> Self {
        Upgraded(Inner::H1 {
            stream,
            pre,
            _guard: guard,
        })
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::H1 { stream, pre, .. } => {
                if !pre.is_empty() {
                    let n = pre.len().min(buf.remaining());
                    buf.put_slice(&pre[..n]);
                    pre.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Pin::new(stream).poll_read(cx, buf)
            }
            Inner::Hyper(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::H1 { stream, .. } => Pin::new(stream).poll_write(cx, buf),
            Inner::Hyper(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::H1 { stream, .. } => Pin::new(stream).poll_flush(cx),
            Inner::Hyper(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::H1 { stream, .. } => Pin::new(stream).poll_shutdown(cx),
            Inner::Hyper(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
