//! Sending the PROXY protocol (HAProxy's spec, v1 or v2) to servers that want to know the
//! original client: each connection starts with a header naming the client and the address it
//! connected to.
//!
//! A header names one client, so such a connection must never carry another client's request.
//! The simple correct rule used here: a connection opened with a PROXY header serves exactly
//! one request. Such connections are always new (never checked out of the keep-alive pool),
//! and the proxy sends their request with `Connection: close`, so hyper closes them after the
//! response instead of parking them idle in the pool. The cost is a new server connection (and
//! TCP handshake) per request, as without keep-alive; reusing one per client connection would
//! need the pool to key connections by client connection.
//! Health checks send v1 `UNKNOWN` / v2 `LOCAL`, which the spec reserves for a proxy's own
//! connections.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use crate::error::UpstreamError;
use crate::peer::{Conn, Peer};
use crate::settings::ProxyProtocol;

/// The 12-byte signature that starts a v2 header.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4 clients) as plain IPv4.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// Both addresses in one family (the header has one): IPv4 when both are, else IPv6 with
/// IPv4 addresses mapped.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (src, dst) = (unmap(src), unmap(dst));
    if src.is_ipv4() && dst.is_ipv4() {
        return (src, dst);
    }
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    (v6(src), v6(dst))
}

/// The header for a connection from `src` (the client) to `dst` (the address it reached).
pub fn encode(version: ProxyProtocol, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    match version {
        ProxyProtocol::V1 => {
            let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {fam} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        ProxyProtocol::V2 => {
            let mut out = V2_SIG.to_vec();
            // Version 2, command PROXY.
            out.push(0x21);
            let mut body = Vec::with_capacity(36);
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11); // AF_INET, STREAM
                    body.extend_from_slice(&s.octets());
                    body.extend_from_slice(&d.octets());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    out.push(0x21); // AF_INET6, STREAM
                    body.extend_from_slice(&s.octets());
                    body.extend_from_slice(&d.octets());
                }
                // `same_family` made them equal.
                _ => {
                    out.push(0x00);
                    body.clear();
                }
            }
            if !body.is_empty() {
                body.extend_from_slice(&src.port().to_be_bytes());
                body.extend_from_slice(&dst.port().to_be_bytes());
            }
            out.extend_from_slice(&(body.len() as u16).to_be_bytes());
            out.extend_from_slice(&body);
            out
        }
    }
}

/// The header for the proxy's own connections (health checks): no client to name.
pub fn encode_local(version: ProxyProtocol) -> Vec<u8> {
    match version {
        ProxyProtocol::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyProtocol::V2 => {
            let mut out = V2_SIG.to_vec();
            // Version 2, command LOCAL; AF_UNSPEC; no address block.
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            out
        }
    }
}

impl Peer {
    /// A new connection (never from the pool) that starts with a PROXY header naming
    /// `client` = (client address, address it connected to), or a LOCAL header without one.
    /// Send its request with `Connection: close`: the header binds it to this client.
    pub async fn connect_with_proxy_header(
        self: &Arc<Self>,
        version: ProxyProtocol,
        client: Option<(SocketAddr, SocketAddr)>,
        upgrades: bool,
    ) -> Result<Conn, UpstreamError> {
        let mut stream = self.open().await?;
        let header = match client {
            Some((src, dst)) => encode(version, src, dst),
            None => encode_local(version),
        };
        // Bounded like any request bytes: a server that reads nothing fails the send timeout.
        match tokio::time::timeout(self.send_timeout(), stream.write_all(&header)).await {
            Err(_) => {
                return Err(UpstreamError::SendTimeout {
                    peer: self.label.clone(),
                })
            }
            Ok(Err(e)) => {
                return Err(UpstreamError::Broken {
                    peer: self.label.clone(),
                    reason: format!("writing the PROXY header: {e}"),
                })
            }
            Ok(Ok(())) => {}
        }
        self.handshake_over(stream, upgrades).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_text() {
        assert_eq!(
            encode(ProxyProtocol::V1, sa("192.0.2.7:5000"), sa("10.0.0.1:80")),
            b"PROXY TCP4 192.0.2.7 10.0.0.1 5000 80\r\n"
        );
        assert_eq!(
            encode(ProxyProtocol::V1, sa("[2001:db8::1]:1"), sa("[::1]:2")),
            b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
        );
        // Mixed families: IPv4 is mapped; mapped addresses alone become IPv4 again.
        assert_eq!(
            encode(ProxyProtocol::V1, sa("192.0.2.7:1"), sa("[::1]:2")),
            b"PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n"
        );
        assert_eq!(
            encode(ProxyProtocol::V1, sa("[::ffff:1.2.3.4]:1"), sa("5.6.7.8:2")),
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
        );
        assert_eq!(encode_local(ProxyProtocol::V1), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v2_binary() {
        let h = encode(ProxyProtocol::V2, sa("192.0.2.7:5000"), sa("10.0.0.1:80"));
        let mut want = V2_SIG.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 10, 0, 0, 1]);
        want.extend_from_slice(&5000u16.to_be_bytes());
        want.extend_from_slice(&80u16.to_be_bytes());
        assert_eq!(h, want);
        let h = encode(ProxyProtocol::V2, sa("[2001:db8::1]:1"), sa("[::1]:2"));
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[48..], &[0, 1, 0, 2]);
        let l = encode_local(ProxyProtocol::V2);
        assert_eq!(&l[12..], &[0x20, 0x00, 0, 0]);
    }
}
