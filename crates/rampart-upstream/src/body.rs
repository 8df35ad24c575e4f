//! Bodies crossing the proxy: the request body sent upstream and the response body streamed
//! back, which returns its connection to the pool when it ends and fails on a stalled read.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::h1::{Decoder, Upload};
use crate::peer::{Conn, InFlight};

/// A boxed request body stream.
pub type BoxReqStream =
    Pin<Box<dyn http_body::Body<Data = Bytes, Error = ClientBodyError> + Send + 'static>>;

/// How a streamed request body is getting on, for the timeouts of [`crate::send`]: its end
/// starts the response-head timeout; over HTTP/2 the frame count and `waiting` tell a stalled
/// upstream (flow control, a stream slot that never frees) from a slow client.
#[derive(Debug, Default)]
pub struct BodySignal {
    /// Fired once when the body has ended.
    pub(crate) end: Notify,
    /// Frames handed to the connection so far.
    pub(crate) frames: AtomicU64,
    /// The connection asked for more and the client has not sent it yet.
    pub(crate) waiting: AtomicBool,
}

impl BodySignal {
    /// A signal for one body.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The client's body failed while we forwarded it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientBodyError(pub String);

/// A request body sent upstream.
pub enum ReqBody {
    /// None.
    Empty,
    /// Buffered whole (replayable on retry).
    Full(Option<Bytes>),
    /// Streamed from the client (not replayable once sent); `done` fires at its end.
    Stream {
        /// The stream.
        inner: BoxReqStream,
        /// Its progress and end, so the response timeout starts then.
        done: Arc<BodySignal>,
    },
}

impl std::fmt::Debug for ReqBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReqBody::Empty => f.write_str("Empty"),
            ReqBody::Full(b) => write!(f, "Full({})", b.as_ref().map_or(0, |b| b.len())),
            ReqBody::Stream { .. } => f.write_str("Stream"),
        }
    }
}

