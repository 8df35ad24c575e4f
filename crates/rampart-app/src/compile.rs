//! `Config` → [`Snapshot`]: the one place that translates config types into the handlers' own
//! settings. Everything that can fail here was already checked by `rampart_config` validation;
//! what remains (a file vanished since `check`, say) is reported as a [`CompileError`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use rampart_config::{parse_listen, Config, Route as RouteCfg};

use crate::control::Shared;
use crate::filters::compress::{CompressSettings, Encoding};
use crate::handlers::ret::ReturnSpec;
use crate::handlers::static_files::{StaticSettings, TryFile};
use crate::router::{Conditions, HostTable, Hosts, PathMatch, RouteTable};
use crate::snapshot::{Handler, HeaderEdits, RequestLimits, Route, Site, Snapshot};

/// A config that validated but still cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

fn err(msg: impl Into<String>) -> CompileError {
    CompileError(msg.into())
}

/// Builds a snapshot. `shared` carries state that outlives snapshots (metrics, logs, caches).
pub fn compile(
    cfg: Arc<Config>,
    shared: &Shared,
    generation: u64,
) -> Result<Snapshot, CompileError> {
    let mut hosts = Hosts::default();
    let mut used: Used = Vec::new();
    let mut wafs = HashMap::new();
    for (si, s) in cfg.servers.iter().enumerate() {
        let label = s
            .server_names
            .first()
            .cloned()
            .unwrap_or_else(|| format!("server{}", si + 1));
        let access_log = shared
            .logs
            .open(&s.access_log.path, s.access_log.format)
            .map_err(|e| {
                err(format!(
                    "server {label}: access log {}: {e}",
                    s.access_log.path
                ))
            })?;
        let mut routes = Vec::new();
        for r in &s.routes {
            routes.push(Arc::new(compile_route(
                &label, s, r, &cfg, shared, &mut used, &mut wafs,
            )?));
        }
        let site = Arc::new(Site {
            label: label.clone(),
            routes: RouteTable::new(routes),
            error_pages: error_pages(&s.error_pages),
            headers: header_edits(&s.headers)?,
            access_log,
        });
        for l in &s.listen {
            let addr = parse_listen(l).map_err(err)?;
            let table: &mut HostTable = hosts.table_mut(addr);
            table.add(&site, &s.server_names, s.default);
        }
    }
    let server_header = cfg
        .global
        .server_header
        .then(|| HeaderValue::from_static("rampart"));
    let limits = RequestLimits {
        max_uri_length: cfg.limits.max_uri_length.0 as usize,
        max_header_size: cfg.limits.max_header_size.0 as usize,
        max_body_size: cfg.limits.max_body_size.0,
        body_read_timeout: cfg.limits.body_read_timeout.0,
    };
    let upstreams = used;
    Ok(Snapshot {
        upstreams,
        config: cfg,
        hosts,
        server_header,
        limits,
        generation,
        unrouted: shared.metrics.route("-", "-"),
    })
}

fn error_pages(pages: &std::collections::BTreeMap<String, String>) -> HashMap<u16, String> {
    pages
        .iter()
        .filter_map(|(k, v)| k.parse::<u16>().ok().map(|c| (c, v.clone())))
        .collect()
}

fn header_edits(h: &rampart_config::HeaderOps) -> Result<HeaderEdits, CompileError> {
    let name = |k: &str| {
        HeaderName::from_bytes(k.as_bytes()).map_err(|_| err(format!("bad header name {k:?}")))
    };
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| {
                let value = HeaderValue::from_str(v)
                    .map_err(|_| err(format!("bad value for header {k}")))?;
                Ok((name(k)?, value))
            })
            .collect::<Result<Vec<_>, CompileError>>()
    };
    Ok(HeaderEdits {
        add: pairs(&h.add)?,
        append: pairs(&h.append)?,
        remove: h.remove.iter().map(|k| name(k)).collect::<Result<_, _>>()?,
    })
}

fn compress_settings(c: &rampart_config::Compress) -> Option<Arc<CompressSettings>> {
    if !c.enabled {
        return None;
    }
    let algorithms = c
        .algorithms
        .iter()
        .filter_map(|a| match a.as_str() {
            "br" => Some(Encoding::Br),
            "zstd" => Some(Encoding::Zstd),
            "gzip" => Some(Encoding::Gzip),
            _ => None,
        })
        .collect();
    Some(Arc::new(CompressSettings {
        min_size: c.min_size.0,
        algorithms,
        gzip_level: c.gzip_level,
        brotli_quality: c.brotli_quality,
        zstd_level: c.zstd_level,
    }))
}

