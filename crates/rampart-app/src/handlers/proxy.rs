//! The reverse-proxy handler: picks an upstream group (rules, weighted split), a server in it
//! (balancer, sticky session), forwards the request with hop-by-hop headers removed and the
//! forwarding headers added, retries where that is safe, and streams the answer back.
//!
//! ```text
//! group ─▶ admit (in-flight limit, queue) ─▶ ┌ select server ─▶ connection (pool) ─▶ send ┐
//!                                            └──── retry on another server (budget) ◀─────┘
//!        ─▶ response headers (hop-by-hop out, sticky cookie) ─▶ streamed body / WebSocket tunnel
//! ```

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode, Uri, Version};
use http_body::{Frame, SizeHint};
use rampart_server::Body;
use rampart_server::RequestBody;
use rampart_upstream::{
    balance::hash_bytes, sticky, BodySignal, ClientBodyError, ErrorClass, Fields, Pick, ReqBody,
    StickySettings, UpHead, UpRequest, Upstream, UpstreamError,
};
use tokio::sync::Semaphore;

use crate::cidr::{canonical, CidrSet};
use crate::exchange::Exchange;
use crate::snapshot::HeaderEdits;

/// What a proxied request is hashed on (`hash_key`).
#[derive(Clone, Debug)]
pub enum HashKey {
    /// Path and query as received.
    Uri,
    /// Normalized path.
    Path,
    /// Client address.
    Ip,
    /// A request header.
    Header(HeaderName),
    /// A cookie.
    Cookie(String),
    /// A query argument.
    Arg(String),
}

/// An upstream group as a route uses it.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group (shared across snapshots while its settings are unchanged).
    pub upstream: Arc<Upstream>,
    /// Hash key for `hash`/`ip_hash`.
    pub key: Option<HashKey>,
}

/// A request that matches goes to `group`.
#[derive(Debug)]
pub struct SplitRule {
    /// Header or cookie compared.
    pub on: RuleOn,
    /// Value that matches.
    pub value: String,
    /// Target.
    pub group: Group,
}

/// What a split rule compares.
#[derive(Debug)]
pub enum RuleOn {
    /// A request header.
    Header(HeaderName),
    /// A cookie.
    Cookie(String),
}

/// Where requests of a route go.
#[derive(Debug)]
pub enum Target {
    /// One group.
    Single(Group),
    /// Weighted split over groups (smooth weighted round robin: exact shares, spread out).
    Split {
        /// (group, weight).
        groups: Vec<(Group, u32)>,
        /// Running scores.
        current: Mutex<Vec<i64>>,
    },
}

/// Request mirroring.
#[derive(Debug)]
pub struct Mirror {
    /// Group receiving copies.
    pub group: Group,
    /// Share in percent × 100 (exact accumulator, no randomness).
    pub per_10k: u64,
    acc: AtomicU64,
    slots: Arc<Semaphore>,
}

impl Mirror {
    /// A mirror copying `percent` % of requests.
    pub fn new(group: Group, percent: f64) -> Self {
        Mirror {
            group,
            per_10k: (percent * 100.0).round().clamp(0.0, 10_000.0) as u64,
            acc: AtomicU64::new(0),
            // Copies in flight at most: beyond this, requests are not mirrored (never queued).
            slots: Arc::new(Semaphore::new(64)),
        }
    }

    fn take(&self) -> bool {
        let before = self.acc.fetch_add(self.per_10k, Ordering::Relaxed);
        (before % 10_000) + self.per_10k >= 10_000
    }
}

/// A proxy route's settings.
#[derive(Debug)]
pub struct ProxySettings {
    /// Groups.
    pub target: Target,
    /// Rules before the split.
    pub rules: Vec<SplitRule>,
    /// (matched route prefix, replacement) for the upstream path.
    pub rewrite: Option<(String, String)>,
    /// `Host` sent upstream.
    pub host: HostMode,
    /// Request header edits.
    pub request_headers: HeaderEdits,
    /// Response-head timeout override.
    pub read_timeout: Option<Duration>,
    /// Buffer request bodies (replayable).
    pub buffer_request: bool,
    /// Request body limit.
    pub max_body: u64,
    /// Idle time between two client body reads.
    pub body_timeout: Duration,
    /// WebSocket idle timeout.
    pub websocket_idle: Duration,
    /// Mirroring.
    pub mirror: Option<Mirror>,
    /// Trusted proxies.
    pub trusted: Arc<CidrSet>,
}

/// The `Host` header sent upstream.
#[derive(Debug, Clone)]
pub enum HostMode {
    /// The client's.
    Client,
    /// The chosen server's address.
    Upstream,
    /// This text, with `$host` expanded.
    Fixed(String),
}

/// A handler failure: a status, an optional extra header, and the reason for the log.
pub type ProxyError = (StatusCode, Option<(HeaderName, HeaderValue)>);

