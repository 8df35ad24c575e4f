//! HTTP/1 response heads and body framing.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header;
#[cfg(test)]
use http::header::HeaderValue;
use http::{Method, StatusCode, Version};

/// How the response body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body bytes at all (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (HTTP/1.0 client, length unknown).
    Close,
}

/// What the head encoder needs to know about the request.
pub(crate) struct ReqInfo {
    pub method_head: bool,
    pub version: Version,
    /// HTTP/0.9: no status line, no header fields, the body until close.
    pub http09: bool,
    /// A `CONNECT`: a 2xx answer starts a tunnel, so it has no framing (RFC 9110 §9.3.6).
    pub connect: bool,
}

impl ReqInfo {
    pub(crate) fn new(method: &Method, version: Version, http09: bool) -> Self {
        ReqInfo {
            method_head: method == Method::HEAD,
            version,
            http09,
            connect: method == Method::CONNECT,
        }
    }

    /// This response to the request switches the connection to a tunnel.
    pub(crate) fn tunnels(&self, status: StatusCode) -> bool {
        self.connect && status.is_success()
    }
}

/// Writes the status line and header fields into `out`; decides the body framing and whether
/// the connection stays open (`keep_alive` in: what the request allows; out: the decision).
pub(crate) fn head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &http::HeaderMap,
    body_len: Option<u64>,
    req: &ReqInfo,
    keep_alive: &mut bool,
) -> Framing {
    if req.http09 {
        *keep_alive = false;
        return if req.method_head {
            Framing::None
        } else {
            Framing::Close
        };
    }
    out.extend_from_slice(if req.version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    let tunnel = req.tunnels(status);
    let reason = if tunnel && status == StatusCode::OK {
        "Connection Established" // what Squid and curl's proxies say
    } else {
        status.canonical_reason().unwrap_or("")
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");

    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || tunnel;
    // The handler's own Content-Length matters only when the body's length is unknown, or
    // for HEAD: looked up only then (not on every response).
    let declared = || {
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let framing = if no_body || req.method_head {
        Framing::None
    } else if let Some(n) = body_len.or_else(declared) {
        Framing::Length(n)
    } else if req.version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        *keep_alive = false;
        Framing::Close
    };

    let mut has_date = false;
    let mut has_connection = false;
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        if name == header::CONTENT_LENGTH {
            // Ours when we frame by length; the handler's for HEAD and 304 (what a GET
            // would have carried); never on 1xx and 204.
            let keep = match framing {
                Framing::Length(_) => false,
                Framing::None => {
                    !status.is_informational() && status != StatusCode::NO_CONTENT && !tunnel
                }
                Framing::Chunked | Framing::Close => false,
            };
            if !keep {
                continue;
            }
        } else if name == header::DATE {
            has_date = true;
        } else if name == header::CONNECTION {
            has_connection = true;
            if value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
            {
                *keep_alive = false;
            }
        }
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let head_len = if req.method_head && !no_body && declared().is_none() {
        body_len.filter(|&n| n > 0)
    } else {
        None
    };
    match framing {
        Framing::None if head_len.is_some() => {
            // HEAD: the length a GET would have had.
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(head_len.unwrap_or(0)).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        DATE.with(|d| out.extend_from_slice(&d.borrow_mut().now()));
        out.extend_from_slice(b"\r\n");
    }
    if !has_connection && status != StatusCode::SWITCHING_PROTOCOLS && !tunnel {
        if !*keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if req.version == Version::HTTP_10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    framing
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The line that starts a chunk of `n` bytes.
pub(crate) fn chunk_size_line(n: usize, out: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = HEX[v & 15];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[..len].copy_from_slice(&digits[i..]);
    out[len..len + 2].copy_from_slice(b"\r\n");
    &out[..len + 2]
}

/// The `Date` value, formatted once per second per thread.
struct DateCache {
    secs: u64,
    text: [u8; 29],
}

impl DateCache {
    fn now(&mut self) -> [u8; 29] {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            let s = httpdate::fmt_http_date(now);
            if s.len() == 29 {
                self.text.copy_from_slice(s.as_bytes());
                self.secs = secs;
            }
        }
        self.text
    }
}

thread_local! {
    static DATE: RefCell<DateCache> = const {
        RefCell::new(DateCache { secs: 0, text: *b"Thu, 01 Jan 1970 00:00:00 GMT" })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(
        status: u16,
        h: &[(&'static str, &'static str)],
        len: Option<u64>,
        ka: bool,
    ) -> (String, Framing, bool) {
        let mut map = http::HeaderMap::new();
        for (n, v) in h {
            map.append(*n, HeaderValue::from_static(v));
        }
        let mut out = Vec::new();
        let mut keep = ka;
        let req = ReqInfo {
            method_head: false,
            version: Version::HTTP_11,
            http09: false,
            connect: false,
        };
        let st = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let f = head(&mut out, st, &map, len, &req, &mut keep);
        (String::from_utf8_lossy(&out).into_owned(), f, keep)
    }

    #[test]
    fn framing_and_connection() {
        let (t, f, k) = enc(200, &[("server", "r")], Some(5), true);
        assert!(
            t.starts_with("HTTP/1.1 200 OK\r\nserver: r\r\ncontent-length: 5\r\ndate: "),
            "{t}"
        );
        assert_eq!(f, Framing::Length(5));
        assert!(k);
        let (t, f, _) = enc(200, &[("transfer-encoding", "gzip")], None, true);
        assert_eq!(f, Framing::Chunked);
        assert!(t.contains("transfer-encoding: chunked\r\n") && !t.contains("gzip"));
        let (t, _, k) = enc(200, &[("connection", "close")], Some(0), true);
        assert!(!k && t.matches("connection").count() == 1);
        let (t, f, _) = enc(204, &[("content-length", "0")], None, true);
        assert_eq!(f, Framing::None);
        assert!(!t.contains("content-length"));
        let (t, _, _) = enc(304, &[("content-length", "10")], None, false);
        assert!(t.contains("content-length: 10") && t.contains("connection: close"));
    }

    #[test]
    fn connect_success_has_no_framing() {
        let req = ReqInfo::new(&Method::CONNECT, Version::HTTP_11, false);
        let mut out = Vec::new();
        let mut keep = true;
        let f = head(
            &mut out,
            StatusCode::OK,
            &http::HeaderMap::new(),
            Some(0),
            &req,
            &mut keep,
        );
        let t = String::from_utf8_lossy(&out);
        assert_eq!(f, Framing::None);
        assert!(
            t.starts_with("HTTP/1.1 200 Connection Established\r\n"),
            "{t}"
        );
        assert!(
            !t.contains("content-length") && !t.contains("connection"),
            "{t}"
        );
        // A refusal is an ordinary response with a body.
        let mut out = Vec::new();
        let f = head(
            &mut out,
            StatusCode::FORBIDDEN,
            &http::HeaderMap::new(),
            Some(9),
            &req,
            &mut keep,
        );
        assert_eq!(f, Framing::Length(9));
    }

    #[test]
    fn chunk_lines() {
        let mut b = [0u8; 18];
        assert_eq!(chunk_size_line(0, &mut b), b"0\r\n");
        assert_eq!(chunk_size_line(255, &mut b), b"ff\r\n");
        assert_eq!(chunk_size_line(65536, &mut b), b"10000\r\n");
    }
}
