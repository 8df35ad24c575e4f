//! Request heads for HTTP/1 servers, written straight into one buffer. Body framing follows
//! what hyper's client did for the same bodies, so servers see no change: no body → no
//! framing added; a known length → `Content-Length`; an unknown one → chunked (none at all
//! for GET, HEAD and CONNECT, which hyper also sent without a body).

use std::io::Write;

use http::header;
use http::{Method, Version};
use http_body::Body;

use crate::request::{Fields, UpRequest};

/// How the request body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing is sent after the head.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked framing.
    Chunked,
}

/// Encodes the head of `req` into `out` (cleared first) and says how its body follows.
pub(crate) fn head(req: &UpRequest, out: &mut Vec<u8>) -> Plan {
    out.clear();
    let body = &req.body;
    let headers = &req.head.fields;
    let http10 = req.head.version == Version::HTTP_10;
    let given = declared_length(headers);
    // `Transfer-Encoding` from the caller is not forwarded as is (the proxy strips it as
    // hop-by-hop anyway): the framing below is the only one on the wire.
    let (plan, add) = if body.is_end_stream() {
        (Plan::None, None)
    } else {
        let known = body.size_hint().exact();
        match (given, known) {
            (Some(n), _) => (Plan::Length(n), None),
            (None, Some(n)) => (Plan::Length(n), Some(Added::Length(n))),
            // HTTP/1.0 has no chunking; hyper sent such a body as nothing, as do we.
            (None, None) if http10 => (Plan::None, None),
            (None, None)
                if matches!(
                    req.head.method,
                    Method::GET | Method::HEAD | Method::CONNECT
                ) =>
            {
                (Plan::None, None)
            }
            (None, None) => (Plan::Chunked, Some(Added::Chunked)),
        }
    };

    out.extend_from_slice(req.head.method.as_str().as_bytes());
    out.push(b' ');
    let uri = &req.head.uri;
    if uri.scheme().is_none() && uri.authority().is_none() {
        out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    } else {
        let _ = write!(out, "{uri}");
    }
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for (name, value) in headers.iter() {
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match add {
        Some(Added::Length(n)) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Some(Added::Chunked) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        None => {}
    }
    out.extend_from_slice(b"\r\n");
    plan
}

enum Added {
    Length(u64),
    Chunked,
}

/// The caller's own `Content-Length`, when it is one valid number (hyper honoured it too).
fn declared_length(h: &Fields) -> Option<u64> {
    let mut all = h.get_all(&header::CONTENT_LENGTH);
    let first = all.next()?.to_str().ok()?.trim().parse().ok()?;
    all.all(|v| v.to_str().ok().and_then(|s| s.trim().parse().ok()) == Some(first))
        .then_some(first)
}

/// Whether the request asks the server to close the connection after it.
pub(crate) fn wants_close(h: &Fields) -> bool {
    h.get_all(&header::CONNECTION).any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// `SIZE CRLF` for a chunk of `n` bytes.
pub(crate) fn chunk_line(n: usize, out: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = 16;
    let mut v = n;
    loop {
        i -= 1;
        out[i] = HEX[v & 15];
        v >>= 4;
        if v == 0 || i == 0 {
            break;
        }
    }
    out[16] = b'\r';
    out[17] = b'\n';
    &out[i..]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::body::ReqBody;
    use bytes::Bytes;
    use http::Request;

    fn enc(req: Request<ReqBody>) -> (String, Plan) {
        let mut out = Vec::new();
        let p = head(&UpRequest::from_http(req), &mut out);
        (String::from_utf8(out).unwrap(), p)
    }

    #[test]
    fn empty_full_and_given_length() {
        let mut r = Request::new(ReqBody::Empty);
        *r.uri_mut() = "/a?b=c".parse().unwrap();
        r.headers_mut().insert("host", "h".parse().unwrap());
        r.headers_mut().append("x-m", "1".parse().unwrap());
        r.headers_mut().append("x-m", "2".parse().unwrap());
        let (s, p) = enc(r);
        assert_eq!(
            s,
            "GET /a?b=c HTTP/1.1\r\nhost: h\r\nx-m: 1\r\nx-m: 2\r\n\r\n"
        );
        assert_eq!(p, Plan::None);

        let mut r = Request::new(ReqBody::Full(Some(Bytes::from_static(b"hello"))));
        *r.method_mut() = Method::POST;
        let (s, p) = enc(r);
        assert_eq!(s, "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(p, Plan::Length(5));

        let mut r = Request::new(ReqBody::Full(Some(Bytes::from_static(b"hello"))));
        *r.method_mut() = Method::PUT;
        r.headers_mut()
            .insert("content-length", "5".parse().unwrap());
        r.headers_mut()
            .insert("transfer-encoding", "chunked".parse().unwrap());
        let (s, p) = enc(r);
        assert_eq!(s, "PUT / HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(p, Plan::Length(5));
    }

    #[test]
    fn chunk_lines() {
        let mut b = [0u8; 18];
        assert_eq!(chunk_line(0, &mut b), b"0\r\n");
        assert_eq!(chunk_line(255, &mut b), b"ff\r\n");
        assert_eq!(chunk_line(65536, &mut b), b"10000\r\n");
        assert!(wants_close(&{
            let mut h = Fields::default();
            h.append(header::CONNECTION, "keep-alive, Close".parse().unwrap());
            h
        }));
    }
}
