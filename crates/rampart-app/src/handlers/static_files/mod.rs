//! Static files (nginx `root`/`alias`): path resolution that never escapes the root, conditional
//! requests, ranges, precompressed sidecars, directory listings and an open-file cache.
//!
//! Two paths through `serve`: the hit path (a small file already in `FileCache`) runs inline with
//! one `stat` and prebuilt header values; everything else resolves on the blocking pool (stat,
//! open, read or stream) and then shares the same response builder.

pub mod body;
pub mod cache;
pub mod conditional;
pub mod listing;
pub mod mime;
pub mod path;
pub mod range;
mod watch;

use std::borrow::Cow;
use std::fs::{self, File, Metadata};
use std::hash::BuildHasher;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION, RANGE, VARY,
};
use http::{HeaderMap, Method, Response, StatusCode};
use rampart_server::Body;

use crate::filters::compress::{self, AcceptEncoding, CompressSettings, Encoding};
use body::{FileBody, Segment};
pub use cache::{CachedFile, FileCache, FileHeaders, Stamp};
use conditional::Precondition;
use range::RangePlan;

/// One `try_files` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryFile {
    /// `$uri`: the request path as a file.
    Uri,
    /// `$uri/`: the request path as a directory (index files / listing).
    UriDir,
    /// A fixed path under the root (e.g. `/index.html`, the SPA fallback).
    Path(String),
    /// `=404`: answer with this status.
    Status(u16),
}

/// Per-route static file settings, compiled from the config.
#[derive(Debug)]
pub struct StaticSettings {
    /// Directory served (canonical path).
    pub root: PathBuf,
    /// For `alias`: the route prefix removed from the request path before joining `root`.
    pub strip_prefix: Option<String>,
    /// Index files tried for directory requests.
    pub index: Vec<String>,
    /// Fallback list; empty = `[$uri, $uri/]` then 404.
    pub try_files: Vec<TryFile>,
    /// Directory listings (HTML, or JSON when `Accept: application/json`).
    pub browse: bool,
    /// Serve dotfiles.
    pub serve_hidden: bool,
    /// Follow symlinks leaving the root.
    pub follow_symlinks_outside_root: bool,
    /// Serve `.br`/`.zst`/`.gz` sidecars.
    pub precompressed: bool,
    /// On-the-fly compression; `None` = off.
    pub compress: Option<Arc<CompressSettings>>,
    /// Shared open-file/metadata cache.
    pub cache: Arc<FileCache>,
}

impl StaticSettings {
    /// Settings for `root` with nginx-like defaults (`index.html`, no listing, no dotfiles, no
    /// symlinks out of the root, no sidecars, no compression). The root is canonicalized, so it
    /// must exist.
    pub fn new(root: impl AsRef<Path>, cache: Arc<FileCache>) -> io::Result<StaticSettings> {
        Ok(StaticSettings {
            root: fs::canonicalize(root)?,
            strip_prefix: None,
            index: vec!["index.html".to_owned()],
            try_files: Vec::new(),
            browse: false,
            serve_hidden: false,
            follow_symlinks_outside_root: false,
            precompressed: false,
            compress: None,
            cache,
        })
    }
}

