//! `@rx`: PCRE-style regex. Compiled with the linear-time `regex` crate in byte mode
//! (like PCRE without UTF: `\xNN` is a byte, `\w`/`\s` are ASCII); patterns using
//! lookaround or backreferences fall back to `fancy-regex` with a backtrack limit.
//! Patterns whose atomic groups or possessive quantifiers had to be turned into plain
//! ones for the `regex` crate are marked "rewritten" in the load report: they can match
//! where PCRE would give up after refusing to backtrack, never the other way round.

use crate::byteset::{regex_needs, Needs};
use std::borrow::Cow;

/// A compiled `@rx` pattern.
#[derive(Debug)]
pub enum CompiledRegex {
    /// Linear-time engine on raw bytes, pattern equivalent to the PCRE one.
    Fast(regex::bytes::Regex),
    /// Linear-time engine after dropping atomic groups / possessive quantifiers.
    Rewritten(regex::bytes::Regex),
    /// Backtracking engine for PCRE-only features (works on lossy UTF-8).
    Fancy(fancy_regex::Regex),
}

/// Which engine a rule's regex got (reported at load time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `regex` crate.
    Regex,
    /// `regex` crate, pattern rewritten (atomic groups / possessive quantifiers).
    Rewritten,
    /// `fancy-regex` fallback.
    FancyRegex,
}

impl CompiledRegex {
    /// Compiles `pat`, translating PCRE-isms the `regex` crate spells differently.
    pub fn compile(pat: &str, backtrack_limit: usize) -> Result<CompiledRegex, String> {
        Self::compile_with_needs(pat, backtrack_limit).map(|(r, _)| r)
    }

    /// [`CompiledRegex::compile`], plus the bytes every match must contain (none for the
    /// backtracking engine).
    pub(crate) fn compile_with_needs(
        pat: &str,
        backtrack_limit: usize,
    ) -> Result<(CompiledRegex, Needs), String> {
        let (tr, lossy) = translate_flagged(pat);
        let needs_fancy = has_fancy_features(pat);
        if !needs_fancy {
            let build = |unicode: bool| {
                regex::bytes::RegexBuilder::new(&tr)
                    .unicode(unicode)
                    .size_limit(256 << 20)
                    .dfa_size_limit(64 << 20)
                    .build()
                    .map(|r| (r, unicode))
            };
            if let Ok((r, unicode)) = build(false).or_else(|_| build(true)) {
                let needs = regex_needs(&tr, unicode);
                return Ok((
                    if lossy {
                        CompiledRegex::Rewritten(r)
                    } else {
                        CompiledRegex::Fast(r)
                    },
                    needs,
                ));
            }
        }
        fancy_regex::RegexBuilder::new(&tr)
            .backtrack_limit(backtrack_limit.max(1_000_000))
            .delegate_size_limit(256 << 20)
            .build()
            .map(|r| (CompiledRegex::Fancy(r), Needs::none()))
            .map_err(|e| e.to_string())
    }

    /// Engine used.
    pub fn engine(&self) -> Engine {
        match self {
            CompiledRegex::Fast(_) => Engine::Regex,
            CompiledRegex::Rewritten(_) => Engine::Rewritten,
            CompiledRegex::Fancy(_) => Engine::FancyRegex,
        }
    }

    /// True when the pattern matches somewhere in `input`.
    pub fn is_match(&self, input: &[u8]) -> bool {
        match self {
            CompiledRegex::Fast(r) | CompiledRegex::Rewritten(r) => r.is_match(input),
            CompiledRegex::Fancy(r) => r.is_match(&String::from_utf8_lossy(input)).unwrap_or(false),
        }
    }

    /// Every non-overlapping match (whole match only), for operators that test each
    /// candidate (`@verifyCC`).
    pub fn find_iter(&self, input: &[u8]) -> Vec<Vec<u8>> {
        match self {
            CompiledRegex::Fast(r) | CompiledRegex::Rewritten(r) => {
                r.find_iter(input).map(|m| m.as_bytes().to_vec()).collect()
            }
            CompiledRegex::Fancy(r) => {
                let s = String::from_utf8_lossy(input);
                r.find_iter(&s)
                    .filter_map(Result::ok)
                    .map(|m| m.as_str().as_bytes().to_vec())
                    .collect()
            }
        }
    }

