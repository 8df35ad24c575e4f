//! `@detectSQLi`: libinjection's SQLi tokenizer/fingerprinter (pure-Rust port); the
//! fingerprint is captured as TX.0 like ModSecurity.

pub fn check(input: &[u8]) -> Option<Vec<u8>> {
    let r = libinjectionrs::detect_sqli(input);
    if r.is_injection() {
        let fp = r.fingerprint.map(|f| f.to_string()).unwrap_or_default();
        Some(fp.into_bytes())
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
}
