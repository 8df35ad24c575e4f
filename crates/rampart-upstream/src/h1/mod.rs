//! Our own HTTP/1.1 client for ordinary (non-upgrade) requests to HTTP/1 servers.
//!
//! Why not hyper's: its client dispatcher (message queue, oneshot, `Buffered` I/O, role
//! encode/parse) was about a quarter of the proxy's user-space instructions per request. Here
//! a connection is the socket plus one bounded read buffer (`buffer_size`), reused across the
//! requests it carries: the request head is encoded into one buffer and written with the body
//! in one `writev`; the response head is parsed by `httparse` and its header values share the
//! read buffer; the body leaves that buffer as `Bytes` split off it (see `ResBody`). Upgrades
//! (WebSocket) and health checks stay on hyper.

pub(crate) mod decode;
mod encode;
pub(crate) mod head;

use std::future::poll_fn;
use std::io;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Response};
use tokio::io::AsyncWrite;

use crate::body::{ReqBody, ResBody};
use crate::connect::{Stream, TimedStream};
use crate::error::UpstreamError;
use crate::peer::{Conn, InFlight, SendFailure, Tx};
use crate::request::UpRequest;

pub(crate) use decode::Decoder;
use encode::Plan;
use head::{Framing, HeadError, Parsed};

/// A read asks for at least this much free room in the buffer (else the buffer is renewed).
const MIN_READ: usize = 4 << 10;
/// The most a body read asks for at once (see [`Wire::poll_fill_body`]): bounds a streaming
/// response's buffer whatever its length.
const BODY_READ_MAX: usize = 64 << 10;
/// A request-head buffer grown past this by one large head is not kept for the next request.
const KEEP_OUT: usize = 16 << 10;

/// One HTTP/1 connection: the socket (writes bounded by the send timeout) and its buffers.
pub(crate) struct Wire {
    io: TimedStream,
    /// Bytes read and not yet consumed (response head, then body).
    pub(crate) buf: BytesMut,
    /// The read bound (`pool.buffer_size`): a response head must fit in it.
    max: usize,
    /// Request heads are encoded here.
    out: Vec<u8>,
}

impl Wire {
    pub(crate) fn new(stream: Stream, send_timeout: Duration, max: usize) -> Wire {
        let max = max.max(MIN_READ);
        Wire {
            io: TimedStream::new(stream, send_timeout),
            buf: BytesMut::with_capacity(max),
            max,
            out: Vec::with_capacity(1024),
        }
    }

    /// Whether an idle connection may carry a request: the server has neither closed it nor
    /// sent anything unasked. Does not wait, and costs no system call unless tokio saw the
    /// socket become readable (hyper's `is_closed` relied on the same readiness).
    pub(crate) fn idle_ok(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let r = match self.io.get_ref() {
            Stream::Tcp(s) => s.try_read(&mut probe),
            Stream::Unix(s) => s.try_read(&mut probe),
        };
        matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Reads more into `buf`, renewing it when nearly full (the old allocation is reused once
    /// every `Bytes` split off it is gone).
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.poll_fill_body(cx, 0)
    }

    /// `poll_fill` for a body with `left` bytes still to come: a renewed buffer is sized for
    /// them, up to [`BODY_READ_MAX`], so a 64 KiB answer takes one or two reads instead of
    /// four or five of `buffer_size` (nginx reads a body into several buffers per call).
    pub(crate) fn poll_fill_body(
        &mut self,
        cx: &mut Context<'_>,
        left: u64,
    ) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            // Room beyond what is left: a read that fills the buffer exactly leaves the socket
            // marked readable, and the next read (the next response's head) finds nothing.
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .saturating_add(MIN_READ);
            self.buf
                .reserve(want.clamp(self.max, BODY_READ_MAX.max(self.max)));
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// Parses a response head from the buffer, reading as needed. `seen` is set once any
    /// response byte arrived (then a failure cannot mean "never sent").
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        head_req: bool,
        seen: &mut bool,
    ) -> Poll<Result<head::Head, Fail>> {
        loop {
            if !self.buf.is_empty() {
                *seen = true;
                match head::parse(&mut self.buf, self.max, head_req) {
                    Ok(Parsed::Final(h)) => return Poll::Ready(Ok(h)),
                    Ok(Parsed::Interim) => continue,
                    Ok(Parsed::Partial) => {}
                    Err(e) => return Poll::Ready(Err(Fail::Head(e))),
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => return Poll::Ready(Err(Fail::Closed)),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(Fail::Io(e))),
            }
        }
    }
}