// Header names used on every request, built once (a `&str` key is parsed on every use).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that belong to one connection only (RFC 9110 §7.6.1) plus the legacy ones:
/// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
/// Proxy-Authenticate, Proxy-Authorization, and any field the message's `Connection` names.
fn is_hop(name: &HeaderName, named: &ConnectionNamed<'_>) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || named.names(name)
}

/// The comma-separated tokens of a list field's value, trimmed (empty ones included).
fn list_tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// The field names a message's `Connection` lists (hop-by-hop too), as borrowed tokens: no
/// list of `HeaderName`s is built (nginx and most servers send `Connection: keep-alive` on
/// every response; building one per response cost ~750 instructions).
struct ConnectionNamed<'a> {
    /// Tokens naming a field `is_hop` does not already cover (most messages: none).
    tokens: [&'a [u8]; 4],
    n: usize,
    /// Set when more tokens than fit: then each question scans the values again.
    more: Option<http::header::GetAll<'a, HeaderValue>>,
}

impl<'a> ConnectionNamed<'a> {
    fn of(h: &'a HeaderMap) -> Self {
        let mut c = ConnectionNamed {
            tokens: [&[]; 4],
            n: 0,
            more: None,
        };
        // A scan of the names, not `contains_key`: a few compares of standard names cost
        // less than hashing one (~170 instructions), and most messages have no `Connection`.
        if !h.keys().any(|n| n == header::CONNECTION) {
            return c;
        }
        let all = h.get_all(header::CONNECTION);
        for t in all.iter().flat_map(|v| list_tokens(v.as_bytes())) {
            if t.is_empty()
                || t.eq_ignore_ascii_case(b"keep-alive")
                || t.eq_ignore_ascii_case(b"upgrade")
            {
                continue; // already hop-by-hop
            }
            if c.n == c.tokens.len() {
                c.more = Some(all);
                break;
            }
            c.tokens[c.n] = t;
            c.n += 1;
        }
        c
    }

    /// `name` (lowercase, as every `HeaderName`) is one of the listed tokens.
    fn names(&self, name: &HeaderName) -> bool {
        let name = name.as_str().as_bytes();
        match &self.more {
            None => self.tokens[..self.n]
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name)),
            Some(values) => values
                .iter()
                .flat_map(|v| list_tokens(v.as_bytes()))
                .any(|t| t.eq_ignore_ascii_case(name)),
        }
    }
}

fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// The value of cookie `name`.
fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn query_arg<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl ProxySettings {
    fn choose_group(&self, parts: &Parts) -> &Group {
        for r in &self.rules {
            let v = match &r.on {
                RuleOn::Header(n) => parts.headers.get(n).and_then(|v| v.to_str().ok()),
                RuleOn::Cookie(c) => cookie(&parts.headers, c),
            };
            if v == Some(r.value.as_str()) {
                return &r.group;
            }
        }
        match &self.target {
            Target::Single(g) => g,
            Target::Split { groups, current } => {
                let mut cur = current.lock().unwrap_or_else(|e| e.into_inner());
                let mut total = 0i64;
                let mut best = 0usize;
                for (i, (_, w)) in groups.iter().enumerate() {
                    let w = i64::from(*w);
                    cur[i] += w;
                    total += w;
                    if cur[i] > cur[best] || groups[best].1 == 0 {
                        best = i;
                    }
                }
                cur[best] -= total;
                &groups[best].0
            }
        }
    }
}

