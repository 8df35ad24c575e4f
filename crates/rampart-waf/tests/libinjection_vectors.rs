//! libinjection's own test vectors through `libinjectionrs`, the port behind `@detectSQLi`
//! and `@detectXSS`. The vectors are not in this repository (nor in the libinjectionrs
//! package): point `LIBINJECTION_TESTS` at a checkout of libinjection (the folder holding
//! `tests/` and `data/`, or `tests/` itself) to run it; without it the test is skipped.
//!
//! ```sh
//! LIBINJECTION_TESTS=/path/to/libinjection cargo test -p rampart-waf --test libinjection_vectors -- --nocapture
//! ```
//!
//! `tests/test-*.txt` (`--TEST--`/`--INPUT--`/`--EXPECTED--`) are judged the way
//! libinjection's `src/testdriver.c` judges them, output compared byte for byte:
//! - `test-sqli-*`: SQLi detection, the fingerprint when it is SQLi, nothing otherwise —
//!   through `rampart_waf::fuzzing::detect_sqli`, i.e. exactly what `@detectSQLi` does;
//! - `test-xss-*` (none upstream today): XSS detection, `1` or `0`, through `@detectXSS`'s
//!   function;
//! - `test-folding-*` / `test-tokens-*`: the SQL token stream after / before folding
//!   (flags `FLAG_QUOTE_NONE | FLAG_SQL_ANSI`), one `TYPE VALUE` line per token;
//! - `test-html5-*`: the HTML5 tokenizer that XSS detection runs on, `TYPE,LEN,TEXT` lines.
//!
//! `data/*.txt` (one URL-encoded input a line) are judged as libinjection's
//! `src/test-samples-*.sh` do: every `sqli-*` and `xss-*` file should be detected, with at
//! most 18 misses each, and `false_positives.txt` at most 21 detections. SQLi misses that
//! fall in one of the two known libinjectionrs differences (`known_difference`) are
//! counted apart.
//!
//! `LIBINJECTION_VERDICTS=FILE` also writes one `file<TAB>line<TAB>True|False<TAB>fingerprint`
//! line per `data/` input (the fingerprint only for SQLi detections), for a line-by-line
//! comparison with the C library's `reader` output.
//!
//! The disagreements seen with libinjection 4.0 (2025-02) and libinjectionrs 0.1.1 are
//! listed in `KNOWN`: the test fails when any other vector disagrees, so a dependency
//! update that changes detection is noticed. The results are recorded in docs/waf.md.

#![allow(clippy::unwrap_used)]

use libinjectionrs::sqli::{SqliFlags, SqliState, SqliTokenizer, Token, TokenType};
use libinjectionrs::xss::{Html5Flags, Html5State};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Test files whose output differs from libinjection's expected output (see docs/waf.md).
/// None: all of libinjection 4.0's `tests/` vectors agree.
const KNOWN: &[&str] = &[];

/// The two ways libinjectionrs 0.1.1 is known to miss SQLi that libinjection 4.0 detects
/// (found with this checker's `data/` run against the C library's reader, see docs/waf.md):
/// - `into outfile`/`into dumpfile` not in upper case: the whitelist step compares the
///   keyword with `INTO` case-sensitively where the C code uses `cstrcasecmp`;
/// - keywords of three or more words (`IN BOOLEAN MODE`, `LOCK IN SHARE MODE`) are not
///   folded into one keyword token, so the fingerprint differs.
fn known_difference(input: &[u8]) -> bool {
    let upper = input.to_ascii_uppercase();
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    (has(&upper, b"INTO OUTFILE") || has(&upper, b"INTO DUMPFILE")) && !has(input, b"INTO ")
        || has(&upper, b"IN BOOLEAN MODE")
        || has(&upper, b"LOCK IN SHARE MODE")
}

fn dirs() -> Option<(PathBuf, PathBuf)> {
    let root = PathBuf::from(std::env::var_os("LIBINJECTION_TESTS")?);
    if root.join("tests").is_dir() {
        Some((root.join("tests"), root.join("data")))
    } else {
        let data = root.join("../data");
        Some((root, data))
    }
}

