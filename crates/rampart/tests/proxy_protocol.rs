//! PROXY protocol end to end: an L4 balancer in front (raw TCP clients sending v1 and v2
//! headers) and upstreams behind that require the header (the test upstream parses it with
//! its own parser and echoes the client it names).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::upstream::Upstream;
use common::*;

const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn v2_inet(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src.0);
    h.extend_from_slice(&dst.0);
    h.extend_from_slice(&src.1.to_be_bytes());
    h.extend_from_slice(&dst.1.to_be_bytes());
    h
}

fn v2_inet6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x21, 0, 36 + 5]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    // A TLV (PP2_TYPE_AUTHORITY "hi") is skipped.
    h.extend_from_slice(&[0x02, 0x00, 0x02, b'h', b'i']);
    h
}

fn v2_local() -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0, 0]);
    h
}

/// Sends `preamble` + a GET on one connection; the response, or `None` if the server closed
/// without answering.
fn send(port: u16, preamble: &[u8], path: &str) -> Option<Resp> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut msg = preamble.to_vec();
    msg.extend_from_slice(
        format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    (&s).write_all(&msg).unwrap();
    read_response(&mut BufReader::new(s), false)
}

fn front_config(upstream: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{{admin}}"

{upstream}

# Behind an L4 balancer: connections start with a PROXY header.
[[server]]
listen = ["127.0.0.1:{{port}}"]
proxy_protocol = true
access_log = {{ path = "stdout" }}
access = {{ deny = ["198.51.100.0/24"] }}

[[server.route]]
prefix = "/"
proxy = "app"

# Another address of the same process: plain HTTP.
[[server]]
listen = ["127.0.0.2:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
prefix = "/"
proxy = "app"
"#
    )
}

