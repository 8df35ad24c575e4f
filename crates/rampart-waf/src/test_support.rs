//! Helpers shared by the crate's unit tests.

/// The next short pseudo-random input over `alphabet` (xorshift64 on `seed`, so a seed gives
/// the same sequence every run): at most `max_len - 1` bytes, byte `i` picked by the state
/// shifted `i * step` bits.
pub(crate) fn random_input(alphabet: &[u8], seed: &mut u64, max_len: u64, step: usize) -> Vec<u8> {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let s = *seed;
    let n = (s % max_len) as usize;
    (0..n)
        .map(|i| alphabet[((s >> (i * step)) as usize) % alphabet.len()])
        .collect()
}
