//! The static file server end to end, through the real binary and real clients.
#![allow(clippy::unwrap_used)]
mod common;
use std::io::Read;

use common::*;

fn site() -> TempDir {
    let d = TempDir::new("static");
    d.write("index.html", "<h1>home</h1>");
    d.write("app.js", "console.log('hello');\n".repeat(200));
    d.write("data.json", "{\"k\": 1}");
    d.write("pre.css", "body{}\n".repeat(100));
    d.write("pre.css.br", b"BROTLI-BYTES");
    d.write("pre.css.gz", b"GZIP-BYTES");
    d.write("docs/index.html", "docs index");
    d.write(".env", "SECRET=1");
    d.write("digits.txt", "0123456789");
    let outside = TempDir::new("outside");
    outside.write("secret.txt", "outside secret");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), d.path().join("link.txt"))
        .unwrap();
    std::mem::forget(outside);
    d
}

#[test]
fn conditional_requests_and_validators() {
    let r = Rampart::serve(site(), &[]);
    let first = get(r.port, "/index.html", &[]);
    assert_eq!(first.status, 200);
    assert_eq!(first.body, b"<h1>home</h1>");
    assert_eq!(
        first.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(first.header("accept-ranges"), Some("bytes"));
    let etag = first.header("etag").unwrap().to_string();
    let lm = first.header("last-modified").unwrap().to_string();
    assert_eq!(
        get(r.port, "/index.html", &[("If-None-Match", &etag)]).status,
        304
    );
    assert_eq!(
        get(r.port, "/index.html", &[("If-Modified-Since", &lm)]).status,
        304
    );
    assert_eq!(
        get(r.port, "/index.html", &[("If-Match", "\"other\"")]).status,
        412
    );
    assert_eq!(
        get(
            r.port,
            "/index.html",
            &[("If-Unmodified-Since", "Thu, 01 Jan 1998 00:00:00 GMT")]
        )
        .status,
        412
    );
    // HEAD: the GET's headers, no body.
    let head = request(r.port, "HEAD", "/index.html", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("13"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    assert!(head.body.is_empty());
    // The directory index, and the redirect that adds the slash.
    assert_eq!(get(r.port, "/", &[]).body, b"<h1>home</h1>");
    let redir = get(r.port, "/docs?x=1", &[]);
    assert_eq!(redir.status, 301);
    assert_eq!(redir.header("location"), Some("/docs/?x=1"));
}

#[test]
fn ranges_single_multiple_and_unsatisfiable() {
    let r = Rampart::serve(site(), &[]);
    let one = get(r.port, "/digits.txt", &[("Range", "bytes=2-4")]);
    assert_eq!(one.status, 206);
    assert_eq!(one.body, b"234");
    assert_eq!(one.header("content-range"), Some("bytes 2-4/10"));
    let suffix = get(r.port, "/digits.txt", &[("Range", "bytes=-3")]);
    assert_eq!(suffix.body, b"789");
    let multi = get(r.port, "/digits.txt", &[("Range", "bytes=0-1,5-6")]);
    assert_eq!(multi.status, 206);
    assert!(multi
        .header("content-type")
        .unwrap()
        .starts_with("multipart/byteranges; boundary="));
    let text = multi.text();
    assert!(
        text.contains("Content-Range: bytes 0-1/10\r\n\r\n01\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Content-Range: bytes 5-6/10\r\n\r\n56\r\n"),
        "{text}"
    );
    let bad = get(r.port, "/digits.txt", &[("Range", "bytes=50-60")]);
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), Some("bytes */10"));
    // If-Range with a stale validator: the whole file.
    let stale = get(
        r.port,
        "/digits.txt",
        &[("Range", "bytes=0-1"), ("If-Range", "\"stale\"")],
    );
    assert_eq!((stale.status, stale.body.len()), (200, 10));
    // If-Range with the current ETag or Last-Modified: the range.
    let first = get(r.port, "/digits.txt", &[]);
    for validator in ["etag", "last-modified"] {
        let v = first.header(validator).unwrap();
        let fresh = get(
            r.port,
            "/digits.txt",
            &[("Range", "bytes=0-1"), ("If-Range", v)],
        );
        assert_eq!(
            (fresh.status, fresh.body.as_slice()),
            (206, &b"01"[..]),
            "{validator}"
        );
    }
}

#[test]
fn compression_on_the_fly_and_precompressed() {
    let r = Rampart::serve(site(), &[]);
    // curl decodes what it negotiated: the bytes must round-trip.
    for enc in ["gzip", "br", "zstd"] {
        let o = curl(&[
            "-sD",
            "-",
            "-H",
            &format!("Accept-Encoding: {enc}"),
            &r.url("/app.js"),
        ]);
        let text = String::from_utf8_lossy(&o.stdout).to_lowercase();
        assert!(
            text.contains(&format!("content-encoding: {enc}")),
            "{enc}: {text}"
        );
        assert!(text.contains("vary: accept-encoding"), "{text}");
    }
    let o = curl(&["--compressed", &r.url("/app.js")]);
    assert_eq!(o.stdout, "console.log('hello');\n".repeat(200).as_bytes());
    // Sidecars chosen by q-value.
    let br = get(r.port, "/pre.css", &[("Accept-Encoding", "gzip;q=0.5, br")]);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.body, b"BROTLI-BYTES");
    assert_eq!(br.header("content-type"), Some("text/css; charset=utf-8"));
    let gz = get(r.port, "/pre.css", &[("Accept-Encoding", "gzip, br;q=0")]);
    assert_eq!(gz.body, b"GZIP-BYTES");
    let plain = get(r.port, "/pre.css", &[]);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, "body{}\n".repeat(100).as_bytes());
    // Ranges are never compressed.
    let ranged = get(
        r.port,
        "/app.js",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-6")],
    );
    assert_eq!(
        (ranged.status, ranged.header("content-encoding")),
        (206, None)
    );
    assert_eq!(ranged.body, b"console");
    // --no-compress turns it off.
    let r2 = Rampart::serve(site(), &["--no-compress"]);
    let resp = get(r2.port, "/app.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(resp.header("content-encoding"), None);
}