/// Why a static request failed; the pipeline turns it into a status and error page.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// Nothing there (or hidden).
    #[error("not found")]
    NotFound,
    /// Exists but may not be served.
    #[error("forbidden")]
    Forbidden,
    /// The path is malformed.
    #[error("bad request path")]
    BadPath,
    /// Only GET and HEAD serve files.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A `try_files` `=CODE`.
    #[error("status {0}")]
    Status(u16),
    /// Reading failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl StaticError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            StaticError::NotFound => StatusCode::NOT_FOUND,
            StaticError::Forbidden => StatusCode::FORBIDDEN,
            StaticError::BadPath => StatusCode::BAD_REQUEST,
            StaticError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            StaticError::Status(s) => {
                StatusCode::from_u16(*s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            StaticError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Serves one request from the file system.
pub async fn serve(
    s: &StaticSettings,
    req: &http::request::Parts,
) -> Result<Response<Body>, StaticError> {
    let is_head = if req.method == Method::GET {
        false
    } else if req.method == Method::HEAD {
        true
    } else {
        return Err(StaticError::MethodNotAllowed);
    };
    let raw = request_path(s, req.uri.path())?;
    let clean = path::normalize(&raw)?;
    if !s.serve_hidden && clean.is_hidden() {
        return Err(StaticError::NotFound);
    }

    if fast_path_applies(s, clean.is_dir_request()) {
        if let Some(e) = s.cache.get(&s.root, clean.as_str()) {
            // A directory request's entry is its first index file: only for the same index list.
            let same_index =
                !clean.is_dir_request() || s.index.first().is_some_and(|i| e.path.ends_with(i));
            if same_index && hit_is_valid(s, req, &e) {
                return Ok(respond_cached(s, req, &e, is_head));
            }
        }
    }

    let job = Job {
        root: s.root.clone(),
        rel: clean.as_str().to_owned(),
        index: s.index.clone(),
        try_files: s.try_files.clone(),
        browse: s.browse,
        serve_hidden: s.serve_hidden,
        follow: s.follow_symlinks_outside_root,
        precompressed: s.precompressed,
        accept: req
            .headers
            .get(ACCEPT_ENCODING)
            .map(|v| AcceptEncoding::parse(v.as_bytes())),
        cache: s.cache.clone(),
    };
    let found = tokio::task::spawn_blocking(move || job.resolve())
        .await
        .map_err(|e| StaticError::Io(io::Error::other(e)))??;
    match found {
        Found::Cached(e) => Ok(respond_cached(s, req, &e, is_head)),
        Found::Stream(f) => {
            let vary =
                f.sidecars != 0 || f.encoding.is_some() || compress_vary(s, &f.headers, f.len);
            let rep = Rep {
                headers: &f.headers,
                len: f.len,
                content_length: None,
                encoding: f.encoding,
                vary,
                ranges: true,
                source: Source::File(f.file.clone()),
                full_headers: None,
            };
            let resp = respond(req, rep, is_head);
            Ok(maybe_compress(s, req, resp))
        }
        Found::Redirect => Ok(redirect(req)),
        Found::Listing(entries) => Ok(maybe_compress(
            s,
            req,
            listing(req, &clean, &entries, is_head),
        )),
    }
}

/// The path to resolve: the URI path minus the alias prefix, still percent-encoded.
fn request_path<'a>(s: &StaticSettings, path: &'a str) -> Result<Cow<'a, str>, StaticError> {
    let Some(prefix) = s.strip_prefix.as_deref() else {
        return Ok(Cow::Borrowed(path));
    };
    let rest = path.strip_prefix(prefix).ok_or(StaticError::NotFound)?;
    Ok(if rest.starts_with('/') {
        Cow::Borrowed(rest)
    } else {
        Cow::Owned(format!("/{rest}"))
    })
}

/// Whether a cache entry keyed by the request path can answer it: only when the first
/// `try_files` entry that can match this kind of request is `$uri` (files) or `$uri/` (dirs).
fn fast_path_applies(s: &StaticSettings, dir_request: bool) -> bool {
    if s.try_files.is_empty() {
        return true;
    }
    if dir_request {
        matches!(
            s.try_files.iter().find(|t| **t != TryFile::Uri),
            Some(TryFile::UriDir)
        )
    } else {
        s.try_files[0] == TryFile::Uri
    }
}

/// One `stat` (two with sidecars) proves the cached bytes are still the file's.
fn hit_is_valid(s: &StaticSettings, req: &http::request::Parts, e: &CachedFile) -> bool {
    if !e.inside_root && !s.follow_symlinks_outside_root {
        return false;
    }
    let watched = e.watch.as_ref().is_some_and(|w| s.cache.unchanged(w));
    if watched {
        // A sidecar would be chosen: let the slow path serve it.
        return !(s.precompressed
            && e.sidecars != 0
            && compress::negotiate(&req.headers, &sidecar_list(e.sidecars)).is_some());
    }
    match fs::metadata(&e.path) {
        Ok(m) if Stamp::of(&m) == e.stamp => {}
        _ => return false,
    }
    if s.precompressed {
        let Some(dir_stamp) = e.dir_stamp else {
            return false;
        };
        match e.path.parent().map(fs::metadata) {
            Some(Ok(m)) if Stamp::of(&m) == dir_stamp => {}
            _ => return false,
        }
        // A sidecar would be chosen: let the slow path serve it.
        if e.sidecars != 0 && compress::negotiate(&req.headers, &sidecar_list(e.sidecars)).is_some()
        {
            return false;
        }
    }
    true
}

