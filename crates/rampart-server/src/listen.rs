//! Listening sockets: bind, accept under a connection limit, and the set of listeners that a
//! reload grows or shrinks without touching the ones that stay.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::conn::{self, ConnInfo, ConnSettings, HttpService};

/// Binding a listen address failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub source: io::Error,
}

/// Binds a listening socket the way a server should: SO_REUSEADDR, IPv6-only for `[::]` so that
/// `0.0.0.0` can be bound beside it, a deep backlog.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let err = |source| BindError { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The live listeners of the process, shared by all of them: one connection limit, one drain
/// signal, the current connection settings.
pub struct Listeners<S: HttpService> {
    service: Arc<S>,
    settings: Arc<ArcSwap<ConnSettings>>,
    conn_limit: Arc<Semaphore>,
    max_conns: usize,
    drain_tx: watch::Sender<bool>,
    running: Mutex<HashMap<SocketAddr, Running>>,
    next_conn_id: Arc<AtomicU64>,
    per_ip: Arc<PerIp>,
}

impl<S: HttpService> Listeners<S> {
    /// Creates an empty set.
    pub fn new(service: Arc<S>, settings: ConnSettings) -> Self {
        let max_conns = settings.limits.max_connections;
        Listeners {
            service,
            settings: Arc::new(ArcSwap::from_pointee(settings)),
            conn_limit: Arc::new(Semaphore::new(max_conns)),
            max_conns,
            drain_tx: watch::channel(false).0,
            running: Mutex::new(HashMap::new()),
            next_conn_id: Arc::new(AtomicU64::new(1)),
            per_ip: Arc::new(PerIp::default()),
        }
    }

    /// Replaces the connection settings (used by connections accepted from now on).
    pub fn set_settings(&self, settings: ConnSettings) {
        if settings.limits.max_connections != self.max_conns {
            tracing::warn!(
                "limits.max_connections changes take effect after a restart ({} stays in force)",
                self.max_conns
            );
        }
        self.settings.store(Arc::new(settings));
    }

    /// Makes the set of listening addresses equal to `want`: binds new ones first (so a bind
    /// error leaves everything as it was), then starts them and stops the ones no longer wanted.
    pub fn sync(&self, want: &[SocketAddr]) -> Result<(), BindError> {
        let bound = self.bind_new(want)?;
        self.activate(bound, want);
        Ok(())
    }

    /// Phase 1 of a reload: binds the addresses of `want` not listening yet. Nothing is accepted
    /// from them until [`Listeners::activate`] (the kernel queues connections meanwhile), so the
    /// caller can install the config that knows these addresses first.
    pub fn bind_new(
        &self,
        want: &[SocketAddr],
    ) -> Result<Vec<(SocketAddr, TcpListener)>, BindError> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh: Vec<(SocketAddr, TcpListener)> = Vec::new();
        for addr in want {
            if !running.contains_key(addr) && !fresh.iter().any(|(a, _)| a == addr) {
                fresh.push((*addr, bind(*addr)?));
            }
        }
        Ok(fresh)
    }

    /// Phase 2: starts accepting on `bound` and closes the listeners not in `want`.
    pub fn activate(&self, bound: Vec<(SocketAddr, TcpListener)>, want: &[SocketAddr]) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for (addr, listener) in bound {
            let local = listener.local_addr().unwrap_or(addr);
            tracing::info!(%local, "listening");
            running.insert(addr, self.spawn(addr, listener));
        }
        let gone: Vec<SocketAddr> = running
            .keys()
            .filter(|a| !want.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(r) = running.remove(&addr) {
                tracing::info!(%addr, "listener closed");
                let _ = r.stop.send(true);
                r.task.abort();
            }
        }
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.running
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }

    fn spawn(&self, addr: SocketAddr, listener: TcpListener) -> Running {
        let (stop, mut stop_rx) = watch::channel(false);
        let service = self.service.clone();
        let settings = self.settings.clone();
        let limit = self.conn_limit.clone();
        let drain = self.drain_tx.subscribe();
        let ids = self.next_conn_id.clone();
        let per_ip = self.per_ip.clone();
        let task = tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    _ = conn::signalled(&mut stop_rx) => return,
                };
                let (stream, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = conn::signalled(&mut stop_rx) => return,
                };
                let _ = stream.set_nodelay(true);
                let local = match stream.local_addr() {
                    Ok(a) => a,
                    Err(_) => continue,
                };
                let info = ConnInfo {
                    peer,
                    local,
                    id: ids.fetch_add(1, Ordering::Relaxed),
                };
                tokio::spawn(accepted(Box::new(Accepted {
                    start: conn::Start {
                        stream,
                        info,
                        settings: settings.load_full(),
                        service: service.clone(),
                        drain: drain.clone(),
                        guard: None,
                    },
                    listen: addr,
                    per_ip: per_ip.clone(),
                    permit,
                })));
            }
        });
        Running { stop, task }
    }

    /// Graceful stop: close every listener, ask every connection to finish its in-flight
    /// requests, and wait until they have or `timeout` passes. Returns the connections still
    /// open at the deadline.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let _ = self.sync(&[]);
        let _ = self.drain_tx.send(true);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let open = self.max_conns - self.conn_limit.available_permits();
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.max_conns - self.conn_limit.available_permits()
    }
}

