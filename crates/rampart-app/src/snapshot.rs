//! The immutable, compiled form of a config that serves requests. A reload builds a new one off
//! the request path and swaps it in atomically; requests in flight keep the one they started with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use rampart_config::Config;

use crate::filters::compress::CompressSettings;
use crate::handlers::ret::ReturnSpec;
use crate::handlers::static_files::StaticSettings;
use crate::log::AccessLog;
use crate::metrics::RouteMetrics;
use crate::router::{Conditions, Hosts, PathMatch, RouteTable};

/// Everything a request needs, compiled from one config.
#[derive(Debug)]
pub struct Snapshot {
    /// The config it was compiled from (served, redacted, by the admin API).
    pub config: Arc<Config>,
    /// Virtual hosts per listen address.
    pub hosts: Hosts,
    /// `Server:` header value, if shown.
    pub server_header: Option<HeaderValue>,
    /// Request-level limits.
    pub limits: RequestLimits,
    /// Number of this config since start (1 = first).
    pub generation: u64,
    /// Counters for requests rejected before a route was chosen.
    pub unrouted: Arc<RouteMetrics>,
    /// Upstream groups in use (for metrics).
    pub upstreams: Vec<Arc<rampart_upstream::Upstream>>,
}

/// Limits the pipeline enforces (connection limits live in `rampart-server`).
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// Longest request target.
    pub max_uri_length: usize,
    /// Most bytes of request line and headers.
    pub max_header_size: usize,
    /// Default request body limit.
    pub max_body_size: u64,
    /// Idle time between two reads of a request body.
    pub body_read_timeout: Duration,
}

/// A virtual host.
#[derive(Debug)]
pub struct Site {
    /// Its first name (or `_`), for logs and metrics.
    pub label: String,
    /// Its routes.
    pub routes: RouteTable,
    /// Error pages: status → URI.
    pub error_pages: HashMap<u16, String>,
    /// Response header edits for all its routes.
    pub headers: HeaderEdits,
    /// Where its requests are logged.
    pub access_log: Option<Arc<AccessLog>>,
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// `prefix /static/`-style label for logs and metrics.
    pub label: String,
    /// Path match.
    pub path: PathMatch,
    /// Method and header conditions.
    pub cond: Conditions,
    /// The content handler.
    pub handler: Handler,
    /// Response header edits.
    pub headers: HeaderEdits,
    /// `Cache-Control` for 2xx/3xx responses.
    pub cache_control: Option<HeaderValue>,
    /// `Expires` offset.
    pub expires: Option<Duration>,
    /// Request body limit.
    pub max_body_size: u64,
    /// Error pages of this route (over the server's).
    pub error_pages: HashMap<u16, String>,
    /// On-the-fly compression of non-file responses (files compress inside the handler).
    pub compress: Option<Arc<CompressSettings>>,
    /// Counters and histograms.
    pub metrics: Arc<RouteMetrics>,
    /// Web application firewall.
    pub waf: Option<Arc<crate::waf::WafPolicy>>,
    /// IP rules, rate limit, CSRF.
    pub access: Option<Arc<crate::access::AccessRules>>,
}

/// Content handlers.
#[derive(Debug)]
pub enum Handler {
    /// Files from disk.
    Static(StaticSettings),
    /// A fixed answer or redirect.
    Return(ReturnSpec),
    /// The built-in welcome page.
    Welcome,
    /// Reverse proxy to upstream servers.
    Proxy(Box<crate::handlers::proxy::ProxySettings>),
    /// Forward proxy: CONNECT tunnels.
    Forward(crate::handlers::forward::ForwardSettings),
}

/// Compiled `headers.add` / `headers.append` / `headers.remove`.
#[derive(Debug, Default, Clone)]
pub struct HeaderEdits {
    /// Set (replace).
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Append beside existing values.
    pub append: Vec<(HeaderName, HeaderValue)>,
    /// Remove.
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    /// True when there is nothing to do (the common case, kept cheap).
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.append.is_empty() && self.remove.is_empty()
    }
}

impl Site {
    /// The error page URI for a status, route first.
    pub fn error_page<'a>(
        &'a self,
        route: Option<&'a Route>,
        status: StatusCode,
    ) -> Option<&'a str> {
        let code = status.as_u16();
        route
            .and_then(|r| r.error_pages.get(&code))
            .or_else(|| self.error_pages.get(&code))
            .map(String::as_str)
    }
}
