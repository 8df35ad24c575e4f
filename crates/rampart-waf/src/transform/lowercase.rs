//! `t:lowercase`: ASCII lowercasing (bytes ≥ 0x80 untouched, like ModSecurity).

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    input.to_ascii_lowercase()
}