/// Writes all of `parts` in order (one `writev` when the socket takes them), counting the
/// bytes that went out in `sent` so a failure can tell "nothing sent" from "partly sent".
fn poll_write_parts(
    io: &mut TimedStream,
    cx: &mut Context<'_>,
    parts: &[&[u8]],
    sent: &mut usize,
) -> Poll<io::Result<()>> {
    loop {
        let mut skip = *sent;
        let mut slices = [IoSlice::new(&[]); 4];
        let mut n = 0;
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            if n == slices.len() {
                break;
            }
            slices[n] = IoSlice::new(&p[skip..]);
            skip = 0;
            n += 1;
        }
        if n == 0 {
            return Poll::Ready(Ok(()));
        }
        match ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(k) => *sent += k,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// How an exchange failed, before it is mapped to an [`UpstreamError`].
#[derive(Debug)]
enum Fail {
    /// Writing the request.
    Write(io::Error),
    /// Reading the response.
    Io(io::Error),
    /// The server closed the connection before a complete response head.
    Closed,
    Head(HeadError),
    ClientBody(String),
    ReadTimeout,
}

/// Methods a client may resend on its own when a reused connection turns out dead before any
/// answer (RFC 9110 §9.2.2).
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Sends `req` on `conn` (an HTTP/1 connection of ours) and waits for the response head; the
/// body then streams from the connection in [`ResBody`]. The response-head timeout covers
/// the whole exchange, except that a streamed request body is waited for on its own terms
/// (the client's body timeout) and the timeout starts at its end.
pub(crate) async fn send(
    mut conn: Conn,
    req: UpRequest,
    read_timeout: Duration,
    inflight: InFlight,
) -> Result<Response<ResBody>, SendFailure> {
    let peer = conn.peer.clone();
    let reused = conn.uses > 1;
    let Tx::Own(w) = &mut conn.tx else {
        return Err(SendFailure {
            error: UpstreamError::Broken {
                peer: peer.label.clone(),
                reason: "not an HTTP/1 connection".into(),
            },
            unsent: Some(req),
        });
    };
    let head_req = req.head.method == Method::HEAD;
    let close = encode::wants_close(&req.head.fields);
    let plan = encode::head(&req, &mut w.out);
    let streamed = matches!(req.body, ReqBody::Stream { .. });
    let mut sent = 0usize;
    let mut seen = false;
    let outcome = if streamed {
        // The head alone first: until the body is polled, a failure leaves the request whole.
        let r = poll_fn(|cx| poll_write_parts(&mut w.io, cx, &[&w.out], &mut sent)).await;
        match r {
            Err(e) => Err(Fail::Write(e)),
            Ok(()) => {
                let UpRequest { head, body } = req;
                let ReqBody::Stream { inner, .. } = body else {
                    return Err(SendFailure {
                        error: UpstreamError::ClientBody("request body changed kind".into()),
                        unsent: None,
                    });
                };
                let mut upload = None;
                let r = stream_body(w, Upload::new(inner, plan), head_req, &mut seen).await;
                let r = match r {
                    Ok(Streamed::Early(h, up)) => {
                        upload = Some(up);
                        Ok(h)
                    }
                    Ok(Streamed::Sent) => tokio::time::timeout(
                        read_timeout,
                        poll_fn(|cx| w.poll_head(cx, head_req, &mut seen)),
                    )
                    .await
                    .unwrap_or(Err(Fail::ReadTimeout)),
                    Err(f) => Err(f),
                };
                return finish(
                    conn,
                    r,
                    None,
                    head.method,
                    reused,
                    seen,
                    sent,
                    upload,
                    !close,
                    inflight,
                    read_timeout,
                );
            }
        }
    } else {
        let data: &[u8] = match (&req.body, plan) {
            (ReqBody::Full(Some(b)), Plan::Length(n)) if n == b.len() as u64 => b,
            (ReqBody::Full(Some(b)), Plan::Length(_)) if !b.is_empty() => {
                return Err(SendFailure {
                    error: UpstreamError::ClientBody(
                        "request body length differs from its Content-Length".into(),
                    ),
                    unsent: None,
                });
            }
            _ => &[],
        };
        let exchange = async {
            poll_fn(|cx| poll_write_parts(&mut w.io, cx, &[&w.out, data], &mut sent))
                .await
                .map_err(Fail::Write)?;
            poll_fn(|cx| w.poll_head(cx, head_req, &mut seen)).await
        };
        tokio::time::timeout(read_timeout, exchange)
            .await
            .unwrap_or(Err(Fail::ReadTimeout))
    };
    let method = req.head.method.clone();
    finish(
        conn,
        outcome,
        Some(req),
        method,
        reused,
        seen,
        sent,
        None,
        !close,
        inflight,
        read_timeout,
    )
}

/// Maps the outcome of an exchange: a response with its body, or a failure with the request
/// back when it may go out again unchanged.
// `SendFailure` is `send`'s public contract (the request travels back in it); boxing it here
// would only move the size elsewhere.
#[allow(clippy::too_many_arguments, clippy::result_large_err)]
fn finish(
    mut conn: Conn,
    outcome: Result<head::Head, Fail>,
    req: Option<UpRequest>,
    method: Method,
    reused: bool,
    seen: bool,
    sent: usize,
    upload: Option<Upload>,
    may_reuse: bool,
    inflight: InFlight,
    read_timeout: Duration,
) -> Result<Response<ResBody>, SendFailure> {
    let label = &conn.peer.label;
    let f = match outcome {
        Ok(h) => {
            if let Tx::Own(w) = &mut conn.tx {
                if w.out.capacity() > KEEP_OUT {
                    w.out = Vec::with_capacity(1024);
                }
            }
            let decoder = match h.framing {
                Framing::None => Decoder::Done,
                Framing::Length(n) => Decoder::Length(n),
                Framing::Chunked => Decoder::ChunkSize,
                Framing::Close => Decoder::Close,
            };
            let reuse = may_reuse && h.keep_alive;
            return Ok(h
                .resp
                .map(|()| ResBody::wire(decoder, upload, conn, reuse, inflight, read_timeout)));
        }
        Err(f) => f,
    };
    // A dead keep-alive connection (closed or reset with no answer) on a request that was
    // never sent, or that may be resent: it goes out again on another connection.
    let dead = matches!(&f, Fail::Closed)
        || matches!(&f, Fail::Write(e) | Fail::Io(e) if e.kind() != io::ErrorKind::TimedOut);
    let resend = dead && !seen && (sent == 0 || (reused && idempotent(&method)));
    let error = match f {
        Fail::Write(e) | Fail::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
            UpstreamError::SendTimeout {
                peer: label.clone(),
            }
        }
        Fail::Write(e) | Fail::Io(e) => UpstreamError::Broken {
            peer: label.clone(),
            reason: e.to_string(),
        },
        Fail::Closed => UpstreamError::Broken {
            peer: label.clone(),
            reason: "connection closed before message completed".into(),
        },
        Fail::Head(e) => UpstreamError::Broken {
            peer: label.clone(),
            reason: e.to_string(),
        },
        Fail::ClientBody(m) => UpstreamError::ClientBody(m),
        Fail::ReadTimeout => UpstreamError::ReadTimeout {
            peer: label.clone(),
        },
    };
    Err(SendFailure {
        error,
        unsent: if resend { req } else { None },
    })
}

