//! Prometheus metrics: requests by server/route/status, a latency histogram, bytes sent, open
//! connections. Counters are plain atomics indexed by status code, so recording a request takes
//! no lock; they live outside snapshots (keyed by server and route label) so reloads keep them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters of one route.
#[derive(Debug)]
pub struct RouteMetrics {
    by_status: Box<[AtomicU64]>,
    bytes: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Default for RouteMetrics {
    fn default() -> Self {
        RouteMetrics {
            by_status: (0..500).map(|_| AtomicU64::new(0)).collect(),
            bytes: AtomicU64::new(0),
            buckets: Default::default(),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl RouteMetrics {
    /// Records one finished request.
    pub fn record(&self, status: u16, bytes: u64, took: Duration) {
        if let Some(c) = self.by_status.get(usize::from(status.saturating_sub(100))) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let idx = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Every route's counters plus process gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), Arc<RouteMetrics>>>,
    /// Config reloads that succeeded / failed.
    pub reloads_ok: AtomicU64,
    /// Reloads refused because the new config was invalid.
    pub reloads_failed: AtomicU64,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The counters of a route, created on first use and kept across reloads.
    pub fn route(&self, server: &str, route: &str) -> Arc<RouteMetrics> {
        let mut m = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((server.to_string(), route.to_string()))
            .or_default()
            .clone()
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self, open_connections: usize, generation: u64) -> String {
        let routes: Vec<_> = self
            .routes
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut o = String::with_capacity(4096);
        o.push_str("# HELP rampart_requests_total Requests answered, by server, route and status.\n# TYPE rampart_requests_total counter\n");
        for ((s, r), m) in &routes {
            for (i, c) in m.by_status.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        o,
                        "rampart_requests_total{{server=\"{}\",route=\"{}\",status=\"{}\"}} {n}",
                        esc(s),
                        esc(r),
                        i + 100
                    );
                }
            }
        }
        o.push_str("# HELP rampart_response_bytes_total Response body bytes sent.\n# TYPE rampart_response_bytes_total counter\n");
        for ((s, r), m) in &routes {
            let _ = writeln!(
                o,
                "rampart_response_bytes_total{{server=\"{}\",route=\"{}\"}} {}",
                esc(s),
                esc(r),
                m.bytes.load(Ordering::Relaxed)
            );
        }
        o.push_str("# HELP rampart_request_duration_seconds Time from request head to response head.\n# TYPE rampart_request_duration_seconds histogram\n");
        for ((s, r), m) in &routes {
            let mut cum = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += m.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(o, "rampart_request_duration_seconds_bucket{{server=\"{}\",route=\"{}\",le=\"{b}\"}} {cum}", esc(s), esc(r));
            }
            cum += m.buckets[BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(o, "rampart_request_duration_seconds_bucket{{server=\"{}\",route=\"{}\",le=\"+Inf\"}} {cum}", esc(s), esc(r));
            let _ = writeln!(
                o,
                "rampart_request_duration_seconds_sum{{server=\"{}\",route=\"{}\"}} {}",
                esc(s),
                esc(r),
                m.sum_us.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                o,
                "rampart_request_duration_seconds_count{{server=\"{}\",route=\"{}\"}} {cum}",
                esc(s),
                esc(r)
            );
        }
        let _ = write!(
            o,
            "# HELP rampart_open_connections Client connections open now.\n# TYPE rampart_open_connections gauge\nrampart_open_connections {open_connections}\n\
             # HELP rampart_config_generation Config generation serving now (1 = the config loaded at start).\n# TYPE rampart_config_generation gauge\nrampart_config_generation {generation}\n\
             # HELP rampart_reloads_total Config reloads by result.\n# TYPE rampart_reloads_total counter\nrampart_reloads_total{{result=\"ok\"}} {}\nrampart_reloads_total{{result=\"failed\"}} {}\n",
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed)
        );
        o
    }
}

/// Renders upstream groups and servers: state, load and failure counters. Counters restart
/// when a reload changes a group's settings (a new group is built then).
pub fn render_upstreams(groups: &[Arc<rampart_upstream::Upstream>]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if groups.is_empty() {
        return o;
    }
    let series: [(&str, &str, &str); 8] = [
        ("rampart_upstream_server_up", "gauge", "1 when the server takes requests (health checks pass, breaker not open, not down or draining)."),
        ("rampart_upstream_server_health_up", "gauge", "1 when active health checks pass (or none are configured)."),
        ("rampart_upstream_server_breaker_open", "gauge", "1 when the passive-health circuit breaker is open (server ejected)."),
        ("rampart_upstream_server_inflight", "gauge", "Requests in flight to the server."),
        ("rampart_upstream_server_requests_total", "counter", "Requests sent to the server."),
        ("rampart_upstream_server_failures_total", "counter", "Failed requests (connect errors, timeouts, counted 5xx)."),
        ("rampart_upstream_server_ejections_total", "counter", "Times the breaker ejected the server."),
        ("rampart_upstream_server_connections_total", "counter", "Connections opened to the server."),
    ];
    let now = std::time::Instant::now();
    for (name, kind, help) in series {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in groups {
            for p in g.peers() {
                let v: u64 = match name {
                    "rampart_upstream_server_up" => u64::from(p.usable(now)),
                    "rampart_upstream_server_health_up" => u64::from(p.healthy()),
                    "rampart_upstream_server_breaker_open" => {
                        u64::from(p.breaker_state() == rampart_upstream::BreakerState::Open)
                    }
                    "rampart_upstream_server_inflight" => u64::from(p.inflight()),
                    "rampart_upstream_server_requests_total" => {
                        p.stats.requests.load(Ordering::Relaxed)
                    }
                    "rampart_upstream_server_failures_total" => {
                        p.stats.failures.load(Ordering::Relaxed)
                    }
                    "rampart_upstream_server_ejections_total" => {
                        p.stats.ejections.load(Ordering::Relaxed)
                    }
                    _ => p.stats.connects.load(Ordering::Relaxed),
                };
                let _ = writeln!(
                    o,
                    "{name}{{upstream=\"{}\",server=\"{}\"}} {v}",
                    esc(&g.settings.name),
                    esc(&p.settings.id)
                );
            }
        }
    }
    let _ = writeln!(o, "# HELP rampart_upstream_retries_total Retries made, by upstream.\n# TYPE rampart_upstream_retries_total counter");
    for g in groups {
        let _ = writeln!(
            o,
            "rampart_upstream_retries_total{{upstream=\"{}\"}} {}",
            esc(&g.settings.name),
            g.stats.retries.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(o, "# HELP rampart_upstream_rejected_total Requests refused with 503 by in-flight limits or for want of a usable server.\n# TYPE rampart_upstream_rejected_total counter");
    for g in groups {
        let _ = writeln!(
            o,
            "rampart_upstream_rejected_total{{upstream=\"{}\"}} {}",
            esc(&g.settings.name),
            g.stats.rejected.load(Ordering::Relaxed) + g.stats.no_server.load(Ordering::Relaxed)
        );
    }
    o
}
