//! Static files through the public `serve` API, one temp dir per test.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use rampart_app::filters::compress::{CompressSettings, Encoding};
use rampart_app::handlers::static_files::{
    path, serve, FileCache, StaticError, StaticSettings, TryFile,
};

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    streamed: bool,
}

impl Resp {
    fn h(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
    }
    fn lacks(&self, name: &str) -> bool {
        !self.headers.contains_key(name)
    }
}

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

async fn call(
    s: &StaticSettings,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> Result<Resp, StaticError> {
    let resp = serve(s, &parts(method, uri, headers)).await?;
    let (p, body) = resp.into_parts();
    let streamed = matches!(
        body,
        rampart_server::Body::Stream(_) | rampart_server::Body::File(_)
    );
    let body = body.collect().await.unwrap().to_bytes();
    Ok(Resp {
        status: p.status,
        headers: p.headers,
        body,
        streamed,
    })
}

async fn get(s: &StaticSettings, uri: &str, headers: &[(&str, &str)]) -> Resp {
    call(s, "GET", uri, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {uri}: {e}"))
}

async fn err(s: &StaticSettings, uri: &str) -> StaticError {
    match call(s, "GET", uri, &[]).await {
        Ok(r) => panic!(
            "GET {uri}: expected an error, got {} {:?}",
            r.status, r.body
        ),
        Err(e) => e,
    }
}

fn write(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn setup() -> (tempfile::TempDir, StaticSettings) {
    let dir = tempfile::tempdir().unwrap();
    let s = StaticSettings::new(dir.path(), Arc::new(FileCache::default())).unwrap();
    (dir, s)
}

fn nginx_etag(path: &Path) -> String {
    let m = std::fs::metadata(path).unwrap();
    let mtime = m
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("\"{mtime:x}-{:x}\"", m.len())
}

fn http_date(path: &Path) -> String {
    httpdate::fmt_http_date(std::fs::metadata(path).unwrap().modified().unwrap())
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

// ---------------------------------------------------------------- basics

#[tokio::test]
async fn serves_file_with_type_validators_and_length() {
    let (dir, s) = setup();
    write(dir.path(), "index.html", b"<h1>hi</h1>");
    write(dir.path(), "a.css", b"body{}");
    write(dir.path(), "a.json", b"{}");
    write(dir.path(), "a.txt", b"text");
    write(dir.path(), "a.png", b"\x89PNG");
    write(dir.path(), "blob", b"??");
    let r = get(&s, "/index.html", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, &b"<h1>hi</h1>"[..]);
    assert_eq!(r.h("content-type"), "text/html; charset=utf-8");
    assert_eq!(r.h("content-length"), "11");
    assert_eq!(r.h("accept-ranges"), "bytes");
    assert_eq!(r.h("etag"), nginx_etag(&dir.path().join("index.html")));
    assert_eq!(
        r.h("last-modified"),
        http_date(&dir.path().join("index.html"))
    );
    assert!(
        r.lacks("vary"),
        "nothing to vary on without sidecars or compression"
    );
    assert!(r.lacks("date") && r.lacks("server"));
    for (uri, ct) in [
        ("/a.css", "text/css; charset=utf-8"),
        ("/a.json", "application/json; charset=utf-8"),
        ("/a.txt", "text/plain; charset=utf-8"),
        ("/a.png", "image/png"),
        ("/blob", "application/octet-stream"),
    ] {
        assert_eq!(get(&s, uri, &[]).await.h("content-type"), ct, "{uri}");
    }
    // Second request: from the cache, same answer.
    assert!(!s.cache.is_empty());
    let again = get(&s, "/index.html", &[]).await;
    assert_eq!(again.body, r.body);
    assert_eq!(again.headers, r.headers);
}

#[tokio::test]
async fn head_has_get_headers_and_no_body() {
    let (dir, s) = setup();
    write(dir.path(), "a.txt", b"hello world");
    write(dir.path(), "big.bin", &big(300_000));
    for uri in ["/a.txt", "/big.bin"] {
        let g = get(&s, uri, &[]).await;
        let h = call(&s, "HEAD", uri, &[]).await.unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert!(h.body.is_empty());
        assert_eq!(h.headers, g.headers, "{uri}");
    }
    assert_eq!(
        call(&s, "HEAD", "/big.bin", &[])
            .await
            .unwrap()
            .h("content-length"),
        "300000"
    );
}

#[tokio::test]
async fn only_get_and_head() {
    let (dir, s) = setup();
    write(dir.path(), "a.txt", b"x");
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let e = call(&s, m, "/a.txt", &[]).await.err().unwrap();
        assert!(matches!(e, StaticError::MethodNotAllowed), "{m}");
        assert_eq!(e.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}

#[tokio::test]
async fn missing_is_404_and_file_with_slash_is_404() {
    let (dir, s) = setup();
    write(dir.path(), "a.txt", b"x");
    assert!(matches!(err(&s, "/nope").await, StaticError::NotFound));
    assert!(matches!(err(&s, "/a.txt/").await, StaticError::NotFound));
    assert!(matches!(err(&s, "/a.txt/x").await, StaticError::NotFound));
}

// ---------------------------------------------------------------- conditionals

#[tokio::test]
async fn if_none_match_and_if_modified_since() {
    let (dir, s) = setup();
    write(dir.path(), "a.txt", b"hello");
    let p = dir.path().join("a.txt");
    let etag = nginx_etag(&p);
    let lm = http_date(&p);
    let weak = format!("W/{etag}");
    let list = format!("\"x\", {etag}");
    for inm in [etag.as_str(), weak.as_str(), list.as_str(), "*"] {
        let r = get(&s, "/a.txt", &[("if-none-match", inm)]).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{inm}");
        assert!(r.body.is_empty());
        assert_eq!(r.h("etag"), etag);
        assert_eq!(r.h("last-modified"), lm);
        assert!(r.lacks("content-length") && r.lacks("content-type"));
    }
    assert_eq!(
        get(&s, "/a.txt", &[("if-modified-since", &lm)])
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get(
            &s,
            "/a.txt",
            &[("if-modified-since", "Thu, 01 Jan 2099 00:00:00 GMT")]
        )
        .await
        .status,
        StatusCode::NOT_MODIFIED
    );
    let r = get(
        &s,
        "/a.txt",
        &[("if-modified-since", "Thu, 01 Jan 1998 00:00:00 GMT")],
    )
    .await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"hello"[..]));
    // If-None-Match takes precedence: a non-matching tag wins over a matching date.
    let r = get(
        &s,
        "/a.txt",
        &[("if-none-match", "\"other\""), ("if-modified-since", &lm)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Garbage dates are ignored.
    assert_eq!(
        get(&s, "/a.txt", &[("if-modified-since", "yesterday")])
            .await
            .status,
        StatusCode::OK
    );
    // HEAD too.
    let r = call(&s, "HEAD", "/a.txt", &[("if-none-match", &etag)])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn if_match_and_if_unmodified_since() {
    let (dir, s) = setup();
    write(dir.path(), "a.txt", b"hello");
    let p = dir.path().join("a.txt");
    let etag = nginx_etag(&p);
    let lm = http_date(&p);
    let r = get(&s, "/a.txt", &[("if-match", "\"nope\"")]).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert!(r.body.is_empty());
    // Weak tags never match strongly.
    let weak = format!("W/{etag}");
    assert_eq!(
        get(&s, "/a.txt", &[("if-match", &weak)]).await.status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        get(&s, "/a.txt", &[("if-match", &etag)]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&s, "/a.txt", &[("if-match", "*")]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(
            &s,
            "/a.txt",
            &[("if-unmodified-since", "Thu, 01 Jan 1998 00:00:00 GMT")]
        )
        .await
        .status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        get(&s, "/a.txt", &[("if-unmodified-since", &lm)])
            .await
            .status,
        StatusCode::OK
    );
    // If-Match present: If-Unmodified-Since is not evaluated.
    let r = get(
        &s,
        "/a.txt",
        &[
            ("if-match", &etag),
            ("if-unmodified-since", "Thu, 01 Jan 1998 00:00:00 GMT"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // 412 beats 304.
    let r = get(
        &s,
        "/a.txt",
        &[("if-match", "\"nope\""), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
}

// ---------------------------------------------------------------- ranges

async fn check_ranges(s: &StaticSettings, uri: &str, data: &[u8], etag: &str, lm: &str) {
    let len = data.len();
    let r = get(s, uri, &[("range", "bytes=0-99")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.h("content-range"), format!("bytes 0-99/{len}"));
    assert_eq!(r.h("content-length"), "100");
    assert_eq!(&r.body[..], &data[..100]);
    assert_eq!(r.h("etag"), etag);

    let r = get(s, uri, &[("range", "bytes=-500")]).await;
    assert_eq!(
        r.h("content-range"),
        format!("bytes {}-{}/{len}", len - 500, len - 1)
    );
    assert_eq!(&r.body[..], &data[len - 500..]);

    let r = get(s, uri, &[("range", "bytes=500-")]).await;
    assert_eq!(r.h("content-range"), format!("bytes 500-{}/{len}", len - 1));
    assert_eq!(&r.body[..], &data[500..]);

    // Overlapping ranges coalesce into one part.
    let r = get(s, uri, &[("range", "bytes=10-20,15-30")]).await;
    assert_eq!(r.h("content-range"), format!("bytes 10-30/{len}"));
    assert_eq!(&r.body[..], &data[10..31]);

    // Two parts: multipart/byteranges, exact bytes.
    let r = get(s, uri, &[("range", "bytes=0-4, 100-109")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    let ct = r.h("content-type");
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    assert!(r.lacks("content-range"));
    let inner_ct = mime_of(uri);
    let mut expected = Vec::new();
    for (a, b) in [(0usize, 4usize), (100, 109)] {
        expected.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Type: {inner_ct}\r\nContent-Range: bytes {a}-{b}/{len}\r\n\r\n").as_bytes(),
        );
        expected.extend_from_slice(&data[a..=b]);
    }
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(&r.body[..], &expected[..]);
    assert_eq!(r.h("content-length"), expected.len().to_string());

    // Unsatisfiable.
    let r = get(s, uri, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.h("content-range"), format!("bytes */{len}"));
    assert!(r.body.is_empty());

    // Too many ranges, or heavy overlap: ignored, whole file.
    let many: Vec<String> = (0..101).map(|i| format!("{}-{}", i * 3, i * 3)).collect();
    let r = get(s, uri, &[("range", &format!("bytes={}", many.join(",")))]).await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, len));
    let overlap = ["0-"; 3].join(",");
    let r = get(s, uri, &[("range", &format!("bytes={overlap}"))]).await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, len));

    // Syntactically invalid: ignored.
    let r = get(s, uri, &[("range", "bytes=9-1")]).await;
    assert_eq!(r.status, StatusCode::OK);

    // If-Range: strong tag or exact date allows; anything else sends the whole file.
    for (ir, want) in [
        (etag.to_owned(), StatusCode::PARTIAL_CONTENT),
        (lm.to_owned(), StatusCode::PARTIAL_CONTENT),
        ("\"other\"".to_owned(), StatusCode::OK),
        (format!("W/{etag}"), StatusCode::OK),
        ("Thu, 01 Jan 1998 00:00:00 GMT".to_owned(), StatusCode::OK),
    ] {
        let r = get(s, uri, &[("range", "bytes=0-0"), ("if-range", &ir)]).await;
        assert_eq!(r.status, want, "If-Range {ir}");
        if want == StatusCode::OK {
            assert_eq!(&r.body[..], data);
        }
    }

    // HEAD ignores Range.
    let r = call(s, "HEAD", uri, &[("range", "bytes=0-9")])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("content-length"), len.to_string());
}

fn mime_of(uri: &str) -> &'static str {
    if uri.ends_with(".txt") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

#[tokio::test]
async fn ranges_on_cached_file() {
    let (dir, s) = setup();
    let data = big(5000);
    write(dir.path(), "small.bin", &data);
    let p = dir.path().join("small.bin");
    check_ranges(&s, "/small.bin", &data, &nginx_etag(&p), &http_date(&p)).await;
}

#[tokio::test]
async fn ranges_on_streamed_file() {
    let (dir, s) = setup();
    let data = big(1_000_000);
    write(dir.path(), "large.bin", &data);
    let p = dir.path().join("large.bin");
    check_ranges(&s, "/large.bin", &data, &nginx_etag(&p), &http_date(&p)).await;
}

#[tokio::test]
async fn large_files_stream_in_chunks() {
    let (dir, s) = setup();
    let data = big(3 * 1024 * 1024 + 17);
    write(dir.path(), "large.bin", &data);
    let resp = serve(&s, &parts("GET", "/large.bin", &[])).await.unwrap();
    assert_eq!(resp.headers()["content-length"], data.len().to_string());
    let mut body = resp.into_body();
    assert!(matches!(body, rampart_server::Body::File(_)));
    assert_eq!(
        http_body::Body::size_hint(&body).exact(),
        Some(data.len() as u64)
    );
    let mut got = Vec::new();
    let mut frames = 0;
    while let Some(f) = body.frame().await {
        let chunk = f.unwrap().into_data().unwrap();
        assert!(chunk.len() <= 256 * 1024, "bounded chunks");
        got.extend_from_slice(&chunk);
        frames += 1;
    }
    assert!(frames >= 12, "{frames} frames");
    assert_eq!(got, data);
    assert!(get(&s, "/large.bin", &[]).await.streamed);
}

// ---------------------------------------------------------------- precompressed sidecars

#[tokio::test]
async fn precompressed_sidecars_by_accept_encoding() {
    let (dir, mut s) = setup();
    s.precompressed = true;
    write(dir.path(), "app.js", b"console.log('identity')");
    write(dir.path(), "app.js.br", b"BR-BYTES");
    write(dir.path(), "app.js.zst", b"ZSTD-BYTES");
    write(dir.path(), "app.js.gz", b"GZ-BYTES");
    write(dir.path(), "only.css", b"a{}");
    write(dir.path(), "only.css.gz", b"GZ");
    let identity_etag = nginx_etag(&dir.path().join("app.js"));
    for (ae, enc, body) in [
        ("gzip, deflate, br, zstd", Some("br"), &b"BR-BYTES"[..]),
        ("gzip, zstd", Some("zstd"), b"ZSTD-BYTES"),
        ("gzip", Some("gzip"), b"GZ-BYTES"),
        ("br;q=0, gzip", Some("gzip"), b"GZ-BYTES"),
        ("gzip;q=1, br;q=0.5", Some("gzip"), b"GZ-BYTES"),
        ("*", Some("br"), b"BR-BYTES"),
        ("*;q=0.5, br;q=0", Some("zstd"), b"ZSTD-BYTES"),
        ("gzip;q=0.5, identity", None, b"console.log('identity')"),
        ("identity", None, b"console.log('identity')"),
        ("deflate", None, b"console.log('identity')"),
    ] {
        let r = get(&s, "/app.js", &[("accept-encoding", ae)]).await;
        assert_eq!(r.status, StatusCode::OK, "{ae}");
        assert_eq!(&r.body[..], body, "{ae}");
        assert_eq!(
            r.h("content-type"),
            "text/javascript; charset=utf-8",
            "{ae}"
        );
        assert_eq!(r.h("vary"), "Accept-Encoding", "{ae}");
        assert_eq!(r.h("content-length"), body.len().to_string(), "{ae}");
        match enc {
            Some(enc) => {
                assert_eq!(r.h("content-encoding"), enc, "{ae}");
                assert_ne!(r.h("etag"), identity_etag, "{ae}");
            }
            None => {
                assert!(r.lacks("content-encoding"), "{ae}");
                assert_eq!(r.h("etag"), identity_etag, "{ae}");
            }
        }
    }
    // No Accept-Encoding: identity, still Vary.
    let r = get(&s, "/app.js", &[]).await;
    assert_eq!(
        (r.h("vary"), &r.body[..]),
        ("Accept-Encoding", &b"console.log('identity')"[..])
    );
    // The sidecar's own ETag revalidates it.
    let br = get(&s, "/app.js", &[("accept-encoding", "br")]).await;
    let r = get(
        &s,
        "/app.js",
        &[("accept-encoding", "br"), ("if-none-match", br.h("etag"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.h("vary"), "Accept-Encoding");
    // Only the sidecars that exist are offered.
    let r = get(&s, "/only.css", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!((r.h("content-encoding"), &r.body[..]), ("gzip", &b"GZ"[..]));
    // A sidecar appearing after the identity file was cached is picked up.
    let r = get(&s, "/only.css", &[("accept-encoding", "identity")]).await;
    assert_eq!(&r.body[..], b"a{}");
    write(dir.path(), "only.css.br", b"BR");
    let r = get(&s, "/only.css", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!((r.h("content-encoding"), &r.body[..]), ("br", &b"BR"[..]));
    // Sidecars are ignored when the setting is off.
    s.precompressed = false;
    let r = get(&s, "/app.js", &[("accept-encoding", "br")]).await;
    assert!(r.lacks("content-encoding") && r.lacks("vary"));
}

// ---------------------------------------------------------------- on-the-fly compression

fn with_compress(s: &mut StaticSettings, min_size: u64) {
    s.compress = Some(Arc::new(CompressSettings {
        min_size,
        algorithms: vec![Encoding::Br, Encoding::Zstd, Encoding::Gzip],
        gzip_level: 6,
        brotli_quality: 5,
        zstd_level: 3,
    }));
}

#[tokio::test]
async fn compresses_small_cached_files_once() {
    let (dir, mut s) = setup();
    with_compress(&mut s, 100);
    let text = "hello compressible world. ".repeat(200);
    write(dir.path(), "page.html", text.as_bytes());
    write(dir.path(), "tiny.html", b"<p>tiny</p>");
    write(dir.path(), "pic.png", &vec![0u8; 4000]);
    let etag = nginx_etag(&dir.path().join("page.html"));

    let r = get(&s, "/page.html", &[("accept-encoding", "gzip")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("content-encoding"), "gzip");
    assert_eq!(r.h("vary"), "Accept-Encoding");
    assert_eq!(r.h("etag"), format!("W/{etag}"));
    assert_eq!(r.h("content-type"), "text/html; charset=utf-8");
    assert_eq!(r.h("content-length"), r.body.len().to_string());
    assert!(r.lacks("accept-ranges"));
    assert_eq!(gunzip(&r.body), text.as_bytes());
    // Again (served from the cached variant), and HEAD matches GET's headers.
    let again = get(&s, "/page.html", &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        (again.body.clone(), again.headers.clone()),
        (r.body.clone(), r.headers.clone())
    );
    let head = call(&s, "HEAD", "/page.html", &[("accept-encoding", "gzip")])
        .await
        .unwrap();
    assert_eq!(head.headers, r.headers);
    assert!(head.body.is_empty());

    let r = get(&s, "/page.html", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(r.h("content-encoding"), "br");
    assert_eq!(unbrotli(&r.body), text.as_bytes());
    let r = get(&s, "/page.html", &[("accept-encoding", "zstd")]).await;
    assert_eq!(r.h("content-encoding"), "zstd");
    assert_eq!(zstd::decode_all(&r.body[..]).unwrap(), text.as_bytes());

    // 304 for the compressed form by its weak tag (and by the strong one: weak comparison).
    for inm in [format!("W/{etag}"), etag.clone()] {
        let r = get(
            &s,
            "/page.html",
            &[("accept-encoding", "gzip"), ("if-none-match", &inm)],
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        assert_eq!(r.h("vary"), "Accept-Encoding");
    }
    // Identity for clients without a coding, with Vary.
    let r = get(&s, "/page.html", &[]).await;
    assert!(r.lacks("content-encoding"));
    assert_eq!(
        (r.h("vary"), r.h("etag")),
        ("Accept-Encoding", etag.as_str())
    );
    // Ranges are never compressed.
    let r = get(
        &s,
        "/page.html",
        &[("accept-encoding", "gzip"), ("range", "bytes=0-4")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert!(r.lacks("content-encoding"));
    assert_eq!(&r.body[..], b"hello");
    // Below min_size or not texty: untouched, and no Vary.
    let r = get(&s, "/tiny.html", &[("accept-encoding", "gzip")]).await;
    assert!(r.lacks("content-encoding") && r.lacks("vary"));
    let r = get(&s, "/pic.png", &[("accept-encoding", "gzip")]).await;
    assert!(r.lacks("content-encoding") && r.lacks("vary"));
    assert_eq!(r.body.len(), 4000);
}

#[tokio::test]
async fn compresses_large_files_streaming() {
    let (dir, mut s) = setup();
    with_compress(&mut s, 100);
    let text = "line of a big log file, quite compressible\n".repeat(40_000);
    write(dir.path(), "big.txt", text.as_bytes());
    let etag = nginx_etag(&dir.path().join("big.txt"));
    let r = get(&s, "/big.txt", &[("accept-encoding", "gzip")]).await;
    assert!(r.streamed);
    assert_eq!(r.h("content-encoding"), "gzip");
    assert!(r.lacks("content-length"));
    assert_eq!(r.h("etag"), format!("W/{etag}"));
    assert_eq!(r.h("vary"), "Accept-Encoding");
    assert_eq!(gunzip(&r.body), text.as_bytes());
    let head = call(&s, "HEAD", "/big.txt", &[("accept-encoding", "gzip")])
        .await
        .unwrap();
    assert_eq!(head.headers, r.headers);
    let r = get(&s, "/big.txt", &[]).await;
    assert_eq!(r.h("vary"), "Accept-Encoding");
    assert_eq!(r.body.len(), text.len());
}

// ---------------------------------------------------------------- cache validity

/// A change is seen by the next request the server reads: requests arrive through the event
/// loop, which by then has seen the inotify descriptor become readable. Handlers called
/// directly (as here) let the loop turn once, as a request's arrival would.
async fn turn() {
    tokio::task::yield_now().await;
}

#[tokio::test]
async fn cache_sees_every_change() {
    let (dir, s) = setup();
    write(dir.path(), "a.txt", b"version-1");
    assert_eq!(&get(&s, "/a.txt", &[]).await.body[..], b"version-1");
    assert_eq!(&get(&s, "/a.txt", &[]).await.body[..], b"version-1");
    // Same length, rewritten in place.
    write(dir.path(), "a.txt", b"version-2");
    turn().await;
    assert_eq!(&get(&s, "/a.txt", &[]).await.body[..], b"version-2");
    // Same length and mtime restored: ctime still differs.
    let mtime = std::fs::metadata(dir.path().join("a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    write(dir.path(), "a.txt", b"version-3");
    let f = std::fs::File::options()
        .write(true)
        .open(dir.path().join("a.txt"))
        .unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    turn().await;
    assert_eq!(&get(&s, "/a.txt", &[]).await.body[..], b"version-3");
    // Replaced by rename.
    write(dir.path(), "tmp", b"renamed!!");
    std::fs::rename(dir.path().join("tmp"), dir.path().join("a.txt")).unwrap();
    turn().await;
    assert_eq!(&get(&s, "/a.txt", &[]).await.body[..], b"renamed!!");
    // Deleted.
    std::fs::remove_file(dir.path().join("a.txt")).unwrap();
    turn().await;
    assert!(matches!(err(&s, "/a.txt").await, StaticError::NotFound));
    // Index entry cached for "/": follows the index file.
    write(dir.path(), "index.html", b"one");
    assert_eq!(&get(&s, "/", &[]).await.body[..], b"one");
    write(dir.path(), "index.html", b"two!");
    turn().await;
    assert_eq!(&get(&s, "/", &[]).await.body[..], b"two!");
}

#[tokio::test]
async fn cache_is_optional_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..50 {
        write(
            dir.path(),
            &format!("f{i}.txt"),
            format!("file {i}").as_bytes(),
        );
    }
    let off = StaticSettings::new(dir.path(), Arc::new(FileCache::disabled())).unwrap();
    assert_eq!(&get(&off, "/f1.txt", &[]).await.body[..], b"file 1");
    assert!(off.cache.is_empty());
    let small =
        StaticSettings::new(dir.path(), Arc::new(FileCache::new(16, 1 << 20, 1024))).unwrap();
    for i in 0..50 {
        let uri = format!("/f{i}.txt");
        assert_eq!(
            get(&small, &uri, &[]).await.body,
            format!("file {i}").into_bytes()
        );
    }
    assert!(small.cache.len() <= 16, "{}", small.cache.len());
}

// ---------------------------------------------------------------- path safety

#[tokio::test]
async fn traversal_and_encoding_attacks() {
    let top = tempfile::tempdir().unwrap();
    write(top.path(), "secret", b"SECRET");
    write(top.path(), "etc/passwd", b"root:x");
    write(top.path(), "www/ok.txt", b"ok");
    write(top.path(), "www/a/b.txt", b"b");
    let s = StaticSettings::new(top.path().join("www"), Arc::new(FileCache::default())).unwrap();
    for uri in [
        "/../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2fetc/passwd",
        "/%2e%2e%2f..",
        "/a/../../secret",
        "/a%5c..%5c..%5csecret",
        "/file%00.html",
        "/ok.txt%00",
        "/%zz",
    ] {
        let e = err(&s, uri).await;
        assert!(matches!(e, StaticError::BadPath), "{uri}: {e}");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
    // The http crate refuses raw backslashes in a URI; the resolver refuses them too.
    assert!(matches!(
        path::normalize("/a\\..\\..\\secret"),
        Err(StaticError::BadPath)
    ));
    // Harmless dots still work.
    assert_eq!(&get(&s, "/a/../ok.txt", &[]).await.body[..], b"ok");
    assert_eq!(&get(&s, "/a/./b.txt", &[]).await.body[..], b"b");
    assert_eq!(&get(&s, "/%6fk.txt", &[]).await.body[..], b"ok");
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_leaving_the_root() {
    let top = tempfile::tempdir().unwrap();
    write(top.path(), "outside/secret.txt", b"SECRET");
    write(top.path(), "www/real.txt", b"real");
    std::os::unix::fs::symlink(
        top.path().join("outside/secret.txt"),
        top.path().join("www/leak.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(top.path().join("outside"), top.path().join("www/leakdir")).unwrap();
    std::os::unix::fs::symlink(
        top.path().join("www/real.txt"),
        top.path().join("www/inner.txt"),
    )
    .unwrap();
    let mut s =
        StaticSettings::new(top.path().join("www"), Arc::new(FileCache::default())).unwrap();
    s.browse = true;
    for uri in ["/leak.txt", "/leakdir/secret.txt", "/leakdir/"] {
        let e = err(&s, uri).await;
        assert!(matches!(e, StaticError::Forbidden), "{uri}: {e}");
    }
    assert_eq!(&get(&s, "/inner.txt", &[]).await.body[..], b"real");
    // Allowed explicitly.
    s.follow_symlinks_outside_root = true;
    assert_eq!(&get(&s, "/leak.txt", &[]).await.body[..], b"SECRET");
    assert_eq!(
        &get(&s, "/leakdir/secret.txt", &[]).await.body[..],
        b"SECRET"
    );
    // A route sharing the cache without permission does not get the cached entry.
    s.follow_symlinks_outside_root = false;
    assert!(matches!(err(&s, "/leak.txt").await, StaticError::Forbidden));
}

#[tokio::test]
async fn dotfiles_hidden_unless_allowed() {
    let (dir, mut s) = setup();
    write(dir.path(), ".env", b"KEY=1");
    write(dir.path(), ".git/config", b"[core]");
    write(dir.path(), "dir/.hidden", b"h");
    for uri in [
        "/.env",
        "/.git/config",
        "/dir/.hidden",
        "/%2eenv",
        "/dir/../.env",
    ] {
        assert!(matches!(err(&s, uri).await, StaticError::NotFound), "{uri}");
    }
    s.serve_hidden = true;
    assert_eq!(&get(&s, "/.env", &[]).await.body[..], b"KEY=1");
    assert_eq!(&get(&s, "/.git/config", &[]).await.body[..], b"[core]");
}

// ---------------------------------------------------------------- directories

#[tokio::test]
async fn index_and_trailing_slash_redirect() {
    let (dir, s) = setup();
    write(dir.path(), "index.html", b"root index");
    write(dir.path(), "docs/index.html", b"docs index");
    write(dir.path(), "empty/file.txt", b"x");
    assert_eq!(&get(&s, "/", &[]).await.body[..], b"root index");
    let r = get(&s, "/docs/", &[]).await;
    assert_eq!(
        (&r.body[..], r.h("content-type")),
        (&b"docs index"[..], "text/html; charset=utf-8")
    );
    let r = get(&s, "/docs", &[]).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.h("location"), "/docs/");
    let r = get(&s, "/docs?x=1&y=2", &[]).await;
    assert_eq!(r.h("location"), "/docs/?x=1&y=2");
    // No index and no listing: 403 like nginx.
    assert!(matches!(err(&s, "/empty/").await, StaticError::Forbidden));
    // Index list order.
    // Index list order; a route sharing the cache with another index list is not misled by
    // the other's cached "/" entry.
    let mut s2 = StaticSettings::new(dir.path(), s.cache.clone()).unwrap();
    s2.index = vec!["index.htm".into(), "file.txt".into()];
    assert_eq!(&get(&s2, "/empty/", &[]).await.body[..], b"x");
    assert_eq!(&get(&s, "/", &[]).await.body[..], b"root index");
    assert!(matches!(err(&s2, "/").await, StaticError::Forbidden));
}

#[tokio::test]
async fn directory_listing_html_and_json() {
    let (dir, mut s) = setup();
    s.browse = true;
    write(dir.path(), "d/b file.txt", b"12345");
    write(dir.path(), "d/a<x>.txt", b"1");
    write(dir.path(), "d/z-sub/inner", b"");
    write(dir.path(), "d/.secret", b"s");
    let r = get(&s, "/d/", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("content-type"), "text/html; charset=utf-8");
    let html = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(html.contains("<title>Index of /d/</title>"), "{html}");
    assert!(html.contains("<a href=\"../\">../</a>"));
    assert!(
        html.contains("<a href=\"b%20file.txt\">b file.txt</a>"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"a%3Cx%3E.txt\">a&lt;x&gt;.txt</a>"),
        "{html}"
    );
    assert!(html.contains("<a href=\"z-sub/\">z-sub/</a>"), "{html}");
    assert!(!html.contains("secret"));
    let (sub, a, b) = (
        html.find("z-sub").unwrap(),
        html.find("a&lt;").unwrap(),
        html.find("b file").unwrap(),
    );
    assert!(sub < a && a < b, "directories first, then by name");
    assert!(html.contains(">5</td>"));

    for (uri, hdrs) in [
        ("/d/?format=json", vec![]),
        ("/d/", vec![("accept", "application/json")]),
    ] {
        let r = get(&s, uri, &hdrs).await;
        assert_eq!(r.h("content-type"), "application/json; charset=utf-8");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let names: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["z-sub", "a<x>.txt", "b file.txt"]);
        assert_eq!(v[0]["is_dir"], true);
        assert_eq!(v[2]["size"], 5);
        assert!(v[2]["mtime"].as_u64().unwrap() > 1_600_000_000);
    }
    s.serve_hidden = true;
    let r = get(&s, "/d/?format=json", &[]).await;
    assert!(String::from_utf8_lossy(&r.body).contains(".secret"));
    // Directory without slash still redirects; HEAD listing has no body.
    assert_eq!(
        get(&s, "/d", &[]).await.status,
        StatusCode::MOVED_PERMANENTLY
    );
    let h = call(&s, "HEAD", "/d/", &[]).await.unwrap();
    assert!(h.body.is_empty() && h.h("content-length") != "0");
}

#[tokio::test]
async fn try_files_fallbacks() {
    let (dir, mut s) = setup();
    write(dir.path(), "index.html", b"spa shell");
    write(dir.path(), "app.js", b"js");
    write(dir.path(), "sub/index.html", b"sub");
    s.try_files = vec![
        TryFile::Uri,
        TryFile::UriDir,
        TryFile::Path("/index.html".into()),
    ];
    assert_eq!(&get(&s, "/app.js", &[]).await.body[..], b"js");
    for uri in ["/some/client/route", "/missing.js", "/"] {
        assert_eq!(&get(&s, uri, &[]).await.body[..], b"spa shell", "{uri}");
    }
    assert_eq!(&get(&s, "/sub/", &[]).await.body[..], b"sub");
    assert_eq!(
        get(&s, "/sub", &[]).await.status,
        StatusCode::MOVED_PERMANENTLY
    );
    s.try_files = vec![TryFile::Uri, TryFile::Status(418)];
    assert!(matches!(err(&s, "/nope").await, StaticError::Status(418)));
    assert_eq!(err(&s, "/nope").await.status().as_u16(), 418);
    assert_eq!(&get(&s, "/app.js", &[]).await.body[..], b"js");
    // Only `$uri`: directories are not served.
    s.try_files = vec![TryFile::Uri];
    assert!(matches!(err(&s, "/sub/").await, StaticError::NotFound));
    assert!(matches!(err(&s, "/sub").await, StaticError::NotFound));
    // Fallback first: the fixed path wins over the file.
    s.try_files = vec![TryFile::Path("/index.html".into()), TryFile::Uri];
    assert_eq!(&get(&s, "/app.js", &[]).await.body[..], b"spa shell");
}

#[tokio::test]
async fn alias_strips_prefix() {
    let (dir, mut s) = setup();
    write(dir.path(), "a.txt", b"aliased");
    write(dir.path(), "sub/index.html", b"sub");
    s.strip_prefix = Some("/static".into());
    assert_eq!(&get(&s, "/static/a.txt", &[]).await.body[..], b"aliased");
    let r = get(&s, "/static/sub", &[]).await;
    assert_eq!(r.h("location"), "/static/sub/");
    assert_eq!(&get(&s, "/static/sub/", &[]).await.body[..], b"sub");
    assert!(matches!(
        err(&s, "/static../a.txt").await,
        StaticError::BadPath
    ));
    assert!(matches!(
        err(&s, "/other/a.txt").await,
        StaticError::NotFound
    ));
}
