//! Config errors that point at a file, line and column, with a suggestion when we have one.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<embedded>` / `<cli>`).
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub col: usize,
    /// What is wrong.
    pub msg: String,
    /// The key the user probably meant.
    pub did_you_mean: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        write!(f, ": {}", self.msg)?;
        if let Some(s) = &self.did_you_mean {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

/// Every problem found while loading a file.
#[derive(Clone, Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

/// Errors from loading a config file from disk.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not valid.
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

/// Picks the closest candidate to `word` if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        // Jaro-Winkler favours shared prefixes; Damerau-Levenshtein catches swapped letters
        // ("GTE" for "GET") that Jaro's match window misses in short words.
        let jw = strsim::jaro_winkler(word, c);
        let dl = strsim::normalized_damerau_levenshtein(word, c);
        let score = jw.max(dl);
        if (jw > 0.8 || dl >= 0.6) && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::suggest;

    #[test]
    fn suggests_close_keys() {
        assert_eq!(
            suggest("lisen", ["listen", "limits"]),
            Some("listen".into())
        );
        assert_eq!(suggest("zzz", ["listen", "limits"]), None);
    }
}
