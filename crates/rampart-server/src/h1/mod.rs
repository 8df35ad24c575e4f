//! Rampart's own HTTP/1.1 server connection.
//!
//! Why not hyper's (used until stop 7): a WAF needs the request as sent (raw target, header
//! name case, any version string), operators expect nginx's answers (400/408/414/431/501/505,
//! not a silent close), and the benchmark targets need less per connection and per request
//! than hyper's generic dispatcher gives: hyper keeps two 8 KiB buffers per connection for its
//! whole life, and parses, stores and re-encodes through layers we do not use. Here a
//! connection is one loop in one task: read a head (the buffer is allocated only when bytes
//! arrive and freed while idle), call the service, write the response with one `writev`
//! (`sendfile` for files), repeat. Request bodies read straight from the socket (body.rs);
//! parsing is `httparse` plus a hand-written request line (head.rs).
//!
//! Life of a connection: *idle* (keep-alive timeout; drain closes it) → *head* (header-read
//! timeout from the first byte: 408) → *busy* (the handler; a client that closes its side
//! cancels it) → response written (send timeout per write) → *idle*, or close.

pub(crate) mod body;
mod encode;
pub(crate) mod head;

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{oneshot, watch};

use self::body::{BodyState, Chunk, H1Body, Home, Reader};
use self::encode::{Framing, ReqInfo};
use self::head::{HeadError, Parse};
use crate::conn::{signalled, ConnInfo, ConnSettings, HttpService};
use crate::request_body::RequestBody;
use crate::upgrade::{H1Upgrade, Upgraded};
use crate::{Body, FilePart};

/// The write side, shared with a request body that may have to send `100 Continue`.
pub(crate) struct Writer {
    pub write: OwnedWriteHalf,
    /// `Expect: 100-continue` progress for the current request.
    pub expect: AtomicU8,
}

pub(crate) const EXPECT_NONE: u8 = 0;
pub(crate) const EXPECT_PENDING: u8 = 1;
pub(crate) const EXPECT_SENT: u8 = 2;

/// The buffer a head is first read into (nginx: client_header_buffer_size 1k); larger heads
/// grow it by `HEAD_CHUNK` at a time, up to `max_header_size`.
const HEAD_FIRST: usize = 1024;
/// The HTTP/2 connection preface (prior knowledge, RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Growth step of a head buffer, and the read size while watching for pipelined bytes.
const HEAD_CHUNK: usize = 4096;
/// Bodies of small responses are copied next to the head (one buffer, one write).
const COPY_BODY_MAX: usize = 8 << 10;
/// Response bytes gathered before a write while a streamed body is ready.
const FLUSH_AT: usize = 64 << 10;
/// How long a body whose announced length is complete may take to report its end.
const END_WAIT: Duration = Duration::from_secs(1);
/// An unread request body is discarded up to this much to keep the connection; more closes it.
const DISCARD_MAX: u64 = 256 << 10;
/// How long discarding an unread body may take (nginx: lingering_timeout 5s).
const DISCARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the loop stops.
enum Stop {
    /// Close without a word (idle timeout, client gone, drain).
    Quiet,
    /// The connection opened with the HTTP/2 preface: hand it to the HTTP/2 server.
    Http2,
    /// Answer with these bytes, then close.
    Answer(&'static [u8]),
}

/// One connection's state between requests.
pub(crate) struct Conn<S> {
    writer: Arc<Writer>,
    home: Home,
    /// The read side; `None` while a request body holds it.
    reader: Option<Reader>,
    served: u64,
    info: ConnInfo,
    settings: Arc<ConnSettings>,
    service: Arc<S>,
    idle: Idle,
    /// Connection limits held; handed over with an upgrade.
    guard: crate::upgrade::ConnGuard,
}

/// Waiting for the next request without a timer or channel registration per request: one
/// timer per connection, re-armed only when it fires before the (moving) deadline, and one
/// drain listener that stays registered. Re-arming a tokio timer and re-subscribing to the
/// drain signal on every request were ~2.5% of a small static request.
struct Idle {
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Registers the task for the drain signal's wake-up; polled again only when the task's
    /// waker changed (polling it on every wait cost ~370 instructions per request).
    drain: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The waker `drain` was last polled with.
    drain_waker: Option<std::task::Waker>,
    /// The drain signal itself (the connection's only receiver of it): `has_changed` is one
    /// atomic load (the value only ever goes from `false` to `true`; a gone sender counts as
    /// draining too).
    rx: watch::Receiver<bool>,
    drained: bool,
    /// End of the current keep-alive wait (set when it starts).
    until: Option<tokio::time::Instant>,
    /// End of the current head's read (set at its first byte).
    head_by: Option<tokio::time::Instant>,
    /// No request yet: the first bytes may be HTTP/2's preface (prior knowledge, RFC 9113
    /// §3.3). Told apart here rather than in a phase of its own, which cost every connection
    /// a second boxed state until its first bytes arrived.
    first: bool,
}

/// Why an idle wait ended.
enum Woke {
    Readable,
    Timeout,
    Drain,
}

impl Idle {
    fn new(drain: watch::Receiver<bool>) -> Self {
        let mut rx = drain.clone();
        Idle {
            timer: None,
            drain: Box::pin(async move { signalled(&mut rx).await }),
            drain_waker: None,
            rx: drain,
            drained: false,
            until: None,
            head_by: None,
            first: true,
        }
    }

