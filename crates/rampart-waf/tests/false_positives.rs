//! False positives: our own corpus of benign requests (`tests/benign/requests.jsonl`,
//! produced by `tests/benign/generate.py`) replayed through CRS v4 in blocking mode
//! (`SecRuleEngine On`, inbound anomaly threshold 5, outbound 4) at paranoia levels 1
//! and 2. A request that gets interrupted is a false positive. PL1 must have none; the
//! PL2 rate is reported (CRS documents PL2 as needing tuning) and recorded in
//! `docs/waf.md`.
//!
//! `WAF_FP_VERBOSE=1` prints every rule that logged, also for requests that passed.

#![allow(clippy::unwrap_used)]

use rampart_waf::{FsLoader, Loader, MemoryLoader, RuleSet};
use std::path::{Path, PathBuf};

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if p.join("crs/rules").exists() && p.join("waf-corpus/modsecurity-test.conf").exists() {
        Some(p)
    } else {
        None
    }
}

/// Files from disk with a few in-memory files layered on top.
struct Overlay {
    fs: FsLoader,
    mem: MemoryLoader,
}

impl Loader for Overlay {
    fn read(&self, path: &str) -> Result<String, String> {
        self.mem.read(path).or_else(|_| self.fs.read(path))
    }
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        match self.mem.glob(pattern) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => self.fs.glob(pattern),
        }
    }
}

/// CRS with the corpus's engine settings (JSON/XML body processors, body access),
/// `SecRuleEngine On`, the given paranoia level and thresholds 5 (inbound) / 4.
fn crs_at(root: &Path, pl: u8) -> RuleSet {
    let settings = format!(
        "SecAction \"id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level={pl}\"\n\
         SecAction \"id:900110,phase:1,pass,t:none,nolog,\
         setvar:tx.inbound_anomaly_score_threshold=5,setvar:tx.outbound_anomaly_score_threshold=4\"\n"
    );
    let loader = Overlay {
        fs: FsLoader::with_root(root),
        mem: MemoryLoader::new().with("fp-settings.conf", &settings),
    };
    let (rs, report) = RuleSet::load(
        &loader,
        &[
            "waf-corpus/modsecurity-test.conf",
            "crs/crs-setup.conf.example",
            "fp-settings.conf",
            "crs/rules/*.conf",
        ],
    )
    .unwrap_or_else(|e| panic!("CRS failed to load: {e}"));
    assert!(report.rules > 500);
    rs.with_engine_mode(rampart_waf::EngineMode::On)
}

fn b64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    out
}

struct Sample {
    name: String,
    /// For `crs-pl1-flags.jsonl`: the CRS rule that flags it and why.
    rule: Option<u32>,
    reason: String,
    category: String,
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn samples() -> Vec<Sample> {
    load_samples("requests.jsonl")
}

fn load_samples(file: &str) -> Vec<Sample> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/benign")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            Sample {
                name: s("name"),
                rule: v["rule"].as_u64().map(|r| r as u32),
                reason: s("reason"),
                category: s("category"),
                method: s("method"),
                uri: s("uri"),
                headers: v["headers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap_or("").to_string(),
                            h[1].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect(),
                body: b64(v["body_b64"].as_str().unwrap_or("")),
            }
        })
        .collect()
}

