//! Response heads from HTTP/1 servers: the status line and header fields by `httparse` (the
//! parser hyper uses), framing decided here (RFC 9112 §6.3), strictly: a server whose framing
//! is ambiguous gets a 502, never a guess that could desynchronise a pooled connection.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Version};

/// Header fields a response may have (hyper's client default).
pub(crate) const MAX_HEADERS: usize = 100;

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 204, 304, `Content-Length: 0`).
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection (no length given).
    Close,
}

/// A final response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub resp: Response<()>,
    pub framing: Framing,
    /// The server allows another request on this connection (HTTP/1.1 without `close`).
    pub keep_alive: bool,
}

/// Why a response head was refused (each is a 502).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    /// Larger than the connection's buffer (hyper's wording, kept for logs and alerts).
    #[error("message head is too large")]
    TooLarge,
    /// Malformed or ambiguous.
    #[error("invalid response head: {0}")]
    Bad(&'static str),
}

/// What the start of the buffer holds.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An interim (1xx) response, already removed from the buffer: read on.
    Interim,
    /// A final response head, removed from the buffer (its values share those bytes).
    Final(Head),
}

/// Parses the response head at the start of `buf`, at most `max` bytes long. `head_request`:
/// the request was `HEAD` (no body whatever the fields say).
pub(crate) fn parse(
    buf: &mut BytesMut,
    max: usize,
    head_request: bool,
) -> Result<Parsed, HeadError> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    // Name and value of each field as offsets into the head: the head is split off the
    // buffer only after parsing (the fields borrow it meanwhile).
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let window = &buf[..buf.len().min(max)];
    let mut r = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut r,
        window,
        &mut fields,
    );
    let len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Bad("malformed status line or header field")),
    };
    let code = r.code.unwrap_or(0);
    let version = match r.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let base = window.as_ptr() as usize;
    let n = r.headers.len();
    for (h, s) in r.headers.iter().zip(spans.iter_mut()) {
        let off = |p: *const u8| (p as usize - base) as u32;
        *s = (
            off(h.name.as_ptr()),
            h.name.len() as u32,
            off(h.value.as_ptr()),
            h.value.len() as u32,
        );
    }
    let head = buf.split_to(len).freeze();
    if (100..200).contains(&code) {
        if code == 101 {
            // Upgrades go through the upgrade-capable connection; here one is a protocol error.
            return Err(HeadError::Bad(
                "101 Switching Protocols without an upgrade request",
            ));
        }
        return Ok(Parsed::Interim);
    }
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Bad("invalid status code"))?;

    // Room for the fields a proxy adds on the way out (`Server`, the request id, `Via`…):
    // growing the map rehashes it.
    let mut headers = HeaderMap::with_capacity(n + 4);
    let mut length: Option<u64> = None;
    let mut te: Option<bool> = None;
    let mut close = false;
    for &(ns, nl, vs, vl) in &spans[..n] {
        let (ns, nl, vs, vl) = (ns as usize, nl as usize, vs as usize, vl as usize);
        let name_bytes = head.get(ns..ns + nl).ok_or(HeadError::Bad("field span"))?;
        let name =
            HeaderName::from_bytes(name_bytes).map_err(|_| HeadError::Bad("invalid field name"))?;
        let raw = head.get(vs..vs + vl).ok_or(HeadError::Bad("field span"))?;
        if name == header::CONTENT_LENGTH {
            // A list of equal values is one length (RFC 9110 §8.6); anything else is refused.
            for v in raw.split(|&b| b == b',') {
                let v = parse_length(v).ok_or(HeadError::Bad("invalid Content-Length"))?;
                if length.is_some_and(|l| l != v) {
                    return Err(HeadError::Bad("conflicting Content-Length"));
                }
                length = Some(v);
            }
        } else if name == header::TRANSFER_ENCODING {
            // Only `chunked`, once (as nginx): other codings would reach the client undecoded.
            if te.is_some() || !raw.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::Bad("unsupported Transfer-Encoding"));
            }
            te = Some(true);
        } else if name == header::CONNECTION {
            let (mut named, mut closes) = (false, false);
            for t in raw.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if t.eq_ignore_ascii_case(b"close") {
                    closes = true;
                } else if !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive") {
                    named = true;
                }
            }
            close |= closes;
            if !named {
                // Only connection options (`keep-alive`, `close`; nginx sends one on every
                // response), noted above and hop-by-hop: not kept for the proxy to remove.
                // A value naming fields stays, so that they are removed too.
                continue;
            }
        }
        headers.append(name, field_value(head.slice(vs..vs + vl)));
    }
    if te.is_some() && length.is_some() {
        // Smuggling shape: refused rather than resolved (RFC 9112 §6.3 would let TE win).
        return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"));
    }
    if te.is_some() && version == Version::HTTP_10 {
        return Err(HeadError::Bad("Transfer-Encoding in an HTTP/1.0 response"));
    }
    let bodiless =
        head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::None
    } else if te.is_some() {
        Framing::Chunked
    } else {
        match length {
            Some(0) => Framing::None,
            Some(l) => Framing::Length(l),
            None => Framing::Close,
        }
    };
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.version_mut() = version;
    *resp.headers_mut() = headers;
    Ok(Parsed::Final(Head {
        resp,
        framing,
        keep_alive: version == Version::HTTP_11 && !close && framing != Framing::Close,
    }))
}

