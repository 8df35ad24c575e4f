//! The WAF connector: feeds `rampart_waf` transactions from the pipeline (request head and
//! body in the access phase, response head and body in the filters, logging at the end) and
//! writes the JSON-lines audit log. The engine itself has no networking.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{header, HeaderValue, Response, StatusCode, Version};
use http_body_util::BodyExt;
use rampart_server::Body;
use rampart_waf::{Interruption, InterruptionAction, RuleSet, Transaction};

use crate::exchange::Exchange;

/// Where matched rules are written, one JSON object per line, in request order.
#[derive(Debug)]
pub enum AuditSink {
    /// Standard error.
    Stderr,
    /// An append-only file.
    File(Mutex<std::fs::File>),
}

impl AuditSink {
    /// Opens `path` (`"stderr"` or a file path; the caller handles `"off"`).
    pub fn open(path: &str) -> std::io::Result<AuditSink> {
        if path == "stderr" {
            return Ok(AuditSink::Stderr);
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AuditSink::File(Mutex::new(f)))
    }

    fn write(&self, text: &str) {
        // One write per request keeps a request's lines together and in order.
        let r = match self {
            AuditSink::Stderr => std::io::stderr().write_all(text.as_bytes()),
            AuditSink::File(f) => f
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(text.as_bytes()),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "WAF audit log write failed");
        }
    }
}

/// A compiled WAF policy for a route.
#[derive(Debug)]
pub struct WafPolicy {
    /// The rules, with the configured engine mode.
    pub rules: RuleSet,
    /// Audit log.
    pub audit: Option<Arc<AuditSink>>,
    /// Most request body bytes buffered for inspection (beyond: the engine's limit action).
    pub body_limit: u64,
    /// ModSecurity-style lines instead of JSON.
    pub modsec_lines: bool,
}

