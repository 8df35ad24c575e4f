//! HTTP/2 to upstream servers (`protocol = "h2c"`, `grpc://` addresses): the real binary in
//! front of hyper's h2-only server; clients speak HTTP/1.1 (raw TCP) or HTTP/2 (hyper's h2
//! client, so trailers can be asserted exactly).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use common::upstream::Upstream;
use common::*;

type ReqBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn config(servers: &str, group_extra: &str) -> String {
    proxy_config(
        &format!("[upstream.app]\nservers = [{servers}]\n{group_extra}"),
        "",
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An HTTP/2 (prior knowledge) connection to Rampart.
async fn h2_client(port: u16) -> http2::SendRequest<ReqBody> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (tx, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

fn full(b: impl Into<Bytes>) -> ReqBody {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

fn frames(v: Vec<Frame<Bytes>>) -> ReqBody {
    StreamBody::new(futures_util::stream::iter(
        v.into_iter().map(Ok::<_, std::io::Error>),
    ))
    .boxed()
}

/// Body bytes and trailers of a response.
async fn read_all(
    resp: http::Response<hyper::body::Incoming>,
) -> (http::StatusCode, Bytes, Option<http::HeaderMap>) {
    let status = resp.status();
    let c = resp.into_body().collect().await.unwrap();
    let trailers = c.trailers().cloned();
    (status, c.to_bytes(), trailers)
}

#[test]
fn h2c_upstream_multiplexes_one_connection_and_maps_headers() {
    let a = Upstream::start_h2("a");
    let r = Rampart::with_config(&config(&format!("\"{}\"", a.addr()), "protocol = \"h2c\""));
    let rt = rt();
    // A cold burst: 40 concurrent slow requests, over one HTTP/2 client connection and over
    // ten HTTP/1.1 connections, must share one upstream connection (single-flight open) and
    // run at the same time (multiplexed).
    rt.block_on(async {
        let tx = h2_client(r.port).await;
        let mut tasks = Vec::new();
        for i in 0..30 {
            let mut tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let req = http::Request::get(format!("http://x/slow/{}", 300 + i))
                    .body(full(""))
                    .unwrap();
                let (st, body, _) = read_all(tx.send_request(req).await.unwrap()).await;
                assert_eq!(st, 200);
                assert_eq!(body, "a slow");
            }));
        }
        let port = r.port;
        for _ in 0..10 {
            tasks.push(tokio::task::spawn_blocking(move || {
                let resp = get(port, "/slow/300", &[]);
                assert_eq!(resp.status, 200, "{}", resp.text());
                assert_eq!(resp.text(), "a slow");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    // All of them, concurrent, over one upstream connection (no timing asserted).
    assert_eq!(a.connections(), 1, "{}", r.stderr());

    // A plain GET over HTTP/1.1: body and headers from the upstream; connection-specific
    // fields never reach it; Host becomes :authority.
    let resp = get(r.port, "/plain?q=1", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "a GET /plain?q=1");
    assert_eq!(resp.header("x-upstream"), Some("a"));
    let resp = get(
        r.port,
        "/headers",
        &[
            ("Host", "app.example"),
            ("Connection", "keep-alive, x-hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "gzip"),
            ("X-Kept", "yes"),
        ],
    );
    assert_eq!(resp.status, 200);
    let seen = resp.text().to_ascii_lowercase();
    for gone in [
        "connection:",
        "keep-alive:",
        "x-hop:",
        "te:",
        "transfer-encoding:",
        "upgrade:",
        "host:",
    ] {
        assert!(
            !seen.contains(&format!("\n{gone}")) && !seen.starts_with(gone),
            "{gone} in {seen}"
        );
    }
    assert!(seen.contains("x-kept: yes"), "{seen}");
    assert!(seen.contains("uri: http://app.example/headers"), "{seen}");
    // The response's hop-by-hop fields do not reach the client either.
    assert!(resp.header("keep-alive").is_none());
    assert_eq!(a.connections(), 1);
}

#[test]
fn grpc_exchange_with_trailers_over_grpc_address() {
    let a = Upstream::start_h2("a");
    // grpc://host:port alone makes the server h2c (no `protocol` key).
    let r = Rampart::with_config(&config(&format!("\"grpc://{}\"", a.addr()), ""));
    let rt = rt();
    rt.block_on(async {
        let mut tx = h2_client(r.port).await;
        // A length-prefixed gRPC message: flag 0, 4-byte big-endian length, payload.
        let payload = b"\x0a\x05hello";
        let mut msg = vec![0u8];
        msg.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        msg.extend_from_slice(payload);
        let req = http::Request::post("http://grpc.test/grpc")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(full(msg.clone()))
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "application/grpc"
        );
        let (st, body, trailers) = read_all(resp).await;
        assert_eq!(st, 200);
        assert_eq!(&body[..], &msg[..]);
        let t = trailers.expect("trailers");
        assert_eq!(t.get("grpc-status").unwrap(), "0", "{t:?}");
        assert_eq!(t.get("grpc-message").unwrap(), "ok", "{t:?}");

        // Without te: trailers, the upstream does not get one either (it says so).
        let req = http::Request::post("http://grpc.test/grpc")
            .header("content-type", "application/grpc")
            .body(full(msg.clone()))
            .unwrap();
        let (_, _, trailers) = read_all(tx.send_request(req).await.unwrap()).await;
        let t = trailers.expect("trailers");
        assert_eq!(t.get("grpc-status").unwrap(), "3", "{t:?}");

        // Request trailers reach the upstream (it echoes them back as response trailers).
        let mut rt = http::HeaderMap::new();
        rt.insert("x-checksum", "abc123".parse().unwrap());
        let req = http::Request::post("http://grpc.test/trailers")
            .header("te", "trailers")
            .body(frames(vec![
                Frame::data(Bytes::from_static(b"part1 ")),
                Frame::data(Bytes::from_static(b"part2")),
                Frame::trailers(rt),
            ]))
            .unwrap();
        let (st, body, trailers) = read_all(tx.send_request(req).await.unwrap()).await;
        assert_eq!(st, 200);
        assert_eq!(body, "part1 part2");
        assert_eq!(
            trailers.expect("trailers").get("x-checksum").unwrap(),
            "abc123"
        );
    });
    assert_eq!(a.connections(), 1);
}

#[test]
fn streamed_bodies_arrive_complete_both_ways() {
    let a = Upstream::start_h2("a");
    let r = Rampart::with_config(&config(
        &format!("\"{}\"", a.addr()),
        "protocol = \"h2c\"\n[limits]\nmax_body_size = \"10MiB\"",
    ));
    const LEN: usize = 5 << 20;
    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    let data = Bytes::from(data);
    let rt = rt();
    rt.block_on(async {
        let mut tx = h2_client(r.port).await;
        // Request body in 80 chunks, sent as the upstream takes them; echoed back streamed.
        let (btx, mut brx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let chunks = data.clone();
        tokio::spawn(async move {
            for c in chunks.chunks(LEN / 80) {
                btx.send(Bytes::copy_from_slice(c)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| {
            brx.poll_recv(cx)
                .map(|o| o.map(|b| Ok::<_, std::io::Error>(Frame::data(b))))
        }))
        .boxed();
        let req = http::Request::post("http://x/echo").body(body).unwrap();
        let (st, body, _) = read_all(tx.send_request(req).await.unwrap()).await;
        assert_eq!(st, 200);
        assert_eq!(body.len(), LEN);
        assert!(body == data, "echoed bytes differ");
    });
    // Over HTTP/1.1 too (chunked request body, streamed response).
    let mut req =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for c in data.chunks(1 << 20) {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = raw(r.port, &req);
    assert_eq!(resp.status, 200);
    assert!(
        resp.body == data[..],
        "HTTP/1.1 echo differs ({} bytes)",
        resp.body.len()
    );
    let resp = get(r.port, &format!("/bytes/{LEN}"), &[]);
    assert_eq!(resp.body.len(), LEN);
    assert_eq!(a.connections(), 1);
}

#[test]
fn killed_upstream_gives_502_then_a_new_connection_works() {
    let mut a = Upstream::start_h2("a");
    let r = Rampart::with_config(&config(
        &format!("\"{}\"", a.addr()),
        "protocol = \"h2c\"\nconnect_timeout = \"1s\"",
    ));
    assert_eq!(get(r.port, "/", &[]).status, 200);
    assert_eq!(a.connections(), 1);
    a.kill();
    std::thread::sleep(Duration::from_millis(100));
    let resp = get(r.port, "/", &[]);
    assert_eq!(resp.status, 502, "{}", resp.text());
    a.restart();
    let resp = get(r.port, "/after", &[]);
    assert_eq!(resp.status, 200, "{}", r.stderr());
    assert_eq!(resp.text(), "a GET /after");
    assert_eq!(a.connections(), 2);
    // A WebSocket upgrade cannot go to an h2c server: 502, and nothing counted against it.
    let resp = get(
        r.port,
        "/ws",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    );
    assert_eq!(resp.status, 502);
    let t = Instant::now();
    while !r
        .stderr()
        .contains("WebSocket upgrade to an HTTP/2 (h2c) upstream refused")
    {
        assert!(t.elapsed() < Duration::from_secs(5), "{}", r.stderr());
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(get(r.port, "/again", &[]).status, 200);
}

#[test]
fn read_timeout_resets_one_stream_and_max_requests_retires_the_connection() {
    let a = Upstream::start_h2("a");
    let r = Rampart::with_config(&config(
        &format!("\"{}\"", a.addr()),
        "protocol = \"h2c\"\nread_timeout = \"300ms\"\nretry = { tries = 1 }\nkeepalive = { max_requests = 3 }",
    ));
    // No head within read_timeout: 504; only that stream is cancelled (RST_STREAM reaches
    // the server, whose handler is dropped), the connection carries on.
    let resp = get(r.port, "/slow/1500", &[]);
    assert_eq!(resp.status, 504, "{}", resp.text());
    let t = Instant::now();
    while a.cancelled() == 0 && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.cancelled(), 1);
    assert_eq!(get(r.port, "/one", &[]).status, 200);
    assert_eq!(get(r.port, "/two", &[]).status, 200);
    assert_eq!(a.connections(), 1);
    // The fourth request opens a new connection (max_requests = 3 per connection), and so on.
    for i in 0..4 {
        assert_eq!(get(r.port, &format!("/more/{i}"), &[]).status, 200);
    }
    assert_eq!(a.connections(), 3);
    // Retired connections close once their last stream is done: one stays open.
    let open = || a.state.open.load(std::sync::atomic::Ordering::SeqCst);
    let t = Instant::now();
    while open() > 1 && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(open(), 1);
}

#[test]
fn a_slow_answer_to_a_streamed_body_is_not_a_send_stall() {
    let a = Upstream::start_h2("a");
    let r = Rampart::with_config(&config(
        &format!("\"{}\"", a.addr()),
        "protocol = \"h2c\"\nsend_timeout = \"300ms\"\nread_timeout = \"5s\"",
    ));
    // The whole body is sent at once (Content-Length over HTTP/1.1, END_STREAM on the last
    // DATA frame over HTTP/2); the server answers after 3 send timeouts: still a 200.
    let resp = common::raw(
        r.port,
        b"POST /slow/900 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(resp.status, 200, "{}", r.stderr());
    rt().block_on(async {
        let mut tx = h2_client(r.port).await;
        let req = http::Request::post("http://x/slow/900")
            .body(full("hello"))
            .unwrap();
        let (st, _, _) = read_all(tx.send_request(req).await.unwrap()).await;
        assert_eq!(st, 200);
    });
}

#[test]
fn http1_upstream_read_timeout_starts_after_a_content_length_body() {
    // The same end-of-body signal starts the head timeout for HTTP/1 servers.
    let a = Upstream::start("a");
    let r = Rampart::with_config(&config(
        &format!("\"{}\"", a.addr()),
        "read_timeout = \"300ms\"\nretry = { tries = 1 }",
    ));
    let resp = common::raw(
        r.port,
        b"POST /slow/3000 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    // 504, not the server's 200 after 3 s: the head timeout started once the body was sent.
    assert_eq!(resp.status, 504, "{}", r.stderr());
}
