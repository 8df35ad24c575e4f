//! `@detectSQLi` and `@detectXSS` (the libinjectionrs port) on arbitrary bytes: a verdict,
//! never a panic (the port indexes slices directly).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(fp) = rampart_waf::fuzzing::detect_sqli(data) {
        assert!(!fp.is_empty() && fp.len() <= 8);
    }
    let _ = rampart_waf::fuzzing::detect_xss(data);
});