    fn poll_wait(
        &mut self,
        cx: &mut Context<'_>,
        io: &tokio::net::TcpStream,
        until: tokio::time::Instant,
    ) -> Poll<Woke> {
        if !self.drained && self.rx.has_changed().unwrap_or(true) {
            self.drained = true;
        }
        if !self.drained
            && !self
                .drain_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            // First wait, or another waker: (re)register. This also sees a signal sent
            // before this connection existed (its value, not a change).
            self.drained = self.drain.as_mut().poll(cx).is_ready();
            self.drain_waker = Some(cx.waker().clone());
        }
        if self.drained {
            return Poll::Ready(Woke::Drain);
        }
        // Errors count as readable: the read that follows reports them.
        if io.poll_read_ready(cx).is_ready() {
            return Poll::Ready(Woke::Readable);
        }
        self.poll_deadline(cx, until).map(|()| Woke::Timeout)
    }

    /// Ready once `until` has passed. The connection's one timer serves every deadline (idle
    /// and header read): a `Sleep` of its own in a deadline's future would add 112 bytes to
    /// every connection's task.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, until: tokio::time::Instant) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if timer.deadline() > until {
            timer.as_mut().reset(until);
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if tokio::time::Instant::now() >= until {
                return Poll::Ready(());
            }
            // It fired for an earlier deadline: not this one yet.
            timer.as_mut().reset(until);
        }
    }
}

/// What happens after a request.
enum Next {
    /// Read the next request.
    Again,
    /// Close (already lingered if needed).
    Close,
    /// The connection became another protocol's: hand it over.
    Upgrade(oneshot::Sender<Upgraded>),
}

impl<S: HttpService> Conn<S> {
    /// HTTP/1 on a connection whose first bytes (already read) are in `buf`.
    #[allow(clippy::too_many_arguments)] // the connection's parts, each moved in once
    pub(crate) fn new(
        read: OwnedReadHalf,
        write: OwnedWriteHalf,
        buf: BytesMut,
        info: ConnInfo,
        settings: Arc<ConnSettings>,
        service: Arc<S>,
        drain: watch::Receiver<bool>,
        guard: crate::upgrade::ConnGuard,
    ) -> Self {
        Conn {
            writer: Arc::new(Writer {
                write,
                expect: AtomicU8::new(EXPECT_NONE),
            }),
            home: Arc::new(Mutex::new(None)),
            reader: Some(Reader {
                io: read,
                buf,
                state: BodyState::Done,
                continue_pending: None,
            }),
            served: 0,
            info,
            settings,
            service,
            idle: Idle::new(drain),
            guard,
        }
    }

