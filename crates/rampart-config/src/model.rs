//! The configuration model: what a `rampart.toml` file deserializes into.
//!
//! Every struct denies unknown keys so a misspelt key is an error (with a suggestion), and every
//! field has a documented default (docs/config.md) so a minimal file is a few lines.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::units::{Dur, Size};

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Process-wide settings.
    pub global: Global,
    /// Connection and request limits shared by every listener.
    pub limits: Limits,
    /// The admin listener (health, metrics, running config). Off unless `listen` is set.
    pub admin: Admin,
    /// Virtual hosts.
    #[serde(rename = "server")]
    pub servers: Vec<Server>,
    /// Upstream groups (application servers) that `proxy` routes send requests to.
    #[serde(rename = "upstream")]
    pub upstreams: BTreeMap<String, Upstream>,
}

/// Process-wide settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Global {
    /// Worker threads; 0 = the number of CPUs this process may run on (its affinity mask).
    pub workers: usize,
    /// Diagnostic log level: error, warn, info, debug, trace.
    pub log_level: LogLevel,
    /// Diagnostic log format.
    pub log_format: DiagFormat,
    /// Send a `Server: rampart` header.
    pub server_header: bool,
    /// Where to write the process id, used by `rampart reload`.
    pub pid_file: Option<PathBuf>,
    /// How long in-flight requests may take to finish after SIGTERM or a reload.
    pub drain_timeout: Dur,
    /// Peers (CIDRs) whose `X-Forwarded-*`/`Forwarded` headers are believed; from anyone else
    /// those headers are replaced, so a client cannot forge its address to the upstreams.
    pub trusted_proxies: Vec<String>,
    /// DNS servers for upstream host names (every group without its own `resolver`); names
    /// are then re-resolved on their TTL instead of every `dns_refresh`.
    pub resolver: Option<Resolver>,
}

/// A DNS server asked directly for upstream host names (nginx's `resolver`), so that each
/// answer's TTL says when to ask again (the system resolver does not tell).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Resolver {
    /// `"10.0.0.2"` (port 53) or `"127.0.0.1:5353"`, `"[fd00::2]:53"`; tried in order.
    pub servers: Vec<String>,
    /// Re-resolve this often whatever the TTL (nginx's `valid=`); unset = the TTL.
    pub valid: Option<Dur>,
    /// Shortest interval between two queries for a name (a TTL of 0 must not spin).
    pub min_ttl: Dur,
    /// Longest interval (a TTL of a day would hide a move for a day).
    pub max_ttl: Dur,
    /// Time for one query attempt (two attempts per server).
    pub timeout: Dur,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            servers: Vec::new(),
            valid: None,
            min_ttl: Dur::secs(1),
            max_ttl: Dur::secs(3600),
            timeout: Dur::secs(5),
        }
    }
}

impl Default for Global {
    fn default() -> Self {
        Global {
            workers: 0,
            log_level: LogLevel::Info,
            log_format: DiagFormat::Text,
            server_header: true,
            pid_file: None,
            drain_timeout: Dur::secs(30),
            trusted_proxies: Vec::new(),
            resolver: None,
        }
    }
}

/// Diagnostic log levels.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Diagnostic log formats.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum DiagFormat {
    Text,
    Json,
}

