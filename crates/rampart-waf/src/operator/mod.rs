//! Operators (`@rx`, `@pm`, `@detectSQLi`, …), one file each, compiled at load time.

pub(crate) mod detect_sqli;
pub(crate) mod detect_xss;
mod ip_match;
pub mod numeric;
mod pm;
#[cfg(test)]
mod reference_tests;
pub mod rx;
pub mod strings;
mod validate_byte_range;
mod validate_url_encoding;
mod validate_utf8_encoding;
mod verify_cc;

use crate::byteset::{ByteSet, Needs};
use crate::macros::MacroStr;
use aho_corasick::AhoCorasick;
pub use rx::{CompiledRegex, Engine};

/// A compiled operator.
#[derive(Debug)]
pub(crate) enum Operator {
    Rx(CompiledRegex),
    Pm(Option<AhoCorasick>),
    DetectSqli,
    DetectXss,
    /// The allow table, and the same as a set.
    ValidateByteRange(Box<[bool; 256]>, ByteSet),
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    IpMatch(Vec<ip_match::Net>),
    VerifyCc(CompiledRegex),
    Num(numeric::Cmp, MacroStr),
    Str(strings::StrOp, MacroStr),
    Unconditional,
    NoMatch,
}

/// What a successful match yields: captures for TX.0–9 (may be empty).
pub(crate) struct OpMatch {
    pub captures: Vec<Vec<u8>>,
}

/// Operator plus negation.
#[derive(Debug)]
pub(crate) struct OperatorSpec {
    pub op: Operator,
    pub negated: bool,
    /// Bytes a value must contain for `op` to match it (`@rx`, `@pm`).
    pub needs: Needs,
}

/// Parse context for operators: reads `@pmFromFile` data through the loader.
pub(crate) trait OpEnv {
    fn read_data_file(&mut self, name: &str) -> Result<String, String>;
    fn backtrack_limit(&self) -> usize;
}

/// Error type distinguishing unsupported operators from malformed ones.
pub(crate) enum OpError {
    Unsupported(String),
    Invalid(String),
}

impl OperatorSpec {
    /// Parses the operator string of a SecRule (`"!@rx foo"`, `"foo"` = `@rx foo`).
    pub fn parse(text: &str, env: &mut dyn OpEnv) -> Result<OperatorSpec, OpError> {
        let mut t = text.trim_start();
        let mut negated = false;
        if let Some(r) = t.strip_prefix('!') {
            negated = true;
            t = r.trim_start();
        }
        let (name, param) = if let Some(r) = t.strip_prefix('@') {
            match r.find(|c: char| c.is_whitespace()) {
                Some(p) => (&r[..p], r[p..].trim_start()),
                None => (r, ""),
            }
        } else {
            ("rx", t)
        };
        let lname = name.to_ascii_lowercase();
        let mut needs = Needs::none();
        let op = match lname.as_str() {
            // `@rxGlobal` differs from `@rx` only in collecting every match for
            // `capture`; TX.0–9 come from the first match here.
            "rx" | "rxglobal" => {
                let (re, n) = CompiledRegex::compile_with_needs(param, env.backtrack_limit())
                    .map_err(OpError::Invalid)?;
                needs = n;
                Operator::Rx(re)
            }
            "pm" => {
                let (ac, n) = pm::build(&pm::split_phrases(param)).map_err(OpError::Invalid)?;
                needs = n;
                Operator::Pm(ac)
            }
            "pmfromfile" | "pmf" => {
                let mut phrases = Vec::new();
                for f in param.split_ascii_whitespace() {
                    let text = env.read_data_file(f).map_err(OpError::Invalid)?;
                    phrases.extend(pm::parse_file(&text));
                }
                let (ac, n) = pm::build(&phrases).map_err(OpError::Invalid)?;
                needs = n;
                Operator::Pm(ac)
            }
            "verifycc" => Operator::VerifyCc(
                CompiledRegex::compile(param, env.backtrack_limit()).map_err(OpError::Invalid)?,
            ),
            "detectsqli" => Operator::DetectSqli,
            "detectxss" => {
                needs = detect_xss::needs();
                Operator::DetectXss
            }
            "validatebyterange" => {
                let t = validate_byte_range::parse(param).map_err(OpError::Invalid)?;
                let mut allowed = ByteSet::EMPTY;
                for b in 0..=255u8 {
                    if t[usize::from(b)] {
                        allowed.insert(b);
                    }
                }
                Operator::ValidateByteRange(Box::new(t), allowed)
            }
            "validateurlencoding" => Operator::ValidateUrlEncoding,
            "validateutf8encoding" => Operator::ValidateUtf8Encoding,
            "ipmatch" => Operator::IpMatch(ip_match::parse(param).map_err(OpError::Invalid)?),
            "ipmatchfromfile" | "ipmatchf" => {
                let text = env.read_data_file(param.trim()).map_err(OpError::Invalid)?;
                Operator::IpMatch(ip_match::parse(&text).map_err(OpError::Invalid)?)
            }
            "eq" => Operator::Num(numeric::Cmp::Eq, MacroStr::parse(param)),
            "ge" => Operator::Num(numeric::Cmp::Ge, MacroStr::parse(param)),
            "gt" => Operator::Num(numeric::Cmp::Gt, MacroStr::parse(param)),
            "le" => Operator::Num(numeric::Cmp::Le, MacroStr::parse(param)),
            "lt" => Operator::Num(numeric::Cmp::Lt, MacroStr::parse(param)),
            "streq" => Operator::Str(strings::StrOp::Eq, MacroStr::parse(param)),
            "contains" | "strmatch" => {
                Operator::Str(strings::StrOp::Contains, MacroStr::parse(param))
            }
            "beginswith" => Operator::Str(strings::StrOp::BeginsWith, MacroStr::parse(param)),
            "endswith" => Operator::Str(strings::StrOp::EndsWith, MacroStr::parse(param)),
            "within" => Operator::Str(strings::StrOp::Within, MacroStr::parse(param)),
            "containsword" => Operator::Str(strings::StrOp::ContainsWord, MacroStr::parse(param)),
            "unconditionalmatch" => Operator::Unconditional,
            "nomatch" => Operator::NoMatch,
            _ => return Err(OpError::Unsupported(format!("@{name}"))),
        };
        Ok(OperatorSpec { op, negated, needs })
    }

