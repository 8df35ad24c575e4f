//! Request heads: the request line parsed by hand, header fields by `httparse`.
//!
//! The request line is ours because servers in front of a WAF must take what nginx takes and
//! show it as it was sent: any `HTTP/x.y` (a version we do not serve still reaches the WAF,
//! then gets 505), a line without a version (HTTP/0.9), bytes in the target that `http::Uri`
//! refuses but nginx passes on (`"`, `<`, `>`, `` ` ``, non-ASCII: percent-encoded for the
//! parsed URI, kept raw in [`RawHead`]). Header fields go through `httparse`, which is strict
//! where it matters (no obs-fold, no control bytes, no space before the colon).

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

/// The request head exactly as the client sent it (HTTP/1 only), for the WAF and for logs
/// that must see raw bytes: original header-name case, the target before any normalising.
#[derive(Clone, Debug)]
pub struct RawHead {
    /// The whole head, request line to the blank line.
    pub bytes: Bytes,
    /// The request target as sent.
    pub target: Bytes,
    /// The protocol as sent (`HTTP/1.1`, `HTTP/4.0`; empty for an HTTP/0.9 line).
    pub protocol: Bytes,
    /// The version is not one this server speaks (major ≠ 1, or HTTP/0.9): the request is
    /// parsed so that access checks see it, then answered 505.
    pub unsupported_version: bool,
}

impl RawHead {
    /// Header fields in order with their names as sent.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let b = &self.bytes[..];
        let start = memchr::memchr(b'\n', b).map_or(b.len(), |i| i + 1);
        b[start..].split(|&c| c == b'\n').filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = memchr::memchr(b':', line)?;
            let value = &line[colon + 1..];
            let value = value.trim_ascii();
            Some((&line[..colon], value))
        })
    }
}

/// How a request body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
pub(crate) struct Head {
    pub req: Request<()>,
    /// The head as sent, handed to the service beside the request (not in its extensions:
    /// inserting there allocated a map and a box per request).
    pub raw: RawHead,
    pub framing: Framing,
    /// The connection may carry another request after this one (as far as the client said).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` header, or a bodiless `CONNECT`: the socket may
    /// be handed over after the response (101, or 2xx to CONNECT).
    pub upgrade: bool,
    /// The request line's version (what the response's status line echoes: 1.0 or 1.1).
    pub version: Version,
    /// An HTTP/0.9 line (no version): the answer is the body alone, no status line.
    pub http09: bool,
}

/// Why a head was refused; each becomes a canned response and a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Malformed: 400.
    Bad(&'static str),
    /// Request line longer than the head buffer: 414.
    LineTooLong,
    /// Head larger than `max_header_size`, or too many fields: 431.
    TooLarge,
    /// A transfer coding other than chunked: 501 (as nginx).
    UnknownCoding,
}

/// A head is complete in `buf` (ends with an empty line) or more bytes are needed.
pub(crate) enum Parse {
    Complete(Box<Head>),
    Partial,
}

const FAST_HEADERS: usize = 32;

/// Parses the head at the start of `buf`. On success the head's bytes are split off `buf`
/// (the parsed request shares them: header values are not copied).
pub(crate) fn parse(
    buf: &mut BytesMut,
    max_size: usize,
    max_headers: usize,
) -> Result<Parse, HeadError> {
    // RFC 9112 §2.2: ignore empty lines before a request line.
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if skip > 0 {
        if skip > 64 {
            return Err(HeadError::Bad("blank lines before the request line"));
        }
        let _ = buf.split_to(skip);
    }
    let window = &buf[..buf.len().min(max_size)];
    let Some(line_end) = memchr::memchr(b'\n', window) else {
        return if buf.len() >= max_size {
            Err(HeadError::LineTooLong)
        } else {
            Ok(Parse::Partial)
        };
    };
    let Some(head_len) = head_end(window, line_end) else {
        return if buf.len() >= max_size {
            Err(HeadError::TooLarge)
        } else {
            Ok(Parse::Partial)
        };
    };
    let head = buf.split_to(head_len).freeze();
    build(head, line_end, max_headers).map(|h| Parse::Complete(Box::new(h)))
}

