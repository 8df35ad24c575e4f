//! Accepting the PROXY protocol (HAProxy's spec, v1 text and v2 binary) from an L4 load
//! balancer in front of Rampart: on listeners configured for it, every connection must start
//! with a PROXY header, and the client address it names replaces the TCP peer address in
//! [`ConnInfo`] — and with it in logs, `X-Forwarded-For`, `ip_hash` and access rules.
//!
//! The header is read without taking a byte of what follows it: the bytes that have arrived are
//! peeked, and only bytes known to belong to the header are consumed (every byte before the
//! v1 CRLF, the 16 + length bytes of a v2 header). So the HTTP request after it stays in the
//! socket for hyper, and `GuardedIo` needs no prefix buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::conn::{ConnInfo, ConnSettings};

/// v1 headers are at most 107 bytes, CRLF included (spec §2.1).
const V1_MAX: usize = 107;
/// The 12-byte signature that starts a v2 header.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v2 address + TLV block accepted. Addresses take at most 216 bytes (Unix); the rest
/// is TLVs (TLS details, cloud endpoint ids), which stay small in practice. A bound keeps a
/// hostile peer from making us buffer 64 KiB per connection.
const V2_MAX_LEN: usize = 2048;

/// What a PROXY header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied connection from `src` to `dst`.
    Proxy {
        /// The original client.
        src: SocketAddr,
        /// The address the client connected to (the balancer's).
        dst: SocketAddr,
    },
    /// The balancer's own connection (v2 `LOCAL`, e.g. its health checks), v1 `UNKNOWN`, or an
    /// address family without IP addresses: the TCP peer address stays.
    Local,
}

/// Why a connection's PROXY header was refused (the connection is closed).
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The bytes are not a valid header.
    #[error("invalid PROXY header: {0}")]
    Invalid(&'static str),
    /// The peer closed before the header was complete.
    #[error("connection closed before the PROXY header was complete")]
    Closed,
    /// The header did not arrive within the header read timeout.
    #[error("no complete PROXY header within the header read timeout")]
    Timeout,
    /// Reading failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// The outcome of parsing the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed; every byte seen so far belongs to the header.
    Incomplete,
    /// A complete header of this many bytes.
    Done(ProxyHeader, usize),
}

/// Parses a PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let invalid = |why| Err(ProxyHeaderError::Invalid(why));
    let Some(&first) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    if first == b'P' {
        let n = buf.len().min(6);
        if buf[..n] != b"PROXY "[..n] {
            return invalid("not a PROXY header");
        }
        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
            // A CR followed by anything but LF is not a line end.
            if buf
                .iter()
                .position(|b| *b == b'\r')
                .is_some_and(|i| i + 1 < buf.len())
            {
                return invalid("v1: CR without LF");
            }
            if buf.len() >= V1_MAX {
                return invalid("v1: longer than 107 bytes");
            }
            return Ok(Parsed::Incomplete);
        };
        let len = end + 2;
        if len > V1_MAX {
            return invalid("v1: longer than 107 bytes");
        }
        return parse_v1(&buf[6..end]).map(|h| Parsed::Done(h, len));
    }
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] != V2_SIG[..n] {
        return invalid("not a PROXY header");
    }
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete);
    }
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if body_len > V2_MAX_LEN {
        return invalid("v2: header too large");
    }
    // Version and command are checked before waiting for the body, so garbage fails early.
    if buf[12] >> 4 != 2 {
        return invalid("v2: unsupported version");
    }
    if buf.len() < 16 + body_len {
        return Ok(Parsed::Incomplete);
    }
    parse_v2(buf[12], buf[13], &buf[16..16 + body_len]).map(|h| Parsed::Done(h, 16 + body_len))
}

