//! `@ipMatch` / `@ipMatchFromFile`: IPv4/IPv6 addresses and CIDR blocks.

use std::net::IpAddr;

/// One network.
#[derive(Debug, Clone)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

/// Parses a comma/space/newline separated list.
pub fn parse(param: &str) -> Result<Vec<Net>, String> {
    let mut out = Vec::new();
    // `#` starts a comment that runs to the end of its line (data files).
    let items = param
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(|c: char| c == ',' || c.is_whitespace()))
        .map(str::trim)
        .filter(|s| !s.is_empty());
    for item in items {
        let (a, p) = match item.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (item, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("bad IP {item:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| format!("bad prefix {item:?}"))?,
            None => max,
        };
        if prefix > max {
            return Err(format!("bad prefix {item:?}"));
        }
        out.push(Net { addr, prefix });
    }
    Ok(out)
}

/// True when `input` (an address in text form) is in one of the networks.
pub fn check(nets: &[Net], input: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(input) else {
        return false;
    };
    let Ok(ip) = s.trim().parse::<IpAddr>() else {
        return false;
    };
    nets.iter().any(|n| match (n.addr, ip) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if n.prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(n.prefix))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if n.prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(n.prefix))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_cidr() {
        let n = super::parse("127.0.0.1,10.0.0.0/8, ::1").unwrap_or_default();
        assert!(super::check(&n, b"10.2.3.4"));
        assert!(super::check(&n, b"::1"));
        assert!(!super::check(&n, b"11.0.0.1"));
    }
}
