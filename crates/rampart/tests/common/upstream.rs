//! Real upstream HTTP servers for proxy tests: hyper on real TCP ports, started, killed and
//! restarted by the tests. Each answers with its name so tests can see where requests went.
//!
//! Paths: `/status/N` answers N; `/slow/MS` waits MS ms; `/echo` streams the request body
//! back; `/bytes/N` streams N bytes; `/headers` lists the request headers; `/ws` switches
//! protocols and echoes raw bytes; `/health` is 200 "ok" unless the server is set unhealthy;
//! `/setcookie/NAME=VALUE` sets a cookie. Anything else: 200 "NAME METHOD PATH".
//! With `set_failing(true)` every path but `/health` answers 500.
//!
//! `/grpc` (HTTP/2 mode) echoes a gRPC request's body and ends with trailers `grpc-status: 0`,
//! `grpc-message: ok` (status 3 and the reason when the request lacks `te: trailers` or the
//! gRPC content type); `/trailers` echoes the request's trailers back as response trailers.
//!
//! Modes: TCP (default), HTTP/2 cleartext with prior knowledge only (`start_h2`: hyper's h2
//! server, as a gRPC server), a Unix socket (`start_unix`), and PROXY protocol (`start_proxied`):
//! each connection must begin with a PROXY v1 or v2 header, parsed here independently of
//! Rampart's own parser, and every response carries `x-proxy-client` with the source address
//! the header named (`local` for v2 LOCAL, `unknown` for v1 UNKNOWN).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Shared state of one upstream (survives kill/restart).
pub struct State {
    pub name: String,
    pub requests: AtomicU64,
    pub healthy: AtomicBool,
    pub connections: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Requests whose handler was dropped before it finished (the client side went away).
    pub cancelled: AtomicU64,
    /// Answer 500 to everything but `/health`.
    pub failing: AtomicBool,
    /// Connections must start with a PROXY header.
    pub proxied: bool,
    /// Connections refused because their PROXY header was missing or malformed.
    pub bad_proxy_headers: AtomicU64,
    /// The source of every PROXY header seen, in order.
    pub proxy_clients: Mutex<Vec<String>>,
    /// Speaks HTTP/2 (prior knowledge) only.
    pub h2: bool,
}