/// Strips trailing spaces, tabs, CRs and LFs (testdriver's `modp_rtrim`).
fn rtrim(mut b: &[u8]) -> &[u8] {
    while let Some((&c, rest)) = b.split_last() {
        if matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// `(input, expected)` of a `--TEST--`/`--INPUT--`/`--EXPECTED--` file, both right-trimmed,
/// as testdriver's `read_file` reads them.
fn parse_vector(raw: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut state = 0;
    let (mut input, mut expected) = (Vec::new(), Vec::new());
    for line in raw.split_inclusive(|&c| c == b'\n') {
        match (state, line) {
            (0, b"--TEST--\n") => state = 1,
            (1, b"--INPUT--\n") => state = 2,
            (2, b"--EXPECTED--\n") => state = 3,
            (2, _) => input.extend_from_slice(line),
            (3, _) => expected.extend_from_slice(line),
            _ => {}
        }
    }
    (state == 3).then(|| (rtrim(&input).to_vec(), rtrim(&expected).to_vec()))
}

/// A C string: the bytes up to the first NUL.
fn c_str(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or(b)
}

/// One token as testdriver's `print_token` prints it: `TYPE VALUE\n`, strings with their
/// quotes, variables with their `@`s. (libinjectionrs keeps the `@`s of a plain variable in
/// its value, where the C library counts them in `count`.)
fn print_token(out: &mut Vec<u8>, t: &Token) {
    out.push(t.token_type.to_char() as u8);
    out.push(b' ');
    let val = c_str(&t.val[..t.len.min(t.val.len())]);
    let quoted = |out: &mut Vec<u8>| {
        if t.str_open != 0 {
            out.push(t.str_open);
        }
        out.extend_from_slice(val);
        if t.str_close != 0 {
            out.push(t.str_close);
        }
    };
    match t.token_type {
        TokenType::String => quoted(out),
        TokenType::Variable => {
            if !val.starts_with(b"@") {
                for _ in 0..t.count.clamp(0, 2) {
                    out.push(b'@');
                }
            }
            quoted(out);
        }
        _ => out.extend_from_slice(val),
    }
    out.push(b'\n');
}

fn ansi() -> SqliFlags {
    SqliFlags::FLAG_QUOTE_NONE | SqliFlags::FLAG_SQL_ANSI
}

fn run_vector(kind: &str, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match kind {
        "sqli" => {
            if let Some(fp) = rampart_waf::fuzzing::detect_sqli(input) {
                out = fp;
            }
        }
        "xss" => {
            out = if rampart_waf::fuzzing::detect_xss(input) {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            };
        }
        "tokens" => {
            let mut tk = SqliTokenizer::new(input, ansi());
            while let Some(t) = tk.next_token() {
                print_token(&mut out, &t);
            }
        }
        "folding" => {
            let mut st = SqliState::new(input, ansi());
            let n = st.fold_tokens();
            for t in st.tokens.iter().take(n) {
                print_token(&mut out, t);
            }
        }
        "html5" => {
            let mut h = Html5State::new(input, Html5Flags::DataState);
            while h.next() {
                let tok = &h.token_start[..h.token_len.min(h.token_start.len())];
                out.extend_from_slice(format!("{},{},", h.token_type, h.token_len).as_bytes());
                out.extend_from_slice(c_str(tok));
                out.push(b'\n');
            }
        }
        _ => unreachable!(),
    }
    rtrim(&out).to_vec()
}

fn kind_of(name: &str) -> Option<&'static str> {
    for (prefix, kind) in [
        ("test-tokens-", "tokens"),
        ("test-folding-", "folding"),
        ("test-sqli-", "sqli"),
        ("test-html5-", "html5"),
        ("test-xss-", "xss"),
    ] {
        if name.starts_with(prefix) && name.ends_with(".txt") {
            return Some(kind);
        }
    }
    None
}

/// libinjection's reader: `+` is a space, `%XX` a byte (a bad or short escape stays `%`).
fn url_decode(s: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b).replace('\n', "⏎");
    if s.chars().count() > 100 {
        format!("{}…", s.chars().take(100).collect::<String>())
    } else {
        s
    }
}

fn check_vectors(tests: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(tests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // kind → (vectors, agreeing)
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut differing = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let Some(kind) = kind_of(&name) else { continue };
        let Some((input, expected)) = parse_vector(&std::fs::read(&f).unwrap()) else {
            eprintln!("{name}: not a --TEST--/--INPUT--/--EXPECTED-- file");
            continue;
        };
        let got = run_vector(kind, &input);
        let c = counts.entry(kind).or_default();
        c.0 += 1;
        if got == expected {
            c.1 += 1;
        } else {
            eprintln!(
                "DIFFERS {name}\n  input:    {}\n  expected: {}\n  got:      {}",
                show(&input),
                show(&expected),
                show(&got)
            );
            differing.push(name);
        }
    }
    for (kind, (n, ok)) in &counts {
        eprintln!("test-{kind}-*: {n} vectors, {ok} agree, {} differ", n - ok);
    }
    assert!(
        !counts.is_empty(),
        "no test-*.txt vectors in {}",
        tests.display()
    );
    differing
}

