//! `t:replaceNulls`: NUL bytes become spaces.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    input
        .iter()
        .map(|&c| if c == 0 { b' ' } else { c })
        .collect()
}
