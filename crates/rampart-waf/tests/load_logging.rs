//! The load-time log lines of the regex engine report (`tracing`). In a test binary of
//! its own: `tracing` caches per call site whether anyone listens, and other tests loading
//! rules on parallel threads without a subscriber could make that cache say "nobody" while
//! this test's debug-level subscriber is installed (seen as a flaky failure under load).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rampart_waf::RuleSet;
use std::sync::{Arc, Mutex};

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn load_logs_engine_counts_at_info_and_fallbacks_at_debug() {
    let text = r#"SecRule ARGS "@rx ^a+$" "id:1,phase:1,pass"
SecRule ARGS "@rx (?>ab|a)c" "id:2,phase:1,pass"
SecRule ARGS "@rx (a)\1" "id:3,phase:1,pass"
"#;
    let run = |level: tracing::Level| {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(sub, || RuleSet::from_text("r.conf", text).unwrap());
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        out
    };
    let info = run(tracing::Level::INFO);
    assert!(info.contains(" INFO "), "{info}");
    assert!(
        info.contains("WAF rules loaded; @rx engines: 1 regex, 1 rewrite, 1 fancy-regex"),
        "{info}"
    );
    assert!(info.contains("rx_fancy_regex=1"), "{info}");
    assert!(!info.contains("WAF @rx engine"), "{info}");
    let debug = run(tracing::Level::DEBUG);
    assert!(
        debug.contains("rule=2 engine=\"rewrite\"")
            && debug.contains("rule=3 engine=\"fancy-regex\""),
        "{debug}"
    );
    assert!(!debug.contains("rule=1 "), "{debug}");
}