/// The length of the head (through its empty line) when `buf` holds all of it.
fn head_end(buf: &[u8], line_end: usize) -> Option<usize> {
    let mut nl = line_end;
    loop {
        let next = &buf[nl + 1..];
        if next.first() == Some(&b'\n') {
            return Some(nl + 2);
        }
        if next.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        if next.len() < 2 && next.first().is_none_or(|&b| b == b'\r') {
            return None; // the empty line may still come
        }
        nl = nl + 1 + memchr::memchr(b'\n', next)?;
    }
}

fn build(head: Bytes, line_end: usize, max_headers: usize) -> Result<Head, HeadError> {
    let line = &head[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rl = request_line(line)?;
    let fields_at = line_end + 1;
    let mut fast = [httparse::EMPTY_HEADER; FAST_HEADERS];
    let mut slow;
    let fields: &[httparse::Header<'_>] = match httparse::parse_headers(
        &head[fields_at..],
        &mut fast[..max_headers.min(FAST_HEADERS)],
    ) {
        Ok(httparse::Status::Complete((_, hs))) => hs,
        Err(httparse::Error::TooManyHeaders) if max_headers > FAST_HEADERS => {
            slow = vec![httparse::EMPTY_HEADER; max_headers];
            match httparse::parse_headers(&head[fields_at..], &mut slow) {
                Ok(httparse::Status::Complete((_, hs))) => hs,
                Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
                _ => return Err(HeadError::Bad("malformed header field")),
            }
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        _ => return Err(HeadError::Bad("malformed header field")),
    };

    let (version, unsupported) = match rl.version {
        Some((1, 0)) => (Version::HTTP_10, false),
        Some((1, _)) => (Version::HTTP_11, false),
        // HTTP/0.9 or a major version HTTP/1 text cannot carry: parsed as 1.0 (no keep-alive,
        // no chunking assumptions), answered 505 after the access checks.
        _ => (Version::HTTP_10, true),
    };
    let http09 = rl.version.is_none();
    let method = Method::from_bytes(rl.method).map_err(|_| HeadError::Bad("invalid method"))?;
    let uri = parse_target(&head, rl.target)?;

    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut has_te = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut conn_upgrade = false;
    let mut has_upgrade = false;
    let mut expect_continue = false;
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| HeadError::Bad("invalid header name"))?;
        let value = field_value(head.slice_ref(f.value));
        if name == header::CONTENT_LENGTH {
            let n = parse_length(f.value).ok_or(HeadError::Bad("invalid Content-Length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(HeadError::Bad("conflicting Content-Length"));
            }
            content_length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            if has_te {
                return Err(HeadError::Bad("repeated Transfer-Encoding"));
            }
            has_te = true;
            if !f.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::UnknownCoding);
            }
            chunked = true;
        } else if name == header::CONNECTION {
            for t in f.value.split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                } else if t.eq_ignore_ascii_case(b"upgrade") {
                    conn_upgrade = true;
                }
            }
        } else if name == header::UPGRADE {
            has_upgrade = true;
        } else if name == header::EXPECT {
            expect_continue = f.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        headers.append(name, value);
    }
    // Both framings at once is how requests get smuggled: refuse (RFC 9112 §6.1 allows it).
    if has_te && content_length.is_some() {
        return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"));
    }
    if has_te && version == Version::HTTP_10 && !unsupported {
        return Err(HeadError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    let framing = if chunked {
        Framing::Chunked
    } else {
        match content_length {
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        }
    };
    let keep_alive =
        !unsupported && !conn_close && (version == Version::HTTP_11 || conn_keep_alive);
    // A CONNECT may become a tunnel; one with a body could not (its bytes would be ambiguous).
    let tunnel = method == Method::CONNECT && !unsupported && framing == Framing::None;

    let target = head.slice_ref(rl.target);
    let protocol = head.slice_ref(rl.protocol);
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Ok(Head {
        req,
        raw: RawHead {
            bytes: head,
            target,
            protocol,
            unsupported_version: unsupported,
        },
        framing,
        keep_alive,
        expect_continue: expect_continue && version == Version::HTTP_11,
        upgrade: (conn_upgrade && has_upgrade && version == Version::HTTP_11) || tunnel,
        version,
        http09,
    })
}

/// A field value httparse accepted, as a `HeaderValue` without checking its bytes again.
/// httparse's value bytes (`HEADER_VALUE_MAP`: HTAB, SP–`~`, 0x80–0xFF) are exactly the ones
/// `HeaderValue` allows; its check cost ~170 instructions per field on every request. hyper
/// builds its header values from httparse's output the same way.
#[allow(unsafe_code)]
fn field_value(bytes: Bytes) -> HeaderValue {
    // SAFETY: not a memory-safety contract: `HeaderValue` requires that the bytes be valid
    // field-value bytes, which httparse checked with the same rule (see above); debug builds
    // check again inside `from_maybe_shared_unchecked`.
    unsafe { HeaderValue::from_maybe_shared_unchecked(bytes) }
}

struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    protocol: &'a [u8],
    /// `(major, minor)`; `None` for HTTP/0.9 (no version).
    version: Option<(u8, u8)>,
}