fn compile_route(
    site: &str,
    server: &rampart_config::Server,
    r: &RouteCfg,
    cfg: &Config,
    shared: &Shared,
    used: &mut Used,
    wafs: &mut HashMap<String, Arc<crate::waf::WafPolicy>>,
) -> Result<Route, CompileError> {
    let (path, label) = if r.forward_proxy.is_some() {
        // Not matched by path; the label names it in logs, metrics and rate-limit keys.
        let label = if r.match_headers.is_empty() {
            "CONNECT".to_string()
        } else {
            format!("CONNECT {:?}", r.match_headers)
        };
        (
            PathMatch::Prefix {
                prefix: "/".into(),
                priority: false,
            },
            label,
        )
    } else if let Some(e) = &r.exact {
        (PathMatch::Exact(e.clone()), format!("= {e}"))
    } else if let Some(re) = &r.regex {
        let compiled = regex::RegexBuilder::new(re)
            .case_insensitive(r.regex_case_insensitive)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| err(format!("regex {re:?}: {e}")))?;
        (PathMatch::Regex(compiled), format!("~ {re}"))
    } else {
        let p = r.prefix.clone().unwrap_or_else(|| "/".into());
        let label = p.clone();
        (
            PathMatch::Prefix {
                prefix: p,
                priority: r.prefix_priority,
            },
            label,
        )
    };
    let mut cond = Conditions::default();
    for m in &r.methods {
        cond.methods
            .push(Method::from_bytes(m.as_bytes()).map_err(|_| err(format!("bad method {m:?}")))?);
    }
    for (k, v) in &r.match_headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| err(format!("bad header name {k:?}")))?;
        let value = if v == "*" {
            None
        } else {
            Some(HeaderValue::from_str(v).map_err(|_| err(format!("bad header value for {k}")))?)
        };
        cond.headers.push((name, value));
    }
    // Proxied answers are compressed only when the route asks (as nginx and Caddy do): the
    // application may compress already, and CPU on the proxy is the scarce thing.
    let is_proxy = r.proxy.is_some() || !r.split.is_empty();
    let compress = match &r.compress {
        Some(c) => compress_settings(c),
        None if is_proxy => None,
        None => compress_settings(&Default::default()),
    };
    let handler = if let Some(f) = &r.forward_proxy {
        Handler::Forward(crate::handlers::forward::ForwardSettings {
            ports: f.allow_ports.clone(),
            hosts: crate::handlers::forward::HostRules::new(&f.allow_hosts),
            connect_timeout: f.connect_timeout.0,
            idle_timeout: f.idle_timeout.0,
            dns: match &cfg.global.resolver {
                Some(r) => Some(Arc::new(rampart_upstream::dns::Dns::caching(
                    &resolver_settings(r)?,
                ))),
                None => None,
            },
        })
    } else if let Some(ret) = &r.ret {
        Handler::Return(ReturnSpec::new(ret).map_err(err)?)
    } else if r.builtin.is_some() {
        Handler::Welcome
    } else if r.proxy.is_some() || !r.split.is_empty() {
        Handler::Proxy(Box::new(proxy_settings(r, cfg, shared, used)?))
    } else if let Some(dir) = r.root.as_ref().or(r.alias.as_ref()) {
        let root =
            std::fs::canonicalize(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let strip_prefix = if r.alias.is_some() {
            r.prefix.clone().or_else(|| r.exact.clone())
        } else {
            None
        };
        let try_files = r
            .try_files
            .iter()
            .map(|t| match t.as_str() {
                "$uri" => TryFile::Uri,
                "$uri/" => TryFile::UriDir,
                s => match s.strip_prefix('=').and_then(|c| c.parse().ok()) {
                    Some(code) => TryFile::Status(code),
                    None => TryFile::Path(s.to_string()),
                },
            })
            .collect();
        Handler::Static(StaticSettings {
            root,
            strip_prefix,
            index: r.index.clone().unwrap_or_else(|| vec!["index.html".into()]),
            try_files,
            browse: r.browse,
            serve_hidden: r.serve_hidden,
            follow_symlinks_outside_root: r.follow_symlinks_outside_root,
            precompressed: r.precompressed.unwrap_or(true),
            compress: compress.clone(),
            cache: shared.file_cache.clone(),
        })
    } else {
        return Err(err("route has no handler"));
    };
    let cache_control = r
        .cache_control
        .as_deref()
        .map(HeaderValue::from_str)
        .transpose()
        .map_err(|_| err("bad cache_control value"))?;
    let waf = match r.waf.as_ref().or(server.waf.as_ref()) {
        Some(w) => waf_policy(w, wafs)?,
        None => None,
    };
    let access = match r.access.as_ref().or(server.access.as_ref()) {
        Some(a) => {
            let rules = access_rules(a, &format!("{site}|{label}"), shared)?;
            (!rules.is_empty()).then(|| Arc::new(rules))
        }
        None => None,
    };
    Ok(Route {
        waf,
        access,
        metrics: shared.metrics.route(site, &label),
        label,
        path,
        cond,
        handler,
        headers: header_edits(&r.headers)?,
        cache_control,
        expires: r.expires.map(|d| d.0),
        max_body_size: r.max_body_size.map_or(cfg.limits.max_body_size.0, |s| s.0),
        error_pages: error_pages(&r.error_pages),
        compress,
    })
}

