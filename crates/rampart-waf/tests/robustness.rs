//! Hostile and random input must never panic: transformations, operators and the body
//! processors are fed pseudo-random and mutated bytes through the public API.

#![allow(clippy::unwrap_used)]

use rampart_waf::RuleSet;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % max;
        (0..n)
            .map(|_| alphabet[(self.next() as usize) % alphabet.len()])
            .collect()
    }
}

const RULES: &str = r#"
SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecResponseBodyAccess On
SecRequestBodyJsonDepthLimit 16
SecRule REQUEST_HEADERS:Content-Type "@rx json" "id:1,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "@rx xml" "id:2,phase:1,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule ARGS|ARGS_NAMES|REQUEST_COOKIES|REQUEST_HEADERS|XML:/*|XML://@*|FILES|MULTIPART_PART_HEADERS|REQUEST_BODY "@rx (?i)(a|%|\x00|<)" \
    "id:10,phase:2,pass,capture,multiMatch,t:none,t:urlDecode,t:urlDecodeUni,t:htmlEntityDecode,t:jsDecode,t:cssDecode,t:cmdLine,t:base64Decode,t:base64DecodeExt,t:hexDecode,t:sqlHexDecode,t:escapeSeqDecode,t:utf8toUnicode,t:normalizePath,t:normalizePathWin,t:replaceComments,t:removeComments,t:removeCommentsChar,t:compressWhitespace,t:trim,setvar:'tx.x=%{MATCHED_VAR}'"
SecRule ARGS|REQUEST_BODY "@detectSQLi" "id:11,phase:2,pass"
SecRule ARGS|REQUEST_BODY "@detectXSS" "id:12,phase:2,pass"
SecRule ARGS|REQUEST_BODY "@validateUtf8Encoding" "id:13,phase:2,pass"
SecRule ARGS|REQUEST_BODY "@validateUrlEncoding" "id:14,phase:2,pass"
SecRule ARGS|REQUEST_BODY "@validateByteRange 32-126" "id:15,phase:2,pass"
SecRule &ARGS "@gt 3" "id:16,phase:2,pass"
SecRule REQBODY_ERROR "!@eq 0" "id:17,phase:2,pass"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:18,phase:2,pass"
SecRule RESPONSE_BODY "@contains a" "id:19,phase:4,pass"
"#;

#[test]
fn random_requests_never_panic() {
    let (rs, _) = RuleSet::from_text("fuzz.conf", RULES).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet: Vec<u8> =
        b"aA0%uU+&=;:/\\\\.-_\"'<>{}[]()*#!?\r\n\t \x00\xff\xc3\xa9\xe2\x80".to_vec();
    let cts: [&str; 6] = [
        "application/x-www-form-urlencoded",
        "application/json",
        "text/xml",
        "multipart/form-data; boundary=XX",
        "multipart/form-data; boundary=\"X X\"",
        "text/plain",
    ];
    let seeds: [&[u8]; 5] = [
        b"--XX\r\nContent-Disposition: form-data; name=\"a\"; filename=\"b\"\r\n\r\nx\r\n--XX--\r\n",
        b"{\"a\":[1,{\"b\":\"\\u00e9\\ud83d\\ude00\"}],\"c\":null}",
        b"<?xml version=\"1.0\"?><a x='1'><![CDATA[y]]><!-- c --><b>&lt;</b></a>",
        b"a=1&b=%zz&c=%u0041&&=&d",
        b"--XX\nContent-Disposition: form-data; name=a\n folded\n\nv\n--XX",
    ];
    for i in 0..3000 {
        let mut body = if i % 2 == 0 {
            rng.bytes(&alphabet, 200)
        } else {
            seeds[(rng.next() as usize) % seeds.len()].to_vec()
        };
        // mutate
        for _ in 0..(rng.next() % 6) {
            if body.is_empty() {
                break;
            }
            let p = (rng.next() as usize) % body.len();
            match rng.next() % 3 {
                0 => body[p] = alphabet[(rng.next() as usize) % alphabet.len()],
                1 => {
                    body.remove(p);
                }
                _ => body.truncate(p),
            }
        }
        let uri = String::from_utf8_lossy(&rng.bytes(&alphabet, 60)).into_owned();
        let mut tx = rs.transaction();
        tx.process_uri(&format!("/{uri}"), "POST", "HTTP/1.1");
        tx.add_request_header("Content-Type", cts[(rng.next() as usize) % cts.len()]);
        tx.add_request_header(
            "Cookie",
            &String::from_utf8_lossy(&rng.bytes(&alphabet, 40)),
        );
        tx.process_request_headers();
        tx.append_request_body(&body);
        tx.process_request_body();
        tx.add_response_header("Content-Type", "text/plain");
        tx.process_response_headers(200, "HTTP/1.1");
        tx.append_response_body(&body);
        tx.process_response_body();
        tx.process_logging();
        for m in tx.matched_rules() {
            let _ = m.log_line();
        }
    }
}

#[test]
fn deep_json_is_an_error_not_a_stack_overflow() {
    let (rs, _) = RuleSet::from_text("j.conf", RULES).unwrap();
    let mut tx = rs.transaction();
    tx.process_uri("/", "POST", "HTTP/1.1");
    tx.add_request_header("Content-Type", "application/json");
    tx.process_request_headers();
    let body = "[".repeat(100_000);
    tx.append_request_body(body.as_bytes());
    tx.process_request_body();
    assert!(tx.matched_rules().iter().any(|m| m.id == 17));
}

/// Mutates `seed` a few times (replace, delete, insert, truncate, duplicate a slice).
fn mutate(rng: &mut Rng, seed: &[u8], alphabet: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..(1 + rng.next() % 8) {
        let len = v.len();
        let p = if len == 0 {
            0
        } else {
            (rng.next() as usize) % len
        };
        match rng.next() % 5 {
            0 if len > 0 => v[p] = alphabet[(rng.next() as usize) % alphabet.len()],
            1 if len > 0 => {
                v.remove(p);
            }
            2 => v.insert(p, alphabet[(rng.next() as usize) % alphabet.len()]),
            3 => v.truncate(p),
            _ if len > 0 => {
                let q = p + (rng.next() as usize) % (len - p).clamp(1, 16);
                let slice = v[p..q.min(len)].to_vec();
                v.splice(p..p, slice);
            }
            _ => {}
        }
    }
    v
}

/// The same entry points as the cargo-fuzz targets (fuzz/fuzz_targets/waf_*.rs), driven
/// by a deterministic random/mutation loop so every `cargo test` exercises them.
#[test]
fn seclang_parser_survives_mutated_rules() {
    use rampart_waf::fuzzing::parse_rules;
    let seeds: [&[u8]; 6] = [
        br#"SecRule ARGS|!ARGS:x|&TX:y|REQUEST_HEADERS:/^a/ "@rx (?i)a(?:b|c)+\x41$" "id:1,phase:2,block,t:none,t:urlDecodeUni,capture,msg:'m %{TX.0}',setvar:'tx.s=+%{tx.p}',chain"
    SecRule TX:1 "!@streq %{TX.2}" "ctl:ruleRemoveTargetById=2;ARGS:a""#,
        b"SecAction \"id:2,phase:1,nolog,pass,skipAfter:END\"\nSecMarker END\nSecDefaultAction \"phase:2,log,deny,status:403\"",
        b"SecRuleEngine DetectionOnly\nSecRequestBodyLimit 100\nSecRuleRemoveById 1-5 7\nSecRuleUpdateTargetById 3 \"!ARGS:b\"",
        b"SecRule REQUEST_URI \"@pm a b c\" \"id:3,t:lowercase\" \\\n  # comment\nInclude missing.conf",
        b"SecRule ARGS \"@validateByteRange 1-9,11-255\" \"id:4\"\nSecRule ARGS \"@ipMatch 10.0.0.0/8,::1/128\" \"id:5\"",
        b"SecRule XML:/* \"@eq %{tx.x}\" \"id:6,phase:2,pass,ctl:requestBodyProcessor=XML,expirevar:ip.a=1\"",
    ];
    let alphabet = b"\"'\\ ,:;|!&%{}()[]*+?.$^@#=\n\tidphasechainrxSecRule0123456789";
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for i in 0..4000 {
        let seed = seeds[i % seeds.len()];
        let text = mutate(&mut rng, seed, alphabet);
        match parse_rules(&String::from_utf8_lossy(&text)) {
            Ok(_) => {}
            Err(e) => assert!(!e.is_empty()),
        }
    }
}

#[test]
fn transformations_survive_random_and_mutated_bytes() {
    use rampart_waf::fuzzing::{transform, TRANSFORMATIONS};
    let seeds: [&[u8]; 5] = [
        b"%u0041%41%%u+&#x41;&#65&lt;\\x41\\u00410x4142",
        b"/a/../b/./c\\..\\d//e/",
        b"/*c*/--x#y<!--z-->\\6a \\61\\",
        b"Zm9v YmFy==\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3",
        b"\\a\\b\\f\\n\\r\\t\\v\\\\\\?\\'\\\"\\777\\xZZ",
    ];
    let alphabet = b"%uU+&#;xX\\/.*-<!>0123456789abcdefABCDEF \t\n\x00\x0b\xa0\xc3\xff";
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for i in 0..3000 {
        let input = if i % 3 == 0 {
            rng.bytes(alphabet, 64)
        } else {
            mutate(&mut rng, seeds[i % seeds.len()], alphabet)
        };
        let mut chained = input.clone();
        for (k, name) in TRANSFORMATIONS.iter().enumerate() {
            let out = transform(name, &input);
            assert!(out.is_some(), "{name} unknown");
            if (i + k) % 11 == 0 {
                chained = transform(name, &chained).unwrap_or_default();
            }
        }
        // Decoders never grow their input.
        for name in [
            "urlDecode",
            "urlDecodeUni",
            "htmlEntityDecode",
            "jsDecode",
            "cssDecode",
        ] {
            let out = transform(name, &input).unwrap_or_default();
            assert!(out.len() <= input.len(), "{name} grew {input:?}");
        }
    }
}

