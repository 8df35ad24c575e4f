//! The built-in welcome page of the embedded default config.

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use rampart_server::Body;

const PAGE: &str = include_str!("welcome.html");

/// Answers with the welcome page.
pub fn respond() -> Response<Body> {
    let mut r = Response::new(Body::full(Bytes::from_static(PAGE.as_bytes())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}
