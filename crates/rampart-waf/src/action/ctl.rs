//! `ctl:` — per-transaction configuration changes (rule removal, engine mode, body
//! processor …).

use crate::ruleset::EngineMode;
use crate::variable::{parse_targets, Exclusion};

/// Request body processor selectable by `ctl:requestBodyProcessor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProcessor {
    /// application/x-www-form-urlencoded
    UrlEncoded,
    /// multipart/form-data
    Multipart,
    /// JSON
    Json,
    /// XML
    Xml,
}

impl BodyProcessor {
    /// Name as in REQBODY_PROCESSOR.
    pub fn name(self) -> &'static str {
        match self {
            BodyProcessor::UrlEncoded => "URLENCODED",
            BodyProcessor::Multipart => "MULTIPART",
            BodyProcessor::Json => "JSON",
            BodyProcessor::Xml => "XML",
        }
    }
}

/// Id ranges (`1-999999`, `942100`).
pub(crate) type IdRanges = Vec<(u32, u32)>;

pub(crate) fn parse_id_ranges(s: &str) -> Result<IdRanges, String> {
    let mut out = Vec::new();
    for p in s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match p.split_once('-') {
            Some((a, b)) => (a, b),
            None => (p, p),
        };
        let a: u32 = a.trim().parse().map_err(|_| format!("bad rule id {p:?}"))?;
        let b: u32 = b.trim().parse().map_err(|_| format!("bad rule id {p:?}"))?;
        out.push((a, b));
    }
    Ok(out)
}

/// A parsed ctl action.
#[derive(Debug, Clone)]
pub(crate) enum Ctl {
    RuleRemoveById(IdRanges),
    RuleRemoveByTag(String),
    RuleRemoveByMsg(String),
    RuleRemoveTargetById(IdRanges, Vec<Exclusion>),
    RuleRemoveTargetByTag(String, Vec<Exclusion>),
    RuleEngine(EngineMode),
    RequestBodyProcessor(BodyProcessor),
    RequestBodyAccess(bool),
    ResponseBodyAccess(bool),
    ForceRequestBodyVariable(bool),
    RequestBodyLimit(u64),
    /// Accepted, no effect in this engine (audit engine/parts, debug log level).
    Noop,
}

fn on_off(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected On/Off, got {v:?}")),
    }
}

fn target_excl(s: &str) -> Result<Vec<Exclusion>, String> {
    let t = parse_targets(s)?;
    Ok(t.targets
        .into_iter()
        .map(|t| Exclusion {
            kind: t.kind,
            selector: t.selector,
        })
        .collect())
}

pub(crate) fn parse(arg: &str) -> Result<Ctl, String> {
    let (name, val) = arg
        .split_once('=')
        .ok_or_else(|| format!("ctl needs name=value: {arg:?}"))?;
    let val = val.trim();
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "ruleremovebyid" => Ctl::RuleRemoveById(parse_id_ranges(val)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(val.to_string()),
        "ruleremovebymsg" => Ctl::RuleRemoveByMsg(val.to_string()),
        "ruleremovetargetbyid" => {
            let (ids, t) = val
                .split_once(';')
                .ok_or("ruleRemoveTargetById needs id;TARGET")?;
            Ctl::RuleRemoveTargetById(parse_id_ranges(ids)?, target_excl(t)?)
        }
        "ruleremovetargetbytag" => {
            let (tag, t) = val
                .split_once(';')
                .ok_or("ruleRemoveTargetByTag needs tag;TARGET")?;
            Ctl::RuleRemoveTargetByTag(tag.to_string(), target_excl(t)?)
        }
        "ruleengine" => Ctl::RuleEngine(
            EngineMode::parse(val).ok_or_else(|| format!("bad ruleEngine {val:?}"))?,
        ),
        "requestbodyprocessor" => {
            Ctl::RequestBodyProcessor(match val.to_ascii_uppercase().as_str() {
                "URLENCODED" => BodyProcessor::UrlEncoded,
                "MULTIPART" => BodyProcessor::Multipart,
                "JSON" => BodyProcessor::Json,
                "XML" => BodyProcessor::Xml,
                _ => return Err(format!("unknown body processor {val:?}")),
            })
        }
        "requestbodyaccess" => Ctl::RequestBodyAccess(on_off(val)?),
        "responsebodyaccess" => Ctl::ResponseBodyAccess(on_off(val)?),
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on_off(val)?),
        "requestbodylimit" => {
            Ctl::RequestBodyLimit(val.parse().map_err(|_| format!("bad limit {val:?}"))?)
        }
        "auditengine" | "auditlogparts" | "debugloglevel" | "hashengine" => Ctl::Noop,
        other => return Err(format!("unsupported ctl {other}")),
    })
}
