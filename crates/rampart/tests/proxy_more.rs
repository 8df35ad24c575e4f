//! More reverse-proxy and load-balancer behaviour, end to end: balancing methods and session
//! affinity not covered in proxy.rs, slow start, draining by reload, Unix-socket upstreams,
//! HTTP/2 clients, cancellation, send timeouts, health checks (TCP, body match, passive 5xx)
//! and the upstream metrics. Shares are counted over many requests with generous bounds; no
//! assertion depends on how fast the machine is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::upstream::Upstream;
use common::*;

fn name(r: &Resp) -> String {
    r.header("x-upstream").unwrap_or("-").to_string()
}

fn servers(ups: &[&Upstream]) -> String {
    let list: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr())).collect();
    list.join(", ")
}

/// The value of one upstream series for one server in `/metrics`.
fn metric(admin: u16, series: &str, server: &str) -> Option<u64> {
    let text = get(admin, "/metrics", &[]).text();
    let prefix = format!("{series}{{upstream=\"app\",server=\"{server}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `/metrics` until the series has `want` (generous deadline; returns the last value).
fn wait_metric(admin: u16, series: &str, server: &str, want: u64) -> Option<u64> {
    let t = Instant::now();
    loop {
        let v = metric(admin, series, server);
        if v == Some(want) || t.elapsed() > Duration::from_secs(20) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn reload(r: &Rampart, cfg: &str) {
    r.write_config(cfg);
    let out = rampart(&["reload", "-c", r.config_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GET through curl from a chosen loopback source address; returns (status, x-upstream).
fn curl_from(src: &str, url: &str, headers: &[&str]) -> (String, String) {
    let mut args = vec![
        "--interface",
        src,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %header{x-upstream}",
    ];
    for h in headers {
        args.push("-H");
        args.push(h);
    }
    args.push(url);
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (st, up) = text.split_once(' ').unwrap_or((&text, ""));
    (st.to_string(), up.to_string())
}

#[test]
fn ip_hash_pins_each_client_address_and_spreads_addresses() {
    let ups: Vec<Upstream> = ["a", "b", "c"].iter().map(|n| Upstream::start(n)).collect();
    let refs: Vec<&Upstream> = ups.iter().collect();
    let up = format!(
        "[upstream.app]\nservers = [{}]\nbalance = \"ip_hash\"",
        servers(&refs)
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    // Clients on different loopback addresses (127.0.0.0/8 is all local on Linux).
    let mut first: HashMap<String, String> = HashMap::new();
    for i in 1..=30 {
        let src = format!("127.0.0.{i}");
        let (st, n) = curl_from(&src, &r.url("/"), &[]);
        assert_eq!(st, "200");
        first.insert(src, n);
    }
    for (src, n) in &first {
        for _ in 0..3 {
            assert_eq!(&curl_from(src, &r.url("/"), &[]).1, n, "{src} moved");
        }
    }
    let used: std::collections::HashSet<&String> = first.values().collect();
    assert!(used.len() >= 2, "30 addresses all on one server: {first:?}");
    // Without trusted proxies a forged X-Forwarded-For changes nothing.
    for (src, n) in first.iter().take(5) {
        for fake in ["10.0.0.1", "10.9.9.9", "192.168.1.1"] {
            let xff = format!("X-Forwarded-For: {fake}");
            assert_eq!(&curl_from(src, &r.url("/"), &[&xff]).1, n);
        }
    }
}

#[test]
fn ip_hash_uses_x_forwarded_for_from_trusted_proxies() {
    let ups: Vec<Upstream> = ["a", "b", "c"].iter().map(|n| Upstream::start(n)).collect();
    let refs: Vec<&Upstream> = ups.iter().collect();
    let up = format!(
        "[upstream.app]\nservers = [{}]\nbalance = \"ip_hash\"",
        servers(&refs)
    );
    let cfg = format!(
        "[global]\ntrusted_proxies = [\"127.0.0.0/8\"]\n{}",
        proxy_config(&up, "")
    );
    let r = Rampart::with_config(&cfg);
    let mut cl = Client::new(r.port);
    let mut first: HashMap<String, String> = HashMap::new();
    for i in 0..60 {
        let ip = format!("203.0.113.{i}");
        first.insert(ip.clone(), name(&cl.get("/", &[("X-Forwarded-For", &ip)])));
    }
    let used: std::collections::HashSet<&String> = first.values().collect();
    assert_eq!(used.len(), 3, "60 forwarded addresses spread: {first:?}");
    for (ip, n) in &first {
        // The same forwarded client keeps its server, also behind a chain of trusted proxies
        // (the rightmost untrusted address counts).
        assert_eq!(&name(&cl.get("/", &[("X-Forwarded-For", ip)])), n);
        let chain = format!("198.51.100.7, {ip}, 127.0.0.9");
        assert_eq!(&name(&cl.get("/", &[("X-Forwarded-For", &chain)])), n);
    }
}

#[test]
fn random_follows_weights_over_many_requests() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Upstream::start("c");
    let up = format!(
        "[upstream.app]\nservers = [{{ addr = \"{}\", weight = 3 }}, \"{}\", {{ addr = \"{}\", down = true }}]\nbalance = \"random\"",
        a.addr(),
        b.addr(),
        c.addr()
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let mut cl = Client::new(r.port);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..2000 {
        *counts.entry(name(&cl.get("/", &[]))).or_default() += 1;
    }
    let ca = counts.get("a").copied().unwrap_or(0);
    let cb = counts.get("b").copied().unwrap_or(0);
    assert_eq!(ca + cb, 2000, "{counts:?}");
    assert_eq!(c.count(), 0, "a down server gets nothing");
    // Expected 1500/500; σ ≈ 19, so ±150 is about 8σ.
    assert!((1350..=1650).contains(&ca), "{counts:?}");
    // Not round robin in disguise: the order is not the fixed a,a,b,a pattern.
    let seq: String = (0..40).map(|_| name(&cl.get("/", &[]))).collect();
    assert_ne!(seq, "aaba".repeat(10), "looks like smooth round robin");
}

#[test]
fn slow_start_ramps_a_recovered_server() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let up = format!(
        r#"[upstream.app]
servers = [{}]
slow_start = "6s"
health_check = {{ path = "/health", interval = "100ms", timeout = "1s", rise = 1, fall = 1 }}"#,
        servers(&[&a, &b])
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let mut cl = Client::new(r.port);
    b.set_healthy(false);
    assert_eq!(
        wait_metric(
            r.admin_port,
            "rampart_upstream_server_health_up",
            &b.addr(),
            0
        ),
        Some(0)
    );
    for _ in 0..20 {
        assert_eq!(name(&cl.get("/", &[])), "a");
    }
    b.set_healthy(true);
    assert_eq!(
        wait_metric(
            r.admin_port,
            "rampart_upstream_server_health_up",
            &b.addr(),
            1
        ),
        Some(1)
    );
    // Right after recovery b's weight is a small fraction of a's.
    let early = (0..60).filter(|_| name(&cl.get("/", &[])) == "b").count();
    // After the ramp both are equal again (smooth round robin: exactly half).
    std::thread::sleep(Duration::from_millis(6500));
    let late = (0..60).filter(|_| name(&cl.get("/", &[])) == "b").count();
    assert!(
        (28..=32).contains(&late),
        "full weight after slow start: {late}/60"
    );
    // A window right after recovery sees a few percent; even one spanning the whole linear
    // ramp would average 1 - ln 2 ≈ 31% (18 of 60).
    assert!(early <= 20, "b got {early}/60 right after recovery");
    assert!(early < late, "early {early} late {late}");
}

#[test]
fn drain_by_reload_finishes_in_flight_and_takes_no_new_requests() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let up = format!("[upstream.app]\nservers = [{}]", servers(&[&a, &b]));
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let port = r.port;
    // Two long requests: round robin puts one on each server.
    let long: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || Client::new(port).get("/slow/2500", &[])))
        .collect();
    let t = Instant::now();
    while (a.count() < 1 || b.count() < 1) && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!((a.count(), b.count()), (1, 1));
    let drained = format!(
        "[upstream.app]\nservers = [\"{}\", {{ addr = \"{}\", drain = true }}]",
        a.addr(),
        b.addr()
    );
    reload(&r, &proxy_config(&drained, ""));
    let mut cl = Client::new(port);
    for _ in 0..20 {
        let resp = cl.get("/", &[]);
        assert_eq!(resp.status, 200);
        assert_eq!(name(&resp), "a", "a draining server gets no new request");
    }
    let names: Vec<String> = long
        .into_iter()
        .map(|h| {
            let resp = h.join().unwrap();
            assert_eq!(resp.status, 200, "{}", resp.text());
            name(&resp)
        })
        .collect();
    assert!(names.contains(&"b".to_string()), "{names:?}");
    assert_eq!(b.count(), 1);
    assert_eq!(b.cancelled(), 0, "the in-flight request was not cut");
}

#[test]
fn sticky_learn_follows_the_application_session_cookie() {
    let ups: Vec<Upstream> = ["a", "b", "c"].iter().map(|n| Upstream::start(n)).collect();
    let refs: Vec<&Upstream> = ups.iter().collect();
    let up = format!(
        "[upstream.app]\nservers = [{}]\nsticky = {{ learn = \"JSESSIONID\" }}",
        servers(&refs)
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let mut cl = Client::new(r.port);
    let mut owner: HashMap<&str, String> = HashMap::new();
    for sid in ["abc", "def", "ghi"] {
        let resp = cl.get(&format!("/setcookie/JSESSIONID={sid}"), &[]);
        assert_eq!(resp.status, 200);
        assert!(resp
            .header("set-cookie")
            .unwrap()
            .starts_with("JSESSIONID="));
        owner.insert(sid, name(&resp));
    }
    // Round robin put the three sessions on three servers.
    let set: std::collections::HashSet<&String> = owner.values().collect();
    assert_eq!(set.len(), 3, "{owner:?}");
    for _ in 0..5 {
        for (sid, n) in &owner {
            let cookie = format!("theme=dark; JSESSIONID={sid}");
            assert_eq!(&name(&cl.get("/", &[("Cookie", &cookie)])), n, "{sid}");
        }
    }
    // Unknown sessions and requests without the cookie are balanced as usual.
    let spread: std::collections::HashSet<String> = (0..6)
        .map(|_| name(&cl.get("/", &[("Cookie", "JSESSIONID=unknown")])))
        .collect();
    assert_eq!(spread.len(), 3);
}

#[test]
fn unix_socket_upstream() {
    let dir = TempDir::new("unixup");
    let a = Upstream::start_unix("a", dir.path().join("a.sock"));
    let up = format!(
        "[upstream.app]\nservers = [\"{}\"]\nhealth_check = {{ path = \"/health\", interval = \"200ms\" }}",
        a.addr()
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let mut cl = Client::new(r.port);
    for i in 0..20 {
        let resp = cl.get(&format!("/hello?i={i}"), &[]);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), format!("a GET /hello?i={i}"));
    }
    assert_eq!(a.count(), 20);
    // Keep-alive works over Unix sockets too (one or two connections, not twenty).
    let conns = a
        .state
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(conns <= 4, "{conns} connections");
    assert_eq!(
        metric(r.admin_port, "rampart_upstream_server_up", &a.addr()),
        Some(1)
    );
}

#[test]
fn http2_client_through_to_http1_upstream() {
    let a = Upstream::start("a");
    let r = Rampart::with_config(&proxy_config(
        &format!("[upstream.app]\nservers = [\"{}\"]", a.addr()),
        "",
    ));
    // One URL per curl run: curl 7.88 sends nothing for a second URL on a reused
    // prior-knowledge connection (seen against static files too, so not proxy-specific).
    let h2 = |path: &str| {
        let out = curl(&[
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version} %{http_code}",
            &r.url(path),
        ]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(h2("/h2?x=1"), "a GET /h2?x=1\n2 200");
    let text = h2("/headers");
    // The upstream got an HTTP/1.1 request with the HTTP/2 client's authority as Host.
    assert!(
        text.contains(&format!("host: 127.0.0.1:{}\n", r.port)),
        "{text}"
    );
    assert!(text.contains("via: 2 rampart\n"), "{text}");
    assert!(text.ends_with("2 200"), "{text}");
    // A POST body crosses from HTTP/2 frames to HTTP/1.1.
    let out = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        "payload over h2",
        &r.url("/echo"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "payload over h2");
}

#[test]
fn client_abort_cancels_the_upstream_request() {
    let a = Upstream::start("a");
    let r = Rampart::with_config(&proxy_config(
        &format!("[upstream.app]\nservers = [\"{}\"]", a.addr()),
        "",
    ));
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.write_all(b"GET /slow/3000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    while a.count() < 1 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(s);
    // The upstream handler is dropped (its connection closed) instead of running 3 s to the end:
    // if it were not, `cancelled` would stay 0 for good.
    let t = Instant::now();
    while a.cancelled() == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.cancelled(), 1);
    // A request that completes is not counted as cancelled.
    assert_eq!(Client::new(r.port).get("/slow/10", &[]).status, 200);
    assert_eq!(a.cancelled(), 1);
}

#[test]
fn send_timeout_on_an_upstream_that_reads_nothing_is_504() {
    // Accepts connections and never reads from them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let up = format!("[upstream.app]\nservers = [\"{addr}\"]\nsend_timeout = \"500ms\"\nread_timeout = \"60s\"\nretry = {{ tries = 1 }}");
    let r = Rampart::with_config(&proxy_config(&up, "max_body_size = \"256MiB\""));
    let s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let total: usize = 64 << 20;
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = write!(
            w,
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n"
        );
        let chunk = vec![b'z'; 1 << 20];
        for _ in 0..64 {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut rd = BufReader::new(s);
    let resp = read_response(&mut rd, false).expect("a response");
    assert_eq!(resp.status, 504, "{}", resp.text());
    let _ = rd.get_ref().shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
}

#[test]
fn tcp_health_check_follows_the_port_not_the_http_answer() {
    let a = Upstream::start("a");
    let mut b = Upstream::start("b");
    let up = format!(
        "[upstream.app]\nservers = [{}]\nhealth_check = {{ kind = \"tcp\", interval = \"100ms\", timeout = \"1s\", rise = 1, fall = 1 }}",
        servers(&[&a, &b])
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let series = "rampart_upstream_server_health_up";
    b.kill();
    assert_eq!(wait_metric(r.admin_port, series, &b.addr(), 0), Some(0));
    let mut cl = Client::new(r.port);
    for _ in 0..10 {
        let resp = cl.get("/", &[]);
        assert_eq!(resp.status, 200);
        assert_eq!(name(&resp), "a");
    }
    b.restart();
    assert_eq!(wait_metric(r.admin_port, series, &b.addr(), 1), Some(1));
    // A TCP check only connects: an HTTP-level "sick" answer does not take the server out.
    b.set_healthy(false);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(metric(r.admin_port, series, &b.addr()), Some(1));
    let names: std::collections::HashSet<String> =
        (0..4).map(|_| name(&cl.get("/", &[]))).collect();
    assert_eq!(names.len(), 2);
}

#[test]
fn http_health_check_expect_body() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    // Both answer 200 to /probe, but only a's body contains "a GET".
    let up = format!(
        "[upstream.app]\nservers = [{}]\nhealth_check = {{ path = \"/probe\", expect_body = \"a GET\", interval = \"100ms\", timeout = \"1s\", rise = 1, fall = 1 }}",
        servers(&[&a, &b])
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let series = "rampart_upstream_server_health_up";
    assert_eq!(wait_metric(r.admin_port, series, &b.addr(), 0), Some(0));
    assert_eq!(metric(r.admin_port, series, &a.addr()), Some(1));
    let mut cl = Client::new(r.port);
    for _ in 0..10 {
        assert_eq!(name(&cl.get("/", &[])), "a");
    }
}

#[test]
fn passive_health_fail_on_5xx_ejects_and_metrics_show_it() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let up = format!(
        "[upstream.app]\nservers = [{}]\npassive_health = {{ max_fails = 2, fail_on_5xx = true, cooldown = \"60s\" }}",
        servers(&[&a, &b])
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let admin = r.admin_port;
    assert_eq!(
        metric(admin, "rampart_upstream_server_up", &b.addr()),
        Some(1)
    );
    assert_eq!(
        metric(admin, "rampart_upstream_server_ejections_total", &b.addr()),
        Some(0)
    );
    b.set_failing(true);
    let mut cl = Client::new(r.port);
    let statuses: Vec<u16> = (0..20).map(|_| cl.get("/", &[]).status).collect();
    // b answered 500 twice (its 500s pass through untouched), then was ejected.
    assert_eq!(
        statuses.iter().filter(|s| **s == 500).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(b.count(), 2);
    assert_eq!(a.count(), 18);
    assert_eq!(
        metric(admin, "rampart_upstream_server_up", &b.addr()),
        Some(0)
    );
    assert_eq!(
        metric(admin, "rampart_upstream_server_ejections_total", &b.addr()),
        Some(1)
    );
    assert_eq!(
        metric(admin, "rampart_upstream_server_breaker_open", &b.addr()),
        Some(1)
    );
    assert_eq!(
        metric(admin, "rampart_upstream_server_failures_total", &b.addr()),
        Some(2)
    );
    assert_eq!(
        metric(admin, "rampart_upstream_server_up", &a.addr()),
        Some(1)
    );
}

#[test]
fn without_fail_on_5xx_a_server_answering_500_stays_in() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let up = format!(
        "[upstream.app]\nservers = [{}]\npassive_health = {{ max_fails = 2 }}",
        servers(&[&a, &b])
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    b.set_failing(true);
    let mut cl = Client::new(r.port);
    let fails = (0..20).filter(|_| cl.get("/", &[]).status == 500).count();
    assert_eq!(fails, 10);
    assert_eq!(
        metric(
            r.admin_port,
            "rampart_upstream_server_ejections_total",
            &b.addr()
        ),
        Some(0)
    );
    assert_eq!(
        metric(r.admin_port, "rampart_upstream_server_up", &b.addr()),
        Some(1)
    );
}

/// `buffer_size` bounds the upstream response head (nginx: "upstream sent too big
/// header" → 502); a larger buffer lets the same response through, and the server still
/// answers normal requests on the next connection.
#[test]
fn upstream_buffer_size_bounds_the_response_head() {
    let a = Upstream::start("a");
    let small = format!("[upstream.app]\nservers = [{}]", servers(&[&a]));
    let r = Rampart::with_config(&proxy_config(&small, ""));
    let resp = get(r.port, "/bigheader/20000", &[]);
    assert_eq!(resp.status, 502, "{}", resp.text());
    let ok = get(r.port, "/bigheader/1000", &[]);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-big").map(str::len), Some(1000));
    drop(r);

    let big = format!(
        "[upstream.app]\nservers = [{}]\nbuffer_size = \"64KiB\"",
        servers(&[&a])
    );
    let r = Rampart::with_config(&proxy_config(&big, ""));
    let resp = get(r.port, "/bigheader/20000", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-big").map(str::len), Some(20000));
    assert_eq!(resp.text(), "a big header");
}

#[test]
fn upstream_buffer_size_out_of_range_is_a_config_error() {
    let dir = TempDir::new("bufsize");
    let cfg = dir.write(
        "rampart.toml",
        "[upstream.app]\nservers = [\"127.0.0.1:1\"]\nbuffer_size = \"1KiB\"\n\n[[server]]\nlisten = [\"127.0.0.1:0\"]\n\n[[server.route]]\nprefix = \"/\"\nproxy = \"app\"\n",
    );
    let out = rampart(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("buffer_size must be between 8KiB and 1MiB"),
        "{err}"
    );
}