/// Limits and timeouts. Defaults follow nginx where nginx has one.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections at most; further accepts wait (nginx: worker_connections 512).
    pub max_connections: usize,
    /// Bytes of request line plus headers (nginx: large_client_header_buffers 4 8k → 32k).
    pub max_header_size: Size,
    /// Number of request header fields.
    pub max_headers: usize,
    /// Bytes of request target (nginx: 8k buffer → 414).
    pub max_uri_length: Size,
    /// Request body size; larger → 413 (nginx: client_max_body_size 1m).
    pub max_body_size: Size,
    /// Time to receive the full request head; then 408 and close (nginx: client_header_timeout 60s).
    pub header_read_timeout: Dur,
    /// Time between two body reads (nginx: client_body_timeout 60s).
    pub body_read_timeout: Dur,
    /// Idle time on a keep-alive connection (nginx: keepalive_timeout 75s).
    pub keepalive_timeout: Dur,
    /// Longest wait for a client to take more response bytes; then the connection closes
    /// (nginx: send_timeout 60s).
    pub send_timeout: Dur,
    /// Requests per connection before it is closed (nginx: keepalive_requests 1000).
    pub keepalive_requests: u64,
    /// Concurrent HTTP/2 streams per connection (nginx: http2_max_concurrent_streams 128).
    pub h2_max_concurrent_streams: u32,
    /// Open connections per client address at most (0 = no limit); over it a connection is
    /// answered 429 and closed (nginx's limit_conn).
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_header_size: Size(32 << 10),
            max_headers: 100,
            max_uri_length: Size(8 << 10),
            max_body_size: Size(1 << 20),
            header_read_timeout: Dur::secs(60),
            body_read_timeout: Dur::secs(60),
            keepalive_timeout: Dur::secs(75),
            send_timeout: Dur::secs(60),
            keepalive_requests: 1000,
            h2_max_concurrent_streams: 128,
            max_connections_per_ip: 0,
        }
    }
}

/// The admin listener.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address to listen on, e.g. `"127.0.0.1:9901"`. Unset = no admin listener.
    pub listen: Option<String>,
}

/// A virtual host.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Host names: exact (`example.com`), leading wildcard (`*.example.com`) or `"_"` (none).
    pub server_names: Vec<String>,
    /// Addresses, e.g. `["0.0.0.0:80", "[::]:80"]`.
    pub listen: Vec<String>,
    /// The server used when no name matches on its listen addresses.
    pub default: bool,
    /// Access log of this server.
    pub access_log: AccessLog,
    /// Error pages: status code → URI served from this server's routes (`"404" = "/404.html"`).
    pub error_pages: BTreeMap<String, String>,
    /// Response headers for every route of this server (routes add to them).
    pub headers: HeaderOps,
    /// Web application firewall for every route of this server (a route's own `waf` wins).
    pub waf: Option<Waf>,
    /// Access rules (IP allow/deny, rate limits) for every route of this server.
    pub access: Option<Access>,
    /// Connections to this server's listen addresses start with a PROXY protocol header (v1 or
    /// v2) from an L4 load balancer; the client address it names is used everywhere. Every
    /// server on a listen address must agree.
    pub proxy_protocol: bool,
    /// Routes, tried in nginx's order (exact, longest prefix, regex in file order).
    #[serde(rename = "route")]
    pub routes: Vec<Route>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            server_names: Vec::new(),
            listen: vec!["127.0.0.1:8080".into()],
            default: false,
            access_log: AccessLog::default(),
            error_pages: BTreeMap::new(),
            headers: HeaderOps::default(),
            waf: None,
            access: None,
            proxy_protocol: false,
            routes: Vec::new(),
        }
    }
}

/// Where and how requests are logged.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    /// `combined` (nginx/Apache) or `json`.
    pub format: AccessLogFormat,
    /// `"stdout"`, `"off"`, or a file path (reopened on SIGUSR1).
    pub path: String,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            format: AccessLogFormat::Combined,
            path: "stdout".into(),
        }
    }
}

/// Access log line formats.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum AccessLogFormat {
    Combined,
    Json,
}

/// Header edits (response headers of a server or route, or request headers sent upstream).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderOps {
    /// Headers set (replacing any value already there).
    pub add: BTreeMap<String, String>,
    /// Headers appended (kept beside any value already there).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub append: BTreeMap<String, String>,
    /// Headers removed.
    pub remove: Vec<String>,
}

