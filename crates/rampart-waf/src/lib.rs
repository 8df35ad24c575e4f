//! Rampart's WAF engine: loads ModSecurity SecLang rule sets (OWASP CRS v4 unmodified)
//! and evaluates them per HTTP transaction.
//!
//! The crate does no networking: a connector feeds a [`Transaction`] the request and
//! response pieces phase by phase and acts on the [`Interruption`] it may return.
//! Rule files are read through a [`Loader`] so the caller decides where they come from.

pub mod action;
mod audit;
mod body;
mod collection;
mod error;
mod macros;
pub mod operator;
mod rule;
mod ruleset;
mod seclang;
mod transaction;
pub mod transform;
mod variable;

pub use audit::{MatchedRule, Severity};
pub use error::WafError;
pub use rule::Phase;
pub use ruleset::{
    EngineMode, FsLoader, LoadReport, Loader, MemoryLoader, RegexEngine, RuleSet, Unsupported,
};
pub use transaction::{Interruption, InterruptionAction, Transaction};
