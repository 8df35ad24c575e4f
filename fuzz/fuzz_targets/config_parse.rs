//! Any text fed to the config loader gives a config or located errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(errs) = rampart_config::parse_str(text, std::path::Path::new("fuzz.toml")) {
            for e in &errs.0 {
                let _ = e.to_string();
            }
        }
    }
});