impl http_body::Body for ReqBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Stream { inner, done } => {
                let r = inner.as_mut().poll_frame(cx);
                match &r {
                    Poll::Ready(None) => done.end.notify_one(),
                    Poll::Ready(Some(_)) => {
                        done.frames.fetch_add(1, Ordering::Relaxed);
                        done.waiting.store(false, Ordering::Relaxed);
                        // hyper stops polling a body that says it has ended (a last frame
                        // with END_STREAM, a complete Content-Length): that is its end too.
                        if inner.is_end_stream() {
                            done.end.notify_one();
                        }
                    }
                    Poll::Pending => done.waiting.store(true, Ordering::Relaxed),
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// A response body from a server. When it ends cleanly its connection goes back to the pool;
/// when it is dropped early (the client left) the connection is closed, which cancels the
/// upstream request. A read stalled past `read_timeout` ends it with an error.
pub struct ResBody {
    inner: Inner,
    /// The connection, driven from here until the body ends.
    conn: Option<Conn>,
    /// Whether it may go back to the pool afterwards.
    reuse: bool,
    inflight: Option<InFlight>,
    read_timeout: Duration,
    stall: Option<Pin<Box<Sleep>>>,
}

/// Where the body comes from.
enum Inner {
    /// hyper's connection (HTTP/2, and HTTP/1 upgrades).
    Hyper(Incoming),
    /// Our HTTP/1 connection's buffer and socket (`h1/`), framed by this decoder; with the
    /// rest of a request body still going out when the server answered before it ended.
    Wire(Decoder, Option<Box<Upload>>),
}

impl ResBody {
    pub(crate) fn new(
        inner: Incoming,
        conn: Conn,
        reuse: bool,
        inflight: InFlight,
        read_timeout: Duration,
    ) -> Self {
        let end = http_body::Body::is_end_stream(&inner);
        Self::build(
            Inner::Hyper(inner),
            end,
            conn,
            reuse,
            inflight,
            read_timeout,
        )
    }

    /// A body read from our own HTTP/1 connection.
    pub(crate) fn wire(
        decoder: Decoder,
        upload: Option<Upload>,
        conn: Conn,
        reuse: bool,
        inflight: InFlight,
        read_timeout: Duration,
    ) -> Self {
        // A response complete before the request body: its rest is not sent (see `finish`).
        let end = decoder.is_done();
        Self::build(
            Inner::Wire(decoder, upload.map(Box::new)),
            end,
            conn,
            reuse,
            inflight,
            read_timeout,
        )
    }

    fn build(
        inner: Inner,
        end: bool,
        conn: Conn,
        reuse: bool,
        inflight: InFlight,
        read_timeout: Duration,
    ) -> Self {
        let mut b = ResBody {
            inner,
            conn: Some(conn),
            reuse,
            inflight: Some(inflight),
            read_timeout,
            stall: None,
        };
        if end {
            b.finish();
        }
        b
    }

    /// The rest of the body, when all of it already sits in the connection's buffer (a small
    /// response that arrived with its head): the connection goes back to the pool now, and
    /// the caller sends the bytes as one buffer instead of streaming them (no frame polling,
    /// no stream wrappers on the way to the client). `None` leaves the body as it was.
    pub fn take_whole(&mut self) -> Option<Bytes> {
        // Not while a request body is still going out: the connection is not done.
        let Inner::Wire(dec, None) = &mut self.inner else {
            return None;
        };
        match *dec {
            Decoder::Done => Some(Bytes::new()),
            Decoder::Length(n) => {
                let w = self.conn.as_mut().and_then(Conn::wire)?;
                let n = usize::try_from(n).ok().filter(|&n| n <= w.buf.len())?;
                let data = w.buf.split_to(n).freeze();
                *dec = Decoder::Done;
                self.finish();
                Some(data)
            }
            _ => None,
        }
    }

    fn finish(&mut self) {
        if let Some(mut c) = self.conn.take() {
            // Bytes after a complete response were never asked for, and a request body still
            // going out has no end the server could find: either way not reusable.
            let uploading = matches!(&self.inner, Inner::Wire(_, Some(_)));
            let clean = !uploading && c.wire().is_none_or(|w| w.buf.is_empty());
            if self.reuse && clean {
                c.release();
            }
        }
        self.inflight.take();
    }

    fn fail(&mut self) {
        // Dropping the connection closes it: a half-read response cannot be reused.
        self.conn.take();
        self.inflight.take();
    }

    /// Arms (or polls) the read timeout while no bytes come.
    fn poll_stall(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let timeout = self.read_timeout;
        let s = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match s.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.fail();
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "upstream sent nothing within read_timeout",
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn data_read(&mut self) {
        if let Some(s) = self.stall.as_mut() {
            s.as_mut().reset(Instant::now() + self.read_timeout);
        }
    }

    /// The next frame of a body on our own connection.
    fn poll_wire(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            let Inner::Wire(dec, upload) = &mut self.inner else {
                return Poll::Ready(None);
            };
            let Some(w) = self.conn.as_mut().and_then(Conn::wire) else {
                return Poll::Ready(None);
            };
            if let Some(up) = upload {
                match w.poll_upload(up, cx) {
                    Ok(true) => *upload = None,
                    Ok(false) => {}
                    Err(e) => {
                        // The server stopped taking the body (it answered early, say 413, and
                        // closed) or the client's body failed: the answer still stands, the
                        // connection does not.
                        tracing::debug!(error = %e, "request body upload ended early");
                        *upload = None;
                        self.reuse = false;
                    }
                }
            }
            match dec.decode(&mut w.buf) {
                Ok(Some(b)) => {
                    if dec.is_done() {
                        self.finish();
                    } else {
                        self.data_read();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Ok(None) if dec.is_done() => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
                Err(e) => {
                    self.fail();
                    return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))));
                }
            }
            let left = match dec {
                Decoder::Length(n) | Decoder::ChunkData(n) => *n,
                _ => 0,
            };
            match w.poll_fill_body(cx, left) {
                Poll::Ready(Ok(0)) => {
                    if *dec == Decoder::Close {
                        // The end of a close-delimited body; the connection is spent.
                        *dec = Decoder::Done;
                        self.reuse = false;
                        self.finish();
                        return Poll::Ready(None);
                    }
                    self.fail();
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed the connection before the body ended",
                    ))));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.fail();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending => return self.poll_stall(cx),
            }
        }
    }
}

impl http_body::Body for ResBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let Inner::Hyper(inner) = &mut this.inner else {
            return this.poll_wire(cx);
        };
        if let Some(c) = this.conn.as_mut() {
            c.drive(cx);
        }
        match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if http_body::Body::is_end_stream(&*inner) {
                    this.finish();
                } else {
                    this.data_read();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.fail();
                Poll::Ready(Some(Err(io::Error::other(e))))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => this.poll_stall(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Hyper(i) => i.is_end_stream(),
            Inner::Wire(d, _) => d.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper(i) => i.size_hint(),
            Inner::Wire(Decoder::Length(n), _) => SizeHint::with_exact(*n),
            Inner::Wire(Decoder::Done, _) => SizeHint::with_exact(0),
            Inner::Wire(..) => SizeHint::default(),
        }
    }
}

use std::future::Future;
