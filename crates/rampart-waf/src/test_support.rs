//! Helpers shared by the crate's unit tests.

/// The next short pseudo-random input over `alphabet` (xorshift64 on `seed`, so a seed gives
/// the same sequence every run): at most `max_len - 1` bytes, byte `i` picked by the state
/// shifted `i * step` bits (modulo 64).
pub(crate) fn random_input(alphabet: &[u8], seed: &mut u64, max_len: u64, step: usize) -> Vec<u8> {
    let s = xorshift(seed);
    if max_len == 0 || alphabet.is_empty() {
        return Vec::new(); // nothing to pick: no length below 0, no byte from no alphabet
    }
    let n = (s % max_len) as usize;
    // The shift wraps at 64 bits: `i * step` may pass 63 (a plain shift would overflow),
    // and below 64 the bytes are those the old plain shift gave.
    (0..n)
        .map(|i| alphabet[((s >> (i.wrapping_mul(step) % 64)) as usize) % alphabet.len()])
        .collect()
}

/// The next state of xorshift64 (Marsaglia's 13/7/17), returned: a reproducible random stream
/// for tests that pick from their own tables.
pub(crate) fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[cfg(test)]
mod tests {
    use super::random_input;

    /// Any arguments give an input (long inputs with wide steps used to overflow the shift).
    #[test]
    fn random_input_takes_any_arguments() {
        let mut seed = 0x2545_f491_4f6c_dd1d;
        for (max_len, step) in [
            (0, 4),
            (1, 0),
            (14, 4),
            (100, 5),
            (1000, 64),
            (70, usize::MAX),
        ] {
            for _ in 0..20 {
                let v = random_input(b"abc", &mut seed, max_len, step);
                assert!(v.len() as u64 <= max_len.saturating_sub(1));
                assert!(v.iter().all(|b| b"abc".contains(b)));
            }
        }
        assert!(random_input(b"", &mut seed, 10, 1).is_empty());
    }
}
