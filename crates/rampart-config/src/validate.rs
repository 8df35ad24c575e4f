//! Semantic checks that serde cannot express. `rampart check` and every reload run these before
//! a config may replace the running one, so everything caught here can never break a live server.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::suggest;
use crate::model::{Config, Route, Server, Upstream};

/// One step of a path into the config tree, used to find the text location of a problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    /// A table key.
    Key(String),
    /// An array (of tables) index.
    Index(usize),
}

/// A semantic problem at a config path.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Where.
    pub path: Vec<PathSeg>,
    /// What.
    pub msg: String,
    /// A likely fix.
    pub did_you_mean: Option<String>,
}

fn k(s: &str) -> PathSeg {
    PathSeg::Key(s.to_string())
}

/// Parses a listen address: `"127.0.0.1:8080"`, `"[::1]:8080"`, `"*:80"` or `":80"` (all IPv4
/// addresses), or a bare port `"8080"` (all IPv4 addresses, like nginx's `listen 8080`).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    let port_text = t
        .strip_prefix("*:")
        .or_else(|| t.strip_prefix(':'))
        .unwrap_or(t);
    if let Ok(port) = port_text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Some((host, port)) = t.rsplit_once(':') {
        if host == "localhost" {
            if let Ok(port) = port.parse::<u16>() {
                return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
            }
        }
    }
    Err(format!(
        "invalid listen address {text:?}: expected IP:PORT such as \"127.0.0.1:8080\" or \"[::]:80\""
    ))
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_server_name(name: &str) -> bool {
    if name == "_" {
        return true;
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Checks everything serde could not; returns all problems found.
pub fn validate(cfg: &Config) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut push = |path: Vec<PathSeg>, msg: String, did_you_mean: Option<String>| {
        out.push(Violation {
            path,
            msg,
            did_you_mean,
        })
    };

    if let Some(a) = &cfg.admin.listen {
        if let Err(e) = parse_listen(a) {
            push(vec![k("admin"), k("listen")], e, None);
        }
    }
    if let Some(r) = &cfg.global.resolver {
        check_resolver(r, &[k("global"), k("resolver")], &mut push);
    }
    if cfg.global.workers > 1024 {
        push(
            vec![k("global"), k("workers")],
            "workers must be between 0 (one per CPU) and 1024".into(),
            None,
        );
    }
    let l = &cfg.limits;
    for (name, zero) in [
        ("max_connections", l.max_connections == 0),
        ("max_header_size", l.max_header_size.0 < 1024),
        ("max_headers", l.max_headers == 0),
        ("max_uri_length", l.max_uri_length.0 < 16),
        ("keepalive_requests", l.keepalive_requests == 0),
        (
            "h2_max_concurrent_streams",
            l.h2_max_concurrent_streams == 0,
        ),
        ("header_read_timeout", l.header_read_timeout.0.is_zero()),
    ] {
        if zero {
            push(
                vec![k("limits"), k(name)],
                format!("limits.{name} is too small"),
                None,
            );
        }
    }
    if l.max_uri_length.0 > l.max_header_size.0 {
        push(
            vec![k("limits"), k("max_uri_length")],
            "limits.max_uri_length cannot exceed limits.max_header_size".into(),
            None,
        );
    }

    if cfg.servers.is_empty() {
        push(
            vec![],
            "no [[server]] defined: add at least one server with a listen address and a route"
                .into(),
            None,
        );
    }

    // (listen address, server name) pairs must be unique; one default per address.
    let mut seen_names: HashMap<(SocketAddr, String), usize> = HashMap::new();
    let mut defaults: HashMap<SocketAddr, usize> = HashMap::new();
    // The PROXY header comes before any HTTP (before the Host header that picks a server), so
    // it is a property of the listen address: every server there must say the same.
    let mut proxy_protocol: HashMap<SocketAddr, (bool, usize)> = HashMap::new();
    for (si, server) in cfg.servers.iter().enumerate() {
        let sp = |rest: &[&str]| {
            let mut p = vec![k("server"), PathSeg::Index(si)];
            p.extend(rest.iter().map(|s| k(s)));
            p
        };
        if server.listen.is_empty() {
            push(
                sp(&["listen"]),
                "a server needs at least one listen address".into(),
                None,
            );
        }
        for name in &server.server_names {
            if !valid_server_name(name) {
                push(
                    sp(&["server_names"]),
                    format!(
                        "invalid server name {name:?}: use a host name, \"*.example.com\" or \"_\""
                    ),
                    None,
                );
            }
        }
        for (li, addr) in server.listen.iter().enumerate() {
            let mut path = sp(&["listen"]);
            path.push(PathSeg::Index(li));
            let addr = match parse_listen(addr) {
                Ok(a) => a,
                Err(e) => {
                    push(path, e, None);
                    continue;
                }
            };
            for name in &server.server_names {
                if let Some(prev) = seen_names.insert((addr, name.to_ascii_lowercase()), si) {
                    if prev != si {
                        push(
                            sp(&["server_names"]),
                            format!(
                                "duplicate server name {name:?} on {addr}: server #{} already has it",
                                prev + 1
                            ),
                            None,
                        );
                    }
                }
            }
            match proxy_protocol.get(&addr) {
                Some(&(prev, pi)) if prev != server.proxy_protocol && pi != si => push(
                    sp(&["proxy_protocol"]),
                    format!(
                        "proxy_protocol = {} here but {prev} on server #{} that also listens on {addr}: \
                         every server on one address must agree (the PROXY header arrives before the \
                         Host header that chooses the server)",
                        server.proxy_protocol,
                        pi + 1
                    ),
                    None,
                ),
                Some(_) => {}
                None => {
                    proxy_protocol.insert(addr, (server.proxy_protocol, si));
                }
            }
            if server.default {
                if let Some(prev) = defaults.insert(addr, si) {
                    if prev != si {
                        push(
                            sp(&["default"]),
                            format!(
                                "two default servers on {addr}: server #{} is already the default",
                                prev + 1
                            ),
                            None,
                        );
                    }
                }
            }
        }
        check_headers(&server.headers, sp(&["headers"]), &mut push);
        check_error_pages(&server.error_pages, sp(&["error_pages"]), &mut push);
        if let Some(w) = &server.waf {
            check_waf(w, &sp(&["waf"]), &mut push);
        }
        if let Some(a) = &server.access {
            check_access(a, &sp(&["access"]), &mut push);
        }
        check_routes(server, si, &cfg.upstreams, &mut push);
    }
    for (i, t) in cfg.global.trusted_proxies.iter().enumerate() {
        if parse_cidr(t).is_none() {
            push(
                vec![k("global"), k("trusted_proxies"), PathSeg::Index(i)],
                format!("invalid address or CIDR {t:?} (write e.g. \"10.0.0.0/8\" or \"::1\")"),
                None,
            );
        }
    }
    for (name, u) in &cfg.upstreams {
        check_upstream(name, u, &mut push);
    }
    out
}

/// Parses `"10.0.0.0/8"`, `"fd00::/8"` or a bare address into (network, prefix length).
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let t = text.trim();
    let (ip, len) = match t.split_once('/') {
        Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
        None => {
            let ip = t.parse::<IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// Parses a DNS server address: `"10.0.0.2"` (port 53), `"127.0.0.1:5353"`, `"[::1]:53"`.
pub fn parse_dns_server(text: &str) -> Option<SocketAddr> {
    let t = text.trim();
    t.parse::<SocketAddr>()
        .ok()
        .or_else(|| t.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

fn check_resolver(r: &crate::model::Resolver, base: &[PathSeg], push: &mut Push<'_>) {
    let at = |key: &str| {
        let mut p = base.to_vec();
        p.push(k(key));
        p
    };
    if r.servers.is_empty() {
        push(
            at("servers"),
            "a resolver needs `servers`, e.g. [\"127.0.0.1:53\"]".into(),
            None,
        );
    }
    for (i, s) in r.servers.iter().enumerate() {
        if parse_dns_server(s).is_none() {
            let mut p = at("servers");
            p.push(PathSeg::Index(i));
            push(
                p,
                format!("{s:?} is not an IP address with an optional port (host names cannot resolve themselves)"),
                None,
            );
        }
    }
    if r.min_ttl.0.is_zero() {
        push(
            at("min_ttl"),
            "min_ttl must be more than 0 (a TTL of 0 would query without pause)".into(),
            None,
        );
    }
    if r.max_ttl.0 < r.min_ttl.0 {
        push(at("max_ttl"), "max_ttl is less than min_ttl".into(), None);
    }
    if r.timeout.0.is_zero() {
        push(at("timeout"), "timeout must be more than 0".into(), None);
    }
    if r.valid.is_some_and(|v| v.0.is_zero()) {
        push(at("valid"), "valid must be more than 0".into(), None);
    }
}

/// What an upstream server address names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// A host name or IP address and a port.
    Tcp {
        /// Host name or IP literal (without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix domain socket path.
    Unix(std::path::PathBuf),
}

/// Parses `"host:port"`, `"http://host:port"` (port 80 by default), `"grpc://host:port"`
/// (HTTP/2 cleartext, see [`is_grpc_addr`]) or `"unix:/path"`.
pub fn parse_upstream_addr(text: &str) -> Result<UpstreamAddr, String> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("grpc://") {
        // gRPC has no default port: `host:port` is required, nothing else.
        let rest = rest.trim_end_matches('/');
        if rest.contains("://") || rest.starts_with("unix:") {
            return Err(format!("{text:?}: expected grpc://host:port"));
        }
        let has_port = rest
            .rsplit_once(':')
            .is_some_and(|(h, p)| !p.is_empty() && !h.is_empty() && !p.contains(']'));
        if !has_port {
            return Err(format!(
                "{text:?}: missing port; write \"grpc://{rest}:50051\""
            ));
        }
        return parse_upstream_addr(rest);
    }
    if t.starts_with("grpcs://") {
        return Err(format!(
            "{text:?}: TLS to upstream servers is not supported yet; use grpc://"
        ));
    }
    if let Some(path) = t.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(format!(
                "unix socket {text:?} needs an absolute path: \"unix:/run/app.sock\""
            ));
        }
        return Ok(UpstreamAddr::Unix(path.into()));
    }
    if t.starts_with("https://") {
        return Err(format!(
            "{text:?}: TLS to upstream servers is not supported yet; use http://"
        ));
    }
    let (rest, default_port) = match t.strip_prefix("http://") {
        Some(r) => (r.trim_end_matches('/'), Some(80)),
        None => (t, None),
    };
    if rest.contains('/') || rest.contains('?') {
        return Err(format!(
            "{text:?}: an upstream server is an address, not a URL with a path"
        ));
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: unclosed '[' in IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("{text:?}: expected :PORT after the IPv6 address")),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{text:?}: invalid port {p:?}"))?,
        None => default_port.ok_or_else(|| {
            format!("{text:?}: missing port; write \"{rest}:8080\" or \"http://{rest}\"")
        })?,
    };
    if host.is_empty()
        || !(host.parse::<IpAddr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
    {
        return Err(format!("{text:?}: invalid host name"));
    }
    Ok(UpstreamAddr::Tcp { host, port })
}

/// Whether a server address names an HTTP/2 cleartext server (`grpc://host:port`, as nginx's
/// `grpc_pass grpc://`): such a server is spoken to with `protocol = "h2c"` whatever its
/// group's setting.
pub fn is_grpc_addr(text: &str) -> bool {
    text.trim().starts_with("grpc://")
}

/// Splits a `proxy = "http://host:port/path"` URL into (server address, path).
pub fn split_proxy_url(url: &str) -> Option<(String, Option<String>)> {
    let rest = url.strip_prefix("http://")?;
    match rest.find('/') {
        Some(i) => Some((rest[..i].to_string(), Some(rest[i..].to_string()))),
        None => Some((rest.to_string(), None)),
    }
}

/// Parses `"200-399"` or `"200,204,301-302"` into inclusive ranges.
pub fn parse_status_ranges(text: &str) -> Option<Vec<(u16, u16)>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let v: u16 = part.parse().ok()?;
                (v, v)
            }
        };
        if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
            return None;
        }
        out.push((a, b));
    }
    (!out.is_empty()).then_some(out)
}

