//! What the engine records about matches, for the connector's audit/error log.

use crate::rule::Phase;

/// ModSecurity severities (syslog levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Severity {
    Emergency = 0,
    Alert = 1,
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl Severity {
    /// Parses `CRITICAL` or `2`.
    pub fn parse(s: &str) -> Option<Severity> {
        use Severity::*;
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "0" | "EMERGENCY" => Emergency,
            "1" | "ALERT" => Alert,
            "2" | "CRITICAL" => Critical,
            "3" | "ERROR" => Error,
            "4" | "WARNING" => Warning,
            "5" | "NOTICE" => Notice,
            "6" | "INFO" => Info,
            "7" | "DEBUG" => Debug,
            _ => return None,
        })
    }

    pub(crate) fn from_u8(v: u8) -> Option<Severity> {
        use Severity::*;
        Some(match v {
            0 => Emergency,
            1 => Alert,
            2 => Critical,
            3 => Error,
            4 => Warning,
            5 => Notice,
            6 => Info,
            7 => Debug,
            _ => return None,
        })
    }

    /// Upper-case name.
    pub fn name(self) -> &'static str {
        use Severity::*;
        match self {
            Emergency => "EMERGENCY",
            Alert => "ALERT",
            Critical => "CRITICAL",
            Error => "ERROR",
            Warning => "WARNING",
            Notice => "NOTICE",
            Info => "INFO",
            Debug => "DEBUG",
        }
    }
}

/// One rule that matched during a transaction.
#[derive(Debug, Clone)]
pub struct MatchedRule {
    /// Rule id.
    pub id: u32,
    /// Phase it matched in.
    pub phase: Phase,
    /// Expanded `msg` (empty for a `nolog` rule that did not interrupt).
    pub msg: String,
    /// Expanded `logdata` (empty for a `nolog` rule that did not interrupt).
    pub logdata: String,
    /// `severity`, if set.
    pub severity: Option<Severity>,
    /// `tag`s (shared with the rule: recording a match copies no strings; empty for a
    /// `nolog` rule that did not interrupt).
    pub tags: std::sync::Arc<[String]>,
    /// Name of the variable that matched last (`ARGS:id`).
    pub matched_var_name: std::sync::Arc<str>,
    /// Start of the transformed value that matched (at most 200 bytes, lossy UTF-8;
    /// empty for a `nolog` rule that did not interrupt).
    pub matched_data: String,
    /// Whether the rule asks to be logged (`log`, default; `nolog` clears it).
    pub log: bool,
    /// Whether the rule interrupted the transaction.
    pub disruptive: bool,
    /// Rule file (empty for a `nolog` rule that did not interrupt).
    pub file: std::sync::Arc<str>,
    /// Line in `file`.
    pub line: usize,
}

impl MatchedRule {
    /// Escapes control and non-ASCII bytes as `\xHH` so a record stays on one line.
    fn esc(s: &str) -> String {
        let mut o = String::with_capacity(s.len());
        for c in s.chars() {
            if c.is_control() || c == '"' {
                for b in c.to_string().bytes() {
                    o.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                o.push(c);
            }
        }
        o
    }

    /// A ModSecurity-style error-log line: `... [id "942100"] [msg "..."] ...`.
    pub fn log_line(&self) -> String {
        let mut s = format!(
            "ModSecurity: Warning. Matched {}. [file \"{}\"] [line \"{}\"] [id \"{}\"] [msg \"{}\"] [data \"{}\"]",
            self.matched_var_name,
            self.file,
            self.line,
            self.id,
            Self::esc(&self.msg),
            Self::esc(&self.logdata)
        );
        if let Some(sev) = self.severity {
            s.push_str(&format!(" [severity \"{}\"]", sev.name()));
        }
        for t in self.tags.iter() {
            s.push_str(&format!(" [tag \"{t}\"]"));
        }
        s
    }

    /// One JSON object (a JSON-lines record) with every field, e.g. for an audit log.
    pub fn to_json(&self) -> String {
        let tags: Vec<String> = self.tags.iter().map(|t| json_str(t)).collect();
        format!(
            "{{\"id\":{},\"phase\":{},\"msg\":{},\"logdata\":{},\"severity\":{},\"tags\":[{}],\"matched_var_name\":{},\"matched_data\":{},\"log\":{},\"disruptive\":{},\"file\":{},\"line\":{}}}",
            self.id,
            self.phase.number(),
            json_str(&self.msg),
            json_str(&self.logdata),
            self.severity.map_or("null".to_string(), |s| json_str(s.name())),
            tags.join(","),
            json_str(&self.matched_var_name),
            json_str(&self.matched_data),
            self.log,
            self.disruptive,
            json_str(&self.file),
            self.line
        )
    }
}

/// JSON string literal with the mandatory escapes.
fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_record_escapes() {
        let m = MatchedRule {
            id: 942100,
            phase: Phase::RequestBody,
            msg: "SQL \"x\"".into(),
            logdata: "a\nb\\".into(),
            severity: Some(Severity::Critical),
            tags: vec!["t1".to_string()].into(),
            matched_var_name: "ARGS:id".into(),
            matched_data: "\u{1}".into(),
            log: true,
            disruptive: false,
            file: "f.conf".into(),
            line: 3,
        };
        let j = m.to_json();
        assert!(
            j.starts_with("{\"id\":942100,\"phase\":2,\"msg\":\"SQL \\\"x\\\"\""),
            "{j}"
        );
        assert!(j.contains("\"logdata\":\"a\\nb\\\\\""), "{j}");
        assert!(j.contains("\"matched_data\":\"\\u0001\""), "{j}");
        assert!(m.log_line().contains("[id \"942100\"]"));
    }
}
