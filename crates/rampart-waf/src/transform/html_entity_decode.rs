//! `t:htmlEntityDecode`: `&#DD;`, `&#xHH;` (semicolon optional) and the named entities
//! ModSecurity knows (quot, amp, lt, gt, nbsp). Code points keep their low byte.

use super::hexval;

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    let n = input.len();
    while i < n {
        if input[i] == b'&' && i + 1 < n {
            if input[i + 1] == b'#' {
                let (hex, start) = if i + 2 < n && (input[i + 2] | 0x20) == b'x' {
                    (true, i + 3)
                } else {
                    (false, i + 2)
                };
                let mut j = start;
                let mut val: u32 = 0;
                while j < n {
                    let d = if hex {
                        hexval(input[j]).map(u32::from)
                    } else if input[j].is_ascii_digit() {
                        Some(u32::from(input[j] - b'0'))
                    } else {
                        None
                    };
                    match d {
                        Some(d) => {
                            val = val
                                .saturating_mul(if hex { 16 } else { 10 })
                                .saturating_add(d);
                            j += 1;
                        }
                        None => break,
                    }
                }
                if j > start {
                    out.push((val & 0xff) as u8);
                    i = if j < n && input[j] == b';' { j + 1 } else { j };
                    continue;
                }
            } else {
                let mut j = i + 1;
                while j < n && input[j].is_ascii_alphanumeric() {
                    j += 1;
                }
                let name = input[i + 1..j].to_ascii_lowercase();
                let rep = match name.as_slice() {
                    b"quot" => Some(b'"'),
                    b"amp" => Some(b'&'),
                    b"lt" => Some(b'<'),
                    b"gt" => Some(b'>'),
                    b"nbsp" => Some(0xa0),
                    _ => None,
                };
                if let Some(r) = rep {
                    out.push(r);
                    i = if j < n && input[j] == b';' { j + 1 } else { j };
                    continue;
                }
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_entities() {
        assert_eq!(super::apply(b"&lt;a&#x41;&#66&quot;&foo;"), b"<aAB\"&foo;");
    }
}
