//! Real upstream HTTP servers for proxy tests: hyper on real TCP ports, started, killed and
//! restarted by the tests. Each answers with its name so tests can see where requests went.
//!
//! Paths: `/status/N` answers N; `/slow/MS` waits MS ms; `/echo` streams the request body
//! back; `/bytes/N` streams N bytes; `/headers` lists the request headers; `/ws` switches
//! protocols and echoes raw bytes; `/health` is 200 "ok" unless the server is set unhealthy;
//! `/setcookie/NAME=VALUE` sets a cookie. Anything else: 200 "NAME METHOD PATH".
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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
}

pub struct Upstream {
    pub port: u16,
    pub state: Arc<State>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        Self::start_on(name, super::free_port())
    }

    pub fn start_on(name: &str, port: u16) -> Upstream {
        let state = Arc::new(State {
            name: name.to_string(),
            requests: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            connections: AtomicU64::new(0),
        });
        let mut u = Upstream {
            port,
            state,
            rt: None,
        };
        u.restart();
        u
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                state.connections.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        self.rt = Some(rt);
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
    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(500);
        return resp
            .status(code)
            .body(full(format!("{name} status {code}")))
            .unwrap();
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(100))).await;
        return resp.body(full(format!("{name} slow"))).unwrap();
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
