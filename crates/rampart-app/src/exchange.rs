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
        Exchange {
            conn: *conn,
            method,
            uri,
            version,
            host: String::new(),
            path: String::new(),
            request_id: crate::reqid::from_request(headers),
            started: Instant::now(),
            referer: headers.get(http::header::REFERER).cloned(),
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
        }
    }
}
