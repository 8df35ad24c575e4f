//! `t:base64Decode` (stops at the first invalid character) and `t:base64DecodeExt`
//! (skips invalid characters), both tolerant of missing padding.

/// Six-bit value of each base64 character (both alphabets), `INVALID` for the rest: a
/// table instead of a range match per byte (934100-934120 decode every argument).
const INVALID: u8 = 0xff;
const VAL: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = i as u8 + 26;
        if i < 10 {
            t[b'0' as usize + i] = i as u8 + 52;
        }
        i += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t
};

fn val(c: u8) -> Option<u32> {
    match VAL[usize::from(c)] {
        INVALID => None,
        v => Some(u32::from(v)),
    }
}

/// Decodes base64; `skip_invalid` selects the Ext behaviour.
pub(crate) fn decode(input: &[u8], skip_invalid: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in input {
        if c == b'=' {
            break;
        }
        match val(c) {
            Some(v) => {
                acc = acc << 6 | v;
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits & 0xff) as u8);
                }
            }
            None if skip_invalid => {}
            None => break,
        }
    }
    out
}

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    decode(input, false)
}

pub(crate) fn apply_ext(input: &[u8]) -> Vec<u8> {
    decode(input, true)
}

/// `t:base64Encode`.
pub(crate) fn encode(input: &[u8]) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for ch in input.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        out.push(T[(n >> 18 & 63) as usize]);
        out.push(T[(n >> 12 & 63) as usize]);
        out.push(if ch.len() > 1 {
            T[(n >> 6 & 63) as usize]
        } else {
            b'='
        });
        out.push(if ch.len() > 2 {
            T[(n & 63) as usize]
        } else {
            b'='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn roundtrip() {
        assert_eq!(super::apply(b"aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(super::encode(b"hello world"), b"aGVsbG8gd29ybGQ=");
        assert_eq!(super::apply_ext(b"aGVs.bG8"), b"hello");
    }

    /// The table gives every byte the value the range match it replaced gave.
    #[test]
    fn table_matches_ranges() {
        for c in 0..=255u8 {
            let want = match c {
                b'A'..=b'Z' => Some(u32::from(c - b'A')),
                b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
                b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
                b'+' | b'-' => Some(62),
                b'/' | b'_' => Some(63),
                _ => None,
            };
            assert_eq!(super::val(c), want, "byte {c}");
        }
    }
}
