//! The compression filter through its public `apply` API.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use rampart_app::filters::compress::{
    apply, compress_bytes, negotiate, CompressSettings, Encoding,
};
use rampart_server::Body;

fn settings() -> CompressSettings {
    CompressSettings {
        min_size: 100,
        algorithms: vec![Encoding::Br, Encoding::Zstd, Encoding::Gzip],
        gzip_level: 6,
        brotli_quality: 5,
        zstd_level: 3,
    }
}

fn req(method: &str, ae: Option<&str>) -> http::request::Parts {
    let mut b = Request::builder().method(method).uri("/x");
    if let Some(ae) = ae {
        b = b.header("accept-encoding", ae);
    }
    b.body(()).unwrap().into_parts().0
}

fn resp(status: u16, headers: &[(&str, &str)], body: Body) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap()
}

async fn run(r: Response<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let (p, body) = r.into_parts();
    (
        p.status,
        p.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn decode(enc: &str, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match enc {
        "gzip" => {
            flate2::read::GzDecoder::new(b)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(b, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(b).unwrap(),
        other => panic!("{other}"),
    }
    out
}

fn text(n: usize) -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(n)
}

#[tokio::test]
async fn full_bodies_each_coding() {
    let s = settings();
    let body = text(100);
    for (ae, enc) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, br, zstd", "br"),
        ("gzip, zstd", "zstd"),
    ] {
        let r = resp(
            200,
            &[
                ("content-type", "text/html; charset=utf-8"),
                ("content-length", &body.len().to_string()),
                ("etag", "\"abc-12\""),
                ("accept-ranges", "bytes"),
                ("vary", "Origin"),
            ],
            Body::full(body.clone()),
        );
        let (status, h, b) = run(apply(&s, &req("GET", Some(ae)), r)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h["content-encoding"], enc, "{ae}");
        assert_eq!(h["etag"], "W/\"abc-12\"");
        assert_eq!(
            h.get_all("vary").iter().collect::<Vec<_>>(),
            ["Origin", "Accept-Encoding"]
        );
        assert!(!h.contains_key("accept-ranges"));
        assert_eq!(
            h["content-length"],
            b.len().to_string(),
            "one buffer keeps an exact length"
        );
        assert!(b.len() < body.len() / 5);
        assert_eq!(decode(enc, &b), body.as_bytes());
    }
}

#[tokio::test]
async fn head_gets_the_get_headers() {
    let s = settings();
    let body = text(100);
    let head = resp(
        200,
        &[
            ("content-type", "application/json"),
            ("content-length", &body.len().to_string()),
            ("etag", "\"e\""),
        ],
        Body::Empty,
    );
    let (_, h, b) = run(apply(&s, &req("HEAD", Some("gzip")), head)).await;
    assert!(b.is_empty());
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["vary"], "Accept-Encoding");
    assert_eq!(h["etag"], "W/\"e\"");
    assert!(
        !h.contains_key("content-length"),
        "unknown without compressing"
    );
}

#[tokio::test]
async fn leaves_alone_what_must_not_be_compressed() {
    let s = settings();
    let body = text(100);
    let len = body.len().to_string();
    type Case<'a> = (&'a str, u16, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "partial content",
            206,
            vec![
                ("content-type", "text/plain"),
                ("content-range", "bytes 0-9/100"),
            ],
        ),
        (
            "already encoded",
            200,
            vec![("content-type", "text/plain"), ("content-encoding", "br")],
        ),
        ("image", 200, vec![("content-type", "image/png")]),
        ("video", 200, vec![("content-type", "video/mp4")]),
        ("zip", 200, vec![("content-type", "application/zip")]),
        ("no type", 200, vec![]),
        (
            "no-transform",
            200,
            vec![
                ("content-type", "text/plain"),
                ("cache-control", "public, no-transform"),
            ],
        ),
        ("not modified", 304, vec![("content-type", "text/plain")]),
        ("no content", 204, vec![("content-type", "text/plain")]),
        ("redirect", 301, vec![("content-type", "text/html")]),
    ];
    for (what, status, mut headers) in cases {
        headers.push(("content-length", &len));
        let r = resp(status, &headers, Body::full(body.clone()));
        let (st, h, b) = run(apply(&s, &req("GET", Some("gzip, br")), r)).await;
        assert_eq!(st.as_u16(), status, "{what}");
        assert_ne!(
            h.get("content-encoding").map(|v| v.to_str().unwrap()),
            Some("gzip"),
            "{what}"
        );
        assert_eq!(b, body.as_bytes(), "{what}");
        assert!(!h.contains_key("vary"), "{what}");
    }
    // Below min_size: untouched, no Vary.
    let r = resp(200, &[("content-type", "text/plain")], Body::full("tiny"));
    let (_, h, b) = run(apply(&s, &req("GET", Some("gzip")), r)).await;
    assert!(!h.contains_key("content-encoding") && !h.contains_key("vary"));
    assert_eq!(&b[..], b"tiny");
    // Client without a coding (or refusing them): identity, but Vary says it depends.
    for ae in [
        None,
        Some("identity"),
        Some("gzip;q=0, br;q=0"),
        Some("deflate"),
    ] {
        let r = resp(
            200,
            &[("content-type", "text/plain")],
            Body::full(body.clone()),
        );
        let (_, h, b) = run(apply(&s, &req("GET", ae), r)).await;
        assert!(!h.contains_key("content-encoding"), "{ae:?}");
        assert_eq!(h["vary"], "Accept-Encoding", "{ae:?}");
        assert_eq!(b, body.as_bytes());
    }
    // Server preference is the configured list.
    let only_gzip = CompressSettings {
        algorithms: vec![Encoding::Gzip],
        ..settings()
    };
    let r = resp(
        200,
        &[("content-type", "text/plain")],
        Body::full(body.clone()),
    );
    let (_, h, _) = run(apply(&only_gzip, &req("GET", Some("br, gzip")), r)).await;
    assert_eq!(h["content-encoding"], "gzip");
    // 404 pages are compressed like nginx does.
    let r = resp(
        404,
        &[("content-type", "text/html")],
        Body::full(body.clone()),
    );
    let (_, h, _) = run(apply(&s, &req("GET", Some("gzip")), r)).await;
    assert_eq!(h["content-encoding"], "gzip");
}

