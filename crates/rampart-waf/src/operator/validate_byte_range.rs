//! `@validateByteRange`: matches when any byte is outside the allowed ranges
//! (`"1-255"`, `"9,10,13,32-126"`).

/// Parsed as a 256-entry allow table.
pub fn parse(param: &str) -> Result<[bool; 256], String> {
    let mut allowed = [false; 256];
    for part in param.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: usize = a.parse().map_err(|_| format!("bad byte range {part:?}"))?;
        let b: usize = b.parse().map_err(|_| format!("bad byte range {part:?}"))?;
        if a > 255 || b > 255 || a > b {
            return Err(format!("bad byte range {part:?}"));
        }
        for x in allowed.iter_mut().take(b + 1).skip(a) {
            *x = true;
        }
    }
    Ok(allowed)
}

/// Returns the first offending byte.
pub fn check(allowed: &[bool; 256], input: &[u8]) -> Option<u8> {
    input.iter().copied().find(|&c| !allowed[c as usize])
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges() {
        let t = super::parse("32-126,9").unwrap_or([false; 256]);
        assert!(super::check(&t, b"ab c\t").is_none());
        assert_eq!(super::check(&t, b"a\x01"), Some(1));
    }
}
