//! Replays the CRS v4 regression corpus (shared/waf-corpus/crs-regression.jsonl) directly
//! against the engine, loading CRS the way the corpus README prescribes.
//!
//! Each stage's raw HTTP bytes are parsed here (request line, headers, Content-Length or
//! chunked body) and fed to a fresh transaction; the backend is simulated (200, empty
//! body; `POST /reflect` answers with the JSON-described response). A stage passes when
//! every `expect_ids` id and no `no_expect_ids` id is among the matched rules that have
//! `log`, and `log_contains`/`no_log_contains` hold on the ModSecurity-style log lines.
//! Stages that only check front-end behaviour (`status` other than 200, `expect_error`)
//! are counted as skipped: that is the HTTP server's job, not the engine's.

#![allow(clippy::unwrap_used)]

use rampart_waf::{FsLoader, RuleSet};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if p.join("waf-corpus/crs-regression.jsonl").exists() && p.join("crs/rules").exists() {
        Some(p)
    } else {
        None
    }
}

fn load_crs(root: &std::path::Path) -> (RuleSet, rampart_waf::LoadReport) {
    let loader = FsLoader::with_root(root);
    let t = Instant::now();
    let r = RuleSet::load(
        &loader,
        &[
            "waf-corpus/modsecurity-test.conf",
            "crs/crs-setup.conf.example",
            "waf-corpus/crs-test-settings.conf",
            "waf-corpus/marker-rule.conf",
            "crs/rules/*.conf",
        ],
    )
    .unwrap_or_else(|e| panic!("CRS failed to load: {e}"));
    eprintln!("CRS loaded in {:?}: {} rules", t.elapsed(), r.1.rules);
    r
}

fn b64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
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

struct Req {
    method: String,
    uri: String,
    version: String,
    /// Name (lossy) and raw value bytes, in wire order.
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn parse_request(raw: &[u8]) -> Option<Req> {
    let mut lines = Vec::new();
    let mut i = 0;
    let mut start = 0;
    let body_start;
    loop {
        if i >= raw.len() {
            lines.push(&raw[start..]);
            body_start = raw.len();
            break;
        }
        if raw[i] == b'\n' {
            let mut l = &raw[start..i];
            if l.last() == Some(&b'\r') {
                l = &l[..l.len() - 1];
            }
            if l.is_empty() && !lines.is_empty() {
                body_start = i + 1;
                break;
            }
            lines.push(l);
            start = i + 1;
        }
        i += 1;
    }
    let first = String::from_utf8_lossy(lines.first()?).into_owned();
    let first = first.trim_start();
    let mut parts = first.split(' ').filter(|s| !s.is_empty());
    let method = parts.next()?.to_string();
    let uri = parts.next().unwrap_or("/").to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for l in &lines[1..] {
        if (l.starts_with(b" ") || l.starts_with(b"\t")) && !headers.is_empty() {
            if let Some(h) = headers.last_mut() {
                h.1.push(b' ');
                h.1.extend_from_slice(l.trim_ascii());
            }
            continue;
        }
        if let Some(p) = l.iter().position(|&c| c == b':') {
            headers.push((
                String::from_utf8_lossy(&l[..p]).into_owned(),
                l[p + 1..].trim_ascii().to_vec(),
            ));
        }
    }
    let mut body = raw[body_start.min(raw.len())..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding")
            && v.to_ascii_lowercase().windows(7).any(|w| w == b"chunked")
    });
    if chunked {
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and a front end
        // forwarding the request drops Content-Length; the engine sees what it forwards.
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-length"));
        let mut out = Vec::new();
        let mut p = 0;
        while p < body.len() {
            let Some(e) = body[p..].windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let sz = String::from_utf8_lossy(&body[p..p + e]);
            let Ok(n) = usize::from_str_radix(sz.split(';').next().unwrap_or("").trim(), 16) else {
                break;
            };
            p += e + 2;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&body[p..(p + n).min(body.len())]);
            p += n + 2;
        }
        body = out;
    } else if let Some((_, cl)) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        if let Ok(n) = String::from_utf8_lossy(cl).trim().parse::<usize>() {
            body.truncate(n);
        }
    } else {
        // HTTP/1.1: no Content-Length and not chunked means no body.
        body.clear();
    }
    Some(Req {
        method,
        uri,
        version,
        headers,
        body,
    })
}

