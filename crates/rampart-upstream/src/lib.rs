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
        /// Per-server state bits for one selection.
        const SOFT: u8 = 1; // not excluded, not down/draining/unhealthy/full
        const CLOSED: u8 = 2; // its breaker lets a request through
        const BACKUP: u8 = 4;
        if let Some(p) = pick.prefer.and_then(|i| self.peers.get(i)) {
            if !pick.exclude.contains(&p.index) && p.usable(now) {
                return Some(p.clone());
            }
        }
        // Each server's state, read once: `usable` reads atomics and the breaker, and the
        // tiers below would otherwise ask it up to three times per server.
        let n = self.peers.len();
        let mut inline = [0u8; 16];
        let mut heap = Vec::new();
        let state: &mut [u8] = if n <= inline.len() {
            &mut inline[..n]
        } else {
            heap.resize(n, 0);
            &mut heap
        };
        let mut any_usable = false;
        for (st, p) in state.iter_mut().zip(self.peers.iter()) {
            if pick.exclude.contains(&p.index) || !p.usable_ignoring_breaker() {
                continue;
            }
            let closed = p.breaker_available(now);
            any_usable |= closed;
            *st =
                SOFT | if closed { CLOSED } else { 0 } | if p.settings.backup { BACKUP } else { 0 };
        }
        // Usable; when none is, usable but for an open breaker (panic mode).
        let want = if any_usable { SOFT | CLOSED } else { SOFT };
        let ok = |st: u8| st & want == want;
        // Failover: backups only when no primary is usable; failback is automatic.
        let backup_tier = !state.iter().any(|&st| st & BACKUP == 0 && ok(st));
        let tier = if backup_tier { BACKUP } else { 0 };
        let state = &*state;
        let cand = |i: usize| {
            let st = state[i];
            st & BACKUP == tier && ok(st)
        };
        // One candidate (a group of one server, or one left): every method picks it, and
        // none would change its state (smooth round robin's scores come back to where
        // they were), so the balancer is not entered.
        let mut cands = (0..n).filter(|&i| cand(i));
        match (cands.next(), cands.next()) {
            (None, _) => {
                self.stats.no_server.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            (Some(i), None) => return Some(self.peers[i].clone()),
            _ => {}
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Two primaries (`a`, `b`) and a backup (`c`); one failure opens a breaker.
    fn group(servers: &[(&str, bool)]) -> Upstream {
        let peers = servers
            .iter()
            .enumerate()
            .map(|(i, (id, backup))| PeerSettings {
                id: (*id).into(),
                addr: Address::Tcp {
                    host: "127.0.0.1".into(),
                    port: 1 + i as u16,
                },
                weight: 1,
                max_conns: 0,
                backup: *backup,
                down: false,
                drain: false,
                protocol: Protocol::Http1,
            })
            .collect();
        let s = Duration::from_secs(60);
        Upstream::new(UpstreamSettings {
            name: "g".into(),
            peers,
            method: Method::RoundRobin,
            connect_timeout: s,
            send_timeout: s,
            read_timeout: s,
            pool: PoolSettings {
                max_idle: 1,
                idle_timeout: s,
                max_requests: 0,
                buffer_size: 16 << 10,
            },
            health: None,
            breaker: BreakerSettings {
                max_fails: 1,
                fail_on_5xx: false,
                cooldown: s,
                max_cooldown: s,
            },
            retry: RetrySettings {
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
            queue_timeout: s,
            slow_start: Duration::ZERO,
            sticky: None,
            dns_refresh: s,
            resolver: None,
            proxy_protocol: None,
        })
        .unwrap()
    }

    fn picks(g: &Upstream, exclude: &[usize], n: usize) -> String {
        let now = Instant::now();
        (0..n)
            .map(|_| {
                let p = Pick {
                    hash: None,
                    prefer: None,
                    exclude,
                };
                g.select(&p, now)
                    .map_or('-', |p| p.settings.id.chars().next().unwrap_or('?'))
            })
            .collect()
    }

    /// Tiers and panic mode, with every server's state read once per selection: primaries
    /// while one is usable, the backup when none is, and, when every breaker is open,
    /// the primaries again rather than nothing (panic mode).
    #[test]
    fn selection_tiers_and_panic_mode() {
        let g = group(&[("a", false), ("b", false), ("c", true)]);
        assert_eq!(picks(&g, &[], 4), "abab");
        assert_eq!(picks(&g, &[0], 2), "bb");
        g.peers[0].record_failure("test");
        assert_eq!(picks(&g, &[], 3), "bbb");
        // `a` open, `b` excluded: the backup serves.
        assert_eq!(picks(&g, &[1], 2), "cc");
        g.peers[1].record_failure("test");
        assert_eq!(picks(&g, &[], 2), "cc");
        g.peers[2].record_failure("test");
        // Every breaker open: panic mode over the primaries.
        assert_eq!(picks(&g, &[], 4), "abab");
        assert_eq!(picks(&g, &[0, 1, 2], 1), "-");
        // A group of one.
        let one = group(&[("x", false)]);
        assert_eq!(picks(&one, &[], 2), "xx");
        assert_eq!(picks(&one, &[0], 1), "-");
        let twenty: Vec<(String, bool)> = (0..20).map(|i| (format!("{i}"), false)).collect();
        let named: Vec<(&str, bool)> = twenty.iter().map(|(s, b)| (s.as_str(), *b)).collect();
        // More servers than the inline state holds.
        let big = group(&named);
        let mut seen = std::collections::HashSet::new();
        let now = Instant::now();
        for _ in 0..20 {
            let p = Pick {
                hash: None,
                prefer: None,
                exclude: &[],
            };
            seen.insert(big.select(&p, now).unwrap().index);
        }
        assert_eq!(seen.len(), 20);
    }
}