/// How streaming a request body ended. Lives on the stack for one await: boxing the large
/// variant would cost an allocation per upload.
#[allow(clippy::large_enum_variant)]
enum Streamed {
    /// All of it went out.
    Sent,
    /// The server answered first (an echo, an early 413): the rest of the body goes out
    /// while the response streams back (full duplex, as hyper did), from `ResBody`.
    Early(head::Head, Upload),
}

/// A streamed request body on its way out, one frame in flight at a time (bounded: the next
/// frame is taken only when the last one is written).
pub(crate) struct Upload {
    body: crate::body::BoxReqStream,
    plan: Plan,
    /// The chunk-size line of `data`, at the end of the array (chunked only).
    line: [u8; 18],
    line_len: usize,
    data: Bytes,
    /// CRLF after a chunk, or the last chunk.
    tail: &'static [u8],
    /// Bytes of line + data + tail written.
    sent: usize,
    total: u64,
    ended: bool,
}

impl Upload {
    fn new(body: crate::body::BoxReqStream, plan: Plan) -> Upload {
        Upload {
            body,
            plan,
            line: [0; 18],
            line_len: 0,
            data: Bytes::new(),
            tail: b"",
            sent: 0,
            total: 0,
            ended: plan == Plan::None,
        }
    }

    /// Drives the body out until it is all written (`Ready(Ok)`), or fails.
    fn poll_send(&mut self, io: &mut TimedStream, cx: &mut Context<'_>) -> Poll<Result<(), Fail>> {
        loop {
            let parts: [&[u8]; 3] = [
                &self.line[self.line.len() - self.line_len..],
                &self.data,
                self.tail,
            ];
            let pending = parts.iter().map(|p| p.len()).sum::<usize>();
            if self.sent < pending {
                ready!(poll_write_parts(io, cx, &parts, &mut self.sent)).map_err(Fail::Write)?;
                continue;
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            (self.sent, self.line_len, self.data, self.tail) = (0, 0, Bytes::new(), b"");
            match ready!(self.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(d) = frame.into_data() else {
                        continue; // trailers: not sent to HTTP/1 servers
                    };
                    if d.is_empty() {
                        continue;
                    }
                    self.total += d.len() as u64;
                    match self.plan {
                        Plan::Length(n) if self.total > n => {
                            return Poll::Ready(Err(Fail::ClientBody(
                                "request body longer than its Content-Length".into(),
                            )))
                        }
                        Plan::Chunked => {
                            self.line_len = encode::chunk_line(d.len(), &mut self.line).len();
                            self.tail = b"\r\n";
                        }
                        _ => {}
                    }
                    self.data = d;
                }
                Some(Err(e)) => return Poll::Ready(Err(Fail::ClientBody(e.to_string()))),
                None => {
                    self.ended = true;
                    match self.plan {
                        Plan::Length(n) if self.total != n => {
                            return Poll::Ready(Err(Fail::ClientBody(
                                "request body shorter than its Content-Length".into(),
                            )))
                        }
                        Plan::Chunked => self.tail = b"0\r\n\r\n",
                        _ => {}
                    }
                }
            }
        }
    }
}