/// Simulated backend: empty 200, or what `POST /reflect` asks for.
fn backend(req: &Req) -> (u16, Vec<(String, String)>, Vec<u8>) {
    if req.method == "POST" && req.uri.starts_with("/reflect") {
        if let Ok(serde_json::Value::Object(m)) =
            serde_json::from_slice::<serde_json::Value>(&req.body)
        {
            let get = |k: &str| {
                m.iter()
                    .find(|(kk, _)| kk.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            let status = get("status").and_then(|v| v.as_u64()).unwrap_or(200) as u16;
            let mut body = get("body")
                .and_then(|v| v.as_str().map(|s| s.as_bytes().to_vec()))
                .unwrap_or_default();
            if let Some(e) = get("encodedBody").and_then(|v| v.as_str().map(str::to_string)) {
                body = b64(&e);
            }
            let mut headers: Vec<(String, String)> = Vec::new();
            if let Some(serde_json::Value::Object(h)) = get("headers") {
                for (k, v) in h {
                    headers.push((k.clone(), v.as_str().unwrap_or("").to_string()));
                }
            }
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                && !body.is_empty()
            {
                let t = body.trim_ascii_start();
                let lower = t.to_ascii_lowercase();
                let ct = if lower.starts_with(b"<!doctype html")
                    || lower.starts_with(b"<html")
                    || lower.starts_with(b"<head")
                    || lower.starts_with(b"<script")
                    || lower.starts_with(b"<body")
                    || lower.starts_with(b"<h1")
                    || lower.starts_with(b"<div")
                    || lower.starts_with(b"<table")
                    || lower.starts_with(b"<title")
                    || lower.starts_with(b"<p")
                    || lower.starts_with(b"<br")
                    || lower.starts_with(b"<a")
                    || lower.starts_with(b"<b")
                    || lower.starts_with(b"<font")
                    || lower.starts_with(b"<iframe")
                    || lower.starts_with(b"<style")
                    || lower.starts_with(b"<!--")
                {
                    "text/html; charset=utf-8"
                } else if lower.starts_with(b"<?xml") {
                    "text/xml; charset=utf-8"
                } else if body
                    .iter()
                    .any(|&c| c < 0x09 || (c > 0x0d && c < 0x20 && c != 0x1b))
                {
                    "application/octet-stream"
                } else {
                    "text/plain; charset=utf-8"
                };
                headers.push(("Content-Type".into(), ct.into()));
            }
            headers.push(("Content-Length".into(), body.len().to_string()));
            return (status, headers, body);
        }
        return (400, vec![], b"Invalid JSON in request body".to_vec());
    }
    (200, vec![("Content-Length".into(), "0".into())], Vec::new())
}

#[derive(Default)]
struct Counts {
    total: usize,
    passed: usize,
    failed: usize,
    skipped: usize,
}

fn run_stage(rs: &RuleSet, stage: &serde_json::Value) -> Result<Option<()>, String> {
    let exp = &stage["expect"];
    if exp["expect_error"].as_bool() == Some(true) {
        return Ok(None);
    }
    let expected_status = exp["status"].as_u64();
    if expected_status.is_some_and(|s| s != 200) {
        // The front end answers these itself (400/505 for malformed requests); the WAF
        // engine never sees them.
        return Ok(None);
    }
    let raw = b64(stage["raw_b64"].as_str().unwrap_or(""));
    let Some(req) = parse_request(&raw) else {
        return Ok(None);
    };
    let mut tx = rs.transaction();
    tx.process_connection("127.0.0.1", 40000, "127.0.0.1", 80);
    tx.process_uri(&req.uri, &req.method, &req.version);
    for (n, v) in &req.headers {
        tx.add_request_header_bytes(n.as_bytes(), v);
    }
    tx.process_request_headers();
    tx.append_request_body(&req.body);
    tx.process_request_body();
    let (status, headers, body) = backend(&req);
    for (n, v) in &headers {
        tx.add_response_header(n, v);
    }
    tx.process_response_headers(status, "HTTP/1.1");
    tx.append_response_body(&body);
    tx.process_response_body();
    tx.process_logging();
    let logged: Vec<&rampart_waf::MatchedRule> =
        tx.matched_rules().iter().filter(|m| m.log).collect();
    let ids: Vec<u32> = logged.iter().map(|m| m.id).collect();
    let lines: Vec<String> = logged.iter().map(|m| m.log_line()).collect();
    let mut reasons = Vec::new();
    for id in exp["expect_ids"].as_array().into_iter().flatten() {
        let id = id.as_u64().unwrap_or(0) as u32;
        if !ids.contains(&id) {
            reasons.push(format!("expected {id}"));
        }
    }
    for id in exp["no_expect_ids"].as_array().into_iter().flatten() {
        let id = id.as_u64().unwrap_or(0) as u32;
        if ids.contains(&id) {
            reasons.push(format!("unexpected {id}"));
        }
    }
    if let Some(re) = exp["log_contains"].as_str() {
        let re = regex::Regex::new(re).map_err(|e| e.to_string())?;
        if !lines.iter().any(|l| re.is_match(l)) {
            reasons.push(format!("log_contains {re}"));
        }
    }
    if let Some(re) = exp["no_log_contains"].as_str() {
        let re = regex::Regex::new(re).map_err(|e| e.to_string())?;
        if lines.iter().any(|l| re.is_match(l)) {
            reasons.push(format!("no_log_contains {re}"));
        }
    }
    if reasons.is_empty() {
        Ok(Some(()))
    } else {
        Err(format!("{} (logged: {:?})", reasons.join(", "), ids))
    }
}

fn replay(sample_every: usize, min_passed: usize) {
    let Some(root) = shared() else {
        eprintln!("skipping: ../shared (CRS + corpus) not found");
        return;
    };
    let (rs, report) = load_crs(&root);
    eprint!("{}", report.summary());
    // CRS v4 loads with one unsupported item kind only (initcol: IP/GLOBAL collections
    // are per transaction here), never silently.
    assert!(
        report
            .unsupported
            .iter()
            .all(|u| u.what.contains("initcol")),
        "{}",
        report.summary()
    );
    let text = std::fs::read_to_string(root.join("waf-corpus/crs-regression.jsonl")).unwrap();
    let mut per_file: BTreeMap<String, Counts> = BTreeMap::new();
    let mut failed_ids: Vec<String> = Vec::new();
    let verbose = std::env::var("WAF_CORPUS_VERBOSE").is_ok();
    let filter = std::env::var("WAF_CORPUS_FILTER").ok();
    let t = Instant::now();
    for (n, line) in text.lines().enumerate() {
        if sample_every > 1 && n % sample_every != 0 {
            continue;
        }
        let test: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = test["id"].as_str().unwrap_or("").to_string();
        if let Some(f) = &filter {
            if !id.starts_with(f.as_str()) {
                continue;
            }
        }
        let file = test["rule_file"].as_str().unwrap_or("").to_string();
        let c = per_file.entry(file.clone()).or_default();
        c.total += 1;
        let mut outcome: Result<Option<()>, String> = Ok(Some(()));
        for stage in test["stages"].as_array().into_iter().flatten() {
            match run_stage(&rs, stage) {
                Ok(Some(())) => {}
                Ok(None) => {
                    if outcome.is_ok() {
                        outcome = Ok(None);
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        match outcome {
            Ok(Some(())) => c.passed += 1,
            Ok(None) => c.skipped += 1,
            Err(e) => {
                c.failed += 1;
                failed_ids.push(id.clone());
                if verbose {
                    eprintln!("FAIL {id} [{file}]: {e}");
                }
            }
        }
    }
    let mut tot = Counts::default();
    eprintln!(
        "{:<48} {:>6} {:>6} {:>6} {:>6}",
        "rule file", "tests", "pass", "fail", "skip"
    );
    for (f, c) in &per_file {
        eprintln!(
            "{:<48} {:>6} {:>6} {:>6} {:>6}",
            f, c.total, c.passed, c.failed, c.skipped
        );
        tot.total += c.total;
        tot.passed += c.passed;
        tot.failed += c.failed;
        tot.skipped += c.skipped;
    }
    let judged = (tot.passed + tot.failed).max(1);
    let rate = tot.passed as f64 / judged as f64;
    eprintln!(
        "total: {}, passed: {}, failed: {}, skipped: {}, pass rate: {:.2}% ({:?})",
        tot.total,
        tot.passed,
        tot.failed,
        tot.skipped,
        rate * 100.0,
        t.elapsed()
    );
    println!(
        "{} passed, {} failed, {} skipped",
        tot.passed, tot.failed, tot.skipped
    );
    assert!(
        tot.passed >= min_passed,
        "{} passed, expected at least {min_passed}",
        tot.passed
    );
    if sample_every == 1 && filter.is_none() {
        // The known failures (docs/waf.md): two need settings CRS's CI does not make,
        // one expects Apache's merging of duplicate headers.
        assert_eq!(failed_ids, ["920360-1", "920380-1", "920620-1"]);
        assert_eq!(tot.skipped, 23, "front-end-only stages");
    }
}

/// The whole corpus (~40 s in debug, ~6 s in release).
#[test]
fn crs_corpus_replay() {
    replay(1, 4940);
}

/// Rough throughput of full CRS (PL4, as in the corpus) on a typical browser request
/// with a small form body; `cargo test --release -- --ignored --nocapture crs_throughput`.
#[test]
#[ignore]
fn crs_throughput() {
    let Some(root) = shared() else {
        eprintln!("skipping: ../shared (CRS + corpus) not found");
        return;
    };
    let (pl4, _) = load_crs(&root);
    // Paranoia level 1 (crs-setup defaults, what most sites run).
    let (pl1, _) = RuleSet::load(
        &FsLoader::with_root(&root),
        &[
            "waf-corpus/modsecurity-test.conf",
            "crs/crs-setup.conf.example",
            "crs/rules/*.conf",
        ],
    )
    .unwrap();
    let only = std::env::var("WAF_BENCH_PL").ok();
    for (name, rs) in [("PL4", pl4), ("PL1", pl1)] {
        if only.as_deref().is_none_or(|o| o == name) {
            throughput(name, &rs);
        }
    }
}

fn throughput(name: &str, rs: &RuleSet) {
    let n: u32 = std::env::var("WAF_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let t = Instant::now();
    for i in 0..n {
        let mut tx = rs.transaction();
        tx.process_connection("192.0.2.1", 50000, "192.0.2.2", 443);
        tx.process_uri(
            &format!("/shop/items/{i}?page=2&sort=price&q=blue+shoes"),
            "POST",
            "HTTP/1.1",
        );
        for (k, v) in [
            ("Host", "shop.example.com"),
            (
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            ),
            (
                "Accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ),
            ("Accept-Language", "en-US,en;q=0.5"),
            ("Accept-Encoding", "gzip, deflate, br"),
            ("Cookie", "session=3f2a9c1e7b; theme=dark"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", "41"),
        ] {
            tx.add_request_header(k, v);
        }
        tx.process_request_headers();
        tx.append_request_body(b"name=Jane+Doe&email=jane%40example.com&n=1");
        tx.process_request_body();
        tx.add_response_header("Content-Type", "text/html");
        tx.process_response_headers(200, "HTTP/1.1");
        tx.append_response_body(b"<html><body>ok</body></html>");
        tx.process_response_body();
        tx.process_logging();
    }
    let per = t.elapsed() / n;
    eprintln!("{name}: {per:?} per transaction");
}

/// CRS in blocking mode: anomaly scoring (901 → 942xxx → 949110) must deny an SQL
/// injection and let a plain request through with a zero score.
#[test]
fn crs_blocks_in_on_mode() {
    let Some(root) = shared() else {
        eprintln!("skipping: ../shared (CRS + corpus) not found");
        return;
    };
    let (rs, _) = load_crs(&root);
    let rs = rs.with_engine_mode(rampart_waf::EngineMode::On);
    let run = |uri: &str| {
        let mut tx = rs.transaction();
        tx.process_connection("192.0.2.1", 50000, "192.0.2.2", 80);
        tx.process_uri(uri, "GET", "HTTP/1.1");
        tx.add_request_header("Host", "localhost");
        tx.add_request_header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)");
        tx.add_request_header("Accept", "text/html");
        let i = tx
            .process_request_headers()
            .or_else(|| tx.process_request_body());
        tx.process_logging();
        (i, tx.tx_variable("blocking_inbound_anomaly_score"))
    };
    let (i, score) = run("/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--");
    let i = i.unwrap();
    assert_eq!((i.rule_id, i.status), (949110, 403));
    assert!(score.unwrap().parse::<i64>().unwrap() >= 5);
    let (i, score) = run("/index.html?page=2");
    assert!(i.is_none(), "{i:?}");
    assert_eq!(score.as_deref(), Some("0"));
}

#[test]
fn shared_types_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<RuleSet>();
    send::<rampart_waf::Transaction>();
}
