//! `@detectXSS`: libinjection's HTML5-tokenizer based XSS detection.

use crate::byteset::{ByteSet, Needs};

pub fn check(input: &[u8]) -> bool {
    libinjectionrs::detect_xss(input).is_injection()
}

/// The bytes an input must contain for [`check`] to be true: `<` or `=`.
///
/// libinjectionrs (0.1.1) reports XSS only for a DOCTYPE, a black tag name, a comment
/// (each needs a tag opened by `<`, and its tokenizer reaches tag states only from the
/// data state on `<`) or an attribute value right after a black/URL/style attribute
/// name (an attribute value follows a name only after `=`; the value the quoted
/// contexts start in follows no name). Values without either byte skip the five
/// tokenizer passes (`tests::needs_never_rule_out_a_detection`).
pub fn needs() -> Needs {
    Needs::from_sets(vec![ByteSet::from_bytes(b"<=")])
}

#[cfg(test)]
mod tests {
    #[test]
    fn detects() {
        assert!(super::check(b"<script>alert(1)</script>"));
        assert!(!super::check(b"hello"));
    }

    /// No input [`super::needs`] rules out is XSS: random inputs built from pieces the
    /// tokenizer treats specially (quotes, `>`, `/`, comments, black attributes and URL
    /// schemes, NUL and 0xFF), and known attack shapes that lack `<` and `=`. The same
    /// pieces with `=` and `<` among them are detected, so they do reach XSS.
    #[test]
    fn needs_never_rule_out_a_detection() {
        use crate::byteset::ByteSet;
        let needs = super::needs();
        let pieces: [&[u8]; 24] = [
            b"onerror",
            b"onload",
            b"style",
            b"src",
            b"href",
            b"xmlns",
            b"javascript:",
            b"alert(1)",
            b" ",
            b"\t",
            b"'",
            b"\"",
            b"`",
            b">",
            b"/",
            b"!--",
            b"?import",
            b"![if",
            b"!DOCTYPE",
            b"%",
            b"&#",
            b"\x00",
            b"\xff",
            b"x",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || crate::test_support::xorshift(&mut seed);
        let mut detected_with = 0;
        for _ in 0..100_000 {
            let n = next() % 8;
            let mut input = Vec::new();
            let mut with = Vec::new();
            for _ in 0..n {
                let r = next();
                let p = pieces[(r % pieces.len() as u64) as usize];
                input.extend_from_slice(p);
                with.extend_from_slice(p);
                match (r >> 32) % 6 {
                    0 => with.push(b'='),
                    1 => with.push(b'<'),
                    _ => {}
                }
            }
            assert!(!needs.may_hold(&ByteSet::of(&input)));
            assert!(
                !super::check(&input),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
            if super::check(&with) {
                detected_with += 1;
            }
        }
        assert!(detected_with > 1000, "{detected_with}");
        for s in [
            &b"javascript:alert(1)"[..],
            b"onerror alert(1)",
            b"' onload alert(1) x '",
            b"\" style 'x' \"",
            b"`onclick`alert(1)",
            b"![if IE]>",
            b"!DOCTYPE html>",
        ] {
            assert!(!needs.may_hold(&ByteSet::of(s)));
            assert!(!super::check(s), "{:?}", String::from_utf8_lossy(s));
        }
        assert!(super::check(b"x onerror=alert(1)"));
        assert!(super::check(b"<!DOCTYPE html>"));
    }
}
