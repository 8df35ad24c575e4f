//! multipart/form-data: the first line is the Content-Type value, the rest the body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|&c| c == b'\n') {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (&b"multipart/form-data; boundary=XX"[..], data),
    };
    let _ = rampart_waf::fuzzing::parse_multipart(body, ct);
});