    /// First match with up to 10 groups (TX.0–TX.9 for `capture`).
    pub fn captures(&self, input: &[u8]) -> Option<Vec<Vec<u8>>> {
        match self {
            // Without capture groups only the whole match is wanted: `find` (DFA only)
            // gives the same span as group 0 of `captures` (PikeVM/backtracker), and
            // is much cheaper (CRS 920450 captures `^.*$` on every header name).
            CompiledRegex::Fast(r) | CompiledRegex::Rewritten(r) if r.captures_len() == 1 => {
                r.find(input).map(|m| vec![m.as_bytes().to_vec()])
            }
            CompiledRegex::Fast(r) | CompiledRegex::Rewritten(r) => r.captures(input).map(|c| {
                (0..c.len().min(10))
                    .map(|i| c.get(i).map(|m| m.as_bytes().to_vec()).unwrap_or_default())
                    .collect()
            }),
            CompiledRegex::Fancy(r) => {
                let s: Cow<'_, str> = String::from_utf8_lossy(input);
                match r.captures(&s) {
                    Ok(Some(c)) => Some(
                        (0..c.len().min(10))
                            .map(|i| {
                                c.get(i)
                                    .map(|m| m.as_str().as_bytes().to_vec())
                                    .unwrap_or_default()
                            })
                            .collect(),
                    ),
                    _ => None,
                }
            }
        }
    }
}

/// Lookaround and backreferences need the backtracking engine.
fn has_fancy_features(pat: &str) -> bool {
    let b = pat.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if i + 1 < b.len() && !in_class && b[i + 1].is_ascii_digit() && b[i + 1] != b'0' {
                    return true;
                }
                i += 2;
                continue;
            }
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class => {
                let rest = &b[i + 1..];
                if rest.starts_with(b"?=")
                    || rest.starts_with(b"?!")
                    || rest.starts_with(b"?<=")
                    || rest.starts_with(b"?<!")
                {
                    return true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// Rewrites PCRE syntax into what `regex`/`fancy-regex` accept: atomic groups and
/// possessive quantifiers become plain ones, `$`/`\Z` get PCRE's "before a final
/// newline" meaning, `[`/`&`/`~` inside classes are escaped, `\e`, `\h`, `\R` spelled out.
#[cfg(test)]
pub fn translate(pat: &str) -> String {
    translate_flagged(pat).0
}

/// [`translate`], also saying whether an atomic group or possessive quantifier was
/// turned into a plain one (the only rewrites that are not exactly equivalent).
pub fn translate_flagged(pat: &str) -> (String, bool) {
    let mut lossy = false;
    let b = pat.as_bytes();
    let mut out = String::with_capacity(pat.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    let mut class_start = 0usize;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() {
            let n = b[i + 1];
            match n {
                b'Z' if !in_class => out.push_str(r"(?:\n?\z)"),
                b'z' if !in_class => out.push_str(r"\z"),
                b'A' if !in_class => out.push_str(r"\A"),
                b'e' => out.push_str(r"\x1b"),
                b'h' => out.push_str(if in_class { r" \t" } else { r"[ \t]" }),
                b'R' if !in_class => out.push_str(r"(?:\r\n|\n|\r)"),
                // `\x{e2}` is a byte in PCRE's non-UTF mode; the regex crate would read a
                // code point, so spell it `\xE2`.
                b'x' if b.get(i + 2) == Some(&b'{') => {
                    let close = pat[i + 3..].find('}').map(|p| p + i + 3);
                    let val = close.and_then(|c| u32::from_str_radix(&pat[i + 3..c], 16).ok());
                    match (close, val) {
                        (Some(c), Some(v)) if v <= 0xff => {
                            out.push_str(&format!("\\x{v:02X}"));
                            i = c + 1;
                            continue;
                        }
                        _ => out.push_str("\\x"),
                    }
                }
                // PCRE: escaped punctuation is the literal char (`\<` is not a word boundary).
                b'<' | b'>' | b'_' | b'\'' | b'"' | b'`' | b'@' | b'%' | b'=' | b':' | b';'
                | b',' | b'!' => out.push(n as char),
                _ => {
                    // Copy the escape and any multi-byte char following it intact.
                    out.push('\\');
                    let s = &pat[i + 1..];
                    if let Some(ch) = s.chars().next() {
                        out.push(ch);
                        i += 1 + ch.len_utf8();
                        continue;
                    }
                }
            }
            i += 2;
            continue;
        }
        if in_class {
            match c {
                b']' if i > class_start => {
                    in_class = false;
                    out.push(']');
                }
                b'[' => {
                    if b[i..].starts_with(b"[:") {
                        if let Some(end) = pat[i..].find(":]") {
                            out.push_str(&pat[i..i + end + 2]);
                            i += end + 2;
                            continue;
                        }
                    }
                    out.push_str(r"\[");
                }
                b'&' => out.push_str(r"\&"),
                b'~' => out.push_str(r"\~"),
                b'-' if i + 1 < b.len() && b[i + 1] == b'-' => out.push_str(r"\-"),
                _ => {
                    i += push_char(&mut out, &pat[i..]);
                    continue;
                }
            }
            i += 1;
            continue;
        }
        match c {
            b'[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if i < b.len() && b[i] == b'^' {
                    out.push('^');
                    i += 1;
                }
                // A leading ']' is literal in PCRE.
                if i < b.len() && b[i] == b']' {
                    out.push_str(r"\]");
                    i += 1;
                }
                class_start = i;
                continue;
            }
            b'(' if b[i..].starts_with(b"(?>") => {
                lossy = true;
                out.push_str("(?:");
                i += 3;
                continue;
            }
            b'$' => out.push_str(r"(?:\n?\z)"),
            b'+' if i > 0
                && matches!(b[i - 1], b'*' | b'+' | b'?' | b'}')
                && !prev_escaped(b, i - 1) =>
            {
                // possessive quantifier: drop the '+'
                lossy = true;
            }
            _ => {
                i += push_char(&mut out, &pat[i..]);
                continue;
            }
        }
        i += 1;
    }
    (out, lossy)
}