    /// Evaluates against one (transformed) value; `param` is the expanded macro
    /// parameter for operators that take one. Negation is applied by the caller.
    #[cfg(test)]
    pub fn eval(&self, input: &[u8], param: &[u8], want_captures: bool) -> Option<OpMatch> {
        self.eval_with(input, &ByteSet::of(input), param, want_captures)
    }

    /// [`OperatorSpec::eval`] for a value whose bytes are `have` (`ByteSet::of(input)`).
    #[cfg(test)]
    pub fn eval_with(
        &self,
        input: &[u8],
        have: &ByteSet,
        param: &[u8],
        want_captures: bool,
    ) -> Option<OpMatch> {
        self.op
            .eval_with(&self.needs, input, have, param, want_captures)
    }
}

impl Operator {
    /// Evaluates against one (transformed) value whose bytes are `have`
    /// (`ByteSet::of(input)`); `param` is the expanded macro parameter for operators
    /// that take one. Negation is applied by the caller. Values lacking the bytes the
    /// operator `needs` are answered without a search.
    pub fn eval_with(
        &self,
        needs: &Needs,
        input: &[u8],
        have: &ByteSet,
        param: &[u8],
        want_captures: bool,
    ) -> Option<OpMatch> {
        if !needs.may_hold(have) {
            return None;
        }
        let none = || OpMatch {
            captures: Vec::new(),
        };
        let one = |v: Vec<u8>| OpMatch { captures: vec![v] };
        match self {
            Operator::Rx(re) => {
                // Most values do not match: answer that with the fast DFA search and
                // only pay for capture groups on a hit.
                if !re.is_match(input) {
                    None
                } else if want_captures {
                    re.captures(input).map(|captures| OpMatch { captures })
                } else {
                    Some(none())
                }
            }
            Operator::Pm(ac) => pm::find(ac, input).map(one),
            Operator::DetectSqli => detect_sqli::check(input).map(one),
            Operator::DetectXss => detect_xss::check(input).then(none),
            Operator::ValidateByteRange(t, allowed) => {
                if have.is_subset(allowed) {
                    None
                } else {
                    validate_byte_range::check(t, input).map(|b| one(vec![b]))
                }
            }
            Operator::ValidateUrlEncoding => validate_url_encoding::check(input).then(none),
            Operator::ValidateUtf8Encoding => validate_utf8_encoding::check(input).then(none),
            Operator::IpMatch(nets) => ip_match::check(nets, input).then(none),
            Operator::VerifyCc(re) => verify_cc::check(re, input).map(one),
            Operator::Num(cmp, _) => numeric::check(*cmp, input, param).then(none),
            Operator::Str(op, _) => strings::check(*op, input, param).then(|| one(input.to_vec())),
            Operator::Unconditional => Some(none()),
            Operator::NoMatch => None,
        }
    }

    /// The macro parameter, if the operator takes one.
    pub fn macro_param(&self) -> Option<&MacroStr> {
        match self {
            Operator::Num(_, m) | Operator::Str(_, m) => Some(m),
            _ => None,
        }
    }
}