#[test]
fn nothing_escapes_the_root() {
    let r = Rampart::serve(site(), &[]);
    for path in [
        "/../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2fetc/passwd",
        "/%2e%2e%2f..",
        "/a%5c..%5c..%5cetc%5cpasswd",
        "/index.html%00.txt",
        "/a\\..\\..\\etc\\passwd",
        "/docs\\..\\.env",
        "/.env",
        "/link.txt",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let resp = raw(r.port, req.as_bytes());
        assert!(
            matches!(resp.status, 400 | 403 | 404),
            "{path}: {}",
            resp.status
        );
        let body = resp.text();
        assert!(
            !body.contains("root:") && !body.contains("SECRET") && !body.contains("outside secret"),
            "{path}: {body}"
        );
    }
}

#[test]
fn large_files_stream_with_bounded_memory() {
    let d = site();
    let f = d.write("big.bin", vec![0u8; 0]);
    {
        let file = std::fs::File::create(&f).unwrap();
        file.set_len(300 << 20).unwrap(); // sparse 300 MiB
    }
    let r = Rampart::serve(d, &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET /big.bin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(total > 300 << 20);
    let status = std::fs::read_to_string(format!("/proc/{}/status", r.child.id())).unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        hwm_kb < 64 * 1024,
        "peak RSS {hwm_kb} kB while sending 300 MiB"
    );
}

#[test]
fn try_files_spa_fallback_and_custom_index() {
    let d = site();
    d.write("spa/index.html", "spa shell");
    d.write("spa/main.html", "main");
    let cfg = r#"
[[server]]
listen = ["127.0.0.1:{port}"]
[[server.route]]
prefix = "/"
root = "{dir}/spa"
index = ["main.html"]
try_files = ["$uri", "$uri/", "/index.html"]
"#;
    let r = Rampart::with_config_in(d, cfg);
    assert_eq!(get(r.port, "/", &[]).text(), "main");
    assert_eq!(get(r.port, "/some/client/route", &[]).text(), "spa shell");
    assert_eq!(get(r.port, "/main.html", &[]).text(), "main");
}

