//! The compiled, shareable rule set and how it is loaded.

use crate::error::WafError;
use crate::operator::{Engine, Operator};
use crate::rule::{Disruptive, Phase, Rule};
use crate::seclang::parser::Parser;
use crate::transaction::Transaction;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads rule and data files; the caller decides where they come from.
pub trait Loader {
    /// Returns the text of `path`.
    fn read(&self, path: &str) -> Result<String, String>;
    /// Expands a glob (`rules/*.conf`) into sorted paths. Patterns without wildcards
    /// return themselves.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, String>;
}

/// Reads from the file system, relative paths resolved against `root` when set.
#[derive(Debug, Clone, Default)]
pub struct FsLoader {
    root: Option<PathBuf>,
}

impl FsLoader {
    /// Paths are used as given (relative to the process's working directory).
    pub fn new() -> Self {
        Self { root: None }
    }

    /// Relative paths are resolved against `root`.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self {
            root: Some(root.into()),
        }
    }

    fn full(&self, p: &str) -> PathBuf {
        match &self.root {
            Some(r) if !Path::new(p).is_absolute() => r.join(p),
            _ => PathBuf::from(p),
        }
    }
}

/// Shell-style match of `*` and `?` against one path component.
fn wildcard(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&pat[1..], s) || (!s.is_empty() && wildcard(pat, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&pat[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&pat[1..], &s[1..]),
        _ => false,
    }
}

impl Loader for FsLoader {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read(self.full(path))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| e.to_string())
    }

    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        if !pattern.contains(['*', '?', '[']) {
            return Ok(vec![pattern.to_string()]);
        }
        let (dir, file_pat) = match pattern.rfind('/') {
            Some(p) => (&pattern[..p], &pattern[p + 1..]),
            None => ("", pattern),
        };
        if dir.contains(['*', '?']) {
            return Err(format!(
                "wildcards are only supported in the last path component: {pattern}"
            ));
        }
        let rd = std::fs::read_dir(self.full(if dir.is_empty() { "." } else { dir }))
            .map_err(|e| e.to_string())?;
        let mut out: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| wildcard(file_pat.as_bytes(), n.as_bytes()))
            .map(|n| {
                if dir.is_empty() {
                    n
                } else {
                    format!("{dir}/{n}")
                }
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Files held in memory (tests, embedded policies).
#[derive(Debug, Clone, Default)]
pub struct MemoryLoader {
    files: HashMap<String, String>,
}

impl MemoryLoader {
    /// Empty loader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file.
    pub fn with(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.to_string(), text.to_string());
        self
    }
}

impl Loader for MemoryLoader {
    fn read(&self, path: &str) -> Result<String, String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| "no such file".to_string())
    }

    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        let mut v: Vec<String> = self
            .files
            .keys()
            .filter(|k| wildcard(pattern.as_bytes(), k.as_bytes()))
            .cloned()
            .collect();
        v.sort();
        Ok(v)
    }
}

/// `SecRuleEngine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    /// Evaluate and interrupt.
    On,
    /// Evaluate and record, never interrupt.
    DetectionOnly,
    /// Do nothing.
    Off,
}

impl EngineMode {
    /// From `On`, `DetectionOnly`, `Off`.
    pub fn parse(s: &str) -> Option<EngineMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "on" => Some(EngineMode::On),
            "detectiononly" => Some(EngineMode::DetectionOnly),
            "off" => Some(EngineMode::Off),
            _ => None,
        }
    }
}

/// Engine settings from Sec* directives.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub mode: EngineMode,
    pub request_body_access: bool,
    pub request_body_limit: u64,
    pub request_body_no_files_limit: u64,
    pub request_body_limit_reject: bool,
    pub response_body_access: bool,
    pub response_body_limit: u64,
    pub response_body_limit_reject: bool,
    pub response_mime_types: Vec<String>,
    pub json_depth_limit: usize,
    pub arguments_limit: usize,
    pub backtrack_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: EngineMode::On,
            request_body_access: false,
            request_body_limit: 13_107_200,
            request_body_no_files_limit: 1_048_576,
            request_body_limit_reject: true,
            response_body_access: false,
            response_body_limit: 524_288,
            response_body_limit_reject: false,
            response_mime_types: vec!["text/plain".into(), "text/html".into()],
            json_depth_limit: 512,
            arguments_limit: 1000,
            backtrack_limit: 1_000_000,
        }
    }
}

/// Which regex engine a rule's `@rx` got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegexEngine {
    /// Linear-time `regex` crate, pattern equivalent to the PCRE one.
    Regex,
    /// Linear-time `regex` crate after rewriting atomic groups / possessive quantifiers
    /// into plain ones (may match where PCRE would not; never misses a PCRE match).
    Rewritten,
    /// Backtracking `fancy-regex` (lookaround/backreferences).
    FancyRegex,
}