fn check_samples(data: &Path) {
    if !data.is_dir() {
        eprintln!("{}: no data/ folder, samples skipped", data.display());
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut verdicts = String::new();
    // mode → (inputs, detected)
    let mut totals: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut known = 0;
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let mode = if name.starts_with("sqli-") {
            "sqli"
        } else if name.starts_with("xss") {
            "xss"
        } else if name.starts_with("false_") {
            "false_positives"
        } else {
            continue;
        };
        let text = std::fs::read(&f).unwrap();
        let (mut n, mut hit) = (0, 0);
        for (i, line) in text.split(|&c| c == b'\n').enumerate() {
            // The reader takes a line up to its first NUL (`strlen`).
            let line = rtrim(c_str(line));
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let input = url_decode(line);
            let (detected, fp) = if mode == "xss" {
                (rampart_waf::fuzzing::detect_xss(&input), Vec::new())
            } else {
                match rampart_waf::fuzzing::detect_sqli(&input) {
                    Some(fp) => (true, fp),
                    None => (false, Vec::new()),
                }
            };
            n += 1;
            hit += usize::from(detected);
            if mode == "sqli" && !detected && known_difference(&input) {
                known += 1;
            }
            verdicts.push_str(&format!(
                "{name}\t{}\t{}\t{}\n",
                i + 1,
                if detected { "True" } else { "False" },
                String::from_utf8_lossy(&fp)
            ));
        }
        eprintln!("data/{name}: {n} inputs, {hit} detected");
        let t = totals.entry(mode).or_default();
        t.0 += n;
        t.1 += hit;
    }
    if let Some(out) = std::env::var_os("LIBINJECTION_VERDICTS") {
        std::fs::write(out, verdicts).unwrap();
    }
    for (mode, (n, hit)) in &totals {
        eprintln!("data {mode}: {n} inputs, {hit} detected, {} not", n - hit);
    }
    eprintln!("data sqli: {known} of the misses are known libinjectionrs differences");
    // The limits of libinjection's own `make check` (test-samples-*.sh: reader -m 18 / 21).
    let (n, hit) = totals.get("sqli").copied().unwrap_or_default();
    assert!(
        n - hit - known <= 18,
        "SQLi samples missed: {} ({known} known differences)",
        n - hit
    );
    let (n, hit) = totals.get("xss").copied().unwrap_or_default();
    assert!(n - hit <= 18, "XSS samples missed: {}", n - hit);
    let (_, hit) = totals.get("false_positives").copied().unwrap_or_default();
    assert!(hit <= 21, "false positives flagged: {hit}");
}

#[test]
fn libinjection_test_vectors() {
    let Some((tests, data)) = dirs() else {
        eprintln!("skipping: set LIBINJECTION_TESTS to a libinjection checkout to run it");
        return;
    };
    let differing = check_vectors(&tests);
    check_samples(&data);
    let unexpected: Vec<&String> = differing
        .iter()
        .filter(|n| !KNOWN.contains(&n.as_str()))
        .collect();
    let fixed: Vec<&&str> = KNOWN
        .iter()
        .filter(|k| !differing.contains(&k.to_string()))
        .collect();
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "new disagreements: {unexpected:?}; no longer disagreeing: {fixed:?}"
    );
}

#[test]
fn url_decode_is_the_readers() {
    assert_eq!(url_decode(b"a+b%41%4"), b"a bA%4");
    assert_eq!(url_decode(b"%zz%"), b"%zz%");
    assert_eq!(
        parse_vector(b"--TEST--\nt\n--INPUT--\nx \n--EXPECTED--\ny\n\n").unwrap(),
        (b"x".to_vec(), b"y".to_vec())
    );
}

/// Runs without the vectors: the two known differences from libinjection (see
/// `known_difference`) are still there. When an update of libinjectionrs fixes one, this
/// fails: update docs/waf.md and `known_difference`.
#[test]
fn known_libinjectionrs_differences_are_unchanged() {
    use rampart_waf::fuzzing::detect_sqli;
    // Detected by libinjection 4.0 with these fingerprints (its reader, data/sqli-misc.txt).
    let missed: [(&[u8], &str); 3] = [
        (b"1 into outfile 'asd'", "1ks"),
        (
            b"-1 LOCK IN SHARE MODE UNION SELECT table_name from information_schema.tables",
            "1kUEn",
        ),
        (
            b"1' IN BOOLEAN MODE) RLIKE (SELECT (CASE WHEN (2270=3285) THEN 1 ELSE 0x28 END))# ",
            "sk)o(",
        ),
    ];
    for (input, c_fingerprint) in missed {
        assert!(known_difference(input));
        assert_eq!(
            detect_sqli(input),
            None,
            "libinjectionrs now detects {:?} (libinjection: {c_fingerprint}): update docs/waf.md",
            String::from_utf8_lossy(input)
        );
    }
    // Upper-case INTO is detected as libinjection does.
    assert_eq!(
        detect_sqli(b"1 INTO OUTFILE 'asd'").as_deref(),
        Some(&b"1ks"[..])
    );
    assert!(!known_difference(b"1 INTO OUTFILE 'asd'"));
}
