//! `t:cmdLine`: normalises shell/cmd evasions — drops `\ " ' ^`, turns `,` `;`, space,
//! tab, CR and LF into one space (not VT/FF, as in ModSecurity), drops spaces before `/` and `(`, lowercases.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(input.len());
    let mut space = false;
    for &c in input {
        match c {
            b'\\' | b'"' | b'\'' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(c);
            }
            _ => {
                space = false;
                out.push(c.to_ascii_lowercase());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalises() {
        assert_eq!(super::apply(b"C^md.EXE  ,  /c \"dir\""), b"cmd.exe/c dir");
    }
}