const HASH_KEYS: &[&str] = &["uri", "path", "ip", "header:", "cookie:", "arg:"];

fn check_upstream(name: &str, u: &Upstream, push: &mut Push<'_>) {
    let up = |rest: &[&str]| {
        let mut p = vec![k("upstream"), k(name)];
        p.extend(rest.iter().map(|s| k(s)));
        p
    };
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        push(
            up(&[]),
            format!("upstream name {name:?} may use letters, digits, '-', '_' and '.'"),
            None,
        );
    }
    if u.servers.is_empty() {
        push(
            up(&["servers"]),
            format!("upstream {name} has no servers"),
            None,
        );
    }
    let mut ids = HashSet::new();
    for (i, s) in u.servers.iter().enumerate() {
        let mut p = up(&["servers"]);
        p.push(PathSeg::Index(i));
        if let Err(e) = parse_upstream_addr(&s.addr) {
            push(p.clone(), e, None);
        }
        if s.weight == 0 || s.weight > 10_000 {
            push(
                p.clone(),
                "weight must be 1-10000 (use `down = true` to take a server out)".into(),
                None,
            );
        }
        let id = s.id.clone().unwrap_or_else(|| s.addr.clone());
        if !ids.insert(id.clone()) {
            push(
                p,
                format!("server {id:?} is listed twice in upstream {name}"),
                None,
            );
        }
    }
    if !u.servers.is_empty() && u.servers.iter().all(|s| s.backup) {
        push(
            up(&["servers"]),
            "every server is a backup: at least one must be a primary".into(),
            None,
        );
    }
    match (u.balance, &u.hash_key) {
        (crate::model::Balance::Hash, None) => push(
            up(&["balance"]),
            "balance = \"hash\" needs `hash_key` (\"uri\", \"header:NAME\", \"cookie:NAME\", \"arg:NAME\"…)"
                .into(),
            None,
        ),
        (_, Some(key)) => {
            let ok = match key.split_once(':') {
                Some((kind, arg)) => {
                    ["header", "cookie", "arg"].contains(&kind) && !arg.is_empty()
                }
                None => ["uri", "path", "ip"].contains(&key.as_str()),
            };
            if !ok {
                push(
                    up(&["hash_key"]),
                    format!("invalid hash_key {key:?}"),
                    suggest(key, HASH_KEYS.iter().copied()),
                );
            }
        }
        _ => {}
    }
    for (key, d) in [
        ("connect_timeout", u.connect_timeout),
        ("send_timeout", u.send_timeout),
        ("read_timeout", u.read_timeout),
    ] {
        if d.0.is_zero() {
            push(up(&[key]), format!("{key} must be above 0"), None);
        }
    }
    if !(8 << 10..=1 << 20).contains(&u.buffer_size.0) {
        push(
            up(&["buffer_size"]),
            format!(
                "buffer_size must be between 8KiB and 1MiB (got {} bytes)",
                u.buffer_size.0
            ),
            None,
        );
    }
    if let Some(h) = &u.health_check {
        if parse_status_ranges(&h.expect_status).is_none() {
            push(
                up(&["health_check", "expect_status"]),
                format!(
                    "invalid expect_status {:?}: write e.g. \"200-399\" or \"200,204\"",
                    h.expect_status
                ),
                None,
            );
        }
        if !h.path.starts_with('/') {
            push(
                up(&["health_check", "path"]),
                "health check path must start with '/'".into(),
                None,
            );
        }
        if h.interval.0.is_zero() || h.timeout.0.is_zero() {
            push(
                up(&["health_check"]),
                "interval and timeout must be above 0".into(),
                None,
            );
        }
        if h.rise == 0 || h.fall == 0 {
            push(
                up(&["health_check"]),
                "rise and fall must be at least 1".into(),
                None,
            );
        }
    }
    if u.retry.tries == 0 || u.retry.tries > 10 {
        push(
            up(&["retry", "tries"]),
            "tries is 1 (no retry) to 10".into(),
            None,
        );
    }
    for (i, m) in u.retry.methods.iter().enumerate() {
        if !is_token(m) {
            let mut p = up(&["retry", "methods"]);
            p.push(PathSeg::Index(i));
            push(p, format!("invalid method {m:?}"), None);
        }
    }
    for (i, s) in u.retry.statuses.iter().enumerate() {
        if !(100..=599).contains(s) {
            let mut p = up(&["retry", "statuses"]);
            p.push(PathSeg::Index(i));
            push(p, format!("status {s} is not 100-599"), None);
        }
    }
    if u.retry.budget_percent > 100 {
        push(
            up(&["retry", "budget_percent"]),
            "budget_percent is 0-100".into(),
            None,
        );
    }
    if let Some(r) = &u.resolver {
        check_resolver(r, &up(&["resolver"]), push);
    }
    if let Some(s) = &u.sticky {
        match (&s.cookie, &s.learn) {
            (Some(c), None) | (None, Some(c)) if is_token(c) => {}
            (Some(_), Some(_)) => push(
                up(&["sticky"]),
                "sticky takes `cookie` (insert) or `learn` (application cookie), not both".into(),
                None,
            ),
            (None, None) => push(
                up(&["sticky"]),
                "sticky needs `cookie = \"NAME\"` or `learn = \"NAME\"`".into(),
                None,
            ),
            _ => push(up(&["sticky"]), "invalid cookie name".into(), None),
        }
    }
}