/// `TCP4 SRC DST SPORT DPORT`, `TCP6 …` or `UNKNOWN…` (the part between `PROXY ` and CRLF).
fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyHeaderError> {
    let bad = ProxyHeaderError::Invalid;
    let line = std::str::from_utf8(line).map_err(|_| bad("v1: not ASCII"))?;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Ok(ProxyHeader::Local);
    }
    let f: Vec<&str> = line.split(' ').collect();
    let [proto, src, dst, sport, dport] = f.as_slice() else {
        return Err(bad("v1: expected protocol, two addresses and two ports"));
    };
    let (src, dst): (IpAddr, IpAddr) = match *proto {
        "TCP4" => (
            src.parse::<Ipv4Addr>()
                .map_err(|_| bad("v1: bad IPv4 source"))?
                .into(),
            dst.parse::<Ipv4Addr>()
                .map_err(|_| bad("v1: bad IPv4 destination"))?
                .into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>()
                .map_err(|_| bad("v1: bad IPv6 source"))?
                .into(),
            dst.parse::<Ipv6Addr>()
                .map_err(|_| bad("v1: bad IPv6 destination"))?
                .into(),
        ),
        _ => return Err(bad("v1: unknown protocol")),
    };
    let port = |p: &str| {
        // Decimal without sign or leading zeros (the spec's form); u16 rejects > 65535.
        if p.is_empty()
            || (p.len() > 1 && p.starts_with('0'))
            || !p.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad("v1: bad port"));
        }
        p.parse::<u16>().map_err(|_| bad("v1: bad port"))
    };
    Ok(ProxyHeader::Proxy {
        src: SocketAddr::new(src, port(sport)?),
        dst: SocketAddr::new(dst, port(dport)?),
    })
}