/// A route (nginx's `location`): a match plus exactly one handler.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    /// Prefix match on the decoded path (nginx `location /p`).
    pub prefix: Option<String>,
    /// Exact match (nginx `location = /p`); wins over everything.
    pub exact: Option<String>,
    /// Regex match (nginx `location ~`), tried in file order after prefixes.
    pub regex: Option<String>,
    /// Make `regex` case-insensitive (nginx `~*`).
    pub regex_case_insensitive: bool,
    /// When this is the longest prefix, skip regex routes (nginx `^~`).
    pub prefix_priority: bool,
    /// Only these methods match (empty = any).
    pub methods: Vec<String>,
    /// Request headers that must be present with these values (`"*"` = present).
    pub match_headers: BTreeMap<String, String>,

    /// Serve files from this directory; the full request path is appended (nginx `root`).
    pub root: Option<PathBuf>,
    /// Serve files from this directory with the route prefix replaced (nginx `alias`).
    pub alias: Option<PathBuf>,
    /// Answer with a fixed status, body or redirect.
    #[serde(rename = "return")]
    pub ret: Option<Return>,
    /// A built-in page (`"welcome"`).
    pub builtin: Option<Builtin>,
    /// Reverse proxy to an `[upstream.NAME]` group, or to a URL (`"http://10.0.0.5:8080"`).
    pub proxy: Option<String>,
    /// Reverse proxy with traffic split over upstream groups by weight (canary, blue/green).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<SplitTarget>,
    /// Forward proxy: `CONNECT host:port` tunnels to the allowed hosts and ports. Such a route
    /// takes CONNECT requests only (and CONNECT goes nowhere else).
    pub forward_proxy: Option<ForwardProxy>,

    /// Proxy: replaces the matched `prefix` in the path sent upstream (`"/"` strips it), like
    /// nginx's `proxy_pass http://app/new/`.
    pub proxy_path: Option<String>,
    /// Proxy: the `Host` sent upstream. Unset: the client's; `"$upstream"`: the server's
    /// address; anything else is sent as written (`$host` is expanded).
    pub proxy_host: Option<String>,
    /// Proxy: request header edits before the request goes upstream.
    pub proxy_request_headers: HeaderOps,
    /// Proxy: overrides the upstream's `connect_timeout` for this route.
    pub proxy_connect_timeout: Option<Dur>,
    /// Proxy: overrides the upstream's `read_timeout` for this route.
    pub proxy_read_timeout: Option<Dur>,
    /// Proxy: overrides the upstream's `send_timeout` for this route.
    pub proxy_send_timeout: Option<Dur>,
    /// Proxy: read the whole request body (up to `max_body_size`) before choosing a server,
    /// which makes requests with bodies retryable (nginx's proxy_request_buffering).
    pub proxy_buffer_request: bool,
    /// Proxy: WebSocket (`Upgrade`) tunnels close after this long without traffic either way.
    pub websocket_idle_timeout: Option<Dur>,
    /// Proxy: requests matching a rule go to its upstream before any weighted split
    /// (`{ header = "X-Canary", value = "1", upstream = "canary" }`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub split_rules: Vec<SplitRule>,
    /// Proxy: copy a share of requests to another upstream; its answers are discarded.
    pub mirror: Option<Mirror>,

    /// Web application firewall of this route (replaces the server's).
    pub waf: Option<Waf>,
    /// Access rules of this route (replace the server's).
    pub access: Option<Access>,

    /// Index files tried for a directory request.
    pub index: Option<Vec<String>>,
    /// Fallback list like nginx `try_files`: `"$uri"`, `"$uri/"`, `"/index.html"`, `"=404"`.
    pub try_files: Vec<String>,
    /// Directory listings (HTML, or JSON with `Accept: application/json`).
    pub browse: bool,
    /// Serve dotfiles (`.env`, `.git/…`); hidden (404) by default.
    pub serve_hidden: bool,
    /// Follow symlinks whose target leaves the root.
    pub follow_symlinks_outside_root: bool,
    /// Serve `.br`/`.zst`/`.gz` sidecar files when the client accepts them.
    pub precompressed: Option<bool>,
    /// Compress responses on the fly.
    pub compress: Option<Compress>,

    /// Response headers of this route (applied after the server's).
    pub headers: HeaderOps,
    /// `Cache-Control` value for successful responses.
    pub cache_control: Option<String>,
    /// `Expires` as an offset from now (also sets `max-age` unless `cache_control` is set).
    pub expires: Option<Dur>,
    /// Request body limit for this route (overrides `limits.max_body_size`).
    pub max_body_size: Option<Size>,
    /// Error pages of this route (override the server's).
    pub error_pages: BTreeMap<String, String>,
}

