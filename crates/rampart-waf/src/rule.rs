//! Compiled rules. A SecRule chain is one [`Rule`] with several [`Link`]s: metadata and
//! the disruptive action live on the rule, each link has its own targets and operator.

use crate::action::{ctl::Ctl, setvar::SetVar};
use crate::byteset::ByteSet;
use crate::macros::MacroStr;
use crate::operator::OperatorSpec;
use crate::transform::Transform;
use crate::variable::Targets;
use std::sync::Arc;

/// Processing phase, as in ModSecurity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// 1: request line and headers.
    RequestHeaders = 1,
    /// 2: request body.
    RequestBody = 2,
    /// 3: response headers.
    ResponseHeaders = 3,
    /// 4: response body.
    ResponseBody = 4,
    /// 5: logging.
    Logging = 5,
}

impl Phase {
    /// From `phase:` values (`1`–`5`, `request`, `response`, `logging`).
    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "1" => Phase::RequestHeaders,
            "2" | "request" => Phase::RequestBody,
            "3" => Phase::ResponseHeaders,
            "4" | "response" => Phase::ResponseBody,
            "5" | "logging" => Phase::Logging,
            _ => return None,
        })
    }

    /// Numeric phase.
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// `allow` scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllowScope {
    All,
    Phase,
    Request,
}

/// Disruptive action of a rule.
#[derive(Debug, Clone)]
pub(crate) enum Disruptive {
    Pass,
    Block,
    Deny,
    Drop,
    Allow(AllowScope),
    Redirect(MacroStr),
}

/// Non-disruptive effects, run in the order written.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    SetVar(SetVar),
    Ctl(Ctl),
}

/// One condition of a rule (the rule itself or a chained rule).
#[derive(Debug)]
pub(crate) struct Link {
    pub targets: Targets,
    /// `None` for SecAction (always matches once).
    pub op: Option<OperatorSpec>,
    pub transforms: Vec<Transform>,
    /// Interned id of `transforms`, the key of the per-transaction cache.
    pub tchain: u32,
    /// Interned id of each prefix `transforms[..=k]`, and whether that prefix is shared
    /// with another chain (then intermediate results are worth caching).
    pub tprefix: Vec<(u32, bool)>,
    /// Bytes that may make `transforms` change a value (`None`: any value may change);
    /// a value without them is its own transformed value.
    pub triggers: Option<ByteSet>,
    /// [`Transform::trigger_bytes`] of each transformation.
    pub stage_triggers: Vec<Option<ByteSet>>,
    pub multi_match: bool,
    pub capture: bool,
    pub effects: Vec<Effect>,
}

/// A compiled rule, SecAction or SecMarker.
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: u32,
    pub phase: Phase,
    pub links: Vec<Link>,
    pub msg: Option<MacroStr>,
    pub logdata: Option<MacroStr>,
    pub severity: Option<u8>,
    pub tags: Arc<[String]>,
    pub disruptive: Disruptive,
    pub status: Option<u16>,
    pub log: bool,
    pub skip: u32,
    pub skip_after: Option<String>,
    /// Set for SecMarker entries.
    pub marker: Option<String>,
    pub file: Arc<str>,
    pub line: usize,
}
