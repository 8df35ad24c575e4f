//! Direct entry points into the parsers and transformations for fuzz targets and
//! robustness tests. Not part of the stable API (hidden from the docs); everything here
//! takes arbitrary bytes and must never panic.

use crate::body;
use crate::transform::{Parsed, Transform};

/// Every transformation name ModSecurity knows that this engine implements.
pub const TRANSFORMATIONS: &[&str] = &[
    "lowercase",
    "uppercase",
    "urlDecode",
    "urlDecodeUni",
    "urlEncode",
    "htmlEntityDecode",
    "jsDecode",
    "cssDecode",
    "cmdLine",
    "compressWhitespace",
    "removeWhitespace",
    "removeNulls",
    "replaceNulls",
    "replaceComments",
    "removeComments",
    "removeCommentsChar",
    "normalizePath",
    "normalizePathWin",
    "base64Decode",
    "base64DecodeExt",
    "base64Encode",
    "hexDecode",
    "hexEncode",
    "utf8toUnicode",
    "length",
    "sha1",
    "md5",
    "parityEven7bit",
    "parityOdd7bit",
    "parityZero7bit",
    "trim",
    "trimLeft",
    "trimRight",
    "escapeSeqDecode",
    "sqlHexDecode",
];

/// Applies the named transformation (`None` for unknown names and `none`).
pub fn transform(name: &str, input: &[u8]) -> Option<Vec<u8>> {
    match Transform::parse(name)? {
        Parsed::Known(t) => {
            let out = t.apply(input);
            debug_assert_eq!(t.apply_cow(input).as_ref(), out.as_slice());
            Some(out)
        }
        Parsed::None => None,
    }
}

/// `application/x-www-form-urlencoded` with `&`: the number of pairs.
pub fn parse_urlencoded(input: &[u8]) -> usize {
    body::urlencoded::parse(input, b'&').len()
}

/// `multipart/form-data`: fields + files, and whether strict validation failed.
pub fn parse_multipart(body: &[u8], content_type: &[u8]) -> (usize, bool) {
    let mp = body::multipart::parse(body, content_type);
    (mp.fields.len() + mp.files.len(), mp.strict_error())
}

/// JSON with a depth limit: the number of pairs, or `None` on a parse error.
pub fn parse_json(input: &[u8], depth_limit: usize) -> Option<usize> {
    body::json::parse(input, depth_limit).ok().map(|p| p.len())
}

/// XML: the length of the text content, or `None` on a parse error.
pub fn parse_xml(input: &[u8]) -> Option<usize> {
    body::xml::parse(input).ok().map(|d| d.text.len())
}

/// SecLang text: `Ok(rule count)` or the error message (located).
pub fn parse_rules(text: &str) -> Result<usize, String> {
    crate::RuleSet::from_text("fuzz.conf", text)
        .map(|(rs, _)| rs.rule_count())
        .map_err(|e| e.to_string())
}

/// `@detectSQLi` exactly as the operator runs it: libinjection's fingerprint when it calls
/// the input SQL injection, `None` otherwise.
pub fn detect_sqli(input: &[u8]) -> Option<Vec<u8>> {
    crate::operator::detect_sqli::check(input)
}

/// `@detectXSS` exactly as the operator runs it.
pub fn detect_xss(input: &[u8]) -> bool {
    crate::operator::detect_xss::check(input)
}
