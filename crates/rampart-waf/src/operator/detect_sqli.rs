//! `@detectSQLi`: libinjection's SQLi tokenizer/fingerprinter (pure-Rust port); the
//! fingerprint is captured as TX.0 like ModSecurity.

use libinjectionrs::{SqliFlags, SqliState};

pub fn check(input: &[u8]) -> Option<Vec<u8>> {
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
}
