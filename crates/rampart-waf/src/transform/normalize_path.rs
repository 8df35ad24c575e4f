//! `t:normalizePath`: collapses `//`, removes `./` segments and resolves `../`
//! (never above the root), as ModSecurity does for path evasion.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    normalize(input, false)
}

/// True when `normalize` would return `input` unchanged: no `//`, no `.` or `..`
/// segment (and no `\\` for the Windows flavour). Most values are like that, and the
/// check spares the copy.
pub(crate) fn is_normal(input: &[u8], win: bool) -> bool {
    if win && input.contains(&b'\\') {
        return false;
    }
    let n = input.len();
    input
        .split(|&c| c == b'/')
        .enumerate()
        .all(|(i, seg)| match seg {
            // Empty segments only as the leading `/` or a trailing `/` of a longer path.
            b"" => i == 0 || (i > 0 && n > 1 && input.ends_with(b"/") && !input.ends_with(b"//")),
            b"." | b".." => false,
            _ => true,
        })
        && !input.windows(2).any(|w| w == b"//")
}

/// Shared with normalizePathWin (which first turns `\` into `/`).
pub(crate) fn normalize(input: &[u8], win: bool) -> Vec<u8> {
    let src: Vec<u8> = if win {
        input
            .iter()
            .map(|&c| if c == b'\\' { b'/' } else { c })
            .collect()
    } else {
        input.to_vec()
    };
    if src.is_empty() {
        return src;
    }
    let absolute = src[0] == b'/';
    let trailing = src.len() > 1 && src[src.len() - 1] == b'/';
    let mut segs: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = src.split(|&c| c == b'/').collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing_dir = trailing;
    for (idx, seg) in parts.iter().enumerate() {
        match *seg {
            b"" => {}
            b"." => {
                if idx == last {
                    trailing_dir = true;
                }
            }
            b".." => {
                if matches!(segs.last(), Some(s) if *s != b"..") {
                    segs.pop();
                } else if !absolute {
                    segs.push(seg);
                }
                if idx == last {
                    trailing_dir = true;
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::with_capacity(src.len());
    if absolute {
        out.push(b'/');
    }
    for (i, s) in segs.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(s);
    }
    if trailing_dir && !segs.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalises() {
        assert_eq!(super::apply(b"/a/./b/../../c//d"), b"/c/d");
        assert_eq!(super::apply(b"/../../etc/passwd"), b"/etc/passwd");
        assert_eq!(super::apply(b"../../etc/passwd"), b"../../etc/passwd");
    }

    /// `is_normal` must never call a path normal when `normalize` would change it.
    #[test]
    fn is_normal_agrees_with_normalize() {
        let alphabet: &[u8] = b"a/.\\";
        for len in 0..=7u32 {
            for code in 0..alphabet.len().pow(len) {
                let mut c = code;
                let mut s = Vec::new();
                for _ in 0..len {
                    s.push(alphabet[c % alphabet.len()]);
                    c /= alphabet.len();
                }
                for win in [false, true] {
                    if super::is_normal(&s, win) {
                        assert_eq!(
                            super::normalize(&s, win),
                            s,
                            "{:?} win={win}",
                            String::from_utf8_lossy(&s)
                        );
                    }
                }
            }
        }
        assert!(super::is_normal(b"/products/search", false));
        assert!(super::is_normal(b"/a/b/", false));
        assert!(super::is_normal(b"wireless noise", true));
        assert!(!super::is_normal(b"/a/./b", false));
        assert!(!super::is_normal(b"a\\b", true));
    }
}
