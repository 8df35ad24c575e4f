//! Errors surfaced while loading rules. Runtime evaluation never fails: bad input only
//! sets flags (REQBODY_ERROR and friends) the rules can look at.

use std::fmt;

/// Where in a rule file something was found, for errors people can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File name as given to the loader.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// Everything that can make [`crate::RuleSet::load`] fail.
#[derive(Debug, thiserror::Error)]
pub enum WafError {
    /// The loader could not provide a file.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// Path as requested.
        path: String,
        /// Loader's explanation.
        reason: String,
    },
    /// A directive, rule, operator or action could not be parsed.
    #[error("{location}: {message}")]
    Parse {
        /// Where.
        location: Location,
        /// What.
        message: String,
    },
    /// A regular expression compiled by neither engine.
    #[error("{location}: invalid regex: {message}")]
    Regex {
        /// Where.
        location: Location,
        /// What.
        message: String,
    },
    /// Include cycles or too deep nesting.
    #[error("include depth exceeded at {0}")]
    IncludeDepth(String),
}
