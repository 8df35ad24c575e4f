//! `t:uppercase`: ASCII uppercasing.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    input.to_ascii_uppercase()
}
