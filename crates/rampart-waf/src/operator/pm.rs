//! `@pm` / `@pmFromFile`: case-insensitive multi-phrase match with Aho-Corasick.

use crate::byteset::{phrases_needs, Needs};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// Builds the automaton (`None` when there are no phrases: never matches) and the
/// bytes every match contains.
pub(crate) fn build(phrases: &[String]) -> Result<(Option<AhoCorasick>, Needs), String> {
    let list: Vec<&str> = phrases
        .iter()
        .map(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Ok((None, Needs::none()));
    }
    let needs = phrases_needs(&list);
    // A DFA scans faster than the default (a contiguous NFA for more than a few dozen
    // phrases) but takes ~250 bytes per phrase byte: CRS's largest list (php-errors.data,
    // 70 KB of phrases, response bodies) would need ~23 MiB, so long lists stay NFAs.
    let bytes: usize = list.iter().map(|p| p.len()).sum();
    let kind = (bytes <= DFA_PHRASE_BYTES_MAX).then_some(AhoCorasickKind::DFA);
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .kind(kind)
        .build(list)
        .map(|ac| (Some(ac), needs))
        .map_err(|e| e.to_string())
}

/// Phrase bytes up to which `@pm` gets a DFA (lfi-os-files.data, 15 KB: 3.6 MiB).
const DFA_PHRASE_BYTES_MAX: usize = 16 << 10;

/// Splits `@pm` parameters (space-separated phrases).
pub fn split_phrases(param: &str) -> Vec<String> {
    param.split_ascii_whitespace().map(str::to_string).collect()
}

/// Parses a data file: one phrase per line, `#` comments and blank lines skipped.
pub fn parse_file(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Returns the first matched phrase.
pub fn find(ac: &Option<AhoCorasick>, input: &[u8]) -> Option<Vec<u8>> {
    let ac = ac.as_ref()?;
    ac.find(input).map(|m| input[m.start()..m.end()].to_vec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_case_insensitive() {
        let ac = super::build(&super::split_phrases("foo BAR"))
            .ok()
            .and_then(|(ac, _)| ac);
        assert_eq!(super::find(&ac, b"xxbarx"), Some(b"bar".to_vec()));
        assert_eq!(super::find(&ac, b"xx"), None);
    }
}