    /// Serves requests until the connection closes (or becomes another protocol's). Built
    /// first and boxed: an `async fn` stores a by-value `self` twice (as its argument and as
    /// the body's binding), which cost 272 bytes per connection.
    pub(crate) async fn run(mut self: Box<Self>) {
        loop {
            let Some(r) = self.reader.as_mut() else {
                return;
            };
            // Idle or reading a head: the only state most connections are in most of the
            // time, so the only one kept inline; a request's state is boxed, and exists while
            // it runs.
            // Not `match …await { … }`: a scrutinee's temporaries would stay in this future
            // across the exchange.
            let (settings, idle) = (&self.settings, &mut self.idle);
            let read = poll_fn(|cx| poll_head(r, settings, idle, cx)).await;
            let head = match read {
                Ok(head) => head,
                Err(Stop::Quiet) => return,
                Err(Stop::Http2) => return crate::boxed(|| self.http2()).await,
                Err(Stop::Answer(bytes)) => {
                    crate::boxed(|| self.refuse(bytes)).await;
                    return;
                }
            };
            let next = crate::boxed(|| self.exchange(head)).await;
            match next {
                Next::Again => {}
                Next::Close => return,
                Next::Upgrade(tx) => return (*self).upgrade(tx),
            }
        }
    }
}

impl<S: HttpService> Conn<S> {
    /// One request and its response.
    async fn exchange(&mut self, head: Box<head::Head>) -> Next {
        // Taken apart in place: `*head` whole would copy all of it out of the box first.
        let head::Head {
            mut req,
            raw,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
            version,
            http09,
        } = *head;
        let limits = self.settings.limits;
        self.served += 1;
        let mut keep_alive =
            keep_alive && self.served < limits.keepalive_requests && !*self.idle.rx.borrow();
        let req_info = ReqInfo::new(req.method(), version, http09);

        // The body: none, or the reader itself on loan to the handler.
        let request_body = match framing {
            head::Framing::None => RequestBody::Empty,
            framing => {
                let Some(mut rd) = self.reader.take() else {
                    return Next::Close;
                };
                let len = match framing {
                    head::Framing::Length(n) => {
                        rd.state = BodyState::Length(n);
                        Some(n)
                    }
                    _ => {
                        rd.state = BodyState::Chunked(Chunk::Size);
                        None
                    }
                };
                if expect_continue {
                    self.writer.expect.store(EXPECT_PENDING, Ordering::Release);
                    rd.continue_pending = Some(self.writer.clone());
                } else {
                    self.writer.expect.store(EXPECT_NONE, Ordering::Release);
                }
                RequestBody::H1(H1Body::new(rd, self.home.clone(), len))
            }
        };
        let upgrade_tx = if upgrade {
            let (tx, rx) = oneshot::channel();
            req.extensions_mut()
                .insert(H1Upgrade(Arc::new(Mutex::new(Some(rx)))));
            Some(tx)
        } else {
            None
        };
        let req = req.map(|()| request_body);

        // The handler; a client that hangs up meanwhile cancels it (as hyper and nginx do).
        // Boxed (see `crate::boxed`): the application's future is kilobytes.
        let fut = crate::boxed(|| self.service.call(req, Some(raw), &self.info));
        let resp = run_handler(fut, &mut self.reader, &self.home, limits.max_header_size).await;
        let Some(resp) = resp else {
            return Next::Close;
        };
        // Once the response starts, a body read later must not send `100 Continue`.
        self.writer.expect.store(EXPECT_NONE, Ordering::Release);

        let (parts, body) = resp.into_parts();
        let switches =
            parts.status == StatusCode::SWITCHING_PROTOCOLS || req_info.tunnels(parts.status);
        let switching = switches && upgrade_tx.is_some();
        if switches && !switching {
            keep_alive = false; // a 101 nobody can take over: nothing sensible follows
        }
        if req_info.connect && !switching {
            // A refused CONNECT: the client may already have sent tunnel bytes after its head.
            keep_alive = false;
        }
        if *self.idle.rx.borrow() {
            keep_alive = false;
        }
        // Per request (not kept on the connection): idle connections hold no buffers. Sized
        // for a small body too, which is copied behind the head (growing the buffer for it
        // cost a reallocation per small response).
        let inline_body = match &body {
            Body::Full(Some(b)) if b.len() <= COPY_BODY_MAX => b.len() + 32,
            _ => 0,
        };
        let mut out = Vec::with_capacity(512 + inline_body);
        let framing = encode::head(
            &mut out,
            parts.status,
            &parts.headers,
            body.exact_len(),
            &req_info,
            &mut keep_alive,
        );
        drop(parts);
        let written = write_body(&self.writer, &mut out, body, framing, limits.send_timeout).await;
        drop(out);
        match written {
            Ok(true) => {}
            Ok(false) => keep_alive = false,
            Err(e) => {
                tracing::debug!(peer = %self.info.peer, error = %e, "response not delivered");
                return Next::Close;
            }
        }
        if self.reader.is_none() {
            self.reader = self.home.lock().ok().and_then(|mut s| s.take());
        }
        if switching {
            return match upgrade_tx {
                Some(tx) => Next::Upgrade(tx),
                None => Next::Close,
            };
        }

        // Finish an unread body, or close.
        let Some(r) = self.reader.as_mut() else {
            return Next::Close; // the body lives on elsewhere (a spawned task): framing lost
        };
        r.continue_pending = None;
        if !keep_alive {
            linger(r, &self.writer).await;
            return Next::Close;
        }
        if r.state != BodyState::Done && !discard(r, DISCARD_TIMEOUT).await {
            linger(r, &self.writer).await;
            return Next::Close;
        }
        // Between requests no buffer is held unless pipelined bytes wait in it.
        if r.buf.is_empty() {
            r.buf = BytesMut::new();
        }
        Next::Again
    }

