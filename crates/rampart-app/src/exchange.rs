//! The per-request context every phase reads: the parsed head, who asked, which route answered,
//! and when it started. (Pingora's `CTX`, nginx's `ngx_http_request_t` without the bit flags.)

use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use rampart_server::ConnInfo;

/// One request in flight.
#[derive(Debug)]
pub struct Exchange {
    /// The connection it came on.
    pub conn: ConnInfo,
    /// Method.
    pub method: Method,
    /// Request target as received.
    pub uri: Uri,
    /// Protocol version.
    pub version: Version,
    /// Host name, lower case, without port.
    pub host: String,
    /// Decoded, normalized path used for routing.
    pub path: String,
    /// `X-Request-Id`: the client's (when sane) or generated.
    pub request_id: HeaderValue,
    /// When the request head was handed to us.
    pub started: Instant,
    /// Copies of the request headers the access log needs.
    pub referer: Option<HeaderValue>,
    /// User agent, for the access log.
    pub user_agent: Option<HeaderValue>,
    /// Bytes the client sent through a CONNECT tunnel (logged as `bytes_received`).
    pub tunnel_received: Option<u64>,
}

impl Exchange {
    /// Starts an exchange from a request head.
    pub fn new(
        conn: &ConnInfo,
        method: Method,
        uri: Uri,
        version: Version,
        headers: &HeaderMap,
    ) -> Self {
        let (referer, user_agent, client_id) = logged_headers(headers);
        Exchange {
            conn: *conn,
            method,
            uri,
            version,
            host: String::new(),
            path: String::new(),
            request_id: crate::reqid::from_client(client_id),
            started: Instant::now(),
            referer: referer.cloned(),
            user_agent: user_agent.cloned(),
            tunnel_received: None,
        }
    }
}

/// The first `Referer`, `User-Agent` and `X-Request-Id` values. Most requests carry a handful
/// of headers: one pass comparing names is cheaper than three hashed lookups (the iteration
/// yields each name's values in order, so the first match is what `get` returns).
fn logged_headers(
    h: &HeaderMap,
) -> (
    Option<&HeaderValue>,
    Option<&HeaderValue>,
    Option<&HeaderValue>,
) {
    use http::header::{REFERER, USER_AGENT};
    if h.len() > 8 {
        return (
            h.get(REFERER),
            h.get(USER_AGENT),
            h.get(&crate::reqid::HEADER_NAME),
        );
    }
    let (mut referer, mut user_agent, mut id) = (None, None, None);
    for (k, v) in h {
        if k == USER_AGENT {
            user_agent.get_or_insert(v);
        } else if k == REFERER {
            referer.get_or_insert(v);
        } else if k == crate::reqid::HEADER_NAME {
            id.get_or_insert(v);
        }
    }
    (referer, user_agent, id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn logged_headers_are_the_first_values() {
        let mut h = http::HeaderMap::new();
        h.append("user-agent", http::HeaderValue::from_static("a"));
        h.append("x-request-id", http::HeaderValue::from_static("r1"));
        h.append("user-agent", http::HeaderValue::from_static("b"));
        h.append("x-request-id", http::HeaderValue::from_static("r2"));
        let (r, ua, id) = super::logged_headers(&h);
        assert_eq!(
            (r, ua, id),
            (None, h.get("user-agent"), h.get("x-request-id"))
        );
        assert_eq!(ua.map(|v| v.as_bytes()), Some(&b"a"[..]));
        for i in 0..10 {
            let name =
                http::HeaderName::try_from(format!("x-{i}")).unwrap_or_else(|e| panic!("{e}"));
            h.append(name, http::HeaderValue::from_static("v"));
        }
        let (_, ua, id) = super::logged_headers(&h);
        assert_eq!(ua.map(|v| v.as_bytes()), Some(&b"a"[..]));
        assert_eq!(id.map(|v| v.as_bytes()), Some(&b"r1"[..]));
    }
}
