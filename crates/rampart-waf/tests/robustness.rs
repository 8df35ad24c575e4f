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
