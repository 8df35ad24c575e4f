//! Engine behaviour against ModSecurity's documented semantics: phases, chains, flow
//! control, setvar/macros, capture, ctl, exclusions, counts, engine modes, loading.

#![allow(clippy::unwrap_used)]

use rampart_waf::{EngineMode, InterruptionAction, MemoryLoader, RuleSet, WafError};

fn rs(text: &str) -> RuleSet {
    RuleSet::from_text("test.conf", text)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn get(rs: &RuleSet, uri: &str) -> rampart_waf::Transaction {
    let mut tx = rs.transaction();
    tx.process_connection("10.0.0.1", 5555, "10.0.0.2", 80);
    tx.process_uri(uri, "GET", "HTTP/1.1");
    tx.add_request_header("Host", "example.com");
    tx.add_request_header("User-Agent", "test");
    tx.process_request_headers();
    tx.process_request_body();
    tx
}

fn ids(tx: &rampart_waf::Transaction) -> Vec<u32> {
    tx.matched_rules()
        .iter()
        .filter(|m| m.log)
        .map(|m| m.id)
        .collect()
}

#[test]
fn deny_interrupts_only_in_on_mode() {
    let on =
        rs("SecRuleEngine On\nSecRule ARGS:q \"@contains evil\" \"id:1,phase:1,deny,status:406\"");
    let mut tx = on.transaction();
    tx.process_uri("/?q=evil", "GET", "HTTP/1.1");
    let i = tx.process_request_headers().unwrap();
    assert_eq!(
        (i.status, i.rule_id, i.action),
        (406, 1, InterruptionAction::Deny)
    );

    let det = rs("SecRuleEngine DetectionOnly\nSecRule ARGS:q \"@contains evil\" \"id:1,phase:1,deny,status:406\"");
    let tx = get(&det, "/?q=evil");
    assert!(tx.interruption().is_none());
    assert_eq!(ids(&tx), [1]);

    let off = rs("SecRuleEngine Off\nSecRule ARGS:q \"@contains evil\" \"id:1,phase:1,deny\"");
    assert!(ids(&get(&off, "/?q=evil")).is_empty());
}

#[test]
fn chain_requires_every_link_and_sees_matched_vars() {
    let r = rs(r#"
SecRule ARGS "@rx ^a" "id:1,phase:1,pass,chain"
    SecRule MATCHED_VARS "@rx b$" "setvar:tx.hit=1"
"#);
    let tx = get(&r, "/?x=ab&y=cb");
    assert_eq!(ids(&tx), [1]);
    assert_eq!(tx.tx_variable("hit").as_deref(), Some("1"));
    let tx = get(&r, "/?x=ac&y=cb");
    assert!(ids(&tx).is_empty());
}

#[test]
fn setvar_arithmetic_and_macros() {
    let r = rs(r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.score=5,setvar:tx.inc=3"
SecRule ARGS "@rx ." "id:2,phase:1,pass,setvar:'tx.score=+%{tx.inc}',setvar:'tx.last=%{MATCHED_VAR_NAME}=%{MATCHED_VAR}'"
SecAction "id:3,phase:1,pass,nolog,setvar:tx.score=-1,setvar:!tx.inc"
"#);
    let tx = get(&r, "/?a=1&b=2");
    // Two matching args: +3 twice (actions run per match, like ModSecurity).
    assert_eq!(tx.tx_variable("score").as_deref(), Some("10"));
    assert_eq!(tx.tx_variable("last").as_deref(), Some("ARGS:b=2"));
    assert!(tx.tx_variable("inc").is_none());
    assert!(!tx.matched_rules()[0].log || tx.matched_rules()[0].id != 1);
}

#[test]
fn capture_sets_tx_groups() {
    let r = rs(
        r#"SecRule REQUEST_URI "@rx /user/(\d+)/(\w+)" "id:1,phase:1,pass,capture,setvar:tx.uid=%{TX.1},msg:'user %{tx.2}'""#,
    );
    let tx = get(&r, "/user/42/edit");
    assert_eq!(tx.tx_variable("uid").as_deref(), Some("42"));
    assert_eq!(tx.matched_rules()[0].msg, "user edit");
}

#[test]
fn skip_after_and_skip() {
    let r = rs(r#"
SecAction "id:1,phase:1,pass,nolog,skipAfter:END"
SecAction "id:2,phase:1,pass"
SecMarker END
SecAction "id:3,phase:1,pass,skip:1"
SecAction "id:4,phase:1,pass"
SecAction "id:5,phase:1,pass"
"#);
    assert_eq!(ids(&get(&r, "/")), [3, 5]);
}

#[test]
fn ctl_rule_removal_and_target_removal() {
    let r = rs(r#"
SecRule ARGS:off "@streq 1" "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=10-19,ctl:ruleRemoveTargetById=20;ARGS:secret"
SecRule ARGS "@rx ." "id:10,phase:1,pass"
SecRule ARGS "@rx ." "id:20,phase:1,pass"
"#);
    assert_eq!(ids(&get(&r, "/?off=1&secret=x")), [20]);
    let tx = get(&r, "/?off=1&secret=x");
    assert_eq!(&*tx.matched_rules()[1].matched_var_name, "ARGS:off");
    assert_eq!(ids(&get(&r, "/?off=0")), [10, 20]);
}

#[test]
fn exclusions_counts_and_regex_keys() {
    let r = rs(r#"
SecRule ARGS|!ARGS:safe "@rx x" "id:1,phase:1,pass"
SecRule &ARGS "@eq 3" "id:2,phase:1,pass"
SecRule ARGS:/^id_/ "@rx ^\d+$" "id:3,phase:1,pass"
SecRule &REQUEST_HEADERS:X-Missing "@eq 0" "id:4,phase:1,pass"
"#);
    assert_eq!(ids(&get(&r, "/?safe=x&id_a=1&b=2")), [2, 3, 4]);
}

#[test]
fn default_action_transforms_and_t_none() {
    let r = rs(r#"
SecDefaultAction "phase:1,log,pass,t:lowercase"
SecRule ARGS "@streq abc" "id:1"
SecRule ARGS "@streq abc" "id:2,t:none"
"#);
    assert_eq!(ids(&get(&r, "/?a=ABC")), [1]);
}

#[test]
fn multimatch_checks_each_transformation_step() {
    let r = rs(r#"
SecRule ARGS "@streq %41" "id:1,phase:1,pass,t:none,t:urlDecode,multiMatch"
SecRule ARGS "@streq %41" "id:2,phase:1,pass,t:none,t:urlDecode"
"#);
    // ARGS are already URL-decoded once ("%41"); only multiMatch sees the value
    // before t:urlDecode turns it into "A".
    assert_eq!(ids(&get(&r, "/?a=%2541")), [1]);
    assert_eq!(ids(&get(&r, "/?a=%41")), Vec::<u32>::new());
}

#[test]
fn operators_with_macros_compare_numbers() {
    let r = rs(r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.limit=3"
SecRule &ARGS "@gt %{tx.limit}" "id:2,phase:1,pass"
"#);
    assert_eq!(ids(&get(&r, "/?a&b&c&d")), [2]);
    assert_eq!(ids(&get(&r, "/?a&b")), Vec::<u32>::new());
}

#[test]
fn request_bodies_urlencoded_json_multipart_xml() {
    let r = rs(r#"
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:1,phase:1,pass,nolog,t:lowercase,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "^text/xml" "id:2,phase:1,pass,nolog,t:lowercase,ctl:requestBodyProcessor=XML"
SecRule ARGS_POST:json.user.name "@streq bob" "id:10,phase:2,pass"
SecRule ARGS_POST:field "@streq v" "id:11,phase:2,pass"
SecRule FILES "@endsWith .php" "id:12,phase:2,pass"
SecRule XML:/* "@contains hello" "id:13,phase:2,pass"
SecRule XML://@* "@streq 7" "id:14,phase:2,pass"
SecRule REQBODY_ERROR "!@eq 0" "id:15,phase:2,pass"
SecRule ARGS_POST:a "@streq 1 2" "id:16,phase:2,pass"
"#);
    let run = |ct: &str, body: &[u8]| {
        let mut tx = r.transaction();
        tx.process_uri("/p", "POST", "HTTP/1.1");
        tx.add_request_header("Content-Type", ct);
        tx.process_request_headers();
        tx.append_request_body(body);
        tx.process_request_body();
        ids(&tx)
    };
    assert_eq!(run("application/json", br#"{"user":{"name":"bob"}}"#), [10]);
    assert_eq!(run("application/json", br#"{"user":"#), [15]);
    assert_eq!(run("application/x-www-form-urlencoded", b"a=1+2"), [16]);
    let mp = b"--B\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nv\r\n--B\r\nContent-Disposition: form-data; name=\"up\"; filename=\"s.php\"\r\n\r\n<?php\r\n--B--\r\n";
    assert_eq!(run("multipart/form-data; boundary=B", mp), [11, 12]);
    assert_eq!(run("text/xml", b"<a n=\"7\"><b>hello</b></a>"), [13, 14]);
    assert_eq!(run("text/xml", b"<a><b></a>"), [15]);
    // No body bytes: nothing to parse, so no REQBODY_ERROR.
    assert_eq!(run("text/xml", b""), Vec::<u32>::new());
    assert_eq!(
        run("multipart/form-data; boundary=B", b""),
        Vec::<u32>::new()
    );
}

#[test]
fn response_phases_and_mime_filter() {
    let r = rs(r#"
SecResponseBodyAccess On
SecResponseBodyMimeType text/html
SecRule RESPONSE_STATUS "@streq 500" "id:1,phase:3,pass"
SecRule RESPONSE_BODY "@contains stack trace" "id:2,phase:4,pass"
SecAction "id:3,phase:5,pass"
"#);
    let mut tx = r.transaction();
    tx.process_uri("/", "GET", "HTTP/1.1");
    tx.process_request_headers();
    tx.process_request_body();
    tx.add_response_header("Content-Type", "text/html; charset=utf-8");
    tx.process_response_headers(500, "HTTP/1.1");
    tx.append_response_body(b"a stack trace here");
    tx.process_response_body();
    tx.process_logging();
    assert_eq!(ids(&tx), [1, 2, 3]);
}

#[test]
fn body_limit_rejects_in_on_mode() {
    let r = rs("SecRuleEngine On\nSecRequestBodyAccess On\nSecRequestBodyLimit 4\nSecRequestBodyLimitAction Reject");
    let mut tx = r.transaction();
    tx.process_uri("/", "POST", "HTTP/1.1");
    tx.process_request_headers();
    tx.append_request_body(b"0123456789");
    assert_eq!(tx.process_request_body().map(|i| i.status), Some(413));

    let r = rs("SecRuleEngine On\nSecRequestBodyAccess On\nSecRequestBodyNoFilesLimit 4\nSecRequestBodyLimitAction Reject");
    let mut tx = r.transaction();
    tx.process_uri("/", "POST", "HTTP/1.1");
    tx.add_request_header("Content-Type", "application/x-www-form-urlencoded");
    tx.process_request_headers();
    tx.append_request_body(b"a=123456");
    assert_eq!(tx.process_request_body().map(|i| i.status), Some(413));

    let r = rs("SecRuleEngine On\nSecResponseBodyAccess On\nSecResponseBodyMimeType text/plain\nSecResponseBodyLimit 4\nSecResponseBodyLimitAction Reject");
    let mut tx = r.transaction();
    tx.process_uri("/", "GET", "HTTP/1.1");
    tx.process_request_headers();
    tx.process_request_body();
    tx.add_response_header("Content-Type", "text/plain");
    tx.process_response_headers(200, "HTTP/1.1");
    tx.append_response_body(b"0123456789");
    assert_eq!(tx.process_response_body().map(|i| i.status), Some(500));
}

#[test]
fn loading_reports_unsupported_and_locates_errors() {
    let (_, report) = RuleSet::from_text(
        "a.conf",
        "SecFooBar On\nSecRule ARGS \"@verifySSN x\" \"id:1,phase:2,pass,initcol:ip=x\"\nSecAuditEngine On\n",
    )
    .unwrap();
    let what: Vec<&str> = report.unsupported.iter().map(|u| u.what.as_str()).collect();
    assert!(what.iter().any(|w| w.contains("SecFooBar")));
    assert!(what.iter().any(|w| w.contains("@verifySSN")));
    assert!(what.iter().any(|w| w.contains("initcol")));
    assert_eq!(report.ignored_directives.len(), 1);

    let err = RuleSet::from_text("b.conf", "\n  SecRule ARGS \"@rx (\" \"id:1\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WafError::Parse { .. }));
    assert!(msg.starts_with("b.conf:2:"), "{msg}");

    let err = RuleSet::from_text("c.conf", "SecRule ARGS \"@rx a\" \"id:1,bogus\"").unwrap_err();
    assert!(err.to_string().starts_with("c.conf:1:"), "{err}");
}

#[test]
fn include_globs_pm_from_file_and_rule_removal() {
    let loader = MemoryLoader::new()
        .with(
            "main.conf",
            "Include rules/*.conf\nSecRuleRemoveById 3\nSecRuleUpdateTargetById 2 \"!ARGS:skip\"",
        )
        .with(
            "rules/a.conf",
            "SecRule ARGS \"@pmFromFile words.data\" \"id:1,phase:1,pass\"",
        )
        .with(
            "rules/b.conf",
            "SecRule ARGS \"@rx .\" \"id:2,phase:1,pass\"\nSecAction \"id:3,phase:1,pass\"",
        )
        .with("rules/words.data", "# comment\nfoo\nBar\n");
    let (r, report) = RuleSet::load(&loader, &["main.conf"]).unwrap();
    assert_eq!(report.files, ["main.conf", "rules/a.conf", "rules/b.conf"]);
    assert_eq!(report.removed, 1);
    assert_eq!(ids(&get(&r, "/?x=xbarx")), [1, 2]);
    assert_eq!(ids(&get(&r, "/?skip=foo")), [1]);
}

#[test]
fn transformation_cache_does_not_leak_between_values() {
    let r = rs(r#"SecRule ARGS "@streq abc" "id:1,phase:1,pass,t:lowercase""#);
    assert_eq!(ids(&get(&r, "/?a=ABC")), [1]);
    assert_eq!(ids(&get(&r, "/?a=abd")), Vec::<u32>::new());
}

#[test]
fn builtin_policy_blocks_common_attacks() {
    let r = RuleSet::builtin().unwrap();
    assert_eq!(r.engine_mode(), EngineMode::On);
    let blocked = |uri: &str| {
        let mut tx = r.transaction();
        tx.process_uri(uri, "GET", "HTTP/1.1");
        tx.add_request_header("User-Agent", "Mozilla/5.0");
        tx.process_request_headers()
            .or_else(|| tx.process_request_body())
            .map(|i| i.rule_id)
    };
    assert_eq!(blocked("/?id=1%27%20OR%20%271%27=%271"), Some(1300));
    assert_eq!(blocked("/?q=%3Cscript%3Ealert(1)%3C/script%3E"), Some(1400));
    assert_eq!(blocked("/../../etc/passwd"), Some(1200));
    assert_eq!(blocked("/?f=..%2f..%2fetc%2fpasswd"), Some(1200));
    assert_eq!(blocked("/?f=/etc/passwd"), Some(1210));
    assert_eq!(blocked("/?u=php://filter/resource=index"), Some(1220));
    assert_eq!(blocked("/?h=x;cat%20/etc/hosts"), Some(1500));
    assert_eq!(blocked("/?h=x%3B%20wget%20http://e/x"), Some(1500));
    assert_eq!(blocked("/?c=%3C%3Fphp%20echo%201"), Some(1600));
    assert_eq!(blocked("/?x=$%7Bjndi:ldap://e/a%7D"), Some(1700));
    assert_eq!(blocked("/?x=java.lang.Runtime"), Some(1701));
    // What libinjectionrs misses and rule 1301 covers (libinjection's own samples).
    assert_eq!(blocked("/?id=1%20into%20outfile%20%27asd%27"), Some(1301));
    assert_eq!(blocked("/?id=1%27%20LOCK%20IN%20SHARE%20MODE"), Some(1301));
    let mut tx = r.transaction();
    tx.process_uri("/upload", "POST", "HTTP/1.1");
    tx.add_request_header("Content-Type", "application/json");
    tx.process_request_headers();
    tx.append_request_body(br#"{"path":"../../secret"}"#);
    assert_eq!(tx.process_request_body().map(|i| i.rule_id), Some(1201));
    for ok in [
        "/",
        "/search?q=hello+world",
        "/a/b.html?page=2&sort=name",
        "/?email=a@b.com&note=it%27s+fine",
        "/?q=put+it+into+the+file",
        "/?q=in+boolean+mode+we+trust",
    ] {
        assert_eq!(blocked(ok), None, "{ok}");
    }
    let mut tx = r.transaction();
    tx.process_uri("/", "GET", "HTTP/1.1");
    tx.add_request_header("User-Agent", "sqlmap/1.7");
    assert_eq!(tx.process_request_headers().map(|i| i.rule_id), Some(1100));
}

#[test]
fn update_action_by_id_and_remove_by_msg() {
    let r = rs(r#"
SecRuleEngine On
SecRule ARGS "@contains x" "id:1,phase:1,deny,status:403,msg:'old',severity:WARNING,t:none"
SecRule ARGS:quiet "@streq 1" "id:3,phase:1,pass,nolog,ctl:ruleRemoveByMsg=noisy"
SecRule ARGS "@contains y" "id:2,phase:1,pass,msg:'noisy'"
SecRuleUpdateActionById 1 "pass,msg:'new',severity:CRITICAL,tag:'tuned',t:lowercase"
"#);
    // `t:lowercase` was appended: "X" now matches, and `pass` replaced `deny`.
    let tx = get(&r, "/?a=X");
    assert!(tx.interruption().is_none());
    let m = &tx.matched_rules()[0];
    assert_eq!((m.id, m.msg.as_str()), (1, "new"));
    assert_eq!(m.severity, Some(rampart_waf::Severity::Critical));
    assert_eq!(*m.tags, ["tuned"]);
    assert_eq!(ids(&get(&r, "/?quiet=1&b=y")), Vec::<u32>::new());
    assert_eq!(ids(&get(&r, "/?b=y")), [2]);
}

#[test]
fn unlogged_matches_record_no_texts_tags_or_file() {
    let r = rs(r#"
SecRuleEngine On
SecRule ARGS "@contains a" "id:1,phase:1,pass,nolog,msg:'quiet',tag:'bookkeeping'"
SecRule ARGS "@contains b" "id:2,phase:1,pass,log,msg:'loud',tag:'attack-x'"
SecRule ARGS "@contains c" "id:3,phase:1,deny,nolog,msg:'stops',tag:'attack-y'"
"#);
    let tx = get(&r, "/?x=abc");
    let m = tx.matched_rules();
    assert_eq!(m.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 2, 3]);
    // A `nolog` match that did not interrupt: id, phase and variable only.
    assert_eq!(
        (m[0].msg.as_str(), m[0].tags.len(), &*m[0].file),
        ("", 0, "")
    );
    assert_eq!(&*m[0].matched_var_name, "ARGS:x");
    // Logged, or interrupting although `nolog`: everything.
    for (m, msg, tag) in [(&m[1], "loud", "attack-x"), (&m[2], "stops", "attack-y")] {
        assert_eq!((m.msg.as_str(), &*m.tags), (msg, &[tag.to_string()][..]));
        assert!(!m.file.is_empty() && m.line > 0, "{:?}", m.file);
    }
}

#[test]
fn load_report_summary_lists_unsupported_ignored_and_regex_engines() {
    let (_, report) = RuleSet::from_text(
        "r.conf",
        r#"SecAuditEngine On
SecFooBar x
SecRule ARGS "@rx ^a+$" "id:1,phase:1,pass"
SecRule ARGS "@rx (?>ab|a)c" "id:2,phase:1,pass"
SecRule ARGS "@rx (a)\1" "id:3,phase:1,pass,t:bogusTransform"
SecRule ARGS "@geoLookup" "id:4,phase:1,pass,expirevar:ip.x=1"
"#,
    )
    .unwrap();
    assert_eq!(
        report.regex_engines,
        [
            (1, rampart_waf::RegexEngine::Regex),
            (2, rampart_waf::RegexEngine::Rewritten),
            (3, rampart_waf::RegexEngine::FancyRegex)
        ]
    );
    let s = report.summary();
    for want in [
        "4 rules from 1 files (0 removed); @rx engines: 1 regex, 1 rewrite, 1 fancy-regex",
        "unsupported: r.conf:2:1 directive SecFooBar",
        "t:bogusTransform",
        "operator @geoLookup",
        "action expirevar",
        "ignored directive: r.conf:1:1 SecAuditEngine",
        "regex engine: rule 2 rewrite",
        "regex engine: rule 3 fancy-regex",
    ] {
        assert!(s.contains(want), "{want:?} not in:\n{s}");
    }
}
