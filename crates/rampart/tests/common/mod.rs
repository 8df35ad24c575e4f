//! Test harness: starts the real `rampart` binary on free ports and talks to it with raw TCP
//! (exact bytes), curl (a real client, HTTP/2) and small helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod upstream;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// A free TCP port on 127.0.0.1, taken from 15000–26999: below Linux's ephemeral range
/// (32768+), so no outgoing connection of a concurrent test can be holding it by the time the
/// server binds (asking the kernel for port 0 hands out ephemeral ports, which raced). Each test
/// process starts at its own offset and walks on; a port that binds now is returned.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const BASE: u32 = 15_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(997) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (BASE + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("rampart-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running rampart process; killed on drop.
pub struct Rampart {
    pub child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub dir: TempDir,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
    pub config_path: PathBuf,
}

fn pump(r: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut br = BufReader::new(r);
        let mut line = String::new();
        while br.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            into.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
}

pub fn wait_port(port: u16) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Rampart {
    /// Starts `rampart run -c FILE` with `config`, where `{port}`, `{admin}` and `{dir}` are
    /// replaced by a free port, a free admin port and the temp dir.
    pub fn with_config(config: &str) -> Rampart {
        let dir = TempDir::new("cfg");
        Self::with_config_in(dir, config)
    }

    pub fn with_config_in(dir: TempDir, config: &str) -> Rampart {
        let port = free_port();
        let admin_port = free_port();
        let text = render(config, port, admin_port, dir.path());
        let has_admin = text.contains(&format!(":{admin_port}\""));
        let config_path = dir.path().join("rampart.toml");
        std::fs::write(&config_path, text).unwrap();
        let child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&config_path)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let r = Self::started(child, port, admin_port, dir, config_path);
        // The admin listener starts after the main ones: wait for it too when configured.
        if has_admin {
            wait_port(admin_port);
        }
        r
    }

    /// Starts `cmd` (stdout and stderr captured) and waits until it listens on `port`: for
    /// command lines the helpers above do not build (no arguments, a wrapper such as `taskset`).
    pub fn start(mut cmd: Command, port: u16, dir: TempDir) -> Rampart {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let config_path = dir.path().join("rampart.toml");
        Self::started(child, port, 0, dir, config_path)
    }

    /// Starts `rampart serve DIR --listen 127.0.0.1:PORT ARGS…`.
    pub fn serve(dir: TempDir, args: &[&str]) -> Rampart {
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .arg(dir.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self::started(child, port, 0, dir, PathBuf::new())
    }

    fn started(
        mut child: Child,
        port: u16,
        admin_port: u16,
        dir: TempDir,
        config_path: PathBuf,
    ) -> Rampart {
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        pump(child.stdout.take().unwrap(), stdout.clone());
        pump(child.stderr.take().unwrap(), stderr.clone());
        let mut r = Rampart {
            child,
            port,
            admin_port,
            dir,
            stdout,
            stderr,
            config_path,
        };
        let t = Instant::now();
        // Ready once this child said it listens on the port: it logs that after binding, so
        // the kernel queues connections from then on. Not a probe connection: one would
        // answer from another test process's server on a port taken meanwhile, and it counts
        // against per-address connection limits until the server sees it close.
        let listening = format!("listening local=127.0.0.1:{port}");
        while !(r.stderr().contains(&listening) || r.stdout().contains(&listening)) {
            let exited = r.child.try_wait().ok().flatten().is_some();
            if exited || t.elapsed() > Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(100));
                panic!("rampart did not start: {}", r.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        r
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Rewrites the config file (same placeholders) without reloading.
    pub fn write_config(&self, config: &str) {
        std::fs::write(
            &self.config_path,
            render(config, self.port, self.admin_port, self.dir.path()),
        )
        .unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Polls until `f` holds on stdout (access logs are flushed on a short tick).
    pub fn wait_stdout(&self, f: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let s = self.stdout();
            if f(&s) || t.elapsed() > Duration::from_secs(10) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Rampart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn render(config: &str, port: u16, admin: u16, dir: &Path) -> String {
    config
        .replace("{port}", &port.to_string())
        .replace("{admin}", &admin.to_string())
        .replace("{dir}", &dir.display().to_string())
}

/// A parsed HTTP/1.x response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response from a buffered stream (Content-Length, chunked, or to EOF).
/// Reads a message head up to its blank line (the blank line not included); `None` when
/// the peer closes first.
pub fn read_head(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some(head);
        }
        head.push_str(&line);
    }
}

pub fn read_response(r: &mut BufReader<TcpStream>, head_request: bool) -> Option<Resp> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return if head.is_empty() {
                None
            } else {
                Some(parse_head(&head, vec![]))
            };
        }
        if line == "\r\n" {
            if head.starts_with("HTTP/1.1 100") {
                head.clear();
                continue;
            }
            break;
        }
        head.push_str(&line);
    }
    let mut resp = parse_head(&head, vec![]);
    if head_request || resp.status == 204 || resp.status == 304 {
        return Some(resp);
    }
    if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0; len];
        r.read_exact(&mut body).ok()?;
        resp.body = body;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).ok()?;
            let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
            if size == 0 {
                let mut end = String::new();
                r.read_line(&mut end).ok()?;
                break;
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..size]);
        }
        resp.body = body;
    } else {
        let mut body = Vec::new();
        let _ = r.read_to_end(&mut body);
        resp.body = body;
    }
    Some(resp)
}

fn parse_head(head: &str, body: Vec<u8>) -> Resp {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        head: head.to_string(),
        headers,
        body,
    }
}

/// Sends raw bytes on a new connection and reads one response.
pub fn raw(port: u16, request: &[u8]) -> Resp {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(request).unwrap();
    let mut r = BufReader::new(s);
    let head_req = request.starts_with(b"HEAD ");
    read_response(&mut r, head_req)
        .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(request)))
}

/// Sends raw bytes and returns everything until the server closes (checks that it does close).
pub fn raw_until_close(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("server should close the connection");
    out
}

/// GET with extra headers (`Connection: close`).
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(port, "GET", path, headers)
}

pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str("Host: localhost\r\n");
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    raw(port, req.as_bytes())
}

/// Runs curl with arguments; returns its output.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-s", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl must be installed")
}

/// Runs the binary with arguments and collects its output.
pub fn rampart(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// A keep-alive HTTP/1.1 client on one connection (reconnects when the server closes).
pub struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client { port, conn: None }
    }

    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send("GET", path, headers, b"")
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        for attempt in 0..2 {
            if self.conn.is_none() {
                let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                self.conn = Some(BufReader::new(s));
            }
            let c = self.conn.as_mut().unwrap();
            let ok = c.get_mut().write_all(req.as_bytes()).is_ok()
                && c.get_mut().write_all(body).is_ok();
            if ok {
                if let Some(r) = read_response(c, method == "HEAD") {
                    if r.header("connection") == Some("close") {
                        self.conn = None;
                    }
                    return r;
                }
            }
            self.conn = None;
            assert!(attempt == 0, "no response for {method} {path}");
        }
        unreachable!()
    }
}

/// A config with the admin listener, `upstream` (TOML for one or more `[upstream.…]` groups,
/// one named `app`) and one server whose `/` route proxies to `app` (plus `route_extra`).
pub fn proxy_config(upstream: &str, route_extra: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{{admin}}"

{upstream}

[[server]]
listen = ["127.0.0.1:{{port}}"]
access_log = {{ path = "off" }}

[[server.route]]
prefix = "/"
proxy = "app"
{route_extra}
"#
    )
}
