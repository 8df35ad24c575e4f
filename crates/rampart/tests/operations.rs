//! Operations: access logs, metrics, admin API, reload (signal, admin, CLI), graceful stop, and
//! the zero-loss reload under load.
#![allow(clippy::unwrap_used)]
mod common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn cfg(body: &str, log_format: &str) -> String {
    format!(
        r#"
[global]
pid_file = "{{dir}}/rampart.pid"
drain_timeout = "20s"

[admin]
listen = "127.0.0.1:{{admin}}"

[[server]]
listen = ["127.0.0.1:{{port}}"]
server_names = ["ops.test"]
access_log = {{ format = "{log_format}", path = "{{dir}}/access.log" }}

[[server.route]]
prefix = "/files/"
alias = "{{dir}}/files"

[[server.route]]
prefix = "/"
return = {{ status = 200, body = "{body}" }}
"#
    )
}

fn new_dir() -> TempDir {
    let d = TempDir::new("ops");
    d.write("files/big.bin", vec![7u8; 32 << 20]);
    d
}

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

fn read_log(r: &Rampart) -> String {
    std::fs::read_to_string(r.dir.path().join("access.log")).unwrap_or_default()
}

#[test]
fn combined_access_log_with_request_id_and_reopen_on_usr1() {
    let r = Rampart::with_config_in(new_dir(), &cfg("hello", "combined"));
    let resp = get(
        r.port,
        "/path?q=1",
        &[
            ("User-Agent", "tester/1.0"),
            ("Referer", "http://ref/"),
            ("X-Request-Id", "rid-1"),
        ],
    );
    assert_eq!(resp.status, 200);
    assert!(wait_for(|| read_log(&r).contains("rid-1")));
    let line = read_log(&r);
    assert!(
        line.contains("\"GET /path?q=1 HTTP/1.1\" 200 5 \"http://ref/\" \"tester/1.0\" \"rid-1\""),
        "{line}"
    );
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    // Rotation: move the file away, USR1, new lines go to a new file.
    std::fs::rename(
        r.dir.path().join("access.log"),
        r.dir.path().join("access.log.1"),
    )
    .unwrap();
    r.signal("USR1");
    std::thread::sleep(Duration::from_millis(300));
    get(r.port, "/after", &[("X-Request-Id", "rid-2")]);
    assert!(
        wait_for(|| read_log(&r).contains("rid-2")),
        "new file gets the new line"
    );
    let old = std::fs::read_to_string(r.dir.path().join("access.log.1")).unwrap();
    assert!(!old.contains("rid-2"));
}

#[test]
fn json_access_log() {
    let r = Rampart::with_config_in(new_dir(), &cfg("hello", "json"));
    get(
        r.port,
        "/j",
        &[("Host", "ops.test"), ("X-Request-Id", "rid-j")],
    );
    assert!(wait_for(|| read_log(&r).contains("rid-j")));
    let log = read_log(&r);
    let v: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["uri"], "/j");
    assert_eq!(v["host"], "ops.test");
    assert_eq!(v["server"], "ops.test");
    assert_eq!(v["route"], "/");
    assert_eq!(v["bytes"], 5);
    assert_eq!(v["request_id"], "rid-j");
}