/// Groups a snapshot uses.
type Used = Vec<Arc<rampart_upstream::Upstream>>;

/// Starts a group's background tasks (idempotent: groups reused by a reload keep theirs).
pub fn start_upstream(u: &Arc<rampart_upstream::Upstream>) {
    if tokio::runtime::Handle::try_current().is_ok() {
        u.start();
    }
}

fn upstream_settings(
    name: &str,
    u: &rampart_config::Upstream,
    global_resolver: Option<&rampart_config::Resolver>,
) -> Result<rampart_upstream::UpstreamSettings, CompileError> {
    use rampart_upstream as up;
    let mut peers = Vec::new();
    for s in &u.servers {
        let addr = match rampart_config::parse_upstream_addr(&s.addr).map_err(err)? {
            rampart_config::UpstreamAddr::Tcp { host, port } => up::Address::Tcp { host, port },
            rampart_config::UpstreamAddr::Unix(p) => up::Address::Unix(p),
        };
        peers.push(up::PeerSettings {
            id: s.id.clone().unwrap_or_else(|| s.addr.clone()),
            addr,
            weight: s.weight.max(1),
            max_conns: s.max_conns,
            backup: s.backup,
            down: s.down,
            drain: s.drain,
            // `grpc://` names an HTTP/2 server whatever the group says.
            protocol: if rampart_config::is_grpc_addr(&s.addr) {
                up::Protocol::H2c
            } else {
                match u.protocol {
                    rampart_config::UpstreamProtocol::Http1 => up::Protocol::Http1,
                    rampart_config::UpstreamProtocol::H2c => up::Protocol::H2c,
                }
            },
        });
    }
    let method = match u.balance {
        rampart_config::Balance::RoundRobin => up::Method::RoundRobin,
        rampart_config::Balance::Random => up::Method::Random,
        rampart_config::Balance::PowerOfTwo => up::Method::PowerOfTwo,
        rampart_config::Balance::LeastConn => up::Method::LeastConn,
        rampart_config::Balance::LeastTime => up::Method::LeastTime,
        rampart_config::Balance::IpHash | rampart_config::Balance::Hash => up::Method::Hash,
    };
    let health = match &u.health_check {
        Some(h) => Some(up::HealthSettings {
            http_path: (h.kind == rampart_config::HealthKind::Http).then(|| h.path.clone()),
            host: h.host.clone(),
            interval: h.interval.0,
            timeout: h.timeout.0,
            rise: h.rise,
            fall: h.fall,
            expect_status: rampart_config::parse_status_ranges(&h.expect_status)
                .ok_or_else(|| err(format!("bad expect_status {:?}", h.expect_status)))?,
            expect_body: h.expect_body.clone(),
        }),
        None => None,
    };
    let mut methods = Vec::new();
    for m in &u.retry.methods {
        methods
            .push(Method::from_bytes(m.as_bytes()).map_err(|_| err(format!("bad method {m:?}")))?);
    }
    let sticky = u.sticky.as_ref().map(|s| match (&s.cookie, &s.learn) {
        (_, Some(l)) => up::StickySettings::Learn { cookie: l.clone() },
        (c, None) => up::StickySettings::Insert {
            cookie: c.clone().unwrap_or_else(|| "rampart_sticky".into()),
            secret: s
                .secret
                .as_ref()
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_else(process_secret),
            max_age: s.max_age.map(|d| d.0),
        },
    });
    Ok(up::UpstreamSettings {
        name: name.to_string(),
        peers,
        method,
        connect_timeout: u.connect_timeout.0,
        send_timeout: u.send_timeout.0,
        read_timeout: u.read_timeout.0,
        pool: up::PoolSettings {
            max_idle: u.keepalive.max_idle,
            idle_timeout: u.keepalive.idle_timeout.0,
            max_requests: u.keepalive.max_requests,
            buffer_size: usize::try_from(u.buffer_size.0).unwrap_or(usize::MAX),
        },
        health,
        breaker: up::BreakerSettings {
            max_fails: u.passive_health.max_fails,
            fail_on_5xx: u.passive_health.fail_on_5xx,
            cooldown: u.passive_health.cooldown.0,
            max_cooldown: u.passive_health.max_cooldown.0,
        },
        retry: up::RetrySettings {
            tries: u.retry.tries.max(1),
            methods,
            on_error: u.retry.on_error,
            on_timeout: u.retry.on_timeout,
            statuses: u.retry.statuses.clone(),
            budget_percent: u.retry.budget_percent,
            min_per_sec: u.retry.min_per_sec,
        },
        max_inflight: u.max_inflight,
        max_queue: u.max_queue,
        queue_timeout: u.queue_timeout.0,
        slow_start: u.slow_start.0,
        sticky,
        dns_refresh: u.dns_refresh.0,
        resolver: match u.resolver.as_ref().or(global_resolver) {
            Some(r) => Some(resolver_settings(r)?),
            None => None,
        },
        proxy_protocol: u.send_proxy_protocol.map(|v| match v {
            rampart_config::ProxyProtocolVersion::V1 => up::ProxyProtocol::V1,
            rampart_config::ProxyProtocolVersion::V2 => up::ProxyProtocol::V2,
        }),
    })
}

