//! `t:jsDecode`: JavaScript escapes `\xHH`, `\uHHHH` (lower-case `x`/`u` only, as in
//! ModSecurity) (full-width ASCII folded, else low
//! byte), octal `\OOO`, the C single-letter escapes, and `\c` → `c`.

use super::hexval;

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] == b'\\' && i + 1 < n {
            let c = input[i + 1];
            if c == b'u' && i + 5 < n {
                let hs: Option<Vec<u8>> = input[i + 2..i + 6].iter().map(|&b| hexval(b)).collect();
                if let Some(h) = hs {
                    let code = (u32::from(h[0]) << 12)
                        | (u32::from(h[1]) << 8)
                        | (u32::from(h[2]) << 4)
                        | u32::from(h[3]);
                    out.push(if (0xff01..=0xff5e).contains(&code) {
                        (code - 0xfee0) as u8
                    } else {
                        (code & 0xff) as u8
                    });
                    i += 6;
                    continue;
                }
            }
            if c == b'x' && i + 3 < n {
                if let (Some(h), Some(l)) = (hexval(input[i + 2]), hexval(input[i + 3])) {
                    out.push(h << 4 | l);
                    i += 4;
                    continue;
                }
            }
            if (b'0'..=b'7').contains(&c) {
                // Up to three octal digits, but only two when the first is 4–7 so the
                // value stays one byte (`\400` is `\40` followed by `0`).
                let max = if c > b'3' { 2 } else { 3 };
                let mut j = i + 1;
                let mut v: u32 = 0;
                while j < n && j < i + 1 + max && (b'0'..=b'7').contains(&input[j]) {
                    v = v * 8 + u32::from(input[j] - b'0');
                    j += 1;
                }
                out.push((v & 0xff) as u8);
                i = j;
                continue;
            }
            out.push(match c {
                b'a' => 7,
                b'b' => 8,
                b'f' => 12,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 11,
                other => other,
            });
            i += 2;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_js() {
        assert_eq!(super::apply(b"\\x41\\u0042\\103\\n\\q"), b"ABC\nq");
    }
}
