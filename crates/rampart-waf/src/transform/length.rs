//! `t:length`: the byte length as decimal text.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    input.len().to_string().into_bytes()
}