fn resolver_settings(
    r: &rampart_config::Resolver,
) -> Result<rampart_upstream::ResolverSettings, CompileError> {
    let servers = r
        .servers
        .iter()
        .map(|s| {
            rampart_config::parse_dns_server(s).ok_or_else(|| err(format!("bad DNS server {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rampart_upstream::ResolverSettings {
        servers,
        valid: r.valid.map(|d| d.0),
        min_ttl: r.min_ttl.0,
        max_ttl: r.max_ttl.0,
        timeout: r.timeout.0,
    })
}

/// Sticky cookies without a configured secret are signed with a key made at start.
fn process_secret() -> Vec<u8> {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| (0..32).map(|_| fastrand::u8(..)).collect())
        .clone()
}

/// The group for `name` (an `[upstream.NAME]`, or an implicit group for a URL), reusing the
/// running one when its settings are unchanged.
fn group(
    key: &str,
    settings: rampart_upstream::UpstreamSettings,
    hash_key: Option<crate::handlers::proxy::HashKey>,
    shared: &Shared,
    used: &mut Used,
) -> Result<crate::handlers::proxy::Group, CompileError> {
    let mut reg = shared.upstreams.lock().unwrap_or_else(|e| e.into_inner());
    reg.retain(|_, w| w.strong_count() > 0);
    if let Some(u) = reg.get(key).and_then(std::sync::Weak::upgrade) {
        if u.settings == settings {
            if !used.iter().any(|x| Arc::ptr_eq(x, &u)) {
                used.push(u.clone());
            }
            return Ok(crate::handlers::proxy::Group {
                upstream: u,
                key: hash_key,
            });
        }
    }
    let u = Arc::new(rampart_upstream::Upstream::new(settings).map_err(|e| err(e.to_string()))?);
    reg.insert(key.to_string(), Arc::downgrade(&u));
    used.push(u.clone());
    Ok(crate::handlers::proxy::Group {
        upstream: u,
        key: hash_key,
    })
}

fn hash_key(
    u: &rampart_config::Upstream,
) -> Result<Option<crate::handlers::proxy::HashKey>, CompileError> {
    use crate::handlers::proxy::HashKey;
    if u.balance == rampart_config::Balance::IpHash {
        return Ok(Some(HashKey::Ip));
    }
    if u.balance != rampart_config::Balance::Hash {
        return Ok(None);
    }
    let k = u.hash_key.as_deref().unwrap_or("uri");
    Ok(Some(match k.split_once(':') {
        Some(("header", h)) => HashKey::Header(
            HeaderName::from_bytes(h.as_bytes()).map_err(|_| err(format!("bad header {h:?}")))?,
        ),
        Some(("cookie", c)) => HashKey::Cookie(c.to_string()),
        Some(("arg", a)) => HashKey::Arg(a.to_string()),
        _ if k == "path" => HashKey::Path,
        _ if k == "ip" => HashKey::Ip,
        _ => HashKey::Uri,
    }))
}

/// A named group as a route uses it; route-level connect/send timeouts make a group of its own
/// (own pools), since those apply where connections are made.
fn named_group(
    name: &str,
    r: &RouteCfg,
    cfg: &Config,
    shared: &Shared,
    used: &mut Used,
) -> Result<crate::handlers::proxy::Group, CompileError> {
    let u = cfg
        .upstreams
        .get(name)
        .ok_or_else(|| err(format!("no upstream {name}")))?;
    let mut settings = upstream_settings(name, u, cfg.global.resolver.as_ref())?;
    let mut key = name.to_string();
    if let Some(d) = r.proxy_connect_timeout {
        settings.connect_timeout = d.0;
        key.push_str(&format!("|c{:?}", d.0));
    }
    if let Some(d) = r.proxy_send_timeout {
        settings.send_timeout = d.0;
        key.push_str(&format!("|s{:?}", d.0));
    }
    group(&key, settings, hash_key(u)?, shared, used)
}

fn proxy_settings(
    r: &RouteCfg,
    cfg: &Config,
    shared: &Shared,
    used: &mut Used,
) -> Result<crate::handlers::proxy::ProxySettings, CompileError> {
    use crate::handlers::proxy::{HostMode, Mirror, ProxySettings, RuleOn, SplitRule, Target};
    let mut url_path = None;
    let target = if let Some(p) = &r.proxy {
        if p.contains("://") {
            let (addr, path) = rampart_config::split_proxy_url(p)
                .ok_or_else(|| err(format!("bad proxy URL {p:?}")))?;
            url_path = path;
            let u = rampart_config::Upstream {
                servers: vec![rampart_config::UpstreamServer {
                    addr: addr.clone(),
                    weight: 1,
                    ..Default::default()
                }],
                connect_timeout: r
                    .proxy_connect_timeout
                    .unwrap_or(rampart_config::Dur::secs(5)),
                send_timeout: r
                    .proxy_send_timeout
                    .unwrap_or(rampart_config::Dur::secs(60)),
                ..Default::default()
            };
            let settings =
                upstream_settings(&format!("http://{addr}"), &u, cfg.global.resolver.as_ref())?;
            let key = format!(
                "url|{addr}|{:?}|{:?}",
                settings.connect_timeout, settings.send_timeout
            );
            Target::Single(group(&key, settings, None, shared, used)?)
        } else {
            Target::Single(named_group(p, r, cfg, shared, used)?)
        }
    } else {
        let mut groups = Vec::new();
        for t in &r.split {
            groups.push((named_group(&t.upstream, r, cfg, shared, used)?, t.weight));
        }
        let n = groups.len();
        Target::Split {
            groups,
            current: std::sync::Mutex::new(vec![0; n]),
        }
    };
    let mut rules = Vec::new();
    for rule in &r.split_rules {
        let on = match (&rule.header, &rule.cookie) {
            (Some(h), _) => RuleOn::Header(
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| err(format!("bad header {h:?}")))?,
            ),
            (None, Some(c)) => RuleOn::Cookie(c.clone()),
            (None, None) => return Err(err("split rule needs header or cookie")),
        };
        rules.push(SplitRule {
            on,
            value: rule.value.clone(),
            group: named_group(&rule.upstream, r, cfg, shared, used)?,
        });
    }
    let mirror = match &r.mirror {
        Some(m) => Some(Mirror::new(
            named_group(&m.upstream, r, cfg, shared, used)?,
            m.percent,
        )),
        None => None,
    };
    let replace = r.proxy_path.clone().or(url_path);
    let rewrite = match (replace, r.prefix.as_ref().or(r.exact.as_ref())) {
        (Some(with), Some(prefix)) => Some((prefix.clone(), with)),
        _ => None,
    };
    let host = match r.proxy_host.as_deref() {
        None => HostMode::Client,
        Some("$upstream") => HostMode::Upstream,
        Some(t) => HostMode::Fixed(t.to_string()),
    };
    let edits = header_edits(&r.proxy_request_headers)?;
    let trusted = crate::cidr::CidrSet::new(
        cfg.global
            .trusted_proxies
            .iter()
            .filter_map(|t| rampart_config::parse_cidr(t))
            .collect(),
    );
    Ok(ProxySettings {
        target,
        rules,
        rewrite,
        host,
        request_headers: edits,
        read_timeout: r.proxy_read_timeout.map(|d| d.0),
        buffer_request: r.proxy_buffer_request,
        max_body: r.max_body_size.map_or(cfg.limits.max_body_size.0, |s| s.0),
        body_timeout: cfg.limits.body_read_timeout.0,
        websocket_idle: r
            .websocket_idle_timeout
            .map_or(Duration::from_secs(600), |d| d.0),
        mirror,
        trusted: Arc::new(trusted),
    })
}

/// Engine settings used with `crs = PATH` when no `rules` give their own (ModSecurity's
/// recommended modsecurity.conf, abridged): bodies inspected, JSON/XML parsed, limits set.
const WAF_ENGINE_DEFAULTS: &str = r#"
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecResponseBodyAccess On
SecResponseBodyMimeType text/plain text/html text/xml
SecResponseBodyLimit 524288
SecResponseBodyLimitAction ProcessPartial
SecRule REQUEST_HEADERS:Content-Type "@rx ^(?:application(?:/soap\+|/)|text/)xml" "id:1010,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/(?:[a-z0-9.-]+\+)?json" "id:1011,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
"#;

/// Files from disk, plus a few generated in memory (names starting with `<rampart>/`).
struct WafLoader {
    mem: rampart_waf::MemoryLoader,
    fs: rampart_waf::FsLoader,
}

impl rampart_waf::Loader for WafLoader {
    fn read(&self, path: &str) -> Result<String, String> {
        if path.starts_with("<rampart>/") {
            self.mem.read(path)
        } else {
            self.fs.read(path)
        }
    }
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        if pattern.starts_with("<rampart>/") {
            self.mem.glob(pattern)
        } else {
            self.fs.glob(pattern)
        }
    }
}

