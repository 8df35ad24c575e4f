//! `t:parityEven7bit`, `t:parityOdd7bit`, `t:parityZero7bit`: set or clear bit 7 of every
//! byte. As in ModSecurity the parity is computed over the whole byte as received, then
//! bit 7 is set (odd count, for even parity) or cleared.

fn odd_bits(c: u8) -> bool {
    c.count_ones() % 2 == 1
}

pub(crate) fn even(input: &[u8]) -> Vec<u8> {
    input
        .iter()
        .map(|&c| if odd_bits(c) { c | 0x80 } else { c & 0x7f })
        .collect()
}

pub(crate) fn odd(input: &[u8]) -> Vec<u8> {
    input
        .iter()
        .map(|&c| if odd_bits(c) { c & 0x7f } else { c | 0x80 })
        .collect()
}

pub(crate) fn zero(input: &[u8]) -> Vec<u8> {
    input.iter().map(|&c| c & 0x7f).collect()
}
