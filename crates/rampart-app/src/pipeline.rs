//! Where a request goes — the whole path, top to bottom:
//!
//! 1. **admit**: protocol checks before anything else (Host, URI length, absolute-form, framing);
//!    a malformed request gets 400/414 and its connection is closed.
//! 2. **route**: virtual host by `Host`, then the route (see `router.rs` for the precedence).
//! 3. **access**: per-route checks — body size, IP allow/deny, in-flight per address, rate
//!    limit, CSRF (`access.rs`), then the WAF's request phases (`waf.rs`); each may answer.
//! 4. **content**: exactly one handler answers (reverse proxy, static files, `return`,
//!    built-in pages).
//! 5. **errors**: a 4xx/5xx may be replaced by the configured error page.
//! 6. **response filters**: header edits, caching headers, compression, `Server`, request id.
//! 7. **log**: access log and metrics, when the last body byte is sent.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Frame, SizeHint};
use rampart_server::RequestBody;
use rampart_server::{Body, ConnInfo};

use crate::exchange::Exchange;
use crate::filters;
use crate::handlers::{proxy, static_files, welcome};
use crate::reqid;
use crate::snapshot::{Handler, Route, Site, Snapshot};

/// What an access phase decided.
pub enum Flow {
    /// Go on to the next phase.
    Next,
    /// Answer now with this response.
    Reply(Response<Body>),
}

