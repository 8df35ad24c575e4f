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
    /// Requests per connection before it is closed (nginx: keepalive_requests 1000).
    pub keepalive_requests: u64,
    /// Concurrent HTTP/2 streams per connection (nginx: http2_max_concurrent_streams 128).
    pub h2_max_concurrent_streams: u32,
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
            keepalive_requests: 1000,
            h2_max_concurrent_streams: 128,
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

/// Response header edits.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderOps {
    /// Headers set on every response (replacing any value from the handler).
    pub add: BTreeMap<String, String>,
    /// Headers removed from every response.
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