/// A fixed answer (nginx `return`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Return {
    /// Status code; 301/302/303/307/308 need `location`.
    pub status: u16,
    /// Redirect target; `$host`, `$request_uri`, `$uri`, `$scheme`, `$args` are expanded.
    pub location: Option<String>,
    /// Body text (variables expanded).
    pub body: Option<String>,
    /// Content type of `body`.
    pub content_type: Option<String>,
}

/// The forward-proxy handler: which `CONNECT` targets are allowed and the tunnel's timeouts.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardProxy {
    /// Ports a tunnel may reach. Only HTTPS by default, as Squid's `SSL_ports`: a tunnel to
    /// 25 or 22 is how open proxies get abused.
    pub allow_ports: Vec<u16>,
    /// Target hosts: `"example.com"`, `"*.example.com"` (any depth of subdomain), `"*"` (any),
    /// IP addresses or CIDRs (`"10.0.0.0/8"`, also matched against the addresses a name
    /// resolves to). Required: an open forward proxy must be asked for explicitly.
    pub allow_hosts: Vec<String>,
    /// Time to resolve the target and open the connection; then 504.
    pub connect_timeout: Dur,
    /// The tunnel closes after this long with no bytes either way.
    pub idle_timeout: Dur,
}

impl Default for ForwardProxy {
    fn default() -> Self {
        ForwardProxy {
            allow_ports: vec![443],
            allow_hosts: Vec::new(),
            connect_timeout: Dur::secs(10),
            idle_timeout: Dur::secs(600),
        }
    }
}

/// Built-in handlers.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Builtin {
    /// Rampart's welcome page.
    Welcome,
}

/// On-the-fly compression.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Compress {
    /// Turn compression on or off.
    pub enabled: bool,
    /// Smallest body worth compressing (nginx gzip_min_length 20; we default higher).
    pub min_size: Size,
    /// Algorithms in server preference order: `br`, `zstd`, `gzip`.
    pub algorithms: Vec<String>,
    /// gzip level 1–9.
    pub gzip_level: u32,
    /// brotli quality 0–11.
    pub brotli_quality: u32,
    /// zstd level 1–19.
    pub zstd_level: i32,
}

impl Default for Compress {
    fn default() -> Self {
        Compress {
            enabled: true,
            min_size: Size(256),
            algorithms: vec!["zstd".into(), "br".into(), "gzip".into()],
            gzip_level: 5,
            brotli_quality: 4,
            zstd_level: 3,
        }
    }
}

/// One weighted target of a traffic split.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SplitTarget {
    /// Upstream group name.
    pub upstream: String,
    /// Relative weight (0 = no traffic, e.g. the idle colour of a blue/green pair).
    pub weight: u32,
}

/// Sends matching requests to one upstream (header or cookie equality).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SplitRule {
    /// Request header to compare.
    pub header: Option<String>,
    /// Cookie to compare.
    pub cookie: Option<String>,
    /// Value that selects this rule.
    pub value: String,
    /// Upstream group for matching requests.
    pub upstream: String,
}

/// Request mirroring (shadow traffic).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mirror {
    /// Upstream group that receives the copies.
    pub upstream: String,
    /// Share of requests copied, 0–100.
    pub percent: f64,
}

