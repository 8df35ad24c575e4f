//! Turns logical lines into rules: resolves Include, tracks SecDefaultAction per phase,
//! assembles chains and applies SecRuleRemove*/SecRuleUpdateTarget* at the end.

use super::lexer::{logical_lines, tokenize};
use crate::action::{parse_actions, ParsedActions};
use crate::byteset::{ByteSet, Needs};
use crate::error::{Location, WafError};
use crate::operator::{OpEnv, OpError, Operator, OperatorSpec};
use crate::rule::{Disruptive, Link, LinkHot, OpKind, Phase, Rule};
use crate::ruleset::{Config, Inner, LoadReport, Loader, RuleSet, Step, Unsupported};
use crate::transform::Transform;
use crate::variable::{parse_targets, Targets};
use std::collections::HashMap;
use std::sync::Arc;

const MAX_INCLUDE_DEPTH: usize = 32;

/// A removal or target update recorded by directives, applied in `finish`.
pub(crate) enum Amend {
    RemoveIds(Vec<(u32, u32)>),
    RemoveTag(String),
    RemoveMsg(String),
    UpdateTargetsById(Vec<(u32, u32)>, Targets),
    UpdateTargetsByTag(String, Targets),
    UpdateActionsById(Vec<(u32, u32)>, Box<ParsedActions>),
}

pub(crate) struct Parser<'a> {
    pub loader: &'a dyn Loader,
    pub report: LoadReport,
    pub rules: Vec<Rule>,
    pub defaults: HashMap<Phase, ParsedActions>,
    /// The last SecDefaultAction: rules without `phase` take its phase (ModSecurity).
    pub last_default: Option<ParsedActions>,
    /// A rule whose last link had `chain`, waiting for the next SecRule.
    pub pending: Option<Rule>,
    pub amends: Vec<Amend>,
    pub config: Config,
    tchains: HashMap<Vec<Transform>, u32>,
    /// Current file, for relative Include/@pmFromFile paths.
    pub current_file: String,
}

/// Directory part of a path ("" when none).
fn dirname(p: &str) -> &str {
    match p.rfind('/') {
        Some(i) => &p[..i],
        None => "",
    }
}

/// Resolves `rel` against the directory of `base`.
pub(crate) fn resolve(base: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        return rel.to_string();
    }
    let d = dirname(base);
    if d.is_empty() {
        rel.to_string()
    } else {
        format!("{d}/{rel}")
    }
}

struct Env<'p> {
    loader: &'p dyn Loader,
    file: &'p str,
    limit: usize,
}

impl OpEnv for Env<'_> {
    fn read_data_file(&mut self, name: &str) -> Result<String, String> {
        let p = resolve(self.file, name);
        self.loader
            .read(&p)
            .map_err(|e| format!("cannot read {p}: {e}"))
    }
    fn backtrack_limit(&self) -> usize {
        self.limit
    }
}

impl<'a> Parser<'a> {
    pub fn new(loader: &'a dyn Loader) -> Self {
        Parser {
            loader,
            report: LoadReport::default(),
            rules: Vec::new(),
            defaults: HashMap::new(),
            last_default: None,
            pending: None,
            amends: Vec::new(),
            config: Config::default(),
            tchains: HashMap::new(),
            current_file: String::new(),
        }
    }

