//! JSON bodies with a small depth limit (deep nesting must be an error, not a crash).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rampart_waf::fuzzing::parse_json(data, 64);
});
