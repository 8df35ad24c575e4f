//! application/x-www-form-urlencoded bodies: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rampart_waf::fuzzing::parse_urlencoded(data);
});