/// A 10 MiB streamed body is compressed while it is produced: output appears long before the
/// input is exhausted, and no output frame is anywhere near the input size.
#[tokio::test]
async fn streams_with_bounded_memory() {
    const CHUNKS: usize = 160;
    const CHUNK: usize = 64 * 1024;
    for enc in ["gzip", "br", "zstd"] {
        let consumed = Arc::new(AtomicUsize::new(0));
        let counter = consumed.clone();
        let chunks = (0..CHUNKS).map(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            let line = format!("chunk {i:04} of a long streamed log; ");
            let data: Vec<u8> = line.bytes().cycle().take(CHUNK).collect();
            Ok::<_, std::io::Error>(Frame::data(Bytes::from(data)))
        });
        let body = Body::stream(StreamBody::new(futures_util::stream::iter(chunks)));
        let r = resp(200, &[("content-type", "text/plain")], body);
        let out = apply(&settings(), &req("GET", Some(enc)), r);
        assert_eq!(out.headers()["content-encoding"], enc);
        assert!(!out.headers().contains_key("content-length"));
        let mut body = out.into_body();
        let mut compressed = Vec::new();
        let mut first_output_at = None;
        let mut largest = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            if !data.is_empty() && first_output_at.is_none() {
                first_output_at = Some(consumed.load(Ordering::SeqCst));
            }
            largest = largest.max(data.len());
            compressed.extend_from_slice(&data);
        }
        let first = first_output_at.unwrap();
        assert!(
            first < CHUNKS / 2,
            "{enc}: first output after {first} of {CHUNKS} chunks"
        );
        assert!(largest < 2 * CHUNK, "{enc}: largest frame {largest}");
        let plain = decode(enc, &compressed);
        assert_eq!(plain.len(), CHUNKS * CHUNK, "{enc}");
        assert!(plain.starts_with(b"chunk 0000"));
    }
}

#[tokio::test]
async fn trailers_pass_through() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let frames = vec![
        Ok::<_, std::io::Error>(Frame::data(Bytes::from(text(50)))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = Body::stream(StreamBody::new(futures_util::stream::iter(frames)));
    let out = apply(
        &settings(),
        &req("GET", Some("gzip")),
        resp(200, &[("content-type", "text/plain")], body),
    );
    let collected = out.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
    assert_eq!(decode("gzip", &collected.to_bytes()), text(50).as_bytes());
}

#[test]
fn helpers() {
    let s = settings();
    let data = text(20);
    for enc in [Encoding::Gzip, Encoding::Br, Encoding::Zstd] {
        let c = compress_bytes(&s, enc, data.as_bytes()).unwrap();
        assert_eq!(decode(enc.as_str(), &c), data.as_bytes());
    }
    let mut h = HeaderMap::new();
    assert_eq!(
        negotiate(&h, &[Encoding::Gzip]),
        None,
        "no header: identity"
    );
    h.insert("accept-encoding", "gzip;q=0.8, zstd;q=0.9".parse().unwrap());
    assert_eq!(negotiate(&h, &Encoding::ALL), Some(Encoding::Zstd));
}
