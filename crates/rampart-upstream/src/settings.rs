//! The upstream crate's own settings types. `rampart-app/src/compile.rs` translates the config
//! model into these, so this crate never sees `rampart-config`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// Host name or IP literal and port; names are resolved at start, then again on their
    /// DNS TTL (with a `resolver`) or every `dns_refresh`.
    Tcp {
        /// Host name or IP literal.
        host: String,
        /// Port.
        port: u16,
    },
    /// Unix domain socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One server of a group.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSettings {
    /// Stable id (sticky cookies, metrics labels).
    pub id: String,
    /// Address.
    pub addr: Address,
    /// Relative weight, ≥ 1.
    pub weight: u32,
    /// Concurrent requests at most (0 = no limit).
    pub max_conns: u32,
    /// Used only when every primary is unavailable.
    pub backup: bool,
    /// Taken out by the operator.
    pub down: bool,
    /// No new requests; in-flight ones finish.
    pub drain: bool,
    /// How requests travel to it.
    pub protocol: Protocol,
}

/// The protocol spoken to a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1: a keep-alive pool, one request per connection at a time, driven by the
    /// request's own task.
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge: one shared connection per server, many
    /// streams at once, driven by a task of its own (see `peer.rs`).
    H2c,
}

/// Balancing methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Smooth weighted round robin (nginx).
    RoundRobin,
    /// Weighted random.
    Random,
    /// Power of two random choices, fewer outstanding requests wins.
    PowerOfTwo,
    /// Fewest in-flight requests per unit of weight.
    LeastConn,
    /// Lowest EWMA response time × (in-flight + 1) per unit of weight.
    LeastTime,
    /// Consistent hash (ketama ring) of a key the caller computes (client IP, header…).
    Hash,
}

/// Active health check.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthSettings {
    /// HTTP GET (`Some(path)`) or TCP connect (`None`).
    pub http_path: Option<String>,
    /// `Host` of the HTTP check.
    pub host: Option<String>,
    /// Time between two checks of a server.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Consecutive passes to come back.
    pub rise: u32,
    /// Consecutive failures to go out.
    pub fall: u32,
    /// Passing statuses (inclusive ranges).
    pub expect_status: Vec<(u16, u16)>,
    /// Text the body must contain.
    pub expect_body: Option<String>,
}

/// Passive health: the per-server circuit breaker.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker; 0 = never.
    pub max_fails: u32,
    /// 5xx answers count as failures.
    pub fail_on_5xx: bool,
    /// First open period; doubles on each repeated opening.
    pub cooldown: Duration,
    /// Longest open period.
    pub max_cooldown: Duration,
}

/// Retry policy (the proxy handler applies it; the budget lives in the group).
#[derive(Clone, Debug, PartialEq)]
pub struct RetrySettings {
    /// Attempts in all.
    pub tries: u32,
    /// Methods that may be retried.
    pub methods: Vec<http::Method>,
    /// Retry connection failures.
    pub on_error: bool,
    /// Retry timeouts.
    pub on_timeout: bool,
    /// Retry these statuses.
    pub statuses: Vec<u16>,
    /// Retries as a share of requests, percent.
    pub budget_percent: u32,
    /// Retries per second always allowed.
    pub min_per_sec: u32,
}

/// Keep-alive pool per server.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSettings {
    /// Idle connections kept per server.
    pub max_idle: usize,
    /// Idle connections close after this long.
    pub idle_timeout: Duration,
    /// Requests per connection (0 = no limit).
    pub max_requests: u64,
    /// Read buffer per connection (nginx's `proxy_buffer_size`): bodies stream through
    /// it, so it bounds the memory a busy connection holds.
    pub buffer_size: usize,
}

/// Sticky-session mode.
#[derive(Clone, Debug, PartialEq)]
pub enum StickySettings {
    /// Rampart sets `cookie` to the signed server id.
    Insert {
        /// Cookie name.
        cookie: String,
        /// Signing key.
        secret: Vec<u8>,
        /// Cookie `Max-Age`.
        max_age: Option<Duration>,
    },
    /// The application's session cookie is mapped to the server that set it.
    Learn {
        /// Cookie name.
        cookie: String,
    },
}

/// Everything about one group.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamSettings {
    /// Group name (logs, metrics).
    pub name: String,
    /// Its servers.
    pub peers: Vec<PeerSettings>,
    /// Balancing method.
    pub method: Method,
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Time a server may take to accept request bytes.
    pub send_timeout: Duration,
    /// Time for the response head and between body reads.
    pub read_timeout: Duration,
    /// Keep-alive pool.
    pub pool: PoolSettings,
    /// Active checks.
    pub health: Option<HealthSettings>,
    /// Circuit breaker.
    pub breaker: BreakerSettings,
    /// Retries.
    pub retry: RetrySettings,
    /// In-flight requests at most (0 = no limit).
    pub max_inflight: usize,
    /// Requests waiting for a slot at most.
    pub max_queue: usize,
    /// Longest wait for a slot.
    pub queue_timeout: Duration,
    /// Weight ramp-up time after a server recovers.
    pub slow_start: Duration,
    /// Sticky sessions.
    pub sticky: Option<StickySettings>,
    /// Re-resolve host names this often (system resolver: no TTLs).
    pub dns_refresh: Duration,
    /// Resolve host names through these DNS servers instead, again on each answer's TTL.
    pub resolver: Option<ResolverSettings>,
    /// Start every connection with a PROXY protocol header (see `proxy_header.rs`).
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// A DNS server to ask directly (see `dns.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct ResolverSettings {
    /// Servers, tried in order.
    pub servers: Vec<SocketAddr>,
    /// Re-resolve this often whatever the TTL (nginx's `valid=`).
    pub valid: Option<Duration>,
    /// Shortest interval (a TTL of 0 must not spin).
    pub min_ttl: Duration,
    /// Longest interval.
    pub max_ttl: Duration,
    /// Time for one query attempt.
    pub timeout: Duration,
}

/// PROXY protocol header versions (HAProxy's spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// Text: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// Binary, with the 12-byte signature.
    V2,
}
