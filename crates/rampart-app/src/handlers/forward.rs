//! The forward-proxy handler (`forward_proxy` routes): `CONNECT host:port` → port and host
//! allowlists (403) → resolve and connect within `connect_timeout` (502, 504) →
//! `200 Connection Established` → bytes copied both ways until either side closes or nothing
//! moves for `idle_timeout`. As Squid, Envoy and Caddy's forwardproxy do; access rules, rate
//! limits and the WAF have already run on the CONNECT request (pipeline.rs).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cidr::CidrSet;

/// Bytes read from one side before they are written to the other: the tunnel's whole memory
/// per direction, however fast one side sends and however slowly the other takes.
const TUNNEL_BUF: usize = 16 << 10;

/// Compiled `forward_proxy` settings.
#[derive(Debug)]
pub struct ForwardSettings {
    /// Ports a tunnel may reach.
    pub ports: Vec<u16>,
    /// Hosts a tunnel may reach.
    pub hosts: HostRules,
    /// Resolving plus connecting, at most.
    pub connect_timeout: Duration,
    /// A tunnel with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// `global.resolver`, when configured: target names are asked there (answers kept for
    /// their TTL), as upstream names are; otherwise the system resolver.
    pub dns: Option<Arc<rampart_upstream::dns::Dns>>,
}

/// `allow_hosts`: names, `*.suffix` wildcards, `*`, addresses and networks.
#[derive(Debug, Default)]
pub struct HostRules {
    any: bool,
    names: HashSet<String>,
    /// `".example.com"` for `*.example.com`.
    suffixes: Vec<String>,
    nets: Option<CidrSet>,
}

impl HostRules {
    /// From validated `allow_hosts` entries.
    pub fn new(entries: &[String]) -> HostRules {
        let mut r = HostRules::default();
        let mut nets = Vec::new();
        for e in entries {
            let e = e.trim().to_ascii_lowercase();
            if e == "*" {
                r.any = true;
            } else if let Some(n) = rampart_config::parse_cidr(&e) {
                nets.push(n);
            } else if let Some(s) = e.strip_prefix('*') {
                r.suffixes.push(s.to_string());
            } else {
                r.names.insert(e.trim_end_matches('.').to_string());
            }
        }
        r.nets = (!nets.is_empty()).then(|| CidrSet::new(nets));
        r
    }

    /// Whether the name itself is allowed (any address it resolves to may then be used).
    fn name_allowed(&self, host: &str) -> bool {
        self.any
            || self.names.contains(host)
            || self
                .suffixes
                .iter()
                .any(|s| host.len() > s.len() && host.ends_with(s.as_str()))
    }

    fn addr_allowed(&self, ip: IpAddr) -> bool {
        self.nets.as_ref().is_some_and(|n| n.contains(ip))
    }
}

/// A CONNECT target: host (lower case, no brackets, no trailing dot) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Target {
    /// The authority form (`host:port`) of a CONNECT request; `None` for anything else.
    pub fn from_uri(uri: &Uri) -> Option<Target> {
        if uri.scheme().is_some() || uri.path_and_query().is_some() {
            return None;
        }
        let a = uri.authority()?;
        let port = a.port_u16().filter(|&p| p != 0)?;
        let host = a.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        (!host.is_empty()).then_some(Target { host, port })
    }
}

/// Why a tunnel was not opened: the status to answer and a reason for the log.
#[derive(Debug)]
pub struct Refused {
    /// 403, 502 or 504.
    pub status: StatusCode,
    /// For the diagnostic log.
    pub reason: String,
}

fn refused(status: StatusCode, reason: impl Into<String>) -> Refused {
    Refused {
        status,
        reason: reason.into(),
    }
}

/// Checks the allowlists, resolves the target and connects to the first address that answers.
pub async fn open(s: &ForwardSettings, t: &Target) -> Result<TcpStream, Refused> {
    if !s.ports.contains(&t.port) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            format!("port {} is not in allow_ports", t.port),
        ));
    }
    let by_name = s.hosts.name_allowed(&t.host);
    if !by_name && s.hosts.nets.is_none() {
        return Err(refused(
            StatusCode::FORBIDDEN,
            format!("host {} is not in allow_hosts", t.host),
        ));
    }
    let deadline = tokio::time::Instant::now() + s.connect_timeout;
    let addrs: Vec<SocketAddr> = match t.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, t.port)],
        Err(_) => {
            let found = match &s.dns {
                Some(dns) => tokio::time::timeout_at(deadline, dns.lookup(&t.host, t.port))
                    .await
                    .map(|r| r.map(|(a, _)| a).map_err(|e| e.to_string())),
                None => {
                    tokio::time::timeout_at(deadline, tokio::net::lookup_host((&*t.host, t.port)))
                        .await
                        .map(|r| r.map(Iterator::collect).map_err(|e| e.to_string()))
                }
            };
            match found {
                Err(_) => {
                    return Err(refused(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("resolving {} timed out", t.host),
                    ))
                }
                Ok(Err(e)) => {
                    return Err(refused(
                        StatusCode::BAD_GATEWAY,
                        format!("cannot resolve {}: {e}", t.host),
                    ))
                }
                Ok(Ok(a)) => a,
            }
        }
    };
    // Not allowed by name: only addresses inside the allowed networks (so a name cannot be
    // used to reach what its address would not be allowed to).
    let addrs: Vec<SocketAddr> = if by_name {
        addrs
    } else {
        addrs
            .into_iter()
            .filter(|a| s.hosts.addr_allowed(a.ip()))
            .collect()
    };
    if addrs.is_empty() {
        return Err(refused(
            StatusCode::FORBIDDEN,
            format!("{} has no allowed address", t.host),
        ));
    }
    let mut last: Option<io::Error> = None;
    for a in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(a)).await {
            Err(_) => {
                return Err(refused(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("connecting to {a} timed out"),
                ))
            }
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = Some(e),
        }
    }
    Err(refused(
        StatusCode::BAD_GATEWAY,
        format!(
            "cannot connect to {}:{}: {}",
            t.host,
            t.port,
            last.map_or_else(|| "no address".to_string(), |e| e.to_string())
        ),
    ))
}