fn sidecar_list(mask: u8) -> Vec<Encoding> {
    Encoding::ALL
        .into_iter()
        .filter(|e| mask & (1 << e.index()) != 0)
        .collect()
}

/// Whether on-the-fly compression could apply to this file (so the answer varies).
fn compress_vary(s: &StaticSettings, h: &FileHeaders, len: u64) -> bool {
    s.compress
        .as_ref()
        .is_some_and(|c| len >= c.min_size && compress::is_compressible(h.content_type.as_bytes()))
}

fn maybe_compress(
    s: &StaticSettings,
    req: &http::request::Parts,
    resp: Response<Body>,
) -> Response<Body> {
    match &s.compress {
        Some(c) => compress::apply(c, req, resp),
        None => resp,
    }
}

/// Answers from a cache entry: identity, a cached compressed variant, or a range of it.
fn respond_cached(
    s: &StaticSettings,
    req: &http::request::Parts,
    e: &CachedFile,
    is_head: bool,
) -> Response<Body> {
    let len = e.data.len() as u64;
    let compressing = s
        .compress
        .as_ref()
        .filter(|c| e.compressible && len >= c.min_size && len > 0);
    let vary = (s.precompressed && e.sidecars != 0) || compressing.is_some();
    // A Range asks for identity bytes; otherwise a compressed form if the client takes one.
    let wants_range = !is_head && req.headers.contains_key(RANGE);
    if !wants_range {
        if let Some(c) = compressing {
            if let Some(enc) = compress::negotiate(&req.headers, &c.algorithms) {
                if let Some(v) = e.variant(c, enc) {
                    let headers = FileHeaders {
                        etag: v.etag.clone(),
                        ..e.headers.clone()
                    };
                    let rep = Rep {
                        headers: &headers,
                        len: v.data.len() as u64,
                        content_length: Some(&v.content_length),
                        encoding: Some(enc),
                        vary,
                        ranges: false,
                        source: Source::Bytes(v.data.clone()),
                        full_headers: None,
                    };
                    return respond(req, rep, is_head);
                }
            }
        }
    }
    let mut rep = Rep {
        headers: &e.headers,
        len,
        content_length: Some(&e.content_length),
        encoding: None,
        vary,
        ranges: true,
        source: Source::Bytes(e.data.clone()),
        full_headers: None,
    };
    rep.full_headers = Some(e.full_headers(vary, || full_headers(&rep)));
    respond(req, rep, is_head)
}

/// The bytes of a representation.
enum Source {
    Bytes(Bytes),
    File(Arc<File>),
}

/// One representation of a file, ready to answer with.
struct Rep<'a> {
    headers: &'a FileHeaders,
    len: u64,
    content_length: Option<&'a HeaderValue>,
    encoding: Option<Encoding>,
    vary: bool,
    /// Whether byte ranges are offered (not for on-the-fly compressed forms).
    ranges: bool,
    source: Source,
    /// Every header of the full (200) answer, prebuilt: cloning them is about half the cost of
    /// inserting them one by one on every hit.
    full_headers: Option<&'a HeaderMap>,
}