/// Runs one request through every phase; returns the logged rules (id, then message
/// and matched data) and whether the transaction was interrupted.
fn run(rs: &RuleSet, s: &Sample) -> (bool, Vec<String>) {
    let mut tx = rs.transaction();
    tx.process_connection("198.51.100.7", 52344, "192.0.2.10", 443);
    tx.process_uri(&s.uri, &s.method, "HTTP/1.1");
    for (n, v) in &s.headers {
        tx.add_request_header(n, v);
    }
    if !s.body.is_empty() {
        tx.add_request_header("Content-Length", &s.body.len().to_string());
    }
    let mut blocked = tx.process_request_headers().is_some();
    if !blocked {
        tx.append_request_body(&s.body);
        blocked = tx.process_request_body().is_some();
    }
    if !blocked {
        let page = b"<!doctype html><html><head><title>OK</title></head><body><p>Thanks!</p></body></html>";
        tx.add_response_header("Content-Type", "text/html; charset=utf-8");
        tx.add_response_header("Content-Length", &page.len().to_string());
        blocked = tx.process_response_headers(200, "HTTP/1.1").is_some();
        if !blocked && tx.response_body_wanted() {
            tx.append_response_body(page);
            blocked = tx.process_response_body().is_some();
        }
    }
    tx.process_logging();
    let logged = tx
        .matched_rules()
        .iter()
        .filter(|m| m.log)
        .map(|m| {
            format!(
                "{} {} [{}: {}]",
                m.id, m.msg, m.matched_var_name, m.matched_data
            )
        })
        .collect();
    (blocked, logged)
}

/// Replays the corpus at `pl`; returns (false positives, total).
fn false_positive_rate(root: &Path, pl: u8) -> (usize, usize) {
    let rs = crs_at(root, pl);
    let verbose = std::env::var("WAF_FP_VERBOSE").is_ok();
    let all = samples();
    let mut fps = 0;
    for s in &all {
        let (blocked, logged) = run(&rs, s);
        if blocked {
            fps += 1;
            eprintln!("PL{pl} false positive {} ({}):", s.name, s.category);
        } else if verbose && !logged.is_empty() {
            eprintln!("PL{pl} passed with matches {} ({}):", s.name, s.category);
        }
        if blocked || verbose {
            for l in &logged {
                eprintln!("    {l}");
            }
        }
    }
    let rate = fps as f64 * 100.0 / all.len().max(1) as f64;
    eprintln!(
        "PL{pl}: {fps} false positives of {} benign requests ({rate:.2} %)",
        all.len()
    );
    (fps, all.len())
}

#[test]
fn benign_corpus_is_large_and_varied() {
    let all = samples();
    assert!(all.len() >= 200, "{}", all.len());
    let mut names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "sample names must be unique");
    for cat in [
        "json",
        "form",
        "code",
        "markdown",
        "search",
        "multipart",
        "cookies",
        "tokens",
        "long-query",
    ] {
        assert!(
            all.iter().filter(|s| s.category == cat).count() >= 10,
            "category {cat}"
        );
    }
}

#[test]
fn crs_pl1_has_no_false_positives() {
    let Some(root) = shared() else {
        eprintln!("skipping: ../shared (CRS) not found");
        return;
    };
    let (fps, total) = false_positive_rate(&root, 1);
    assert!(total >= 200);
    assert_eq!(fps, 0, "PL1 false positives (see stderr)");
}

#[test]
fn crs_pl2_false_positive_rate() {
    let Some(root) = shared() else {
        eprintln!("skipping: ../shared (CRS) not found");
        return;
    };
    let (fps, total) = false_positive_rate(&root, 2);
    println!("PL2: {fps}/{total}");
    // Reported, not asserted: PL2 is meant to be tuned per site (docs/waf.md).
    assert!(fps <= total);
}

/// Benign requests that CRS itself flags at PL1 (ModSecurity blocks them too: the
/// regexes match; see `reason`). They are kept out of the false-positive count but must
/// stay blocked by the named rule, which shows the engine evaluates them as CRS intends.
#[test]
fn crs_pl1_flags_these_by_design() {
    let Some(root) = shared() else {
        eprintln!("skipping: ../shared (CRS) not found");
        return;
    };
    let rs = crs_at(&root, 1);
    let flagged = load_samples("crs-pl1-flags.jsonl");
    assert!(!flagged.is_empty());
    for s in &flagged {
        let (blocked, logged) = run(&rs, s);
        let rule = s.rule.unwrap();
        assert!(blocked, "{} not blocked ({})", s.name, s.reason);
        assert!(
            logged.iter().any(|l| l.starts_with(&format!("{rule} "))),
            "{}: rule {rule} did not match ({}): {logged:?}",
            s.name,
            s.reason
        );
    }
}
