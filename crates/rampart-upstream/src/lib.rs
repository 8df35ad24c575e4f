//! Rampart's upstream side: groups of application servers, how a request picks one (balancing
//! methods, backups, sticky sessions), keep-alive pools, active and passive health (a circuit
//! breaker per server), retry budgets and admission limits. It knows nothing of routes or the
//! listening side; `rampart-app/src/handlers/proxy.rs` drives it per request.

pub mod balance;
mod body;
mod breaker;
mod budget;
mod connect;
pub mod dns;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod h1;
mod health;
mod peer;
mod proxy_header;
mod request;
mod settings;
pub mod sticky;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use body::{BodySignal, BoxReqStream, ClientBodyError, ReqBody, ResBody};
pub use breaker::BreakerState;
pub use budget::RetryBudget;
pub use connect::Stream;
pub use error::{ErrorClass, UpstreamError};
pub use peer::{resolve, send, Conn, InFlight, Peer, PeerStats, SendFailure};
pub use proxy_header::{encode as encode_proxy_header, encode_local as encode_local_proxy_header};
pub use request::{Fields, UpHead, UpRequest};
pub use settings::*;

use balance::{Ring, SmoothRoundRobin};

/// Building a group failed (a host name that does not resolve).
#[derive(Debug, thiserror::Error)]
#[error("upstream {upstream}: server {server}: {source}")]
pub struct BuildError {
    /// Group.
    pub upstream: String,
    /// Server address.
    pub server: String,
    /// Resolver error.
    pub source: std::io::Error,
}

/// What selection may use besides load.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pick<'a> {
    /// Hash of the request's key (client IP or `hash_key`) for hash methods.
    pub hash: Option<u64>,
    /// A server the request is pinned to (sticky session), taken when usable.
    pub prefer: Option<usize>,
    /// Servers already tried by this request.
    pub exclude: &'a [usize],
}

/// The group is saturated: answer 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error("upstream {0} is at its in-flight limit and its queue is full")]
pub struct Overloaded(pub String);

/// Counters per group.
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Requests refused by the admission limits.
    pub rejected: AtomicU64,
    /// Retries made.
    pub retries: AtomicU64,
    /// Retries refused by the budget.
    pub budget_exhausted: AtomicU64,
    /// Requests with no usable server.
    pub no_server: AtomicU64,
}

/// Most learned sticky sessions remembered per group.
const MAX_LEARNED: usize = 100_000;

/// A group of servers.
#[derive(Debug)]
pub struct Upstream {
    /// Its settings.
    pub settings: UpstreamSettings,
    peers: Vec<Arc<Peer>>,
    rr: SmoothRoundRobin,
    ring: Option<Ring>,
    tie: AtomicUsize,
    /// Retry budget.
    pub budget: RetryBudget,
    admission: Option<Arc<Semaphore>>,
    queued: AtomicUsize,
    learned: Mutex<HashMap<String, (usize, Instant)>>,
    /// Counters.
    pub stats: GroupStats,
    started: std::sync::atomic::AtomicBool,
    /// With a `resolver`: per server, when its first answer expires (IPs and sockets: `None`).
    dns_ttl: Vec<Option<Duration>>,
}

impl Upstream {
    /// Builds a group, resolving host names now (blocking: call off the request path).
    pub fn new(settings: UpstreamSettings) -> Result<Upstream, BuildError> {
        let mut peers = Vec::with_capacity(settings.peers.len());
        let mut dns_ttl = Vec::with_capacity(settings.peers.len());
        for (i, p) in settings.peers.iter().enumerate() {
            let failed = |source| BuildError {
                upstream: settings.name.clone(),
                server: p.addr.to_string(),
                source,
            };
            let (resolved, ttl) = match (&settings.resolver, named(&p.addr)) {
                (Some(r), Some((host, port))) => {
                    let (a, ttl) = dns::resolve_blocking(r, host, port).map_err(failed)?;
                    (a, Some(ttl))
                }
                _ => (resolve(&p.addr).map_err(failed)?, None),
            };
            dns_ttl.push(ttl);
            peers.push(Arc::new(Peer::new(
                i,
                p.clone(),
                resolved,
                settings.pool.clone(),
                settings.breaker.clone(),
                settings.connect_timeout,
                settings.send_timeout,
            )));
        }
        let ring = (settings.method == Method::Hash)
            .then(|| Ring::new(settings.peers.iter().map(|p| (p.id.as_str(), p.weight))));
        let admission =
            (settings.max_inflight > 0).then(|| Arc::new(Semaphore::new(settings.max_inflight)));
        Ok(Upstream {
            rr: SmoothRoundRobin::new(peers.len()),
            ring,
            tie: AtomicUsize::new(0),
            budget: RetryBudget::new(settings.retry.budget_percent, settings.retry.min_per_sec),
            admission,
            queued: AtomicUsize::new(0),
            learned: Mutex::new(HashMap::new()),
            stats: GroupStats::default(),
            started: std::sync::atomic::AtomicBool::new(false),
            dns_ttl,
            peers,
            settings,
        })
    }

