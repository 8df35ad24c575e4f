//! Request path → path relative to the root, such that no input can name anything outside it.
//!
//! The path is percent-decoded exactly once, then `.`/`..` segments are resolved lexically. Anything
//! that could be read differently by the file system than by us is refused: an encoded `/`
//! (`%2f`, which would hide a segment boundary from the `..` check), NUL (truncates C strings) and
//! backslash (a separator on Windows and in some tools). Climbing above the root is refused rather
//! than clamped, like nginx, so `/../x` never quietly becomes `/x`.

use std::borrow::Cow;

use super::StaticError;

/// A normalized request path: starts with `/`, no empty, `.` or `..` segments, no `%`-escapes;
/// ends with `/` exactly when the request did (a directory request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanPath<'a>(Cow<'a, str>);

impl<'a> CleanPath<'a> {
    /// The normalized path (borrowed from the request in the common case).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the request named a directory (`/dir/`).
    pub fn is_dir_request(&self) -> bool {
        self.0.ends_with('/')
    }

    /// The segments, without the trailing empty one of a directory request.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// Whether any segment is a dotfile/dot-directory (`.env`, `.git/…`).
    pub fn is_hidden(&self) -> bool {
        self.0.contains("/.")
    }

    /// The path without its leading `/`, to join onto the root.
    pub fn relative(&self) -> &str {
        self.0.trim_start_matches('/')
    }
}

/// Decodes and normalizes a request path (still percent-encoded, as in the URI).
pub fn normalize(raw: &str) -> Result<CleanPath<'_>, StaticError> {
    if !raw.starts_with('/') {
        return Err(StaticError::BadPath);
    }
    if is_already_clean(raw) {
        return Ok(CleanPath(Cow::Borrowed(raw)));
    }
    let decoded = decode(raw)?;
    let dir_request = decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || decoded == "/";
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(StaticError::BadPath);
                }
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if dir_request || path.is_empty() {
        path.push('/');
    }
    Ok(CleanPath(Cow::Owned(path)))
}

/// The fast check for the hot path: nothing to decode and nothing to resolve.
fn is_already_clean(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.iter().any(|&c| c == b'%' || c == b'\\' || c == 0) {
        return false;
    }
    // Segments after the leading '/': none empty (except a trailing one), none "." or "..".
    let body = &raw[1..];
    let mut segs = body.split('/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        if (seg.is_empty() && !last) || seg == "." || seg == ".." {
            return false;
        }
    }
    true
}

fn decode(raw: &str) -> Result<String, StaticError> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let hi = b.get(i + 1).and_then(|&h| (h as char).to_digit(16));
            let lo = b.get(i + 2).and_then(|&l| (l as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(StaticError::BadPath);
            };
            let v = (hi * 16 + lo) as u8;
            if v == b'/' || v == b'\\' || v == 0 {
                return Err(StaticError::BadPath);
            }
            out.push(v);
            i += 3;
        } else {
            if c == b'\\' || c == 0 {
                return Err(StaticError::BadPath);
            }
            out.push(c);
            i += 1;
        }
    }
    // Names are UTF-8 on the wire in practice; other bytes cannot be named safely in links.
    String::from_utf8(out).map_err(|_| StaticError::BadPath)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match normalize(raw) {
            Ok(p) => p.as_str().to_owned(),
            Err(e) => panic!("{raw}: {e}"),
        }
    }
    fn bad(raw: &str) {
        assert!(matches!(normalize(raw), Err(StaticError::BadPath)), "{raw}");
    }

    #[test]
    fn clean_paths_borrow() {
        for p in ["/", "/a", "/a/b.txt", "/dir/", "/.env", "/a.b/c..d"] {
            let n = normalize(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(matches!(n.0, Cow::Borrowed(_)), "{p}");
            assert_eq!(n.as_str(), p);
        }
    }

    #[test]
    fn resolves_dots() {
        assert_eq!(ok("/a/./b"), "/a/b");
        assert_eq!(ok("/a/../b"), "/b");
        assert_eq!(ok("/a//b"), "/a/b");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/."), "/a/");
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/%61%62c"), "/abc");
        assert_eq!(ok("/caf%C3%A9.txt"), "/café.txt");
        assert_eq!(ok("/a%20b/"), "/a b/");
        assert_eq!(ok("/%2e%2e%2e"), "/...");
    }

    #[test]
    fn refuses_escapes() {
        bad("/../etc/passwd");
        bad("/%2e%2e/%2e%2e/etc/passwd");
        bad("/..%2fetc/passwd");
        bad("/%2e%2e%2f..");
        bad("/a\\..\\..\\secret");
        bad("/a%5c..%5csecret");
        bad("/file%00.html");
        bad("/a/../../b");
        bad("/%zz");
        bad("/%4");
        bad("/%ff%fe");
        bad("relative");
    }

    #[test]
    fn hidden_and_dirs() {
        assert!(normalize("/.env").map(|p| p.is_hidden()).unwrap_or(false));
        assert!(normalize("/.git/config")
            .map(|p| p.is_hidden())
            .unwrap_or(false));
        assert!(normalize("/a/%2egit/x")
            .map(|p| p.is_hidden())
            .unwrap_or(false));
        assert!(!normalize("/a.b/c").map(|p| p.is_hidden()).unwrap_or(true));
        assert!(normalize("/d/")
            .map(|p| p.is_dir_request())
            .unwrap_or(false));
        assert!(!normalize("/d").map(|p| p.is_dir_request()).unwrap_or(true));
    }
}
