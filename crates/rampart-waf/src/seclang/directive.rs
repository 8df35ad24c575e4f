//! One handler per SecLang directive. Anything not implemented is recorded in the load
//! report (`unsupported` or `ignored_directives`), never dropped silently.

use super::parser::{Amend, Parser};
use crate::action::ctl::parse_id_ranges;
use crate::action::parse_actions;
use crate::error::{Location, WafError};
use crate::rule::Phase;
use crate::ruleset::{EngineMode, Unsupported};
use crate::variable::parse_targets;

fn on_off(v: &str, loc: &Location) -> Result<bool, WafError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(Parser::err(loc, format!("expected On or Off, got {v:?}"))),
    }
}

fn num(v: &str, loc: &Location) -> Result<u64, WafError> {
    v.trim()
        .parse()
        .map_err(|_| Parser::err(loc, format!("expected a number, got {v:?}")))
}

impl Parser<'_> {
    fn arg<'x>(
        args: &'x [(String, Location)],
        i: usize,
        loc: &Location,
        name: &str,
    ) -> Result<&'x (String, Location), WafError> {
        args.get(i)
            .ok_or_else(|| Parser::err(loc, format!("{name}: missing argument {}", i + 1)))
    }

    fn ignored(&mut self, loc: &Location, name: &str) {
        self.report.ignored_directives.push(Unsupported {
            location: loc.to_string(),
            what: name.to_string(),
        });
    }

    /// Executes one directive.
    pub(crate) fn directive(
        &mut self,
        name: &str,
        args: &[(String, Location)],
        loc: &Location,
        depth: usize,
    ) -> Result<(), WafError> {
        let lname = name.to_ascii_lowercase();
        if self.pending.is_some() && lname != "secrule" {
            return Err(Parser::err(
                loc,
                format!("{name} after a rule with `chain`; expected SecRule"),
            ));
        }
        match lname.as_str() {
            "secrule" => {
                let t = Self::arg(args, 0, loc, name)?;
                let o = Self::arg(args, 1, loc, name)?;
                let a = args.get(2);
                self.add_rule(
                    Some((t.0.as_str(), &t.1)),
                    Some((o.0.as_str(), &o.1)),
                    a.map(|(s, l)| (s.as_str(), l)),
                    loc,
                )?;
            }
            "secaction" => {
                let a = Self::arg(args, 0, loc, name)?;
                self.add_rule(None, None, Some((a.0.as_str(), &a.1)), loc)?;
            }
            "secmarker" => {
                let m = Self::arg(args, 0, loc, name)?;
                self.add_marker(&m.0, loc);
            }
            "secdefaultaction" => {
                let a = Self::arg(args, 0, loc, name)?;
                let pa = parse_actions(&a.0).map_err(|m| Parser::err(&a.1, m))?;
                let phase = pa.phase.unwrap_or(Phase::RequestBody);
                self.last_default = Some(pa.clone());
                self.defaults.insert(phase, pa);
            }
            "include" => {
                let p = Self::arg(args, 0, loc, name)?;
                self.include(&p.0, Some(loc), depth + 1)?;
            }
            "secruleengine" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.config.mode = EngineMode::parse(&v.0)
                    .ok_or_else(|| Parser::err(&v.1, format!("bad SecRuleEngine {:?}", v.0)))?;
            }
            "secrequestbodyaccess" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.config.request_body_access = on_off(&v.0, &v.1)?;
            }
            "secresponsebodyaccess" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.config.response_body_access = on_off(&v.0, &v.1)?;
            }
            "secrequestbodylimit" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.config.request_body_limit = num(&v.0, &v.1)?;
            }
            "secrequestbodynofileslimit" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.config.request_body_no_files_limit = num(&v.0, &v.1)?;
            }
            "secresponsebodylimit" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.config.response_body_limit = num(&v.0, &v.1)?;
            }
            "secrequestbodylimitaction" | "secresponsebodylimitaction" => {
                let v = Self::arg(args, 0, loc, name)?;
                let reject = match v.0.to_ascii_lowercase().as_str() {
                    "reject" => true,
                    "processpartial" => false,
                    _ => return Err(Parser::err(&v.1, format!("bad limit action {:?}", v.0))),
                };
                if lname == "secrequestbodylimitaction" {
                    self.config.request_body_limit_reject = reject;
                } else {
                    self.config.response_body_limit_reject = reject;
                }
            }
            "secresponsebodymimetype" => {
                self.config.response_mime_types = args
                    .iter()
                    .flat_map(|(s, _)| {
                        s.split_whitespace()
                            .map(|x| x.to_ascii_lowercase())
                            .collect::<Vec<_>>()
                    })
                    .collect();
            }
            "secresponsebodymimetypesclear" => self.config.response_mime_types.clear(),
            "secrequestbodyjsondepthlimit" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.config.json_depth_limit = num(&v.0, &v.1)? as usize;
            }
            "secargumentslimit" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.config.arguments_limit = num(&v.0, &v.1)? as usize;
            }
            "secpcrematchlimit" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.config.backtrack_limit = num(&v.0, &v.1)? as usize;
            }
            "secruleremovebyid" => {
                let ids = args
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                let r = parse_id_ranges(&ids).map_err(|m| Parser::err(loc, m))?;
                self.amends.push(Amend::RemoveIds(r));
            }
            "secruleremovebytag" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.amends.push(Amend::RemoveTag(v.0.clone()));
            }
            "secruleremovebymsg" => {
                let v = Self::arg(args, 0, loc, name)?;
                self.amends.push(Amend::RemoveMsg(v.0.clone()));
            }
            "secruleupdateactionbyid" => {
                let who = Self::arg(args, 0, loc, name)?;
                let a = Self::arg(args, 1, loc, name)?;
                let ids = parse_id_ranges(who.0.split(':').next().unwrap_or(""))
                    .map_err(|m| Parser::err(&who.1, m))?;
                let pa = parse_actions(&a.0).map_err(|m| Parser::err(&a.1, m))?;
                if pa.phase.is_some() || pa.chain || pa.id.is_some() {
                    self.unsupported(
                        &a.1,
                        "SecRuleUpdateActionById changing id, phase or chain (ignored)",
                    );
                }
                for u in &pa.unsupported {
                    self.unsupported(&a.1, format!("action {u}"));
                }
                self.amends
                    .push(Amend::UpdateActionsById(ids, Box::new(pa)));
            }
            "secruleupdatetargetbyid" | "secruleupdatetargetbytag" => {
                let who = Self::arg(args, 0, loc, name)?;
                let t = Self::arg(args, 1, loc, name)?;
                if args.len() > 2 {
                    self.unsupported(loc, format!("{name} with a replacement target"));
                }
                let targets = parse_targets(&t.0).map_err(|m| Parser::err(&t.1, m))?;
                if lname == "secruleupdatetargetbyid" {
                    let r = parse_id_ranges(&who.0).map_err(|m| Parser::err(&who.1, m))?;
                    self.amends.push(Amend::UpdateTargetsById(r, targets));
                } else {
                    self.amends
                        .push(Amend::UpdateTargetsByTag(who.0.clone(), targets));
                }
            }
            // Directives that configure logging, storage or other components: accepted
            // and listed in the report.
            "seccomponentsignature"
            | "secpcrematchlimitrecursion"
            | "secauditengine"
            | "secauditlog"
            | "secauditlog2"
            | "secauditlogparts"
            | "secauditlogrelevantstatus"
            | "secauditlogtype"
            | "secauditlogformat"
            | "secauditlogstoragedir"
            | "secauditlogdirmode"
            | "secauditlogfilemode"
            | "secargumentseparator"
            | "seccookieformat"
            | "secstatusengine"
            | "sectmpdir"
            | "secdatadir"
            | "secuploaddir"
            | "secunicodemapfile"
            | "secunicodecodepage"
            | "secdebuglog"
            | "secdebugloglevel"
            | "seccollectiontimeout"
            | "secserversignature"
            | "secwebappid"
            | "secsensorid"
            | "secuploadkeepfiles"
            | "secuploadfilemode"
            | "secuploadfilelimit"
            | "sectmpsaveuploadedfiles"
            | "secrequestbodyinmemorylimit"
            | "secxmlexternalentity"
            | "secconnengine"
            | "sechashengine" => {
                self.ignored(loc, name);
            }
            _ => self.unsupported(loc, format!("directive {name}")),
        }
        Ok(())
    }
}
