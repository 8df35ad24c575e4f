//! Rampart's WAF engine: loads ModSecurity SecLang rule sets (OWASP CRS v4 unmodified)
//! and evaluates them per HTTP transaction.
//!
//! The crate does no networking: a connector feeds a [`Transaction`] the request and
//! response pieces phase by phase and acts on the [`Interruption`] it may return.
//! Rule files are read through a [`Loader`] so the caller decides where they come from.
//!
//! ```
//! use rampart_waf::{RuleSet, InterruptionAction};
//!
//! let (rules, report) = RuleSet::from_text(
//!     "inline.conf",
//!     r#"SecRuleEngine On
//!        SecRule ARGS "@detectSQLi" "id:1,phase:1,deny,status:403,t:urlDecodeUni,msg:'SQLi'""#,
//! ).expect("rules load");
//! assert!(report.unsupported.is_empty());
//!
//! // One transaction per request; `rules` is cheap to clone and Send + Sync.
//! let mut tx = rules.transaction();
//! tx.process_connection("192.0.2.10", 51000, "192.0.2.1", 443);
//! tx.process_uri("/item?id=1'%20OR%20'1'='1", "GET", "HTTP/1.1");
//! tx.add_request_header("Host", "example.com");
//! let verdict = tx.process_request_headers();
//! assert_eq!(verdict.map(|i| (i.status, i.rule_id, i.action)), Some((403, 1, InterruptionAction::Deny)));
//! tx.process_logging();
//! for m in tx.matched_rules().iter().filter(|m| m.log) {
//!     println!("{}", m.log_line());
//! }
//! ```
//!
//! Phase order for a connector: `process_connection` → `process_uri` →
//! `add_request_header`… → `process_request_headers` (1) → `append_request_body`… →
//! `process_request_body` (2) → `add_response_header`… → `process_response_headers` (3)
//! → `append_response_body`… → `process_response_body` (4) → `process_logging` (5).
//! Stop forwarding at the first `Some(Interruption)`, but still call `process_logging`.

mod action;
mod audit;
mod body;
mod byteset;
mod collection;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod macros;
mod operator;
mod rule;
mod ruleset;
mod seclang;
#[cfg(test)]
mod test_support;
mod transaction;
mod transform;
mod variable;

pub use audit::{MatchedRule, Severity};
pub use error::{Location, WafError};
pub use rule::Phase;
pub use ruleset::{
    EngineMode, FsLoader, LoadReport, Loader, MemoryLoader, RegexEngine, RuleSet, Unsupported,
};
pub use transaction::{Interruption, InterruptionAction, Transaction};
