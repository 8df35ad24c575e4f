//! Connection-level timeouts that hyper does not give us in the shape operators expect.
//!
//! hyper closes a slow request head silently and has no idle keep-alive timer of its own, while
//! nginx answers `408 Request Timeout` to a client that does not finish its head in
//! `client_header_timeout` and drops idle keep-alive connections after `keepalive_timeout`.
//! [`GuardedIo`] wraps the socket and enforces both, without an extra task per connection:
//! the timer is polled from `poll_read`, which hyper calls whenever it waits for bytes.
//!
//! Phases (see LIFECYCLE.md): *idle* (no request in flight, no bytes of the next head yet) →
//! *head* (bytes arrived, no request started yet) → *busy* (requests in flight; the handler's
//! own timeouts apply) → *idle*. HTTP/2 connections (detected by their preface) only use *idle*.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// The response written when a request head times out (nginx sends the same status).
const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n";

/// The answer to a request that carries both framing headers.
const BAD_FRAMING_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    base().elapsed().as_millis() as u64
}

/// Shared between a connection's socket wrapper and its request handler.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Requests (or h2 streams) being handled right now.
    pub in_flight: AtomicU32,
    /// Requests started on this connection so far.
    pub requests: AtomicU64,
    /// When the last request finished (ms since process start).
    idle_since_ms: AtomicU64,
    /// Bytes written to the client so far, and that count when the latest request started:
    /// equal means no byte of that request's response has gone out.
    pub written: AtomicU64,
    written_at_start: AtomicU64,
    /// The client spoke HTTP/2 (canned HTTP/1 answers must never be written then).
    pub is_h2: std::sync::atomic::AtomicBool,
    /// The socket wrapper already answered (408, bad framing); nothing more may be written.
    pub answered: std::sync::atomic::AtomicBool,
}

