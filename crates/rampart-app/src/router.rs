//! Virtual host and route selection.
//!
//! Hosts: exact name, then the longest matching `*.suffix` wildcard, then the default server of
//! the listen address (the first server listed on it when none is marked `default`), as nginx.
//! Routes, as nginx `location`: exact matches first; then the longest prefix — which wins at once
//! when it has `prefix_priority` (nginx `^~`); then regexes in file order; then that longest
//! prefix. Method and header matchers narrow a candidate: a route whose matchers fail is skipped
//! and the search goes on to the next candidate in the same order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use regex::Regex;

use crate::snapshot::{Handler, Route, Site};

/// How a route matches the path.
#[derive(Debug)]
pub enum PathMatch {
    /// `exact`
    Exact(String),
    /// `prefix` (with nginx `^~` priority or not)
    Prefix {
        /// The prefix.
        prefix: String,
        /// Stop before regexes when this is the longest prefix.
        priority: bool,
    },
    /// `regex`
    Regex(Regex),
}

/// Extra conditions on a route.
#[derive(Debug, Default)]
pub struct Conditions {
    /// Allowed methods (empty = any).
    pub methods: Vec<Method>,
    /// Required headers; `None` = present with any value.
    pub headers: Vec<(HeaderName, Option<HeaderValue>)>,
}

impl Conditions {
    fn accept(&self, method: &Method, headers: &http::HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.headers.iter().all(|(n, v)| match (headers.get(n), v) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            })
    }
}

/// The routes of one virtual host, indexed for selection.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    exact: HashMap<String, Vec<usize>>,
    /// Prefix routes, longest first (stable for equal lengths).
    prefixes: Vec<usize>,
    regexes: Vec<usize>,
}

impl RouteTable {
    /// Indexes `routes` (in file order).
    pub fn new(routes: Vec<Arc<Route>>) -> Self {
        let mut t = RouteTable::default();
        for (i, r) in routes.iter().enumerate() {
            if matches!(r.handler, Handler::Forward(_)) {
                continue; // reached by CONNECT only (`select_connect`), never by path
            }
            match &r.path {
                PathMatch::Exact(p) => t.exact.entry(p.clone()).or_default().push(i),
                PathMatch::Prefix { .. } => t.prefixes.push(i),
                PathMatch::Regex(_) => t.regexes.push(i),
            }
        }
        t.prefixes.sort_by_key(|&i| match &routes[i].path {
            PathMatch::Prefix { prefix, .. } => std::cmp::Reverse(prefix.len()),
            _ => std::cmp::Reverse(0),
        });
        t.routes = routes;
        t
    }

    /// Picks the route for a normalized path.
    pub fn select(
        &self,
        path: &str,
        method: &Method,
        headers: &http::HeaderMap,
    ) -> Option<&Arc<Route>> {
        let ok = |i: &usize| self.routes[*i].cond.accept(method, headers);
        if let Some(list) = self.exact.get(path) {
            if let Some(i) = list.iter().find(|i| ok(i)) {
                return Some(&self.routes[*i]);
            }
        }
        let longest = self.prefixes.iter().find(|&&i| {
            matches!(&self.routes[i].path, PathMatch::Prefix { prefix, .. } if path.starts_with(prefix.as_str()))
                && ok(&i)
        });
        if let Some(&i) = longest {
            if matches!(
                self.routes[i].path,
                PathMatch::Prefix { priority: true, .. }
            ) {
                return Some(&self.routes[i]);
            }
        }
        for &i in &self.regexes {
            if let PathMatch::Regex(re) = &self.routes[i].path {
                if re.is_match(path) && ok(&i) {
                    return Some(&self.routes[i]);
                }
            }
        }
        longest.map(|&i| &self.routes[i])
    }

    /// The route for a CONNECT: the first forward-proxy route whose conditions hold. CONNECT
    /// names a target, not a path here, so no other route can answer it.
    pub fn select_connect(
        &self,
        method: &Method,
        headers: &http::HeaderMap,
    ) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|r| matches!(r.handler, Handler::Forward(_)) && r.cond.accept(method, headers))
    }

    /// All routes in file order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

