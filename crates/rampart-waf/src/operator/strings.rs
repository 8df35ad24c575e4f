//! String operators: `@streq`, `@contains`, `@beginsWith`, `@endsWith`, `@within`,
//! `@containsWord`, `@strmatch` — all case-sensitive, as in ModSecurity.

/// Which string test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    /// `@streq`
    Eq,
    /// `@contains` / `@strmatch`
    Contains,
    /// `@beginsWith`
    BeginsWith,
    /// `@endsWith`
    EndsWith,
    /// `@within`: the input occurs inside the parameter.
    Within,
    /// `@containsWord`
    ContainsWord,
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    if n.is_empty() {
        return Some(0);
    }
    if n.len() > h.len() {
        return None;
    }
    // memmem (SIMD) rather than a compare per window: `@within` searches the long
    // CRS lists (allowed methods, restricted headers) once per value.
    memchr::memmem::find(h, n)
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

pub fn check(op: StrOp, input: &[u8], param: &[u8]) -> bool {
    match op {
        StrOp::Eq => input == param,
        StrOp::Contains => find(input, param).is_some(),
        StrOp::BeginsWith => input.starts_with(param),
        StrOp::EndsWith => input.ends_with(param),
        StrOp::Within => !input.is_empty() && find(param, input).is_some(),
        StrOp::ContainsWord => {
            if param.is_empty() {
                return true;
            }
            let mut start = 0;
            while let Some(p) = find(&input[start..], param) {
                let s = start + p;
                let e = s + param.len();
                let before = s == 0 || !is_word(input[s - 1]);
                let after = e == input.len() || !is_word(input[e]);
                if before && after {
                    return true;
                }
                start = s + 1;
                if start >= input.len() {
                    break;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_ops() {
        assert!(check(StrOp::Within, b"GET", b"GET HEAD POST"));
        assert!(!check(StrOp::Within, b"PUT", b"GET HEAD POST"));
        assert!(check(StrOp::ContainsWord, b"a select b", b"select"));
        assert!(!check(StrOp::ContainsWord, b"selected", b"select"));
        assert!(check(StrOp::EndsWith, b"file.php", b".php"));
    }
}