/// The client address, taking `X-Forwarded-For` from trusted proxies into account (the
/// rightmost address that is not itself a trusted proxy).
fn client_ip(x: &Exchange, headers: &HeaderMap, trusted: &CidrSet) -> IpAddr {
    let peer = x.conn.peer.ip();
    if !trusted.contains(peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    while let Some(ip) = chain.pop() {
        if !trusted.contains(ip) {
            return ip;
        }
    }
    peer
}

fn hash_of(key: &HashKey, parts: &Parts, x: &Exchange, trusted: &CidrSet) -> Option<u64> {
    match key {
        HashKey::Uri => Some(hash_bytes(
            parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .as_bytes(),
        )),
        HashKey::Path => Some(hash_bytes(x.path.as_bytes())),
        HashKey::Ip => Some(match client_ip(x, &parts.headers, trusted) {
            IpAddr::V4(a) => hash_bytes(&a.octets()),
            IpAddr::V6(a) => hash_bytes(&a.octets()),
        }),
        HashKey::Header(n) => parts.headers.get(n).map(|v| hash_bytes(v.as_bytes())),
        HashKey::Cookie(c) => cookie(&parts.headers, c).map(|v| hash_bytes(v.as_bytes())),
        HashKey::Arg(a) => query_arg(&parts.uri, a).map(|v| hash_bytes(v.as_bytes())),
    }
}

/// The upstream request head (without the body), built once and cloned per attempt.
fn upstream_head(
    s: &ProxySettings,
    parts: &Parts,
    x: &Exchange,
    upgrade: bool,
) -> Result<UpHead, ProxyError> {
    let bad = || (StatusCode::BAD_REQUEST, None);
    // Path: as received (not normalized: the application may need its exact bytes), with the
    // route prefix replaced when asked.
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = match &s.rewrite {
        Some((prefix, with)) => {
            let path = parts.uri.path();
            let rest = if path.starts_with(prefix.as_str()) {
                &pq[prefix.len()..]
            } else {
                // The route matched on the normalized path; the raw one differs (escapes):
                // rewrite the normalized path instead.
                let q = parts
                    .uri
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                let norm = x.path.strip_prefix(prefix.as_str()).unwrap_or(&x.path);
                return build_head(s, parts, x, format!("{with}{norm}{q}"), upgrade);
            };
            // Plain replacement, as nginx does; a doubled slash at the seam is collapsed.
            if with.ends_with('/') && rest.starts_with('/') {
                format!("{with}{}", &rest[1..])
            } else {
                format!("{with}{rest}")
            }
        }
        None => {
            // As received: the parsed path and query is reused (no re-parse, no copy).
            let uri = match parts.uri.path_and_query() {
                Some(p) => Uri::from(p.clone()),
                None => Uri::from_static("/"),
            };
            return head_with_uri(s, parts, x, uri, upgrade);
        }
    };
    if target.is_empty() {
        return Err(bad());
    }
    build_head(s, parts, x, target, upgrade)
}

fn build_head(
    s: &ProxySettings,
    parts: &Parts,
    x: &Exchange,
    target: String,
    upgrade: bool,
) -> Result<UpHead, ProxyError> {
    let bad = || (StatusCode::BAD_REQUEST, None);
    let uri: Uri = target.parse().map_err(|_| bad())?;
    head_with_uri(s, parts, x, uri, upgrade)
}

/// The upstream request's head. One pass over the client's fields copies what goes on and
/// notes what the forwarding fields said; the fields this proxy writes are then appended once.
/// (Copying everything and then removing and re-inserting each forwarding field hashed every
/// name several times: ~5,600 instructions per request, a sixth of proxying a small one.)
fn head_with_uri(
    s: &ProxySettings,
    parts: &Parts,
    x: &Exchange,
    uri: Uri,
    upgrade: bool,
) -> Result<UpHead, ProxyError> {
    let peer = canonical(x.conn.peer.ip());
    let trusted = s.trusted.contains(peer);
    let named = ConnectionNamed::of(&parts.headers);
    let mut fields = Fields::with_capacity(parts.headers.len() + 8);
    let h = &mut fields;
    let mut host_in: Option<&HeaderValue> = None;
    let mut prev_xff: Option<&HeaderValue> = None;
    let mut prev_forwarded: Option<&HeaderValue> = None;
    let mut prev_via: Option<&HeaderValue> = None;
    let (mut kept_proto, mut kept_host) = (false, false);
    let mut cookies = 0usize;
    let mut te_trailers = false;
    for (n, v) in &parts.headers {
        if n == header::HOST {
            host_in.get_or_insert(v);
            continue;
        }
        if n == header::TE {
            te_trailers |= v.to_str().is_ok_and(|t| t.contains("trailers"));
            continue;
        }
        if is_hop(n, &named) {
            continue;
        }
        if n == X_FORWARDED_FOR {
            prev_xff.get_or_insert(v);
            continue;
        }
        if n == header::FORWARDED {
            prev_forwarded.get_or_insert(v);
            continue;
        }
        if n == header::VIA {
            prev_via.get_or_insert(v);
            continue;
        }
        if n == crate::reqid::HEADER {
            continue;
        }
        if n == X_FORWARDED_PROTO {
            if !trusted {
                continue;
            }
            kept_proto = true;
        }
        if n == X_FORWARDED_HOST {
            if !trusted {
                continue;
            }
            kept_host = true;
        }
        if n == header::COOKIE {
            cookies += 1;
        }
        h.append(n.clone(), v.clone());
    }
    // HTTP/2 may split cookies into several fields; HTTP/1.1 servers expect one.
    if parts.version >= Version::HTTP_2 && cookies > 1 {
        let all: Vec<&str> = h
            .get_all(&header::COOKIE)
            .filter_map(|v| v.to_str().ok())
            .collect();
        if let Ok(v) = HeaderValue::from_str(&all.join("; ")) {
            h.insert(header::COOKIE, v);
        }
    }
    if te_trailers {
        h.append(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        if let Some(u) = parts.headers.get(header::UPGRADE) {
            h.insert(header::UPGRADE, u.clone());
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
    // Forwarding fields: believed (and extended) from trusted proxies, replaced otherwise.
    let host_in = host_in.cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let proto = "http";
    // One formatting of the address serves every field (they are built per request).
    let peer_text = ip_text(peer);
    // `Forwarded` first: `X-Forwarded-For` then takes the address text itself.
    let mut fwd = String::with_capacity(64);
    if trusted {
        if let Some(prev) = prev_forwarded.and_then(|v| v.to_str().ok()) {
            fwd.push_str(prev);
            fwd.push_str(", ");
        }
    }
    fwd.push_str("for=");
    if peer.is_ipv6() {
        fwd.push_str("\"[");
        fwd.push_str(&peer_text);
        fwd.push_str("]\"");
    } else {
        fwd.push_str(&peer_text);
    }
    fwd.push_str(";proto=");
    fwd.push_str(proto);
    if let Some(hv) = host_in.as_ref().and_then(|v| v.to_str().ok()) {
        fwd.push_str(";host=\"");
        fwd.push_str(hv);
        fwd.push('"');
    }
    // A received value that is not text (obs-text bytes) is not extended: the chain starts
    // again from this hop, as for `Forwarded` and `Via`.
    let xff = match prev_xff.filter(|_| trusted).and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            let mut v = String::with_capacity(prev.len() + 2 + peer_text.len());
            v.push_str(prev);
            v.push_str(", ");
            v.push_str(&peer_text);
            v
        }
        None => peer_text,
    };
    h.append(X_FORWARDED_FOR, composed(xff));
    if !kept_proto {
        h.append(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !kept_host {
        if let Some(hv) = &host_in {
            h.append(X_FORWARDED_HOST, hv.clone());
        }
    }
    h.append(header::FORWARDED, composed(fwd));
    let via_ver = match parts.version {
        Version::HTTP_10 => "1.0 rampart",
        Version::HTTP_2 => "2 rampart",
        Version::HTTP_3 => "3 rampart",
        _ => "1.1 rampart",
    };
    let via = match prev_via.and_then(|v| v.to_str().ok()) {
        Some(prev) => Some(composed(format!("{prev}, {via_ver}"))),
        None => Some(HeaderValue::from_static(via_ver)),
    };
    if let Some(v) = via {
        h.append(header::VIA, v);
    }
    h.append(crate::reqid::HEADER_NAME, x.request_id.clone());
    for (n, v) in &s.request_headers.add {
        h.insert(n.clone(), v.clone());
    }
    for (n, v) in &s.request_headers.append {
        h.append(n.clone(), v.clone());
    }
    for n in &s.request_headers.remove {
        h.remove(n);
    }
    if let Some(hv) = host_in {
        h.insert(header::HOST, hv);
    }
    Ok(UpHead::new(parts.method.clone(), uri, fields))
}

/// A field value this proxy composed from text that is field-value text already: an
/// address's digits, dots and colons, ASCII literals, and received values that passed
/// `to_str` (visible ASCII). Taken as it is, without the copy and the per-byte check of
/// `HeaderValue::from_str` (~150 instructions per field, three fields a request).
#[allow(unsafe_code)]
fn composed(text: String) -> HeaderValue {
    // SAFETY: not a memory-safety contract: the bytes are valid field-value bytes by
    // construction (see above); `from_maybe_shared_unchecked` checks them in debug builds.
    unsafe { HeaderValue::from_maybe_shared_unchecked(Bytes::from(text)) }
}

/// An address as text. IPv4 by hand: `Ipv4Addr`'s `Display` goes through the formatting
/// machinery and cost ~1,200 instructions per proxied request.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let mut s = String::with_capacity(15);
            for (i, o) in a.octets().iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                if *o >= 100 {
                    s.push(char::from(b'0' + o / 100));
                }
                if *o >= 10 {
                    s.push(char::from(b'0' + (o / 10) % 10));
                }
                s.push(char::from(b'0' + o % 10));
            }
            s
        }
        IpAddr::V6(a) => a.to_string(),
    }
}