impl Wire {
    /// Drives `up` while the response streams; `Ok(true)` once the body is all sent.
    pub(crate) fn poll_upload(
        &mut self,
        up: &mut Upload,
        cx: &mut Context<'_>,
    ) -> Result<bool, io::Error> {
        match up.poll_send(&mut self.io, cx) {
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Pending => Ok(false),
            Poll::Ready(Err(Fail::Write(e))) => Err(e),
            Poll::Ready(Err(f)) => Err(io::Error::other(format!("request body: {f:?}"))),
        }
    }
}

/// Streams a request body after its head while watching for an early response.
async fn stream_body(
    w: &mut Wire,
    mut up: Upload,
    head_req: bool,
    seen: &mut bool,
) -> Result<Streamed, Fail> {
    let mut eof = false;
    let mut early = None;
    poll_fn(|cx| loop {
        if !eof {
            match w.poll_fill(cx) {
                Poll::Ready(Ok(0)) => eof = true,
                Poll::Ready(Ok(_)) => {
                    *seen = true;
                    match head::parse(&mut w.buf, w.max, head_req) {
                        Ok(Parsed::Final(h)) => {
                            early = Some(h);
                            return Poll::Ready(Ok(()));
                        }
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Err(Fail::Head(e))),
                    }
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Io(e))),
                Poll::Pending => {}
            }
        }
        return up.poll_send(&mut w.io, cx);
    })
    .await?;
    Ok(match early {
        Some(h) => Streamed::Early(h, up),
        None => Streamed::Sent,
    })
}
