//! `t:trim`, `t:trimLeft`, `t:trimRight`: strip C `isspace` whitespace (space, `\t`,
//! `\n`, `\v`, `\f`, `\r`; not NBSP, unlike compress/removeWhitespace) at the ends.

pub(crate) fn left(input: &[u8]) -> Vec<u8> {
    let s = input
        .iter()
        .position(|&c| !super::is_c_space(c))
        .unwrap_or(input.len());
    input[s..].to_vec()
}

pub(crate) fn right(input: &[u8]) -> Vec<u8> {
    let e = input
        .iter()
        .rposition(|&c| !super::is_c_space(c))
        .map_or(0, |p| p + 1);
    input[..e].to_vec()
}

pub(crate) fn both(input: &[u8]) -> Vec<u8> {
    right(&left(input))
}