    /// A canned answer to a head we refuse, then close.
    async fn refuse(&mut self, bytes: &'static [u8]) {
        let timeout = self.settings.limits.send_timeout;
        let _ = write_all(&self.writer.write, &mut [IoSlice::new(bytes)], timeout).await;
        if let Some(r) = self.reader.as_mut() {
            linger(r, &self.writer).await;
        }
    }

    /// Serves the connection as HTTP/2 (its preface is in the buffer). Called boxed: hyper's
    /// HTTP/2 connection state is large, and only HTTP/2 connections need it.
    async fn http2(self: Box<Self>) {
        let Conn {
            writer,
            home,
            reader,
            info,
            settings,
            service,
            idle,
            guard,
            ..
        } = *self;
        drop(home);
        let Some((stream, buf)) = reunite(writer, reader) else {
            return;
        };
        crate::conn::serve_h2(stream, buf, info, settings, service, idle.rx).await;
        drop(guard);
    }

    /// Hands the socket (and bytes read past the head) to whoever awaits the upgrade.
    fn upgrade(self, tx: oneshot::Sender<Upgraded>) {
        let Conn {
            writer,
            home,
            reader,
            guard,
            ..
        } = self;
        drop(home);
        if let Some((stream, buf)) = reunite(writer, reader) {
            let _ = tx.send(Upgraded::h1(stream, buf.freeze(), guard));
        }
    }
}

/// The socket in one piece again, with the bytes read past the last head; `None` while a
/// request body still holds either half.
fn reunite(
    writer: Arc<Writer>,
    reader: Option<Reader>,
) -> Option<(tokio::net::TcpStream, BytesMut)> {
    let rd = reader?;
    let w = Arc::try_unwrap(writer).ok()?;
    let stream = rd.io.reunite(w.write).ok()?;
    Some((stream, rd.buf))
}

