//! Engine-only timing of a rule set on the bench's benign request mix, for profiling
//! (`perf record`, callgrind) without networking in the way:
//!
//! ```sh
//! cargo run --release -p rampart-waf --example crs_bench -- MAIN.conf MIX.json [ITERATIONS]
//! ```
//!
//! MAIN.conf is a SecLang file (e.g. the bench harness's generated `main.conf`), MIX.json
//! the bench's `lib/waf-mix.json`. Prints the mean time per transaction and the rules
//! matched per request (which must be none for a benign mix).

use rampart_waf::{FsLoader, RuleSet};

// The binary's allocator, not a copy of it: allocation-heavy engine work reads differently
// on glibc's malloc (the harness's figures must be the binary's).
#[path = "../../rampart/src/alloc.rs"]
#[allow(dead_code)]
mod alloc;

#[global_allocator]
static GLOBAL: alloc::Mimalloc = alloc::Mimalloc;
use std::time::Instant;

struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: crs_bench MAIN.conf MIX.json [ITERATIONS]");
        std::process::exit(2);
    }
    let iterations: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let t0 = Instant::now();
    let (rules, report) = match RuleSet::load(&FsLoader::new(), &[args[1].as_str()]) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "loaded {} rules in {:?} ({} unsupported)",
        rules.rule_count(),
        t0.elapsed(),
        report.unsupported.len()
    );
    let mix: serde_json::Value = match std::fs::read_to_string(&args[2])
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("mix: {e}");
            std::process::exit(1);
        }
    };
    let common: Vec<(String, String)> = mix["common_headers"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let reqs: Vec<Req> = mix["requests"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let mut headers = common.clone();
                    if let Some(o) = r["headers"].as_object() {
                        for (k, v) in o {
                            headers.push((k.clone(), v.as_str().unwrap_or("").to_string()));
                        }
                    }
                    let body = r["body"].as_str().map(str::to_string);
                    if let Some(b) = &body {
                        headers.push(("Content-Length".into(), b.len().to_string()));
                    }
                    Req {
                        method: r["method"].as_str().unwrap_or("GET").to_string(),
                        path: r["path"].as_str().unwrap_or("/").to_string(),
                        headers,
                        body,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let resp_body = vec![b'x'; 100];
    let run = |r: &Req| -> usize {
        let mut tx = rules.transaction();
        tx.process_connection("127.0.0.1", 40000, "127.0.0.1", 8080);
        tx.process_uri(&r.path, &r.method, "HTTP/1.1");
        for (k, v) in &r.headers {
            tx.add_request_header(k, v);
        }
        let mut blocked = tx.process_request_headers().is_some();
        if !blocked {
            if let Some(b) = &r.body {
                tx.append_request_body(b.as_bytes());
            }
            blocked = tx.process_request_body().is_some();
        }
        if !blocked {
            tx.add_response_header("Content-Type", "text/plain");
            tx.add_response_header("Content-Length", "100");
            blocked = tx.process_response_headers(200, "HTTP/1.1").is_some();
            if !blocked {
                tx.append_response_body(&resp_body);
                let _ = tx.process_response_body();
            }
        }
        tx.process_logging();
        tx.matched_rules().iter().filter(|m| m.log).count()
    };
    for r in &reqs {
        let n = run(r);
        eprintln!("{} {}: {} logged matches", r.method, r.path, n);
    }
    let t = Instant::now();
    let mut total = 0;
    for i in 0..iterations {
        total += run(&reqs[i % reqs.len()]);
    }
    let el = t.elapsed();
    println!(
        "{} transactions, {:.1} us each, {} logged matches",
        iterations,
        el.as_secs_f64() * 1e6 / iterations as f64,
        total
    );
}
