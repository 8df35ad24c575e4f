//! The load-time regex engine report: which engine each `@rx` got, per rule
//! (`RuleSet::regex_engines`, `LoadReport::regex_engines`) and as counts logged at load.
//!
//! The CRS v4 test counts the `@rx` conditions in the rule files with its own small scanner
//! (continuation lines, chains, implicit `@rx`) and checks the report lists exactly those,
//! under the right rule ids. It skips when `../shared` (CRS + corpus settings) is missing.

#![allow(clippy::unwrap_used)]

use rampart_waf::{FsLoader, RegexEngine, RuleSet};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The files `tests/crs_corpus.rs` loads, in the same order.
const CRS_FILES: &[&str] = &[
    "waf-corpus/modsecurity-test.conf",
    "crs/crs-setup.conf.example",
    "waf-corpus/crs-test-settings.conf",
    "waf-corpus/marker-rule.conf",
    "crs/rules/*.conf",
];

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    (p.join("crs/rules").exists() && p.join("waf-corpus/modsecurity-test.conf").exists())
        .then_some(p)
}

/// Splits a directive into its arguments: quoted strings (backslash escapes kept) or runs
/// of non-space characters.
fn args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = line.chars().peekable();
    while let Some(&c) = it.peek() {
        if c.is_whitespace() {
            it.next();
            continue;
        }
        let mut a = String::new();
        if c == '"' || c == '\'' {
            it.next();
            while let Some(d) = it.next() {
                if d == '\\' {
                    if let Some(e) = it.next() {
                        a.push(d);
                        a.push(e);
                    }
                } else if d == c {
                    break;
                } else {
                    a.push(d);
                }
            }
        } else {
            while let Some(&d) = it.peek() {
                if d.is_whitespace() {
                    break;
                }
                a.push(d);
                it.next();
            }
        }
        out.push(a);
    }
    out
}

/// `@rx` conditions per rule id in one file, counted from the text: (chain head id → count).
fn scan_rx(text: &str, counts: &mut BTreeMap<u32, usize>, chain_head: &mut Option<u32>) {
    let id_re = regex::Regex::new(r"(?:^|,)\s*id\s*:\s*'?(\d+)").unwrap();
    let chain_re = regex::Regex::new(r"(?:^|,)\s*chain\s*(?:,|$)").unwrap();
    let mut logical = String::new();
    for raw in text.lines() {
        if let Some(head) = raw.strip_suffix('\\') {
            logical.push_str(head);
            continue;
        }
        logical.push_str(raw);
        let line = std::mem::take(&mut logical);
        let line = line.trim();
        let a = args(line);
        if a.first().is_none_or(|d| !d.eq_ignore_ascii_case("SecRule")) || a.len() < 3 {
            continue;
        }
        let op = a[2].trim_start().trim_start_matches('!').trim_start();
        let lower = op.to_ascii_lowercase();
        let is_rx =
            !op.starts_with('@') || lower.starts_with("@rx ") || lower.starts_with("@rxglobal ");
        let actions = a.get(3).map(String::as_str).unwrap_or("");
        let own_id = id_re
            .captures(actions)
            .map(|c| c[1].parse::<u32>().unwrap());
        let id = chain_head.or(own_id).expect("a rule without id");
        if is_rx {
            *counts.entry(id).or_default() += 1;
        }
        let chains = chain_re.is_match(actions);
        *chain_head = match (chain_head.is_some(), chains) {
            (_, false) => None,
            (true, true) => *chain_head,
            (false, true) => Some(id),
        };
    }
}

fn expected_rx(root: &Path) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    let mut head = None;
    for f in CRS_FILES {
        let paths: Vec<PathBuf> = if let Some(dir) = f.strip_suffix("/*.conf") {
            let mut v: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            v.sort();
            v
        } else {
            vec![root.join(f)]
        };
        for p in paths {
            scan_rx(
                &std::fs::read_to_string(&p).unwrap(),
                &mut counts,
                &mut head,
            );
        }
    }
    counts
}

#[test]
fn crs_v4_regex_engine_report_covers_every_rx() {
    let Some(root) = shared() else {
        eprintln!("skipping: ../shared (CRS + corpus settings) not found");
        return;
    };
    let (rs, report) = RuleSet::load(&FsLoader::with_root(&root), CRS_FILES)
        .unwrap_or_else(|e| panic!("CRS failed to load: {e}"));
    let list = rs.regex_engines();
    assert_eq!(list, report.regex_engines, "ruleset and load report agree");

    let mut got: BTreeMap<u32, usize> = BTreeMap::new();
    for (id, _) in &list {
        *got.entry(*id).or_default() += 1;
    }
    let want = expected_rx(&root);
    assert_eq!(
        got, want,
        "one entry per @rx condition, under its rule's id"
    );

    // CRS v4.28.0 with the corpus settings: every @rx is a plain `regex`-crate pattern
    // (CRS v4 dropped lookarounds, backreferences and atomic groups).
    let counts = report.regex_engine_counts();
    eprintln!(
        "CRS v4: {} @rx in {} rules: {:?}",
        list.len(),
        got.len(),
        counts
    );
    assert_eq!(list.len(), 322);
    assert_eq!(got.len(), 300, "rules holding an @rx");
    assert_eq!(
        counts,
        [
            (RegexEngine::Regex, 322),
            (RegexEngine::Rewritten, 0),
            (RegexEngine::FancyRegex, 0)
        ]
    );
    assert!(report
        .summary()
        .contains("@rx engines: 322 regex, 0 rewrite, 0 fancy-regex"));
}

#[test]
fn removed_rules_leave_the_report_and_chains_count_under_their_head() {
    let (rs, report) = RuleSet::from_text(
        "r.conf",
        r#"SecRule ARGS "@rx ^a+$" "id:1,phase:1,pass"
SecRule ARGS "@rx (a)\1" "id:2,phase:1,pass,chain"
  SecRule ARGS "b" "chain"
    SecRule ARGS "@rxGlobal (?>ab|a)c" ""
SecRule ARGS "@contains x" "id:3,phase:1,pass"
SecRule ARGS "!@rx x" "id:4,phase:1,pass"
SecRuleRemoveById 4
"#,
    )
    .unwrap();
    let want = [
        (1, RegexEngine::Regex),
        (2, RegexEngine::FancyRegex),
        (2, RegexEngine::Regex),
        (2, RegexEngine::Rewritten),
    ];
    assert_eq!(rs.regex_engines(), want);
    assert_eq!(report.regex_engines, want);
    assert_eq!(report.removed, 1);
    assert_eq!(
        report.regex_engine_counts(),
        [
            (RegexEngine::Regex, 2),
            (RegexEngine::Rewritten, 1),
            (RegexEngine::FancyRegex, 1)
        ]
    );
}
