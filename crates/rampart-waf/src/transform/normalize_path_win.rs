//! `t:normalizePathWin`: normalizePath after turning backslashes into slashes.

pub(crate) fn apply(input: &[u8]) -> Vec<u8> {
    super::normalize_path::normalize(input, true)
}
