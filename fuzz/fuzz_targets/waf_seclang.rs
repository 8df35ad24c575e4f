//! Any text through the SecLang parser (lexer, directives, actions, operators incl. regex
//! compilation): a rule set or a located error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match rampart_waf::fuzzing::parse_rules(&text) {
        Ok(n) => {
            let _ = n;
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