/// The client's request body, as it can be sent (and maybe re-sent).
enum Source {
    Empty,
    Full(Bytes),
    Stream(Option<(ReqBody, Arc<BodySignal>)>),
}

impl Source {
    fn replayable(&self) -> bool {
        !matches!(self, Source::Stream(_))
    }

    fn take(&mut self) -> Option<(ReqBody, Option<Arc<BodySignal>>)> {
        match self {
            Source::Empty => Some((ReqBody::Empty, None)),
            Source::Full(b) => Some((ReqBody::Full(Some(b.clone())), None)),
            Source::Stream(s) => s.take().map(|(b, n)| (b, Some(n))),
        }
    }
}

pin_project_lite::pin_project! {
    /// The client's body on its way upstream: bounded in size, and failing when the client
    /// stalls longer than the body timeout.
    struct ClientBody {
        #[pin]
        inner: RequestBody,
        seen: u64,
        limit: u64,
        idle: Duration,
        #[pin]
        stall: tokio::time::Sleep,
    }
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    *this.seen += d.len() as u64;
                    if *this.seen > *this.limit {
                        return Poll::Ready(Some(Err(ClientBodyError("too large".into()))));
                    }
                }
                let next = tokio::time::Instant::now() + *this.idle;
                this.stall.as_mut().reset(next);
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(ClientBodyError(format!("client body: {e}")))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.stall.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(ClientBodyError(
                    "client sent no body bytes within the body timeout".into(),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn overloaded() -> ProxyError {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Some((header::RETRY_AFTER, HeaderValue::from_static("1"))),
    )
}

/// A request body as the proxy receives it.
pub enum BodyIn {
    /// Still on the client connection.
    Stream(RequestBody),
    /// Already read (by the WAF, for inspection).
    Buffered(Bytes),
}

/// Forwards one request. `on_upgrade` is the client side of a WebSocket handshake.
pub async fn forward(
    s: &ProxySettings,
    parts: &Parts,
    body: BodyIn,
    x: &Exchange,
    on_upgrade: Option<rampart_server::upgrade::OnUpgrade>,
) -> Result<Response<Body>, ProxyError> {
    let group = s.choose_group(parts);
    let upgrade = on_upgrade.is_some() && wants_upgrade(&parts.headers);
    let mut head = upstream_head(s, parts, x, upgrade)?;
    if group.upstream.settings.proxy_protocol.is_some() && !upgrade {
        // The connection's PROXY header names this client: one request, then hyper closes it
        // instead of leaving it idle in the pool (see rampart-upstream/src/proxy_header.rs).
        head.fields
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    // A small body that came with its head goes upstream with it in one write (and can be
    // replayed on a retry), as if buffered. Its `Content-Length` already passed the route's
    // `max_body_size` (pipeline::access).
    let body = match body {
        BodyIn::Stream(mut b) => match b.take_whole() {
            Some(whole) => BodyIn::Buffered(whole),
            None => BodyIn::Stream(b),
        },
        b => b,
    };
    // The body: none, buffered (replayable), or streamed (bounded, timed).
    let source = match body {
        BodyIn::Buffered(b) if b.is_empty() => Source::Empty,
        BodyIn::Buffered(b) => Source::Full(b),
        BodyIn::Stream(body) if http_body::Body::is_end_stream(&body) => Source::Empty,
        BodyIn::Stream(body) if s.buffer_request => Source::Full(
            crate::pipeline::read_body(body, s.max_body, s.body_timeout, true)
                .await
                .map_err(|st| (st, None))?,
        ),
        BodyIn::Stream(body) => {
            let done = Arc::new(BodySignal::new());
            let cb = ClientBody {
                inner: body,
                seen: 0,
                limit: s.max_body,
                idle: s.body_timeout,
                stall: tokio::time::sleep(s.body_timeout),
            };
            Source::Stream(Some((
                ReqBody::Stream {
                    inner: Box::pin(cb),
                    done: done.clone(),
                },
                done,
            )))
        }
    };
    forward_source(s, parts, source, x, on_upgrade, group, upgrade, head).await
}

#[allow(clippy::too_many_arguments)]
async fn forward_source(
    s: &ProxySettings,
    parts: &Parts,
    mut source: Source,
    x: &Exchange,
    on_upgrade: Option<rampart_server::upgrade::OnUpgrade>,
    group: &Group,
    upgrade: bool,
    head: UpHead,
) -> Result<Response<Body>, ProxyError> {
    let up = &group.upstream;
    let mut first_head = Some(head);
    if let Some(m) = &s.mirror {
        if source.replayable() && m.take() {
            if let Some(h) = &first_head {
                mirror(m, h, &source, x);
            }
        }
    }

    // Sticky session: a server named by the signed cookie, or learned from the app's cookie.
    let sticky = up.settings.sticky.as_ref();
    let prefer = match sticky {
        Some(StickySettings::Insert {
            cookie: c, secret, ..
        }) => cookie(&parts.headers, c)
            .and_then(|v| sticky::verify(secret, v))
            .and_then(|id| up.peer_by_id(&id)),
        Some(StickySettings::Learn { cookie: c }) => {
            cookie(&parts.headers, c).and_then(|v| up.learned(v))
        }
        None => None,
    };
    let hash = group
        .key
        .as_ref()
        .and_then(|k| hash_of(k, parts, x, &s.trusted));

    let _permit = up.admit().await.map_err(|e| {
        tracing::warn!(upstream = %up.settings.name, "{e}");
        overloaded()
    })?;

    let retry = &up.settings.retry;
    let method_retryable = retry.methods.contains(&parts.method);
    let read_timeout = s.read_timeout.unwrap_or(up.settings.read_timeout);
    // One clock reading per attempt serves selection, the breaker, the budget, the idle
    // check and the head-time sample (a read costs ~30 ns here; a request took a dozen).
    let start = Instant::now();
    up.budget.on_request(start);
    let mut first = Some(start);
    let mut tried: Vec<usize> = Vec::new();
    let mut attempts = 0u32;
    let mut stale_retries = 0u32;
    let mut pending: Option<UpRequest> = None;
    let mut last_err: Option<UpstreamError> = None;
    loop {
        let now = first.take().unwrap_or_else(Instant::now);
        let Some(peer) = up.select(
            &Pick {
                hash,
                prefer,
                exclude: &tried,
            },
            now,
        ) else {
            return Err(match last_err {
                Some(e) => {
                    tracing::warn!(upstream = %up.settings.name, error = %e, request_id = ?x.request_id, "proxy failed");
                    (e.status(), None)
                }
                None => {
                    tracing::warn!(upstream = %up.settings.name, request_id = ?x.request_id, "no usable upstream server");
                    overloaded()
                }
            });
        };
        if upgrade && peer.settings.protocol == rampart_upstream::Protocol::H2c {
            // WebSocket's `Upgrade` exists only in HTTP/1.1 and an h2c server has no other
            // way in (RFC 8441 would need the server's consent): refused, and not the
            // server's fault, so nothing is recorded against it.
            tracing::warn!(upstream = %up.settings.name, server = %peer.label, request_id = ?x.request_id, "WebSocket upgrade to an HTTP/2 (h2c) upstream refused");
            return Err((StatusCode::BAD_GATEWAY, None));
        }
        attempts += 1;
        let inflight = peer.start(now);
        let conn = if let Some(v) = up.settings.proxy_protocol {
            let client = Some((x.conn.peer, x.conn.local));
            peer.connect_with_proxy_header(v, client, upgrade).await
        } else if upgrade {
            peer.connect_upgradable().await
        } else {
            peer.checkout(now).await
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                peer.record_failure(&e.to_string());
                tried.push(peer.index);
                // Nothing was sent: any method may go to the next server.
                let allowed = match e.class() {
                    ErrorClass::Error => retry.on_error,
                    ErrorClass::Timeout => retry.on_timeout,
                    ErrorClass::Client => false,
                };
                if allowed && attempts < retry.tries && up.budget.try_retry() {
                    up.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(server = %peer.label, error = %e, "retrying on another server");
                    last_err = Some(e);
                    continue;
                }
                tracing::warn!(upstream = %up.settings.name, error = %e, request_id = ?x.request_id, "proxy failed");
                return Err((e.status(), None));
            }
        };
        let (req, done) = match pending.take() {
            Some(r) => (r, None),
            None => {
                let Some((b, done)) = source.take() else {
                    return Err((
                        last_err.map_or(StatusCode::BAD_GATEWAY, |e| e.status()),
                        None,
                    ));
                };
                // The first attempt takes the prepared head; a retry builds it again (cheaper
                // than cloning the field list on every request for the rare retry).
                let h = match first_head.take() {
                    Some(h) => h,
                    None => upstream_head(s, parts, x, upgrade)?,
                };
                let mut r = UpRequest { head: h, body: b };
                if matches!(s.host, HostMode::Upstream) {
                    if let Ok(v) = HeaderValue::from_str(&peer.label) {
                        r.head.fields.insert(header::HOST, v);
                    }
                } else if let HostMode::Fixed(t) = &s.host {
                    if let Ok(v) = HeaderValue::from_str(&t.replace("$host", &x.host)) {
                        r.head.fields.insert(header::HOST, v);
                    }
                }
                (r, done)
            }
        };
        match rampart_upstream::send(conn, req, read_timeout, done, inflight).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let counts_as_failure = up.settings.breaker.fail_on_5xx && status >= 500;
                if counts_as_failure {
                    peer.record_failure(&format!("status {status}"));
                } else {
                    let head_at = Instant::now();
                    peer.record_success(head_at.saturating_duration_since(now), head_at);
                }
                if retry.statuses.contains(&status)
                    && method_retryable
                    && source.replayable()
                    && attempts < retry.tries
                    && up.budget.try_retry()
                {
                    up.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tried.push(peer.index);
                    tracing::info!(server = %peer.label, status, "retrying on another server");
                    continue;
                }
                return Ok(respond(s, up, &peer, prefer, resp, on_upgrade));
            }
            Err(f) => {
                if let Some(r) = f.unsent {
                    // A pooled connection closed under us before the request left: send the
                    // same request again (not a retry: the server never saw it).
                    if stale_retries < 3 {
                        stale_retries += 1;
                        attempts -= 1;
                        pending = Some(r);
                        continue;
                    }
                }
                let e = f.error;
                if e.class() == ErrorClass::Client {
                    tracing::info!(error = %e, request_id = ?x.request_id, "client body failed while proxying");
                    let st = if e.to_string().contains("too large") {
                        StatusCode::PAYLOAD_TOO_LARGE
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    return Err((
                        st,
                        Some((header::CONNECTION, HeaderValue::from_static("close"))),
                    ));
                }
                peer.record_failure(&e.to_string());
                tried.push(peer.index);
                let allowed = match e.class() {
                    ErrorClass::Error => retry.on_error,
                    ErrorClass::Timeout => retry.on_timeout,
                    ErrorClass::Client => false,
                };
                if allowed
                    && method_retryable
                    && source.replayable()
                    && attempts < retry.tries
                    && up.budget.try_retry()
                {
                    up.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(server = %peer.label, error = %e, "retrying on another server");
                    last_err = Some(e);
                    continue;
                }
                tracing::warn!(upstream = %up.settings.name, error = %e, request_id = ?x.request_id, "proxy failed");
                return Err((e.status(), None));
            }
        }
    }
}