    /// Starts background work: active health checks, DNS refresh, idle-pool sweeping. Call
    /// inside the tokio runtime; the tasks end when the group is dropped. Idempotent.
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return; // a group reused by a reload keeps its running tasks
        }
        if let Some(h) = &self.settings.health {
            health::spawn(self, h);
        }
        if let Some(r) = &self.settings.resolver {
            self.spawn_dns(r);
        }
        let system_dns = self.settings.resolver.is_none();
        let weak = Arc::downgrade(self);
        let every = self.settings.dns_refresh.max(Duration::from_secs(1));
        let sweep_every = (self.settings.pool.idle_timeout / 2)
            .clamp(Duration::from_millis(500), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut last_dns = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(sweep_every).await;
                let Some(up) = weak.upgrade() else { return };
                let now = Instant::now();
                for p in &up.peers {
                    p.sweep(now);
                }
                if system_dns && last_dns.elapsed() >= every {
                    last_dns = tokio::time::Instant::now();
                    for p in &up.peers {
                        if let Address::Tcp { host, port } = &p.settings.addr {
                            if host.parse::<std::net::IpAddr>().is_ok() {
                                continue;
                            }
                            match tokio::net::lookup_host((host.as_str(), *port)).await {
                                Ok(a) => {
                                    let mut v: Vec<_> = a.collect();
                                    v.sort();
                                    v.dedup();
                                    if !v.is_empty() {
                                        p.set_resolved(v);
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(server = %p.label, error = %e, "DNS refresh failed; keeping the last addresses")
                                }
                            }
                        }
                    }
                }
            }
        });
    }

    /// Re-resolves each named server when its last answer's TTL runs out (clamped; see
    /// `dns.rs`). One task per group; it ends soon after the group is dropped.
    fn spawn_dns(self: &Arc<Self>, settings: &ResolverSettings) {
        let now = tokio::time::Instant::now();
        let mut due: Vec<(usize, tokio::time::Instant)> = self
            .dns_ttl
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, now + t)))
            .collect();
        if due.is_empty() {
            return;
        }
        let dns = dns::Dns::new(settings);
        let weak = Arc::downgrade(self);
        // Wake at least this often to notice that the group is gone.
        const CHECK: Duration = Duration::from_secs(10);
        tokio::spawn(async move {
            loop {
                let now = tokio::time::Instant::now();
                let next = due.iter().map(|d| d.1).min().unwrap_or(now + CHECK);
                tokio::time::sleep_until(next.min(now + CHECK)).await;
                let Some(up) = weak.upgrade() else { return };
                for (i, at) in due.iter_mut() {
                    if *at > tokio::time::Instant::now() {
                        continue;
                    }
                    let Some(p) = up.peers.get(*i) else { continue };
                    let Some((host, port)) = named(&p.settings.addr) else {
                        continue;
                    };
                    match dns.lookup(host, port).await {
                        Ok((addrs, ttl)) => {
                            tracing::debug!(server = %p.label, ?addrs, ?ttl, "re-resolved");
                            p.set_resolved(addrs);
                            *at = tokio::time::Instant::now() + ttl;
                        }
                        Err(e) => {
                            tracing::warn!(server = %p.label, error = %e, "DNS re-resolution failed; keeping the last addresses");
                            *at = tokio::time::Instant::now() + dns.retry_in();
                        }
                    }
                }
            }
        });
    }

    /// Its servers, in config order.
    pub fn peers(&self) -> &[Arc<Peer>] {
        &self.peers
    }

    /// The server with this id.
    pub fn peer_by_id(&self, id: &str) -> Option<usize> {
        self.peers.iter().position(|p| p.settings.id == id)
    }

    /// Picks a server for a request, or `None` when none is usable.
    ///
    /// `now` is the caller's clock reading for this attempt (one read serves the whole
    /// attempt: selection, breaker, budget and the head-time sample).
    pub fn select(&self, pick: &Pick<'_>, now: Instant) -> Option<Arc<Peer>> {
        if let Some(p) = pick.prefer.and_then(|i| self.peers.get(i)) {
            if !pick.exclude.contains(&p.index) && p.usable(now) {
                return Some(p.clone());
            }
        }
        let any_usable = self
            .peers
            .iter()
            .any(|p| !pick.exclude.contains(&p.index) && p.usable(now));
        let ok = |i: usize| {
            let p = &self.peers[i];
            !pick.exclude.contains(&i)
                && if any_usable {
                    p.usable(now)
                } else {
                    p.usable_ignoring_breaker()
                }
        };
        // Failover: backups only when no primary is usable; failback is automatic.
        let backup_tier = !self.peers.iter().any(|p| !p.settings.backup && ok(p.index));
        let cand = |i: usize| self.peers[i].settings.backup == backup_tier && ok(i);
        let n = self.peers.len();
        let slow = self.settings.slow_start;
        let weight = |i: usize| cand(i).then(|| self.peers[i].effective_weight(now, slow));
        let load = |i: usize| cand(i).then(|| balance_load(&self.peers[i], now, slow));
        let idx = match self.settings.method {
            Method::RoundRobin => self.rr.pick(n, weight),
            Method::Random => balance::weighted_random(n, weight),
            Method::PowerOfTwo => balance::power_of_two(n, load),
            Method::LeastConn => {
                balance::least_conn(n, self.tie.fetch_add(1, Ordering::Relaxed), load)
            }
            Method::LeastTime => {
                balance::least_time(n, self.tie.fetch_add(1, Ordering::Relaxed), load)
            }
            Method::Hash => match (&self.ring, pick.hash) {
                (Some(r), Some(h)) => r.pick(h, cand),
                // No key in this request: spread it like round robin.
                _ => self.rr.pick(n, weight),
            },
        };
        match idx {
            Some(i) => Some(self.peers[i].clone()),
            None => {
                self.stats.no_server.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Waits for an in-flight slot (bounded queue, bounded wait) when the group has limits.
    pub async fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, Overloaded> {
        let Some(sem) = &self.admission else {
            return Ok(None);
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.settings.max_queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Overloaded(self.settings.name.clone()));
        }
        let r =
            tokio::time::timeout(self.settings.queue_timeout, sem.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        match r {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(Overloaded(self.settings.name.clone()))
            }
        }
    }

    /// The server a learned application session belongs to.
    pub fn learned(&self, session: &str) -> Option<usize> {
        let g = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        g.get(session).map(|(i, _)| *i)
    }

    /// Remembers that `session` (an application cookie value) lives on server `index`.
    pub fn learn(&self, session: &str, index: usize) {
        let mut g = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() >= MAX_LEARNED && !g.contains_key(session) {
            // Bounded: forget the older half.
            let mut ages: Vec<Instant> = g.values().map(|(_, t)| *t).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            g.retain(|_, (_, t)| *t > cut);
        }
        g.insert(session.to_string(), (index, Instant::now()));
    }
}

/// The host name and port of a server named by host name (not an IP literal or a socket).
fn named(addr: &Address) -> Option<(&str, u16)> {
    match addr {
        Address::Tcp { host, port } if host.parse::<std::net::IpAddr>().is_err() => {
            Some((host.as_str(), *port))
        }
        _ => None,
    }
}

fn balance_load(p: &Peer, now: Instant, slow: Duration) -> balance::Load {
    balance::Load {
        inflight: p.inflight(),
        weight: p.effective_weight(now, slow),
        ewma_us: p.ewma_us(),
    }
}
