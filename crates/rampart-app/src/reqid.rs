//! Request ids: the client's `X-Request-Id` when it is short and printable (so ids follow a
//! request across proxies), otherwise a fresh 128-bit random id in hex.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use http::{HeaderMap, HeaderName, HeaderValue};

/// Header carrying the id.
pub const HEADER: &str = "x-request-id";

/// The same as a ready name: looking up or inserting by `&str` parses the name each time, and
/// inserting a custom name by `&str` also allocates a copy of it.
pub const HEADER_NAME: HeaderName = HeaderName::from_static(HEADER);

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // RandomState is seeded from the OS per process; mixing in the thread id separates threads.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.write(format!("{:?}", std::thread::current().id()).as_bytes());
    h.finish() | 1
}

/// splitmix64: tiny, fast, and good enough for ids (they are not secrets).
fn next() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// A new id: 32 lowercase hex digits.
pub fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    let (a, b) = (next(), next());
    for i in 0..16 {
        buf[i] = HEX[((a >> (60 - 4 * i)) & 0xf) as usize];
        buf[16 + i] = HEX[((b >> (60 - 4 * i)) & 0xf) as usize];
    }
    let mut v = HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("-"));
    never_indexed(&mut v);
    v
}

/// Marks an id so HTTP/2's HPACK encoder sends it as a literal instead of adding it to the
/// connection's dynamic table: every id is new, so indexing it only evicts the headers that
/// do repeat (type, validators, `server`) and makes each response re-send and re-index them
/// (measured: about a fifth of the CPU of an h2 static-file request went to that churn).
/// HTTP/1 ignores the flag.
fn never_indexed(v: &mut HeaderValue) {
    v.set_sensitive(true);
}

/// The request's id: the client's when acceptable, else a new one.
pub fn from_request(headers: &HeaderMap) -> HeaderValue {
    from_client(headers.get(&HEADER_NAME))
}

/// The id for a request whose `X-Request-Id` (first value) is `client`.
pub fn from_client(client: Option<&HeaderValue>) -> HeaderValue {
    match client {
        Some(v)
            if !v.is_empty()
                && v.len() <= 128
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b)) =>
        {
            let mut v = v.clone();
            never_indexed(&mut v);
            v
        }
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_hex() {
        let a = super::generate();
        let b = super::generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