/// An upstream group: application servers and how to spread requests over them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// Servers: `"10.0.0.1:8080"`, `"http://app:8080"`, `"unix:/run/app.sock"`, or tables with
    /// `weight`, `max_conns`, `backup`, `down`, `drain`.
    pub servers: Vec<UpstreamServer>,
    /// Balancing method.
    pub balance: Balance,
    /// Key for `balance = "hash"`: `"uri"`, `"path"`, `"ip"`, `"header:NAME"`, `"cookie:NAME"`
    /// or `"arg:NAME"` (query argument).
    pub hash_key: Option<String>,
    /// Time to open a connection to a server (then the next server is tried).
    pub connect_timeout: Dur,
    /// Time a server may take to accept request bytes before the request fails.
    pub send_timeout: Dur,
    /// Time a server may take for the response head and between two reads of its body.
    pub read_timeout: Dur,
    /// Read buffer per upstream connection; response bodies stream through it.
    pub buffer_size: Size,
    /// Keep-alive connection pool per server.
    pub keepalive: Keepalive,
    /// Active health checks (off unless this table is present).
    pub health_check: Option<HealthCheck>,
    /// Passive health: eject servers that keep failing (circuit breaker per server).
    pub passive_health: PassiveHealth,
    /// Retries of failed requests on another server.
    pub retry: Retry,
    /// Requests in flight to this group at most (0 = no limit); more wait in the queue.
    pub max_inflight: usize,
    /// Requests that may wait for a free slot (0 = none: answer 503 at once).
    pub max_queue: usize,
    /// Longest wait in the queue before a 503.
    pub queue_timeout: Dur,
    /// A server that comes back ramps its weight up over this time (0 = at once).
    pub slow_start: Dur,
    /// Sticky sessions.
    pub sticky: Option<Sticky>,
    /// How often host names of servers are resolved again (system resolver only).
    pub dns_refresh: Dur,
    /// DNS servers for this group's host names (replaces `global.resolver`).
    pub resolver: Option<Resolver>,
    /// Start every connection to the servers with a PROXY protocol header naming the client.
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
    /// How requests travel to the servers: HTTP/1.1 or HTTP/2 over cleartext (gRPC).
    pub protocol: UpstreamProtocol,
}

/// The protocol spoken to an upstream group's servers.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with a keep-alive pool (one request per connection at a time).
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge: one connection per server carries many
    /// requests at once (gRPC needs HTTP/2 and its trailers).
    H2c,
}

/// PROXY protocol versions (HAProxy's spec).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolVersion {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            servers: Vec::new(),
            balance: Balance::RoundRobin,
            hash_key: None,
            connect_timeout: Dur::secs(5),
            send_timeout: Dur::secs(60),
            read_timeout: Dur::secs(60),
            buffer_size: Size(16 << 10),
            keepalive: Keepalive::default(),
            health_check: None,
            passive_health: PassiveHealth::default(),
            retry: Retry::default(),
            max_inflight: 0,
            max_queue: 0,
            queue_timeout: Dur::secs(5),
            slow_start: Dur::secs(0),
            sticky: None,
            dns_refresh: Dur::secs(30),
            resolver: None,
            send_proxy_protocol: None,
            protocol: UpstreamProtocol::Http1,
        }
    }
}

/// Balancing methods.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Smooth weighted round robin (nginx's order: weights 5/1/1 give a,a,b,a,c,a,a).
    #[default]
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two choices on outstanding requests.
    PowerOfTwo,
    /// Fewest requests in flight relative to weight.
    LeastConn,
    /// Lowest EWMA response time times requests in flight.
    LeastTime,
    /// Consistent hash of the client address.
    IpHash,
    /// Consistent hash (ketama ring) of `hash_key`.
    Hash,
}