/// Handles one request with a snapshot. Never fails: every error becomes a response here.
pub async fn handle(
    snap: &Snapshot,
    conn: &ConnInfo,
    mut req: Request<RequestBody>,
    raw: Option<rampart_server::RawHead>,
) -> Response<Body> {
    // The client side of a protocol switch (WebSocket, or a CONNECT tunnel over HTTP/1), taken
    // before the head is split up.
    let connect = req.method() == Method::CONNECT;
    let fields = FieldScan::of(req.headers());
    let on_upgrade = ((req.version() == Version::HTTP_11 && fields.upgrade)
        || (connect && req.version() < Version::HTTP_2))
        .then(|| rampart_server::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut x = Exchange::new(
        conn,
        parts.method.clone(),
        parts.uri.clone(),
        parts.version,
        &parts.headers,
    );

    // 1. admit
    if let Err(status) = admit(snap, &parts, &fields, &mut x) {
        let site = snap.hosts.select(conn.local, "").cloned();
        let mut resp = default_error(status);
        if parts.version < Version::HTTP_2 {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return finish(snap, site.as_ref(), None, x, resp);
    }

    // 2. route. A CONNECT's Host names its target, not this server: it goes to the listen
    // address's default server, and only to a forward-proxy route.
    let by_host = if connect { "" } else { x.host.as_str() };
    let Some(site) = snap.hosts.select(conn.local, by_host).cloned() else {
        // A connection on a listener a reload removed: nothing serves it any more.
        let mut resp = default_error(StatusCode::MISDIRECTED_REQUEST);
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return finish(snap, None, None, x, resp);
    };
    let selected = if connect {
        site.routes.select_connect(&parts.method, &parts.headers)
    } else {
        site.routes.select(&x.path, &parts.method, &parts.headers)
    };
    let Some(route) = selected.cloned() else {
        if connect {
            // No forward-proxy route: Rampart is not an open proxy.
            let mut resp = default_error(StatusCode::METHOD_NOT_ALLOWED);
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return finish(snap, Some(&site), None, x, resp);
        }
        let resp = error_response(&site, None, StatusCode::NOT_FOUND, &parts, &x).await;
        return finish(snap, Some(&site), None, x, resp);
    };

    // 3. access
    if let Flow::Reply(resp) = access(&route, &parts) {
        let status = resp.status();
        let resp = if status.is_client_error() || status.is_server_error() {
            error_response(&site, Some(&route), status, &parts, &x).await
        } else {
            resp
        };
        return finish(snap, Some(&site), Some(&route), x, resp);
    }

    // 3b. IP rules, rate limit, CSRF
    let mut held = Held::default();
    if let Some(rules) = &route.access {
        match rules.check(conn.peer.ip(), &parts) {
            Ok(slot) => held._slot = slot,
            Err(refusal) => {
                tracing::info!(reason = refusal.reason, client = %conn.peer.ip(), path = %x.path, "refused");
                let mut r = error_response(&site, Some(&route), refusal.status, &parts, &x).await;
                if let Some((n, v)) = refusal.header {
                    r.headers_mut().insert(n, v);
                }
                return finish(snap, Some(&site), Some(&route), x, r);
            }
        }
    }

    // 3c. WAF, phases 1–2 (reads the body when rules inspect it)
    let mut body = Some(body);
    let mut inspected: Option<Bytes> = None;
    if let Some(policy) = &route.waf {
        // Boxed from the start: a transaction is ~2 KiB, and held inline across the await
        // below it would be part of this future's every state (copied per request).
        let w = held
            .waf
            .insert(Box::new((policy.clone(), policy.rules.transaction())));
        let verdict = rampart_server::boxed(|| {
            crate::waf::request(
                policy,
                &mut w.1,
                &parts,
                raw.as_ref(),
                &mut body,
                &x,
                snap.limits.body_read_timeout,
            )
        })
        .await;
        match verdict {
            Ok(crate::waf::Verdict::Pass(b)) => inspected = b,
            Ok(crate::waf::Verdict::Block(resp)) => {
                return finish_held(snap, Some(&site), Some(&route), x, resp, held);
            }
            Err(status) => {
                let mut r = error_response(&site, Some(&route), status, &parts, &x).await;
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return finish_held(snap, Some(&site), Some(&route), x, r, held);
            }
        }
    }

    // 3d. A version this server does not speak (HTTP/0.9, HTTP/2 and later in HTTP/1 text):
    // 505 as nginx, but only after the WAF has seen it (CRS scores such versions).
    if raw.as_ref().is_some_and(|r| r.unsupported_version) {
        let status = StatusCode::HTTP_VERSION_NOT_SUPPORTED;
        let r = error_response(&site, Some(&route), status, &parts, &x).await;
        return finish_held(snap, Some(&site), Some(&route), x, r, held);
    }

    // 4. content. A CONNECT tunnel answers (and logs) on its own.
    //
    // The big handler futures (tunnel, proxy, WAF) are boxed: inline, each would make this
    // whole future as large as the largest of them, and it is moved into its box per
    // request — kilobytes copied for every static file (measured with callgrind). Through
    // `rampart_server::boxed`, so the unboxed temporary takes no room here either.
    if let Handler::Forward(f) = &route.handler {
        return rampart_server::boxed(|| {
            tunnel(snap, &site, &route, f, &parts, x, held, on_upgrade)
        })
        .await;
    }
    // Proxied: the body streams upstream; the upstream's own error pages pass through (nginx's
    // proxy_intercept_errors off), ours (502/503/504) get the error pages.
    let resp = if let Handler::Proxy(p) = &route.handler {
        let input = match (inspected, body) {
            (Some(b), _) => proxy::BodyIn::Buffered(b),
            (None, Some(b)) => proxy::BodyIn::Stream(b),
            (None, None) => proxy::BodyIn::Buffered(Bytes::new()),
        };
        match rampart_server::boxed(|| proxy::forward(p, &parts, input, &x, on_upgrade)).await {
            Ok(resp) => resp,
            Err(e) => handler_error(&site, &route, e, &parts, &x).await,
        }
    } else {
        // Other handlers do not read request bodies: read and discard it now (bounded), as
        // nginx does, so bad chunking or an oversized chunked body gets its 400/413 and the
        // connection stays usable.
        if let Some(body) = body {
            if let Err(status) = read_body(
                body,
                route.max_body_size,
                snap.limits.body_read_timeout,
                false,
            )
            .await
            {
                let mut resp = error_response(&site, Some(&route), status, &parts, &x).await;
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return finish_held(snap, Some(&site), Some(&route), x, resp, held);
            }
        }
        match content(&route, &parts, &x).await {
            // 5. a `return` of an error status shows the error page too, as nginx's
            // error_page does
            Ok(resp)
                if resp.status().as_u16() >= 400
                    && site.error_page(Some(&route), resp.status()).is_some() =>
            {
                error_response(&site, Some(&route), resp.status(), &parts, &x).await
            }
            Ok(resp) => resp,
            Err(e) => handler_error(&site, &route, e, &parts, &x).await,
        }
    };
    // 5–6. errors were rendered above; now the response filters (WAF phases 3–4 first)
    // The response is edited where it lies: each pass by value would be a copy of it.
    let mut resp = resp;
    if let Some(w) = held.waf.as_mut() {
        resp = rampart_server::boxed(|| crate::waf::response(&mut w.1, resp, &x)).await;
    }
    filter(&site, &route, &parts, &mut resp);
    // 7. log (in finish; WAF phase 5 and its audit log too)
    finish_held(snap, Some(&site), Some(&route), x, resp, held)
}

/// A CONNECT on a forward-proxy route: connect to the target (or refuse), answer 200, and
/// copy bytes once the server hands the connection over. The access log line is written when
/// the tunnel ends, with the bytes each way.
#[allow(clippy::too_many_arguments)]
async fn tunnel(
    snap: &Snapshot,
    site: &Arc<Site>,
    route: &Arc<Route>,
    f: &crate::handlers::forward::ForwardSettings,
    parts: &Parts,
    x: Exchange,
    held: Held,
    on_upgrade: Option<rampart_server::upgrade::OnUpgrade>,
) -> Response<Body> {
    use crate::handlers::forward;
    let (Some(target), Some(client)) = (forward::Target::from_uri(&parts.uri), on_upgrade) else {
        let r = error_response(site, Some(route), StatusCode::BAD_REQUEST, parts, &x).await;
        return finish_held(snap, Some(site), Some(route), x, r, held);
    };
    let stream = match forward::open(f, &target).await {
        Ok(s) => s,
        Err(refused) => {
            tracing::info!(client = %x.conn.peer.ip(), target = %x.path, reason = %refused.reason, "CONNECT refused");
            let mut r = error_response(site, Some(route), refused.status, parts, &x).await;
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return finish_held(snap, Some(site), Some(route), x, r, held);
        }
    };
    let mut resp = Response::new(Body::Empty);
    let mut log = stamp(snap, Some(site), Some(route), x, &mut resp, held);
    let idle = f.idle_timeout;
    tokio::spawn(async move {
        match client.await {
            Ok(c) => {
                let carried = forward::tunnel(c, stream, idle).await;
                log.x.tunnel_received = Some(carried.up);
                log.write(carried.down);
            }
            Err(e) => {
                tracing::debug!(error = %e, "CONNECT: the client left before the tunnel");
                log.write(0);
            }
        }
    });
    resp
}

/// What one pass over a request's fields tells the protocol checks (a pass the head-size
/// check makes anyway): four hash lookups per request fewer.
struct FieldScan {
    /// An `Upgrade` field is present.
    upgrade: bool,
    /// The first `Transfer-Encoding`: `Some(true)` when it is exactly `chunked`.
    te_chunked: Option<bool>,
    /// The first `Content-Length`: `Some(true)` when it is not `0`.
    cl_nonzero: Option<bool>,
    /// Names, values and their separators, as the head-size limit counts them.
    bytes: usize,
}

impl FieldScan {
    fn of(h: &http::HeaderMap) -> Self {
        let mut f = FieldScan {
            upgrade: false,
            te_chunked: None,
            cl_nonzero: None,
            bytes: 0,
        };
        for (n, v) in h {
            f.bytes += n.as_str().len() + v.len() + 4;
            if n == header::UPGRADE {
                f.upgrade = true;
            } else if n == header::TRANSFER_ENCODING {
                f.te_chunked
                    .get_or_insert_with(|| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
            } else if n == header::CONTENT_LENGTH {
                f.cl_nonzero.get_or_insert_with(|| v.as_bytes() != b"0");
            }
        }
        f
    }
}

/// Protocol checks every request passes before routing.
fn admit(
    snap: &Snapshot,
    parts: &Parts,
    fields: &FieldScan,
    x: &mut Exchange,
) -> Result<(), StatusCode> {
    let uri = &parts.uri;
    let target_len = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > snap.limits.max_uri_length {
        return Err(StatusCode::URI_TOO_LONG);
    }
    // Host: HTTP/2 carries it in :authority; HTTP/1.1 needs exactly one Host header.
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(StatusCode::BAD_REQUEST);
    }
    let host = if parts.version >= Version::HTTP_2 {
        match (uri.authority(), host_header) {
            (Some(a), _) => a.host().to_string(),
            (None, Some(h)) => host_of(h.as_bytes()).ok_or(StatusCode::BAD_REQUEST)?,
            (None, None) => String::new(),
        }
    } else {
        let from_header = match host_header {
            // HTTP/1.1 must name a host (an empty Host is a 400, as in nginx); for HTTP/1.0 an
            // empty one is the same as none.
            Some(h) if h.is_empty() && parts.version == Version::HTTP_11 => {
                return Err(StatusCode::BAD_REQUEST)
            }
            Some(h) => Some(host_of(h.as_bytes()).ok_or(StatusCode::BAD_REQUEST)?),
            None if parts.version == Version::HTTP_11 => return Err(StatusCode::BAD_REQUEST),
            None => None,
        };
        // Absolute-form (RFC 9112 §3.2.2): accepted, but its authority must agree with Host so
        // that no two parties can read a different target out of the same request.
        if let Some(scheme) = uri.scheme_str() {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(StatusCode::BAD_REQUEST);
            }
            let a = uri.authority().ok_or(StatusCode::BAD_REQUEST)?;
            let from_uri = host_of(a.as_str().as_bytes()).ok_or(StatusCode::BAD_REQUEST)?;
            if from_header.as_deref().is_some_and(|h| h != from_uri) {
                return Err(StatusCode::BAD_REQUEST);
            }
            Some(from_uri)
        } else {
            from_header
        }
        .unwrap_or_default()
    };
    x.host = host;
    // Framing: a request with both Transfer-Encoding and Content-Length is a smuggling attempt.
    if parts.version < Version::HTTP_2 && fields.te_chunked.is_some() && fields.cl_nonzero.is_some()
    {
        return Err(StatusCode::BAD_REQUEST);
    }
    // Only plain `chunked` framing is understood (nginx answers 501 to anything else).
    if parts.version < Version::HTTP_2 && fields.te_chunked == Some(false) {
        return Err(StatusCode::NOT_IMPLEMENTED);
    }
    // Head size: hyper's buffer cannot be set below 8 KiB, so smaller limits are checked here.
    if fields.bytes + target_len > snap.limits.max_header_size {
        return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    if parts.method == Method::CONNECT {
        // HTTP/2 CONNECT (RFC 9113 §8.5) is not served: tunnels are HTTP/1's here.
        if parts.version >= Version::HTTP_2 {
            return Err(StatusCode::METHOD_NOT_ALLOWED);
        }
        // Authority form only (`host:port`), and no body: what follows the head is the tunnel.
        let target =
            crate::handlers::forward::Target::from_uri(uri).ok_or(StatusCode::BAD_REQUEST)?;
        let has_body = fields.te_chunked.is_some() || fields.cl_nonzero == Some(true);
        if has_body {
            return Err(StatusCode::BAD_REQUEST);
        }
        x.path = format!("{}:{}", target.host, target.port);
        return Ok(());
    }
    let path = uri.path();
    if !path.starts_with('/') {
        return Err(StatusCode::BAD_REQUEST);
    }
    x.path = normalize_path(path).ok_or(StatusCode::BAD_REQUEST)?;
    Ok(())
}

/// Lower-cased host without port or trailing dot; `None` when it has bytes no host name has.
fn host_of(raw: &[u8]) -> Option<String> {
    simple_host(raw).or_else(|| host_of_general(raw))
}

/// The shape nearly every request has — `name` or `name:port`, plain ASCII, nothing to trim —
/// in one pass over the bytes. `None` hands anything else to the general parser, so both always
/// agree; this only skips its UTF-8 check, trimming and splitting (a few percent of a small
/// static request).
fn simple_host(raw: &[u8]) -> Option<String> {
    let (host, port) = match raw.iter().rposition(|&b| b == b':') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
        if n > u32::from(u16::MAX) {
            return None;
        }
    }
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.len() > 253 || !host.iter().all(|&b| HOST_BYTES[usize::from(b)] != 0) {
        return None;
    }
    // One table lookup per byte checks and lowercases; all ASCII, so the UTF-8 check (a
    // word-at-a-time pass) cannot fail. One exact allocation.
    String::from_utf8(host.iter().map(|&b| HOST_BYTES[usize::from(b)]).collect()).ok()
}

/// The bytes a host name may have (letters, digits, `-`, `.`, `_`), each mapped to its
/// lower case; 0 for every other byte.
static HOST_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_' {
            t[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    t
};

fn host_of_general(raw: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?.trim();
    let host = if let Some(rest) = s.strip_prefix('[') {
        // IPv6 literal
        let end = rest.find(']')?;
        let inner = &rest[..end];
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        let after = &rest[end + 1..];
        if !(after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok()))
        {
            return None;
        }
        return Some(format!("[{}]", inner.to_ascii_lowercase()));
    } else {
        match s.rsplit_once(':') {
            Some((h, port)) => {
                port.parse::<u16>().ok()?;
                h
            }
            None => s,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() > 253
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// Percent-decodes the path and resolves `.`/`..` and repeated slashes (nginx's normalized URI,
/// which locations match against). `None` for NUL bytes, bad escapes or `..` above the root.
pub fn normalize_path(raw: &str) -> Option<String> {
    if is_normal(raw) {
        return Some(raw.to_string());
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    if decoded.contains(&0) {
        return None;
    }
    let text = String::from_utf8_lossy(&decoded);
    let mut segs: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop()?;
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(text.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || text.ends_with('/') || text.ends_with("/.") || text.ends_with("/..") {
        out.push('/');
    }
    Some(out)
}

/// True when `normalize_path` would return `raw` unchanged: it starts with `/` and has no
/// escapes and no empty (except a trailing one), `.` or `..` segments. A dot elsewhere (every
/// file name with an extension) needs no work, so the common request skips the rebuild.
fn is_normal(raw: &str) -> bool {
    let Some(rest) = raw.as_bytes().strip_prefix(b"/") else {
        return false;
    };
    if rest.contains(&b'%') {
        return false;
    }
    let mut segs = rest.split(|&b| b == b'/').peekable();
    while let Some(seg) = segs.next() {
        match seg {
            b"." | b".." => return false,
            b"" if segs.peek().is_some() => return false,
            _ => {}
        }
    }
    true
}

/// Reads a request body to its end, keeping it when `keep` (WAF inspection, buffered
/// proxying) or dropping it as it comes: 413 past `limit`, 400 when its framing is broken,
/// 408 when the client stalls longer than `idle` between reads.
pub(crate) async fn read_body(
    mut body: RequestBody,
    limit: u64,
    idle: std::time::Duration,
    keep: bool,
) -> Result<Bytes, StatusCode> {
    use http_body_util::BodyExt;
    let mut out = bytes::BytesMut::new();
    if http_body::Body::is_end_stream(&body) {
        return Ok(out.freeze());
    }
    let mut total = 0u64;
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(StatusCode::REQUEST_TIMEOUT),
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(_))) => return Err(StatusCode::BAD_REQUEST),
            Ok(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    total += d.len() as u64;
                    if total > limit {
                        return Err(StatusCode::PAYLOAD_TOO_LARGE);
                    }
                    if keep {
                        out.extend_from_slice(d);
                    }
                }
            }
        }
    }
}