/// Preconditions, then ranges, then the full answer.
fn respond(req: &http::request::Parts, rep: Rep<'_>, is_head: bool) -> Response<Body> {
    let h = &req.headers;
    let etag = rep.headers.etag.as_bytes();
    let conditional = may_be_conditional(h);
    let precondition = if conditional {
        conditional::evaluate(h, etag, rep.headers.mtime)
    } else {
        Precondition::Proceed
    };
    match precondition {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let mut resp = Response::new(Body::Empty);
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            let out = resp.headers_mut();
            out.insert(ETAG, rep.headers.etag.clone());
            out.insert(LAST_MODIFIED, rep.headers.last_modified.clone());
            if rep.vary {
                out.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
            }
            return resp;
        }
        Precondition::Failed => {
            let mut resp = Response::new(Body::Empty);
            *resp.status_mut() = StatusCode::PRECONDITION_FAILED;
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            return resp;
        }
    }
    if conditional && rep.ranges && !is_head {
        if let Some(range) = h.get(RANGE) {
            if conditional::if_range_allows(h, etag, rep.headers.mtime) {
                match range::plan(range.as_bytes(), rep.len) {
                    RangePlan::Full => {}
                    RangePlan::Unsatisfiable => {
                        let mut resp = Response::new(Body::Empty);
                        *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                        let out = resp.headers_mut();
                        put(out, CONTENT_RANGE, format!("bytes */{}", rep.len));
                        out.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
                        out.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                        return resp;
                    }
                    RangePlan::Partial(ranges) => return partial(rep, &ranges),
                }
            }
        }
    }
    let mut resp = Response::new(if is_head {
        Body::Empty
    } else {
        match &rep.source {
            Source::Bytes(b) => Body::full(b.clone()),
            Source::File(f) => file_body(
                f.clone(),
                vec![Segment::File {
                    offset: 0,
                    len: rep.len,
                }],
            ),
        }
    });
    *resp.headers_mut() = match rep.full_headers {
        Some(h) => h.clone(),
        None => full_headers(&rep),
    };
    resp
}

/// Whether the request has a header that can change a file answer (a precondition or a range).
/// Most requests carry a handful of headers and none of these: one pass comparing names is
/// cheaper than the five hashed lookups it spares. Long header lists take the lookups.
fn may_be_conditional(h: &HeaderMap) -> bool {
    use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};
    h.len() > 8
        || h.keys().any(|k| {
            k == IF_NONE_MATCH
                || k == IF_MODIFIED_SINCE
                || k == RANGE
                || k == IF_MATCH
                || k == IF_UNMODIFIED_SINCE
                || k == IF_RANGE
        })
}

/// The headers of a full answer with `rep`.
fn full_headers(rep: &Rep<'_>) -> HeaderMap {
    // Room for what comes later too (`Server`, the request id, hyper's `Date`), so no insert
    // has to grow the map.
    let mut out = HeaderMap::with_capacity(12);
    common_headers(&mut out, rep);
    match rep.content_length {
        Some(v) => {
            out.insert(CONTENT_LENGTH, v.clone());
        }
        None => {
            out.insert(CONTENT_LENGTH, HeaderValue::from(rep.len));
        }
    }
    out
}

fn common_headers(out: &mut HeaderMap, rep: &Rep<'_>) {
    out.insert(CONTENT_TYPE, rep.headers.content_type.clone());
    out.insert(ETAG, rep.headers.etag.clone());
    out.insert(LAST_MODIFIED, rep.headers.last_modified.clone());
    if rep.ranges {
        out.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Some(enc) = rep.encoding {
        out.insert(CONTENT_ENCODING, enc.header_value());
    }
    if rep.vary {
        out.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

fn put(out: &mut HeaderMap, name: http::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        out.insert(name, v);
    }
}

/// 206: one range as is, several as `multipart/byteranges`.
fn partial(rep: Rep<'_>, ranges: &[(u64, u64)]) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let (segments, total) = if let [(first, last)] = ranges {
        let out = resp.headers_mut();
        common_headers(out, &rep);
        put(
            out,
            CONTENT_RANGE,
            format!("bytes {first}-{last}/{}", rep.len),
        );
        (
            vec![Segment::File {
                offset: *first,
                len: last - first + 1,
            }],
            last - first + 1,
        )
    } else {
        let boundary = boundary();
        let out = resp.headers_mut();
        common_headers(out, &rep);
        put(
            out,
            CONTENT_TYPE,
            format!("multipart/byteranges; boundary={boundary}"),
        );
        let ct = rep
            .headers
            .content_type
            .to_str()
            .unwrap_or("application/octet-stream");
        let mut segments = Vec::with_capacity(ranges.len() * 2 + 1);
        let mut total = 0u64;
        for (first, last) in ranges {
            let head = format!(
                "\r\n--{boundary}\r\nContent-Type: {ct}\r\nContent-Range: bytes {first}-{last}/{}\r\n\r\n",
                rep.len
            );
            total += head.len() as u64 + (last - first + 1);
            segments.push(Segment::Bytes(Bytes::from(head)));
            segments.push(Segment::File {
                offset: *first,
                len: last - first + 1,
            });
        }
        let tail = format!("\r\n--{boundary}--\r\n");
        total += tail.len() as u64;
        segments.push(Segment::Bytes(Bytes::from(tail)));
        (segments, total)
    };
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(total));
    *resp.body_mut() = match rep.source {
        // One range of a cached file: a slice of the same buffer, no copy.
        Source::Bytes(data) if segments.len() == 1 => match segments[0] {
            Segment::File { offset, len } => {
                Body::full(data.slice(offset as usize..(offset + len) as usize))
            }
            Segment::Bytes(ref b) => Body::full(b.clone()),
        },
        Source::Bytes(data) => {
            let mut buf = BytesMut::with_capacity(total as usize);
            for seg in segments {
                match seg {
                    Segment::Bytes(b) => buf.extend_from_slice(&b),
                    Segment::File { offset, len } => {
                        buf.extend_from_slice(&data[offset as usize..(offset + len) as usize])
                    }
                }
            }
            Body::full(buf.freeze())
        }
        Source::File(f) => file_body(f, segments),
    };
    resp
}

