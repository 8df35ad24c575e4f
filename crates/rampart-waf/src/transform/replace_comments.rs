//! `t:replaceComments`: each C comment `/* … */` (also unterminated) becomes one space.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] == b'/' && i + 1 < n && input[i + 1] == b'*' {
            let mut j = i + 2;
            while j + 1 < n && !(input[j] == b'*' && input[j + 1] == b'/') {
                j += 1;
            }
            out.push(b' ');
            i = if j + 1 < n { j + 2 } else { n };
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
    fn replaces() {
        assert_eq!(super::apply(b"a/*x*/b/*c"), b"a b ");
    }
}