#[test]
fn uncached_files_and_their_ranges_are_byte_exact_over_http1_and_http2() {
    // Larger than the open-file cache takes: served from the file (sendfile over HTTP/1,
    // chunked reads over HTTP/2); every byte must match, for the whole file and for ranges.
    let d = site();
    let data: Vec<u8> = (0..(3 << 20) + 333u32).map(|i| (i % 251) as u8).collect();
    d.write("pattern.bin", data.clone());
    let r = Rampart::serve(d, &[]);
    let whole = get(r.port, "/pattern.bin", &[]);
    assert_eq!(whole.status, 200);
    assert!(whole.body == data, "HTTP/1 body differs");
    let one = get(
        r.port,
        "/pattern.bin",
        &[("Range", "bytes=1000000-1000099")],
    );
    assert_eq!(one.status, 206);
    assert_eq!(one.body, &data[1_000_000..1_000_100]);
    let multi = get(
        r.port,
        "/pattern.bin",
        &[("Range", "bytes=0-9,2000000-2000009")],
    );
    assert_eq!(multi.status, 206);
    let body = &multi.body;
    let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(find(&data[0..10]) && find(&data[2_000_000..2_000_010]));
    // HTTP/2 (prior knowledge): the same bytes through the reading path.
    let url = format!("http://127.0.0.1:{}/pattern.bin", r.port);
    let out = curl(&["--http2-prior-knowledge", &url]);
    assert!(out.status.success());
    assert!(
        out.stdout == data,
        "HTTP/2 body differs ({} bytes)",
        out.stdout.len()
    );
}

#[test]
fn directory_listing_off_by_default_on_with_browse_in_html_and_json() {
    // A directory without an index and without listing: 403, as nginx.
    let d = site();
    d.write("noindex/a.txt", "a");
    let off = Rampart::serve(d, &[]);
    assert_eq!(get(off.port, "/noindex/", &[]).status, 403);
    let d = site();
    d.write("noindex/a.txt", "a");
    d.write("noindex/sub/b.txt", "b");
    let on = Rampart::serve(d, &["--browse"]);
    let html = get(on.port, "/noindex/", &[]);
    assert_eq!(html.status, 200);
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        html.text().contains("<a href=\"a.txt\">a.txt</a>"),
        "{}",
        html.text()
    );
    let json = get(on.port, "/noindex/", &[("Accept", "application/json")]);
    assert_eq!(
        json.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v[0]["name"], "sub");
    assert_eq!(v[0]["is_dir"], true);
    assert_eq!(v[1]["name"], "a.txt");
    assert_eq!(v[1]["size"], 1);
}

/// The open-file cache never serves a stale file: each change is seen by the next request.
#[test]
fn changed_files_are_served_fresh() {
    let d = site();
    let r = Rampart::serve(d, &[]);
    let path = r.dir.path().join("hot.txt");
    std::fs::write(&path, "version-1").unwrap();
    for _ in 0..3 {
        assert_eq!(get(r.port, "/hot.txt", &[]).body, b"version-1");
    }
    // Rewritten in place, same length (and, as nginx's, the ETag of mtime seconds and size
    // may not change within the second: the bytes must).
    std::fs::write(&path, "version-2").unwrap();
    assert_eq!(get(r.port, "/hot.txt", &[]).body, b"version-2");
    // Rewritten with another length: new bytes and a new ETag.
    let etag2 = get(r.port, "/hot.txt", &[])
        .header("etag")
        .unwrap()
        .to_string();
    std::fs::write(&path, "version-3!").unwrap();
    let third = get(r.port, "/hot.txt", &[]);
    assert_eq!(third.body, b"version-3!");
    assert_ne!(third.header("etag"), Some(etag2.as_str()));
    // Replaced by rename.
    std::fs::write(r.dir.path().join("tmp"), "renamed, longer").unwrap();
    std::fs::rename(r.dir.path().join("tmp"), &path).unwrap();
    assert_eq!(get(r.port, "/hot.txt", &[]).body, b"renamed, longer");
    // Deleted.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(get(r.port, "/hot.txt", &[]).status, 404);
}

/// A symlink out of the root is refused unless the route allows it.
#[test]
fn symlinks_out_of_the_root_only_when_allowed() {
    let cfg = r#"
[[server]]
listen = ["127.0.0.1:{port}"]
access_log = { path = "off" }
[[server.route]]
prefix = "/open/"
alias = "{dir}"
follow_symlinks_outside_root = true
[[server.route]]
prefix = "/"
root = "{dir}"
"#;
    let r = Rampart::with_config_in(site(), cfg);
    let closed = get(r.port, "/link.txt", &[]);
    assert_eq!(closed.status, 403);
    assert!(!closed.text().contains("outside secret"));
    let open = get(r.port, "/open/link.txt", &[]);
    assert_eq!((open.status, open.text().as_str()), (200, "outside secret"));
}
