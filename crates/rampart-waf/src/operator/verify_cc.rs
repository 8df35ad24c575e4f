//! `@verifyCC`: finds credit-card-number candidates with the given regex and matches when
//! one of them passes the Luhn check (ModSecurity's behaviour; separators inside a
//! candidate are ignored).

use super::rx::CompiledRegex;

/// Luhn check over the digits of `s` (at least 13 digits, as card numbers have).
pub fn luhn(s: &[u8]) -> bool {
    let digits: Vec<u32> = s
        .iter()
        .filter(|c| c.is_ascii_digit())
        .map(|&c| u32::from(c - b'0'))
        .collect();
    if digits.len() < 13 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The first regex match that is a Luhn-valid number.
pub fn check(re: &CompiledRegex, input: &[u8]) -> Option<Vec<u8>> {
    re.find_iter(input).into_iter().find(|m| luhn(m))
}