/// Access phase: limits and, as they land, IP rules, rate limits, WAF and auth.
fn access(route: &Route, parts: &Parts) -> Flow {
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > route.max_body_size {
            let mut r = default_error(StatusCode::PAYLOAD_TOO_LARGE);
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Flow::Reply(r);
        }
    }
    Flow::Next
}

type HandlerError = (StatusCode, Option<(header::HeaderName, HeaderValue)>);

/// Content phase: the route's handler answers.
async fn content(
    route: &Route,
    parts: &Parts,
    x: &Exchange,
) -> Result<Response<Body>, HandlerError> {
    match &route.handler {
        Handler::Static(s) => static_files::serve(s, parts).await.map_err(|e| {
            let status = e.status();
            if let static_files::StaticError::Io(err) = &e {
                tracing::error!(path = %x.path, error = %err, "static file error");
            }
            let allow = (status == StatusCode::METHOD_NOT_ALLOWED)
                .then(|| (header::ALLOW, HeaderValue::from_static("GET, HEAD")));
            (status, allow)
        }),
        Handler::Return(r) => Ok(r.respond(x)),
        Handler::Welcome => Ok(welcome::respond()),
        // Proxied and tunnelled in `handle`; as an error page target they have no answer.
        Handler::Proxy(_) | Handler::Forward(_) => Err((StatusCode::INTERNAL_SERVER_ERROR, None)),
    }
}