/// Bytes a finished tunnel carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    /// Client → target.
    pub up: u64,
    /// Target → client.
    pub down: u64,
}

/// Copies bytes both ways through fixed buffers. The first side to close (or fail) ends the
/// tunnel for both, after what it sent has been passed on, as Squid does: a half-open tunnel
/// would hold a connection for a peer that is gone. Nothing moving for `idle` ends it too.
pub async fn tunnel<C>(client: C, target: TcpStream, idle: Duration) -> Carried
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut tr, mut tw) = target.into_split();
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let mut carried = Carried::default();
    {
        let up = pump(&mut cr, &mut tw, &mut carried.up, &last, start);
        let down = pump(&mut tr, &mut cw, &mut carried.down, &last, start);
        tokio::pin!(up, down);
        let tick = (idle / 4).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                r = &mut up => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "tunnel: client side ended");
                    }
                    break;
                }
                r = &mut down => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "tunnel: target side ended");
                    }
                    break;
                }
                _ = tokio::time::sleep(tick) => {
                    let moved = Duration::from_millis(last.load(Ordering::Relaxed));
                    if start.elapsed().saturating_sub(moved) >= idle {
                        tracing::debug!("tunnel idle: closing");
                        break;
                    }
                }
            }
        }
    }
    // Both halves of both sides drop here: the sockets close.
    carried
}

/// One direction: read, write all of it, repeat; at end of input, pass the close on.
async fn pump<R, W>(
    r: &mut R,
    w: &mut W,
    count: &mut u64,
    last: &AtomicU64,
    start: Instant,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; TUNNEL_BUF];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
        *count += n as u64;
        let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<Target> {
        Target::from_uri(&s.parse::<Uri>().ok()?)
    }

    #[test]
    fn targets_are_authority_form() {
        assert_eq!(
            t("Example.COM.:443"),
            Some(Target {
                host: "example.com".into(),
                port: 443
            })
        );
        assert_eq!(t("[::1]:8443").map(|t| t.host), Some("::1".to_string()));
        assert_eq!(t("example.com"), None);
        assert_eq!(t("example.com:0"), None);
        assert_eq!(t("http://example.com:443/"), None);
        assert_eq!(t("/path"), None);
    }

    #[test]
    fn host_rules() {
        let r = HostRules::new(&[
            "*.example.com".into(),
            "api.test".into(),
            "10.0.0.0/8".into(),
            "127.0.0.1".into(),
        ]);
        assert!(r.name_allowed("a.b.example.com"));
        assert!(!r.name_allowed("example.com"));
        assert!(!r.name_allowed("badexample.com"));
        assert!(r.name_allowed("api.test"));
        assert!(!r.name_allowed("other.test"));
        assert!(r.addr_allowed("10.1.2.3".parse().unwrap()));
        assert!(r.addr_allowed("127.0.0.1".parse().unwrap()));
        assert!(!r.addr_allowed("127.0.0.2".parse().unwrap()));
        assert!(HostRules::new(&["*".into()]).name_allowed("anything"));
    }

    #[tokio::test]
    async fn refusals() {
        let s = ForwardSettings {
            ports: vec![443],
            hosts: HostRules::new(&["127.0.0.1".into()]),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            dns: None,
        };
        let bad_port = Target {
            host: "127.0.0.1".into(),
            port: 25,
        };
        let r = open(&s, &bad_port).await.err().map(|e| e.status);
        assert_eq!(r, Some(StatusCode::FORBIDDEN));
        let bad_host = Target {
            host: "127.0.0.2".into(),
            port: 443,
        };
        let r = open(&s, &bad_host).await.err().map(|e| e.status);
        assert_eq!(r, Some(StatusCode::FORBIDDEN));
        let by_name = Target {
            host: "localhost".into(),
            port: 443,
        };
        // Not a listed name, and its addresses are only allowed through a network entry.
        let s2 = ForwardSettings {
            hosts: HostRules::new(&["api.test".into()]),
            ..s
        };
        let r = open(&s2, &by_name).await.err().map(|e| e.status);
        assert_eq!(r, Some(StatusCode::FORBIDDEN));
    }

    #[tokio::test]
    async fn tunnel_copies_both_ways_and_ends_on_close() {
        use tokio::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // Target: echo.
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let target = TcpStream::connect(addr).await.unwrap();
        let (client, mut peer) = tokio::io::duplex(1024);
        let run = tokio::spawn(tunnel(client, target, Duration::from_secs(30)));
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut back = vec![0u8; data.len()];
        {
            let (mut pr, mut pw) = tokio::io::split(&mut peer);
            let send = async { pw.write_all(&data).await.unwrap() };
            let recv = async { pr.read_exact(&mut back).await.unwrap() };
            tokio::join!(send, recv);
        }
        assert!(back == data);
        drop(peer);
        let carried = run.await.unwrap();
        assert_eq!(carried.up, 100_000);
        assert_eq!(carried.down, 100_000);
    }
}
