//! HTTP/1 request bodies, read from the connection by whoever polls them.
//!
//! The connection's read half and buffer move into the body while a handler holds it and go
//! back to the connection when the body is finished or dropped (a shared slot). So reading a
//! body costs no channel and no extra task, and the connection learns afterwards whether the
//! body was read to its end (it can serve the next request) or not (it must discard the rest
//! or close).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use std::sync::atomic::Ordering;

use tokio::net::tcp::OwnedReadHalf;

use super::{Writer, EXPECT_PENDING, EXPECT_SENT};

/// Bytes read from the socket per call while a body streams.
const READ_CHUNK: usize = 64 << 10;
/// A chunk-size line (size, extensions) or a trailer section longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 << 10;

/// The connection's reading side: socket half, buffered bytes, where the current body stands.
pub(crate) struct Reader {
    pub io: OwnedReadHalf,
    /// Read but not yet consumed: the rest of the body, then pipelined requests.
    pub buf: BytesMut,
    pub state: BodyState,
    /// `Expect: 100-continue` still to be answered before the first read.
    pub continue_pending: Option<Arc<Writer>>,
}

/// Where the request body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyState {
    /// `Content-Length` bytes still to come.
    Length(u64),
    /// Chunked, in the middle of the framing.
    Chunked(Chunk),
    /// Read to its end: the connection may go on.
    Done,
    /// Broken framing or a dead client: the connection must close.
    Failed,
}

/// Position in chunked framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// At a chunk-size line.
    Size,
    /// In chunk data, this many bytes left.
    Data(u64),
    /// After chunk data: its CRLF.
    DataEnd,
    /// In the trailer section, this many bytes seen.
    Trailers(usize),
}

/// The slot a body returns the reader to.
pub(crate) type Home = Arc<Mutex<Option<Reader>>>;

/// An HTTP/1 request body.
pub struct H1Body {
    reader: Option<Reader>,
    home: Home,
    /// Exact length for size hints (`Content-Length`), if any.
    len: Option<u64>,
}

impl H1Body {
    pub(crate) fn new(reader: Reader, home: Home, len: Option<u64>) -> Self {
        H1Body {
            reader: Some(reader),
            home,
            len,
        }
    }

    /// The rest of a `Content-Length` body when all of it already sits in the connection's
    /// buffer (a small body that came with its head): taken at once and the reader given back.
    /// A proxy then sends head and body in one write instead of two, and can replay them.
    pub(crate) fn take_whole(&mut self) -> Option<Bytes> {
        let r = self.reader.as_mut()?;
        let BodyState::Length(left) = r.state else {
            return None;
        };
        let n = usize::try_from(left).ok().filter(|&n| n <= r.buf.len())?;
        let data = r.buf.split_to(n).freeze();
        r.state = BodyState::Done;
        // Whatever `100 Continue` was pending is moot: the client sent the body regardless.
        r.continue_pending = None;
        self.len = Some(0);
        self.give_back();
        Some(data)
    }

    fn give_back(&mut self) {
        if let Some(r) = self.reader.take() {
            if let Ok(mut slot) = self.home.lock() {
                *slot = Some(r);
            }
        }
    }
}

