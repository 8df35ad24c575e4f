//! Address lists (trusted proxies, allow/deny rules) and the one place where an IPv4-mapped
//! IPv6 address (`::ffff:10.0.0.1`, what a dual-stack listener reports) becomes plain IPv4.

use std::net::IpAddr;

/// `::ffff:a.b.c.d` as `a.b.c.d`; any other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A set of networks.
#[derive(Debug, Default, Clone)]
pub struct CidrSet {
    nets: Vec<(IpAddr, u8)>,
}

impl CidrSet {
    /// From parsed CIDRs (network, prefix length).
    pub fn new(nets: Vec<(IpAddr, u8)>) -> Self {
        CidrSet { nets }
    }

    /// Whether `ip` (canonicalised) lies in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|(net, len)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }
}
