//! `@validateUrlEncoding`: matches on `%` not followed by two hex digits.

pub fn check(input: &[u8]) -> bool {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            if i + 2 >= input.len() {
                return true;
            }
            if !input[i + 1].is_ascii_hexdigit() || !input[i + 2].is_ascii_hexdigit() {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn validates() {
        assert!(!super::check(b"a%20b"));
        assert!(super::check(b"a%2"));
        assert!(super::check(b"a%zz"));
    }
}