fn check_proxy_route(
    r: &Route,
    upstreams: &std::collections::BTreeMap<String, Upstream>,
    rp: &dyn Fn(&[&str]) -> Vec<PathSeg>,
    push: &mut Push<'_>,
) {
    let names = || upstreams.keys().map(String::as_str);
    let known = |key: &[&str], name: &str, push: &mut Push<'_>| {
        if !upstreams.contains_key(name) {
            push(
                rp(key),
                format!("no [upstream.{name}] is defined"),
                suggest(name, names()),
            );
        }
    };
    if let Some(p) = &r.proxy {
        if p.contains("://") {
            match split_proxy_url(p) {
                Some((addr, path)) => {
                    if let Err(e) = parse_upstream_addr(&format!("http://{addr}")) {
                        push(rp(&["proxy"]), e, None);
                    }
                    if path.as_deref().is_some_and(|p| p.contains('?')) {
                        push(
                            rp(&["proxy"]),
                            "a proxy URL has no query string".into(),
                            None,
                        );
                    }
                }
                None => push(
                    rp(&["proxy"]),
                    format!("{p:?}: only http:// URLs can be proxied to (TLS upstreams are not supported yet)"),
                    None,
                ),
            }
        } else {
            known(&["proxy"], p, push);
        }
    }
    let is_proxy = r.proxy.is_some() || !r.split.is_empty();
    for (i, t) in r.split.iter().enumerate() {
        known(&["split"], &t.upstream, push);
        if t.weight > 10_000 {
            let mut p = rp(&["split"]);
            p.push(PathSeg::Index(i));
            push(p, "split weight is 0-10000".into(), None);
        }
    }
    if !r.split.is_empty() && r.split.iter().all(|t| t.weight == 0) {
        push(
            rp(&["split"]),
            "every split weight is 0: at least one target needs traffic".into(),
            None,
        );
    }
    for rule in &r.split_rules {
        known(&["split_rules"], &rule.upstream, push);
        if rule.header.is_some() == rule.cookie.is_some() {
            push(
                rp(&["split_rules"]),
                "a split rule compares either a `header` or a `cookie`".into(),
                None,
            );
        }
    }
    if let Some(m) = &r.mirror {
        known(&["mirror", "upstream"], &m.upstream, push);
        if !(0.0..=100.0).contains(&m.percent) {
            push(rp(&["mirror", "percent"]), "percent is 0-100".into(), None);
        }
    }
    let proxy_only = [
        ("proxy_path", r.proxy_path.is_some()),
        ("proxy_host", r.proxy_host.is_some()),
        (
            "proxy_request_headers",
            r.proxy_request_headers != Default::default(),
        ),
        ("proxy_connect_timeout", r.proxy_connect_timeout.is_some()),
        ("proxy_read_timeout", r.proxy_read_timeout.is_some()),
        ("proxy_send_timeout", r.proxy_send_timeout.is_some()),
        ("proxy_buffer_request", r.proxy_buffer_request),
        ("websocket_idle_timeout", r.websocket_idle_timeout.is_some()),
        ("split_rules", !r.split_rules.is_empty()),
        ("mirror", r.mirror.is_some()),
    ];
    if !is_proxy {
        for (key, set) in proxy_only {
            if set {
                push(
                    rp(&[key]),
                    format!("`{key}` only applies to routes with `proxy` or `split`"),
                    None,
                );
            }
        }
    }
    if let Some(p) = &r.proxy_path {
        if !p.starts_with('/') {
            push(
                rp(&["proxy_path"]),
                "proxy_path must start with '/'".into(),
                None,
            );
        }
        if r.prefix.is_none() && r.exact.is_none() {
            push(
                rp(&["proxy_path"]),
                "proxy_path replaces the route's `prefix`: give the route a prefix".into(),
                None,
            );
        }
    }
    if let Some(h) = &r.proxy_host {
        if h.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            push(rp(&["proxy_host"]), "invalid proxy_host".into(), None);
        }
    }
    check_headers(
        &r.proxy_request_headers,
        rp(&["proxy_request_headers"]),
        push,
    );
}