    /// Loads a path or glob; `from` is the including file (for relative paths).
    pub fn include(
        &mut self,
        pattern: &str,
        from: Option<&Location>,
        depth: usize,
    ) -> Result<(), WafError> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(WafError::IncludeDepth(pattern.to_string()));
        }
        let pat = match from {
            Some(l) => resolve(&l.file, pattern),
            None => pattern.to_string(),
        };
        let paths = self.loader.glob(&pat).map_err(|reason| WafError::Io {
            path: pat.clone(),
            reason,
        })?;
        for path in paths {
            let text = self.loader.read(&path).map_err(|reason| WafError::Io {
                path: path.clone(),
                reason,
            })?;
            self.report.files.push(path.clone());
            self.parse_text(&path, &text, depth)?;
        }
        Ok(())
    }

    fn parse_text(&mut self, file: &str, text: &str, depth: usize) -> Result<(), WafError> {
        let saved = std::mem::replace(&mut self.current_file, file.to_string());
        for ll in logical_lines(text) {
            let toks = tokenize(&ll.text).map_err(|(off, message)| {
                let (line, col) = ll.position(off);
                WafError::Parse {
                    location: Location {
                        file: file.to_string(),
                        line,
                        col,
                    },
                    message,
                }
            })?;
            let Some(first) = toks.first() else { continue };
            let (line, col) = ll.position(first.offset);
            let loc = Location {
                file: file.to_string(),
                line,
                col,
            };
            let args: Vec<(String, Location)> = toks[1..]
                .iter()
                .map(|t| {
                    let (line, col) = ll.position(t.offset);
                    (
                        t.text.clone(),
                        Location {
                            file: file.to_string(),
                            line,
                            col,
                        },
                    )
                })
                .collect();
            self.directive(&first.text, &args, &loc, depth)?;
        }
        self.current_file = saved;
        Ok(())
    }

    pub fn err(loc: &Location, message: impl Into<String>) -> WafError {
        WafError::Parse {
            location: loc.clone(),
            message: message.into(),
        }
    }

    pub fn unsupported(&mut self, loc: &Location, what: impl Into<String>) {
        self.report.unsupported.push(Unsupported {
            location: loc.to_string(),
            what: what.into(),
        });
    }

    fn intern(&mut self, t: &[Transform]) -> u32 {
        if let Some(&id) = self.tchains.get(t) {
            return id;
        }
        let id = self.tchains.len() as u32;
        self.tchains.insert(t.to_vec(), id);
        id
    }

    /// Builds a rule or chain link from SecRule/SecAction arguments.
    pub fn add_rule(
        &mut self,
        targets: Option<(&str, &Location)>,
        operator: Option<(&str, &Location)>,
        actions: Option<(&str, &Location)>,
        loc: &Location,
    ) -> Result<(), WafError> {
        let mut pa = match actions {
            Some((a, l)) => parse_actions(a).map_err(|m| Self::err(l, m))?,
            None => ParsedActions::default(),
        };
        for u in std::mem::take(&mut pa.unsupported) {
            self.unsupported(actions.map_or(loc, |(_, l)| l), format!("action {u}"));
        }
        let targets = match targets {
            Some((t, l)) => parse_targets(t).map_err(|m| Self::err(l, m))?,
            None => Targets::default(),
        };
        let op = match operator {
            Some((o, l)) => {
                let mut env = Env {
                    loader: self.loader,
                    file: &self.current_file,
                    limit: self.config.backtrack_limit,
                };
                match OperatorSpec::parse(o, &mut env) {
                    Ok(op) => Some(op),
                    Err(OpError::Invalid(m)) => return Err(Self::err(l, m)),
                    Err(OpError::Unsupported(name)) => {
                        self.unsupported(l, format!("operator {name} (rule never matches)"));
                        Some(OperatorSpec {
                            op: Operator::NoMatch,
                            negated: false,
                            needs: Needs::none(),
                        })
                    }
                }
            }
            None => None,
        };

        let is_link = self.pending.is_some();
        let phase = match &self.pending {
            Some(head) => head.phase,
            None => pa
                .phase
                .or(self.last_default.as_ref().and_then(|d| d.phase))
                .unwrap_or(Phase::RequestBody),
        };
        let defaults = self
            .defaults
            .get(&phase)
            .or(self.last_default.as_ref())
            .cloned()
            .unwrap_or_default();
        let mut transforms = if pa.transforms_reset {
            Vec::new()
        } else {
            defaults.transforms.clone()
        };
        transforms.extend(pa.transforms.iter().copied());
        let tchain = self.intern(&transforms);
        let tprefix: Vec<(u32, bool)> = (1..=transforms.len())
            .map(|k| (self.intern(&transforms[..k]), false))
            .collect();
        // Computed here, with the chain, so no link is ever seen without them.
        let (triggers, stage_triggers) = trigger_sets(&transforms);
        let (op, needs, negated, kind) = match op {
            Some(OperatorSpec { op, negated, needs }) => {
                let kind = if op.macro_param().is_some() {
                    OpKind::Param
                } else {
                    OpKind::Plain
                };
                (Some(op), needs, negated, kind)
            }
            None => (None, Needs::none(), false, OpKind::None),
        };
        let link = Link {
            hot: LinkHot::new(
                targets,
                tchain,
                kind,
                needs,
                triggers,
                negated,
                pa.multi_match,
                pa.capture,
            ),
            op,
            transforms,
            tprefix,
            stage_triggers,
            effects: std::mem::take(&mut pa.effects),
        };
        if is_link {
            if let Some(head) = self.pending.as_mut() {
                head.links.push(link);
            }
            if !pa.chain {
                if let Some(head) = self.pending.take() {
                    self.rules.push(head);
                }
            }
            return Ok(());
        }
        let id = pa.id.ok_or_else(|| Self::err(loc, "rule has no id"))?;
        let rule = Rule {
            id,
            phase,
            links: vec![link],
            msg: pa.msg,
            logdata: pa.logdata,
            severity: pa.severity,
            tags: pa.tags.into(),
            disruptive: pa
                .disruptive
                .or(defaults.disruptive)
                .unwrap_or(Disruptive::Pass),
            status: pa.status.or(defaults.status),
            log: pa.log.or(defaults.log).unwrap_or(true),
            skip: pa.skip,
            skip_after: pa.skip_after,
            marker: None,
            file: Arc::from(loc.file.as_str()),
            line: loc.line,
        };
        self.report.rules += 1;
        if pa.chain {
            self.pending = Some(rule);
        } else {
            self.rules.push(rule);
        }
        Ok(())
    }

    pub fn add_marker(&mut self, name: &str, loc: &Location) {
        self.rules.push(Rule {
            id: 0,
            phase: Phase::RequestHeaders,
            links: Vec::new(),
            msg: None,
            logdata: None,
            severity: None,
            tags: Arc::from([]),
            disruptive: Disruptive::Pass,
            status: None,
            log: false,
            skip: 0,
            skip_after: None,
            marker: Some(name.to_string()),
            file: Arc::from(loc.file.as_str()),
            line: loc.line,
        });
    }

    /// SecRuleUpdateActionById: metadata and the disruptive action are replaced,
    /// tags and setvar/ctl effects appended, `t:` applied on top of the rule's list.
    fn update_actions(&mut self, ids: &[(u32, u32)], pa: &ParsedActions) {
        let hits: Vec<usize> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, x)| x.marker.is_none() && ids.iter().any(|&(a, b)| x.id >= a && x.id <= b))
            .map(|(i, _)| i)
            .collect();
        for i in hits {
            let new_t = {
                let Some(first) = self.rules[i].links.first() else {
                    continue;
                };
                if pa.transforms_reset {
                    Some(pa.transforms.clone())
                } else if pa.transforms.is_empty() {
                    None
                } else {
                    let mut t = first.transforms.clone();
                    t.extend(pa.transforms.iter().copied());
                    Some(t)
                }
            };
            let interned = new_t.map(|t| {
                let chain = self.intern(&t);
                let prefix: Vec<(u32, bool)> = (1..=t.len())
                    .map(|k| (self.intern(&t[..k]), false))
                    .collect();
                (t, chain, prefix)
            });
            let rule = &mut self.rules[i];
            if let Some(m) = &pa.msg {
                rule.msg = Some(m.clone());
            }
            if let Some(m) = &pa.logdata {
                rule.logdata = Some(m.clone());
            }
            if pa.severity.is_some() {
                rule.severity = pa.severity;
            }
            if let Some(d) = &pa.disruptive {
                rule.disruptive = d.clone();
            }
            if pa.status.is_some() {
                rule.status = pa.status;
            }
            if let Some(l) = pa.log {
                rule.log = l;
            }
            rule.tags = rule.tags.iter().chain(pa.tags.iter()).cloned().collect();
            if let Some(first) = rule.links.first_mut() {
                first.effects.extend(pa.effects.iter().cloned());
                if let Some((t, chain, prefix)) = interned {
                    // New transformations, new trigger sets (kept in step with them).
                    let (triggers, stage_triggers) = trigger_sets(&t);
                    first.hot.set_triggers(triggers);
                    first.stage_triggers = stage_triggers;
                    first.transforms = t;
                    first.hot.tchain = chain;
                    first.tprefix = prefix;
                }
            }
        }
    }

    /// Applies removals/updates and builds the phase index.
    pub fn finish(mut self) -> Result<(RuleSet, LoadReport), WafError> {
        if let Some(head) = self.pending.take() {
            // A dangling `chain` at the end: keep the rule as written (ModSecurity errors;
            // we prefer loading and reporting).
            self.report.unsupported.push(Unsupported {
                location: format!("{}:{}", head.file, head.line),
                what: format!(
                    "rule {} ends with chain but no chained rule follows",
                    head.id
                ),
            });
            self.rules.push(head);
        }
        let in_ranges = |id: u32, r: &[(u32, u32)]| r.iter().any(|&(a, b)| id >= a && id <= b);
        let before = self.rules.len();
        for a in &self.amends {
            match a {
                Amend::RemoveIds(r) => self
                    .rules
                    .retain(|x| x.marker.is_some() || !in_ranges(x.id, r)),
                Amend::RemoveTag(t) => self.rules.retain(|x| !x.tags.iter().any(|g| g == t)),
                Amend::RemoveMsg(m) => self.rules.retain(|x| {
                    x.msg
                        .as_ref()
                        .and_then(|s| s.as_static())
                        .is_none_or(|s| s != m.as_bytes())
                }),
                Amend::UpdateTargetsById(..)
                | Amend::UpdateTargetsByTag(..)
                | Amend::UpdateActionsById(..) => {}
            }
        }
        self.report.removed = before - self.rules.len();
        for a in std::mem::take(&mut self.amends) {
            let (sel_ids, sel_tag, t) = match a {
                Amend::UpdateTargetsById(r, t) => (Some(r), None, t),
                Amend::UpdateTargetsByTag(tag, t) => (None, Some(tag), t),
                Amend::UpdateActionsById(r, pa) => {
                    self.update_actions(&r, &pa);
                    continue;
                }
                _ => continue,
            };
            for rule in self.rules.iter_mut().filter(|x| x.marker.is_none()) {
                let hit = match (&sel_ids, &sel_tag) {
                    (Some(r), _) => in_ranges(rule.id, r),
                    (_, Some(tag)) => rule.tags.iter().any(|g| g == tag),
                    _ => false,
                };
                if hit {
                    if let Some(first) = rule.links.first_mut() {
                        first.hot.targets.targets.extend(t.targets.iter().cloned());
                        first
                            .hot
                            .targets
                            .exclusions
                            .extend(t.exclusions.iter().cloned());
                    }
                }
            }
        }
        // A transformation prefix is worth caching when several distinct chains start
        // with it.
        let mut users: HashMap<u32, std::collections::HashSet<u32>> = HashMap::new();
        for l in self.rules.iter().flat_map(|r| r.links.iter()) {
            for &(pid, _) in &l.tprefix {
                users.entry(pid).or_default().insert(l.hot.tchain);
            }
        }
        for l in self.rules.iter_mut().flat_map(|r| r.links.iter_mut()) {
            for p in &mut l.tprefix {
                p.1 = users.get(&p.0).is_some_and(|s| s.len() > 1);
            }
        }
        let mut phases: [Vec<usize>; 6] = Default::default();
        for (i, r) in self.rules.iter().enumerate() {
            if r.marker.is_some() {
                for p in phases.iter_mut().skip(1) {
                    p.push(i);
                }
            } else {
                phases[r.phase.number() as usize].push(i);
            }
        }
        let rules = &self.rules;
        let phases: [Vec<Step>; 6] = std::array::from_fn(|ph| {
            let list = &phases[ph];
            list.iter()
                .enumerate()
                .map(|(p, &i)| Step {
                    rule: i,
                    jump: match &rules[i].skip_after {
                        Some(name) => list[p + 1..]
                            .iter()
                            .position(|&j| rules[j].marker.as_deref() == Some(name.as_str()))
                            .map_or(list.len(), |o| p + 1 + o),
                        None => 0,
                    },
                    marker: rules[i].marker.is_some(),
                })
                .collect()
        });
        let mut default_disruptive: [Disruptive; 6] = std::array::from_fn(|_| Disruptive::Pass);
        let mut default_status = [None; 6];
        for (ph, d) in &self.defaults {
            if let Some(x) = &d.disruptive {
                default_disruptive[ph.number() as usize] = x.clone();
            }
            default_status[ph.number() as usize] = d.status;
        }
        // From the final rules, so rules removed by SecRuleRemoveBy* are not counted.
        self.report.regex_engines = crate::ruleset::regex_engines_of(&self.rules);
        let inner = Inner {
            rules: self.rules,
            phases,
            config: self.config,
            default_disruptive,
            default_status,
            no_tags: Arc::from(Vec::new()),
            no_file: Arc::from(""),
        };
        Ok((RuleSet::from_inner(inner), self.report))
    }
}

