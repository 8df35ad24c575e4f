//! Host names resolved through a configured DNS server and re-resolved on each answer's TTL
//! (nginx's `resolver` + `server … resolve`). The system resolver (`getaddrinfo`) does not
//! report TTLs, so without a `resolver` setting names are re-resolved every `dns_refresh`
//! instead (lib.rs). A failed or empty answer keeps the last good addresses.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use crate::settings::ResolverSettings;

/// The shortest re-resolution interval whatever the settings: a TTL of 0 must not spin.
const FLOOR: Duration = Duration::from_millis(100);

/// After a failed query, the next try comes this much later (within min/max TTL): a dead DNS
/// server is not asked (and logged about) every second.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Why a name has no new addresses.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The server answered with an error, or not at all.
    #[error("{0}")]
    Resolve(String),
    /// The answer had no A or AAAA record.
    #[error("{0} has no address")]
    NoAddress(String),
    /// Resolving took longer than the resolver's timeout (all attempts).
    #[error("DNS query for {0} timed out")]
    Timeout(String),
}

/// A resolver that asks the configured servers only (no hosts file, no search list).
pub struct Dns {
    resolver: TokioResolver,
    settings: ResolverSettings,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dns({:?})", self.settings.servers)
    }
}

impl Dns {
    /// Builds the resolver (no I/O until the first query).
    pub fn new(settings: &ResolverSettings) -> Dns {
        Self::build(settings, 0)
    }

    /// A resolver that keeps answers for their TTL (within `min_ttl..=max_ttl`, or `valid`):
    /// for names asked per request, such as forward-proxy targets, where asking the server
    /// every time would put a DNS round trip in front of each tunnel.
    pub fn caching(settings: &ResolverSettings) -> Dns {
        Self::build(settings, 1024)
    }

    fn build(settings: &ResolverSettings, cache_size: usize) -> Dns {
        let mut config = ResolverConfig::new();
        for &addr in &settings.servers {
            // UDP, and TCP for answers too large for a datagram.
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = settings.timeout;
        opts.attempts = 2;
        // Re-resolution (cache_size 0) must reach the server: a cached answer would hide a
        // change.
        opts.cache_size = cache_size;
        if cache_size > 0 {
            opts.positive_min_ttl = Some(settings.valid.unwrap_or(settings.min_ttl));
            opts.positive_max_ttl = Some(settings.valid.unwrap_or(settings.max_ttl));
        }
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build();
        Dns {
            resolver,
            settings: settings.clone(),
        }
    }

    /// The addresses of `host` (sorted, so that a reordered answer is no change) and when to
    /// ask again: the answer's TTL, or `valid` when set, within `min_ttl..=max_ttl`.
    pub async fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(Vec<SocketAddr>, Duration), DnsError> {
        // Fully qualified: the name is asked as written, never with a search domain appended.
        let fqdn = if host.ends_with('.') {
            host.to_string()
        } else {
            format!("{host}.")
        };
        // Bounded even if the library's own timeouts misbehave: attempts × servers × timeout.
        let n = u32::try_from(self.settings.servers.len().max(1) * 4).unwrap_or(u32::MAX);
        let limit = self.settings.timeout.saturating_mul(n);
        let answer = tokio::time::timeout(limit, self.resolver.lookup_ip(fqdn))
            .await
            .map_err(|_| DnsError::Timeout(host.to_string()))?
            .map_err(|e| DnsError::Resolve(e.to_string()))?;
        let mut addrs: Vec<SocketAddr> =
            answer.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(DnsError::NoAddress(host.to_string()));
        }
        let ttl = answer
            .valid_until()
            .saturating_duration_since(std::time::Instant::now());
        Ok((addrs, self.next_in(ttl)))
    }

    /// The interval for an answer with this TTL.
    pub fn next_in(&self, ttl: Duration) -> Duration {
        let s = &self.settings;
        let min = s.min_ttl.max(FLOOR);
        let max = s.max_ttl.max(min);
        s.valid.unwrap_or(ttl).max(min).min(max)
    }

    /// When to try again after a failure.
    pub fn retry_in(&self) -> Duration {
        self.next_in(RETRY_AFTER_FAILURE)
    }
}

/// Resolves now from synchronous code (building a group at config load). The caller may run
/// inside a tokio runtime, where another runtime cannot be entered: the query runs on a
/// thread of its own with a small runtime.
pub fn resolve_blocking(
    settings: &ResolverSettings,
    host: &str,
    port: u16,
) -> std::io::Result<(Vec<SocketAddr>, Duration)> {
    let settings = settings.clone();
    let host = host.to_string();
    let run = move || -> std::io::Result<(Vec<SocketAddr>, Duration)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            Dns::new(&settings)
                .lookup(&host, port)
                .await
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()))
        })
    };
    std::thread::Builder::new()
        .name("rampart-dns".into())
        .spawn(run)?
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("DNS thread panicked")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(valid: Option<u64>) -> ResolverSettings {
        ResolverSettings {
            servers: vec!["127.0.0.1:53".parse().unwrap()],
            valid: valid.map(Duration::from_secs),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(3600),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn ttl_is_clamped_or_overridden() {
        let d = Dns::new(&settings(None));
        assert_eq!(d.next_in(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(d.next_in(Duration::from_secs(30)), Duration::from_secs(30));
        assert_eq!(
            d.next_in(Duration::from_secs(86_400)),
            Duration::from_secs(3600)
        );
        assert_eq!(d.retry_in(), Duration::from_secs(5));
        let d = Dns::new(&settings(Some(10)));
        assert_eq!(d.next_in(Duration::from_secs(300)), Duration::from_secs(10));
        // Nonsense bounds cannot spin or panic.
        let mut s = settings(None);
        s.min_ttl = Duration::ZERO;
        s.max_ttl = Duration::ZERO;
        assert_eq!(Dns::new(&s).next_in(Duration::ZERO), FLOOR);
    }
}