/// A multipart boundary that cannot be predicted from earlier responses.
fn boundary() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = SEED.get_or_init(std::hash::RandomState::new).hash_one(n);
    format!("{h:016x}{n:08x}")
}

/// 301 to the directory with a trailing slash, keeping the query (like nginx).
fn redirect(req: &http::request::Parts) -> Response<Body> {
    let mut loc = String::with_capacity(
        req.uri.path().len() + 1 + req.uri.query().map_or(0, |q| q.len() + 1),
    );
    loc.push_str(req.uri.path());
    loc.push('/');
    if let Some(q) = req.uri.query() {
        loc.push('?');
        loc.push_str(q);
    }
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    put(resp.headers_mut(), LOCATION, loc);
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// A directory listing in HTML, or JSON when asked for.
fn listing(
    req: &http::request::Parts,
    clean: &path::CleanPath<'_>,
    entries: &[listing::Entry],
    is_head: bool,
) -> Response<Body> {
    let wants_json = req
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"))
        || req.headers.get_all(ACCEPT).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("application/json"))
        });
    let (body, ct) = if wants_json {
        (listing::json(entries), "application/json; charset=utf-8")
    } else {
        // Show the path the client asked for (with the alias prefix), decoded.
        let shown = match path::normalize(req.uri.path()) {
            Ok(p) => p.as_str().to_owned(),
            Err(_) => clean.as_str().to_owned(),
        };
        (
            listing::html(&shown, entries).into_bytes(),
            "text/html; charset=utf-8",
        )
    };
    let len = body.len();
    let mut resp = Response::new(if is_head {
        Body::Empty
    } else {
        Body::full(body)
    });
    let out = resp.headers_mut();
    out.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    out.insert(CONTENT_LENGTH, HeaderValue::from(len));
    out.insert(VARY, HeaderValue::from_static("Accept"));
    resp
}

/// What the blocking resolver found.
enum Found {
    Cached(Arc<CachedFile>),
    Stream(Streamed),
    Redirect,
    Listing(Vec<listing::Entry>),
}

/// A file answered from disk, not from memory.
struct Streamed {
    file: Arc<File>,
    len: u64,
    headers: FileHeaders,
    encoding: Option<Encoding>,
    sidecars: u8,
}

/// Everything the blocking resolver needs, owned.
struct Job {
    root: PathBuf,
    rel: String,
    index: Vec<String>,
    try_files: Vec<TryFile>,
    browse: bool,
    serve_hidden: bool,
    follow: bool,
    precompressed: bool,
    accept: Option<AcceptEncoding>,
    cache: Arc<FileCache>,
}

/// A regular file found by a `try_files` entry.
struct Candidate {
    /// Normalized path of the file under the root (`/dir/index.html`).
    rel: String,
    path: PathBuf,
    /// Also cache it under the request path (a directory request answered by its first index).
    alias: Option<String>,
}

const DEFAULT_TRY: [TryFile; 2] = [TryFile::Uri, TryFile::UriDir];

