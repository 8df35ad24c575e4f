//! Every operator against ModSecurity's documented behaviour: what matches, what does not,
//! and the exact bytes a match yields (MATCHED_VAR for `@pm`/`@verifyCC`, the libinjection
//! fingerprint for `@detectSQLi`, TX.0–9 for `@rx` with `capture`).

#![allow(clippy::unwrap_used)]

use super::{OpEnv, OpError, OperatorSpec};
use std::collections::HashMap;

struct Files(HashMap<&'static str, &'static str>);

impl OpEnv for Files {
    fn read_data_file(&mut self, name: &str) -> Result<String, String> {
        self.0
            .get(name)
            .map(|s| s.to_string())
            .ok_or_else(|| format!("no file {name}"))
    }
    fn backtrack_limit(&self) -> usize {
        1_000_000
    }
}

fn op(text: &str) -> OperatorSpec {
    let mut env = Files(HashMap::from([
        ("words.data", "# comment\n\nfoo\nBar baz\n"),
        (
            "nets.data",
            "10.0.0.0/8\n# comment\n2001:db8::/32\n192.0.2.7\n",
        ),
    ]));
    match OperatorSpec::parse(text, &mut env) {
        Ok(o) => o,
        Err(OpError::Invalid(m)) | Err(OpError::Unsupported(m)) => panic!("{text}: {m}"),
    }
}

/// Match result as ModSecurity would report it (negation applied), plus the first
/// capture / matched value.
fn eval(o: &OperatorSpec, input: &[u8], param: &[u8]) -> (bool, Vec<u8>) {
    let m = o.eval(input, param, true);
    let hit = m.is_some() != o.negated;
    let data = m
        .and_then(|m| m.captures.into_iter().next())
        .unwrap_or_default();
    (hit, data)
}

