//! The forward proxy (`forward_proxy` routes), end to end through the binary: curl's
//! `--proxytunnel` (CONNECT) to a real HTTP server, raw CONNECTs for the refusals (403, 502,
//! 405), exact bytes both ways through an echo server, and either side's close ending the
//! tunnel. Every wait is a bounded poll; no assertion depends on the machine's speed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::upstream::Upstream;
use common::*;

fn config(route: &str) -> String {
    format!(
        r#"
[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ format = "json", path = "stdout" }}

[[server.route]]
prefix = "/"
return = {{ status = 200, body = "origin\n" }}

[[server.route]]
{route}
"#
    )
}

fn forward(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "forward_proxy = {{ allow_ports = [{}], allow_hosts = [\"127.0.0.1\"] }}",
        ports.join(", ")
    )
}

/// Sends a CONNECT and reads the response head; returns the status and the open connection.
fn connect(port: u16, target: &str) -> (u16, String, BufReader<TcpStream>) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .unwrap();
    let mut r = BufReader::new(s);
    let head = read_head(&mut r).unwrap_or_default();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, r)
}

/// An echo server on a free port; counts connections that saw the client's end of input.
struct Echo {
    port: u16,
    accepted: Arc<AtomicU64>,
    ended: Arc<AtomicU64>,
}

impl Echo {
    fn start() -> Echo {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicU64::new(0));
        let (a, e) = (accepted.clone(), ended.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let e = e.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    e.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Echo {
            port,
            accepted,
            ended,
        }
    }
}

fn wait_until(f: impl Fn() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn curl_tunnels_to_a_real_http_server() {
    let up = Upstream::start("target");
    let r = Rampart::with_config(&config(&forward(&[up.port])));
    let proxy = format!("http://127.0.0.1:{}", r.port);
    let url = format!("http://127.0.0.1:{}/through/the/tunnel", up.port);
    let out = curl(&["-p", "-x", &proxy, "-D", "-", &url]);
    assert!(out.status.success(), "{out:?}\n{}", r.stderr());
    let text = String::from_utf8_lossy(&out.stdout);
    // curl prints the proxy's answer, then the origin's.
    assert!(
        text.starts_with("HTTP/1.1 200 Connection Established\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("target GET /through/the/tunnel"),
        "body through the tunnel: {text}"
    );
    // The request went to the target itself, not through Rampart's own routes.
    assert_eq!(up.state.requests.load(Ordering::SeqCst), 1);
    // Ordinary requests still reach the ordinary routes.
    assert_eq!(get(r.port, "/", &[]).text(), "origin\n");
}

#[test]
fn bytes_go_both_ways_exactly_and_client_close_ends_the_tunnel() {
    let echo = Echo::start();
    let r = Rampart::with_config(&config(&forward(&[echo.port])));
    let (status, head, mut conn) = connect(r.port, &format!("127.0.0.1:{}", echo.port));
    assert_eq!(status, 200, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );

    // 1 MiB each way, every byte value, written while it is read back.
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut w = conn.get_ref().try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
    let mut back = vec![0u8; data.len()];
    conn.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == data, "the echo came back different");

    // The client closes: the target's connection ends too.
    assert_eq!(echo.ended.load(Ordering::SeqCst), 0);
    drop(conn);
    assert!(
        wait_until(|| echo.ended.load(Ordering::SeqCst) == 1),
        "the target connection stayed open after the client closed"
    );
    // One access log line for the tunnel, with the bytes each way.
    let log = r.wait_stdout(|s| s.contains("\"bytes_received\""));
    let line = log
        .lines()
        .find(|l| l.contains("\"CONNECT\""))
        .unwrap_or_else(|| panic!("no CONNECT line in {log}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 1 << 20);
    assert_eq!(v["bytes_received"], 1 << 20);
    assert_eq!(v["route"], "CONNECT");
}

#[test]
fn target_close_ends_the_tunnel() {
    // A target that answers one line and hangs up.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(b"hello and goodbye\n");
        }
    });
    let r = Rampart::with_config(&config(&forward(&[port])));
    let (status, head, mut conn) = connect(r.port, &format!("127.0.0.1:{port}"));
    assert_eq!(status, 200, "{head}");
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest)
        .expect("the client side should close after the target did");
    assert_eq!(rest, b"hello and goodbye\n");
}

#[test]
fn refusals_403_502_and_405_without_a_route() {
    let echo = Echo::start();
    let closed = free_port();
    let r = Rampart::with_config(&config(&forward(&[echo.port, closed])));

    // A port not in allow_ports: 403, nothing connected, connection closed.
    let (status, _, mut conn) = connect(r.port, "127.0.0.1:22");
    assert_eq!(status, 403);
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    // A host not in allow_hosts (127.0.0.2 is local too): 403.
    let (status, _, _) = connect(r.port, &format!("127.0.0.2:{}", echo.port));
    assert_eq!(status, 403);
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 0);
    // An allowed port where nothing listens: 502.
    let (status, _, _) = connect(r.port, &format!("127.0.0.1:{closed}"));
    assert_eq!(status, 502);
    // Not authority form: 400.
    let resp = raw(
        r.port,
        b"CONNECT /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 400);
    // The diagnostic line is written by another thread: wait for it.
    assert!(
        wait_until(|| r.stderr().contains("CONNECT refused")),
        "{}",
        r.stderr()
    );

    // No forward_proxy route: 405, as before the feature.
    let plain = Rampart::with_config(&config("prefix = \"/x/\"\nreturn = { status = 204 }"));
    let (status, _, _) = connect(plain.port, &format!("127.0.0.1:{}", echo.port));
    assert_eq!(status, 405);
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 0);
}

#[test]
fn access_rules_run_before_the_tunnel() {
    let echo = Echo::start();
    let route = format!(
        "{}\naccess = {{ deny = [\"127.0.0.0/8\"] }}",
        forward(&[echo.port])
    );
    let r = Rampart::with_config(&config(&route));
    let (status, _, _) = connect(r.port, &format!("127.0.0.1:{}", echo.port));
    assert_eq!(status, 403);
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 0);
}

#[test]
fn a_tunnel_counts_against_the_connection_limits() {
    let echo = Echo::start();
    let cfg = format!(
        "[limits]\nmax_connections_per_ip = 1\n{}",
        config(&forward(&[echo.port]))
    );
    let r = Rampart::with_config(&cfg);
    let (status, _, conn) = connect(r.port, &format!("127.0.0.1:{}", echo.port));
    assert_eq!(status, 200);
    // The tunnel still holds this address's one connection: another one is turned away.
    let refused = raw_until_close(r.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(
        refused.starts_with(b"HTTP/1.1 429"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    // Closing the tunnel frees it.
    drop(conn);
    assert!(wait_until(|| get(r.port, "/", &[]).status == 200));
}
