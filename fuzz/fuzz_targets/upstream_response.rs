//! Any bytes as an upstream server's response to the HTTP/1 client: head parser (incl.
//! interim 1xx heads) and body decoder (length, chunked, close-delimited), in reads of any size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rampart_upstream::fuzzing::response(data);
});
