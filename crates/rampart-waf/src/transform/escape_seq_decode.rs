//! `t:escapeSeqDecode`: ANSI C escapes (`\n`, `\xHH`, `\OOO`, …); unknown escapes keep
//! their backslash, as ModSecurity does.

use super::hexval;

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] == b'\\' && i + 1 < n {
            let c = input[i + 1];
            let simple = match c {
                b'a' => Some(7),
                b'b' => Some(8),
                b'f' => Some(12),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                b'v' => Some(11),
                b'\\' => Some(b'\\'),
                b'?' => Some(b'?'),
                b'\'' => Some(b'\''),
                b'"' => Some(b'"'),
                _ => None,
            };
            if let Some(s) = simple {
                out.push(s);
                i += 2;
                continue;
            }
            if (c == b'x' || c == b'X') && i + 3 < n {
                if let (Some(h), Some(l)) = (hexval(input[i + 2]), hexval(input[i + 3])) {
                    out.push(h << 4 | l);
                    i += 4;
                    continue;
                }
            }
            if (b'0'..=b'7').contains(&c) {
                let mut j = i + 1;
                let mut v: u32 = 0;
                while j < n && j < i + 4 && (b'0'..=b'7').contains(&input[j]) {
                    v = v * 8 + u32::from(input[j] - b'0');
                    j += 1;
                }
                out.push((v & 0xff) as u8);
                i = j;
                continue;
            }
            // Not a recognised escape (also `\x` without two hex digits): ModSecurity
            // drops the backslash and keeps the next byte.
            out.push(c);
            i += 2;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}