/// Response filters, in order: header edits (server, then route), caching headers, compression.
fn filter(site: &Site, route: &Route, parts: &Parts, resp: &mut Response<Body>) {
    let status = resp.status();
    let headers = resp.headers_mut();
    if !site.headers.is_empty() {
        filters::headers::edit(headers, &site.headers);
    }
    if !route.headers.is_empty() {
        filters::headers::edit(headers, &route.headers);
    }
    if route.cache_control.is_some() || route.expires.is_some() {
        filters::headers::caching(headers, status, route.cache_control.as_ref(), route.expires);
    }
    match (&route.handler, &route.compress) {
        // Files negotiate their own encodings (sidecars, cached compressed copies).
        (Handler::Static(_), _) | (_, None) => {}
        (_, Some(c)) => {
            let whole = std::mem::replace(resp, Response::new(Body::Empty));
            *resp = filters::compress::apply(c, parts, whole);
        }
    }
}

/// A handler's failure as a response: the error page, plus the header it asked for.
async fn handler_error(
    site: &Site,
    route: &Route,
    (status, extra): HandlerError,
    parts: &Parts,
    x: &Exchange,
) -> Response<Body> {
    let mut r = error_response(site, Some(route), status, parts, x).await;
    if let Some((name, value)) = extra {
        r.headers_mut().insert(name, value);
    }
    r
}

