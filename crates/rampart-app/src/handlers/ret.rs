//! `return`: a fixed status with a body or a redirect, with nginx-style `$variables`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use rampart_server::Body;

use crate::exchange::Exchange;

/// A piece of a template: literal text or a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// Variables a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Host,
    RequestUri,
    Uri,
    Args,
    Scheme,
    RemoteAddr,
    Method,
    ServerPort,
    RequestId,
}

/// A template compiled once at config time.
#[derive(Debug, Clone)]
pub struct Template(Vec<Piece>);

impl Template {
    /// Parses `https://$host$request_uri`-style text. `${name}` also works. Unknown names are an
    /// error so typos surface at `rampart check` time.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut out = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            lit.push_str(&rest[..pos]);
            rest = &rest[pos + 1..];
            let (name, after) = if let Some(inner) = rest.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], &inner[end + 1..]),
                    None => return Err(format!("unclosed ${{ in {text:?}")),
                }
            } else if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            } else {
                ("", rest) // a literal `$` (e.g. "$5")
            };
            if name.is_empty() {
                lit.push('$');
                rest = after;
                continue;
            }
            let var = match name {
                "host" => Var::Host,
                "request_uri" => Var::RequestUri,
                "uri" => Var::Uri,
                "args" | "query_string" => Var::Args,
                "scheme" => Var::Scheme,
                "remote_addr" => Var::RemoteAddr,
                "request_method" => Var::Method,
                "server_port" => Var::ServerPort,
                "request_id" => Var::RequestId,
                other => {
                    return Err(format!(
                        "unknown variable ${other} (known: $host, $request_uri, $uri, $args, $scheme, $remote_addr, $request_method, $server_port, $request_id)"
                    ))
                }
            };
            if !lit.is_empty() {
                out.push(Piece::Text(std::mem::take(&mut lit)));
            }
            out.push(Piece::Var(var));
            rest = after;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            out.push(Piece::Text(lit));
        }
        Ok(Template(out))
    }

    /// Expands the template for one request.
    pub fn render(&self, x: &Exchange) -> String {
        let mut s = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => s.push_str(t),
                Piece::Var(v) => match v {
                    Var::Host => s.push_str(&x.host),
                    Var::RequestUri => {
                        s.push_str(x.uri.path_and_query().map_or("/", |p| p.as_str()))
                    }
                    Var::Uri => s.push_str(&x.path),
                    Var::Args => s.push_str(x.uri.query().unwrap_or("")),
                    Var::Scheme => s.push_str("http"),
                    Var::RemoteAddr => s.push_str(&x.conn.peer.ip().to_string()),
                    Var::Method => s.push_str(x.method.as_str()),
                    Var::ServerPort => s.push_str(&x.conn.local.port().to_string()),
                    Var::RequestId => s.push_str(x.request_id.to_str().unwrap_or("")),
                },
            }
        }
        s
    }

    fn is_static(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Piece::Text(_)))
    }
}

/// A compiled `return`.
#[derive(Debug, Clone)]
pub struct ReturnSpec {
    status: StatusCode,
    location: Option<Template>,
    body: Option<Template>,
    content_type: HeaderValue,
    /// Pre-rendered body when it has no variables (the fast path).
    fixed_body: Option<Bytes>,
}

impl ReturnSpec {
    /// Compiles the config form.
    pub fn new(r: &rampart_config::Return) -> Result<Self, String> {
        let status =
            StatusCode::from_u16(r.status).map_err(|_| format!("bad status {}", r.status))?;
        let location = r.location.as_deref().map(Template::parse).transpose()?;
        let body = r.body.as_deref().map(Template::parse).transpose()?;
        let content_type = HeaderValue::from_str(
            r.content_type
                .as_deref()
                .unwrap_or("text/plain; charset=utf-8"),
        )
        .map_err(|_| "bad content_type".to_string())?;
        let fixed_body = body
            .as_ref()
            .filter(|b| b.is_static())
            .map(|_| Bytes::from(r.body.clone().unwrap_or_default()));
        Ok(ReturnSpec {
            status,
            location,
            body,
            content_type,
            fixed_body,
        })
    }

    /// Answers.
    pub fn respond(&self, x: &Exchange) -> Response<Body> {
        let mut b = Response::builder().status(self.status);
        if let Some(loc) = &self.location {
            if let Ok(v) = HeaderValue::from_str(&loc.render(x)) {
                b = b.header(header::LOCATION, v);
            }
        }
        let body = match (&self.fixed_body, &self.body) {
            (Some(f), _) => Some(f.clone()),
            (None, Some(t)) => Some(Bytes::from(t.render(x))),
            (None, None) => None,
        };
        match body {
            Some(bytes) => b
                .header(header::CONTENT_TYPE, self.content_type.clone())
                .body(Body::full(bytes)),
            None => b.body(Body::Empty),
        }
        .unwrap_or_else(|_| Response::new(Body::Empty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        assert!(Template::parse("https://$host$request_uri").is_ok());
        assert!(Template::parse("${host}:8443").is_ok());
        assert!(Template::parse("cost $5").is_ok());
        assert!(Template::parse("$hots").is_err());
    }
}