type Push<'a> = dyn FnMut(Vec<PathSeg>, String, Option<String>) + 'a;

fn check_headers(h: &crate::model::HeaderOps, base: Vec<PathSeg>, push: &mut Push<'_>) {
    for (name, value) in h.add.iter().chain(&h.append) {
        let mut p = base.clone();
        p.extend([k("add"), k(name)]);
        if !is_token(name) {
            push(p, format!("invalid header name {name:?}"), None);
        } else if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            push(
                p,
                format!("header {name} has a CR, LF or NUL in its value"),
                None,
            );
        }
    }
    for (i, name) in h.remove.iter().enumerate() {
        if !is_token(name) {
            let mut p = base.clone();
            p.extend([k("remove"), PathSeg::Index(i)]);
            push(p, format!("invalid header name {name:?}"), None);
        }
    }
}

fn check_error_pages(
    pages: &std::collections::BTreeMap<String, String>,
    base: Vec<PathSeg>,
    push: &mut Push<'_>,
) {
    for (code, uri) in pages {
        let mut p = base.clone();
        p.push(k(code));
        match code.parse::<u16>() {
            Ok(c) if (300..=599).contains(&c) => {}
            _ => push(
                p.clone(),
                format!("error_pages key {code:?} must be a status code 300-599"),
                None,
            ),
        }
        if !uri.starts_with('/') {
            push(
                p,
                format!("error page {uri:?} must be a URI starting with '/'"),
                None,
            );
        }
    }
}

