//! Response header filters: server/route header edits, `Cache-Control`/`Expires`, and the
//! headers every response carries (`Server`, `X-Request-Id`).

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, HeaderValue, StatusCode};

use crate::snapshot::HeaderEdits;

/// Applies `add` (replace), `append`, then `remove`.
pub fn edit(headers: &mut HeaderMap, edits: &HeaderEdits) {
    for (n, v) in &edits.add {
        headers.insert(n.clone(), v.clone());
    }
    for (n, v) in &edits.append {
        headers.append(n.clone(), v.clone());
    }
    for n in &edits.remove {
        headers.remove(n);
    }
}

/// nginx `expires` applies to these statuses only.
fn caches(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// Sets `Cache-Control` and `Expires` as the route asks.
pub fn caching(
    headers: &mut HeaderMap,
    status: StatusCode,
    cache_control: Option<&HeaderValue>,
    expires: Option<Duration>,
) {
    if !caches(status) {
        return;
    }
    if let Some(d) = expires {
        let when = SystemTime::now() + d;
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(when)) {
            headers.insert(header::EXPIRES, v);
        }
        if cache_control.is_none() {
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={}", d.as_secs())) {
                headers.insert(header::CACHE_CONTROL, v);
            }
        }
    }
    if let Some(cc) = cache_control {
        headers.insert(header::CACHE_CONTROL, cc.clone());
    }
}