pub struct Upstream {
    pub port: u16,
    pub state: Arc<State>,
    /// Listen on this Unix socket instead of TCP.
    pub unix: Option<PathBuf>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        Self::start_on(name, super::free_port())
    }

    pub fn start_on(name: &str, port: u16) -> Upstream {
        Self::build(name, port, None, false)
    }

    /// Listens on a Unix socket at `path` (its address is `unix:PATH`).
    pub fn start_unix(name: &str, path: PathBuf) -> Upstream {
        Self::build(name, 0, Some(path), false)
    }

    /// Requires a PROXY protocol header (v1 or v2) on every connection.
    pub fn start_proxied(name: &str) -> Upstream {
        Self::build(name, super::free_port(), None, true)
    }

    /// Speaks HTTP/2 cleartext (prior knowledge) only, as gRPC servers do.
    pub fn start_h2(name: &str) -> Upstream {
        Self::build_with(name, super::free_port(), None, false, true)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    fn build(name: &str, port: u16, unix: Option<PathBuf>, proxied: bool) -> Upstream {
        Self::build_with(name, port, unix, proxied, false)
    }

    fn build_with(
        name: &str,
        port: u16,
        unix: Option<PathBuf>,
        proxied: bool,
        h2: bool,
    ) -> Upstream {
        let state = Arc::new(State {
            name: name.to_string(),
            requests: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            proxied,
            bad_proxy_headers: AtomicU64::new(0),
            proxy_clients: Mutex::new(Vec::new()),
            h2,
        });
        let mut u = Upstream {
            port,
            state,
            unix,
            rt: None,
        };
        u.restart();
        u
    }

    pub fn addr(&self) -> String {
        match &self.unix {
            Some(p) => format!("unix:{}", p.display()),
            None => format!("127.0.0.1:{}", self.port),
        }
    }

    pub fn cancelled(&self) -> u64 {
        self.state.cancelled.load(Ordering::SeqCst)
    }

    pub fn set_failing(&self, on: bool) {
        self.state.failing.store(on, Ordering::SeqCst);
    }

    pub fn proxy_clients(&self) -> Vec<String> {
        self.state.proxy_clients.lock().unwrap().clone()
    }

    pub fn count(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn set_healthy(&self, up: bool) {
        self.state.healthy.store(up, Ordering::SeqCst);
    }

    /// Stops it hard: the listener and every open connection close.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_millis(100));
        }
    }

    /// (Re)starts it on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        if let Some(path) = self.unix.clone() {
            let _ = std::fs::remove_file(&path);
            let listener = {
                let _g = rt.enter();
                tokio::net::UnixListener::bind(&path).unwrap()
            };
            let state = self.state.clone();
            rt.spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    state.connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(state.clone(), stream, None));
                }
            });
            self.rt = Some(rt);
            return;
        }
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let listener = {
            let _g = rt.enter();
            // The port may still be in TIME_WAIT use from the killed instance: retry briefly.
            let mut tries = 0;
            loop {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.set_reuseaddr(true).unwrap();
                if sock.bind(addr).is_ok() {
                    break sock.listen(1024).unwrap();
                }
                tries += 1;
                assert!(tries < 100, "cannot bind upstream port {}", self.port);
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let state = self.state.clone();
        rt.spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                state.connections.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                tokio::spawn(async move {
                    let client = if state.proxied {
                        match read_proxy_header(&mut stream).await {
                            Some(c) => {
                                state.proxy_clients.lock().unwrap().push(c.clone());
                                Some(c)
                            }
                            None => {
                                state.bad_proxy_headers.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        }
                    } else {
                        None
                    };
                    serve(state, stream, client).await;
                });
            }
        });
        self.rt = Some(rt);
    }
}

async fn serve<S>(state: Arc<State>, stream: S, client: Option<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    state.open.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(state.clone());
    let h2 = state.h2;
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let client = client.clone();
        async move {
            let mut resp = handle(state, req).await;
            if let Some(c) = client {
                resp.headers_mut()
                    .insert("x-proxy-client", c.parse().unwrap());
            }
            Ok::<_, Infallible>(resp)
        }
    });
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), svc)
            .await;
        return;
    }
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
        .await;
}

/// Reads a PROXY v1 or v2 header (HAProxy's spec) byte-exactly; `None` when malformed.
async fn read_proxy_header(s: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    const SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
    let mut first = [0u8; 12];
    s.read_exact(&mut first[..6]).await.ok()?;
    if &first[..6] == b"PROXY " {
        let mut line = b"PROXY ".to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() > 107 {
                return None;
            }
            line.push(s.read_u8().await.ok()?);
        }
        let text = std::str::from_utf8(&line[6..line.len() - 2]).ok()?;
        let parts: Vec<&str> = text.split(' ').collect();
        return match parts.as_slice() {
            ["UNKNOWN", ..] => Some("unknown".into()),
            [fam, src, _dst, sport, _dport] if *fam == "TCP4" || *fam == "TCP6" => {
                let ip: IpAddr = src.parse().ok()?;
                let port: u16 = sport.parse().ok()?;
                Some(SocketAddr::new(ip, port).to_string())
            }
            _ => None,
        };
    }
    s.read_exact(&mut first[6..]).await.ok()?;
    if &first != SIG {
        return None;
    }
    let mut hdr = [0u8; 4];
    s.read_exact(&mut hdr).await.ok()?;
    let len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest).await.ok()?;
    if hdr[0] >> 4 != 2 {
        return None;
    }
    match (hdr[0] & 0xf, hdr[1]) {
        (0, _) => Some("local".into()),
        (1, 0x11) if len >= 12 => {
            let ip = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            let port = u16::from_be_bytes([rest[8], rest[9]]);
            Some(SocketAddr::new(ip.into(), port).to_string())
        }
        (1, 0x21) if len >= 36 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&rest[..16]);
            let port = u16::from_be_bytes([rest[32], rest[33]]);
            Some(SocketAddr::new(Ipv6Addr::from(b).into(), port).to_string())
        }
        _ => None,
    }
}

struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a request as cancelled when its handler is dropped before finishing.
struct CancelGuard(Option<Arc<State>>);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

async fn handle(state: Arc<State>, mut req: Request<Incoming>) -> Response<BoxBody> {
    let path = req.uri().path().to_string();
    if path == "/health" {
        let ok = state.healthy.load(Ordering::SeqCst);
        return Response::builder()
            .status(if ok { 200 } else { 503 })
            .body(full(if ok { "ok" } else { "sick" }))
            .unwrap();
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let name = state.name.clone();
    let resp = Response::builder().header("x-upstream", name.as_str());
    if state.failing.load(Ordering::SeqCst) {
        return resp
            .status(500)
            .body(full(format!("{name} failing")))
            .unwrap();
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(500);
        return resp
            .status(code)
            .body(full(format!("{name} status {code}")))
            .unwrap();
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        let mut guard = CancelGuard(Some(state.clone()));
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(100))).await;
        guard.0 = None;
        return resp.body(full(format!("{name} slow"))).unwrap();
    }
    if path == "/grpc" {
        let te_ok = req.headers().get("te").is_some_and(|v| v == "trailers");
        let ct_ok = req
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let msg = req.into_body().collect().await.map(|b| b.to_bytes());
        let (status, why, data) = match (te_ok, ct_ok, msg) {
            (true, true, Ok(m)) => ("0", "ok".to_string(), m),
            (te, ct, m) => (
                "3",
                format!("te {te} content-type {ct} body {}", m.is_ok()),
                Bytes::new(),
            ),
        };
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", status.parse().unwrap());
        trailers.insert("grpc-message", why.parse().unwrap());
        let frames = vec![
            Ok::<_, std::io::Error>(Frame::data(data)),
            Ok(Frame::trailers(trailers)),
        ];
        return resp
            .header("content-type", "application/grpc")
            .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
            .unwrap();
    }
    if path == "/trailers" {
        let mut body = req.into_body();
        let mut frames = Vec::new();
        while let Some(Ok(f)) = body.frame().await {
            frames.push(Ok::<_, std::io::Error>(f));
        }
        return resp
            .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
            .unwrap();
    }
    if path == "/echo" {
        let body = req.into_body().map_err(std::io::Error::other).boxed();
        return resp.body(body).unwrap();
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let mut left: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 << 10]);
        let stream = futures_util::stream::poll_fn(move |_| {
            if left == 0 {
                return std::task::Poll::Ready(None);
            }
            let n = left.min(chunk.len() as u64);
            left -= n;
            std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(Frame::data(
                chunk.slice(..n as usize),
            ))))
        });
        return resp.body(StreamBody::new(stream).boxed()).unwrap();
    }
    if path.ends_with("/headers") {
        let mut s = String::new();
        for (n, v) in req.headers() {
            s.push_str(&format!("{n}: {}\n", v.to_str().unwrap_or("?")));
        }
        s.push_str(&format!("uri: {}\n", req.uri()));
        return resp
            .header("connection", "x-hop")
            .header("x-hop", "must-not-pass")
            .header("keep-alive", "timeout=5")
            .body(full(s))
            .unwrap();
    }
    if let Some(n) = path.strip_prefix("/bigheader/") {
        let n: usize = n.parse().unwrap_or(0);
        return resp
            .header("x-big", "b".repeat(n))
            .body(full(format!("{name} big header")))
            .unwrap();
    }
    if let Some(c) = path.strip_prefix("/setcookie/") {
        return resp
            .header("set-cookie", format!("{c}; Path=/"))
            .body(full(format!("{name} set")))
            .unwrap();
    }
    if path == "/ws" && req.headers().contains_key("upgrade") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return resp
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .body(full(""))
            .unwrap();
    }
    let q = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    resp.body(full(format!("{name} {} {path}{q}", req.method())))
        .unwrap()
}