fn check_routes(
    server: &Server,
    si: usize,
    upstreams: &std::collections::BTreeMap<String, Upstream>,
    push: &mut Push<'_>,
) {
    let mut exacts = HashSet::new();
    let mut prefixes = HashSet::new();
    for (ri, r) in server.routes.iter().enumerate() {
        let rp = |rest: &[&str]| {
            let mut p = vec![
                k("server"),
                PathSeg::Index(si),
                k("route"),
                PathSeg::Index(ri),
            ];
            p.extend(rest.iter().map(|s| k(s)));
            p
        };
        let matchers = [r.prefix.is_some(), r.exact.is_some(), r.regex.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if matchers > 1 {
            push(
                rp(&[]),
                "a route has one of `prefix`, `exact` or `regex`, not several".into(),
                None,
            );
        }
        for (key, v) in [("prefix", &r.prefix), ("exact", &r.exact)] {
            if let Some(v) = v {
                if !v.starts_with('/') {
                    push(rp(&[key]), format!("{key} {v:?} must start with '/'"), None);
                }
            }
        }
        // Same path twice is a mistake unless method/header matchers tell the routes apart.
        let mut methods = r.methods.clone();
        methods.sort();
        let conds = format!("{methods:?}{:?}", r.match_headers);
        if let Some(e) = &r.exact {
            if !exacts.insert((e.clone(), conds.clone())) {
                push(rp(&["exact"]), format!("duplicate exact route {e:?}"), None);
            }
        }
        if let Some(p) = &r.prefix {
            if !prefixes.insert((p.clone(), conds)) {
                push(
                    rp(&["prefix"]),
                    format!("duplicate prefix route {p:?}"),
                    None,
                );
            }
        }
        if let Some(re) = &r.regex {
            if let Err(e) = regex::RegexBuilder::new(re)
                .case_insensitive(r.regex_case_insensitive)
                .size_limit(1 << 20)
                .build()
            {
                let first = e.to_string().lines().last().unwrap_or_default().to_string();
                push(
                    rp(&["regex"]),
                    format!("invalid regex {re:?}: {first}"),
                    None,
                );
            }
        }
        for (i, m) in r.methods.iter().enumerate() {
            // Extension methods (WebDAV's PROPFIND…) are fine; a near-miss of a standard one is a typo.
            let typo = suggest(&m.to_ascii_uppercase(), METHODS.iter().copied());
            let bad = !METHODS.contains(&m.as_str())
                && (typo.is_some() || !is_token(m) || m.to_ascii_uppercase() != *m);
            if bad {
                let mut p = rp(&["methods"]);
                p.push(PathSeg::Index(i));
                push(p, format!("unknown method {m:?}"), typo);
            }
        }
        for name in r.match_headers.keys() {
            if !is_token(name) {
                push(
                    rp(&["match_headers"]),
                    format!("invalid header name {name:?}"),
                    None,
                );
            }
        }
        check_handler(r, &rp, push);
        check_proxy_route(r, upstreams, &rp, push);
        if let Some(w) = &r.waf {
            check_waf(w, &rp(&["waf"]), push);
        }
        if let Some(a) = &r.access {
            check_access(a, &rp(&["access"]), push);
        }
        check_headers(&r.headers, rp(&["headers"]), push);
        check_error_pages(&r.error_pages, rp(&["error_pages"]), push);
        if let Some(c) = &r.compress {
            for (i, a) in c.algorithms.iter().enumerate() {
                if !["br", "zstd", "gzip"].contains(&a.as_str()) {
                    let mut p = rp(&["compress", "algorithms"]);
                    p.push(PathSeg::Index(i));
                    push(
                        p,
                        format!("unknown compression {a:?} (use br, zstd or gzip)"),
                        suggest(a, ["br", "zstd", "gzip"]),
                    );
                }
            }
            if !(1..=9).contains(&c.gzip_level) {
                push(
                    rp(&["compress", "gzip_level"]),
                    "gzip_level is 1-9".into(),
                    None,
                );
            }
            if c.brotli_quality > 11 {
                push(
                    rp(&["compress", "brotli_quality"]),
                    "brotli_quality is 0-11".into(),
                    None,
                );
            }
            if !(1..=19).contains(&c.zstd_level) {
                push(
                    rp(&["compress", "zstd_level"]),
                    "zstd_level is 1-19".into(),
                    None,
                );
            }
        }
        if let Some(cc) = &r.cache_control {
            if cc.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                push(
                    rp(&["cache_control"]),
                    "cache_control has a CR, LF or NUL".into(),
                    None,
                );
            }
        }
    }
}