#[test]
fn accepts_v1_and_v2_and_uses_the_named_client_everywhere() {
    let a = Upstream::start("a");
    let r = Rampart::with_config(&front_config(&format!(
        "[upstream.app]\nservers = [\"{}\"]",
        a.addr()
    )));
    let port = r.port;

    // v1 TCP4: the header's client is X-Forwarded-For, Forwarded and the access log address.
    let v1 = format!("PROXY TCP4 203.0.113.9 127.0.0.1 40001 {port}\r\n");
    let resp = send(port, v1.as_bytes(), "/headers").expect("a response");
    assert_eq!(resp.status, 200);
    let seen = resp.text();
    assert!(seen.contains("x-forwarded-for: 203.0.113.9\n"), "{seen}");
    assert!(seen.contains("forwarded: for=203.0.113.9;"), "{seen}");
    let log = r.wait_stdout(|s| s.contains("203.0.113.9 "));
    assert!(log.lines().any(|l| l.starts_with("203.0.113.9 ")), "{log}");

    // v1 TCP6.
    let v1 = format!("PROXY TCP6 2001:db8::7 ::1 40002 {port}\r\n");
    let seen = send(port, v1.as_bytes(), "/headers").unwrap().text();
    assert!(seen.contains("x-forwarded-for: 2001:db8::7\n"), "{seen}");

    // v2 IPv4 and IPv6 (with a TLV).
    let h = v2_inet(([192, 0, 2, 44], 40003), ([127, 0, 0, 1], port));
    let seen = send(port, &h, "/headers").unwrap().text();
    assert!(seen.contains("x-forwarded-for: 192.0.2.44\n"), "{seen}");
    let h = v2_inet6(
        "2001:db8::99".parse().unwrap(),
        1,
        Ipv6Addr::LOCALHOST,
        port,
    );
    let seen = send(port, &h, "/headers").unwrap().text();
    assert!(seen.contains("x-forwarded-for: 2001:db8::99\n"), "{seen}");

    // LOCAL (the balancer's own health check) and v1 UNKNOWN keep the TCP peer.
    let seen = send(port, &v2_local(), "/headers").unwrap().text();
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    let seen = send(port, b"PROXY UNKNOWN\r\n", "/headers").unwrap().text();
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");

    // Access rules see the header's client.
    let v1 = format!("PROXY TCP4 198.51.100.3 127.0.0.1 40004 {port}\r\n");
    assert_eq!(send(port, v1.as_bytes(), "/").unwrap().status, 403);

    // Keep-alive after the header: several requests on the connection.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.10 127.0.0.1 1 2\r\n")
        .unwrap();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    for _ in 0..3 {
        s.write_all(b"GET /headers HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let seen = read_response(&mut rd, false).unwrap().text();
        assert!(seen.contains("x-forwarded-for: 203.0.113.10\n"), "{seen}");
    }
}

#[test]
fn missing_or_malformed_headers_close_the_connection() {
    let a = Upstream::start("a");
    let r = Rampart::with_config(&front_config(&format!(
        "[upstream.app]\nservers = [\"{}\"]",
        a.addr()
    )));
    let port = r.port;
    for bad in [
        &b""[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY SCTP 1.2.3.4 5.6.7.8 1 2\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c\x01\x02\x03\x04\x01\x02\x03\x04\x00\x01\x00\x02",
    ] {
        // Without a valid header nothing is answered: the connection just closes.
        assert!(
            send(port, bad, "/").is_none(),
            "answered after {:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(a.count(), 0);
    // The plain listener of the same process needs no header.
    let resp = get_on("127.0.0.2", port, "/plain");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "a GET /plain");
    // And a plain HTTP request on the PROXY listener is not mistaken for one.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

fn get_on(ip: &str, port: u16, path: &str) -> Resp {
    let s = TcpStream::connect((ip, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    read_response(&mut BufReader::new(s), false).unwrap()
}

fn back_config(a: &Upstream, version: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{{admin}}"

[upstream.app]
servers = ["{}"]
send_proxy_protocol = "{version}"
health_check = {{ path = "/health", interval = "100ms", timeout = "1s", rise = 1, fall = 1 }}

[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
prefix = "/"
proxy = "app"
"#,
        a.addr()
    )
}

#[test]
fn sends_v1_and_v2_headers_naming_each_client() {
    for version in ["v1", "v2"] {
        let a = Upstream::start_proxied("a");
        let r = Rampart::with_config(&back_config(&a, version));
        // Two clients, three requests each on a keep-alive connection.
        let mut clients = Vec::new();
        for _ in 0..2 {
            let s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let me: SocketAddr = s.local_addr().unwrap();
            clients.push((s, me));
        }
        for _ in 0..3 {
            for (s, me) in &mut clients {
                s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut rd = BufReader::new(s.try_clone().unwrap());
                let resp = read_response(&mut rd, false).unwrap();
                assert_eq!(resp.status, 200, "{version}: {}", resp.text());
                // The upstream saw exactly this client (address and port) in the header.
                assert_eq!(
                    resp.header("x-proxy-client"),
                    Some(me.to_string().as_str()),
                    "{version}"
                );
                assert_eq!(resp.text(), "a GET /hello");
            }
        }
        let seen = a.proxy_clients();
        let named: Vec<&String> = seen
            .iter()
            .filter(|c| *c != "local" && *c != "unknown")
            .collect();
        // One upstream connection per request: never one client's connection for another.
        assert_eq!(named.len(), 6, "{version}: {seen:?}");
        for (_, me) in &clients {
            assert_eq!(
                named.iter().filter(|c| ***c == me.to_string()).count(),
                3,
                "{version}: {seen:?}"
            );
        }
        // Those connections are closed after their request, not left idle: nothing may reuse
        // them for another client.
        let t = std::time::Instant::now();
        let open = || a.state.open.load(std::sync::atomic::Ordering::SeqCst);
        while open() > 0 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(open(), 0, "{version}: upstream connections left open");
        // Health checks send the LOCAL / UNKNOWN form, which the server accepts.
        let local = if version == "v1" { "unknown" } else { "local" };
        let t = std::time::Instant::now();
        while !a.proxy_clients().iter().any(|c| c == local) && t.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(a.proxy_clients().iter().any(|c| c == local), "{version}");
        assert_eq!(
            a.state
                .bad_proxy_headers
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        let metrics = get(r.admin_port, "/metrics", &[]).text();
        assert!(
            metrics.contains(&format!(
                "rampart_upstream_server_health_up{{upstream=\"app\",server=\"{}\"}} 1",
                a.addr()
            )),
            "{metrics}"
        );
    }
}

#[test]
fn client_from_an_accepted_header_is_passed_on_upstream() {
    let a = Upstream::start_proxied("a");
    let cfg = format!(
        r#"
[upstream.app]
servers = ["{}"]
send_proxy_protocol = "v2"

[[server]]
listen = ["127.0.0.1:{{port}}"]
proxy_protocol = true
access_log = {{ path = "off" }}

[[server.route]]
prefix = "/"
proxy = "app"
"#,
        a.addr()
    );
    let r = Rampart::with_config(&cfg);
    let v1 = format!("PROXY TCP4 203.0.113.77 127.0.0.1 51234 {}\r\n", r.port);
    let resp = send(r.port, v1.as_bytes(), "/headers").unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-proxy-client"), Some("203.0.113.77:51234"));
    assert!(resp.text().contains("x-forwarded-for: 203.0.113.77\n"));
}

#[test]
fn websocket_upgrade_to_an_upstream_that_wants_a_header() {
    let a = Upstream::start_proxied("a");
    let r = Rampart::with_config(&back_config(&a, "v2"));
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = s.local_addr().unwrap().to_string();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains(&format!("x-proxy-client: {me}\r\n")),
        "{head}"
    );
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
}

#[test]
fn a_reload_can_turn_accepting_on_for_new_connections() {
    let a = Upstream::start("a");
    let plain = format!(
        r#"
[admin]
listen = "127.0.0.1:{{admin}}"

[upstream.app]
servers = ["{}"]

[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
prefix = "/"
proxy = "app"
"#,
        a.addr()
    );
    let r = Rampart::with_config(&plain);
    assert_eq!(send(r.port, b"", "/").unwrap().status, 200);
    r.write_config(&plain.replace(
        "access_log = { path = \"off\" }",
        "access_log = { path = \"off\" }\nproxy_protocol = true",
    ));
    let out = rampart(&["reload", "-c", r.config_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(send(r.port, b"", "/").is_none(), "a header is required now");
    let v1 = format!("PROXY TCP4 203.0.113.5 127.0.0.1 1000 {}\r\n", r.port);
    let seen = send(r.port, v1.as_bytes(), "/headers").unwrap().text();
    assert!(seen.contains("x-forwarded-for: 203.0.113.5\n"), "{seen}");
}

#[test]
fn mirrored_copies_carry_the_header_too() {
    let a = Upstream::start("a");
    let shadow = Upstream::start_proxied("shadow");
    let cfg = format!(
        r#"
[upstream.app]
servers = ["{}"]

[upstream.shadow]
servers = ["{}"]
send_proxy_protocol = "v1"

[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
prefix = "/"
proxy = "app"
mirror = {{ upstream = "shadow", percent = 100 }}
"#,
        a.addr(),
        shadow.addr()
    );
    let r = Rampart::with_config(&cfg);
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = s.local_addr().unwrap().to_string();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    for _ in 0..5 {
        s.write_all(b"GET /m HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut rd, false).unwrap().text(), "a GET /m");
    }
    let t = std::time::Instant::now();
    while shadow.count() < 5 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(shadow.count(), 5);
    assert_eq!(shadow.proxy_clients(), vec![me; 5]);
}
