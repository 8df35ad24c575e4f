//! `@detectSQLi`: libinjection's SQLi tokenizer/fingerprinter (pure-Rust port); the
//! fingerprint is captured as TX.0 like ModSecurity.

use libinjectionrs::{SqliFlags, SqliState};

pub fn check(input: &[u8]) -> Option<Vec<u8>> {
    if one_token(input) {
        return None;
    }
    // What `libinjectionrs::detect_sqli` does, except that it fingerprints the input a
    // second time after the verdict whatever the verdict: here only an injection's
    // fingerprint is taken (same state, same flags, so the same fingerprint).
    let mut st = SqliState::new(input, SqliFlags::FLAG_NONE);
    if st.detect() {
        Some(st.get_fingerprint().to_string().into_bytes())
    } else {
        None
    }
}

/// True for inputs libinjectionrs (0.1.1) reads as one token without reading them as
/// SQL: a word (`[A-Za-z_][A-Za-z0-9_]*`: no delimiter, `.` or `` ` `` ends or splits
/// it, and the string-prefix letters `b e n q u x` only start a string before a quote)
/// or digits only (one number). No quote means one pass without a quote context, no
/// comment means no MySQL re-parse, and a one-character fingerprint is blacklisted only
/// when it is `X` (evil), which neither a keyword lookup nor a number yields. Most
/// argument names and many values are such words; they skip the tokenizer, its
/// per-word allocations and the blacklist lookup (`tests::one_token_inputs_are_not_sqli`).
fn one_token(input: &[u8]) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    match input.first() {
        Some(b) if b.is_ascii_digit() => input.iter().all(u8::is_ascii_digit),
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => input.iter().all(word),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn detects() {
        assert!(super::check(b"1' OR '1'='1").is_some());
        assert!(super::check(b"hello world").is_none());
    }

    /// Same verdict and fingerprint as the crate's one-call API.
    #[test]
    fn agrees_with_detect_sqli() {
        let inputs: [&[u8]; 12] = [
            b"1' OR '1'='1",
            b"hello world",
            b"1 union select 1,2,3--",
            b"' or 1=1#",
            b"admin'--",
            b"\" or \"\"=\"",
            b"1; drop table users",
            b"O'Brien",
            b"-1 LOCK IN SHARE MODE UNION SELECT 1",
            b"1 into outfile 'x'",
            b"select * from t where a='1' # c",
            b"",
        ];
        for i in inputs {
            let r = libinjectionrs::detect_sqli(i);
            let want = r
                .is_injection()
                .then(|| r.fingerprint.map(|f| f.to_string()).unwrap_or_default());
            let got = super::check(i).map(|v| String::from_utf8_lossy(&v).into_owned());
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(i));
        }
    }

    /// The full detection on an input the fast path answers.
    fn slow(i: &[u8]) -> bool {
        libinjectionrs::SqliState::new(i, libinjectionrs::SqliFlags::FLAG_NONE).detect()
    }

    /// [`super::one_token`] inputs are never SQLi for libinjectionrs: every keyword of
    /// its table that is such a word (as listed, lowercased, mixed case, with a suffix),
    /// and random words and numbers built from keywords, letters, digits and `_`.
    #[test]
    fn one_token_inputs_are_not_sqli() {
        let mut words = 0;
        for k in libinjectionrs::sqli::sqli_data::SQL_KEYWORDS {
            let w = k.word.as_bytes();
            let mixed: Vec<u8> = w
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if i % 2 == 0 {
                        b.to_ascii_lowercase()
                    } else {
                        *b
                    }
                })
                .collect();
            for v in [
                w.to_vec(),
                w.to_ascii_lowercase(),
                mixed,
                [w, b"_1"].concat(),
                [b"x", w].concat(),
            ] {
                if super::one_token(&v) {
                    words += 1;
                    assert!(!slow(&v), "{:?}", String::from_utf8_lossy(&v));
                }
            }
        }
        assert!(words > 1000, "{words}");
        let pieces: [&[u8]; 16] = [
            b"union", b"select", b"or", b"and", b"sleep", b"1", b"0", b"9", b"e", b"x", b"b", b"n",
            b"q", b"u", b"_", b"from",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || crate::test_support::xorshift(&mut seed);
        let mut fast = 0;
        for _ in 0..100_000 {
            let n = 1 + next() % 8;
            let mut v = Vec::new();
            for _ in 0..n {
                v.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            if super::one_token(&v) {
                fast += 1;
                assert!(!slow(&v), "{:?}", String::from_utf8_lossy(&v));
            }
            assert_eq!(
                super::check(&v).is_some(),
                slow(&v),
                "{:?}",
                String::from_utf8_lossy(&v)
            );
        }
        assert!(fast > 10_000, "{fast}");
        for v in [
            &b"0"[..],
            b"007",
            b"12345678901234567890123456789012345678901234567890",
        ] {
            assert!(super::one_token(v) && !slow(v));
        }
        // Not one token: a digit-led word, a dot, a quote, a comment.
        for v in [&b"1union"[..], b"a.b", b"x'1'", b"a#", b""] {
            assert!(!super::one_token(v));
        }
    }
}