impl From<Engine> for RegexEngine {
    fn from(e: Engine) -> Self {
        match e {
            Engine::Regex => RegexEngine::Regex,
            Engine::Rewritten => RegexEngine::Rewritten,
            Engine::FancyRegex => RegexEngine::FancyRegex,
        }
    }
}

/// Something in the rules the engine accepted but does not implement.
#[derive(Debug, Clone)]
pub struct Unsupported {
    /// `file:line:col`.
    pub location: String,
    /// Directive, operator, action or transformation.
    pub what: String,
}

/// What loading did: files, rule counts, unsupported items, regex engines.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Files read, in order.
    pub files: Vec<String>,
    /// Rules (SecRule/SecAction heads) loaded, markers excluded.
    pub rules: usize,
    /// Rules removed by SecRuleRemoveBy*.
    pub removed: usize,
    /// Items parsed but not implemented (no effect at runtime).
    pub unsupported: Vec<Unsupported>,
    /// Directives accepted that only matter to other components (audit log, tmp dirs…).
    pub ignored_directives: Vec<Unsupported>,
    /// `(rule id, engine)` for each `@rx`/`@rxGlobal` of the loaded rules, in load order;
    /// the same list as [`RuleSet::regex_engines`].
    pub regex_engines: Vec<(u32, RegexEngine)>,
}

/// `(rule id, engine)` for every `@rx`/`@rxGlobal` condition of `rules`, in order. A chain's
/// conditions are listed under the chain's id, so an id appears once per `@rx` it holds.
pub(crate) fn regex_engines_of(rules: &[Rule]) -> Vec<(u32, RegexEngine)> {
    rules
        .iter()
        .filter(|r| r.marker.is_none())
        .flat_map(|r| {
            r.links.iter().filter_map(move |l| match &l.op {
                Some(Operator::Rx(re)) => Some((r.id, RegexEngine::from(re.engine()))),
                _ => None,
            })
        })
        .collect()
}

impl RegexEngine {
    /// Short name for reports: `regex`, `rewrite`, `fancy-regex`.
    pub fn name(self) -> &'static str {
        match self {
            RegexEngine::Regex => "regex",
            RegexEngine::Rewritten => "rewrite",
            RegexEngine::FancyRegex => "fancy-regex",
        }
    }
}

impl std::fmt::Display for RegexEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl LoadReport {
    /// `(engine, number of @rx)` for each engine, `regex` first.
    pub fn regex_engine_counts(&self) -> [(RegexEngine, usize); 3] {
        [
            RegexEngine::Regex,
            RegexEngine::Rewritten,
            RegexEngine::FancyRegex,
        ]
        .map(|e| (e, self.regex_count(e)))
    }

    /// Number of `@rx` on the backtracking fallback.
    pub fn fancy_regex_count(&self) -> usize {
        self.regex_count(RegexEngine::FancyRegex)
    }

    /// Number of `@rx` compiled with `engine`.
    pub fn regex_count(&self, engine: RegexEngine) -> usize {
        self.regex_engines
            .iter()
            .filter(|(_, e)| *e == engine)
            .count()
    }

    /// A human-readable report for startup logs: totals, every unsupported item with its
    /// location, every ignored directive, and the rules whose regex is not a plain
    /// `regex`-crate pattern (with the engine they got).
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} rules from {} files ({} removed); @rx engines: {} regex, {} rewrite, {} fancy-regex",
            self.rules,
            self.files.len(),
            self.removed,
            self.regex_count(RegexEngine::Regex),
            self.regex_count(RegexEngine::Rewritten),
            self.regex_count(RegexEngine::FancyRegex),
        );
        for u in &self.unsupported {
            let _ = writeln!(s, "unsupported: {} {}", u.location, u.what);
        }
        for u in &self.ignored_directives {
            let _ = writeln!(s, "ignored directive: {} {}", u.location, u.what);
        }
        for (id, e) in &self.regex_engines {
            if *e != RegexEngine::Regex {
                let _ = writeln!(s, "regex engine: rule {id} {}", e.name());
            }
        }
        s
    }
}

/// One entry of a phase's rule list: what the phase loop reads before it touches the
/// rule itself (markers are passed over without loading their `Rule`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    /// Index into `Inner::rules`.
    pub rule: usize,
    /// For a rule with `skipAfter`: the position in this list of the first later marker
    /// of that name (the list's length when there is none). CRS at PL1 skips its PL2-4
    /// rules this way; the phase loop jumps over them.
    pub jump: usize,
    pub marker: bool,
}

pub(crate) struct Inner {
    pub rules: Vec<Rule>,
    /// The rules of each phase in order (index 1–5); markers appear in every phase.
    pub phases: [Vec<Step>; 6],
    pub config: Config,
    /// Disruptive action `block` resolves to, per phase.
    pub default_disruptive: [Disruptive; 6],
    pub default_status: [Option<u16>; 6],
    /// Tags and file recorded for matches nobody reads (`nolog`, not interrupting): one
    /// shared empty value each, so recording CRS's ~90 bookkeeping matches a request
    /// does not touch (and count up and down) every matching rule's own allocations.
    pub no_tags: Arc<[String]>,
    pub no_file: Arc<str>,
}

