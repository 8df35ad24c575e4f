//! One test per SecLang action (or small family), against ModSecurity's reference manual:
//! metadata, disruptive actions, flow control, data actions, `setvar`, `ctl`, and the
//! accepted-but-unimplemented ones (listed in the load report, never silent).

#![allow(clippy::unwrap_used)]

use rampart_waf::{
    EngineMode, InterruptionAction, MatchedRule, Phase, RuleSet, Severity, Transaction,
};

fn rs(text: &str) -> RuleSet {
    RuleSet::from_text("actions.conf", text)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// Runs a request through all phases (response: 200 text/plain "body").
fn run(rs: &RuleSet, uri: &str) -> Transaction {
    let mut tx = rs.transaction();
    tx.process_connection("10.0.0.1", 5555, "10.0.0.2", 80);
    tx.process_uri(uri, "GET", "HTTP/1.1");
    tx.add_request_header("Host", "example.com");
    tx.add_request_header("User-Agent", "ua");
    let mut stop = tx.process_request_headers().is_some();
    stop = stop || tx.process_request_body().is_some();
    if !stop {
        tx.add_response_header("Content-Type", "text/plain");
        stop = tx.process_response_headers(200, "HTTP/1.1").is_some();
    }
    if !stop {
        tx.append_response_body(b"body");
        tx.process_response_body();
    }
    tx.process_logging();
    tx
}

fn logged(tx: &Transaction) -> Vec<u32> {
    tx.matched_rules()
        .iter()
        .filter(|m| m.log)
        .map(|m| m.id)
        .collect()
}

fn rule(tx: &Transaction, id: u32) -> &MatchedRule {
    tx.matched_rules()
        .iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("rule {id} did not match"))
}