/// Copies one char; non-ASCII chars become their UTF-8 bytes as `\xHH` escapes, which
/// is how PCRE without UTF mode (ModSecurity) reads them — also inside classes.
fn push_char(out: &mut String, s: &str) -> usize {
    match s.chars().next() {
        Some(ch) if ch.is_ascii() => {
            out.push(ch);
            1
        }
        Some(ch) => {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02X}"));
            }
            ch.len_utf8()
        }
        None => 1,
    }
}

/// True when the byte at `i` is escaped by an odd number of backslashes.
fn prev_escaped(b: &[u8], i: usize) -> bool {
    let mut n = 0;
    let mut j = i;
    while j > 0 && b[j - 1] == b'\\' {
        n += 1;
        j -= 1;
    }
    n % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patterns without groups capture through `find`: the same TX.0 as group 0 of
    /// `captures`, on random inputs (leftmost-first spans, empty matches, anchors).
    #[test]
    fn group_free_captures_match_group_zero() {
        let pats = [
            r"^.*$",
            r"(?i)select\s+from",
            r"a*",
            r"a|ab|abc",
            r"\d+$",
            r"(?:x|y)z?",
            r"[^a-z]+",
            r"^$",
        ];
        let alphabet: &[u8] = b"abcxyz09 \nSELECTfrom\xff";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for p in pats {
            let (Ok(re), Ok(plain)) = (
                CompiledRegex::compile(p, 1000),
                regex::bytes::RegexBuilder::new(&translate(p))
                    .unicode(false)
                    .build(),
            ) else {
                panic!("{p}");
            };
            assert!(matches!(re, CompiledRegex::Fast(_)), "{p}");
            for _ in 0..2000 {
                let input = crate::test_support::random_input(alphabet, &mut seed, 14, 4);
                let want = plain
                    .captures(&input)
                    .map(|c| vec![c.get(0).map(|m| m.as_bytes().to_vec()).unwrap_or_default()]);
                assert_eq!(re.captures(&input), want, "{p} on {input:?}");
            }
        }
    }

    #[test]
    fn translates_pcre() {
        assert_eq!(translate("a++b"), "a+b");
        assert_eq!(translate("(?>a)"), "(?:a)");
        assert_eq!(translate("[[a]"), r"[\[a]");
        assert_eq!(translate("a$"), r"a(?:\n?\z)");
        assert_eq!(translate(r"\/x"), r"\/x");
        assert_eq!(translate(r"\x{e2}\x80"), r"\xE2\x80");
    }

    #[test]
    fn engines_are_reported() {
        let e = |p: &str| CompiledRegex::compile(p, 1000).map(|r| r.engine()).ok();
        assert_eq!(e(r"^a+$"), Some(Engine::Regex));
        assert_eq!(e(r"(?>a|ab)c"), Some(Engine::Rewritten));
        assert_eq!(e(r"a*+b"), Some(Engine::Rewritten));
        assert_eq!(e(r"(a)\1"), Some(Engine::FancyRegex));
    }

    #[test]
    fn byte_mode_matches_high_bytes() {
        let r = CompiledRegex::compile(r"\xff", 1000).ok();
        assert!(r.is_some_and(|r| r.is_match(&[0x41, 0xff])));
    }

    #[test]
    fn lookahead_uses_fancy() {
        let r = CompiledRegex::compile(r"a(?!b)", 1000).ok();
        assert!(r.as_ref().is_some_and(|r| r.engine() == Engine::FancyRegex));
        assert!(r
            .as_ref()
            .is_some_and(|r| r.is_match(b"ac") && !r.is_match(b"ab")));
    }
}
