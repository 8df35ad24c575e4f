//! Sticky-session cookies: `hex(server id).hex(HMAC-SHA1(secret, id))`, so a client can keep
//! its server but cannot pick an arbitrary one by forging the cookie.

use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

fn hex(data: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn mac(secret: &[u8], id: &[u8]) -> Option<HmacSha1> {
    let mut m = HmacSha1::new_from_slice(secret).ok()?;
    m.update(id);
    Some(m)
}

/// The cookie value naming server `id`.
pub fn sign(secret: &[u8], id: &str) -> String {
    let tag = mac(secret, id.as_bytes())
        .map(|m| hex(&m.finalize().into_bytes()[..12]))
        .unwrap_or_default();
    format!("{}.{}", hex(id.as_bytes()), tag)
}

/// The server id in a cookie value, if its signature is good.
pub fn verify(secret: &[u8], value: &str) -> Option<String> {
    let (id_hex, tag_hex) = value.split_once('.')?;
    let id = unhex(id_hex)?;
    let tag = unhex(tag_hex)?;
    mac(secret, &id)?.verify_truncated_left(&tag).ok()?;
    String::from_utf8(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let v = sign(b"k", "10.0.0.1:80");
        assert_eq!(verify(b"k", &v).as_deref(), Some("10.0.0.1:80"));
        assert_eq!(verify(b"other", &v), None);
        let forged = format!("{}.{}", hex(b"10.0.0.2:80"), v.split_once('.').unwrap().1);
        assert_eq!(verify(b"k", &forged), None);
        assert_eq!(verify(b"k", "garbage"), None);
        assert_eq!(verify(b"k", "zz.zz"), None);
    }
}
