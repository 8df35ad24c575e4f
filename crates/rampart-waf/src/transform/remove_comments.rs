//! `t:removeComments`: removes `/* */`, `<!-- -->` comments and `--`/`#` to end of line.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let n = input.len();
    let mut i = 0;
    while i < n {
        let rest = &input[i..];
        if rest.starts_with(b"/*") {
            match find(&input[i + 2..], b"*/") {
                Some(p) => i += 2 + p + 2,
                None => i = n,
            }
            continue;
        }
        if rest.starts_with(b"<!--") {
            match find(&input[i + 4..], b"-->") {
                Some(p) => i += 4 + p + 3,
                None => i = n,
            }
            continue;
        }
        if rest.starts_with(b"--") || rest[0] == b'#' {
            while i < n && input[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}