impl Drop for H1Body {
    fn drop(&mut self) {
        self.give_back();
    }
}

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Reader {
    /// Takes the next piece of body out of `buf`, if the framing allows one. `Ok(None)` means
    /// more bytes are needed (or the body is done: check `state`).
    pub(crate) fn decode(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.state {
                BodyState::Done | BodyState::Failed => return Ok(None),
                BodyState::Length(left) => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    let (data, left) = self.take(left);
                    self.state = if left == 0 {
                        BodyState::Done
                    } else {
                        BodyState::Length(left)
                    };
                    return Ok(Some(data));
                }
                BodyState::Chunked(Chunk::Data(left)) => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    let (data, left) = self.take(left);
                    self.state = BodyState::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Some(data));
                }
                BodyState::Chunked(Chunk::DataEnd) => {
                    if self.buf.len() < 2 {
                        if self.buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(self.fail("chunk data not followed by CRLF"));
                        }
                        return Ok(None);
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(self.fail("chunk data not followed by CRLF"));
                    }
                    self.buf.advance(2);
                    self.state = BodyState::Chunked(Chunk::Size);
                }
                BodyState::Chunked(Chunk::Size) => {
                    let window = &self.buf[..self.buf.len().min(MAX_CHUNK_LINE)];
                    let Some(nl) = memchr::memchr(b'\n', window) else {
                        if self.buf.len() >= MAX_CHUNK_LINE {
                            return Err(self.fail("chunk-size line too long"));
                        }
                        return Ok(None);
                    };
                    let size = parse_chunk_line(&self.buf[..nl]);
                    let Some(size) = size else {
                        return Err(self.fail("malformed chunk-size line"));
                    };
                    self.buf.advance(nl + 1);
                    self.state = BodyState::Chunked(if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    });
                }
                BodyState::Chunked(Chunk::Trailers(seen)) => {
                    // Trailer fields are read and dropped (as nginx does).
                    let Some(nl) = memchr::memchr(b'\n', &self.buf) else {
                        if seen + self.buf.len() > MAX_TRAILERS {
                            return Err(self.fail("trailer section too large"));
                        }
                        return Ok(None);
                    };
                    let line = &self.buf[..nl];
                    let empty = line.is_empty() || line == b"\r";
                    if !empty && line.last() != Some(&b'\r') {
                        return Err(self.fail("trailer line without CRLF"));
                    }
                    self.buf.advance(nl + 1);
                    self.state = if empty {
                        BodyState::Done
                    } else if seen + nl + 1 > MAX_TRAILERS {
                        return Err(self.fail("trailer section too large"));
                    } else {
                        BodyState::Chunked(Chunk::Trailers(seen + nl + 1))
                    };
                }
            }
        }
    }

    /// Up to `left` body bytes from the buffer, and how many are left after them.
    fn take(&mut self, left: u64) -> (Bytes, u64) {
        let n = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        (self.buf.split_to(n).freeze(), left - n as u64)
    }

    /// The next piece of body, reading the socket as needed; any failure leaves the state
    /// `Failed` (the connection cannot go on).
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let r = loop {
            match self.decode() {
                Ok(Some(b)) => return Poll::Ready(Some(Ok(b))),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            match self.state {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Failed => break Err(bad("request body failed")),
                _ => {}
            }
            if let Err(e) = ready!(self.poll_continue(cx)) {
                break Err(e);
            }
            match ready!(self.poll_fill(cx, READ_CHUNK)) {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "client closed the connection in the request body",
                    ))
                }
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        self.state = BodyState::Failed;
        Poll::Ready(Some(r))
    }

    fn fail(&mut self, msg: &'static str) -> io::Error {
        self.state = BodyState::Failed;
        bad(msg)
    }

    /// Reads more bytes from the socket into `buf`, growing it by `chunk` when nearly full.
    pub(crate) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(chunk);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// Answers `Expect: 100-continue` once, before the first read of the body, unless the
    /// response has started (then the client is told by the final status instead).
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
        let Some(w) = self.continue_pending.as_ref() else {
            return Poll::Ready(Ok(()));
        };
        if w.expect.load(Ordering::Acquire) != EXPECT_PENDING {
            self.continue_pending = None;
            return Poll::Ready(Ok(()));
        }
        loop {
            match w.write.try_write(CONTINUE) {
                Ok(n) if n == CONTINUE.len() => break,
                // 25 bytes into an idle socket: a short write means the client is gone.
                Ok(_) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(w.write.as_ref().poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        w.expect.store(EXPECT_SENT, Ordering::Release);
        self.continue_pending = None;
        Poll::Ready(Ok(()))
    }
}

/// `1*HEXDIG [ ";" ext ] CRLF` (the `\n` already cut off). Bare LF is refused: lenient line
/// ends in chunked framing are a smuggling vector.
fn parse_chunk_line(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r")?;
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (digits, rest) = line.split_at(digits_end);
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let rest = rest.trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return None;
    }
    if rest.iter().any(|&b| b < b' ' && b != b'\t') {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(s, 16).ok()
}

impl http_body::Body for H1Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let Some(r) = this.reader.as_mut() else {
            return Poll::Ready(None);
        };
        let next = ready!(r.poll_body(cx));
        // Done or failed: the connection gets its reader back at once.
        if !matches!(next, Some(Ok(_))) {
            this.give_back();
        }
        Poll::Ready(next.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.reader
            .as_ref()
            .is_none_or(|r| r.state == BodyState::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match (self.len, self.reader.as_ref().map(|r| r.state)) {
            (_, Some(BodyState::Length(n))) => SizeHint::with_exact(n),
            (Some(n), None) => SizeHint::with_exact(n),
            (_, None | Some(BodyState::Done)) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_chunk_line;

    #[test]
    fn chunk_lines() {
        assert_eq!(parse_chunk_line(b"1a\r"), Some(26));
        assert_eq!(parse_chunk_line(b"0;name=v\r"), Some(0));
        assert_eq!(parse_chunk_line(b"5 ;x\r"), Some(5));
        assert_eq!(parse_chunk_line(b"5"), None); // bare LF
        assert_eq!(parse_chunk_line(b"\r"), None);
        assert_eq!(parse_chunk_line(b"-5\r"), None);
        assert_eq!(parse_chunk_line(b"0x5\r"), None);
        assert_eq!(parse_chunk_line(b"ffffffffffffffff\r"), None);
        assert_eq!(parse_chunk_line(b"5 x\r"), None);
    }
}