fn hits(text: &str, param: &[u8], rows: &[(&[u8], bool)]) {
    let o = op(text);
    for (input, want) in rows {
        assert_eq!(
            eval(&o, input, param).0,
            *want,
            "{text} on {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn rx_is_pcre_like_on_bytes() {
    hits(
        "@rx ^a.c$",
        b"",
        &[(b"abc", true), (b"abc\n", true), (b"abcd", false)],
    );
    hits(
        "@rx (?i)select",
        b"",
        &[(b"SeLeCt", true), (b"selec", false)],
    );
    // No operator name means @rx; `!` negates.
    hits("^[0-9]+$", b"", &[(b"123", true), (b"12a", false)]);
    hits("!@rx ^[0-9]+$", b"", &[(b"123", false), (b"12a", true)]);
    // Bytes, not UTF-8 code points.
    hits(
        r"@rx \xe9",
        b"",
        &[(b"caf\xe9", true), ("café".as_bytes(), false)],
    );
    // Captures: TX.0 is the whole match, TX.1… the groups.
    let o = op(r"@rx (\d+)-(\d+)");
    let m = o.eval(b"id 12-345 x", b"", true).unwrap();
    assert_eq!(
        m.captures[..3],
        [b"12-345".to_vec(), b"12".to_vec(), b"345".to_vec()]
    );
    // PCRE-only syntax is rewritten or falls back: possessive, atomic, lookahead.
    hits(r"@rx a++b", b"", &[(b"aab", true)]);
    hits(r"@rx (?>ab|a)c", b"", &[(b"abc", true)]);
    hits(
        r"@rx foo(?!bar)",
        b"",
        &[(b"foobaz", true), (b"foobar", false)],
    );
    hits("@rxGlobal b+", b"", &[(b"abbb", true), (b"ac", false)]);
}

#[test]
fn pm_and_pm_from_file_are_case_insensitive_phrase_sets() {
    let o = op("@pm select union");
    assert_eq!(eval(&o, b"1 UNION all", b""), (true, b"UNION".to_vec()));
    assert!(!eval(&o, b"unio", b"").0);
    let f = op("@pmFromFile words.data");
    assert_eq!(eval(&f, b"xbar bazx", b""), (true, b"bar baz".to_vec()));
    assert_eq!(eval(&f, b"FOO", b""), (true, b"FOO".to_vec()));
    assert!(!eval(&f, b"# comment", b"").0);
    hits("@pmf words.data", b"", &[(b"food", true)]);
}

#[test]
fn libinjection_operators() {
    let o = op("@detectSQLi");
    assert_eq!(eval(&o, b"1' OR '1'='1", b""), (true, b"s&sos".to_vec()));
    assert!(!eval(&o, b"O'Brien", b"").0);
    hits(
        "@detectXSS",
        b"",
        &[
            (b"<script>alert(1)</script>", true),
            (b"<img src=x onerror=alert(1)>", true),
            (b"5 < 6 and 7 > 3", false),
        ],
    );
}

#[test]
fn validation_operators_match_on_invalid_input() {
    let o = op("@validateByteRange 10, 13, 32-126");
    assert!(!eval(&o, b"Hello, world!\r\n", b"").0);
    assert_eq!(eval(&o, b"tab\there", b""), (true, b"\t".to_vec()));
    hits(
        "@validateByteRange 1-255",
        b"",
        &[(b"a\x00", true), (b"\xff", false)],
    );
    hits(
        "@validateUrlEncoding",
        b"",
        &[
            (b"a%20b%2F", false),
            (b"100%", true),
            (b"%4", true),
            (b"%zz", true),
            (b"plain", false),
        ],
    );
    hits(
        "@validateUtf8Encoding",
        b"",
        &[
            ("naïve €".as_bytes(), false),
            (b"\xc0\xaf", true),         // overlong '/'
            (b"\xed\xa0\x80", true),     // surrogate
            (b"\xe2\x82", true),         // truncated
            (b"\xf4\x90\x80\x80", true), // above U+10FFFF
            (b"\xff", true),
        ],
    );
}

#[test]
fn ip_match_and_from_file() {
    hits(
        "@ipMatch 192.168.0.0/16, 127.0.0.1 ::1",
        b"",
        &[
            (b"192.168.4.2", true),
            (b"127.0.0.1", true),
            (b"127.0.0.2", false),
            (b"::1", true),
            (b"not an ip", false),
        ],
    );
    hits(
        "@ipMatchFromFile nets.data",
        b"",
        &[
            (b"10.1.2.3", true),
            (b"2001:db8:1::5", true),
            (b"192.0.2.7", true),
            (b"192.0.2.8", false),
        ],
    );
    hits("@ipMatchF nets.data", b"", &[(b"10.0.0.1", true)]);
}

#[test]
fn numeric_comparisons_parse_leading_integers() {
    for (name, rows) in [
        ("@eq", [(b"5" as &[u8], true), (b"05", true), (b"6", false)]),
        ("@ge", [(b"5", true), (b"6", true), (b"4", false)]),
        ("@gt", [(b"5", false), (b"6", true), (b"4", false)]),
        ("@le", [(b"5", true), (b"6", false), (b"4", true)]),
        ("@lt", [(b"5", false), (b"6", false), (b"4", true)]),
    ] {
        hits(&format!("{name} 5"), b"5", &rows);
    }
    // Non-numbers count as 0, leading digits are used, signs are honoured.
    hits("@eq 0", b"0", &[(b"abc", true), (b"", true)]);
    hits("@eq 12", b"12", &[(b" 12abc", true)]);
    hits("@lt 0", b"0", &[(b"-3", true)]);
}

#[test]
fn string_comparisons_are_case_sensitive() {
    let o = op("@streq abc");
    assert_eq!(eval(&o, b"abc", b"abc"), (true, b"abc".to_vec()));
    assert!(!eval(&o, b"ABC", b"abc").0);
    hits(
        "@contains needle",
        b"needle",
        &[(b"hayneedlehay", true), (b"NEEDLE", false)],
    );
    hits(
        "@strmatch needle",
        b"needle",
        &[(b"aneedle", true), (b"needl", false)],
    );
    hits(
        "@beginsWith /admin",
        b"/admin",
        &[(b"/admin/x", true), (b"/x/admin", false)],
    );
    hits(
        "@endsWith .php",
        b".php",
        &[(b"a.php", true), (b"a.php.txt", false)],
    );
    hits(
        "@within GET POST HEAD",
        b"GET POST HEAD",
        &[(b"POST", true), (b"PUT", false), (b"", false)],
    );
    hits(
        "@containsWord select",
        b"select",
        &[
            (b"1 select 2", true),
            (b"select", true),
            (b"(select)", true),
            (b"selected", false),
            (b"preselect", false),
        ],
    );
}

#[test]
fn verify_cc_checks_luhn_on_regex_candidates() {
    let o = op(r"@verifyCC \d{13,16}");
    // 4111 1111 1111 1111 is the classic Luhn-valid test number.
    assert_eq!(
        eval(&o, b"card=4111111111111111;", b""),
        (true, b"4111111111111111".to_vec())
    );
    assert!(!eval(&o, b"card=4111111111111112", b"").0);
    assert!(!eval(&o, b"order 1234567890123", b"").0);
}

#[test]
fn unconditional_and_no_match() {
    hits("@unconditionalMatch", b"", &[(b"", true), (b"x", true)]);
    hits("@noMatch", b"", &[(b"", false), (b"x", false)]);
    hits("!@noMatch", b"", &[(b"x", true)]);
}

#[test]
fn unknown_operators_are_unsupported_not_errors() {
    let mut env = Files(HashMap::new());
    for name in [
        "@geoLookup",
        "@rbl sbl.example.org",
        "@inspectFile /x",
        "@fuzzyHash a 1",
    ] {
        assert!(
            matches!(
                OperatorSpec::parse(name, &mut env),
                Err(OpError::Unsupported(_))
            ),
            "{name}"
        );
    }
    assert!(matches!(
        OperatorSpec::parse("@rx (", &mut env),
        Err(OpError::Invalid(_))
    ));
}