/// Digits only, at most 19 (no sign, no spaces inside): anything looser is a smuggling vector.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// A field value httparse accepted, as a `HeaderValue` without checking its bytes again
/// (as our server does with request heads, and hyper with both): httparse's value bytes (HTAB,
/// SP–`~`, 0x80–0xFF) are exactly the ones `HeaderValue` allows.
#[allow(unsafe_code)]
fn field_value(bytes: Bytes) -> HeaderValue {
    // SAFETY: not a memory-safety contract: `HeaderValue` requires valid field-value bytes,
    // which httparse checked with the same rule; debug builds check again.
    unsafe { HeaderValue::from_maybe_shared_unchecked(bytes) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &[u8], head_req: bool) -> Result<(Parsed, BytesMut), HeadError> {
        let mut b = BytesMut::from(s);
        parse(&mut b, 8192, head_req).map(|r| (r, b))
    }

    fn fin(s: &[u8]) -> (Head, BytesMut) {
        match p(s, false) {
            Ok((Parsed::Final(h), rest)) => (h, rest),
            other => panic!("{other:?}"),
        }
    }

    fn err(s: &[u8]) -> HeadError {
        match p(s, false) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn length_and_rest() {
        let (h, rest) = fin(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
        assert_eq!(h.resp.status(), 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.resp.headers()["x-a"], "b");
        assert_eq!(&rest[..], b"hello");
    }

    #[test]
    fn framings() {
        let (h, _) = fin(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let (h, _) = fin(b"HTTP/1.0 200 OK\r\n\r\nbody");
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);
        let (h, _) = fin(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);
        let (h, _) = fin(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(h.framing, Framing::None);
        let (h, _) = fin(b"HTTP/1.1 304 Not Modified\r\n\r\n");
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive);
        let (h, _) = fin(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.framing, Framing::None);
        let (h, _) =
            fin(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\nConnection: x, Close\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(7));
        assert!(!h.keep_alive);
        // A value naming a field is kept (the proxy removes what it names); options alone
        // are not.
        assert_eq!(h.resp.headers()["connection"], "x, Close");
        let (h, _) = fin(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
        assert!(h.keep_alive);
        assert!(h.resp.headers().get("connection").is_none());
        let (h, _) =
            fin(b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        assert!(h.resp.headers().get("connection").is_none());
        match p(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true) {
            Ok((Parsed::Final(h), _)) => assert_eq!(h.framing, Framing::None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interim_and_partial() {
        let mut b = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"[..]);
        assert!(matches!(parse(&mut b, 8192, false), Ok(Parsed::Interim)));
        assert!(matches!(parse(&mut b, 8192, false), Ok(Parsed::Partial)));
        b.extend_from_slice(b"Content-Length: 1\r\n\r\nx");
        assert!(matches!(parse(&mut b, 8192, false), Ok(Parsed::Final(_))));
        assert_eq!(&b[..], b"x");
        assert!(matches!(
            p(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false),
            Err(HeadError::Bad(_))
        ));
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadError::Bad(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            HeadError::Bad(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n"),
            HeadError::Bad(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            HeadError::Bad(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 1,2\r\n\r\n"),
            HeadError::Bad(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            HeadError::Bad(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            HeadError::Bad(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadError::Bad(_)
        ));
        assert!(matches!(err(b"HTTP/2 200 OK\r\n\r\n"), HeadError::Bad(_)));
        assert!(matches!(
            err(b"HTTP/1.1 2000 OK\r\n\r\n"),
            HeadError::Bad(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"),
            HeadError::Bad(_)
        ));
        assert!(matches!(err(b"garbage\r\n\r\n"), HeadError::Bad(_)));
    }

    #[test]
    fn oversized_head() {
        let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 9000));
        let mut b = BytesMut::from(&big[..]);
        assert_eq!(parse(&mut b, 8192, false).unwrap_err(), HeadError::TooLarge);
        // Shorter than the bound but incomplete: wait for more.
        let mut b = BytesMut::from(&big[..100]);
        assert!(matches!(parse(&mut b, 8192, false), Ok(Parsed::Partial)));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let mut b = BytesMut::from(&many[..]);
        assert_eq!(parse(&mut b, 8192, false).unwrap_err(), HeadError::TooLarge);
    }
}
