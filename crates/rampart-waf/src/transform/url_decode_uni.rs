//! `t:urlDecodeUni`: like urlDecode plus IIS `%uXXXX`; full-width ASCII (U+FF01–FF5E)
//! maps to ASCII, other code points keep their low byte (ModSecurity without a map file).

use super::hexval;

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c == b'%' {
            if i + 5 < input.len() && (input[i + 1] == b'u' || input[i + 1] == b'U') {
                let hs: Option<Vec<u8>> = input[i + 2..i + 6].iter().map(|&b| hexval(b)).collect();
                if let Some(h) = hs {
                    let code = (u32::from(h[0]) << 12)
                        | (u32::from(h[1]) << 8)
                        | (u32::from(h[2]) << 4)
                        | u32::from(h[3]);
                    let b = if (0xff01..=0xff5e).contains(&code) {
                        (code - 0xfee0) as u8
                    } else {
                        (code & 0xff) as u8
                    };
                    out.push(b);
                    i += 6;
                    continue;
                }
            }
            if i + 2 < input.len() {
                if let (Some(h), Some(l)) = (hexval(input[i + 1]), hexval(input[i + 2])) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(if c == b'+' { b' ' } else { c });
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_unicode() {
        assert_eq!(super::apply(b"%u0041%uff0e%2e+"), b"A.. ");
    }
}