#[test]
fn id_phase_and_phase_names() {
    let r = rs(r#"
SecAction "id:10,phase:request,pass"
SecAction "id:11,phase:response,pass"
SecAction "id:12,phase:logging,pass"
SecAction "id:13,phase:1,pass"
SecAction "id:14,phase:3,pass"
"#);
    let tx = run(&r, "/");
    assert_eq!(logged(&tx), [13, 10, 14, 11, 12]);
    assert_eq!(rule(&tx, 10).phase, Phase::RequestBody);
    assert_eq!(rule(&tx, 11).phase, Phase::ResponseBody);
    assert_eq!(rule(&tx, 12).phase, Phase::Logging);
    // A rule needs an id.
    assert!(RuleSet::from_text("x.conf", r#"SecAction "phase:1,pass""#).is_err());
}

#[test]
fn msg_logdata_severity_tag_and_metadata() {
    let r = rs(r#"
SecRule ARGS:q "@rx (a+)" "id:1,phase:1,pass,capture,msg:'found %{TX.1} in %{MATCHED_VAR_NAME}',logdata:'data=%{MATCHED_VAR}',severity:CRITICAL,tag:'attack-x',tag:paranoia-level/1,ver:'v1',rev:2,maturity:9,accuracy:8"
SecAction "id:2,phase:1,pass,severity:4"
"#);
    let tx = run(&r, "/?q=xaay");
    let m = rule(&tx, 1);
    assert_eq!(m.msg, "found aa in ARGS:q");
    assert_eq!(m.logdata, "data=xaay");
    assert_eq!(m.severity, Some(Severity::Critical));
    assert_eq!(*m.tags, ["attack-x", "paranoia-level/1"]);
    assert_eq!(&*m.matched_var_name, "ARGS:q");
    assert_eq!(m.matched_data, "xaay");
    assert_eq!(rule(&tx, 2).severity, Some(Severity::Warning));
    let line = m.log_line();
    assert!(line.contains(r#"[id "1"]"#) && line.contains(r#"[msg "found aa in ARGS:q"]"#));
}

#[test]
fn t_transformations_apply_in_order_and_t_none_resets() {
    let r = rs(r#"
SecDefaultAction "phase:1,pass,log,t:lowercase"
SecRule ARGS:a "@streq <x>" "id:1,t:urlDecode,t:htmlEntityDecode"
SecRule ARGS:a "@streq %3CX%3E" "id:2,t:none"
SecRule ARGS:a "@streq %3cx%3e" "id:3"
"#);
    // ARGS are already URL-decoded once; the value is "%3CX%3E".
    assert_eq!(logged(&run(&r, "/?a=%253CX%253E")), [1, 2, 3]);
}

#[test]
fn pass_deny_status_and_block() {
    let r = rs(r#"
SecRuleEngine On
SecDefaultAction "phase:1,log,deny,status:418"
SecRule ARGS:p "@streq 1" "id:1,phase:1,pass"
SecRule ARGS:d "@streq 1" "id:2,phase:1,deny,status:406"
SecRule ARGS:b "@streq 1" "id:3,phase:1,block"
SecRule ARGS:n "@streq 1" "id:4,phase:1,deny"
"#);
    let tx = run(&r, "/?p=1");
    assert!(tx.interruption().is_none());
    assert_eq!(logged(&tx), [1]);
    let i = run(&r, "/?d=1").interruption().cloned().unwrap();
    assert_eq!(
        (i.rule_id, i.status, i.action),
        (2, 406, InterruptionAction::Deny)
    );
    // `block` takes SecDefaultAction's disruptive action and status.
    let i = run(&r, "/?b=1").interruption().cloned().unwrap();
    assert_eq!((i.rule_id, i.status), (3, 418));
    // deny without status: 403.
    let r2 = rs("SecRuleEngine On\nSecRule ARGS:n \"@streq 1\" \"id:4,phase:1,deny\"");
    assert_eq!(run(&r2, "/?n=1").interruption().unwrap().status, 403);
}

#[test]
fn drop_and_redirect() {
    let r = rs(r#"
SecRuleEngine On
SecRule ARGS:x "@streq drop" "id:1,phase:1,drop"
SecRule ARGS:x "@streq go" "id:2,phase:1,redirect:'https://example.com/blocked?from=%{REQUEST_FILENAME}'"
SecRule ARGS:x "@streq go301" "id:3,phase:1,status:301,redirect:https://example.com/"
"#);
    let i = run(&r, "/?x=drop").interruption().cloned().unwrap();
    assert_eq!(i.action, InterruptionAction::Drop);
    let i = run(&r, "/p?x=go").interruption().cloned().unwrap();
    assert_eq!(
        (i.status, i.action),
        (
            302,
            InterruptionAction::Redirect("https://example.com/blocked?from=/p".into())
        )
    );
    assert_eq!(run(&r, "/?x=go301").interruption().unwrap().status, 301);
}

#[test]
fn allow_scopes() {
    let rules = |scope: &str| {
        rs(&format!(
            r#"
SecRuleEngine On
SecRule ARGS:ok "@streq 1" "id:1,phase:1,pass,nolog,allow{scope}"
SecAction "id:2,phase:1,pass"
SecAction "id:3,phase:2,pass"
SecAction "id:4,phase:3,pass"
SecAction "id:5,phase:5,pass"
"#
        ))
    };
    // allow: skips the rest of phases 1–4 (logging still runs).
    assert_eq!(logged(&run(&rules(""), "/?ok=1")), [5]);
    // allow:phase: only the rest of the current phase.
    assert_eq!(logged(&run(&rules(":phase"), "/?ok=1")), [3, 4, 5]);
    // allow:request: the request phases, response phases still run.
    assert_eq!(logged(&run(&rules(":request"), "/?ok=1")), [4, 5]);
    assert_eq!(logged(&run(&rules(""), "/?ok=0")), [2, 3, 4, 5]);
}

#[test]
fn log_nolog_auditlog_noauditlog() {
    let r = rs(r#"
SecAction "id:1,phase:1,pass,log,auditlog"
SecAction "id:2,phase:1,pass,nolog"
SecAction "id:3,phase:1,pass,log,noauditlog"
SecAction "id:4,phase:1,pass,nolog,noauditlog"
"#);
    let tx = run(&r, "/");
    // nolog rules still match (and still run their actions) but are not logged.
    assert_eq!(logged(&tx), [1, 3]);
    assert_eq!(tx.matched_rules().len(), 4);
}

#[test]
fn chain_needs_every_link_and_metadata_comes_from_the_head() {
    let r = rs(r#"
SecRule ARGS:a "@streq 1" "id:1,phase:1,pass,msg:'head',chain"
    SecRule ARGS:b "@streq 2" "chain,setvar:tx.mid=1"
    SecRule ARGS:c "@streq 3" "setvar:tx.last=1"
"#);
    let tx = run(&r, "/?a=1&b=2&c=3");
    assert_eq!(logged(&tx), [1]);
    assert_eq!(rule(&tx, 1).msg, "head");
    assert_eq!(tx.tx_variable("last").as_deref(), Some("1"));
    let tx = run(&r, "/?a=1&b=2&c=4");
    assert!(logged(&tx).is_empty());
    // Actions of a link that matched run even if a later link fails (ModSecurity).
    assert_eq!(tx.tx_variable("mid").as_deref(), Some("1"));
}

#[test]
fn skip_and_skip_after() {
    let r = rs(r#"
SecAction "id:1,phase:1,pass,skip:2"
SecAction "id:2,phase:1,pass"
SecAction "id:3,phase:1,pass"
SecAction "id:4,phase:1,pass,skipAfter:END"
SecAction "id:5,phase:1,pass"
SecMarker END
SecAction "id:6,phase:1,pass"
"#);
    assert_eq!(logged(&run(&r, "/")), [1, 4, 6]);
}

#[test]
fn capture_fills_tx_0_to_9() {
    let r = rs(r#"
SecRule REQUEST_URI "@rx ^/(\w+)/(\d+)" "id:1,phase:1,pass,capture,setvar:tx.all=%{TX.0},setvar:tx.kind=%{TX.1},setvar:tx.n=%{TX.2}"
SecRule REQUEST_URI "@rx ^/(\w+)" "id:2,phase:1,pass,setvar:tx.nocap=%{TX.1}"
"#);
    let tx = run(&r, "/item/42/x");
    assert_eq!(tx.tx_variable("all").as_deref(), Some("/item/42"));
    assert_eq!(tx.tx_variable("kind").as_deref(), Some("item"));
    assert_eq!(tx.tx_variable("n").as_deref(), Some("42"));
    // Without `capture` TX.1 keeps its earlier value.
    assert_eq!(tx.tx_variable("nocap").as_deref(), Some("item"));
}

#[test]
fn multi_match_tests_every_transformation_step() {
    let r = rs(r#"
SecRule ARGS:a "@streq %41" "id:1,phase:1,pass,t:none,t:urlDecode,multiMatch"
SecRule ARGS:a "@streq %41" "id:2,phase:1,pass,t:none,t:urlDecode"
"#);
    assert_eq!(logged(&run(&r, "/?a=%2541")), [1]);
}

#[test]
fn setvar_forms() {
    let r = rs(r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.a=10,setvar:tx.b,setvar:'tx.msg=hello world'"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.a=+5,setvar:tx.c=-3,setvar:!tx.b"
SecAction "id:3,phase:1,pass,nolog,setvar:'tx.key_%{tx.a}=%{tx.msg}',setvar:TX.UPPER=1"
SecAction "id:4,phase:1,pass,nolog,setvar:tx.a=-2,setvar:tx.n=+x"
"#);
    let tx = run(&r, "/");
    assert_eq!(tx.tx_variable("a").as_deref(), Some("13"));
    // `=-3` on an unset variable starts from 0.
    assert_eq!(tx.tx_variable("c").as_deref(), Some("-3"));
    assert!(tx.tx_variable("b").is_none());
    assert_eq!(tx.tx_variable("key_15").as_deref(), Some("hello world"));
    // Variable names are case-insensitive.
    assert_eq!(tx.tx_variable("upper").as_deref(), Some("1"));
    // Non-numeric operands count as 0.
    assert_eq!(tx.tx_variable("n").as_deref(), Some("0"));
}

/// A macro-keyed `setvar` per header name (CRS 920450's form): each key and value is
/// its own, with nothing carried over from the previous expansion (the transaction
/// reuses its expansion buffers), and keys are lowercased.
#[test]
fn macro_keyed_setvar_per_header() {
    let r = rs(r#"
SecRule REQUEST_HEADERS_NAMES "@rx ^.*$" "id:1,phase:1,pass,nolog,capture,t:lowercase,setvar:'tx.hn_%{tx.0}=/%{tx.0}/',setvar:'TX.Long_%{tx.0}_%{tx.0}_%{tx.0}=%{tx.0}%{tx.0}'"
"#);
    let tx = run(&r, "/");
    assert_eq!(tx.tx_variable("hn_host").as_deref(), Some("/host/"));
    assert_eq!(
        tx.tx_variable("hn_user-agent").as_deref(),
        Some("/user-agent/")
    );
    assert_eq!(
        tx.tx_variable("long_host_host_host").as_deref(),
        Some("hosthost")
    );
    assert_eq!(
        tx.tx_variable("long_user-agent_user-agent_user-agent")
            .as_deref(),
        Some("user-agentuser-agent")
    );
}

#[test]
fn ctl_actions() {
    let r = rs(r#"
SecRuleEngine On
SecRule ARGS:mode "@streq detect" "id:1,phase:1,pass,nolog,ctl:ruleEngine=DetectionOnly"
SecRule ARGS:mode "@streq off" "id:2,phase:1,pass,nolog,ctl:ruleEngine=Off"
SecRule ARGS:rm "@streq tag" "id:3,phase:1,pass,nolog,ctl:ruleRemoveByTag=blocker"
SecRule ARGS:rm "@streq id" "id:4,phase:1,pass,nolog,ctl:ruleRemoveById=100"
SecRule ARGS:rm "@streq target" "id:5,phase:1,pass,nolog,ctl:ruleRemoveTargetByTag=blocker;ARGS:x"
SecRule ARGS:rm "@streq msg" "id:6,phase:1,pass,nolog,ctl:ruleRemoveByMsg=Blocked"
SecRule ARGS:x "@streq bad" "id:100,phase:2,deny,tag:blocker,msg:Blocked"
"#);
    assert_eq!(run(&r, "/?x=bad").interruption().unwrap().rule_id, 100);
    let tx = run(&r, "/?x=bad&mode=detect");
    assert!(tx.interruption().is_none());
    assert_eq!(logged(&tx), [100]);
    assert!(logged(&run(&r, "/?x=bad&mode=off")).is_empty());
    for rm in ["tag", "id", "target", "msg"] {
        let tx = run(&r, &format!("/?x=bad&rm={rm}"));
        assert!(tx.interruption().is_none(), "ctl remove by {rm}");
    }
}

#[test]
fn ctl_body_processing() {
    let r = rs(r#"
SecRequestBodyAccess Off
SecRule REQUEST_HEADERS:X-Body "@streq on" "id:1,phase:1,pass,nolog,ctl:requestBodyAccess=On,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:X-Force "@streq on" "id:2,phase:1,pass,nolog,ctl:forceRequestBodyVariable=On"
SecRule ARGS:json.k "@streq v" "id:10,phase:2,pass"
SecRule REQBODY_PROCESSOR "@streq JSON" "id:11,phase:2,pass"
SecRule REQUEST_BODY "@contains k" "id:12,phase:2,pass"
"#);
    let post = |headers: &[(&str, &str)]| {
        let body = br#"{"k":"v"}"#;
        let mut tx = r.transaction();
        tx.process_uri("/", "POST", "HTTP/1.1");
        tx.add_request_header("Content-Type", "text/plain");
        tx.add_request_header("Content-Length", &body.len().to_string());
        for (k, v) in headers {
            tx.add_request_header(k, v);
        }
        tx.process_request_headers();
        tx.append_request_body(body);
        tx.process_request_body();
        logged(&tx)
    };
    assert!(post(&[]).is_empty());
    assert_eq!(post(&[("X-Body", "on")]), [10, 11]);
    assert_eq!(post(&[("X-Body", "on"), ("X-Force", "on")]), [10, 11, 12]);
}

#[test]
fn unimplemented_actions_load_and_are_reported() {
    let (r, report) = RuleSet::from_text(
        "u.conf",
        r#"SecAction "id:1,phase:1,pass,initcol:ip=%{REMOTE_ADDR},expirevar:ip.x=60,deprecatevar:ip.y=1/60,setenv:a=b,setuid:u,setsid:s,exec:/bin/true,sanitiseArg:p""#,
    )
    .unwrap();
    let what: Vec<&str> = report.unsupported.iter().map(|u| u.what.as_str()).collect();
    for a in [
        "initcol",
        "expirevar",
        "deprecatevar",
        "setenv",
        "setuid",
        "setsid",
        "exec",
        "sanitisearg",
    ] {
        assert!(
            what.iter().any(|w| w.contains(a)),
            "{a} not reported: {what:?}"
        );
    }
    assert!(report
        .unsupported
        .iter()
        .all(|u| u.location.starts_with("u.conf:1:")));
    // The rule still runs.
    assert_eq!(logged(&run(&r, "/")), [1]);
    // Unknown actions are errors, not silently ignored.
    assert!(RuleSet::from_text("e.conf", r#"SecAction "id:1,bogus""#).is_err());
    let _ = EngineMode::On;
}

/// `skipAfter` jumps to the first later marker of its name, past markers of other names
/// and `skip` counts; a marker that does not follow skips the rest of the phase only.
#[test]
fn skip_after_jumps_to_the_next_marker_of_its_name() {
    let r = rs(r#"
SecAction "id:1,phase:1,pass,skipAfter:B"
SecMarker A
SecAction "id:2,phase:1,pass"
SecMarker B
SecAction "id:3,phase:1,pass,skipAfter:A"
SecAction "id:4,phase:1,pass"
SecMarker B
SecAction "id:5,phase:2,pass"
SecAction "id:6,phase:1,pass,skip:1,skipAfter:C"
SecMarker C
SecAction "id:7,phase:1,pass"
SecAction "id:8,phase:1,pass"
"#);
    // 3 skips to the end of phase 1 (no later A); phase 2 still runs.
    assert_eq!(logged(&run(&r, "/")), [1, 3, 5]);
    let r = rs(r#"
SecAction "id:6,phase:1,pass,skip:1,skipAfter:C"
SecAction "id:9,phase:1,pass"
SecMarker C
SecAction "id:7,phase:1,pass"
SecAction "id:8,phase:1,pass"
"#);
    // After the marker, the pending `skip:1` still skips one rule (as before).
    assert_eq!(logged(&run(&r, "/")), [6, 8]);
}
