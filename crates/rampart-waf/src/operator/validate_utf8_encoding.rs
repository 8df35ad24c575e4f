//! `@validateUtf8Encoding`: matches on invalid, overlong or truncated UTF-8.

pub fn check(input: &[u8]) -> bool {
    std::str::from_utf8(input).is_err()
}