#[test]
fn metrics_and_config_endpoints() {
    let r = Rampart::with_config_in(new_dir(), &cfg("hello", "combined"));
    for _ in 0..3 {
        get(r.port, "/m", &[]);
    }
    get(r.port, "/files/missing", &[]);
    let m = get(r.admin_port, "/metrics", &[]).text();
    assert!(
        m.contains("rampart_requests_total{server=\"ops.test\",route=\"/\",status=\"200\"} 3"),
        "{m}"
    );
    assert!(
        m.contains(
            "rampart_requests_total{server=\"ops.test\",route=\"/files/\",status=\"404\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("rampart_request_duration_seconds_count{server=\"ops.test\",route=\"/\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("rampart_response_bytes_total{server=\"ops.test\",route=\"/\"} 15"),
        "{m}"
    );
    assert!(
        m.contains(
            "rampart_request_duration_seconds_bucket{server=\"ops.test\",route=\"/\",le=\"+Inf\"} 3"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "rampart_request_duration_seconds_bucket{server=\"ops.test\",route=\"/\",le=\"0."
        ),
        "{m}"
    );
    assert!(m.contains("rampart_open_connections "), "{m}");
    let c = get(r.admin_port, "/config", &[]);
    assert_eq!(c.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(v["server"][0]["server_names"][0], "ops.test");
    assert_eq!(get(r.admin_port, "/nope", &[]).status, 404);
}

#[test]
fn reload_by_signal_admin_and_cli_keeps_old_config_when_invalid() {
    let mut r = Rampart::with_config_in(new_dir(), &cfg("v1", "combined"));
    assert_eq!(get(r.port, "/", &[]).text(), "v1");
    // SIGHUP with a new valid config.
    r.write_config(&cfg("v2", "combined"));
    r.signal("HUP");
    assert!(wait_for(|| get(r.port, "/", &[]).text() == "v2"));
    // An invalid config is refused; the old one keeps serving; the error names file:line.
    r.write_config(&cfg("v3", "combined").replace("prefix = \"/\"", "prefx = \"/\""));
    r.signal("HUP");
    assert!(wait_for(|| r.stderr().contains("reload refused")));
    assert!(r.stderr().contains("unknown key `prefx`"), "{}", r.stderr());
    assert_eq!(get(r.port, "/", &[]).text(), "v2");
    // `rampart reload` validates locally first and reports the error.
    let o = rampart(&["reload", "-c", r.config_path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean `prefix`"));
    // …and applies a valid one through the admin API.
    r.write_config(&cfg("v4", "combined"));
    let o = rampart(&["reload", "-c", r.config_path.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("reloaded"));
    assert_eq!(get(r.port, "/", &[]).text(), "v4");
    // Listeners follow the config: add a second port, then remove it.
    let extra = free_port();
    let two = cfg("v5", "combined").replace(
        "listen = [\"127.0.0.1:{port}\"]",
        &format!("listen = [\"127.0.0.1:{{port}}\", \"127.0.0.1:{extra}\"]"),
    );
    r.write_config(&two);
    r.signal("HUP");
    assert!(wait_for(|| TcpStream::connect(("127.0.0.1", extra)).is_ok()));
    assert_eq!(get(extra, "/", &[]).text(), "v5");
    r.write_config(&cfg("v6", "combined"));
    r.signal("HUP");
    assert!(wait_for(
        || TcpStream::connect(("127.0.0.1", extra)).is_err()
    ));
    assert_eq!(get(r.port, "/", &[]).text(), "v6");
    let m = get(r.admin_port, "/metrics", &[]).text();
    assert!(
        m.contains("rampart_reloads_total{result=\"failed\"} 1"),
        "{m}"
    );
    // SIGTERM: clean exit, pid file removed.
    r.signal("TERM");
    assert_eq!(r.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!r.dir.path().join("rampart.pid").exists());
}

#[test]
fn sigterm_finishes_in_flight_downloads() {
    finishes_in_flight_download_on("TERM");
}

#[test]
fn sigint_finishes_in_flight_downloads() {
    finishes_in_flight_download_on("INT");
}

/// `sig` stops accepting, lets a download in flight finish, then exits 0.
fn finishes_in_flight_download_on(sig: &str) {
    let mut r = Rampart::with_config_in(new_dir(), &cfg("x", "combined"));
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut br = BufReader::new(s);
    let mut line = String::new();
    br.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"));
    // Read a little, then ask the server to stop while most of the body is still to come.
    let mut head = String::new();
    loop {
        let mut l = String::new();
        br.read_line(&mut l).unwrap();
        if l == "\r\n" {
            break;
        }
        head.push_str(&l);
    }
    let mut first = vec![0u8; 1 << 20];
    br.read_exact(&mut first).unwrap();
    r.signal(sig);
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused while the download goes on.
    assert!(TcpStream::connect(("127.0.0.1", r.port)).is_err());
    let mut rest = Vec::new();
    br.read_to_end(&mut rest).unwrap();
    assert_eq!(
        first.len() + rest.len(),
        32 << 20,
        "the whole body arrived; server log:\n{}",
        r.stderr()
    );
    assert!(rest.iter().all(|b| *b == 7));
    assert_eq!(r.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!r.dir.path().join("rampart.pid").exists());
}

/// Without an admin listener, `rampart reload` signals the pid in `global.pid_file`; a config
/// that fails a semantic check on SIGHUP (a missing directory) is refused and the old one kept.
#[test]
fn reload_command_signals_through_the_pid_file_without_admin() {
    let no_admin =
        |body: &str| cfg(body, "combined").replace("[admin]\nlisten = \"127.0.0.1:{admin}\"\n", "");
    assert!(!no_admin("p").contains("[admin]"));
    let r = Rampart::with_config_in(new_dir(), &no_admin("p1"));
    assert_eq!(get(r.port, "/", &[]).text(), "p1");
    r.write_config(&no_admin("p2"));
    let o = rampart(&["reload", "-c", r.config_path.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("sent SIGHUP to {}", r.child.id())
    );
    assert!(wait_for(|| get(r.port, "/", &[]).text() == "p2"));
    // `rampart reload` checks semantics first (exit 1, nothing signalled)…
    let missing = no_admin("p3").replace("{dir}/files", "{dir}/no-such-dir");
    r.write_config(&missing);
    let o = rampart(&["reload", "-c", r.config_path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-dir"));
    // …and so does the instance on a bare SIGHUP: it logs why and keeps serving the old one.
    r.signal("HUP");
    assert!(wait_for(|| r.stderr().contains("reload refused")));
    assert!(r.stderr().contains("no-such-dir"), "{}", r.stderr());
    assert_eq!(get(r.port, "/", &[]).text(), "p2");
}

#[test]
fn config_endpoint_redacts_secrets() {
    let r = Rampart::with_config(
        r#"
[admin]
listen = "127.0.0.1:{admin}"

[upstream.app]
servers = ["127.0.0.1:9"]
sticky = { cookie = "srv", secret = "sticky-signing-key" }

[[server]]
listen = ["127.0.0.1:{port}"]
server_names = ["redact.test"]

[[server.route]]
prefix = "/"
proxy = "app"
proxy_request_headers = { add = { "Authorization" = "Bearer upstream-token-123", "X-Api-Key" = "api-key-456", "X-Env" = "visible" } }
"#,
    );
    let c = get(r.admin_port, "/config", &[]);
    assert_eq!(c.status, 200);
    let text = c.text();
    for secret in ["sticky-signing-key", "upstream-token-123", "api-key-456"] {
        assert!(!text.contains(secret), "{secret} in /config: {text}");
    }
    let v: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
    assert_eq!(v["upstream"]["app"]["sticky"]["secret"], "<redacted>");
    // What is not secret stays readable.
    assert_eq!(v["upstream"]["app"]["sticky"]["cookie"], "srv");
    assert_eq!(v["server"][0]["server_names"][0], "redact.test");
    assert!(text.contains("\"visible\""), "{text}");
}

#[test]
fn access_log_goes_to_stdout_by_default() {
    let r = Rampart::with_config(
        "[[server]]\nlisten = [\"127.0.0.1:{port}\"]\n[[server.route]]\nreturn = { status = 200, body = \"hi\" }\n",
    );
    get(r.port, "/to-stdout", &[("X-Request-Id", "rid-stdout")]);
    let out = r.wait_stdout(|s| s.contains("rid-stdout"));
    assert!(
        out.contains("\"GET /to-stdout HTTP/1.1\" 200 2 \"-\" \"-\" \"rid-stdout\""),
        "{out}"
    );
}

#[test]
fn diagnostic_log_level_is_configurable() {
    let base = "[[server]]\nlisten = [\"127.0.0.1:{port}\"]\naccess_log = { path = \"off\" }\n[[server.route]]\nreturn = { status = 200, body = \"hi\" }\n";
    let info = Rampart::with_config(base);
    let debug = Rampart::with_config(&format!("[global]\nlog_level = \"debug\"\n{base}"));
    for r in [&info, &debug] {
        let out = raw_until_close(r.port, b"GARBAGE\r\n\r\n");
        assert!(out.starts_with(b"HTTP/1.1 400"));
    }
    assert!(
        wait_for(|| debug.stderr().contains("bad request head")),
        "{}",
        debug.stderr()
    );
    assert!(
        !info.stderr().contains("bad request head"),
        "{}",
        info.stderr()
    );
}

/// The issue's acceptance test: under wrk load, a reload every second for 20 s loses nothing.
#[test]
fn reload_every_second_under_load_loses_zero_requests() {
    let extra = free_port();
    let mut r = Rampart::with_config_in(new_dir(), &cfg("gen0", "json"));
    let url = r.url("/");
    let wrk = Command::new("wrk")
        .args(["-t1", "-c32", "-d20s", "--latency", &url])
        .output_async();
    // HTTP/2 clients (h2c prior knowledge) at the same time.
    let h2 = Command::new("h2load")
        .args(["-c8", "-m10", "-D", "20", &url])
        .output_async();
    for i in 1..=20 {
        std::thread::sleep(Duration::from_secs(1));
        // Alternate: plain body change, and a change that also adds/removes a listener.
        let mut c = cfg(&format!("gen{i}"), "json");
        if i % 2 == 0 {
            c = c.replace(
                "listen = [\"127.0.0.1:{port}\"]",
                &format!("listen = [\"127.0.0.1:{{port}}\", \"127.0.0.1:{extra}\"]"),
            );
        }
        r.write_config(&c);
        r.signal("HUP");
        // Signals sent while a reload runs coalesce into one: wait until this one is applied
        // (on a loaded machine a reload can take longer than the second between signals).
        let want = format!("rampart_reloads_total{{result=\"ok\"}} {i}\n");
        let t = std::time::Instant::now();
        while !get(r.admin_port, "/metrics", &[]).text().contains(&want)
            && t.elapsed() < Duration::from_secs(15)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let out = wrk.wait();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let requests: u64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 1000, "wrk ran: {text}");
    assert!(
        !text.contains("Socket errors"),
        "socket errors during reloads: {text}"
    );
    assert!(
        !text.contains("Non-2xx"),
        "failed responses during reloads: {text}"
    );
    let h2out = h2.wait();
    let h2text = String::from_utf8_lossy(&h2out.stdout).to_string();
    let line = h2text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_default()
        .to_string();
    // "requests: N total, N started, N done, N succeeded, 0 failed, 0 errored, 0 timeout"
    assert!(
        line.contains(" 0 failed, 0 errored, 0 timeout"),
        "h2load: {h2text}"
    );
    let succeeded: u64 = line
        .split(", ")
        .find(|p| p.ends_with("succeeded"))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(succeeded > 1000, "h2load ran: {h2text}");
    let m = get(r.admin_port, "/metrics", &[]).text();
    assert!(m.contains("rampart_reloads_total{result=\"ok\"} 20"), "{m}");
    assert!(
        m.contains("rampart_reloads_total{result=\"failed\"} 0"),
        "{m}"
    );
    assert_eq!(get(r.port, "/", &[]).text(), "gen20");
    r.signal("TERM");
    assert_eq!(r.wait_exit(Duration::from_secs(20)), Some(0));
}

trait OutputAsync {
    fn output_async(&mut self) -> AsyncOutput;
}
struct AsyncOutput(std::thread::JoinHandle<std::process::Output>);
impl AsyncOutput {
    fn wait(self) -> std::process::Output {
        self.0.join().unwrap()
    }
}
impl OutputAsync for Command {
    fn output_async(&mut self) -> AsyncOutput {
        let child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("wrk must be installed (scripts/test.sh installs it)");
        AsyncOutput(std::thread::spawn(move || {
            child.wait_with_output().unwrap()
        }))
    }
}

/// Each server has its own access log: its own file and format.
#[test]
fn access_log_per_server() {
    let r = Rampart::with_config(
        r#"
[[server]]
listen = ["127.0.0.1:{port}"]
server_names = ["one.test"]
access_log = { format = "combined", path = "{dir}/one.log" }
[[server.route]]
return = { status = 200, body = "one" }

[[server]]
listen = ["127.0.0.1:{port}"]
server_names = ["two.test"]
access_log = { format = "json", path = "{dir}/two.log" }
[[server.route]]
return = { status = 200, body = "two" }
"#,
    );
    get(
        r.port,
        "/a",
        &[("Host", "one.test"), ("X-Request-Id", "rid-one")],
    );
    get(
        r.port,
        "/b",
        &[("Host", "two.test"), ("X-Request-Id", "rid-two")],
    );
    let read = |f: &str| std::fs::read_to_string(r.dir.path().join(f)).unwrap_or_default();
    assert!(wait_for(|| read("one.log").contains("rid-one")));
    assert!(wait_for(|| read("two.log").contains("rid-two")));
    let one = read("one.log");
    assert!(one.contains("\"GET /a HTTP/1.1\" 200 3 "), "{one}");
    assert!(!one.contains("rid-two"), "{one}");
    let two = read("two.log");
    assert!(!two.contains("rid-one"), "{two}");
    let v: serde_json::Value = serde_json::from_str(two.lines().last().unwrap()).unwrap();
    assert_eq!(
        (v["uri"].as_str(), v["server"].as_str()),
        (Some("/b"), Some("two.test"))
    );
}