/// The virtual hosts reachable on one listen address.
#[derive(Debug, Default)]
pub struct HostTable {
    exact: HashMap<String, Arc<Site>>,
    /// `(".example.com", site)`, longest suffix first.
    wildcards: Vec<(String, Arc<Site>)>,
    default: Option<Arc<Site>>,
}

impl HostTable {
    /// Adds a site under its names; the first site added (or one marked default) is the default.
    pub fn add(&mut self, site: &Arc<Site>, names: &[String], is_default: bool) {
        for n in names {
            let n = n.to_ascii_lowercase();
            if let Some(suffix) = n.strip_prefix('*') {
                self.wildcards.push((suffix.to_string(), site.clone()));
            } else if n != "_" {
                self.exact.entry(n).or_insert_with(|| site.clone());
            }
        }
        self.wildcards
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        if is_default || self.default.is_none() {
            self.default = Some(site.clone());
        }
    }

    /// Picks the site for a (lower-case, port-less) host name.
    pub fn select(&self, host: &str) -> Option<&Arc<Site>> {
        if let Some(s) = self.exact.get(host) {
            return Some(s);
        }
        for (suffix, s) in &self.wildcards {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return Some(s);
            }
        }
        self.default.as_ref()
    }
}

/// Every listen address's host table.
#[derive(Debug, Default)]
pub struct Hosts {
    by_addr: HashMap<SocketAddr, HostTable>,
}

impl Hosts {
    /// The table for an address, created on first use.
    pub fn table_mut(&mut self, addr: SocketAddr) -> &mut HostTable {
        self.by_addr.entry(addr).or_default()
    }

    /// Finds the site for a connection's local address and a host name. A connection accepted on
    /// `0.0.0.0:80` has a concrete local address, so the wildcard address is tried second.
    pub fn select(&self, local: SocketAddr, host: &str) -> Option<&Arc<Site>> {
        let any = match local {
            SocketAddr::V4(a) => SocketAddr::from(([0, 0, 0, 0], a.port())),
            SocketAddr::V6(a) => SocketAddr::from(([0u16; 8], a.port())),
        };
        let table = if self.by_addr.len() <= 4 {
            // A few addresses (the usual case) are compared in turn: cheaper than hashing a
            // `SocketAddr` with SipHash, once or twice, on every request. The exact address
            // wins over the wildcard one, as below.
            let mut found = None;
            for (a, t) in &self.by_addr {
                if *a == local {
                    found = Some(t);
                    break;
                }
                if *a == any {
                    found = Some(t);
                }
            }
            found
        } else {
            self.by_addr.get(&local).or_else(|| self.by_addr.get(&any))
        }?;
        table.select(host)
    }

    /// The addresses to listen on.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.by_addr.keys().copied().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::snapshot::Site;

    fn site(label: &str) -> Arc<Site> {
        Arc::new(Site {
            label: label.into(),
            routes: RouteTable::default(),
            error_pages: HashMap::new(),
            headers: Default::default(),
            access_log: None,
        })
    }

    /// The exact local address wins over the wildcard one on its port, whatever the
    /// table's order, with a few addresses (compared in turn) and with many (hashed).
    #[test]
    fn listen_address_selection() {
        let label = |h: &Hosts, local: &str| {
            h.select(local.parse().unwrap(), "x")
                .map(|s| s.label.clone())
        };
        for extra in [0u16, 10] {
            let mut h = Hosts::default();
            let add = |h: &mut Hosts, addr: &str, name: &str| {
                h.table_mut(addr.parse().unwrap())
                    .add(&site(name), &[], false);
            };
            add(&mut h, "0.0.0.0:80", "any");
            add(&mut h, "127.0.0.1:80", "lo");
            add(&mut h, "[::]:80", "any6");
            for p in 0..extra {
                add(&mut h, &format!("10.0.0.1:{}", 9000 + p), "other");
            }
            assert_eq!(label(&h, "127.0.0.1:80").as_deref(), Some("lo"));
            assert_eq!(label(&h, "10.1.2.3:80").as_deref(), Some("any"));
            assert_eq!(label(&h, "[::1]:80").as_deref(), Some("any6"));
            assert_eq!(label(&h, "127.0.0.1:81"), None);
            assert_eq!(label(&h, "[::1]:81"), None);
        }
    }
}
