//! `t:removeComments`: removes `/* */` and `<!-- -->` comments; `--` or `#` outside a
//! comment ends the value (everything from there on is dropped), as ModSecurity does.
//! An unterminated comment becomes one space. Like ModSecurity, the byte right after a
//! comment's end is copied without being checked for the start of another comment.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let n = input.len();
    let mut i = 0;
    let mut in_comment = false;
    while i < n {
        let rest = &input[i..];
        if !in_comment {
            if rest.starts_with(b"/*") {
                in_comment = true;
                i += 2;
            } else if rest.starts_with(b"<!--") {
                in_comment = true;
                i += 4;
            } else if rest.starts_with(b"--") || rest[0] == b'#' {
                break;
            } else {
                out.push(input[i]);
                i += 1;
            }
        } else {
            let close = if rest.starts_with(b"*/") {
                2
            } else if rest.starts_with(b"-->") {
                3
            } else {
                0
            };
            if close == 0 {
                i += 1;
                continue;
            }
            in_comment = false;
            i += close;
            if i < n {
                out.push(input[i]);
                i += 1;
            }
        }
    }
    if in_comment {
        out.push(b' ');
    }
    out
}