/// Response side: hop-by-hop headers out, sticky cookie in, body streamed (or a tunnel).
fn respond(
    s: &ProxySettings,
    up: &Arc<Upstream>,
    peer: &Arc<rampart_upstream::Peer>,
    prefer: Option<usize>,
    mut resp: Response<rampart_upstream::ResBody>,
    on_upgrade: Option<rampart_server::upgrade::OnUpgrade>,
) -> Response<Body> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upgrade_hdr = if switching {
        resp.headers().get(header::UPGRADE).cloned()
    } else {
        None
    };
    let drop: Vec<HeaderName> = {
        let h = resp.headers();
        let named = ConnectionNamed::of(h);
        h.keys().filter(|n| is_hop(n, &named)).cloned().collect()
    };
    for n in drop {
        resp.headers_mut().remove(n);
    }
    match up.settings.sticky.as_ref() {
        Some(StickySettings::Insert {
            cookie: c,
            secret,
            max_age,
        }) if prefer != Some(peer.index) => {
            let mut v = format!(
                "{c}={}; Path=/; HttpOnly; SameSite=Lax",
                sticky::sign(secret, &peer.settings.id)
            );
            if let Some(a) = max_age {
                v.push_str(&format!("; Max-Age={}", a.as_secs()));
            }
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        Some(StickySettings::Learn { cookie: c }) => {
            let prefix = format!("{c}=");
            for v in resp.headers().get_all(header::SET_COOKIE) {
                if let Some(val) = v
                    .to_str()
                    .ok()
                    .and_then(|s| s.strip_prefix(prefix.as_str()))
                    .map(|s| s.split(';').next().unwrap_or_default())
                {
                    up.learn(val, peer.index);
                }
            }
        }
        _ => {}
    }
    if switching {
        if let (Some(client), Some(u)) = (on_upgrade, upgrade_hdr) {
            let upstream_side = hyper::upgrade::on(&mut resp);
            let idle = s.websocket_idle;
            tokio::spawn(async move {
                match tokio::join!(client, upstream_side) {
                    (Ok(c), Ok(u)) => tunnel(c, u, idle).await,
                    (Err(e), _) => tracing::info!(error = %e, "WebSocket upgrade failed"),
                    (_, Err(e)) => tracing::info!(error = %e, "WebSocket upgrade failed"),
                }
            });
            let (mut parts, _) = resp.into_parts();
            parts.headers.insert(header::UPGRADE, u);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            return Response::from_parts(parts, Body::Empty);
        }
    }
    // A small answer is usually whole already: sent as one buffer, its connection pooled now.
    let (parts, mut body) = resp.into_parts();
    let body = match body.take_whole() {
        Some(b) if b.is_empty() => Body::Empty,
        Some(b) => Body::full(b),
        None => Body::stream(body),
    };
    Response::from_parts(parts, body)
}

