//! `t:cssDecode`: CSS 2 escapes — `\` + 1–6 hex digits (optional trailing whitespace
//! swallowed), `\` + newline removed, `\` + other char → that char.

use super::hexval;

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] == b'\\' {
            if i + 1 >= n {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            let mut code: u32 = 0;
            while j < n && j < i + 7 {
                match hexval(input[j]) {
                    Some(h) => {
                        code = code << 4 | u32::from(h);
                        j += 1;
                    }
                    None => break,
                }
            }
            if j > i + 1 {
                out.push(if (0xff01..=0xff5e).contains(&code) {
                    (code - 0xfee0) as u8
                } else {
                    (code & 0xff) as u8
                });
                if j < n && super::is_c_space(input[j]) {
                    j += 1;
                }
                i = j;
                continue;
            }
            if input[i + 1] == b'\n' {
                i += 2;
                continue;
            }
            out.push(input[i + 1]);
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
    fn decodes_css() {
        assert_eq!(super::apply(b"\\6a \\61vascript\\:"), b"javascript:");
    }
}