/// Loads a WAF policy (shared by every route with the same settings in one config).
pub fn waf_policy(
    w: &rampart_config::Waf,
    cache: &mut HashMap<String, Arc<crate::waf::WafPolicy>>,
) -> Result<Option<Arc<crate::waf::WafPolicy>>, CompileError> {
    use rampart_waf::{EngineMode, RuleSet};
    let mode = match w.mode {
        rampart_config::WafMode::Off => return Ok(None),
        rampart_config::WafMode::Block => EngineMode::On,
        rampart_config::WafMode::Detect => EngineMode::DetectionOnly,
    };
    let key = serde_json::to_string(w).unwrap_or_default();
    if let Some(p) = cache.get(&key) {
        return Ok(Some(p.clone()));
    }
    let (rules, report) = if w.rules.is_empty() && w.crs.is_none() {
        let rs = RuleSet::builtin().map_err(|e| err(format!("built-in WAF policy: {e}")))?;
        (rs, None)
    } else {
        let mut mem = rampart_waf::MemoryLoader::new();
        let mut paths: Vec<String> = Vec::new();
        if w.rules.is_empty() {
            mem = mem.with("<rampart>/engine.conf", WAF_ENGINE_DEFAULTS);
            paths.push("<rampart>/engine.conf".into());
        }
        paths.extend(w.rules.iter().cloned());
        if let Some(crs) = &w.crs {
            let setup = ["crs-setup.conf", "crs-setup.conf.example"]
                .iter()
                .map(|f| crs.join(f))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    err(format!(
                        "{}: no crs-setup.conf or crs-setup.conf.example",
                        crs.display()
                    ))
                })?;
            paths.push(setup.display().to_string());
            let mut gen = String::new();
            if let Some(pl) = w.paranoia {
                gen.push_str(&format!(
                    "SecAction \"id:99000001,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level={pl},setvar:tx.detection_paranoia_level={pl}\"\n"
                ));
            }
            if let Some(t) = w.anomaly_threshold {
                gen.push_str(&format!(
                    "SecAction \"id:99000002,phase:1,pass,t:none,nolog,setvar:tx.inbound_anomaly_score_threshold={t}\"\n"
                ));
            }
            if !gen.is_empty() {
                mem = mem.with("<rampart>/crs-settings.conf", &gen);
                paths.push("<rampart>/crs-settings.conf".into());
            }
            paths.push(crs.join("rules/*.conf").display().to_string());
        }
        if !w.exclusions.is_empty() {
            mem = mem.with("<rampart>/exclusions.conf", &w.exclusions.join("\n"));
            paths.push("<rampart>/exclusions.conf".into());
        }
        let loader = WafLoader {
            mem,
            fs: rampart_waf::FsLoader::new(),
        };
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let (rs, report) =
            RuleSet::load(&loader, &refs).map_err(|e| err(format!("WAF rules: {e}")))?;
        tracing::info!(
            rules = report.rules,
            files = report.files.len(),
            fancy_regex = report.fancy_regex_count(),
            took = ?started.elapsed(),
            "WAF rules loaded"
        );
        (rs, Some(report))
    };
    if let Some(r) = &report {
        for u in &r.unsupported {
            tracing::warn!("WAF: unsupported, no effect: {u:?}");
        }
    }
    let audit = match w.audit_log.as_str() {
        "off" => None,
        path => Some(Arc::new(
            crate::waf::AuditSink::open(path)
                .map_err(|e| err(format!("WAF audit log {path}: {e}")))?,
        )),
    };
    let policy = Arc::new(crate::waf::WafPolicy {
        rules: rules.with_engine_mode(mode),
        audit,
        body_limit: 13_107_200,
        modsec_lines: w.audit_format == rampart_config::AuditFormat::Modsec,
    });
    cache.insert(key, policy.clone());
    Ok(Some(policy))
}