impl ConnState {
    /// Marks a request as started; returns its sequence number (1-based).
    pub fn request_started(&self) -> u64 {
        self.written_at_start
            .store(self.written.load(Ordering::Acquire), Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// True when nothing of the latest request's response was written yet.
    pub fn response_not_started(&self) -> bool {
        self.written.load(Ordering::Acquire) == self.written_at_start.load(Ordering::Acquire)
    }

    /// Marks a request as finished (its response body is done or dropped).
    pub fn request_finished(&self) {
        self.idle_since_ms.store(now_ms(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Timeouts enforced by [`GuardedIo`].
#[derive(Clone, Copy, Debug)]
pub struct GuardTimeouts {
    /// From the first byte of a request head to its last.
    pub header_read: Duration,
    /// Idle keep-alive time between requests.
    pub keepalive: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Unknown,
    H1,
    H2,
}

/// A TCP stream that enforces the header-read and keep-alive timeouts.
pub struct GuardedIo {
    // Owned while hyper drives the connection (so reads go straight into hyper's buffer, as
    // with a bare `TcpStream`), then parked on drop for the connection task, which may still
    // have to answer a request hyper gave up on (it closes silently on several kinds of bad
    // input, where nginx answers 400).
    inner: Option<TcpStream>,
    park: Arc<std::sync::Mutex<Option<TcpStream>>>,
    // Boxed so the wrapper stays `Unpin`, as hyper's I/O adapters need.
    sleep: Pin<Box<Sleep>>,
    state: Arc<ConnState>,
    timeouts: GuardTimeouts,
    proto: Proto,
    // When the current head began (ms), and the request count at that time.
    head_started_ms: Option<u64>,
    head_req_no: u64,
    last_read_ms: u64,
    timed_out: bool,
    /// Progress through the current request line (see `target.rs`).
    line: crate::target::LineState,
    /// Escaped request-line bytes that did not fit the caller's buffer, served first.
    pending: Vec<u8>,
}

impl GuardedIo {
    /// Wraps an accepted stream.
    pub fn new(
        inner: TcpStream,
        park: Arc<std::sync::Mutex<Option<TcpStream>>>,
        state: Arc<ConnState>,
        timeouts: GuardTimeouts,
    ) -> Self {
        let now = now_ms();
        state.idle_since_ms.store(now, Ordering::Release);
        GuardedIo {
            inner: Some(inner),
            park,
            sleep: Box::pin(tokio::time::sleep(timeouts.keepalive)),
            state,
            timeouts,
            proto: Proto::Unknown,
            head_started_ms: None,
            head_req_no: 0,
            last_read_ms: now,
            timed_out: false,
            line: crate::target::LineState::Done,
            pending: Vec::new(),
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        if !this.pending.is_empty() {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending[..n]);
            this.pending.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let Some(stream) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        match Pin::new(&mut *stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                if !got.is_empty() {
                    let now = now_ms();
                    this.last_read_ms = now;
                    if this.proto == Proto::Unknown {
                        this.proto = if got.starts_with(b"PRI ") {
                            this.state.is_h2.store(true, Ordering::Release);
                            Proto::H2
                        } else {
                            Proto::H1
                        };
                    }
                    // hyper resolves Content-Length + Transfer-Encoding silently (TE wins, CL
                    // is dropped from the parsed headers); such a request is a smuggling
                    // attempt, so it is refused here, on the raw bytes, before hyper parses it.
                    if this.state.in_flight.load(Ordering::Acquire) == 0 && has_both_framings(got) {
                        this.timed_out = true;
                        this.state.answered.store(true, Ordering::Release);
                        let _ = stream.try_write(BAD_FRAMING_RESPONSE);
                        tracing::debug!(
                            "request with both Content-Length and Transfer-Encoding: 400"
                        );
                        return Poll::Ready(Err(io::ErrorKind::InvalidData.into()));
                    }
                    if this.head_started_ms.is_none()
                        && this.state.in_flight.load(Ordering::Acquire) == 0
                    {
                        this.head_started_ms = Some(now);
                        this.head_req_no = this.state.requests.load(Ordering::Acquire);
                        this.line = crate::target::LineState::Method;
                    }
                    if this.proto == Proto::H1 && this.line != crate::target::LineState::Done {
                        let got = &buf.filled()[before..];
                        if let Some(out) = crate::target::escape(&mut this.line, got) {
                            buf.set_filled(before);
                            let n = out.len().min(buf.remaining());
                            buf.put_slice(&out[..n]);
                            this.pending.extend_from_slice(&out[n..]);
                        }
                        if this.line == crate::target::LineState::Invalid {
                            this.timed_out = true;
                            this.state.answered.store(true, Ordering::Release);
                            if let Some(s) = this.inner.as_ref() {
                                let _ = s.try_write(BAD_FRAMING_RESPONSE);
                            }
                            tracing::debug!("fragment in the request target: 400");
                            return Poll::Ready(Err(io::ErrorKind::InvalidData.into()));
                        }
                    }
                }
                return Poll::Ready(Ok(()));
            }
            other => {
                if other.is_ready() {
                    return other;
                }
            }
        }
        // Nothing to read: is a deadline due?
        if this.state.in_flight.load(Ordering::Acquire) > 0 {
            return Poll::Pending;
        }
        let requests = this.state.requests.load(Ordering::Acquire);
        if this.head_started_ms.is_some() && requests != this.head_req_no {
            this.head_started_ms = None; // that head became a request
        }
        let (deadline_ms, in_head) = match (this.proto, this.head_started_ms) {
            (Proto::H1 | Proto::Unknown, Some(start)) => {
                (start + this.timeouts.header_read.as_millis() as u64, true)
            }
            (Proto::H2, _) => {
                let since = this
                    .state
                    .idle_since_ms
                    .load(Ordering::Acquire)
                    .max(this.last_read_ms);
                (since + this.timeouts.keepalive.as_millis() as u64, false)
            }
            (_, None) => {
                let since = this.state.idle_since_ms.load(Ordering::Acquire);
                (since + this.timeouts.keepalive.as_millis() as u64, false)
            }
        };
        let now = now_ms();
        if now < deadline_ms {
            let when = tokio::time::Instant::from_std(base() + Duration::from_millis(deadline_ms));
            // The keep-alive deadline moves later with every request, and re-arming a tokio
            // timer per request (a timer-wheel removal and insertion) was a visible cost. So an
            // armed timer that is due *earlier* stays: when it fires, the deadline is recomputed
            // here and the timer re-armed once — at most once per keep-alive period on a busy
            // connection. Only a deadline earlier than the armed one (a head's 408) re-arms now.
            if when < this.sleep.deadline() {
                this.sleep.as_mut().reset(when);
            }
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if this.sleep.deadline() < when {
                // It fired for a deadline that has since moved: not a timeout.
                this.sleep.as_mut().reset(when);
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        this.timed_out = true;
        this.state.answered.store(true, Ordering::Release);
        if in_head {
            // Best effort: the socket buffer is empty between requests, so this fits at once.
            if let Some(s) = &this.inner {
                let _ = s.try_write(TIMEOUT_RESPONSE);
            }
            tracing::debug!("request head not received in time: 408");
        }
        Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
    }
}

/// True when one request head in `buf` names both framing headers (any letter case): both
/// names at the start of a line with no blank line (end of a head) between them.
///
/// Runs on every read between requests, so it only looks at line starts (found with `memchr`)
/// and compares a name only when the line's first letter could begin one; an automaton over
/// every byte cost about 3% of a small static request.
fn has_both_framings(head: &[u8]) -> bool {
    const NAMES: [&[u8]; 2] = [b"transfer-encoding", b"content-length"];
    let buf = &head[..head.len().min(32 << 10)];
    // Position of the last match (its `\n`) of each name.
    let mut last: [Option<usize>; 2] = [None, None];
    for nl in memchr::memchr_iter(b'\n', buf) {
        let line = &buf[nl + 1..];
        let p = match line.first().map(u8::to_ascii_lowercase) {
            Some(b't') => 0,
            Some(b'c') => 1,
            _ => continue,
        };
        let name = NAMES[p];
        if !line
            .get(..name.len())
            .is_some_and(|l| l.eq_ignore_ascii_case(name))
        {
            continue;
        }
        if let Some(o) = last[1 - p] {
            let between = &buf[o..nl];
            if memchr::memmem::find(between, b"\r\n\r\n").is_none() {
                return true;
            }
        }
        last[p] = Some(nl);
    }
    false
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        if let Some(s) = self.inner.take() {
            if let Ok(mut slot) = self.park.lock() {
                *slot = Some(s);
            }
        }
    }
}

impl GuardedIo {
    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let state = this.state.clone();
        let s = this.stream()?;
        let r = std::task::ready!(Pin::new(s).poll_write(cx, buf));
        if let Ok(n) = &r {
            state.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        Poll::Ready(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let state = this.state.clone();
        let s = this.stream()?;
        let r = std::task::ready!(Pin::new(s).poll_write_vectored(cx, bufs));
        if let Ok(n) = &r {
            state.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        Poll::Ready(r)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection task closes the socket when hyper is done; it may still have to send
        // a 400 for a request hyper rejected, so no half-close here.
        Poll::Ready(Ok(()))
    }
}

/// Tracks one request's life; dropping it marks the request finished.
#[derive(Debug)]
pub struct InFlight(pub Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

#[cfg(test)]
mod tests {
    use super::has_both_framings;

    #[test]
    fn framing_conflicts_are_found_per_head() {
        assert!(has_both_framings(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(has_both_framings(
            b"POST / HTTP/1.1\r\ntRaNsFeR-eNcOdInG: chunked\r\nCONTENT-LENGTH: 4\r\n\r\n"
        ));
        assert!(!has_both_framings(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcdPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(!has_both_framings(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        // Names only count at a line start, and in full.
        assert!(!has_both_framings(
            b"POST / HTTP/1.1\r\nX-Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!has_both_framings(
            b"POST / HTTP/1.1\r\nContent-Len: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(has_both_framings(
            b"POST / HTTP/1.1\nTransfer-Encoding: chunked\nContent-Length: 4\n\n"
        ));
        assert!(!has_both_framings(b"\ncontent-length"));
        assert!(!has_both_framings(b"\ntransfer-encodin"));
    }
}
