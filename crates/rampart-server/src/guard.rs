//! The idle timeout of HTTP/2 connections. hyper has no idle keep-alive timer of its own,
//! while nginx drops a connection with no open stream after `keepalive_timeout`. [`GuardedIo`]
//! wraps the socket and enforces it without an extra task per connection: the timer is polled
//! from `poll_read`, which hyper calls whenever it waits for bytes. (HTTP/1 connections are
//! our own loop, `h1/mod.rs`, with its timers inline.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

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
    /// Streams being handled right now.
    in_flight: AtomicU32,
    /// When the last stream finished (ms since process start).
    idle_since_ms: AtomicU64,
}

impl ConnState {
    /// Marks a stream as started.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks a stream as finished (its response body is done or dropped).
    pub fn request_finished(&self) {
        self.idle_since_ms.store(now_ms(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP stream that ends an HTTP/2 connection idle for longer than the keep-alive timeout.
pub struct GuardedIo {
    inner: TcpStream,
    /// Bytes read before the protocol was known (the connection preface), served first.
    pending: BytesMut,
    // Boxed so the wrapper stays `Unpin`, as hyper's I/O adapters need.
    sleep: Pin<Box<Sleep>>,
    state: Arc<ConnState>,
    keepalive: Duration,
    last_read_ms: u64,
    timed_out: bool,
}

impl GuardedIo {
    /// Wraps an accepted stream whose first bytes are `pending`.
    pub fn new(
        inner: TcpStream,
        pending: BytesMut,
        state: Arc<ConnState>,
        keepalive: Duration,
    ) -> Self {
        let now = now_ms();
        state.idle_since_ms.store(now, Ordering::Release);
        GuardedIo {
            inner,
            pending,
            sleep: Box::pin(tokio::time::sleep(keepalive)),
            state,
            keepalive,
            last_read_ms: now,
            timed_out: false,
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
            this.pending.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.last_read_ms = now_ms();
                }
                return Poll::Ready(r);
            }
            Poll::Pending => {}
        }
        // Nothing to read: is the idle deadline due?
        if this.state.in_flight.load(Ordering::Acquire) > 0 {
            return Poll::Pending;
        }
        let since = this
            .state
            .idle_since_ms
            .load(Ordering::Acquire)
            .max(this.last_read_ms);
        let deadline_ms = since + this.keepalive.as_millis() as u64;
        if now_ms() < deadline_ms {
            let when = tokio::time::Instant::from_std(base() + Duration::from_millis(deadline_ms));
            // The deadline moves later with every stream, and re-arming a tokio timer each
            // time was a visible cost: an armed timer due earlier stays, and when it fires the
            // deadline is recomputed and the timer re-armed once.
            if when < this.sleep.deadline() {
                this.sleep.as_mut().reset(when);
            }
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if this.sleep.deadline() < when {
                this.sleep.as_mut().reset(when);
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        this.timed_out = true;
        Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Tracks one stream's life; dropping it marks the stream finished.
#[derive(Debug)]
pub struct InFlight(pub Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}
