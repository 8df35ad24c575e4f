//! `@pm` / `@pmFromFile`: case-insensitive multi-phrase match with Aho-Corasick.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Builds the automaton; `None` when there are no phrases (never matches).
pub fn build(phrases: &[String]) -> Result<Option<AhoCorasick>, String> {
    let list: Vec<&str> = phrases
        .iter()
        .map(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Ok(None);
    }
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(list)
        .map(Some)
        .map_err(|e| e.to_string())
}

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
            .flatten();
        assert_eq!(super::find(&ac, b"xxbarx"), Some(b"bar".to_vec()));
        assert_eq!(super::find(&ac, b"xx"), None);
    }
}