impl Job {
    fn resolve(self) -> Result<Found, StaticError> {
        let dir_request = self.rel.ends_with('/');
        let tries: &[TryFile] = if self.try_files.is_empty() {
            &DEFAULT_TRY
        } else {
            &self.try_files
        };
        for (i, t) in tries.iter().enumerate() {
            match t {
                TryFile::Uri => {
                    if !dir_request {
                        if let Some(c) = self.file_at(&self.rel, None)? {
                            return self.serve_file(c);
                        }
                    }
                }
                TryFile::UriDir => {
                    let keyable = tries[..i].iter().all(|t| *t == TryFile::Uri);
                    if let Some(found) = self.dir_at(&self.rel, dir_request, keyable)? {
                        return Ok(found);
                    }
                }
                TryFile::Path(p) => {
                    let clean = path::normalize(p)?;
                    let rel = clean.as_str();
                    if clean.is_dir_request() {
                        if let Some(found) = self.dir_at(rel, true, false)? {
                            return Ok(found);
                        }
                    } else if let Some(c) = self.file_at(rel, None)? {
                        return self.serve_file(c);
                    }
                }
                TryFile::Status(code) => return Err(StaticError::Status(*code)),
            }
        }
        Err(StaticError::NotFound)
    }

    fn full_path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// `rel` as a regular file, if it is one.
    fn file_at(&self, rel: &str, alias: Option<String>) -> Result<Option<Candidate>, StaticError> {
        let rel = rel.trim_end_matches('/');
        let path = self.full_path(rel);
        match stat(&path)? {
            Some(m) if m.is_file() => Ok(Some(Candidate {
                rel: rel.to_owned(),
                path,
                alias,
            })),
            _ => Ok(None),
        }
    }

    /// `rel` as a directory: redirect, index file, listing or 403.
    fn dir_at(
        &self,
        rel: &str,
        dir_request: bool,
        keyable: bool,
    ) -> Result<Option<Found>, StaticError> {
        let path = self.full_path(rel);
        match stat(&path)? {
            Some(m) if m.is_dir() => {}
            _ => return Ok(None),
        }
        if !self.follow && !self.inside_root(&path)? {
            return Err(StaticError::Forbidden);
        }
        if !dir_request {
            return Ok(Some(Found::Redirect));
        }
        let dir_rel = if rel.ends_with('/') {
            rel.to_owned()
        } else {
            format!("{rel}/")
        };
        for (j, name) in self.index.iter().enumerate() {
            let alias = (keyable && j == 0).then(|| dir_rel.clone());
            if let Some(c) = self.file_at(&format!("{dir_rel}{name}"), alias)? {
                return self.serve_file(c).map(Some);
            }
        }
        if self.browse {
            return Ok(Some(Found::Listing(listing::read(
                &path,
                self.serve_hidden,
            )?)));
        }
        Err(StaticError::Forbidden)
    }

    fn inside_root(&self, path: &Path) -> Result<bool, StaticError> {
        let real = fs::canonicalize(path).map_err(map_open_err)?;
        let root = fs::canonicalize(&self.root).map_err(map_open_err)?;
        Ok(real.starts_with(&root))
    }