fn check_handler(r: &Route, rp: &dyn Fn(&[&str]) -> Vec<PathSeg>, push: &mut Push<'_>) {
    let handlers: Vec<&str> = [
        ("root", r.root.is_some()),
        ("alias", r.alias.is_some()),
        ("return", r.ret.is_some()),
        ("builtin", r.builtin.is_some()),
        ("proxy", r.proxy.is_some()),
        ("split", !r.split.is_empty()),
        ("forward_proxy", r.forward_proxy.is_some()),
    ]
    .iter()
    .filter(|(_, b)| *b)
    .map(|(n, _)| *n)
    .collect();
    match handlers.len() {
        0 => push(
            rp(&[]),
            "a route needs a handler: `root`, `alias`, `return`, `builtin`, `proxy`, `split` or `forward_proxy`"
                .into(),
            None,
        ),
        1 => {}
        _ => push(
            rp(&[]),
            format!(
                "a route has exactly one handler, found {}",
                handlers.join(" and ")
            ),
            None,
        ),
    }
    if let Some(f) = &r.forward_proxy {
        check_forward_proxy(r, f, rp, push);
    }
    for (key, dir) in [("root", &r.root), ("alias", &r.alias)] {
        if let Some(d) = dir {
            match std::fs::metadata(d) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => push(
                    rp(&[key]),
                    format!("{key} {} is not a directory", d.display()),
                    None,
                ),
                Err(e) => push(rp(&[key]), format!("{key} {}: {e}", d.display()), None),
            }
        }
    }
    if r.alias.is_some() && r.prefix.is_none() && r.exact.is_none() {
        push(
            rp(&["alias"]),
            "`alias` replaces a route prefix: give the route a `prefix` (or use `root`)".into(),
            None,
        );
    }
    if let Some(ret) = &r.ret {
        if !(100..=599).contains(&ret.status) {
            push(
                rp(&["return", "status"]),
                format!("status {} is not 100-599", ret.status),
                None,
            );
        } else if matches!(ret.status, 301 | 302 | 303 | 307 | 308) && ret.location.is_none() {
            push(
                rp(&["return"]),
                format!("a {} redirect needs `location`", ret.status),
                None,
            );
        }
        if ret
            .location
            .as_deref()
            .is_some_and(|l| l.contains(['\r', '\n']))
        {
            push(
                rp(&["return", "location"]),
                "location has a CR or LF".into(),
                None,
            );
        }
    }
    let n = r.try_files.len();
    for (i, t) in r.try_files.iter().enumerate() {
        let mut p = rp(&["try_files"]);
        p.push(PathSeg::Index(i));
        if let Some(code) = t.strip_prefix('=') {
            if i + 1 != n {
                push(
                    p.clone(),
                    "`=CODE` must be the last try_files entry".into(),
                    None,
                );
            }
            if !code.parse::<u16>().is_ok_and(|c| (200..=599).contains(&c)) {
                push(
                    p,
                    format!("try_files {t:?}: expected =404 or another status"),
                    None,
                );
            }
        } else if !t.starts_with('/') && !t.starts_with("$uri") {
            push(
                p,
                format!("try_files entry {t:?} must start with '/' or $uri"),
                None,
            );
        }
    }
    if !r.try_files.is_empty() && r.root.is_none() && r.alias.is_none() {
        push(
            rp(&["try_files"]),
            "try_files needs `root` or `alias`".into(),
            None,
        );
    }
}

