//! `@detectXSS`: libinjection's HTML5-tokenizer based XSS detection.

pub fn check(input: &[u8]) -> bool {
    libinjectionrs::detect_xss(input).is_injection()
}

#[cfg(test)]
mod tests {
    #[test]
    fn detects() {
        assert!(super::check(b"<script>alert(1)</script>"));
        assert!(!super::check(b"hello"));
    }
}
