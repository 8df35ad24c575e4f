//! `@eq`, `@ge`, `@gt`, `@le`, `@lt`: integer comparisons with C `atoi` semantics
//! (leading whitespace and sign, then digits; anything else counts as 0).

pub fn atoi(s: &[u8]) -> i64 {
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'-' || s[i] == b'+') {
        neg = s[i] == b'-';
        i += 1;
    }
    let mut v: i64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add(i64::from(s[i] - b'0'));
        i += 1;
    }
    if neg {
        -v
    } else {
        v
    }
}

/// Which comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `@eq`
    Eq,
    /// `@ge`
    Ge,
    /// `@gt`
    Gt,
    /// `@le`
    Le,
    /// `@lt`
    Lt,
}

pub fn check(cmp: Cmp, input: &[u8], param: &[u8]) -> bool {
    let a = atoi(input);
    let b = atoi(param);
    match cmp {
        Cmp::Eq => a == b,
        Cmp::Ge => a >= b,
        Cmp::Gt => a > b,
        Cmp::Le => a <= b,
        Cmp::Lt => a < b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares() {
        assert!(check(Cmp::Eq, b"0", b"abc"));
        assert!(check(Cmp::Ge, b"10", b" 5"));
        assert!(check(Cmp::Lt, b"-1", b"0"));
    }
}