/// A forward-proxy route takes every CONNECT of its server, whatever the path: path and method
/// matchers would only mislead.
fn check_forward_proxy(
    r: &Route,
    f: &crate::model::ForwardProxy,
    rp: &dyn Fn(&[&str]) -> Vec<PathSeg>,
    push: &mut Push<'_>,
) {
    for (key, set) in [
        ("prefix", r.prefix.is_some()),
        ("exact", r.exact.is_some()),
        ("regex", r.regex.is_some()),
        ("prefix_priority", r.prefix_priority),
        ("methods", !r.methods.is_empty()),
    ] {
        if set {
            push(
                rp(&[key]),
                format!("a `forward_proxy` route takes CONNECT requests only: `{key}` does not apply (use `match_headers` to narrow it)"),
                None,
            );
        }
    }
    if f.allow_ports.is_empty() {
        push(
            rp(&["forward_proxy", "allow_ports"]),
            "allow_ports is empty: every CONNECT would be refused".into(),
            None,
        );
    }
    if f.allow_ports.contains(&0) {
        push(
            rp(&["forward_proxy", "allow_ports"]),
            "port 0 cannot be connected to".into(),
            None,
        );
    }
    if f.allow_hosts.is_empty() {
        push(
            rp(&["forward_proxy", "allow_hosts"]),
            "allow_hosts is required: `[\"*\"]` allows any host, or list names, `*.domain`, addresses and CIDRs".into(),
            None,
        );
    }
    for (i, h) in f.allow_hosts.iter().enumerate() {
        let ok = h == "*"
            || parse_cidr(h).is_some()
            || (h != "_" && !h.contains('/') && valid_server_name(h));
        if !ok {
            let mut p = rp(&["forward_proxy", "allow_hosts"]);
            p.push(PathSeg::Index(i));
            push(
                p,
                format!("{h:?} is not a host name, `*.domain`, `*`, address or CIDR"),
                None,
            );
        }
    }
    for (key, d) in [
        ("connect_timeout", f.connect_timeout),
        ("idle_timeout", f.idle_timeout),
    ] {
        if d.0.is_zero() {
            push(
                rp(&["forward_proxy", key]),
                format!("{key} must be more than 0"),
                None,
            );
        }
    }
}