#[test]
fn body_parsers_survive_random_and_mutated_bytes() {
    use rampart_waf::fuzzing::{parse_json, parse_multipart, parse_urlencoded, parse_xml};
    let multipart: &[u8] = b"--XX\r\nContent-Disposition: form-data; name=\"a\"; filename=\"f.txt\"\r\nContent-Type: text/plain\r\n\r\nline\nline\r\n--XX\r\nContent-Disposition: form-data; name=b\r\n\r\nv\r\n--XX--\r\n";
    let json: &[u8] = br#"{"a":[1,-2.5e3,true,false,null,{"b":"\u00e9\ud83d\ude00\n"}],"c":{}}"#;
    let xml: &[u8] = b"<?xml version=\"1.0\"?><!DOCTYPE a><a x='1' y=\"2\"><![CDATA[<z>]]><!-- c --><b>&lt;&#65;</b><c/></a>";
    let form: &[u8] = b"a=1&b=%zz&c=%u0041&&=&d&e=f=g&%41=+";
    let alphabet = b"\"'<>/!?=&%[]{}:,-\\\r\n \t01aXxu\x00\xff";
    let mut rng = Rng(0x5151_5151_a5a5_a5a5);
    let cts: [&[u8]; 4] = [
        b"multipart/form-data; boundary=XX",
        b"multipart/form-data; boundary=\"XX\"",
        b"multipart/form-data;boundary = XX; charset=utf-8",
        b"multipart/form-data",
    ];
    for i in 0..3000 {
        let random = i % 4 == 0;
        let pick = |rng: &mut Rng, seed: &[u8]| {
            if random {
                rng.bytes(alphabet, 256)
            } else {
                mutate(rng, seed, alphabet)
            }
        };
        let m = pick(&mut rng, multipart);
        let (n, _) = parse_multipart(&m, cts[i % cts.len()]);
        assert!(n <= m.len());
        let j = pick(&mut rng, json);
        let _ = parse_json(&j, 1 + i % 20);
        let x = pick(&mut rng, xml);
        let _ = parse_xml(&x);
        let f = pick(&mut rng, form);
        assert!(parse_urlencoded(&f) <= f.len() + 1);
    }
    // Valid seeds parse.
    assert_eq!(parse_multipart(multipart, cts[0]), (2, false));
    assert_eq!(parse_json(json, 10), Some(6));
    assert!(parse_xml(xml).is_some());
    assert_eq!(parse_urlencoded(b"a=1&b=2"), 2);
}
