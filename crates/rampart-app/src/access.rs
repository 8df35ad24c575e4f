//! The access phase's checks, in order: IP allow/deny, in-flight limit per client address,
//! rate limit (token bucket per key), CSRF (Origin/Referer against Host). The WAF, the last
//! access check, is in `waf.rs`. Each check answers early or lets the request through.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::request::Parts;
use http::{header, HeaderName, HeaderValue, Method, StatusCode};

use crate::cidr::{canonical, CidrSet};

/// Why a request was refused.
#[derive(Debug)]
pub struct Refusal {
    /// Status to answer.
    pub status: StatusCode,
    /// An extra header (`Retry-After`).
    pub header: Option<(HeaderName, HeaderValue)>,
    /// For the log.
    pub reason: &'static str,
}

/// What a rate limit counts by.
#[derive(Debug, Clone)]
pub enum RateKey {
    /// Client address.
    Ip,
    /// A request header's value (requests without it share one bucket).
    Header(HeaderName),
    /// One bucket for the whole route.
    Route,
}

/// Most keys a limiter tracks; stale ones are dropped first, then the oldest.
const MAX_KEYS: usize = 100_000;

/// GCRA (the token bucket as a single "theoretical arrival time" per key): `rate` per second
/// sustained, `burst` above it. State survives reloads when the settings are unchanged.
#[derive(Debug)]
pub struct RateLimiter {
    /// Interval between two requests at the sustained rate.
    emission: Duration,
    /// How far ahead of now the arrival time may run (burst × emission).
    tolerance: Duration,
    key: RateKey,
    tat: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl RateLimiter {
    /// A limiter of `rate` requests per second with `burst`.
    pub fn new(rate: f64, burst: u32, key: RateKey) -> Self {
        let emission = Duration::from_secs_f64(1.0 / rate.max(1e-6));
        RateLimiter {
            emission,
            tolerance: emission * burst,
            key,
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request for `key`: `Ok` or `Err(wait)` until one would be allowed.
    pub fn check(&self, key: &[u8], now: Instant) -> Result<(), Duration> {
        let mut m = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_KEYS && !m.contains_key(key) {
            m.retain(|_, t| *t > now);
            if m.len() >= MAX_KEYS {
                // Still full of active keys: forget an arbitrary half rather than grow.
                let drop: Vec<Vec<u8>> = m.keys().take(MAX_KEYS / 2).cloned().collect();
                for k in drop {
                    m.remove(&k);
                }
            }
        }
        let tat = m.get(key).copied().unwrap_or(now).max(now);
        let allow_at = tat.checked_sub(self.tolerance).unwrap_or(now);
        if now < allow_at {
            return Err(allow_at - now);
        }
        m.insert(key.to_vec(), tat + self.emission);
        Ok(())
    }
}

/// In-flight requests per client address.
#[derive(Debug, Default)]
pub struct PerIp {
    max: u32,
    map: Mutex<HashMap<IpAddr, Arc<AtomicU32>>>,
}

/// Holds one in-flight slot of a client address until dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicU32>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PerIp {
    /// A limit of `max` per address.
    pub fn new(max: u32) -> Self {
        PerIp {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, ip: IpAddr) -> Option<Slot> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > MAX_KEYS {
            m.retain(|_, c| c.load(Ordering::Acquire) > 0);
        }
        let c = m.entry(ip).or_default().clone();
        drop(m);
        if c.fetch_add(1, Ordering::AcqRel) >= self.max {
            c.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(c))
    }
}

/// A route's compiled access rules.
#[derive(Debug, Default)]
pub struct AccessRules {
    /// Only these may pass (empty = everyone).
    pub allow: Option<CidrSet>,
    /// These are refused.
    pub deny: Option<CidrSet>,
    /// In-flight requests per client address.
    pub per_ip: Option<PerIp>,
    /// Rate limit.
    pub rate: Option<Arc<RateLimiter>>,
    /// CSRF check, with extra trusted origins (`scheme://host[:port]`, lower case).
    pub csrf: Option<Vec<String>>,
}

/// The host (lower case, with port if any) of an `Origin`/`Referer` URL, and its origin.
fn url_origin(v: &str) -> Option<(String, String)> {
    let (scheme, rest) = v.split_once("://")?;
    let auth = rest.split(['/', '?', '#']).next()?;
    let auth = auth.rsplit('@').next()?.to_ascii_lowercase();
    Some((
        auth.clone(),
        format!("{}://{auth}", scheme.to_ascii_lowercase()),
    ))
}

impl AccessRules {
    /// True when nothing is configured (the common case, kept cheap).
    pub fn is_empty(&self) -> bool {
        self.allow.is_none()
            && self.deny.is_none()
            && self.per_ip.is_none()
            && self.rate.is_none()
            && self.csrf.is_none()
    }

    /// Runs the checks; on success returns the in-flight slot to hold for the request.
    pub fn check(&self, client: IpAddr, parts: &Parts) -> Result<Option<Slot>, Refusal> {
        let ip = canonical(client);
        let forbid = |reason| Refusal {
            status: StatusCode::FORBIDDEN,
            header: None,
            reason,
        };
        if let Some(a) = &self.allow {
            if !a.contains(ip) {
                return Err(forbid("address not in the allow list"));
            }
        }
        if let Some(d) = &self.deny {
            if d.contains(ip) {
                return Err(forbid("address in the deny list"));
            }
        }
        if let Some(r) = &self.rate {
            let key: Vec<u8> = match &r.key {
                RateKey::Ip => match ip {
                    IpAddr::V4(a) => a.octets().to_vec(),
                    IpAddr::V6(a) => a.octets().to_vec(),
                },
                RateKey::Header(h) => parts
                    .headers
                    .get(h)
                    .map(|v| v.as_bytes().to_vec())
                    .unwrap_or_default(),
                RateKey::Route => Vec::new(),
            };
            if let Err(wait) = r.check(&key, Instant::now()) {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(Refusal {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    header: HeaderValue::from_str(&secs.max(1).to_string())
                        .ok()
                        .map(|v| (header::RETRY_AFTER, v)),
                    reason: "rate limit",
                });
            }
        }
        if let Some(trusted) = &self.csrf {
            let unsafe_method = !matches!(
                parts.method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
            );
            if unsafe_method {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_ascii_lowercase)
                    .or_else(|| {
                        parts
                            .uri
                            .authority()
                            .map(|a| a.as_str().to_ascii_lowercase())
                    });
                let src = parts
                    .headers
                    .get(header::ORIGIN)
                    .or_else(|| parts.headers.get(header::REFERER))
                    .and_then(|v| v.to_str().ok());
                let ok = match (src.and_then(url_origin), host) {
                    (Some((h, origin)), Some(host)) => h == host || trusted.contains(&origin),
                    (Some((_, origin)), None) => trusted.contains(&origin),
                    // Neither header: refused, as OWASP's origin check advises (browsers
                    // send Origin on every cross-site state-changing request).
                    (None, _) => false,
                };
                if !ok {
                    return Err(forbid("CSRF: Origin/Referer does not match Host"));
                }
            }
        }
        match &self.per_ip {
            Some(p) => match p.take(ip) {
                Some(slot) => Ok(Some(slot)),
                None => Err(Refusal {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    header: Some((header::RETRY_AFTER, HeaderValue::from_static("1"))),
                    reason: "too many requests in flight from this address",
                }),
            },
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_burst_then_rate() {
        let l = RateLimiter::new(10.0, 5, RateKey::Ip);
        let t = Instant::now();
        let ok = (0..20).filter(|_| l.check(b"k", t).is_ok()).count();
        assert_eq!(ok, 6, "burst 5 above the first");
        assert!(l.check(b"other", t).is_ok(), "keys are independent");
        // 100 ms later one more token.
        let t2 = t + Duration::from_millis(100);
        assert!(l.check(b"k", t2).is_ok());
        assert!(l.check(b"k", t2).is_err());
    }

    #[test]
    fn origins() {
        assert_eq!(
            url_origin("https://App.example.com:8443/x?y").unwrap(),
            (
                "app.example.com:8443".to_string(),
                "https://app.example.com:8443".to_string()
            )
        );
        assert!(url_origin("null").is_none());
    }
}
