//! Reverse proxy and load balancer, end to end: the real binary in front of real upstream
//! servers (hyper on real ports) that the tests kill and restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::upstream::Upstream;
use common::*;

fn upstream_name(r: &Resp) -> String {
    r.header("x-upstream").unwrap_or("-").to_string()
}

#[test]
fn smooth_weighted_round_robin_follows_nginx_order() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Upstream::start("c");
    let up = format!(
        r#"[upstream.app]
servers = [{{ addr = "{}", weight = 5 }}, "{}", "{}"]"#,
        a.addr(),
        b.addr(),
        c.addr()
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let mut cl = Client::new(r.port);
    let seq: String = (0..14)
        .map(|_| upstream_name(&cl.get("/", &[])))
        .collect::<Vec<_>>()
        .join("");
    assert_eq!(seq, "aabacaaaabacaa");
}

#[test]
fn forwarding_headers_hop_by_hop_and_rewrites() {
    let a = Upstream::start("a");
    let up = format!("[upstream.app]\nservers = [\"{}\"]", a.addr());
    let cfg = format!(
        r#"
[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
prefix = "/api/"
proxy = "app"
proxy_path = "/v2/"
proxy_request_headers = {{ add = {{ "X-Env" = "test" }}, remove = ["X-Secret"] }}

[[server.route]]
prefix = "/"
proxy = "app"
proxy_host = "backend.internal"

{up}
"#
    );
    let r = Rampart::with_config(&cfg);
    let mut cl = Client::new(r.port);
    let resp = cl.get(
        "/api/headers?q=1",
        &[
            ("X-Forwarded-For", "6.6.6.6"),
            ("Connection", "X-Drop-Me"),
            ("X-Drop-Me", "1"),
            ("Keep-Alive", "timeout=5"),
            ("X-Secret", "s3cr3t"),
        ],
    );
    assert_eq!(resp.status, 200);
    let seen = resp.text();
    // Rewritten path, query kept.
    assert!(seen.contains("uri: /v2/headers?q=1"), "{seen}");
    // An untrusted client cannot forge its address.
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(!seen.contains("6.6.6.6"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(seen.contains("x-forwarded-host: app.test\n"), "{seen}");
    assert!(
        seen.contains("forwarded: for=127.0.0.1;proto=http;host=\"app.test\"\n"),
        "{seen}"
    );
    assert!(seen.contains("via: 1.1 rampart\n"), "{seen}");
    assert!(
        seen.contains("host: app.test\n"),
        "client Host passes: {seen}"
    );
    assert!(seen.contains("x-env: test\n"), "{seen}");
    assert!(seen.contains("x-request-id: "), "{seen}");
    for gone in ["x-drop-me", "keep-alive", "x-secret", "connection: x-drop"] {
        assert!(
            !seen.contains(gone),
            "{gone} must not reach upstream: {seen}"
        );
    }
    // Response hop-by-hop headers are removed too.
    assert_eq!(resp.header("x-hop"), None);
    assert_eq!(resp.header("keep-alive"), None);
    assert_eq!(resp.header("x-upstream"), Some("a"));

    let seen = cl.get("/headers", &[]).text();
    assert!(seen.contains("host: backend.internal\n"), "{seen}");
    assert!(seen.contains("uri: /headers\n"), "{seen}");
}

#[test]
fn trusted_proxy_chain_is_extended() {
    let a = Upstream::start("a");
    let cfg = format!(
        "[global]\ntrusted_proxies = [\"127.0.0.0/8\"]\n{}",
        proxy_config(&format!("[upstream.app]\nservers = [\"{}\"]", a.addr()), "")
    );
    let r = Rampart::with_config(&cfg);
    let seen = Client::new(r.port)
        .get("/headers", &[("X-Forwarded-For", "6.6.6.6")])
        .text();
    assert!(
        seen.contains("x-forwarded-for: 6.6.6.6, 127.0.0.1\n"),
        "{seen}"
    );
    // Received forwarding fields that are not text (obs-text bytes) are not extended: each
    // starts again from this hop (and the values this proxy composes stay valid; debug
    // builds check every one).
    let seen = Client::new(r.port)
        .get(
            "/headers",
            &[
                ("X-Forwarded-For", "6.6.6.6, \u{e9}"),
                ("Forwarded", "for=6.6.6.6;by=\u{e9}"),
                ("Via", "1.0 \u{e9}"),
            ],
        )
        .text();
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(
        seen.contains("forwarded: for=127.0.0.1;proto=http;host="),
        "{seen}"
    );
    assert!(seen.contains("via: 1.1 rampart\n"), "{seen}");
    assert!(!seen.contains("6.6.6.6"), "{seen}");
}

#[test]
fn killing_a_server_under_load_loses_no_request_and_it_comes_back() {
    let mut ups: Vec<Upstream> = ["a", "b", "c"].iter().map(|n| Upstream::start(n)).collect();
    let list: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr())).collect();
    let up = format!(
        r#"[upstream.app]
servers = [{}]
health_check = {{ path = "/health", interval = "200ms", timeout = "1s", rise = 1, fall = 1 }}
passive_health = {{ max_fails = 1, cooldown = "1s" }}"#,
        list.join(", ")
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let port = r.port;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex2::default());
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut cl = Client::new(port);
                while !stop.load(Ordering::Relaxed) {
                    let resp = cl.get("/slow/5", &[]);
                    if resp.status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.push(format!("{} {}", resp.status, resp.text()));
                    }
                }
            })
        })
        .collect();
    let wait_ok = |n: u64| {
        let target = ok.load(Ordering::Relaxed) + n;
        let t = Instant::now();
        while ok.load(Ordering::Relaxed) < target && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_ok(200);
    ups[1].kill();
    let killed_at = ups[1].count();
    wait_ok(400);
    assert_eq!(ups[1].count(), killed_at, "a dead server gets nothing");
    ups[1].restart();
    // Back within a few health intervals.
    let t = Instant::now();
    while ups[1].count() == killed_at && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        ups[1].count() > killed_at,
        "restarted server gets traffic again"
    );
    wait_ok(200);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let failures = failed.take();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ups[0].count() > 0 && ups[2].count() > 0);
    // The state changes are exported.
    let metrics = get(r.admin_port, "/metrics", &[]).text();
    assert!(
        metrics.contains(&format!(
            "rampart_upstream_server_up{{upstream=\"app\",server=\"{}\"}} 1",
            ups[1].addr()
        )),
        "{metrics}"
    );
    assert!(metrics.contains("rampart_upstream_server_failures_total"));
}