fn check_waf(w: &crate::model::Waf, base: &[PathSeg], push: &mut Push<'_>) {
    let at = |k: &str| {
        let mut p = base.to_vec();
        p.push(PathSeg::Key(k.to_string()));
        p
    };
    if let Some(dir) = &w.crs {
        if !dir.join("rules").is_dir() {
            push(
                at("crs"),
                format!(
                    "{} is not an OWASP CRS directory (no rules/ inside)",
                    dir.display()
                ),
                None,
            );
        }
    }
    for (i, r) in w.rules.iter().enumerate() {
        if !r.contains(['*', '?']) && !std::path::Path::new(r).is_file() {
            let mut p = at("rules");
            p.push(PathSeg::Index(i));
            push(p, format!("rule file {r:?} not found"), None);
        }
    }
    if let Some(p) = w.paranoia {
        if !(1..=4).contains(&p) {
            push(at("paranoia"), "paranoia is 1-4".into(), None);
        }
    }
    if w.anomaly_threshold == Some(0) {
        push(
            at("anomaly_threshold"),
            "anomaly_threshold must be at least 1".into(),
            None,
        );
    }
}

fn check_access(a: &crate::model::Access, base: &[PathSeg], push: &mut Push<'_>) {
    let at = |k: &str| {
        let mut p = base.to_vec();
        p.push(PathSeg::Key(k.to_string()));
        p
    };
    for (key, list) in [("allow", &a.allow), ("deny", &a.deny)] {
        for (i, t) in list.iter().enumerate() {
            if parse_cidr(t).is_none() {
                let mut p = at(key);
                p.push(PathSeg::Index(i));
                push(p, format!("invalid address or CIDR {t:?}"), None);
            }
        }
    }
    for (i, f) in a.deny_files.iter().enumerate() {
        if !f.is_file() {
            let mut p = at("deny_files");
            p.push(PathSeg::Index(i));
            push(p, format!("{} not found", f.display()), None);
        }
    }
    if let Some(r) = &a.rate_limit {
        if !(r.rate > 0.0 && r.rate.is_finite()) {
            push(
                at("rate_limit"),
                "rate must be above 0 (requests per second)".into(),
                None,
            );
        }
        if r.burst == 0 {
            push(at("rate_limit"), "burst must be at least 1".into(), None);
        }
        let ok = r.key == "ip"
            || r.key == "route"
            || r.key.strip_prefix("header:").is_some_and(is_token);
        if !ok {
            push(
                at("rate_limit"),
                format!(
                    "invalid rate limit key {:?}: \"ip\", \"route\" or \"header:NAME\"",
                    r.key
                ),
                suggest(&r.key, ["ip", "route"]),
            );
        }
    }
    for (i, o) in a.csrf_trusted_origins.iter().enumerate() {
        if !(o.starts_with("http://") || o.starts_with("https://")) {
            let mut p = at("csrf_trusted_origins");
            p.push(PathSeg::Index(i));
            push(
                p,
                format!("origin {o:?} must start with http:// or https://"),
                None,
            );
        }
    }
}
