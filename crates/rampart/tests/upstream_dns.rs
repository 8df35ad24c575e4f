//! Upstream host names re-resolved on their DNS TTL through a configured `resolver` (and
//! forward-proxy targets resolved through it), against a
//! real DNS server (dnsmasq, installed by scripts/test.sh): the name first points at server A
//! (127.0.0.2), then the hosts file moves it to B (127.0.0.3, same port) and dnsmasq is told
//! to re-read it; requests must follow within the (1 s) TTL. Killing the DNS server keeps
//! the last good address. Waits are bounded polls; no assertion is a timing threshold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NAME: &str = "app.rampart.test";

/// dnsmasq's path, or `None` (then the test is skipped with a message).
fn dnsmasq() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join("dnsmasq"))
        .find(|p| p.is_file());
    found
}

/// A dnsmasq answering from one hosts file with a 1 s TTL; killed on drop.
struct Dns {
    child: Child,
    port: u16,
}

impl Dns {
    fn start(bin: &Path, hosts: &Path) -> Dns {
        let port = free_port();
        let child = Command::new(bin)
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--pid-file=",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                &format!("--addn-hosts={}", hosts.display()),
                "--local-ttl=1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let dns = Dns { child, port };
        assert!(
            wait(|| dns.answers()),
            "dnsmasq did not answer on port {port}"
        );
        dns
    }

    /// Sends one A query for NAME; true when any answer comes back.
    fn answers(&self) -> bool {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in NAME.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let _ = s.send_to(&q, ("127.0.0.1", self.port));
        let mut buf = [0u8; 512];
        s.recv(&mut buf).is_ok()
    }

    /// SIGHUP: dnsmasq reads its hosts files again.
    fn reread(&self) {
        let st = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP server on `ip:port` answering every request with `name` (and closing).
fn named_server(ip: &str, port: u16, name: &'static str) -> Option<()> {
    let l = TcpListener::bind((ip, port)).ok()?;
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                        name.len()
                    )
                    .as_bytes(),
                );
            });
        }
    });
    Some(())
}

fn wait(f: impl Fn() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn upstream_names_follow_dns_changes_on_their_ttl() {
    let Some(bin) = dnsmasq() else {
        eprintln!("SKIPPED upstream_names_follow_dns_changes_on_their_ttl: dnsmasq is not installed (scripts/test.sh installs it)");
        return;
    };
    // A and B on the same port of two loopback addresses: a name maps to an address only.
    let port = (0..50)
        .map(|_| free_port())
        .find(|&p| {
            named_server("127.0.0.2", p, "A").is_some()
                && named_server("127.0.0.3", p, "B").is_some()
        })
        .expect("a port free on 127.0.0.2 and 127.0.0.3");

    let dir = TempDir::new("dns");
    let hosts = dir.write("hosts", format!("127.0.0.2 {NAME}\n"));
    let dns = Dns::start(&bin, &hosts);
    let cfg = format!(
        r#"
[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
proxy = "app"

[upstream.app]
servers = ["{NAME}:{port}"]
resolver = {{ servers = ["127.0.0.1:{dns}"], timeout = "1s" }}
passive_health = {{ max_fails = 0 }}
"#,
        dns = dns.port
    );
    let r = Rampart::with_config_in(dir, &cfg);
    let who = || get(r.port, "/", &[]).text();
    for _ in 0..3 {
        assert_eq!(who(), "A", "{}", r.stderr());
    }

    // Move the name to B; dnsmasq re-reads its hosts file on SIGHUP.
    std::fs::write(&hosts, format!("127.0.0.3 {NAME}\n")).unwrap();
    dns.reread();
    assert!(
        wait(|| who() == "B"),
        "requests never moved to B: {}",
        r.stderr()
    );
    for _ in 0..3 {
        assert_eq!(who(), "B");
    }
    assert!(r.stderr().contains("upstream address changed"));

    // The DNS server goes away: the last good address stays in use, with a warning.
    drop(dns);
    assert!(
        wait(|| r.stderr().contains("DNS re-resolution failed")),
        "no warning about the failed re-resolution: {}",
        r.stderr()
    );
    for _ in 0..3 {
        assert_eq!(who(), "B");
    }
}

#[test]
fn forward_proxy_targets_are_resolved_through_the_configured_resolver() {
    let Some(bin) = dnsmasq() else {
        eprintln!("SKIPPED forward_proxy_targets_are_resolved_through_the_configured_resolver: dnsmasq is not installed (scripts/test.sh installs it)");
        return;
    };
    // The name exists only in this dnsmasq's hosts file: the system resolver cannot find it.
    let target = (0..50)
        .map(|_| free_port())
        .find_map(|p| TcpListener::bind(("127.0.0.2", p)).ok())
        .expect("a free port on 127.0.0.2");
    let port = target.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in target.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let dir = TempDir::new("dns-forward");
    let hosts = dir.write("hosts", format!("127.0.0.2 {NAME}\n"));
    let dns = Dns::start(&bin, &hosts);
    let cfg = format!(
        r#"
[global]
resolver = {{ servers = ["127.0.0.1:{dns}"], timeout = "1s" }}

[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
forward_proxy = {{ allow_ports = [{port}], allow_hosts = ["{NAME}"] }}
"#,
        dns = dns.port
    );
    let r = Rampart::with_config_in(dir, &cfg);
    let s = std::net::TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(
        format!("CONNECT {NAME}:{port} HTTP/1.1\r\nHost: {NAME}:{port}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut r_ = std::io::BufReader::new(s);
    let head = read_head(&mut r_).unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{}", r.stderr());
    r_.get_mut().write_all(b"through the tunnel").unwrap();
    let mut echoed = [0u8; 18];
    r_.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"through the tunnel");
}