    /// Opens the file (or its chosen sidecar) and decides: memory (cache) or stream.
    fn serve_file(&self, c: Candidate) -> Result<Found, StaticError> {
        let (file, meta, inside) = self.open_checked(&c.path)?;
        let content_type = mime::content_type(&c.path);

        let mut sidecars = 0u8;
        let mut dir_stamp = None;
        if self.precompressed {
            dir_stamp = c
                .path
                .parent()
                .and_then(|d| fs::metadata(d).ok())
                .map(|m| Stamp::of(&m));
            for enc in Encoding::ALL {
                if fs::metadata(sidecar_path(&c.path, enc)).is_ok_and(|m| m.is_file()) {
                    sidecars |= 1 << enc.index();
                }
            }
            let chosen = self
                .accept
                .as_ref()
                .and_then(|a| a.negotiate(sidecar_list(sidecars)));
            if let Some(enc) = chosen {
                let sc_path = sidecar_path(&c.path, enc);
                if let Ok((sc_file, sc_meta, sc_inside)) = self.open_checked(&sc_path) {
                    if sc_inside || self.follow {
                        return Ok(Found::Stream(Streamed {
                            file: Arc::new(sc_file),
                            len: sc_meta.len(),
                            headers: FileHeaders::new(
                                &sc_meta,
                                &content_type,
                                &format!("-{}", enc.as_str()),
                            ),
                            encoding: Some(enc),
                            sidecars,
                        }));
                    }
                }
            }
        }

        if meta.len() <= self.cache.max_file_size() || meta.len() <= SMALL_READ {
            let stamp = Stamp::of(&meta);
            if let Some(e) = self.cache.get(&self.root, &c.rel) {
                if e.stamp == stamp
                    && e.inside_root == inside
                    && e.sidecars == sidecars
                    && (!self.precompressed || e.dir_stamp == dir_stamp)
                {
                    if let Some(alias) = &c.alias {
                        self.cache.insert(&self.root, alias, e.clone());
                    }
                    return Ok(Found::Cached(e));
                }
            }
            // Watch first, then read: a change during the read bumps the generation.
            let watch = self.cache.watch(&c.path);
            let mut data = Vec::with_capacity(meta.len() as usize);
            (&file).take(meta.len()).read_to_end(&mut data)?;
            let entry = Arc::new(
                CachedFile::new(
                    &self.root,
                    &c.rel,
                    c.path.clone(),
                    &meta,
                    Bytes::from(data),
                    inside,
                    sidecars,
                    dir_stamp,
                    &content_type,
                )
                .with_watch(watch),
            );
            // Only a complete read of an unchanged file may be cached.
            let unchanged = entry.data.len() as u64 == meta.len()
                && fs::metadata(&c.path).is_ok_and(|m| Stamp::of(&m) == stamp);
            if unchanged {
                self.cache.insert(&self.root, &c.rel, entry.clone());
                if let Some(alias) = &c.alias {
                    self.cache.insert(&self.root, alias, entry.clone());
                }
            }
            return Ok(Found::Cached(entry));
        }
        Ok(Found::Stream(Streamed {
            file: Arc::new(file),
            len: meta.len(),
            headers: FileHeaders::new(&meta, &content_type, ""),
            encoding: None,
            sidecars,
        }))
    }

    /// Opens `path` and checks that what was opened is inside the root (or that leaving it is
    /// allowed). Checked on the opened file's identity, so swapping a symlink between the check
    /// and the open cannot smuggle out another file.
    fn open_checked(&self, path: &Path) -> Result<(File, Metadata, bool), StaticError> {
        let file = File::open(path).map_err(map_open_err)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(StaticError::NotFound);
        }
        let real = fs::canonicalize(path).map_err(map_open_err)?;
        let root = fs::canonicalize(&self.root).map_err(map_open_err)?;
        let inside =
            real.starts_with(&root) && fs::metadata(&real).is_ok_and(|m| same_file(&m, &meta));
        if !inside && !self.follow {
            return Err(StaticError::Forbidden);
        }
        Ok((file, meta, inside))
    }
}

/// Files this small are read whole even when the cache is off (one read, no stream).
const SMALL_READ: u64 = 16 * 1024;

#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

fn sidecar_path(path: &Path, enc: Encoding) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(enc.sidecar_ext());
    PathBuf::from(s)
}

/// `stat`: missing → `None`; unreadable → 403; other failures → 500.
fn stat(path: &Path) -> Result<Option<Metadata>, StaticError> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(StaticError::Forbidden),
        Err(e) => Err(StaticError::Io(e)),
    }
}

fn is_missing(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) {
        return true;
    }
    // Linux ENAMETOOLONG (no such file can exist) and ELOOP (a symlink loop serves nothing).
    cfg!(target_os = "linux") && matches!(e.raw_os_error(), Some(36 | 40))
}

fn map_open_err(e: io::Error) -> StaticError {
    if is_missing(&e) {
        StaticError::NotFound
    } else if e.kind() == io::ErrorKind::PermissionDenied {
        StaticError::Forbidden
    } else {
        StaticError::Io(e)
    }
}

/// Pieces of an open file as a response body: sent with `sendfile` over HTTP/1, read in
/// chunks on the blocking pool otherwise.
fn file_body(f: std::sync::Arc<std::fs::File>, segments: Vec<Segment>) -> Body {
    let read = FileBody::new(f.clone(), segments.clone());
    Body::File(rampart_server::FileRegions::new(f, segments, read))
}