/// An error response: the configured error page if there is one, else a small default page.
async fn error_response(
    site: &Site,
    route: Option<&Route>,
    status: StatusCode,
    parts: &Parts,
    x: &Exchange,
) -> Response<Body> {
    if let Some(uri) = site.error_page(route, status) {
        // Boxed: the error-page path is rare and its future holds a whole `content`.
        if let Some(mut r) = rampart_server::boxed(|| internal_get(site, uri, parts, x)).await {
            *r.status_mut() = status;
            r.headers_mut().remove(header::ETAG);
            r.headers_mut().remove(header::LAST_MODIFIED);
            r.headers_mut().remove(header::ACCEPT_RANGES);
            return r;
        }
    }
    default_error(status)
}

/// Serves `uri` from the site as an internal GET (error pages). One level only: no recursion.
async fn internal_get(
    site: &Site,
    uri: &str,
    parts: &Parts,
    x: &Exchange,
) -> Option<Response<Body>> {
    let uri: Uri = uri.parse().ok()?;
    let path = normalize_path(uri.path())?;
    let method = if parts.method == Method::HEAD {
        Method::HEAD
    } else {
        Method::GET
    };
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .version(parts.version);
    for (n, v) in &parts.headers {
        // Conditionals and ranges were for the original resource.
        if !matches!(
            n.as_str(),
            "range"
                | "if-range"
                | "if-match"
                | "if-none-match"
                | "if-modified-since"
                | "if-unmodified-since"
        ) {
            req = req.header(n, v);
        }
    }
    let (iparts, _) = req.body(()).ok()?.into_parts();
    let route = site.routes.select(&path, &method, &iparts.headers)?;
    let resp = content(route, &iparts, x).await.ok()?;
    resp.status().is_success().then_some(resp)
}