/// One server of an upstream group.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct UpstreamServer {
    /// `host:port`, `http://host:port` or `unix:/path`.
    pub addr: String,
    /// Relative share of requests.
    pub weight: u32,
    /// Concurrent requests at most (0 = no limit).
    pub max_conns: u32,
    /// Only used when every primary server is down.
    pub backup: bool,
    /// Marked down by the operator: gets nothing.
    pub down: bool,
    /// Draining: no new requests, in-flight ones finish.
    pub drain: bool,
    /// Stable id for sticky cookies (default: the address).
    pub id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamServerTable {
    addr: String,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    max_conns: u32,
    #[serde(default)]
    backup: bool,
    #[serde(default)]
    down: bool,
    #[serde(default)]
    drain: bool,
    #[serde(default)]
    id: Option<String>,
}

fn one() -> u32 {
    1
}

impl<'de> Deserialize<'de> for UpstreamServer {
    /// A bare string is a server with default settings; a table gives every setting (and gets
    /// the same unknown-key errors as every other table).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UpstreamServer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a server address string or a table with `addr`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<UpstreamServer, E> {
                Ok(UpstreamServer {
                    addr: v.to_string(),
                    weight: 1,
                    ..Default::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<UpstreamServer, A::Error> {
                let t = UpstreamServerTable::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(UpstreamServer {
                    addr: t.addr,
                    weight: t.weight,
                    max_conns: t.max_conns,
                    backup: t.backup,
                    down: t.down,
                    drain: t.drain,
                    id: t.id,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Keep-alive pool settings per upstream server.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Keepalive {
    /// Idle connections kept per server (0 = no reuse).
    pub max_idle: usize,
    /// An idle connection is closed after this long.
    pub idle_timeout: Dur,
    /// Requests per connection before it is closed (0 = no limit).
    pub max_requests: u64,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            max_idle: 128,
            idle_timeout: Dur::secs(60),
            max_requests: 10_000,
        }
    }
}

/// Active health checks.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    /// `http` (a GET) or `tcp` (a connect).
    pub kind: HealthKind,
    /// Path of the HTTP check.
    pub path: String,
    /// `Host` header of the HTTP check (default: the server's address).
    pub host: Option<String>,
    /// Time between checks of one server.
    pub interval: Dur,
    /// Time one check may take.
    pub timeout: Dur,
    /// Consecutive passes that bring a server back.
    pub rise: u32,
    /// Consecutive failures that take a server out.
    pub fall: u32,
    /// Statuses that pass, as `"200-399"` or `"200,204"`.
    pub expect_status: String,
    /// Text the body must contain to pass.
    pub expect_body: Option<String>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: HealthKind::Http,
            path: "/".into(),
            host: None,
            interval: Dur::secs(5),
            timeout: Dur::secs(2),
            rise: 2,
            fall: 3,
            expect_status: "200-399".into(),
            expect_body: None,
        }
    }
}

/// Kinds of active check.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum HealthKind {
    #[default]
    Http,
    Tcp,
}

/// Passive health / circuit breaker per server.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealth {
    /// Consecutive failures that open the breaker (eject the server); 0 = off.
    pub max_fails: u32,
    /// Count 5xx responses as failures (not only connect errors and timeouts).
    pub fail_on_5xx: bool,
    /// First ejection time; doubles on each repeated ejection.
    pub cooldown: Dur,
    /// Longest ejection.
    pub max_cooldown: Dur,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        PassiveHealth {
            max_fails: 3,
            fail_on_5xx: false,
            cooldown: Dur::secs(10),
            max_cooldown: Dur::secs(300),
        }
    }
}

/// Retry policy.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Attempts per request in all (1 = no retry).
    pub tries: u32,
    /// Methods that may be retried (idempotent ones by default).
    pub methods: Vec<String>,
    /// Retry when a connection fails (refused, reset before a response).
    pub on_error: bool,
    /// Retry on connect and response-head timeouts.
    pub on_timeout: bool,
    /// Response statuses that are retried (the last answer is returned if all fail).
    pub statuses: Vec<u16>,
    /// Retries allowed as a share of requests (%), so retries cannot multiply an overload.
    pub budget_percent: u32,
    /// Retries per second always allowed, whatever the budget.
    pub min_per_sec: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            tries: 3,
            methods: ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]
                .map(String::from)
                .to_vec(),
            on_error: true,
            on_timeout: true,
            statuses: Vec::new(),
            budget_percent: 20,
            min_per_sec: 10,
        }
    }
}

