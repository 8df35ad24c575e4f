//! `t:urlDecode`: `%XX` and `+`; invalid escapes are kept as they are (ModSecurity).

use super::hexval;

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hexval(input[i + 1]), hexval(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
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
    fn decodes() {
        assert_eq!(super::apply(b"a%20b+c%zz%4"), b"a b c%zz%4");
    }
}