/// Reads until a whole head is in the buffer. A poll function rather than an `async fn`: its
/// state (two deadlines) lives in `Idle`, so the connection's future carries no second copy of
/// a head reader's future (~300 bytes per connection).
fn poll_head(
    r: &mut Reader,
    settings: &ConnSettings,
    idle: &mut Idle,
    cx: &mut Context<'_>,
) -> Poll<Result<Box<head::Head>, Stop>> {
    let limits = &settings.limits;
    loop {
        if !r.buf.is_empty() {
            if idle.first {
                if r.buf.starts_with(PREFACE) {
                    return Poll::Ready(Err(Stop::Http2));
                }
                // Still a prefix of the preface: read on; otherwise HTTP/1 from here on.
                idle.first = r.buf.len() < PREFACE.len() && PREFACE.starts_with(&r.buf);
            }
            if !idle.first {
                match head::parse(&mut r.buf, limits.max_header_size, limits.max_headers) {
                    Ok(Parse::Complete(h)) => {
                        idle.until = None;
                        idle.head_by = None;
                        return Poll::Ready(Ok(h));
                    }
                    Ok(Parse::Partial) => {}
                    Err(e) => {
                        tracing::debug!(error = ?e, "bad request head");
                        return Poll::Ready(Err(Stop::Answer(match e {
                            HeadError::Bad(_) => BAD_REQUEST,
                            HeadError::LineTooLong => URI_TOO_LONG,
                            HeadError::TooLarge => TOO_LARGE,
                            HeadError::UnknownCoding => NOT_IMPLEMENTED,
                        })));
                    }
                }
            }
            // Part of a head (or of the preface): read on, under the head's deadline.
            if idle.head_by.is_none() {
                idle.head_by = Some(tokio::time::Instant::now() + limits.header_read_timeout);
            }
        }
        let got = match idle.head_by {
            None => {
                // Idle: wait for bytes without holding a buffer.
                let until = *idle
                    .until
                    .get_or_insert_with(|| tokio::time::Instant::now() + limits.keepalive_timeout);
                match ready!(idle.poll_wait(cx, r.io.as_ref(), until)) {
                    Woke::Readable => {}
                    Woke::Timeout | Woke::Drain => return Poll::Ready(Err(Stop::Quiet)),
                }
                if r.buf.capacity() == 0 {
                    r.buf.reserve(HEAD_FIRST);
                }
                match r.poll_fill(cx, HEAD_CHUNK) {
                    // Readiness can be stale (a new connection's first wait often is): then
                    // wait again, without the buffer.
                    Poll::Pending => {
                        if r.buf.is_empty() {
                            r.buf = BytesMut::new();
                        }
                        continue;
                    }
                    Poll::Ready(x) => x,
                }
            }
            Some(d) => match r.poll_fill(cx, HEAD_CHUNK) {
                Poll::Ready(x) => x,
                Poll::Pending => {
                    ready!(idle.poll_deadline(cx, d));
                    tracing::debug!("request head not received in time: 408");
                    return Poll::Ready(Err(Stop::Answer(REQUEST_TIMEOUT)));
                }
            },
        };
        match got {
            Ok(0) | Err(_) => return Poll::Ready(Err(Stop::Quiet)),
            Ok(_) => {}
        }
    }
}