/// The v2 command byte's low nibble, the family/transport byte and the address block.
fn parse_v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Result<ProxyHeader, ProxyHeaderError> {
    let bad = ProxyHeaderError::Invalid;
    match ver_cmd & 0x0f {
        0 => return Ok(ProxyHeader::Local),
        1 => {}
        _ => return Err(bad("v2: unknown command")),
    }
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match fam >> 4 {
        // AF_INET: 4 + 4 address bytes, 2 + 2 port bytes.
        1 => {
            if body.len() < 12 {
                return Err(bad("v2: short IPv4 address block"));
            }
            let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            Ok(ProxyHeader::Proxy {
                src: SocketAddr::new(ip(&body[0..4]), be16(&body[8..10])),
                dst: SocketAddr::new(ip(&body[4..8]), be16(&body[10..12])),
            })
        }
        // AF_INET6: 16 + 16 address bytes, 2 + 2 port bytes.
        2 => {
            if body.len() < 36 {
                return Err(bad("v2: short IPv6 address block"));
            }
            let ip = |b: &[u8]| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[..16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            Ok(ProxyHeader::Proxy {
                src: SocketAddr::new(ip(&body[0..16]), be16(&body[32..34])),
                dst: SocketAddr::new(ip(&body[16..32]), be16(&body[34..36])),
            })
        }
        // AF_UNSPEC and AF_UNIX carry no IP address: keep the TCP peer (as the spec asks for
        // UNSPEC; a Unix path is no client address).
        0 | 3 => Ok(ProxyHeader::Local),
        _ => Err(bad("v2: unknown address family")),
    }
}

/// Reads the PROXY header that must start `stream`, consuming exactly its bytes.
pub async fn read_header(
    stream: &TcpStream,
    timeout: Duration,
) -> Result<ProxyHeader, ProxyHeaderError> {
    tokio::time::timeout(timeout, read_inner(stream))
        .await
        .map_err(|_| ProxyHeaderError::Timeout)?
}

async fn read_inner(stream: &TcpStream) -> Result<ProxyHeader, ProxyHeaderError> {
    let mut got: Vec<u8> = Vec::with_capacity(64);
    let mut peek = vec![0u8; V1_MAX];
    loop {
        let n = stream.peek(&mut peek).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        let mut probe = got.clone();
        probe.extend_from_slice(&peek[..n]);
        match parse(&probe)? {
            Parsed::Done(h, len) => {
                consume(stream, len - got.len()).await?;
                return Ok(h);
            }
            // Everything peeked belongs to the header: take it, so the next peek waits for
            // new bytes instead of returning the same ones (no busy loop on a slow sender).
            Parsed::Incomplete => {
                consume(stream, n).await?;
                got = probe;
                if peek.len() < V2_MAX_LEN + 16 && got.len() >= 16 && got[0] != b'P' {
                    peek.resize(V2_MAX_LEN + 16, 0);
                }
            }
        }
    }
}

/// Reads and drops `n` bytes already seen by `peek`.
async fn consume(stream: &TcpStream, n: usize) -> Result<(), ProxyHeaderError> {
    let mut left = n;
    let mut buf = [0u8; 256];
    while left > 0 {
        let k = left.min(buf.len());
        match stream.try_read(&mut buf[..k]) {
            Ok(0) => return Err(ProxyHeaderError::Closed),
            Ok(r) => left -= r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.readable().await?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl ConnSettings {
    /// Listen addresses whose connections must start with a PROXY header.
    pub fn with_proxy_protocol(mut self, addrs: Vec<SocketAddr>) -> Self {
        self.proxy_protocol = std::sync::Arc::new(addrs);
        self
    }
}

/// On a listener that requires it, reads the PROXY header and puts the client it names into
/// `info.peer`. `false`: the header was missing or malformed and the connection must close.
pub(crate) async fn accept(
    stream: &TcpStream,
    listen: SocketAddr,
    settings: &ConnSettings,
    info: &mut ConnInfo,
) -> bool {
    if !settings.proxy_protocol.contains(&listen) {
        return true;
    }
    match read_header(stream, settings.limits.header_read_timeout).await {
        Ok(ProxyHeader::Proxy { src, .. }) => {
            info.peer = src;
            true
        }
        Ok(ProxyHeader::Local) => true,
        Err(e) => {
            tracing::debug!(peer = %info.peer, error = %e, "closing connection");
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> (ProxyHeader, usize) {
        match parse(buf).unwrap() {
            Parsed::Done(h, n) => (h, n),
            Parsed::Incomplete => panic!("incomplete: {buf:?}"),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut v = V2_SIG.to_vec();
        v.push(0x20 | cmd);
        v.push(fam);
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            done(h),
            (
                ProxyHeader::Proxy {
                    src: sa("192.0.2.7:56324"),
                    dst: sa("10.0.0.1:443")
                },
                41
            )
        );
        let h = b"PROXY TCP6 2001:db8::1 ::1 65535 80\r\n";
        assert_eq!(
            done(h).0,
            ProxyHeader::Proxy {
                src: sa("[2001:db8::1]:65535"),
                dst: sa("[::1]:80")
            }
        );
        assert_eq!(done(b"PROXY UNKNOWN\r\n"), (ProxyHeader::Local, 15));
        assert_eq!(
            done(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX").0,
            ProxyHeader::Local
        );
    }

    #[test]
    fn v1_incomplete_then_complete() {
        let full = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), Parsed::Incomplete, "{cut}");
        }
        assert_eq!(done(full).1, full.len());
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
            b"PROXYTCP4",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"PROXY UNKNOWN ".to_vec(), vec![b'x'; 100]].concat();
        assert!(parse(&long).is_err(), "no CRLF within 107 bytes");
    }

    #[test]
    fn v2_proxy_ipv4_ipv6_and_local() {
        let mut body = vec![192, 0, 2, 7, 10, 0, 0, 1];
        body.extend_from_slice(&56324u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        // A TLV after the addresses is skipped.
        body.extend_from_slice(&[0x04, 0x00, 0x02, b'h', b'i']);
        let mut h = v2(1, 0x11, &body);
        let len = h.len();
        h.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            done(&h),
            (
                ProxyHeader::Proxy {
                    src: sa("192.0.2.7:56324"),
                    dst: sa("10.0.0.1:443")
                },
                len
            )
        );
        let mut body = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0x12, 0x34, 0x00, 0x50]);
        assert_eq!(
            done(&v2(1, 0x21, &body)).0,
            ProxyHeader::Proxy {
                src: sa("[2001:db8::7]:4660"),
                dst: sa("[::1]:80")
            }
        );
        // LOCAL: the balancer's own connection, addresses (if any) ignored.
        assert_eq!(done(&v2(0, 0x00, &[])), (ProxyHeader::Local, 16));
        assert_eq!(done(&v2(0, 0x11, &[0; 12])).0, ProxyHeader::Local);
        // UNSPEC and UNIX families keep the TCP peer.
        assert_eq!(done(&v2(1, 0x00, &[])).0, ProxyHeader::Local);
        assert_eq!(done(&v2(1, 0x31, &[0; 216])).0, ProxyHeader::Local);
    }

    #[test]
    fn v2_incomplete_and_malformed() {
        let full = v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), Parsed::Incomplete, "{cut}");
        }
        // Short address block, bad version, bad command, bad family, oversized, bad signature.
        assert!(parse(&v2(1, 0x11, &[0; 8])).is_err());
        assert!(parse(&v2(1, 0x21, &[0; 20])).is_err());
        let mut bad_ver = v2(1, 0x11, &[0; 12]);
        bad_ver[12] = 0x11;
        assert!(parse(&bad_ver).is_err());
        assert!(parse(&v2(2, 0x11, &[0; 12])).is_err());
        assert!(parse(&v2(1, 0x41, &[0; 12])).is_err());
        let mut huge = V2_SIG.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(parse(&huge).is_err());
        assert!(parse(b"\r\n\r\n\0\r\nQUIX\n").is_err());
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test]
    async fn reads_exactly_the_header_even_in_pieces() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut c, s) = pair().await;
        let task = tokio::spawn(async move {
            let h = read_header(&s, Duration::from_secs(5)).await.unwrap();
            let mut rest = vec![0u8; 5];
            let mut s = s;
            s.read_exact(&mut rest).await.unwrap();
            (h, rest)
        });
        for piece in [
            &b"PROX"[..],
            b"Y TCP4 1.2.3.4 ",
            b"5.6.7.8 9 10\r",
            b"\nHELLO",
        ] {
            c.write_all(piece).await.unwrap();
            c.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (h, rest) = task.await.unwrap();
        assert_eq!(
            h,
            ProxyHeader::Proxy {
                src: sa("1.2.3.4:9"),
                dst: sa("5.6.7.8:10")
            }
        );
        assert_eq!(rest, b"HELLO", "bytes after the header stay for HTTP");

        let (mut c, s) = pair().await;
        let mut h = v2(1, 0x11, &[9, 9, 9, 9, 1, 1, 1, 1, 0, 7, 0, 8]);
        h.extend_from_slice(b"NEXT");
        c.write_all(&h[..10]).await.unwrap();
        let task = tokio::spawn(async move {
            let h = read_header(&s, Duration::from_secs(5)).await.unwrap();
            let mut rest = vec![0u8; 4];
            let mut s = s;
            s.read_exact(&mut rest).await.unwrap();
            (h, rest)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.write_all(&h[10..]).await.unwrap();
        let (got, rest) = task.await.unwrap();
        assert_eq!(
            got,
            ProxyHeader::Proxy {
                src: sa("9.9.9.9:7"),
                dst: sa("1.1.1.1:8")
            }
        );
        assert_eq!(rest, b"NEXT");
    }

    #[tokio::test]
    async fn malformed_missing_or_slow_headers_fail() {
        use tokio::io::AsyncWriteExt;
        let (mut c, s) = pair().await;
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(
            read_header(&s, Duration::from_secs(5)).await,
            Err(ProxyHeaderError::Invalid(_))
        ));
        let (mut c, s) = pair().await;
        c.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
        assert!(matches!(
            read_header(&s, Duration::from_millis(100)).await,
            Err(ProxyHeaderError::Timeout)
        ));
        drop(c);
        let (mut c, s) = pair().await;
        c.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
        drop(c);
        assert!(matches!(
            read_header(&s, Duration::from_secs(5)).await,
            Err(ProxyHeaderError::Closed)
        ));
    }
}
