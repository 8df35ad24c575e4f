//! The admin listener: `/healthz`, `/metrics` (Prometheus text), `/config` (the running config
//! as JSON, secrets redacted), and `POST /reload` (same as SIGHUP). It talks to the application
//! only through [`rampart_app::Runtime`] and a reload callback the binary provides.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use rampart_app::Runtime;
use rampart_server::RequestBody;
use rampart_server::{Body, ConnInfo, HttpService};

/// Asks the process to reload; returns the outcome text (errors with file:line:col).
pub type ReloadFn = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// The admin HTTP service.
#[derive(Clone)]
pub struct Admin {
    rt: Arc<Runtime>,
    open_connections: Arc<dyn Fn() -> usize + Send + Sync>,
    reload: ReloadFn,
}

impl Admin {
    /// Creates the service.
    pub fn new(
        rt: Arc<Runtime>,
        open_connections: Arc<dyn Fn() -> usize + Send + Sync>,
        reload: ReloadFn,
    ) -> Self {
        Admin {
            rt,
            open_connections,
            reload,
        }
    }
}

fn text(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::full(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// Key fragments whose values are replaced by `"<redacted>"` in `/config`. `auth` covers header
/// names in header edits (`Authorization`, `Proxy-Authorization`, `X-Auth-…`).
const SECRET_KEYS: &[&str] = &["secret", "password", "token", "key", "credential", "auth"];

fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                let lk = k.to_ascii_lowercase();
                if SECRET_KEYS.iter().any(|s| lk.contains(s)) && (val.is_string() || val.is_array())
                {
                    *val = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

impl HttpService for Admin {
    async fn call(
        &self,
        req: Request<RequestBody>,
        _raw: Option<rampart_server::RawHead>,
        _conn: &ConnInfo,
    ) -> Response<Body> {
        let plain = "text/plain; charset=utf-8";
        match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, plain, "ok\n"),
            (&Method::GET | &Method::HEAD, "/metrics") => {
                let snap = self.rt.snapshot();
                let mut body = self
                    .rt
                    .shared
                    .metrics
                    .render((self.open_connections)(), snap.generation);
                body.push_str(&rampart_app::metrics::render_upstreams(&snap.upstreams));
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                )
            }
            (&Method::GET | &Method::HEAD, "/config") => {
                let snap = self.rt.snapshot();
                let mut v = serde_json::to_value(&*snap.config).unwrap_or_default();
                redact(&mut v);
                let body = serde_json::to_string_pretty(&v).unwrap_or_default();
                text(StatusCode::OK, "application/json", body + "\n")
            }
            (&Method::POST, "/reload") => match (self.reload)() {
                Ok(msg) => text(StatusCode::OK, plain, msg + "\n"),
                Err(msg) => text(StatusCode::UNPROCESSABLE_ENTITY, plain, msg + "\n"),
            },
            (_, "/healthz" | "/metrics" | "/config" | "/reload") => text(
                StatusCode::METHOD_NOT_ALLOWED,
                plain,
                "method not allowed\n",
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                plain,
                "not found: try /healthz, /metrics, /config, POST /reload\n",
            ),
        }
    }
}