/// A link's trigger sets for its transformations: the whole chain's and each stage's.
fn trigger_sets(t: &[Transform]) -> (Option<ByteSet>, Vec<Option<ByteSet>>) {
    (
        Transform::chain_trigger_bytes(t),
        t.iter().map(|x| x.trigger_bytes()).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::Parser;
    use crate::ruleset::MemoryLoader;

    /// A link carries its trigger sets from the moment it is built (before `finish`), one
    /// per transformation, so the multiMatch walk can never skip a transformation for
    /// want of one.
    #[test]
    fn links_have_stage_triggers_when_built() {
        let conf = "SecRule ARGS \"@rx a\" \"id:1,phase:2,pass,t:lowercase,t:urlDecode,multiMatch,chain\"\n\
                    SecRule ARGS_NAMES \"@rx b\" \"t:removeNulls,t:trim\"\n\
                    SecRule ARGS \"@rx c\" \"id:2,phase:2,pass,t:none,t:htmlEntityDecode,chain\"\n";
        let loader = MemoryLoader::new().with("a.conf", conf);
        let mut p = Parser::new(&loader);
        if let Err(e) = p.include("a.conf", None, 0) {
            panic!("load: {e}");
        }
        let links: Vec<_> = p
            .rules
            .iter()
            .chain(p.pending.iter())
            .flat_map(|r| r.links.iter())
            .collect();
        assert_eq!(links.len(), 3);
        for l in links {
            assert!(!l.transforms.is_empty());
            let want: Vec<_> = l.transforms.iter().map(|t| t.trigger_bytes()).collect();
            assert_eq!(l.stage_triggers, want);
        }
    }
}
