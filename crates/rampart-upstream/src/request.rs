//! The request a proxy sends upstream. Its fields are an ordered list, not an `http::HeaderMap`:
//! a proxy builds a fresh head for every request from the client's fields plus its own
//! (`X-Forwarded-For`, `Via`…), and our HTTP/1 client only writes them out in order, so the
//! map's hashing and index upkeep (~330 instructions per field) bought nothing on the hot
//! path. hyper's paths (HTTP/2, upgrades) get an `http::Request` made from it.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::body::ReqBody;

/// Header fields in order; names may repeat (as many fields as the message has).
#[derive(Clone, Debug, Default)]
pub struct Fields(Vec<(HeaderName, HeaderValue)>);

impl Fields {
    /// An empty list with room for `n` fields.
    pub fn with_capacity(n: usize) -> Fields {
        Fields(Vec::with_capacity(n))
    }

    /// Adds a field after the others (another one of the same name stays).
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.0.push((name, value));
    }

    /// Replaces every field named `name` by one with `value` (in the first one's place).
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        match self.0.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                self.0[i].1 = value;
                // Later fields of the name go; everything up to the replaced one stays.
                let mut k = 0usize;
                self.0.retain(|(n, _)| {
                    let keep = k <= i || *n != name;
                    k += 1;
                    keep
                });
            }
            None => self.0.push((name, value)),
        }
    }

    /// Removes every field named `name`.
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|(n, _)| n != name);
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a HeaderValue> {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Whether a field named `name` is present.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// All fields, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// How many fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No fields at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As a map, for hyper's paths.
    pub fn to_map(&self) -> HeaderMap {
        let mut m = HeaderMap::with_capacity(self.0.len());
        for (n, v) in &self.0 {
            m.append(n.clone(), v.clone());
        }
        m
    }

    /// From a map (fields of one name together, in the map's order).
    pub fn from_map(m: &HeaderMap) -> Fields {
        Fields(m.iter().map(|(n, v)| (n.clone(), v.clone())).collect())
    }
}

/// A request head going upstream.
#[derive(Clone, Debug)]
pub struct UpHead {
    /// Method.
    pub method: Method,
    /// Target: origin form (path and query), or absolute.
    pub uri: Uri,
    /// HTTP/1.0 or 1.1 on the wire (HTTP/2 for a request that came back from an h2 attempt).
    pub version: Version,
    /// Header fields, in the order they go out.
    pub fields: Fields,
}

impl UpHead {
    /// A head with no fields yet.
    pub fn new(method: Method, uri: Uri, fields: Fields) -> UpHead {
        UpHead {
            method,
            uri,
            version: Version::HTTP_11,
            fields,
        }
    }
}

/// A request going upstream: head and body.
#[derive(Debug)]
pub struct UpRequest {
    /// Method, target, fields.
    pub head: UpHead,
    /// The body.
    pub body: ReqBody,
}

impl UpRequest {
    /// As an `http::Request`, for hyper's connections.
    pub fn into_http(self) -> Request<ReqBody> {
        let mut r = Request::new(self.body);
        *r.method_mut() = self.head.method;
        *r.uri_mut() = self.head.uri;
        *r.version_mut() = self.head.version;
        *r.headers_mut() = self.head.fields.to_map();
        r
    }

    /// From an `http::Request` (one hyper handed back unsent).
    pub fn from_http(r: Request<ReqBody>) -> UpRequest {
        let (p, body) = r.into_parts();
        UpRequest {
            head: UpHead {
                method: p.method,
                uri: p.uri,
                version: p.version,
                fields: Fields::from_map(&p.headers),
            },
            body,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::header;

    #[test]
    fn insert_replaces_every_field_of_the_name_in_the_first_place() {
        let mut f = Fields::default();
        f.append(header::ACCEPT, HeaderValue::from_static("a"));
        f.append(header::COOKIE, HeaderValue::from_static("1"));
        f.append(header::HOST, HeaderValue::from_static("h"));
        f.append(header::COOKIE, HeaderValue::from_static("2"));
        f.append(header::COOKIE, HeaderValue::from_static("3"));
        f.insert(header::COOKIE, HeaderValue::from_static("x"));
        let all: Vec<(&str, &str)> = f
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(all, vec![("accept", "a"), ("cookie", "x"), ("host", "h")]);
        f.insert(header::VIA, HeaderValue::from_static("v"));
        assert_eq!(f.get(&header::VIA).unwrap(), "v");
        f.remove(&header::ACCEPT);
        assert!(!f.contains(&header::ACCEPT));
        assert_eq!(f.len(), 3);
        let m = f.to_map();
        assert_eq!(m.len(), 3);
        assert_eq!(Fields::from_map(&m).len(), 3);
    }
}