/// A connection just accepted: what it will run with (its limits not taken yet), and what
/// admission needs (boxed: see `conn::Start`).
struct Accepted<S> {
    start: conn::Start<S>,
    listen: SocketAddr,
    per_ip: Arc<PerIp>,
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// The connection task: admission, then the protocols (two futures in turn, so the second
/// does not carry the first's state: see `conn::serve`).
async fn accepted<S: HttpService>(a: Box<Accepted<S>>) {
    // Boxed (see `crate::boxed`): admission's state is needed only until it is done.
    let Some(start) = crate::boxed(|| admit(a)).await else {
        return;
    };
    conn::serve(start).await;
}

/// The PROXY header (where the listener requires one) and the per-address connection limit.
async fn admit<S: HttpService>(a: Box<Accepted<S>>) -> Option<Box<conn::Start<S>>> {
    let Accepted {
        mut start,
        listen,
        per_ip,
        permit,
    } = *a;
    if !crate::proxy_protocol::accept(&start.stream, listen, &start.settings, &mut start.info).await
    {
        return None;
    }
    // Counted after the PROXY header, so the client it names is the one limited.
    let max = start.settings.limits.max_connections_per_ip;
    let client = start.info.peer.ip();
    let slot = if max > 0 {
        match PerIp::take(&per_ip, client, max) {
            Some(s) => Some(s),
            None => {
                tracing::debug!(client = %client, "connection limit per address: 429");
                // Boxed: its 4 KiB read buffer would otherwise be part of every connection
                // task's state (+8 MiB at 2,000 conns).
                Box::pin(refuse(start.stream)).await;
                return None;
            }
        }
    } else {
        None
    };
    // Held for the connection's life, an upgraded one's too (see upgrade.rs).
    start.guard = Some(Box::new((permit, slot)));
    Some(Box::new(start))
}

/// Answers 429 and closes gently: the client's request is still unread, and closing
/// over unread bytes sends a reset that can destroy the answer before the client reads
/// it. So the write side is shut first and what the client sent is read and dropped
/// (at most 16 KiB, for at most a second), like nginx's lingering close.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
    let _ = stream.shutdown().await;
    let mut buf = [0u8; 4096];
    let mut left = 16usize << 10;
    let drain = async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// What a client over its connection limit gets before the connection closes.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Open connections per client address (all listeners together).
#[derive(Default)]
struct PerIp(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One counted connection; uncounted on drop.
struct IpSlot(Arc<PerIp>, std::net::IpAddr);

impl PerIp {
    fn take(this: &Arc<PerIp>, ip: std::net::IpAddr, max: usize) -> Option<IpSlot> {
        let mut m = this.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot(this.clone(), ip))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = (self.0).0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Body, RequestBody};
    use http::{Request, Response};
    use tokio::net::TcpStream;

    struct Nop;
    impl HttpService for Nop {
        async fn call(
            &self,
            _req: Request<RequestBody>,
            _raw: Option<crate::RawHead>,
            _conn: &ConnInfo,
        ) -> Response<Body> {
            Response::new(Body::Empty)
        }
    }

    /// What every open connection costs in its task's future: 1,728 bytes before the
    /// connection's parts were boxed once instead of passed by value through every layer
    /// (static-many-conns: peak memory at 2,000 connections). A layout regression shows here.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        let stream = TcpStream::connect(a).await.unwrap();
        let info = ConnInfo {
            peer: a,
            local: a,
            id: 1,
        };
        let settings = Arc::new(ConnSettings::new(crate::ConnLimits {
            max_connections: 1,
            max_header_size: 1024,
            max_headers: 10,
            header_read_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
            keepalive_requests: 1,
            h2_max_concurrent_streams: 1,
            max_connections_per_ip: 0,
        }));
        let (_tx, drain) = watch::channel(false);
        let permit = Arc::new(tokio::sync::Semaphore::new(1))
            .acquire_owned()
            .await
            .unwrap();
        let task = accepted(Box::new(Accepted {
            start: crate::conn::Start {
                stream,
                info,
                settings,
                service: Arc::new(Nop),
                drain,
                guard: None,
            },
            listen: a,
            per_ip: Default::default(),
            permit,
        }));
        let size = std::mem::size_of_val(&task);
        assert!(size <= 256, "connection task future is {size} bytes");
    }
}
