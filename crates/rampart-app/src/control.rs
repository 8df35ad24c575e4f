//! The running application: the current snapshot behind an `ArcSwap`, state that outlives
//! snapshots, and reload. Parsing and validation happen before [`Runtime::reload`] is called; a
//! compile failure here also leaves the old snapshot serving.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Request, Response};
use rampart_config::Config;
use rampart_server::RequestBody;
use rampart_server::{Body, ConnInfo, ConnLimits, HttpService};

use crate::compile::{compile, CompileError};
use crate::handlers::static_files::FileCache;
use crate::log::LogRegistry;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// State shared by every snapshot.
#[derive(Debug, Default)]
pub struct Shared {
    /// Counters.
    pub metrics: Metrics,
    /// Open access logs.
    pub logs: LogRegistry,
    /// Open-file cache.
    pub file_cache: Arc<FileCache>,
    /// Upstream groups by name, reused by a reload when their settings did not change (so
    /// pools, health and breaker state survive it). Weak: a group no snapshot uses goes away.
    pub upstreams: std::sync::Mutex<
        std::collections::HashMap<String, std::sync::Weak<rampart_upstream::Upstream>>,
    >,
    /// Rate limiters by settings and route, so a reload keeps their buckets.
    pub limiters: std::sync::Mutex<
        std::collections::HashMap<String, std::sync::Weak<crate::access::RateLimiter>>,
    >,
}

/// The application as the server sees it.
#[derive(Debug)]
pub struct Runtime {
    current: ArcSwap<Snapshot>,
    /// State that survives reloads.
    pub shared: Arc<Shared>,
    generation: AtomicU64,
}

impl Runtime {
    /// Compiles the first config.
    pub fn new(cfg: Config) -> Result<Runtime, CompileError> {
        let shared = Arc::new(Shared::default());
        let snap = compile(Arc::new(cfg), &shared, 1)?;
        for u in &snap.upstreams {
            crate::compile::start_upstream(u);
        }
        Ok(Runtime {
            current: ArcSwap::from_pointee(snap),
            shared,
            generation: AtomicU64::new(1),
        })
    }

    /// The snapshot serving now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Compiles `cfg` into the next snapshot without installing it, so the caller can bind new
    /// listeners first and install only when everything is ready.
    pub fn prepare(&self, cfg: Config) -> Result<Arc<Snapshot>, CompileError> {
        let generation = self.generation.load(Ordering::Acquire) + 1;
        compile(Arc::new(cfg), &self.shared, generation)
            .map(Arc::new)
            .inspect_err(|_| self.note_failed_reload())
    }

    /// Installs a prepared snapshot: requests from now on use it.
    pub fn install(&self, snap: Arc<Snapshot>) {
        for u in &snap.upstreams {
            crate::compile::start_upstream(u);
        }
        self.generation.store(snap.generation, Ordering::Release);
        self.current.store(snap);
        self.shared
            .metrics
            .reloads_ok
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload refused before compiling (invalid file).
    pub fn note_failed_reload(&self) {
        self.shared
            .metrics
            .reloads_failed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Starts background chores (log flushing). Call inside the tokio runtime.
    pub fn spawn_tasks(self: &Arc<Self>) {
        let rt = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
            loop {
                tick.tick().await;
                match rt.upgrade() {
                    Some(rt) => rt.shared.logs.flush_all(),
                    None => return,
                }
            }
        });
    }
}

/// Connection limits of a config, for `rampart-server`.
pub fn conn_limits(cfg: &Config) -> ConnLimits {
    let l = &cfg.limits;
    ConnLimits {
        max_connections: l.max_connections,
        max_header_size: usize::try_from(l.max_header_size.0).unwrap_or(usize::MAX),
        max_headers: l.max_headers,
        header_read_timeout: l.header_read_timeout.0,
        keepalive_timeout: l.keepalive_timeout.0,
        send_timeout: l.send_timeout.0,
        keepalive_requests: l.keepalive_requests,
        h2_max_concurrent_streams: l.h2_max_concurrent_streams,
        max_connections_per_ip: l.max_connections_per_ip,
    }
}

/// Listen addresses whose connections start with a PROXY protocol header (validation makes
/// every server on an address agree, so any server saying so decides).
pub fn proxy_protocol_addrs(cfg: &Config) -> Vec<std::net::SocketAddr> {
    let mut out: Vec<std::net::SocketAddr> = cfg
        .servers
        .iter()
        .filter(|s| s.proxy_protocol)
        .flat_map(|s| s.listen.iter())
        .filter_map(|a| rampart_config::parse_listen(a).ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The HTTP service: every request goes to [`crate::pipeline::handle`] with the current snapshot.
#[derive(Debug, Clone)]
pub struct App(pub Arc<Runtime>);

impl HttpService for App {
    async fn call(
        &self,
        req: Request<RequestBody>,
        raw: Option<rampart_server::RawHead>,
        conn: &ConnInfo,
    ) -> Response<Body> {
        let snap = self.0.current.load_full();
        crate::pipeline::handle(&snap, conn, req, raw).await
    }
}
