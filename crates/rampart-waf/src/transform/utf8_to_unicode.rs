//! `t:utf8toUnicode`: multi-byte UTF-8 sequences become `%uXXXX`, so rules can match
//! the IIS-style notation; invalid bytes pass through.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    if input.is_ascii() {
        return input.to_vec();
    }
    let mut out = Vec::with_capacity(input.len() * 2);
    let mut i = 0;
    let n = input.len();
    while i < n {
        let c = input[i];
        let len = match c {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 1,
        };
        if len > 1 && i + len <= n {
            if let Ok(s) = std::str::from_utf8(&input[i..i + len]) {
                if let Some(ch) = s.chars().next() {
                    out.extend_from_slice(format!("%u{:04x}", ch as u32).as_bytes());
                    i += len;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn converts() {
        assert_eq!(super::apply("aé".as_bytes()), b"a%u00e9");
    }
}