#[derive(Default)]
struct Mutex2(std::sync::Mutex<Vec<String>>);
impl Mutex2 {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

#[test]
fn backup_takes_over_when_primaries_are_down_and_hands_back() {
    let mut a = Upstream::start("a");
    let mut b = Upstream::start("b");
    let bk = Upstream::start("backup");
    let up = format!(
        r#"[upstream.app]
servers = ["{}", "{}", {{ addr = "{}", backup = true }}]
health_check = {{ path = "/health", interval = "100ms", timeout = "1s", rise = 1, fall = 1 }}"#,
        a.addr(),
        b.addr(),
        bk.addr()
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let mut cl = Client::new(r.port);
    for _ in 0..10 {
        assert_ne!(upstream_name(&cl.get("/", &[])), "backup");
    }
    a.kill();
    b.kill();
    // Retries and health checks move traffic to the backup without a failed request.
    for _ in 0..20 {
        let resp = cl.get("/", &[]);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(upstream_name(&resp), "backup");
    }
    a.restart();
    b.restart();
    let t = Instant::now();
    let mut names = Vec::new();
    while t.elapsed() < Duration::from_secs(20) {
        names.push(upstream_name(&cl.get("/", &[])));
        if names.len() > 4 && names[names.len() - 4..].iter().all(|n| n != "backup") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        names[names.len() - 4..].iter().all(|n| n != "backup"),
        "failback: {names:?}"
    );
}

#[test]
fn consistent_hash_pins_keys_and_survives_a_down_server() {
    let ups: Vec<Upstream> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| Upstream::start(n))
        .collect();
    let list: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr())).collect();
    let up = format!(
        "[upstream.app]\nservers = [{}]\nbalance = \"hash\"\nhash_key = \"header:X-User\"",
        list.join(", ")
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let mut cl = Client::new(r.port);
    let mut first: HashMap<String, String> = HashMap::new();
    for k in 0..200 {
        let user = format!("user{k}");
        let n = upstream_name(&cl.get("/", &[("X-User", &user)]));
        first.insert(user, n);
    }
    // Same key, same server.
    for (user, n) in first.iter().take(50) {
        assert_eq!(&upstream_name(&cl.get("/", &[("X-User", user)])), n);
    }
    let used: std::collections::HashSet<&String> = first.values().collect();
    assert_eq!(used.len(), 4, "keys spread over all servers");
    // Take "b" out by config (reload): only b's keys move.
    let mut cfg_up = format!(
        "[upstream.app]\nservers = [{}, {{ addr = \"{}\", down = true }}, {}, {}]\nbalance = \"hash\"\nhash_key = \"header:X-User\"",
        list[0],
        ups[1].addr(),
        list[2],
        list[3]
    );
    cfg_up.push('\n');
    r.write_config(&proxy_config(&cfg_up, ""));
    let out = rampart(&["reload", "-c", r.config_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut moved = 0;
    for (user, n) in &first {
        let now = upstream_name(&cl.get("/", &[("X-User", user)]));
        if &now != n {
            assert_eq!(n, "b", "only keys of the removed server move");
            moved += 1;
        }
        assert_ne!(now, "b");
    }
    let on_b = first.values().filter(|n| *n == "b").count();
    assert_eq!(moved, on_b);
}

#[test]
fn load_aware_methods_share_equal_servers() {
    for method in ["least_conn", "least_time", "power_of_two"] {
        let fast = Upstream::start("fast");
        let slow = Upstream::start("slow");
        let up = format!(
            "[upstream.app]\nservers = [\"{}\", \"{}\"]\nbalance = \"{method}\"",
            fast.addr(),
            slow.addr()
        );
        let r = Rampart::with_config(&proxy_config(&up, ""));
        let port = r.port;
        // 8 concurrent clients over two equal servers: the load-aware methods share it.
        let handles: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut cl = Client::new(port);
                    for _ in 0..25 {
                        assert_eq!(cl.get("/slow/10", &[]).status, 200);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let (f, s) = (fast.count(), slow.count());
        assert_eq!(f + s, 200, "{method}");
        // Equal servers share the load.
        assert!(f > 40 && s > 40, "{method}: {f}/{s}");
    }
}

#[test]
fn least_conn_sends_new_requests_to_the_idle_server() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let up = format!(
        "[upstream.app]\nservers = [\"{}\", \"{}\"]\nbalance = \"least_conn\"",
        a.addr(),
        b.addr()
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let port = r.port;
    // Hold 3 long requests open; with least_conn they cannot all land on one server, and
    // the next short requests go to the one with fewer in flight.
    let long: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || Client::new(port).get("/slow/1500", &[])))
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let (la, lb) = (a.count(), b.count());
    assert_eq!(la + lb, 3);
    assert!(la >= 1 && lb >= 1, "{la}/{lb}");
    let busier_is_a = la > lb;
    let mut cl = Client::new(port);
    let next = upstream_name(&cl.get("/", &[]));
    assert_eq!(next, if busier_is_a { "b" } else { "a" });
    for h in long {
        assert_eq!(h.join().unwrap().status, 200);
    }
}

#[test]
fn sticky_cookie_pins_and_fails_over() {
    let mut ups: Vec<Upstream> = ["a", "b", "c"].iter().map(|n| Upstream::start(n)).collect();
    let list: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr())).collect();
    let up = format!(
        "[upstream.app]\nservers = [{}]\nsticky = {{ cookie = \"srv\", secret = \"k\" }}",
        list.join(", ")
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let mut cl = Client::new(r.port);
    let first = cl.get("/", &[]);
    let set = first
        .header("set-cookie")
        .expect("sticky cookie set")
        .to_string();
    assert!(set.starts_with("srv=") && set.contains("HttpOnly"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let pinned = upstream_name(&first);
    for _ in 0..10 {
        let resp = cl.get("/", &[("Cookie", &cookie)]);
        assert_eq!(upstream_name(&resp), pinned);
        assert_eq!(
            resp.header("set-cookie"),
            None,
            "no new cookie while pinned"
        );
    }
    // A forged cookie is ignored (and replaced).
    let forged = cl.get("/", &[("Cookie", "srv=3132372e302e302e313a31.0000")]);
    assert!(forged.header("set-cookie").is_some());
    // The pinned server dies: the request goes elsewhere and gets a new cookie.
    let i = ["a", "b", "c"].iter().position(|n| *n == pinned).unwrap();
    ups[i].kill();
    let resp = cl.get("/", &[("Cookie", &cookie)]);
    assert_eq!(resp.status, 200);
    assert_ne!(upstream_name(&resp), pinned);
    assert!(resp.header("set-cookie").is_some());
}

#[test]
fn canary_split_by_weight_and_header() {
    let stable = Upstream::start("stable");
    let canary = Upstream::start("canary");
    let cfg = format!(
        r#"
[upstream.stable]
servers = ["{}"]

[upstream.canary]
servers = ["{}"]

[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
prefix = "/"
split = [{{ upstream = "stable", weight = 95 }}, {{ upstream = "canary", weight = 5 }}]
split_rules = [{{ header = "X-Canary", value = "1", upstream = "canary" }}]
"#,
        stable.addr(),
        canary.addr()
    );
    let r = Rampart::with_config(&cfg);
    let mut cl = Client::new(r.port);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..10_000 {
        *counts.entry(upstream_name(&cl.get("/", &[]))).or_default() += 1;
    }
    let c = counts.get("canary").copied().unwrap_or(0);
    // 5% ± 2 points.
    assert!((300..=700).contains(&c), "{counts:?}");
    for _ in 0..20 {
        assert_eq!(upstream_name(&cl.get("/", &[("X-Canary", "1")])), "canary");
    }
}

#[test]
fn retries_on_chosen_status_and_budgeted() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let up = format!(
        "[upstream.app]\nservers = [\"{}\", \"{}\"]\nretry = {{ statuses = [503] }}",
        a.addr(),
        b.addr()
    );
    let r = Rampart::with_config(&proxy_config(&up, ""));
    let mut cl = Client::new(r.port);
    // Both answer 503 for /status/503: the request is tried on both, then the last 503 returns.
    let resp = cl.get("/status/503", &[]);
    assert_eq!(resp.status, 503);
    assert_eq!(a.count() + b.count(), 2, "tried once on each server");
    // POST is not idempotent: never retried on a status.
    let before = a.count() + b.count();
    let resp = cl.send("POST", "/status/503", &[], b"x");
    assert_eq!(resp.status, 503);
    assert_eq!(a.count() + b.count(), before + 1);
    // PUT is idempotent, and a small body that came with its head is kept whole, so it can
    // go to the other server too (a streamed body could not be replayed).
    let before = a.count() + b.count();
    let resp = cl.send("PUT", "/status/503", &[], b"small body");
    assert_eq!(resp.status, 503);
    assert_eq!(
        a.count() + b.count(),
        before + 2,
        "a small body is replayed"
    );
}

#[test]
fn errors_and_timeouts_map_to_502_504_and_503() {
    let a = Upstream::start("a");
    let dead = free_port();
    let cfg = format!(
        r#"
[upstream.app]
servers = ["{a}"]
read_timeout = "300ms"

[upstream.dead]
servers = ["127.0.0.1:{dead}"]

[upstream.tight]
servers = ["{a}"]
max_inflight = 1
max_queue = 0

[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
prefix = "/dead"
proxy = "dead"

[[server.route]]
prefix = "/tight"
proxy = "tight"
proxy_path = "/"

[[server.route]]
prefix = "/"
proxy = "app"
"#,
        a = a.addr()
    );
    let r = Rampart::with_config(&cfg);
    let port = r.port;
    let mut cl = Client::new(port);
    assert_eq!(cl.get("/dead", &[]).status, 502);
    let slow = cl.get("/slow/2000", &[]);
    assert_eq!(slow.status, 504, "{}", slow.text());
    assert_eq!(cl.get("/slow/10", &[]).status, 200);
    // In-flight limit 1, no queue: a second concurrent request gets 503 + Retry-After.
    let h = std::thread::spawn(move || Client::new(port).get("/tight/slow/1000", &[]));
    std::thread::sleep(Duration::from_millis(300));
    let busy = cl.get("/tight/", &[]);
    assert_eq!(busy.status, 503);
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(h.join().unwrap().status, 200);
}

#[test]
fn websocket_tunnel_echoes_both_ways() {
    let a = Upstream::start("a");
    let r = Rampart::with_config(&proxy_config(
        &format!("[upstream.app]\nservers = [\"{}\"]", a.addr()),
        "",
    ));
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second frame", &[0u8, 1, 2, 255]] {
        s.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
}

fn rss_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn gigabyte_upload_and_download_stream_with_flat_memory() {
    let a = Upstream::start("a");
    let r = Rampart::with_config(&proxy_config(
        &format!("[upstream.app]\nservers = [\"{}\"]", a.addr()),
        "max_body_size = \"2GiB\"",
    ));
    let pid = r.child.id();
    let gib: u64 = 1 << 30;
    // Download 1 GiB.
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET /bytes/{gib} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert!(total > gib, "got {total} bytes");
    // Upload 1 GiB through /echo (echoed back, read as it comes).
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let reader = s.try_clone().unwrap();
    let rd = std::thread::spawn(move || {
        let mut reader = reader;
        let mut total = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        total
    });
    write!(
        s,
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {gib}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'y'; 1 << 20];
    for _ in 0..1024 {
        s.write_all(&chunk).unwrap();
    }
    let got = rd.join().unwrap();
    assert!(got > gib, "echoed {got} bytes");
    let hwm = rss_hwm_kib(pid);
    assert!(hwm < 96 * 1024, "peak RSS {hwm} KiB for 2 GiB streamed");
}

#[test]
fn mirror_copies_a_share_and_never_answers() {
    let a = Upstream::start("a");
    let shadow = Upstream::start("shadow");
    let cfg = format!(
        r#"
[upstream.app]
servers = ["{}"]

[upstream.shadow]
servers = ["{}"]

[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
prefix = "/"
proxy = "app"
mirror = {{ upstream = "shadow", percent = 25 }}
"#,
        a.addr(),
        shadow.addr()
    );
    let r = Rampart::with_config(&cfg);
    let mut cl = Client::new(r.port);
    for _ in 0..200 {
        assert_eq!(upstream_name(&cl.get("/", &[])), "a");
    }
    let t = Instant::now();
    while shadow.count() < 50 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.count(), 200);
    assert_eq!(shadow.count(), 50);
}

#[test]
fn upstream_connections_are_reused() {
    let a = Upstream::start("a");
    let r = Rampart::with_config(&proxy_config(
        &format!("[upstream.app]\nservers = [\"{}\"]", a.addr()),
        "",
    ));
    let mut cl = Client::new(r.port);
    for _ in 0..300 {
        assert_eq!(cl.get("/", &[]).status, 200);
    }
    let conns = a.state.connections.load(Ordering::SeqCst);
    assert!(
        conns <= 2,
        "{conns} upstream connections for 300 sequential requests"
    );
}

#[test]
fn proxy_quick_command_and_config_errors() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let port = free_port();
    let mut child = std::process::Command::new(BIN)
        .args([
            "proxy",
            "--to",
            &format!("http://{},{}", a.addr(), b.addr()),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_port(port));
    let mut cl = Client::new(port);
    let names: Vec<String> = (0..4).map(|_| upstream_name(&cl.get("/", &[]))).collect();
    assert_eq!(names, ["a", "b", "a", "b"]);
    child.kill().unwrap();
    child.wait().unwrap();

    let out = rampart(&["proxy", "--to", "a:1", "--balance", "round_robn"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean round_robin"));

    let dir = TempDir::new("pxcfg");
    let p = dir.write(
        "r.toml",
        "[upstream.app]\nservers = [\"10.0.0.1\"]\nbalanse = \"hash\"\n\n[[server]]\nlisten = [\"127.0.0.1:1\"]\n[[server.route]]\nprefix = \"/\"\nproxy = \"ap\"\n",
    );
    let out = rampart(&["check", "-c", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("r.toml:3:1") && err.contains("balance"),
        "{err}"
    );
    assert!(err.contains("missing port"), "{err}");
    assert!(
        err.contains("no [upstream.ap]") && err.contains("app"),
        "{err}"
    );
}