/// Sticky sessions.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sticky {
    /// Insert mode: this cookie carries the server id, signed.
    pub cookie: Option<String>,
    /// Learn mode: the application's own session cookie is mapped to the server that set it.
    pub learn: Option<String>,
    /// Key that signs inserted cookies (default: random per process start).
    pub secret: Option<String>,
    /// `Max-Age` of the inserted cookie (default: a session cookie).
    pub max_age: Option<Dur>,
}

/// Web application firewall settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Waf {
    /// `block` (deny what the rules deny), `detect` (log only) or `off`.
    pub mode: WafMode,
    /// OWASP CRS directory (with `crs-setup.conf` or `crs-setup.conf.example` and `rules/`).
    /// Without `crs` and `rules`, Rampart's built-in policy is used.
    pub crs: Option<PathBuf>,
    /// SecLang files or globs loaded in order, before CRS (engine settings, exclusions…).
    pub rules: Vec<String>,
    /// CRS paranoia level 1–4.
    pub paranoia: Option<u8>,
    /// CRS inbound anomaly score threshold (CRS default 5).
    pub anomaly_threshold: Option<u32>,
    /// SecLang directives applied after every rule is loaded, e.g.
    /// `"SecRuleRemoveById 942100"` or `"SecRuleUpdateTargetById 942100 !ARGS:q"`.
    pub exclusions: Vec<String>,
    /// Audit log of matched rules (`"off"`, `"stderr"` or a path).
    pub audit_log: String,
    /// `json` (one JSON object per matched rule) or `modsec` (ModSecurity's error-log
    /// lines: `ModSecurity: Warning. … [id "942100"] [msg "…"]`, for tools that parse those).
    pub audit_format: AuditFormat,
}

/// Audit log line formats.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum AuditFormat {
    #[default]
    Json,
    Modsec,
}

impl Default for Waf {
    fn default() -> Self {
        Waf {
            mode: WafMode::Block,
            crs: None,
            rules: Vec::new(),
            paranoia: None,
            anomaly_threshold: None,
            exclusions: Vec::new(),
            audit_log: "off".into(),
            audit_format: AuditFormat::Json,
        }
    }
}

/// WAF modes.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum WafMode {
    #[default]
    Block,
    Detect,
    Off,
}

/// IP rules and rate limits.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// Addresses/CIDRs allowed (when set, everyone else gets 403).
    pub allow: Vec<String>,
    /// Addresses/CIDRs denied (403).
    pub deny: Vec<String>,
    /// Files with one address/CIDR per line (`#` comments) added to `deny`.
    pub deny_files: Vec<PathBuf>,
    /// Rate limit (token bucket per key) → 429 with `Retry-After`.
    pub rate_limit: Option<RateLimit>,
    /// Requests in flight per client address at most (0 = no limit) → 429.
    pub max_inflight_per_ip: u32,
    /// CSRF defence: state-changing requests must carry an `Origin` (or `Referer`) whose host
    /// is the request's `Host` or one of `csrf_trusted_origins` → else 403.
    pub csrf: bool,
    /// Extra origins (`https://app.example.com`) accepted by the CSRF check.
    pub csrf_trusted_origins: Vec<String>,
}

/// A token-bucket rate limit.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Sustained requests per second per key.
    pub rate: f64,
    /// Requests allowed in a burst above the rate.
    pub burst: u32,
    /// What a client is: `"ip"`, `"header:NAME"` or `"route"` (one bucket for everyone).
    pub key: String,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            rate: 10.0,
            burst: 20,
            key: "ip".into(),
        }
    }
}
