//! The proxy's own HTTP/1 client against raw TCP servers with the framings real servers use
//! and the ones they should not: a keep-alive server that closes idle connections, HTTP/1.0
//! close-delimited bodies, chunked bodies with extensions and trailers, interim 100 responses,
//! and broken heads or framing (502, never a hang or a panic). No assertion depends on timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn config(port: u16) -> String {
    proxy_config(
        &format!("[upstream.app]\nservers = [\"127.0.0.1:{port}\"]"),
        "",
    )
}

/// Reads one request (head and a `Content-Length` body); `None` when the peer closed.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let head = read_head(r)?;
    let len = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// A raw server: each connection is handed to `serve` in a thread of its own. Returns its
/// port and the count of connections accepted.
fn raw_server(
    serve: impl Fn(BufReader<TcpStream>) + Send + Sync + 'static,
) -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let serve = serve.clone();
            std::thread::spawn(move || serve(BufReader::new(s)));
        }
    });
    (port, accepted)
}

#[test]
fn idle_connection_closed_by_the_server_is_replaced_without_an_error() {
    // Keep-alive answers, then the server closes the connection while it sits in the pool
    // (as an idle timeout shorter than the proxy's would).
    let (closed_tx, closed_rx) = mpsc::channel::<()>();
    let closed_tx = std::sync::Mutex::new(closed_tx);
    let (port, accepted) = raw_server(move |mut r| {
        if let Some((head, body)) = read_request(&mut r) {
            let first = head.lines().next().unwrap_or_default().to_string();
            let text = format!("{first} body={}", body.len());
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
            r.get_mut().write_all(resp.as_bytes()).unwrap();
        }
        drop(r);
        let _ = closed_tx.lock().unwrap().send(());
    });
    let rp = Rampart::with_config(&config(port));
    for (i, method) in ["GET", "GET", "POST", "PUT"].iter().enumerate() {
        let mut c = Client::new(rp.port);
        let r = c.send(method, &format!("/r{i}"), &[], b"abc");
        assert_eq!(r.status, 200, "{method} #{i}: {}", r.text());
        assert_eq!(r.text(), format!("{method} /r{i} HTTP/1.1 body=3"));
        // The server has closed that connection; the next request finds it dead in the pool.
        closed_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[test]
fn close_delimited_bodies() {
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let body = big.clone();
    let (port, accepted) = raw_server(move |mut r| {
        let Some((head, _)) = read_request(&mut r) else {
            return;
        };
        let s = r.get_mut();
        if head.starts_with("GET /v10") {
            // HTTP/1.0, no length: the body ends when the connection does.
            s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                .unwrap();
        } else {
            s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                .unwrap();
        }
        for piece in body.chunks(7000) {
            s.write_all(piece).unwrap();
        }
    });
    let rp = Rampart::with_config(&config(port));
    for path in ["/v10", "/v11", "/v10"] {
        let r = get(rp.port, path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body.len(), big.len(), "{path}");
        assert!(r.body == big, "{path}: body differs");
    }
    // Each ended its connection.
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[test]
fn chunked_interim_and_reuse() {
    let (port, accepted) = raw_server(|mut r| {
        while let Some((head, _)) = read_request(&mut r) {
            let s = r.get_mut();
            if head.starts_with("GET /continue") {
                s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
                    .unwrap();
            } else {
                s.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                      5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
                )
                .unwrap();
            }
        }
    });
    let rp = Rampart::with_config(&config(port));
    let mut c = Client::new(rp.port);
    for _ in 0..3 {
        let r = c.get("/chunked", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello 0123456789");
        let r = c.get("/continue", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "done");
    }
    // One upstream connection carried all six.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn broken_responses_are_bad_gateway() {
    let (port, _) = raw_server(|mut r| {
        let Some((head, _)) = read_request(&mut r) else {
            return;
        };
        let s = r.get_mut();
        let path = head.split(' ').nth(1).unwrap_or_default().to_string();
        let resp: Vec<u8> = match path.as_str() {
            "/cl-te" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
            "/two-lengths" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(),
            "/negative" => b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc".to_vec(),
            "/garbage" => b"SMTP ready\r\n\r\n".to_vec(),
            "/huge-head" => {
                let mut v = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
                v.extend(std::iter::repeat_n(b'x', 64 << 10));
                v.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
                v
            }
            "/closed" => Vec::new(),
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        };
        let _ = s.write_all(&resp);
    });
    let rp = Rampart::with_config(&config(port));
    for path in [
        "/cl-te",
        "/two-lengths",
        "/negative",
        "/garbage",
        "/huge-head",
        "/closed",
    ] {
        let r = get(rp.port, path, &[]);
        assert_eq!(r.status, 502, "{path}");
    }
    assert_eq!(get(rp.port, "/fine", &[]).text(), "ok");
}

#[test]
fn bad_chunk_size_ends_the_response_early() {
    let (port, _) = raw_server(|mut r| {
        if read_request(&mut r).is_some() {
            let _ = r.get_mut().write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\nmore\r\n0\r\n\r\n",
            );
        }
        // Keep the connection open: the proxy must give up on the framing, not wait.
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
    });
    let rp = Rampart::with_config(&config(port));
    // The head went out before the body broke: the client sees a truncated chunked body
    // (no final chunk), so it cannot mistake it for a whole one.
    let out = raw_until_close(
        rp.port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "{text}");
    assert!(!text.contains("more"), "{text}");
}

#[test]
fn early_answer_to_a_streamed_upload_reaches_the_client() {
    // The server answers from the head alone, then drains the body (a lingering close): the
    // proxy must take the answer while the upload still runs, not wait for it to end.
    let (port, _) = raw_server(|mut r| {
        let _ = read_head(&mut r);
        let s = r.get_mut();
        let _ = s.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntoo big",
        );
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
    });
    let rp = Rampart::with_config(&config(port));
    let s = TcpStream::connect(("127.0.0.1", rp.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let len = 1 << 20;
    let writer = std::thread::spawn(move || {
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        let _ = w.write_all(head.as_bytes());
        let chunk = vec![b'u'; 64 << 10];
        for _ in 0..(len / chunk.len()) {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).expect("a response");
    assert_eq!(resp.status, 413);
    assert_eq!(resp.text(), "too big");
    writer.join().unwrap();
}

#[test]
fn whole_and_split_bodies_share_one_connection() {
    // A body that arrives with its head is sent on as one buffer and its connection pooled at
    // once; one that arrives later streams. Both, and bodiless answers, reuse the connection;
    // bytes after a complete answer make it unusable.
    let (port, accepted) = raw_server(|mut r| {
        while let Some((head, _)) = read_request(&mut r) {
            let s = r.get_mut();
            let path = head.split(' ').nth(1).unwrap_or_default().to_string();
            match path.as_str() {
                "/whole" => s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwhole")
                    .unwrap(),
                "/split" => {
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nsplit")
                        .unwrap();
                    s.flush().unwrap();
                    // Makes a separate read of the rest likely (not required by the asserts).
                    std::thread::sleep(Duration::from_millis(20));
                    s.write_all(b" body").unwrap();
                }
                "/head" => s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
                    .unwrap(),
                "/empty" => s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .unwrap(),
                _ => s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextraSTRAY")
                    .unwrap(),
            }
        }
    });
    let rp = Rampart::with_config(&config(port));
    let mut c = Client::new(rp.port);
    for _ in 0..2 {
        let r = c.get("/whole", &[]);
        assert_eq!((r.status, r.text()), (200, "whole".to_string()));
        assert_eq!(r.header("content-length"), Some("5"));
        let r = c.get("/split", &[]);
        assert_eq!((r.status, r.text()), (200, "split body".to_string()));
        let r = c.send("HEAD", "/head", &[], b"");
        assert_eq!((r.status, r.body.len()), (200, 0));
        assert_eq!(r.header("content-length"), Some("1234"));
        let r = c.get("/empty", &[]);
        assert_eq!((r.status, r.text()), (200, String::new()));
        assert_eq!(r.header("content-length"), Some("0"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let r = c.get("/extra", &[]);
    assert_eq!((r.status, r.text()), (200, "extra".to_string()));
    let r = c.get("/whole", &[]);
    assert_eq!((r.status, r.text()), (200, "whole".to_string()));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
