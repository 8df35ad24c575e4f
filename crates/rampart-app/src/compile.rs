//! `Config` → [`Snapshot`]: the one place that translates config types into the handlers' own
//! settings. Everything that can fail here was already checked by `rampart_config` validation;
//! what remains (a file vanished since `check`, say) is reported as a [`CompileError`].

use std::collections::HashMap;
use std::sync::Arc;

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
            routes.push(Arc::new(compile_route(&label, r, &cfg, shared)?));
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
    Ok(Snapshot {
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
    let mut out = HeaderEdits::default();
    for (k, v) in &h.add {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| err(format!("bad header name {k:?}")))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| err(format!("bad value for header {k}")))?;
        out.add.push((name, value));
    }
    for k in &h.remove {
        out.remove.push(
            HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| err(format!("bad header name {k:?}")))?,
        );
    }
    Ok(out)
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
    r: &RouteCfg,
    cfg: &Config,
    shared: &Shared,
) -> Result<Route, CompileError> {
    let (path, label) = if let Some(e) = &r.exact {
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
    let compress = compress_settings(r.compress.as_ref().unwrap_or(&Default::default()));
    let handler = if let Some(ret) = &r.ret {
        Handler::Return(ReturnSpec::new(ret).map_err(err)?)
    } else if r.builtin.is_some() {
        Handler::Welcome
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
    Ok(Route {
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