/// Compiles access rules; rate limiters keep their state across reloads when unchanged.
pub fn access_rules(
    a: &rampart_config::Access,
    scope: &str,
    shared: &Shared,
) -> Result<crate::access::AccessRules, CompileError> {
    use crate::access::{AccessRules, PerIp, RateKey, RateLimiter};
    use crate::cidr::CidrSet;
    let list = |v: &[String]| -> Option<CidrSet> {
        (!v.is_empty()).then(|| {
            CidrSet::new(
                v.iter()
                    .filter_map(|t| rampart_config::parse_cidr(t))
                    .collect(),
            )
        })
    };
    let mut deny: Vec<String> = a.deny.clone();
    for f in &a.deny_files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| err(format!("deny file {}: {e}", f.display())))?;
        for (n, line) in text.lines().enumerate() {
            let t = line.split('#').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            if rampart_config::parse_cidr(t).is_none() {
                return Err(err(format!(
                    "{}:{}: invalid address or CIDR {t:?}",
                    f.display(),
                    n + 1
                )));
            }
            deny.push(t.to_string());
        }
    }
    let rate = match &a.rate_limit {
        Some(r) => {
            let key = serde_json::to_string(r).unwrap_or_default() + scope;
            let mut reg = shared.limiters.lock().unwrap_or_else(|e| e.into_inner());
            reg.retain(|_, w| w.strong_count() > 0);
            match reg.get(&key).and_then(std::sync::Weak::upgrade) {
                Some(l) => Some(l),
                None => {
                    let k = match r.key.as_str() {
                        "ip" => RateKey::Ip,
                        "route" => RateKey::Route,
                        h => RateKey::Header(
                            HeaderName::from_bytes(h.trim_start_matches("header:").as_bytes())
                                .map_err(|_| err(format!("bad rate limit key {h:?}")))?,
                        ),
                    };
                    let l = Arc::new(RateLimiter::new(r.rate, r.burst, k));
                    reg.insert(key, Arc::downgrade(&l));
                    Some(l)
                }
            }
        }
        None => None,
    };
    Ok(AccessRules {
        allow: list(&a.allow),
        deny: list(&deny),
        per_ip: (a.max_inflight_per_ip > 0).then(|| PerIp::new(a.max_inflight_per_ip)),
        rate,
        csrf: a.csrf.then(|| {
            a.csrf_trusted_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect()
        }),
    })
}