/// `method SP target SP HTTP/d.d`, or `method SP target` (HTTP/0.9). One space each, as
/// RFC 9112 says; a trailing space before the line end is tolerated.
fn request_line(line: &[u8]) -> Result<RequestLine<'_>, HeadError> {
    let bad = HeadError::Bad("malformed request line");
    let sp = memchr::memchr(b' ', line).ok_or(bad)?;
    let method = &line[..sp];
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad);
    }
    let rest = &line[sp + 1..];
    let (target, protocol) = match memchr::memchr(b' ', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(bad);
    }
    let version = if protocol.is_empty() {
        None
    } else {
        match protocol {
            // `HTTP/0.x` names a version that never had a version string: 400, as nginx.
            [b'H', b'T', b'T', b'P', b'/', maj, b'.', min]
                if (b'1'..=b'9').contains(maj) && min.is_ascii_digit() =>
            {
                Some((maj - b'0', min - b'0'))
            }
            _ => return Err(bad),
        }
    };
    Ok(RequestLine {
        method,
        target,
        protocol,
        version,
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Digits only (no sign, no list): anything else in `Content-Length` is a smuggling vector.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The parsed URI of a target. A fragment (`#`) never belongs in a request: 400. Bytes that
/// nginx passes on but `http::Uri` refuses are percent-encoded; every server decodes them
/// back to the same value.
fn parse_target(head: &Bytes, target: &[u8]) -> Result<Uri, HeadError> {
    if memchr::memchr(b'#', target).is_some() {
        return Err(HeadError::Bad("fragment in the request target"));
    }
    if let Ok(u) = Uri::from_maybe_shared(head.slice_ref(target)) {
        return Ok(u);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut v = Vec::with_capacity(target.len() + 16);
    for &b in target {
        if matches!(
            b,
            b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'\\' | b'^'
        ) || b >= 0x80
        {
            v.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            v.push(b);
        }
    }
    Uri::from_maybe_shared(Bytes::from(v)).map_err(|_| HeadError::Bad("invalid request target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> Result<Parse, HeadError> {
        let mut b = BytesMut::from(s);
        parse(&mut b, 8192, 100)
    }

    fn head(s: &[u8]) -> Head {
        match p(s) {
            Ok(Parse::Complete(h)) => *h,
            Ok(Parse::Partial) => panic!("partial"),
            Err(e) => panic!("{e:?}"),
        }
    }

    /// `field_value` skips `HeaderValue`'s check because httparse applies the same rule:
    /// every byte inside a value is accepted by both or refused by both.
    #[test]
    fn httparse_and_header_value_agree_on_value_bytes() {
        for b in 0..=255u8 {
            let mut text = b"X: a".to_vec();
            text.push(b);
            text.extend_from_slice(b"b\r\n\r\n");
            let mut fields = [httparse::EMPTY_HEADER; 4];
            let ours = matches!(
                httparse::parse_headers(&text, &mut fields),
                Ok(httparse::Status::Complete((_, [f]))) if f.value == [b'a', b, b'b']
            );
            let theirs = HeaderValue::from_bytes(&[b'a', b, b'b']).is_ok();
            assert_eq!(ours, theirs, "byte {b:#04x}");
        }
    }

    #[test]
    fn parses_and_keeps_raw() {
        let h = head(b"GET /a?q=<x>\"`y HTTP/1.1\r\nHost: a\r\nX-Case: V\r\n\r\nrest");
        assert_eq!(h.req.uri().path(), "/a");
        assert_eq!(h.req.uri().query(), Some("q=%3Cx%3E%22%60y"));
        assert_eq!(&h.raw.target[..], &b"/a?q=<x>\"`y"[..]);
        let names: Vec<&[u8]> = h.raw.fields().map(|f| f.0).collect();
        assert_eq!(names, vec![&b"Host"[..], b"X-Case"]);
        assert!(h.keep_alive);
        assert_eq!(h.framing, Framing::None);
    }

    #[test]
    fn connect_may_tunnel_without_a_body() {
        let h = head(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert!(h.upgrade);
        assert_eq!(
            h.req.uri().authority().map(|a| a.as_str()),
            Some("example.com:443")
        );
        assert_eq!(h.req.uri().port_u16(), Some(443));
        let h = head(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
        assert!(!h.upgrade);
    }

    #[test]
    fn partial_until_the_empty_line() {
        assert!(matches!(
            p(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Ok(Parse::Partial)
        ));
        assert!(matches!(
            p(b"GET / HTTP/1.1\r\nHost: a\r\n\r"),
            Ok(Parse::Partial)
        ));
        assert!(matches!(p(b"GET / HT"), Ok(Parse::Partial)));
        assert!(matches!(p(b"GET / HTTP/1.1\n\n"), Ok(Parse::Complete(_))));
        assert!(matches!(
            p(b"\r\nGET / HTTP/1.1\r\n\r\n"),
            Ok(Parse::Complete(_))
        ));
    }

    #[test]
    fn versions() {
        let h = head(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.version, Version::HTTP_10);
        assert!(!h.keep_alive);
        let h = head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.keep_alive);
        for line in [
            &b"GET / HTTP/4.0\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET / \r\n\r\n",
        ] {
            let h = head(line);
            assert!(h.raw.unsupported_version);
            assert!(!h.keep_alive);
        }
        assert!(p(b"GET / HTTP/1.1x\r\n\r\n").is_err());
        assert!(p(b"GET / HTTP/0.9\r\n\r\n").is_err());
        assert!(p(b"GET  / HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn framing_rules() {
        let h = head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
        let h = head(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            b"GET /#f HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(p(bad), Err(HeadError::Bad(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            p(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").err(),
            Some(HeadError::UnknownCoding)
        );
    }

    #[test]
    fn limits() {
        let mut b = BytesMut::from(&b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..]);
        assert_eq!(parse(&mut b, 16, 100).err(), Some(HeadError::LineTooLong));
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaa"[..]);
        assert_eq!(parse(&mut b, 24, 100).err(), Some(HeadError::TooLarge));
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"[..]);
        assert_eq!(parse(&mut b, 8192, 2).err(), Some(HeadError::TooLarge));
        let many: String = (0..40).map(|i| format!("X-{i}: v\r\n")).collect();
        let mut b = BytesMut::from(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes());
        assert!(matches!(parse(&mut b, 8192, 100), Ok(Parse::Complete(_))));
    }
}