/// What the request phases decided.
pub enum Verdict {
    /// Go on; the body (if read for inspection) is handed on.
    Pass(Option<Bytes>),
    /// Answer this instead.
    Block(Response<Body>),
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The answer to an interruption: 403 (or the rule's status) naming the request id.
pub fn blocked(i: &Interruption, x: &Exchange) -> Response<Body> {
    let status = StatusCode::from_u16(i.status).unwrap_or(StatusCode::FORBIDDEN);
    let rid = x.request_id.to_str().unwrap_or("-");
    let mut r = Response::new(Body::full(format!(
        "{} {}\nrequest id: {rid}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Forbidden")
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    match &i.action {
        InterruptionAction::Redirect(url) => {
            if let Ok(v) = HeaderValue::from_str(url) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            if !(300..400).contains(&i.status) {
                *r.status_mut() = StatusCode::FOUND;
            }
        }
        InterruptionAction::Drop => {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        InterruptionAction::Deny => {}
    }
    r
}

/// Phases 1 and 2. Reads the request body (bounded) when rules inspect it.
pub async fn request(
    policy: &WafPolicy,
    tx: &mut Transaction,
    parts: &Parts,
    raw: Option<&rampart_server::RawHead>,
    body: &mut Option<rampart_server::RequestBody>,
    x: &Exchange,
    body_timeout: std::time::Duration,
) -> Result<Verdict, StatusCode> {
    let c = &x.conn;
    tx.process_connection(
        &c.peer.ip().to_string(),
        c.peer.port(),
        &c.local.ip().to_string(),
        c.local.port(),
    );
    // The request as received (HTTP/1): the target before any normalising, the protocol as
    // written, header names in their case. HTTP/2 has no such text: rebuilt from the parts.
    if let Some(raw) = raw {
        let target = String::from_utf8_lossy(&raw.target);
        let proto = if raw.protocol.is_empty() {
            "HTTP/0.9".into()
        } else {
            String::from_utf8_lossy(&raw.protocol)
        };
        tx.process_uri(&target, parts.method.as_str(), &proto);
        for (n, v) in raw.fields() {
            tx.add_request_header_bytes(n, v);
        }
    } else {
        let target = if parts.uri.scheme().is_some() && parts.version < Version::HTTP_2 {
            parts.uri.to_string()
        } else {
            parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.to_string(), |p| p.as_str().to_string())
        };
        tx.process_uri(&target, parts.method.as_str(), protocol(parts.version));
        if parts.version >= Version::HTTP_2 {
            if let Some(a) = parts.uri.authority() {
                tx.add_request_header_bytes(b"Host", a.as_str().as_bytes());
            }
        }
        for (n, v) in &parts.headers {
            tx.add_request_header_bytes(n.as_str().as_bytes(), v.as_bytes());
        }
    }
    if let Some(i) = tx.process_request_headers() {
        return Ok(Verdict::Block(blocked(&i, x)));
    }
    let mut kept = None;
    let has_body = body
        .as_ref()
        .is_some_and(|b| !http_body::Body::is_end_stream(b));
    if has_body {
        if let Some(b) = body.take() {
            // Read it all (bounded by the route's body limit, checked by the caller, and by
            // ours): the engine needs the whole body before phase 2, and the handler gets it.
            let bytes =
                crate::pipeline::read_body(b, policy.body_limit, body_timeout, true).await?;
            tx.append_request_body(&bytes);
            kept = Some(bytes);
        }
    }
    if let Some(i) = tx.process_request_body() {
        return Ok(Verdict::Block(blocked(&i, x)));
    }
    Ok(Verdict::Pass(kept))
}

/// Phases 3 and 4 on a response. The body is read for inspection only when the rules want
/// it (its MIME type is listed) and only up to the engine's limit; the rest streams on.
pub async fn response(tx: &mut Transaction, resp: Response<Body>, x: &Exchange) -> Response<Body> {
    for (n, v) in resp.headers() {
        tx.add_response_header_bytes(n.as_str().as_bytes(), v.as_bytes());
    }
    if let Some(i) = tx.process_response_headers(resp.status().as_u16(), "HTTP/1.1") {
        return blocked(&i, x);
    }
    if !tx.response_body_wanted() {
        let _ = tx.process_response_body();
        return resp;
    }
    let (parts, mut body) = resp.into_parts();
    // The engine caps what it keeps; read at most a little more so a huge body is not held.
    const MAX_INSPECT: usize = 1 << 20;
    let mut buf = BytesMut::new();
    let mut ended = false;
    while buf.len() <= MAX_INSPECT {
        match body.frame().await {
            None => {
                ended = true;
                break;
            }
            Some(Err(e)) => {
                tracing::info!(error = %e, "response body failed during inspection");
                ended = true;
                break;
            }
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    tx.append_response_body(d);
                    buf.extend_from_slice(d);
                }
            }
        }
    }
    if let Some(i) = tx.process_response_body() {
        return blocked(&i, x);
    }
    let head = buf.freeze();
    let body = if ended {
        Body::full(head)
    } else {
        Body::stream(Prefixed {
            head: Some(head),
            rest: body,
        })
    };
    Response::from_parts(parts, body)
}

/// Bytes already read, then the rest of the stream.
struct Prefixed {
    head: Option<Bytes>,
    rest: Body,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if let Some(h) = self.head.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(h))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }
}

/// Phase 5 and the audit log: every matched rule that asks to be logged, one line each.
pub fn finish(policy: &WafPolicy, mut tx: Transaction, x: &Exchange, status: u16) {
    tx.process_logging();
    let Some(sink) = &policy.audit else { return };
    let logged: Vec<_> = tx.matched_rules().iter().filter(|m| m.log).collect();
    if logged.is_empty() {
        return;
    }
    let rid = x.request_id.to_str().unwrap_or("-");
    let mut text = String::new();
    let time = httpdate::fmt_http_date(std::time::SystemTime::now());
    for m in logged {
        if policy.modsec_lines {
            text.push_str(&format!(
                "[{time}] [client {}] {} [unique_id \"{rid}\"]\n",
                x.conn.peer.ip(),
                m.log_line()
            ));
            continue;
        }
        text.push_str(&format!(
            "{{\"time\":\"{time}\",\"request_id\":\"{rid}\",\"client\":\"{}\",\"method\":\"{}\",\"status\":{status},\"rule\":{}}}\n",
            x.conn.peer.ip(),
            x.method,
            m.to_json()
        ));
    }
    sink.write(&text);
}
