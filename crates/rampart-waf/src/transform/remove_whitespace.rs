//! `t:removeWhitespace`: drops all whitespace (incl. NBSP).

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    input
        .iter()
        .copied()
        .filter(|&c| !super::is_space(c))
        .collect()
}