/// A compiled rule set: immutable, `Send + Sync`, cheap to clone (shared by `Arc`).
#[derive(Clone)]
pub struct RuleSet {
    pub(crate) inner: Arc<Inner>,
    /// Engine mode for new transactions (SecRuleEngine unless overridden).
    mode: EngineMode,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.inner.rules.len())
            .finish()
    }
}

/// The embedded default policy (see `builtin.conf`).
const BUILTIN: &str = include_str!("builtin.conf");

impl RuleSet {
    /// Loads the given files or globs, in order, through `loader`.
    ///
    /// Logs (`tracing`, target `rampart_waf`) one `info` line with the rule count and how
    /// many `@rx` each regex engine got, and one `debug` line per `@rx` that did not get the
    /// plain `regex` engine. The whole per-rule list is [`RuleSet::regex_engines`] (also
    /// [`LoadReport::regex_engines`]).
    pub fn load(loader: &dyn Loader, paths: &[&str]) -> Result<(RuleSet, LoadReport), WafError> {
        let mut p = Parser::new(loader);
        for path in paths {
            p.include(path, None, 0)?;
        }
        let (rs, report) = p.finish()?;
        let [(_, regex), (_, rewrite), (_, fancy)] = report.regex_engine_counts();
        tracing::info!(
            rules = report.rules,
            files = report.files.len(),
            removed = report.removed,
            rx_regex = regex,
            rx_rewrite = rewrite,
            rx_fancy_regex = fancy,
            "WAF rules loaded; @rx engines: {regex} regex, {rewrite} rewrite, {fancy} fancy-regex"
        );
        for (id, e) in &report.regex_engines {
            if *e != RegexEngine::Regex {
                tracing::debug!(rule = id, engine = e.name(), "WAF @rx engine");
            }
        }
        Ok((rs, report))
    }

    /// Parses rules from a string (named `name` in errors).
    pub fn from_text(name: &str, text: &str) -> Result<(RuleSet, LoadReport), WafError> {
        let loader = MemoryLoader::new().with(name, text);
        Self::load(&loader, &[name])
    }

    /// Rampart's small built-in policy: SQLi/XSS via libinjection, path traversal,
    /// command/PHP/Java injection, LFI/RFI and scanner user agents. Blocking (`On`).
    pub fn builtin() -> Result<RuleSet, WafError> {
        Self::from_text("builtin.conf", BUILTIN).map(|(rs, _)| rs)
    }

    /// Starts a transaction.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.inner.clone(), self.mode)
    }

    /// Engine mode set by SecRuleEngine.
    pub fn engine_mode(&self) -> EngineMode {
        self.mode
    }

    /// The same rules with another engine mode (e.g. CRS in `On` mode although its
    /// config says DetectionOnly). Cheap: the compiled rules are shared.
    pub fn with_engine_mode(&self, mode: EngineMode) -> RuleSet {
        RuleSet {
            inner: self.inner.clone(),
            mode,
        }
    }

    pub(crate) fn from_inner(inner: Inner) -> RuleSet {
        let mode = inner.config.mode;
        RuleSet {
            inner: Arc::new(inner),
            mode,
        }
    }

    /// Which regex engine each `@rx`/`@rxGlobal` got: `(rule id, engine)` in load order,
    /// a chain's conditions under the chain's id (an id appears once per `@rx` it holds).
    /// Rules removed by `SecRuleRemoveBy*` are not listed. For a load-time report:
    ///
    /// ```
    /// let (rules, _) = rampart_waf::RuleSet::from_text(
    ///     "r.conf",
    ///     r#"SecRule ARGS "@rx ^a+$" "id:1,phase:1,pass"
    ///        SecRule ARGS "@rx (a)\1" "id:2,phase:1,pass""#,
    /// ).expect("rules load");
    /// for (id, engine) in rules.regex_engines() {
    ///     println!("rule {id}: {engine}");
    /// }
    /// assert_eq!(rules.regex_engines().len(), 2);
    /// ```
    pub fn regex_engines(&self) -> Vec<(u32, RegexEngine)> {
        regex_engines_of(&self.inner.rules)
    }

    /// Number of rules (markers excluded).
    pub fn rule_count(&self) -> usize {
        self.inner
            .rules
            .iter()
            .filter(|r| r.marker.is_none())
            .count()
    }

    /// Phases rules exist in, for connectors that want to skip body buffering.
    pub fn has_rules_in(&self, phase: Phase) -> bool {
        self.inner.phases[phase.number() as usize]
            .iter()
            .any(|s| !s.marker)
    }
}
