//! Every transformation on arbitrary bytes, and a chain of them selected by the first
//! byte: never a panic, and the borrowing fast path agrees with the full one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rampart_waf::fuzzing::{transform, TRANSFORMATIONS};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    for name in TRANSFORMATIONS {
        let _ = transform(name, input);
    }
    // A short chain, as rules use them (t:urlDecodeUni,t:htmlEntityDecode,…).
    let mut v = input.to_vec();
    let n = TRANSFORMATIONS.len();
    for k in 0..4 {
        let name = TRANSFORMATIONS[(usize::from(sel) / (k + 1) + k * 7) % n];
        if let Some(out) = transform(name, &v) {
            v = out;
        }
    }
});