/// Polls the handler; while the connection's reader is not on loan to a body, also watches the
/// socket: end of input means the client is gone (`None`), bytes are a pipelined request kept
/// for later.
async fn run_handler<F: Future<Output = Response<Body>>>(
    mut fut: Pin<Box<F>>,
    reader: &mut Option<Reader>,
    home: &Home,
    max_buffered: usize,
) -> Option<Response<Body>> {
    let mut watching = true;
    poll_fn(|cx: &mut Context<'_>| {
        if let Poll::Ready(resp) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(resp));
        }
        if reader.is_none() {
            *reader = home.lock().ok().and_then(|mut s| s.take());
        }
        let Some(r) = reader.as_mut() else {
            return Poll::Pending;
        };
        while watching {
            if r.buf.len() >= max_buffered {
                watching = false; // enough pipelined bytes: leave the rest in the socket
                break;
            }
            match r.poll_fill(cx, HEAD_CHUNK) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    tracing::debug!("client closed the connection before the response");
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

/// Writes the head in `out` and the body. `Ok(false)`: delivered, but the framing cannot go
/// on (a body shorter or longer than announced): close.
async fn write_body(
    w: &Writer,
    out: &mut Vec<u8>,
    body: Body,
    framing: Framing,
    timeout: Duration,
) -> io::Result<bool> {
    match (body, framing) {
        (_, Framing::None) | (Body::Empty | Body::Full(None), _) => {
            if let Framing::Chunked = framing {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            write_all(&w.write, &mut [IoSlice::new(out)], timeout).await?;
            Ok(!matches!(framing, Framing::Length(n) if n > 0))
        }
        (Body::Full(Some(b)), framing) => {
            let ok = match framing {
                Framing::Length(n) => n == b.len() as u64,
                _ => true,
            };
            if let Framing::Chunked = framing {
                let mut line = [0u8; 18];
                let line = encode::chunk_size_line(b.len(), &mut line);
                out.extend_from_slice(line);
                out.extend_from_slice(&b);
                out.extend_from_slice(b"\r\n0\r\n\r\n");
                write_all(&w.write, &mut [IoSlice::new(out)], timeout).await?;
            } else if b.len() <= COPY_BODY_MAX {
                out.extend_from_slice(&b);
                write_all(&w.write, &mut [IoSlice::new(out)], timeout).await?;
            } else {
                write_all(
                    &w.write,
                    &mut [IoSlice::new(out), IoSlice::new(&b)],
                    timeout,
                )
                .await?;
            }
            Ok(ok)
        }
        (Body::Stream(mut s), framing) => write_stream(w, out, &mut s, framing, timeout).await,
        (Body::File(f), Framing::Length(n)) if n == f.len() => {
            write_all(&w.write, &mut [IoSlice::new(out)], timeout).await?;
            for part in f.parts() {
                match part {
                    FilePart::Bytes(b) => {
                        write_all(&w.write, &mut [IoSlice::new(b)], timeout).await?;
                    }
                    FilePart::File { offset, len } => {
                        send_file(&w.write, f.file(), *offset, *len, timeout).await?;
                    }
                }
            }
            Ok(true)
        }
        (body @ Body::File(_), framing) => {
            // Framed otherwise (a handler's own Content-Length): read it like any stream.
            let mut s: crate::BoxStream = Box::pin(body);
            write_stream(w, out, &mut s, framing, timeout).await
        }
    }
}

/// Streams a body: frames gathered while the body has them ready, written when it would wait
/// or enough piled up.
async fn write_stream(
    w: &Writer,
    out: &[u8],
    body: &mut crate::BoxStream,
    framing: Framing,
    timeout: Duration,
) -> io::Result<bool> {
    let mut queued: Vec<Bytes> = Vec::new();
    let mut queued_len = 0usize;
    let mut sent: u64 = 0;
    let mut head_out = true; // `out` (the head) still to go first
    loop {
        let next = match poll_now(body) {
            Some(f) => f,
            None => {
                flush(w, out, &mut head_out, &mut queued, &mut queued_len, timeout).await?;
                poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            }
        };
        match next {
            None => {
                let ok = match framing {
                    Framing::Chunked => {
                        queued.push(Bytes::from_static(b"0\r\n\r\n"));
                        true
                    }
                    Framing::Length(n) => n == sent,
                    _ => true,
                };
                flush(w, out, &mut head_out, &mut queued, &mut queued_len, timeout).await?;
                return Ok(ok);
            }
            Some(Err(e)) => {
                // Mid-body failure (an upstream died): the client must not take a short
                // body for a whole one, so the connection closes without the last chunk.
                flush(w, out, &mut head_out, &mut queued, &mut queued_len, timeout).await?;
                return Err(e);
            }
            Some(Ok(frame)) => {
                let Ok(mut data) = frame.into_data() else {
                    continue; // trailers: HTTP/1 clients rarely take them; dropped as nginx does
                };
                if data.is_empty() {
                    continue;
                }
                match framing {
                    Framing::Length(n) => {
                        let room = n.saturating_sub(sent);
                        if data.len() as u64 > room {
                            data.truncate(usize::try_from(room).unwrap_or(0));
                        }
                        sent += data.len() as u64;
                        queued_len += data.len();
                        queued.push(data);
                    }
                    Framing::Chunked => {
                        let mut line = [0u8; 18];
                        let line = encode::chunk_size_line(data.len(), &mut line);
                        queued_len += data.len() + line.len() + 2;
                        queued.push(Bytes::copy_from_slice(line));
                        queued.push(data);
                        queued.push(Bytes::from_static(b"\r\n"));
                    }
                    Framing::Close => {
                        queued_len += data.len();
                        queued.push(data);
                    }
                    Framing::None => {}
                }
                if queued_len >= FLUSH_AT || queued.len() >= 48 {
                    flush(w, out, &mut head_out, &mut queued, &mut queued_len, timeout).await?;
                }
                if let Framing::Length(n) = framing {
                    if sent >= n {
                        // Let the body see its own end before the last bytes go: it logs
                        // then, and a proxied body hands its upstream connection back to the
                        // pool. That end is normally one poll away; anything else than the
                        // end is more than announced, and the connection closes.
                        let ended = match poll_now(body) {
                            Some(f) => f.is_none(),
                            None => matches!(
                                tokio::time::timeout(
                                    END_WAIT,
                                    poll_fn(|cx| body.as_mut().poll_frame(cx))
                                )
                                .await,
                                Ok(None)
                            ),
                        };
                        flush(w, out, &mut head_out, &mut queued, &mut queued_len, timeout).await?;
                        return Ok(ended);
                    }
                }
            }
        }
    }
}

type Frame = Option<Result<http_body::Frame<Bytes>, io::Error>>;

/// One poll of the body without waiting: `None` when it would wait.
fn poll_now(body: &mut crate::BoxStream) -> Option<Frame> {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    match body.as_mut().poll_frame(&mut cx) {
        Poll::Ready(f) => Some(f),
        Poll::Pending => None,
    }
}

async fn flush(
    w: &Writer,
    out: &[u8],
    head_out: &mut bool,
    queued: &mut Vec<Bytes>,
    queued_len: &mut usize,
    timeout: Duration,
) -> io::Result<()> {
    if !*head_out && queued.is_empty() {
        return Ok(());
    }
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(queued.len() + 1);
    if *head_out {
        slices.push(IoSlice::new(out));
    }
    slices.extend(queued.iter().map(|b| IoSlice::new(b)));
    write_all(&w.write, &mut slices, timeout).await?;
    *head_out = false;
    queued.clear();
    *queued_len = 0;
    Ok(())
}

/// Sends `len` bytes of `file` from `offset` with `sendfile(2)`: the kernel copies from the
/// page cache to the socket, nothing passes through user space (nginx's `sendfile on`).
async fn send_file(
    w: &OwnedWriteHalf,
    file: &std::fs::File,
    mut offset: u64,
    len: u64,
    timeout: Duration,
) -> io::Result<()> {
    use std::os::fd::AsFd;
    let end = offset + len;
    let sock: &tokio::net::TcpStream = w.as_ref();
    while offset < end {
        // Bounded per call, so one large file does not hold the worker for long.
        let chunk = usize::try_from((end - offset).min(1 << 20)).unwrap_or(1 << 20);
        let sent = sock.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::fs::sendfile(sock.as_fd(), file.as_fd(), Some(&mut offset), chunk)
                .map_err(io::Error::from)
        });
        match sent {
            // The file shrank under us: the client must not take a short body for a whole one.
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(timeout, sock.writable()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes every byte of `bufs`, waiting at most `timeout` for the socket each time it is full.
pub(crate) async fn write_all(
    w: &OwnedWriteHalf,
    mut bufs: &mut [IoSlice<'_>],
    timeout: Duration,
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.try_write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(timeout, w.writable()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads and drops what is left of an unread request body, so that the connection can serve
/// the next request. False when the body is too large, broken, or too slow: close instead.
async fn discard(r: &mut Reader, timeout: Duration) -> bool {
    let budget = match r.state {
        BodyState::Length(n) if n > DISCARD_MAX => return false,
        BodyState::Failed => return false,
        _ => DISCARD_MAX,
    };
    let work = async {
        let mut seen = 0u64;
        loop {
            match r.decode() {
                Ok(Some(b)) => {
                    seen += b.len() as u64;
                    if seen > budget {
                        return false;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(_) => return false,
            }
            if r.state == BodyState::Done {
                return true;
            }
            match poll_fn(|cx| r.poll_fill(cx, HEAD_CHUNK)).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(timeout, work).await.unwrap_or(false)
}

/// Closes like nginx's lingering_close: if the client sent bytes we never read (a rejected
/// body, a pipelined request after an error), closing at once would make the kernel answer
/// with RST, which can destroy the response before the client reads it. So half-close, then
/// discard input for a short, bounded while.
async fn linger(r: &mut Reader, w: &Writer) {
    let _ = socket2::SockRef::from(w.write.as_ref()).shutdown(std::net::Shutdown::Write);
    r.buf = BytesMut::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut total = 0usize;
        while total < (256 << 10) {
            r.buf.clear();
            match poll_fn(|cx| r.poll_fill(cx, HEAD_CHUNK)).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n";
const URI_TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nURI Too Long\n";
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n";
const NOT_IMPLEMENTED: &[u8] = b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\nNot Implemented\n";