/// Copies bytes both ways until either side closes or nothing moves for `idle`.
async fn tunnel(
    client: rampart_server::upgrade::Upgraded,
    upstream: hyper::upgrade::Upgraded,
    idle: Duration,
) {
    use hyper_util::rt::TokioIo;
    let last = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut a = Activity {
        io: client,
        last: last.clone(),
        start,
    };
    let mut b = Activity {
        io: TokioIo::new(upstream),
        last: last.clone(),
        start,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    let tick = (idle / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = &mut copy => return,
            _ = tokio::time::sleep(tick) => {
                let quiet = start.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    tracing::debug!("WebSocket tunnel idle: closing");
                    return;
                }
            }
        }
    }
}

/// An I/O wrapper that notes when bytes last moved.
struct Activity<T> {
    io: T,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl<T> Activity<T> {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Activity<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Activity<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Sends a copy of the request to the mirror group in the background; its answer is read and
/// dropped. Never waits: with every mirror slot busy, the copy is skipped.
fn mirror(m: &Mirror, head: &UpHead, source: &Source, x: &Exchange) {
    let Ok(slot) = m.slots.clone().try_acquire_owned() else {
        return;
    };
    let body = match source {
        Source::Full(b) => ReqBody::Full(Some(b.clone())),
        _ => ReqBody::Empty,
    };
    let mut req = UpRequest {
        head: head.clone(),
        body,
    };
    let up = m.group.upstream.clone();
    let pp = up.settings.proxy_protocol;
    if pp.is_some() {
        req.head
            .fields
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let client = (x.conn.peer, x.conn.local);
    tokio::spawn(async move {
        let _slot = slot;
        let now = Instant::now();
        let Some(peer) = up.select(&Pick::default(), now) else {
            return;
        };
        let inflight = peer.start(now);
        let conn = match pp {
            Some(v) => peer.connect_with_proxy_header(v, Some(client), false).await,
            None => peer.checkout(now).await,
        };
        let Ok(conn) = conn else {
            return;
        };
        let rt = up.settings.read_timeout;
        if let Ok(resp) = rampart_upstream::send(conn, req, rt, None, inflight).await {
            use http_body_util::BodyExt;
            let mut b = resp.into_body();
            // Drain so the connection can be reused; bounded by the read timeout per frame.
            while let Some(Ok(_)) = b.frame().await {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_cidrs() {
        let t = CidrSet::new(vec![
            ("10.0.0.0".parse().unwrap(), 8),
            ("::1".parse().unwrap(), 128),
        ]);
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(t.contains("::ffff:10.0.0.1".parse().unwrap()));
    }

    /// The tokens `Connection` lists name hop-by-hop fields, whatever their case, spacing,
    /// number of values or count (beyond the four kept inline).
    #[test]
    fn connection_named_fields_are_hop_by_hop() {
        let name = |s: &str| HeaderName::from_bytes(s.as_bytes()).unwrap();
        let mut h = HeaderMap::new();
        assert!(!ConnectionNamed::of(&h).names(&name("x-a")));
        h.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        let c = ConnectionNamed::of(&h);
        assert_eq!(c.n, 0);
        assert!(is_hop(&KEEP_ALIVE, &c) && !is_hop(&name("x-a"), &c));
        h.append(header::CONNECTION, HeaderValue::from_static(" X-A ,,Close"));
        let c = ConnectionNamed::of(&h);
        assert!(c.names(&name("x-a")) && c.names(&name("close")));
        assert!(!c.names(&name("x-b")) && !c.names(&name("x-")));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("x-b, x-c, x-d, x-e, Upgrade"),
        );
        let c = ConnectionNamed::of(&h);
        assert!(c.more.is_some());
        for n in ["x-a", "close", "x-b", "x-c", "x-d", "x-e", "upgrade"] {
            assert!(c.names(&name(n)), "{n}");
        }
        assert!(!c.names(&name("x-f")));
    }

    #[test]
    fn ipv4_text_matches_display() {
        for a in ["0.0.0.0", "127.0.0.1", "10.200.9.255", "192.168.100.10"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(ip_text(ip), a);
        }
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(ip_text(v6), "::1");
    }

    #[test]
    fn cookies_and_args() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; sid=xyz"));
        assert_eq!(cookie(&h, "sid"), Some("xyz"));
        assert_eq!(cookie(&h, "s"), None);
        let u: Uri = "/p?x=1&user=bob&flag".parse().unwrap();
        assert_eq!(query_arg(&u, "user"), Some("bob"));
        assert_eq!(query_arg(&u, "flag"), Some(""));
        assert_eq!(query_arg(&u, "nope"), None);
    }

    #[test]
    fn mirror_share_is_exact() {
        let up = Arc::new(
            Upstream::new(rampart_upstream::UpstreamSettings {
                name: "m".into(),
                peers: vec![],
                method: rampart_upstream::Method::RoundRobin,
                connect_timeout: Duration::from_secs(1),
                send_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                pool: rampart_upstream::PoolSettings {
                    max_idle: 1,
                    idle_timeout: Duration::from_secs(1),
                    max_requests: 0,
                    buffer_size: 16 << 10,
                },
                health: None,
                breaker: rampart_upstream::BreakerSettings {
                    max_fails: 0,
                    fail_on_5xx: false,
                    cooldown: Duration::from_secs(1),
                    max_cooldown: Duration::from_secs(1),
                },
                retry: rampart_upstream::RetrySettings {
                    tries: 1,
                    methods: vec![],
                    on_error: false,
                    on_timeout: false,
                    statuses: vec![],
                    budget_percent: 0,
                    min_per_sec: 0,
                },
                max_inflight: 0,
                max_queue: 0,
                queue_timeout: Duration::from_secs(1),
                slow_start: Duration::ZERO,
                sticky: None,
                dns_refresh: Duration::from_secs(30),
                resolver: None,
                proxy_protocol: None,
            })
            .unwrap(),
        );
        let m = Mirror::new(
            Group {
                upstream: up,
                key: None,
            },
            12.5,
        );
        let n = (0..10_000).filter(|_| m.take()).count();
        assert_eq!(n, 1250);
    }
}