/// nginx-like default error page.
pub fn default_error(status: StatusCode) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    let body = if code == 204 || code == 304 || code < 200 {
        Body::Empty
    } else {
        Body::full(format!(
            "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>rampart</center>\r\n</body>\r\n</html>\r\n"
        ))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// Adds the headers every response carries, then logs (now, or when a streamed body ends).
fn finish(
    snap: &Snapshot,
    site: Option<&Arc<Site>>,
    route: Option<&Arc<Route>>,
    x: Exchange,
    resp: Response<Body>,
) -> Response<Body> {
    finish_held(snap, site, route, x, resp, Held::default())
}

/// What a request holds until its response is done: its WAF transaction (phase 5 and the
/// audit log run then) and its in-flight slot of the per-address limit.
#[derive(Default)]
struct Held {
    // Boxed: a transaction is large, and this struct moves with every response.
    waf: Option<Box<(Arc<crate::waf::WafPolicy>, rampart_waf::Transaction)>>,
    _slot: Option<crate::access::Slot>,
}

fn finish_held(
    snap: &Snapshot,
    site: Option<&Arc<Site>>,
    route: Option<&Arc<Route>>,
    x: Exchange,
    mut resp: Response<Body>,
    held: Held,
) -> Response<Body> {
    let log = stamp(snap, site, route, x, &mut resp, held);
    match resp.body() {
        Body::Stream(_) => resp.map(|b| {
            Body::stream(LoggedBody {
                inner: b,
                sent: 0,
                log: Some(log),
            })
        }),
        // Whole buffers, and file bodies (sent by the kernel with sendfile, which no wrapper
        // may interpose): logged now, with the length the response announces.
        b => {
            let bytes = if log.x.method == Method::HEAD {
                0
            } else {
                b.exact_len().unwrap_or(0)
            };
            log.write(bytes);
            resp
        }
    }
}

/// Adds the headers every response carries; returns what its log line needs, to be written
/// when the response (or the tunnel) is done. The response is borrowed, not passed through:
/// each move of it is a copy.
fn stamp(
    snap: &Snapshot,
    site: Option<&Arc<Site>>,
    route: Option<&Arc<Route>>,
    x: Exchange,
    resp: &mut Response<Body>,
    held: Held,
) -> LogAt {
    let h = resp.headers_mut();
    if let Some(s) = &snap.server_header {
        h.insert(header::SERVER, s.clone());
    }
    h.insert(reqid::HEADER_NAME, x.request_id.clone());
    let status = resp.status().as_u16();
    LogAt {
        site: site.cloned(),
        route: route.cloned(),
        unrouted: snap.unrouted.clone(),
        x,
        status,
        held,
    }
}

/// Everything needed to log a request once its body is done.
struct LogAt {
    site: Option<Arc<Site>>,
    route: Option<Arc<Route>>,
    unrouted: Arc<crate::metrics::RouteMetrics>,
    x: Exchange,
    status: u16,
    held: Held,
}

impl LogAt {
    fn write(self, bytes: u64) {
        if let Some(w) = self.held.waf {
            let (policy, tx) = *w;
            crate::waf::finish(&policy, tx, &self.x, self.status);
        }
        let took = self.x.started.elapsed();
        let m = self.route.as_ref().map_or(&self.unrouted, |r| &r.metrics);
        m.record(self.status, bytes, took);
        if let Some(log) = self.site.as_ref().and_then(|s| s.access_log.as_ref()) {
            let site = self.site.as_ref().map_or("-", |s| s.label.as_str());
            let route = self.route.as_ref().map_or("-", |r| r.label.as_str());
            log.record(&self.x, (site, route), self.status, bytes, took);
        }
    }
}

/// A streamed body that counts bytes and logs when it ends, or when it is dropped (the client
/// went away).
struct LoggedBody {
    inner: Body,
    sent: u64,
    log: Option<LogAt>,
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(l) = self.log.take() {
            l.write(self.sent);
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.sent += d.len() as u64;
                }
            }
            // Logged at the end, before the server sends the last bytes: whoever reads the
            // log after the response finds the line.
            Poll::Ready(None) => {
                if let Some(l) = self.log.take() {
                    l.write(self.sent);
                }
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[allow(dead_code)]
fn _assert_send(_: IpAddr) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize() {
        assert_eq!(normalize_path("/a/b").as_deref(), Some("/a/b"));
        assert_eq!(normalize_path("/a//b/./c/../d").as_deref(), Some("/a/b/d"));
        assert_eq!(normalize_path("/%61dmin/").as_deref(), Some("/admin/"));
        assert_eq!(normalize_path("/../etc/passwd"), None);
        assert_eq!(normalize_path("/a/%2e%2e/%2e%2e/etc"), None);
        assert_eq!(normalize_path("/x%00.html"), None);
        assert_eq!(normalize_path("/x%zz"), None);
        assert_eq!(normalize_path("/a/..").as_deref(), Some("/"));
        // Already normal: returned as is (the fast check must agree with the rebuild).
        for p in ["/", "/1k.html", "/a/b/", "/a.b/.c/d..e", "/.well-known/x"] {
            assert!(is_normal(p), "{p}");
            assert_eq!(normalize_path(p).as_deref(), Some(p));
        }
        for p in [
            "/a//b", "//", "/./", "/a/.", "/a/..", "/%41", "a", "", "/a/./b",
        ] {
            assert!(!is_normal(p), "{p}");
        }
        assert_eq!(normalize_path("/a/./b").as_deref(), Some("/a/b"));
        assert_eq!(normalize_path("//").as_deref(), Some("/"));
    }

    #[test]
    fn hosts_parse() {
        assert_eq!(host_of(b"Example.COM:8080").as_deref(), Some("example.com"));
        assert_eq!(host_of(b"example.com.").as_deref(), Some("example.com"));
        assert_eq!(host_of(b"[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(host_of(b"a b"), None);
        assert_eq!(host_of(b"a:99999"), None);
        assert_eq!(host_of(b"evil/x"), None);
        // The one-pass parser and the general one agree wherever the fast one answers.
        for h in [
            &b"127.0.0.1:18080"[..],
            b"Example.com",
            b"a.:80",
            b"",
            b":80",
            b".",
            b"x:0080",
            b"x:65535",
            b"x:65536",
            b"x:",
            b"x:1:2",
            b"a_b-c",
        ] {
            if let Some(fast) = simple_host(h) {
                assert_eq!(Some(fast), host_of_general(h), "{h:?}");
            }
            assert_eq!(host_of(h), host_of_general(h), "{h:?}");
        }
        // Every byte, alone and inside a name: the table agrees with the general parser.
        for b in 0..=255u8 {
            for h in [vec![b], vec![b'A', b, b'z'], vec![b'x', b, b':', b'8']] {
                if let Some(fast) = simple_host(&h) {
                    assert_eq!(Some(fast), host_of_general(&h), "{h:?}");
                }
                assert_eq!(host_of(&h), host_of_general(&h), "{h:?}");
            }
        }
        assert_eq!(host_of(b" example.com ").as_deref(), Some("example.com"));
        assert_eq!(host_of(b"x:+80").as_deref(), Some("x"));
    }
}
