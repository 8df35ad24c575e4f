//! Response bodies out of the connection's read buffer: `Content-Length`, chunked (strict:
//! CRLF only, bounded size lines and trailers) or close-delimited. Data leaves the buffer as
//! `Bytes` split off it (no copy).
//!
//! The chunk-size line rules are the same as our server's request-body decoder
//! (`rampart-server/src/h1/body.rs`); they are duplicated rather than shared because the two
//! crates have no common dependency below them, and 20 lines do not justify a new crate.

use bytes::{Buf, Bytes, BytesMut};

/// A chunk-size line (size and extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// A trailer section larger than this is refused (trailers are read and dropped).
const MAX_TRAILERS: usize = 16 << 10;

/// Where the body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// This many bytes still to come.
    Length(u64),
    /// At a chunk-size line.
    ChunkSize,
    /// In chunk data, this many bytes left.
    ChunkData(u64),
    /// After chunk data: its CRLF.
    ChunkEnd,
    /// In the trailer section, this many bytes seen.
    Trailers(usize),
    /// Until the connection closes.
    Close,
    /// Complete.
    Done,
}

/// Broken framing: the body (and its connection) cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid response body framing: {0}")]
pub(crate) struct FramingError(pub &'static str);

impl Decoder {
    /// The next piece of body from `buf`. `Ok(None)`: more bytes are needed, or the body is
    /// done (see [`Decoder::Done`]).
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        loop {
            match *self {
                Decoder::Done => return Ok(None),
                Decoder::Close => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(buf.split().freeze()));
                }
                Decoder::Length(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let (data, left) = take(buf, left);
                    *self = if left == 0 {
                        Decoder::Done
                    } else {
                        Decoder::Length(left)
                    };
                    return Ok(Some(data));
                }
                Decoder::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let (data, left) = take(buf, left);
                    *self = if left == 0 {
                        Decoder::ChunkEnd
                    } else {
                        Decoder::ChunkData(left)
                    };
                    return Ok(Some(data));
                }
                Decoder::ChunkEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(FramingError("chunk data not followed by CRLF"));
                        }
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(FramingError("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Decoder::ChunkSize;
                }
                Decoder::ChunkSize => {
                    let window = &buf[..buf.len().min(MAX_CHUNK_LINE)];
                    let Some(nl) = memchr::memchr(b'\n', window) else {
                        if buf.len() >= MAX_CHUNK_LINE {
                            return Err(FramingError("chunk-size line too long"));
                        }
                        return Ok(None);
                    };
                    let size = parse_chunk_line(&buf[..nl])
                        .ok_or(FramingError("malformed chunk-size line"))?;
                    buf.advance(nl + 1);
                    *self = if size == 0 {
                        Decoder::Trailers(0)
                    } else {
                        Decoder::ChunkData(size)
                    };
                }
                Decoder::Trailers(seen) => {
                    let Some(nl) = memchr::memchr(b'\n', buf) else {
                        if seen + buf.len() > MAX_TRAILERS {
                            return Err(FramingError("trailer section too large"));
                        }
                        return Ok(None);
                    };
                    let line = &buf[..nl];
                    let empty = line == b"\r";
                    if line.last() != Some(&b'\r') {
                        return Err(FramingError("trailer line without CRLF"));
                    }
                    if seen + nl + 1 > MAX_TRAILERS {
                        return Err(FramingError("trailer section too large"));
                    }
                    buf.advance(nl + 1);
                    *self = if empty {
                        Decoder::Done
                    } else {
                        Decoder::Trailers(seen + nl + 1)
                    };
                }
            }
        }
    }

    /// The body ended cleanly.
    pub(crate) fn is_done(&self) -> bool {
        *self == Decoder::Done
    }
}

/// Up to `left` bytes from the front of `buf`, and how many are left after them.
fn take(buf: &mut BytesMut, left: u64) -> (Bytes, u64) {
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
    (buf.split_to(n).freeze(), left - n as u64)
}

/// `1*HEXDIG [ BWS ";" ext ] CR` (the `\n` already cut off). Bare LF is refused: lenient
/// line ends in chunked framing are a smuggling vector.
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
    digits.iter().try_fold(0u64, |n, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(n << 4 | u64::from(v))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Decodes all of `input` fed in pieces of `step` bytes: the body, or the first error.
    fn run(mut d: Decoder, input: &[u8], step: usize) -> Result<(Vec<u8>, Decoder), FramingError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(b) = d.decode(&mut buf)? {
                out.extend_from_slice(&b);
            }
        }
        Ok((out, d))
    }

    #[test]
    fn chunked_in_any_pieces() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..wire.len() {
            let (body, d) = run(Decoder::ChunkSize, wire, step).unwrap();
            assert_eq!(body, b"hello world");
            assert!(d.is_done(), "step {step}");
        }
    }

    #[test]
    fn length_stops_at_its_end() {
        let mut buf = BytesMut::from(&b"abcdefNEXT"[..]);
        let mut d = Decoder::Length(6);
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b"abcdef"[..]));
        assert!(d.is_done());
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], b"NEXT");
    }

    #[test]
    fn close_takes_everything() {
        let (body, d) = run(Decoder::Close, b"anything at all", 4).unwrap();
        assert_eq!(body, b"anything at all");
        assert!(!d.is_done());
    }

    #[test]
    fn malformed_chunked_is_an_error() {
        let bad: &[&[u8]] = &[
            b"zz\r\n",
            b"-5\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5 x\r\nhello\r\n",
            b"\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"ffffffffffffffff\r\n",
            b"0\r\nX-T: 1\n\r\n",
        ];
        for b in bad {
            assert!(
                run(Decoder::ChunkSize, b, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
            assert!(
                run(Decoder::ChunkSize, b, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        let long = vec![b'1'; MAX_CHUNK_LINE + 1];
        assert!(run(Decoder::ChunkSize, &long, 512).is_err());
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            trailers.extend_from_slice(b"X-Trailer: 0123456789\r\n");
        }
        assert!(run(Decoder::ChunkSize, &trailers, 1000).is_err());
    }

    #[test]
    fn chunk_lines() {
        assert_eq!(parse_chunk_line(b"1a\r"), Some(26));
        assert_eq!(parse_chunk_line(b"1A\r"), Some(26));
        assert_eq!(parse_chunk_line(b"0;name=v\r"), Some(0));
        assert_eq!(parse_chunk_line(b"5 ;x\r"), Some(5));
        assert_eq!(
            parse_chunk_line(b"fffffffffffffff\r"),
            Some(0xfff_ffff_ffff_ffff)
        );
        assert_eq!(parse_chunk_line(b"5"), None);
        assert_eq!(parse_chunk_line(b"\r"), None);
        assert_eq!(parse_chunk_line(b"+5\r"), None);
    }
}
