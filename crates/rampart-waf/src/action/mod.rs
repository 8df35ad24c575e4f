//! Actions of SecRule/SecAction/SecDefaultAction. Parsing is here; `setvar` and `ctl`
//! have their own files. Execution lives in the transaction, which owns the state.

pub mod ctl;
pub(crate) mod setvar;

use crate::macros::MacroStr;
use crate::rule::{AllowScope, Disruptive, Effect, Phase};
use crate::transform::{Parsed, Transform};

/// Everything an action list may set; `None` means "not given" so defaults can apply.
#[derive(Debug, Default, Clone)]
pub(crate) struct ParsedActions {
    pub id: Option<u32>,
    pub phase: Option<Phase>,
    pub msg: Option<MacroStr>,
    pub logdata: Option<MacroStr>,
    pub severity: Option<u8>,
    pub tags: Vec<String>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    pub log: Option<bool>,
    pub chain: bool,
    pub skip: u32,
    pub skip_after: Option<String>,
    pub capture: bool,
    pub multi_match: bool,
    /// Transform list with `t:none` resets applied; `reset` says a `t:none` was seen.
    pub transforms: Vec<Transform>,
    pub transforms_reset: bool,
    pub effects: Vec<Effect>,
    /// Actions we accept but do not implement (reported at load).
    pub unsupported: Vec<String>,
}

/// Splits `a,b:'x,y',c` honouring single quotes.
fn split_actions(s: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut chars = s.chars().peekable();
    let mut items = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_q => {
                if let Some(&n) = chars.peek() {
                    if n == '\'' {
                        cur.push('\'');
                        chars.next();
                        continue;
                    }
                }
                cur.push(c);
            }
            '\'' => {
                in_q = !in_q;
                cur.push(c);
            }
            ',' if !in_q => items.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    items.push(cur);
    for it in items {
        let it = it.trim();
        if it.is_empty() {
            continue;
        }
        match it.find(':') {
            Some(p) => {
                let name = it[..p].trim().to_string();
                let mut v = it[p + 1..].trim();
                if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
                    v = &v[1..v.len() - 1];
                }
                out.push((name, Some(v.to_string())));
            }
            None => out.push((it.to_string(), None)),
        }
    }
    out
}

fn need(v: &Option<String>, name: &str) -> Result<String, String> {
    v.clone()
        .ok_or_else(|| format!("action {name} needs an argument"))
}

/// Parses an action list.
pub(crate) fn parse_actions(s: &str) -> Result<ParsedActions, String> {
    let mut a = ParsedActions::default();
    for (name, val) in split_actions(s) {
        let lname = name.to_ascii_lowercase();
        match lname.as_str() {
            "id" => {
                let v = need(&val, "id")?;
                a.id = Some(v.trim().parse().map_err(|_| format!("bad id {v:?}"))?);
            }
            "phase" => {
                let v = need(&val, "phase")?;
                a.phase = Some(Phase::parse(&v).ok_or_else(|| format!("bad phase {v:?}"))?);
            }
            "msg" => a.msg = Some(MacroStr::parse(&need(&val, "msg")?)),
            "logdata" => a.logdata = Some(MacroStr::parse(&need(&val, "logdata")?)),
            "severity" => {
                let v = need(&val, "severity")?;
                a.severity = Some(
                    crate::audit::Severity::parse(&v)
                        .ok_or_else(|| format!("bad severity {v:?}"))? as u8,
                );
            }
            "tag" => a.tags.push(need(&val, "tag")?),
            "t" => {
                let v = need(&val, "t")?;
                match Transform::parse(&v) {
                    Some(Parsed::None) => {
                        a.transforms.clear();
                        a.transforms_reset = true;
                    }
                    Some(Parsed::Known(t)) => a.transforms.push(t),
                    None => a.unsupported.push(format!("t:{v}")),
                }
            }
            "pass" => a.disruptive = Some(Disruptive::Pass),
            "block" => a.disruptive = Some(Disruptive::Block),
            "deny" => a.disruptive = Some(Disruptive::Deny),
            "drop" => a.disruptive = Some(Disruptive::Drop),
            "allow" => {
                let scope = match val.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("") => AllowScope::All,
                    Some("phase") => AllowScope::Phase,
                    Some("request") => AllowScope::Request,
                    Some(o) => return Err(format!("bad allow scope {o:?}")),
                };
                a.disruptive = Some(Disruptive::Allow(scope));
            }
            "redirect" => {
                a.disruptive = Some(Disruptive::Redirect(MacroStr::parse(&need(
                    &val, "redirect",
                )?)))
            }
            "status" => {
                let v = need(&val, "status")?;
                a.status = Some(v.trim().parse().map_err(|_| format!("bad status {v:?}"))?);
            }
            "log" => a.log = Some(true),
            "nolog" => a.log = Some(false),
            "auditlog" | "noauditlog" => {}
            "chain" => a.chain = true,
            "skip" => {
                let v = need(&val, "skip")?;
                a.skip = v.trim().parse().map_err(|_| format!("bad skip {v:?}"))?;
            }
            "skipafter" => a.skip_after = Some(need(&val, "skipAfter")?),
            "capture" => a.capture = true,
            "multimatch" => a.multi_match = true,
            "setvar" => a
                .effects
                .push(Effect::SetVar(setvar::parse(&need(&val, "setvar")?)?)),
            "ctl" => match ctl::parse(&need(&val, "ctl")?) {
                Ok(c) => a.effects.push(Effect::Ctl(c)),
                Err(e) if e.starts_with("unsupported") => a
                    .unsupported
                    .push(format!("ctl:{}", val.unwrap_or_default())),
                Err(e) => return Err(e),
            },
            // Metadata without runtime effect.
            "ver" | "rev" | "maturity" | "accuracy" => {}
            // Persistent collections and environment are out of scope for a single
            // transaction engine: accepted and reported.
            "expirevar"
            | "initcol"
            | "setenv"
            | "setuid"
            | "setsid"
            | "setrsc"
            | "deprecatevar"
            | "sanitisearg"
            | "sanitisematched"
            | "sanitisematchedbytes"
            | "sanitiserequestheader"
            | "sanitiseresponseheader"
            | "exec"
            | "append"
            | "prepend"
            | "proxy"
            | "pause"
            | "xmlns" => {
                a.unsupported.push(lname.clone());
            }
            _ => return Err(format!("unknown action {name:?}")),
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list() {
        let a = parse_actions(
            "id:1,phase:2,msg:'a, b',t:none,t:lowercase,setvar:'tx.x=+%{tx.y}',block,chain",
        )
        .unwrap_or_default();
        assert_eq!(a.id, Some(1));
        assert!(a.chain && a.transforms_reset);
        assert_eq!(a.transforms, vec![Transform::Lowercase]);
        assert_eq!(a.effects.len(), 1);
    }
}
