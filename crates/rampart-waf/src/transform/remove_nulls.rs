//! `t:removeNulls`: drops NUL bytes.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    input.iter().copied().filter(|&c| c != 0).collect()
}
