//! Compiled rules. A SecRule chain is one [`Rule`] with several [`Link`]s: metadata and
//! the disruptive action live on the rule, each link has its own targets and operator.

use crate::action::{ctl::Ctl, setvar::SetVar};
use crate::byteset::{ByteSet, Needs};
use crate::macros::MacroStr;
use crate::operator::Operator;
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

/// What a link's operator is, as far as the rule walk needs to know before loading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum OpKind {
    /// SecAction: no operator, matches once.
    None,
    /// An operator without a macro parameter (`@rx`, `@pm`, …).
    Plain,
    /// An operator whose parameter is a macro, expanded per evaluation (`@lt %{tx.x}`).
    Param,
}

/// The part of a [`Link`] the rule walk reads for every value: most (rule, value)
/// checks end in a byte-set rejection that needs nothing else. Laid out by hand
/// (`repr(C)`, 64-byte aligned) so that rejection reads two cache lines: the first
/// holds the target lists, the flags and the start of `triggers`; the second the rest
/// of `triggers`, the needs count and the most selective needs set.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub(crate) struct LinkHot {
    pub targets: Targets,
    /// Interned id of the link's transformations, the key of the per-transaction cache.
    pub tchain: u32,
    pub op: OpKind,
    /// [`LinkHot::NEGATED`], [`LinkHot::MULTI_MATCH`], [`LinkHot::CAPTURE`],
    /// [`LinkHot::HAS_TRIGGERS`].
    flags: u8,
    /// Bytes that may make the transformations change a value (valid with
    /// `HAS_TRIGGERS`; without it any value may change); a value without them is its
    /// own transformed value.
    triggers: ByteSet,
    /// Bytes a value must contain for the operator to match it (the operator's own
    /// `needs`, held here so rejecting a value does not load the operator).
    pub needs: Needs,
}

impl LinkHot {
    const NEGATED: u8 = 1;
    const MULTI_MATCH: u8 = 2;
    const CAPTURE: u8 = 4;
    const HAS_TRIGGERS: u8 = 8;

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        targets: Targets,
        tchain: u32,
        op: OpKind,
        needs: Needs,
        triggers: Option<ByteSet>,
        negated: bool,
        multi_match: bool,
        capture: bool,
    ) -> LinkHot {
        let mut h = LinkHot {
            targets,
            tchain,
            op,
            flags: 0,
            triggers: ByteSet::EMPTY,
            needs,
        };
        h.set_triggers(triggers);
        h.set(Self::NEGATED, negated);
        h.set(Self::MULTI_MATCH, multi_match);
        h.set(Self::CAPTURE, capture);
        h
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
    }

    /// Negated operator (`!@rx`).
    #[inline]
    pub fn negated(&self) -> bool {
        self.flags & Self::NEGATED != 0
    }

    #[inline]
    pub fn multi_match(&self) -> bool {
        self.flags & Self::MULTI_MATCH != 0
    }

    #[inline]
    pub fn capture(&self) -> bool {
        self.flags & Self::CAPTURE != 0
    }

    /// True when no transformation of the chain changes a value whose bytes are (a
    /// subset of) `have`: it is its own transformed value.
    #[inline]
    pub fn unchanged(&self, have: &ByteSet) -> bool {
        self.flags & Self::HAS_TRIGGERS != 0 && !self.triggers.intersects(have)
    }

    pub fn set_triggers(&mut self, t: Option<ByteSet>) {
        self.set(Self::HAS_TRIGGERS, t.is_some());
        self.triggers = t.unwrap_or(ByteSet::EMPTY);
    }
}

/// One condition of a rule (the rule itself or a chained rule): the hot part first,
/// then what only a value that passed the byte-set checks (or a hit) reads. Inline,
/// not boxed: lines of it the walk does not read cost nothing, and a box would cost a
/// pointer chase whenever they are read (the operator, for about half the links).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Link {
    pub hot: LinkHot,
    /// `None` for SecAction (always matches once).
    pub op: Option<Operator>,
    pub transforms: Vec<Transform>,
    /// Interned id of each prefix `transforms[..=k]`, and whether that prefix is shared
    /// with another chain (then intermediate results are worth caching).
    pub tprefix: Vec<(u32, bool)>,
    /// [`Transform::trigger_bytes`] of each transformation.
    pub stage_triggers: Vec<Option<ByteSet>>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The layout [`LinkHot`] documents: three cache lines, the reject path's fields in
    /// the first two (the needs count and its first set included).
    #[test]
    fn hot_layout() {
        assert_eq!(size_of::<LinkHot>(), 192);
        assert_eq!(size_of::<Needs>(), 8 + 3 * 32, "count, then the sets");
        assert!(offset_of!(LinkHot, triggers) + 32 <= 128);
        assert!(offset_of!(LinkHot, needs) + 8 + 32 <= 128);
        eprintln!(
            "sizes: Link {} LinkHot {} Rule {} Operator {} Target {} MacroStr {} Effect {}",
            size_of::<Link>(),
            size_of::<LinkHot>(),
            size_of::<Rule>(),
            size_of::<Operator>(),
            size_of::<crate::variable::Target>(),
            size_of::<MacroStr>(),
            size_of::<Effect>(),
        );
    }
}
