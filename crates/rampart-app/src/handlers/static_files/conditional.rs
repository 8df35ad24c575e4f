//! Conditional requests (RFC 9110 §13): evaluated in the order of §13.2.2, so `If-Match` beats
//! `If-Unmodified-Since` and `If-None-Match` beats `If-Modified-Since`.

use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};
use http::HeaderMap;

/// What the preconditions decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the representation (possibly a range).
    Proceed,
    /// 304.
    NotModified,
    /// 412.
    Failed,
}

/// Evaluates the preconditions of a GET/HEAD against the selected representation's validators.
/// `mtime` is the Last-Modified time in Unix seconds.
pub fn evaluate(h: &HeaderMap, etag: &[u8], mtime: u64) -> Precondition {
    if let Some(v) = h.get(IF_MATCH) {
        if !list_matches(v.as_bytes(), etag, true) {
            return Precondition::Failed;
        }
    } else if let Some(date) = h
        .get(IF_UNMODIFIED_SINCE)
        .and_then(|v| parse_date(v.as_bytes()))
    {
        if mtime > date {
            return Precondition::Failed;
        }
    }
    if let Some(v) = h.get(IF_NONE_MATCH) {
        if list_matches(v.as_bytes(), etag, false) {
            return Precondition::NotModified;
        }
    } else if let Some(date) = h
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| parse_date(v.as_bytes()))
    {
        // RFC 9110: not modified when the resource is not newer (nginx defaults to exact match).
        if mtime <= date {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Whether a `Range` may be honoured given `If-Range` (absent = yes). Only a strong ETag match or
/// an exactly equal date counts; weak tags never do.
pub fn if_range_allows(h: &HeaderMap, etag: &[u8], mtime: u64) -> bool {
    let Some(v) = h.get(IF_RANGE) else {
        return true;
    };
    let v = v.as_bytes();
    let v = trim(v);
    if v.first() == Some(&b'"') {
        return strong_eq(v, etag);
    }
    if v.starts_with(b"W/") {
        return false;
    }
    parse_date(v) == Some(mtime)
}

/// `If-Match`/`If-None-Match` list: `*` or comma-separated entity tags.
pub fn list_matches(list: &[u8], etag: &[u8], strong: bool) -> bool {
    let list = trim(list);
    if list == b"*" {
        return true;
    }
    EtagIter(list).any(|t| {
        if strong {
            strong_eq(t, etag)
        } else {
            weak_eq(t, etag)
        }
    })
}

/// Strong comparison: both strong and identical.
pub fn strong_eq(a: &[u8], b: &[u8]) -> bool {
    !a.starts_with(b"W/") && !b.starts_with(b"W/") && a == b
}

/// Weak comparison: opaque tags equal, ignoring `W/`.
pub fn weak_eq(a: &[u8], b: &[u8]) -> bool {
    strip_weak(a) == strip_weak(b)
}

fn strip_weak(t: &[u8]) -> &[u8] {
    t.strip_prefix(b"W/").unwrap_or(t)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Splits an entity-tag list; tags are `"…"` or `W/"…"` and may themselves contain commas.
struct EtagIter<'a>(&'a [u8]);

impl<'a> Iterator for EtagIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let s = trim(self.0);
            let s = s.strip_prefix(b",").map(trim).unwrap_or(s);
            if s.is_empty() {
                self.0 = s;
                return None;
            }
            let start = if s.starts_with(b"W/\"") { 2 } else { 0 };
            if s.get(start) == Some(&b'"') {
                if let Some(end) = s[start + 1..].iter().position(|&b| b == b'"') {
                    let tag_end = start + 1 + end + 1;
                    self.0 = &s[tag_end..];
                    return Some(&s[..tag_end]);
                }
            }
            // Malformed member: skip to the next comma.
            match s.iter().position(|&b| b == b',') {
                Some(i) => self.0 = &s[i..],
                None => {
                    self.0 = &[];
                    return None;
                }
            }
            if self.0 == s {
                self.0 = &s[1..];
            }
        }
    }
}

/// An HTTP-date (any of the three formats) in Unix seconds.
pub fn parse_date(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?;
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn tags(s: &str) -> Vec<String> {
        EtagIter(s.as_bytes())
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect()
    }

    #[test]
    fn etag_lists() {
        assert_eq!(tags(r#""a", W/"b","c""#), [r#""a""#, r#"W/"b""#, r#""c""#]);
        assert_eq!(tags(r#""a,b" , "c""#), [r#""a,b""#, r#""c""#]);
        assert_eq!(tags(r#"bogus, "c""#), [r#""c""#]);
        assert_eq!(tags(""), Vec::<String>::new());
        assert!(list_matches(b"*", b"\"x\"", true));
        assert!(list_matches(br#""y", W/"x""#, b"\"x\"", false));
        assert!(!list_matches(br#""y", W/"x""#, b"\"x\"", true));
        assert!(list_matches(br#""x""#, b"W/\"x\"", false));
        assert!(!list_matches(br#""x""#, b"W/\"x\"", true));
    }

    #[test]
    fn order_of_evaluation() {
        let lm = 1_700_000_000;
        let date_eq =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(lm));
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        h.insert(
            IF_MODIFIED_SINCE,
            HeaderValue::from_str(&date_eq).unwrap_or_else(|_| HeaderValue::from_static("x")),
        );
        // If-None-Match present and not matching: If-Modified-Since is ignored.
        assert_eq!(evaluate(&h, b"\"e\"", lm), Precondition::Proceed);
        h.remove(IF_NONE_MATCH);
        assert_eq!(evaluate(&h, b"\"e\"", lm), Precondition::NotModified);
        assert_eq!(evaluate(&h, b"\"e\"", lm + 1), Precondition::Proceed);
        h.insert(IF_MATCH, HeaderValue::from_static("\"nope\""));
        assert_eq!(evaluate(&h, b"\"e\"", lm), Precondition::Failed);
    }
}
