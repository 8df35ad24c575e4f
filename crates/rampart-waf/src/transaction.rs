//! One HTTP exchange being inspected. The connector calls the phase methods in order;
//! each may return an [`Interruption`] (only in engine mode `On`).

use crate::action::ctl::{BodyProcessor, Ctl, IdRanges};
use crate::action::setvar::{SetOp, SetVar};
use crate::audit::{MatchedRule, Severity};
use crate::body;
use crate::byteset::ByteSet;
use crate::collection::Collection;
use crate::macros::{MacroKey, MacroStr, Part};
use crate::operator::numeric::atoi;
use crate::operator::Operator;
use crate::rule::{AllowScope, Disruptive, Effect, Link, LinkHot, OpKind, Phase, Rule};
use crate::ruleset::{EngineMode, Inner};
use crate::variable::{Exclusion, Selector, Target, VarKind};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the connector must do when a rule interrupts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterruptionAction {
    /// Answer with `status` and stop.
    Deny,
    /// Close the connection without answering.
    Drop,
    /// Answer with a redirect to this URL (`status` is 302 unless the rule set one).
    Redirect(String),
}

/// A verdict that stops the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    /// HTTP status to answer with.
    pub status: u16,
    /// Rule that interrupted (0 for engine limits such as the body size).
    pub rule_id: u32,
    /// What to do.
    pub action: InterruptionAction,
}

/// Which rules a runtime target exclusion (`ctl:ruleRemoveTarget…`) applies to.
#[derive(Debug, Clone)]
enum RuleSel {
    Ids(IdRanges),
    Tag(String),
}

/// The key a value was found under, borrowed while visiting.
#[derive(Clone, Copy)]
enum ValKey<'a> {
    /// A scalar variable.
    None,
    /// A fixed pseudo-key (`XML:/*`, `XML://@*`).
    Static(&'static str),
    /// A collection entry's key.
    Entry(&'a Arc<str>),
}

/// A value a link matched, recorded while the link's values are borrowed; the
/// bookkeeping and effects run after the walk, in the same order.
struct Hit {
    kind: VarKind,
    key: Option<Arc<str>>,
    /// `&VAR` count.
    count: bool,
    /// Index of the target in the link's list: its `Target::name`, when set, is the
    /// MATCHED_VARS entry (borrowed from the rule, not cloned per hit).
    target: usize,
    /// The transformed value that matched, and a superset of its bytes (the set the
    /// walk already had: MATCHED_VARS does not compute it again).
    value: Arc<[u8]>,
    set: ByteSet,
    captures: Vec<Vec<u8>>,
}

/// `ARGS:id`, `&ARGS`, `REQUEST_URI` (built by hand: `format!` showed in profiles).
pub(crate) fn var_name(kind: VarKind, key: Option<&str>, count: bool) -> String {
    let kind = kind.name();
    let mut s = String::with_capacity(2 + kind.len() + key.map_or(0, str::len));
    if count {
        s.push('&');
    }
    s.push_str(kind);
    if let Some(k) = key {
        s.push(':');
        s.push_str(k);
    }
    s
}

/// Keys of `TX.0`–`TX.9` for `capture`.
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

static TX_COUNTER: AtomicU64 = AtomicU64::new(1);

/// Upper bound on transformed bytes kept in one transaction's cache.
const CACHE_BYTES_MAX: usize = 16 << 20;

/// Per-transaction state. Not shared between threads; create one per request.
pub struct Transaction {
    rs: Arc<Inner>,
    mode: EngineMode,
    args_get: Collection,
    args_post: Collection,
    req_headers: Collection,
    cookies: Collection,
    resp_headers: Collection,
    tx: Collection,
    env: Collection,
    others: HashMap<VarKind, Collection>,
    files: Collection,
    files_sizes: Collection,
    multipart_headers: Collection,
    xml_text: Option<Arc<[u8]>>,
    xml_attrs: Vec<Arc<[u8]>>,
    matched_vars: Collection,
    /// Scalar variables indexed by `VarKind as usize` (a hash lookup per rule showed up
    /// in profiles).
    scalars: Vec<Option<Arc<[u8]>>>,
    /// `ByteSet::of` each scalar.
    scalar_sets: Vec<ByteSet>,
    matched_var: Arc<[u8]>,
    matched_var_name: Arc<str>,
    /// MATCHED_VARS entries already built, by variable, key (the same shared key, held
    /// here so its address stays unique) and `&`: the same names match again and again
    /// (CRS's paranoia-level checks, score rules).
    names: Vec<(VarKind, Option<Arc<str>>, bool, crate::collection::Entry)>,
    req_body: Vec<u8>,
    req_body_exceeded: bool,
    resp_body: Vec<u8>,
    resp_content_type: String,
    body_processor: Option<BodyProcessor>,
    force_body_var: bool,
    req_body_access: bool,
    resp_body_access: bool,
    req_body_limit: u64,
    removed_ids: Vec<(u32, u32)>,
    removed_tags: Vec<String>,
    removed_msgs: Vec<String>,
    target_removals: Vec<(RuleSel, Exclusion)>,
    matched: Vec<MatchedRule>,
    interruption: Option<Interruption>,
    phase_done: u8,
    allow_until: u8,
    /// The transformation cache and the bytes it holds. In a `RefCell` so `find_hits`
    /// fills it while walking values borrowed from `self` (taking the map out and
    /// putting it back per rule showed in profiles).
    cache: RefCell<(CacheMap, usize)>,
    scratch_hits: Vec<Hit>,
}

/// Identity hasher for the cache's keys (a chain id and an address: already spread).
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(32) ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Transformed values by (chain or chain-prefix id, address of the original value's
/// bytes). The entry holds the original `Arc` too, so the address cannot be reused by
/// another value while the entry exists: the key names one value for the transaction's
/// life, without hashing its bytes (and without the collisions a content hash allows).
type CacheMap = HashMap<(u32, usize), Cached, std::hash::BuildHasherDefault<KeyHasher>>;

/// A cache entry: the original value (kept alive), the result and its bytes.
struct Cached {
    _src: Arc<[u8]>,
    val: Arc<[u8]>,
    set: ByteSet,
}

fn cache_key(id: u32, v: &Arc<[u8]>) -> (u32, usize) {
    (id, v.as_ptr() as usize)
}

/// Applies `link`'s transformations to `v`, starting from the longest prefix of the
/// chain already in `cache`, and caches the result.
fn transform_into(
    cache: &mut CacheMap,
    cache_bytes: &mut usize,
    link: &Link,
    v: &Arc<[u8]>,
    vset: &ByteSet,
) -> (Arc<[u8]>, ByteSet) {
    let n = link.transforms.len();
    // Start from the longest prefix of the chain already computed for this value:
    // CRS chains share prefixes (`t:utf8toUnicode,t:urlDecodeUni,…`).
    let mut start = 0;
    let mut base = v.clone();
    for k in (1..n).rev() {
        if let Some(c) = cache.get(&cache_key(link.tprefix[k - 1].0, v)) {
            base = c.val.clone();
            start = k;
            break;
        }
    }
    let mut cur: Cow<'_, [u8]> = Cow::Borrowed(&base);
    // The bytes of `cur` while it is known (the original's), to skip transformations
    // that cannot change it.
    let mut cur_set = Arc::ptr_eq(&base, v).then_some(*vset);
    for k in start..n {
        let skip = match (link.stage_triggers.get(k), cur_set) {
            (Some(Some(trig)), Some(have)) => !trig.intersects(&have),
            _ => false,
        };
        if !skip {
            if let Cow::Owned(next) = link.transforms[k].apply_cow(&cur) {
                cur = Cow::Owned(next);
                cur_set = None;
            }
        }
        let (pid, shared) = link.tprefix[k];
        if shared && k + 1 < n {
            let val: Arc<[u8]> = match &cur {
                Cow::Borrowed(_) => base.clone(),
                Cow::Owned(o) => Arc::from(o.as_slice()),
            };
            let set = ByteSet::of(&val);
            cache_put(cache, cache_bytes, cache_key(pid, v), v, val, set);
        }
    }
    // Unchanged values keep sharing the original allocation.
    let (r, set): (Arc<[u8]>, ByteSet) = match cur {
        Cow::Owned(o) if o != **v => {
            let set = ByteSet::of(&o);
            (Arc::from(o), set)
        }
        Cow::Owned(_) => (v.clone(), *vset),
        Cow::Borrowed(_) if Arc::ptr_eq(&base, v) => (v.clone(), *vset),
        Cow::Borrowed(_) => (base.clone(), ByteSet::of(&base)),
    };
    cache_put(
        cache,
        cache_bytes,
        cache_key(link.hot.tchain, v),
        v,
        r.clone(),
        set,
    );
    (r, set)
}

/// Caches a transformed value, bounding the memory a hostile request can pin (the
/// original counts too: the entry keeps it alive).
fn cache_put(
    cache: &mut CacheMap,
    cache_bytes: &mut usize,
    key: (u32, usize),
    src: &Arc<[u8]>,
    val: Arc<[u8]>,
    set: ByteSet,
) {
    let cost = val.len() + src.len() + 96;
    if *cache_bytes + cost <= CACHE_BYTES_MAX {
        *cache_bytes += cost;
        cache.insert(
            key,
            Cached {
                _src: src.clone(),
                val,
                set,
            },
        );
    }
}

/// True when a runtime target exclusion's rule selection covers `rule`.
fn rule_selected(rule: &Rule, sel: &RuleSel) -> bool {
    match sel {
        RuleSel::Ids(r) => r.iter().any(|&(a, b)| rule.id >= a && rule.id <= b),
        RuleSel::Tag(t) => rule.tags.iter().any(|x| x == t),
    }
}

fn arc(b: &[u8]) -> Arc<[u8]> {
    crate::collection::value_arc(b)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An expanded `setvar` key as lowercased text: `lossy(&k).to_ascii_lowercase()`, but
/// lowercased in place (ASCII only, so validity does not change) and without a copy
/// when it is UTF-8.
fn lower_key(mut k: Vec<u8>) -> String {
    k.make_ascii_lowercase();
    String::from_utf8(k).unwrap_or_else(|e| lossy(e.as_bytes()))
}

impl Transaction {
    pub(crate) fn new(rs: Arc<Inner>, mode: EngineMode) -> Transaction {
        let c = &rs.config;
        let n = TX_COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut uid = [0u8; 24];
        hex_into(&mut uid[..16], t ^ n.rotate_left(32));
        hex_into(&mut uid[16..], u64::from(n as u32));
        let mut scalars: Vec<Option<Arc<[u8]>>> = vec![None; VarKind::COUNT];
        // ModSecurity reports an empty REQBODY_PROCESSOR until one is chosen.
        scalars[VarKind::ReqbodyProcessor as usize] = Some(arc(b""));
        scalars[VarKind::UniqueId as usize] = Some(arc(&uid));
        let secs = t / 1_000_000_000;
        let mut digits = itoa::Buffer::new();
        scalars[VarKind::TimeEpoch as usize] = Some(arc(digits.format(secs).as_bytes()));
        let scalar_sets = scalars
            .iter()
            .map(|v| v.as_deref().map(ByteSet::of).unwrap_or_default())
            .collect();
        Transaction {
            scalar_sets,
            mode,
            req_body_access: c.request_body_access,
            resp_body_access: c.response_body_access,
            req_body_limit: c.request_body_limit,
            rs,
            args_get: Collection::new(),
            args_post: Collection::new(),
            req_headers: Collection::new(),
            cookies: Collection::new(),
            resp_headers: Collection::new(),
            // CRS v4 at PL1 keeps ~150 TX variables.
            tx: Collection::with_capacity(192),
            env: Collection::new(),
            others: HashMap::new(),
            files: Collection::new(),
            files_sizes: Collection::new(),
            multipart_headers: Collection::new(),
            xml_text: None,
            xml_attrs: Vec::new(),
            matched_vars: Collection::new(),
            scalars,
            matched_var: arc(b""),
            matched_var_name: Arc::from(""),
            names: Vec::new(),
            req_body: Vec::new(),
            req_body_exceeded: false,
            resp_body: Vec::new(),
            resp_content_type: String::new(),
            body_processor: None,
            force_body_var: false,
            removed_ids: Vec::new(),
            removed_tags: Vec::new(),
            removed_msgs: Vec::new(),
            target_removals: Vec::new(),
            // CRS at PL1 records ~90 matches a request (most `nolog` bookkeeping).
            matched: Vec::with_capacity(96),
            interruption: None,
            phase_done: 0,
            allow_until: 0,
            // Sized for CRS at PL1 on a typical request (a few hundred transformed
            // values): growing it step by step showed up as rehashing in profiles.
            cache: RefCell::new((
                CacheMap::with_capacity_and_hasher(256, Default::default()),
                0,
            )),
            scratch_hits: Vec::new(),
        }
    }

    fn set_scalar(&mut self, k: VarKind, v: &[u8]) {
        self.scalars[k as usize] = Some(arc(v));
        self.scalar_sets[k as usize] = ByteSet::of(v);
    }

    /// Connection endpoints (REMOTE_ADDR, REMOTE_PORT, SERVER_ADDR, SERVER_PORT).
    pub fn process_connection(
        &mut self,
        client_ip: &str,
        client_port: u16,
        server_ip: &str,
        server_port: u16,
    ) {
        self.set_scalar(VarKind::RemoteAddr, client_ip.as_bytes());
        self.set_scalar(VarKind::RemoteHost, client_ip.as_bytes());
        let mut digits = itoa::Buffer::new();
        self.set_scalar(VarKind::RemotePort, digits.format(client_port).as_bytes());
        self.set_scalar(VarKind::ServerAddr, server_ip.as_bytes());
        self.set_scalar(VarKind::ServerPort, digits.format(server_port).as_bytes());
    }

    /// Request line. `uri` is the request target exactly as received.
    pub fn process_uri(&mut self, uri: &str, method: &str, protocol: &str) {
        let line = [method, uri, protocol].join(" ");
        self.set_scalar(VarKind::RequestLine, line.as_bytes());
        self.set_scalar(VarKind::RequestMethod, method.as_bytes());
        self.set_scalar(VarKind::RequestProtocol, protocol.as_bytes());
        self.set_scalar(VarKind::RequestUriRaw, uri.as_bytes());
        // Strip scheme://authority from absolute-form targets.
        let mut rel = uri;
        if let Some(p) = uri.find("://") {
            if uri[..p].bytes().all(|c| c.is_ascii_alphabetic()) {
                let after = &uri[p + 3..];
                rel = match after.find('/') {
                    Some(s) => &after[s..],
                    None => "/",
                };
            }
        }
        self.set_scalar(VarKind::RequestUri, rel.as_bytes());
        let (path, query) = match rel.find('?') {
            Some(q) => (&rel[..q], Some(&rel[q + 1..])),
            None => (rel, None),
        };
        // Like the web server's decoded path: %XX decoded, `+` kept.
        let path = percent_decode(path.as_bytes());
        let base = path
            .rsplit(|&c| c == b'/' || c == b'\\')
            .next()
            .unwrap_or(&path)
            .to_vec();
        self.set_scalar(VarKind::RequestFilename, &path);
        self.set_scalar(VarKind::RequestBasename, &base);
        if let Some(q) = query {
            self.set_scalar(VarKind::QueryString, q.as_bytes());
            let limit = self.rs.config.arguments_limit;
            for (n, v) in body::urlencoded::parse(q.as_bytes(), b'&') {
                if self.args_get.len() >= limit {
                    break;
                }
                self.args_get.add(&lossy(&n), &v);
            }
        } else {
            self.set_scalar(VarKind::QueryString, b"");
        }
    }

    /// Adds a request header (call once per header line, in order).
    pub fn add_request_header(&mut self, name: &str, value: &str) {
        self.add_request_header_bytes(name.as_bytes(), value.as_bytes());
    }

    /// Like [`Self::add_request_header`] for raw header bytes (obs-text values are
    /// inspected byte for byte, as ModSecurity does).
    pub fn add_request_header_bytes(&mut self, name: &[u8], value: &[u8]) {
        let name = String::from_utf8_lossy(name);
        self.req_headers.add(&name, value);
        if name.eq_ignore_ascii_case("cookie") {
            for part in value.split(|&c| c == b';') {
                let part = part.trim_ascii_start();
                if part.is_empty() {
                    continue;
                }
                let (n, v) = match part.iter().position(|&c| c == b'=') {
                    Some(p) => (&part[..p], &part[p + 1..]),
                    None => (part, &b""[..]),
                };
                self.cookies
                    .add(&String::from_utf8_lossy(n.trim_ascii_end()), v);
            }
        }
    }

    fn content_type(&self) -> Vec<u8> {
        self.req_headers
            .get("content-type")
            .map(|v| v.to_vec())
            .unwrap_or_default()
    }

    /// Runs phase 1.
    pub fn process_request_headers(&mut self) -> Option<Interruption> {
        let ct = self.content_type().to_ascii_lowercase();
        if ct.starts_with(b"application/x-www-form-urlencoded") {
            self.set_body_processor(BodyProcessor::UrlEncoded);
        } else if ct.starts_with(b"multipart/form-data") {
            self.set_body_processor(BodyProcessor::Multipart);
        }
        self.run_until(Phase::RequestHeaders)
    }

    fn set_body_processor(&mut self, bp: BodyProcessor) {
        self.body_processor = Some(bp);
        self.set_scalar(VarKind::ReqbodyProcessor, bp.name().as_bytes());
    }

    /// Buffers request body bytes (up to SecRequestBodyLimit).
    pub fn append_request_body(&mut self, data: &[u8]) {
        let limit = self.req_body_limit as usize;
        let room = limit.saturating_sub(self.req_body.len());
        if data.len() > room {
            self.req_body_exceeded = true;
            self.req_body.extend_from_slice(&data[..room]);
        } else {
            self.req_body.extend_from_slice(data);
        }
    }

    /// Parses the body with the selected processor and runs phase 2.
    pub fn process_request_body(&mut self) -> Option<Interruption> {
        if self.phase_done < Phase::RequestHeaders.number() {
            if let Some(i) = self.process_request_headers() {
                return Some(i);
            }
        }
        if self.interruption.is_some() {
            return self.interruption.clone();
        }
        // SecRequestBodyNoFilesLimit: bodies without file uploads get the lower limit.
        let no_files_exceeded = self.body_processor != Some(BodyProcessor::Multipart)
            && self.req_body.len() as u64 > self.rs.config.request_body_no_files_limit;
        if self.req_body_exceeded || no_files_exceeded {
            self.set_scalar(VarKind::InboundDataError, b"1");
            if self.rs.config.request_body_limit_reject && self.mode == EngineMode::On {
                self.interruption = Some(Interruption {
                    status: 413,
                    rule_id: 0,
                    action: InterruptionAction::Deny,
                });
                return self.interruption.clone();
            }
        } else {
            self.set_scalar(VarKind::InboundDataError, b"0");
        }
        self.set_scalar(VarKind::ReqbodyError, b"0");
        self.set_scalar(VarKind::ReqbodyProcessorError, b"0");
        if self.req_body_access {
            self.parse_request_body();
        }
        let mut digits = itoa::Buffer::new();
        self.set_scalar(
            VarKind::RequestBodyLength,
            digits.format(self.req_body.len() as u64).as_bytes(),
        );
        let combined: usize = self
            .args_get
            .entries()
            .iter()
            .chain(self.args_post.entries())
            .map(|e| e.key.len() + e.value.len())
            .sum();
        self.set_scalar(
            VarKind::ArgsCombinedSize,
            digits.format(combined as u64).as_bytes(),
        );
        self.run_until(Phase::RequestBody)
    }

    fn body_error(&mut self, msg: &str) {
        self.set_scalar(VarKind::ReqbodyError, b"1");
        self.set_scalar(VarKind::ReqbodyErrorMsg, msg.as_bytes());
        self.set_scalar(VarKind::ReqbodyProcessorError, b"1");
        self.set_scalar(VarKind::ReqbodyProcessorErrorMsg, msg.as_bytes());
    }

    fn parse_request_body(&mut self) {
        let body = std::mem::take(&mut self.req_body);
        let limit = self.rs.config.arguments_limit;
        // Like ModSecurity, a request without body bytes is not run through the
        // JSON/XML/multipart parsers (an empty body is not a parse error).
        let processor = match self.body_processor {
            Some(BodyProcessor::UrlEncoded) => Some(BodyProcessor::UrlEncoded),
            _ if body.is_empty() => {
                if self.force_body_var {
                    self.set_scalar(VarKind::RequestBody, b"");
                }
                self.req_body = body;
                return;
            }
            p => p,
        };
        match processor {
            Some(BodyProcessor::UrlEncoded) => {
                self.set_scalar(VarKind::RequestBody, &body);
                for (n, v) in body::urlencoded::parse(&body, b'&') {
                    if self.args_get.len() + self.args_post.len() >= limit {
                        break;
                    }
                    self.args_post.add(&lossy(&n), &v);
                }
            }
            Some(BodyProcessor::Json) => {
                if self.force_body_var {
                    self.set_scalar(VarKind::RequestBody, &body);
                }
                if !body.is_empty() {
                    match body::json::parse(&body, self.rs.config.json_depth_limit) {
                        Ok(pairs) => {
                            for (n, v) in pairs {
                                if self.args_get.len() + self.args_post.len() >= limit {
                                    break;
                                }
                                self.args_post.add(&lossy(&n), &v);
                            }
                        }
                        Err(e) => self.body_error(&e.0),
                    }
                }
            }
            Some(BodyProcessor::Xml) => {
                if self.force_body_var {
                    self.set_scalar(VarKind::RequestBody, &body);
                }
                match body::xml::parse(&body) {
                    Ok(doc) => {
                        self.xml_text = Some(arc(&doc.text));
                        self.xml_attrs = doc.attrs.iter().map(|a| arc(a)).collect();
                    }
                    Err(e) => self.body_error(&e),
                }
            }
            Some(BodyProcessor::Multipart) => {
                if self.force_body_var {
                    self.set_scalar(VarKind::RequestBody, &body);
                }
                let ct = self.content_type();
                let mp = body::multipart::parse(&body, &ct);
                self.apply_multipart(&mp);
            }
            None => {
                if self.force_body_var {
                    self.set_scalar(VarKind::RequestBody, &body);
                }
            }
        }
        self.req_body = body;
    }

    fn apply_multipart(&mut self, mp: &body::multipart::Multipart) {
        let limit = self.rs.config.arguments_limit;
        for (n, v) in &mp.fields {
            if self.args_get.len() + self.args_post.len() >= limit {
                break;
            }
            self.args_post.add(&lossy(n), v);
        }
        let mut combined = 0usize;
        for f in &mp.files {
            let name = lossy(&f.name);
            self.files.add(&name, &f.filename);
            self.files_sizes.add(&name, f.size.to_string().as_bytes());
            combined += f.size;
        }
        self.set_scalar(VarKind::FilesCombinedSize, combined.to_string().as_bytes());
        for (n, h) in &mp.part_headers {
            self.multipart_headers.add(&lossy(n), h);
        }
        let fl = &mp.flags;
        let b = |x: bool| if x { &b"1"[..] } else { &b"0"[..] };
        let strict = mp.strict_error();
        let sets: [(VarKind, bool); 14] = [
            (VarKind::MultipartStrictError, strict),
            (VarKind::MultipartUnmatchedBoundary, fl.unmatched_boundary),
            (VarKind::MultipartBoundaryQuoted, fl.boundary_quoted),
            (VarKind::MultipartBoundaryWhitespace, fl.boundary_whitespace),
            (VarKind::MultipartDataBefore, fl.data_before),
            (VarKind::MultipartDataAfter, fl.data_after),
            (VarKind::MultipartHeaderFolding, fl.header_folding),
            (VarKind::MultipartLfLine, fl.lf_line),
            (VarKind::MultipartCrlfLfLines, fl.crlf_lf_lines),
            (VarKind::MultipartMissingSemicolon, fl.missing_semicolon),
            (VarKind::MultipartInvalidQuoting, fl.invalid_quoting),
            (VarKind::MultipartInvalidPart, fl.invalid_part),
            (
                VarKind::MultipartInvalidHeaderFolding,
                fl.invalid_header_folding,
            ),
            (VarKind::MultipartFileLimitExceeded, fl.file_limit_exceeded),
        ];
        for (k, v) in sets {
            self.set_scalar(k, b(v));
        }
        if let Some(e) = &mp.error {
            self.body_error(e);
        }
    }

    /// Adds a response header.
    pub fn add_response_header(&mut self, name: &str, value: &str) {
        self.add_response_header_bytes(name.as_bytes(), value.as_bytes());
    }

    /// Like [`Self::add_response_header`] for raw header bytes.
    pub fn add_response_header_bytes(&mut self, name: &[u8], value: &[u8]) {
        let name = String::from_utf8_lossy(name);
        if name.eq_ignore_ascii_case("content-type") {
            self.resp_content_type = String::from_utf8_lossy(value).to_ascii_lowercase();
            self.set_scalar(VarKind::ResponseContentType, value);
        }
        if name.eq_ignore_ascii_case("content-length") {
            self.set_scalar(VarKind::ResponseContentLength, value);
        }
        self.resp_headers.add(&name, value);
    }

    /// Runs phase 3.
    pub fn process_response_headers(
        &mut self,
        status: u16,
        protocol: &str,
    ) -> Option<Interruption> {
        let mut digits = itoa::Buffer::new();
        let status_text = digits.format(status);
        let line = [protocol, status_text].join(" ");
        self.set_scalar(VarKind::ResponseStatus, status_text.as_bytes());
        self.set_scalar(VarKind::ResponseProtocol, protocol.as_bytes());
        self.set_scalar(VarKind::StatusLine, line.as_bytes());
        self.run_until(Phase::ResponseHeaders)
    }

    /// True when the response body will be inspected (access on, MIME type listed).
    pub fn response_body_wanted(&self) -> bool {
        if !self.resp_body_access {
            return false;
        }
        let mime = self
            .resp_content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        self.rs.config.response_mime_types.contains(&mime)
    }

    /// Buffers response body bytes (up to SecResponseBodyLimit).
    pub fn append_response_body(&mut self, data: &[u8]) {
        if !self.response_body_wanted() {
            return;
        }
        let limit = self.rs.config.response_body_limit as usize;
        let room = limit.saturating_sub(self.resp_body.len());
        if data.len() > room {
            self.set_scalar(VarKind::OutboundDataError, b"1");
        }
        self.resp_body
            .extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Runs phase 4.
    pub fn process_response_body(&mut self) -> Option<Interruption> {
        let exceeded = self.scalars[VarKind::OutboundDataError as usize].as_deref() == Some(b"1");
        if exceeded
            && self.rs.config.response_body_limit_reject
            && self.mode == EngineMode::On
            && self.interruption.is_none()
        {
            // SecResponseBodyLimitAction Reject: ModSecurity answers 500.
            self.interruption = Some(Interruption {
                status: 500,
                rule_id: 0,
                action: InterruptionAction::Deny,
            });
            return self.interruption.clone();
        }
        if self.response_body_wanted() {
            let b = std::mem::take(&mut self.resp_body);
            self.set_scalar(VarKind::ResponseBody, &b);
            self.resp_body = b;
        }
        self.run_until(Phase::ResponseBody)
    }

    /// Runs phase 5 (always, even after an interruption).
    pub fn process_logging(&mut self) {
        if self.mode == EngineMode::Off || self.phase_done >= Phase::Logging.number() {
            return;
        }
        self.phase_done = Phase::Logging.number();
        self.eval_phase(Phase::Logging);
    }

    /// Rules that matched so far, in order.
    pub fn matched_rules(&self) -> &[MatchedRule] {
        &self.matched
    }

    /// The interruption, if any rule interrupted.
    pub fn interruption(&self) -> Option<&Interruption> {
        self.interruption.as_ref()
    }

    /// A TX variable (for tests and diagnostics, e.g. `blocking_inbound_anomaly_score`).
    pub fn tx_variable(&self, name: &str) -> Option<String> {
        self.tx.get(name).map(|v| lossy(v))
    }

    /// Engine mode in effect (ctl:ruleEngine can change it).
    pub fn engine_mode(&self) -> EngineMode {
        self.mode
    }

    fn run_until(&mut self, phase: Phase) -> Option<Interruption> {
        if self.mode == EngineMode::Off {
            return None;
        }
        let target = phase.number();
        while self.phase_done < target && self.interruption.is_none() {
            self.phase_done += 1;
            let p = match self.phase_done {
                1 => Phase::RequestHeaders,
                2 => Phase::RequestBody,
                3 => Phase::ResponseHeaders,
                _ => Phase::ResponseBody,
            };
            if self.allow_until >= p.number() {
                continue;
            }
            self.eval_phase(p);
        }
        self.interruption.clone()
    }

    fn is_removed(&self, rule: &Rule) -> bool {
        self.removed_ids
            .iter()
            .any(|&(a, b)| rule.id >= a && rule.id <= b)
            || (!self.removed_tags.is_empty()
                && rule.tags.iter().any(|t| self.removed_tags.contains(t)))
            || (!self.removed_msgs.is_empty()
                && rule
                    .msg
                    .as_ref()
                    .and_then(|m| m.as_static())
                    .is_some_and(|m| self.removed_msgs.iter().any(|r| r.as_bytes() == m)))
    }

    fn eval_phase(&mut self, phase: Phase) {
        let rs = self.rs.clone();
        let list = &rs.phases[phase.number() as usize];
        let mut skip = 0u32;
        let mut p = 0;
        while let Some(step) = list.get(p) {
            p += 1;
            if self.mode == EngineMode::Off {
                return;
            }
            if step.marker {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let rule = &rs.rules[step.rule];
            if self.is_removed(rule) {
                continue;
            }
            if self.eval_rule(rule) {
                self.on_match(rule, phase);
                if self.interruption.is_some() || self.allow_until >= phase.number() {
                    return;
                }
                if rule.skip_after.is_some() {
                    // To the marker (passed over next) or past the end: the rules
                    // between are skipped, markers of other names included.
                    p = step.jump;
                }
                skip = rule.skip;
            }
        }
    }

    fn eval_rule(&mut self, rule: &Rule) -> bool {
        self.matched_vars.clear();
        for link in &rule.links {
            if !self.eval_link(rule, link, &link.hot) {
                return false;
            }
        }
        true
    }

    fn on_match(&mut self, rule: &Rule, phase: Phase) {
        let rs = self.rs.clone();
        let disruptive = match &rule.disruptive {
            Disruptive::Block => match &rs.default_disruptive[phase.number() as usize] {
                Disruptive::Block => Disruptive::Pass,
                d => d.clone(),
            },
            d => d.clone(),
        };
        let status = rule.status.or(rs.default_status[phase.number() as usize]);
        let mut interrupted = false;
        if self.mode == EngineMode::On {
            let action = match &disruptive {
                Disruptive::Deny => Some(InterruptionAction::Deny),
                Disruptive::Drop => Some(InterruptionAction::Drop),
                Disruptive::Redirect(m) => {
                    Some(InterruptionAction::Redirect(lossy(&self.expand(m, rule))))
                }
                Disruptive::Allow(scope) => {
                    self.allow_until = match scope {
                        AllowScope::Phase => phase.number(),
                        AllowScope::Request => Phase::RequestBody.number().max(phase.number()),
                        AllowScope::All => Phase::ResponseBody.number(),
                    };
                    None
                }
                Disruptive::Pass | Disruptive::Block => None,
            };
            if let Some(action) = action {
                let default = if matches!(action, InterruptionAction::Redirect(_)) {
                    302
                } else {
                    403
                };
                self.interruption = Some(Interruption {
                    status: status.unwrap_or(default),
                    rule_id: rule.id,
                    action,
                });
                interrupted = true;
            }
        }
        // Texts only for matches someone reads: a `nolog` rule that did not interrupt
        // (CRS's paranoia-level skips and score bookkeeping) records id and variable.
        let detail = rule.log || interrupted;
        let msg = match &rule.msg {
            Some(m) if detail => lossy(&self.expand(m, rule)),
            _ => String::new(),
        };
        let mut logdata = match &rule.logdata {
            Some(m) if detail => lossy(&self.expand(m, rule)),
            _ => String::new(),
        };
        truncate(&mut logdata, 512);
        let mut data = if detail {
            lossy(&self.matched_var)
        } else {
            String::new()
        };
        truncate(&mut data, 200);
        self.matched.push(MatchedRule {
            id: rule.id,
            phase,
            msg,
            logdata,
            severity: rule.severity.and_then(Severity::from_u8),
            tags: if detail {
                rule.tags.clone()
            } else {
                rs.no_tags.clone()
            },
            matched_var_name: self.matched_var_name.clone(),
            matched_data: data,
            log: rule.log,
            disruptive: interrupted,
            file: if detail {
                rule.file.clone()
            } else {
                rs.no_file.clone()
            },
            line: rule.line,
        });
    }

    /// Evaluates `link` of `rule`; `hot` is its hot part. The rest of the link (operator,
    /// transformations, effects) is read only when a value gets past the byte-set
    /// checks, or on a hit.
    fn eval_link(&mut self, rule: &Rule, link: &Link, hot: &LinkHot) -> bool {
        let param = match hot.op {
            OpKind::None => {
                // SecAction: unconditional, effects once.
                self.run_effects(rule, &link.effects);
                return true;
            }
            OpKind::Param => match link.op.as_ref().and_then(Operator::macro_param) {
                Some(m) => self.expand_value(m, rule),
                None => Expanded::Static(&[]),
            },
            OpKind::Plain => Expanded::Static(&[]),
        };
        // One walk over the values, borrowing them: most links match nothing, and
        // those that do record their hits; the bookkeeping and effects of each hit
        // run afterwards, in order (values are chosen before any effect runs, as
        // ModSecurity collects them before it evaluates).
        let mut hits = std::mem::take(&mut self.scratch_hits);
        self.find_hits(rule, link, hot, &param, &mut hits);
        if hits.is_empty() {
            // Most links: nothing to drain (a `Drain` costs even when empty).
            self.scratch_hits = hits;
            return false;
        }
        for h in hits.drain(..) {
            if hot.capture() {
                for (i, c) in h.captures.iter().enumerate().take(10) {
                    self.tx.set(DIGITS[i], c);
                }
            }
            // The target's fixed name (borrowed from the rule), else one built for this hit.
            let built;
            let e = match hot
                .targets
                .targets
                .get(h.target)
                .and_then(|t| t.name.as_ref())
            {
                Some(e) => e,
                None => {
                    built = self.name_entry(h.kind, &h.key, h.count);
                    &built
                }
            };
            self.matched_var_name = e.key.clone();
            self.matched_vars.push_keyed_set(e, h.value.clone(), h.set);
            self.matched_var = h.value;
            self.run_effects(rule, &link.effects);
        }
        self.scratch_hits = hits;
        true
    }

    /// The MATCHED_VARS entry (name `ARGS:id`, lowercased, hashed) for a value of
    /// `kind` under `key`, built once per transaction.
    fn name_entry(
        &mut self,
        kind: VarKind,
        key: &Option<Arc<str>>,
        count: bool,
    ) -> crate::collection::Entry {
        let same = |a: &Option<Arc<str>>| match (a, key) {
            (None, None) => true,
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => false,
        };
        if let Some((.., e)) = self
            .names
            .iter()
            .find(|(k, a, c, _)| *k == kind && *c == count && same(a))
        {
            return e.clone();
        }
        let e = Collection::keyed(Arc::from(var_name(kind, key.as_deref(), count)));
        // Bounded: a request with thousands of matching arguments does not grow it.
        if self.names.len() < 256 {
            self.names.push((kind, key.clone(), count, e.clone()));
        }
        e
    }

    /// Evaluates `op` on every value of the link's targets (after the link's
    /// transformations, each stage for `multiMatch`) and records the matches in `hits`,
    /// in order. Only fills the transformation cache.
    fn find_hits(
        &mut self,
        rule: &Rule,
        link: &Link,
        hot: &LinkHot,
        param: &[u8],
        hits: &mut Vec<Hit>,
    ) {
        let mut guard = self.cache.borrow_mut();
        let (cache, cache_bytes) = &mut *guard;
        let negated = hot.negated();
        // `eval_with` answers "no match" for these without a search: skip the call.
        let rejects = |set: &ByteSet| !negated && !hot.needs.may_hold(set);
        let mut check = |ti: usize, t: &Target, k: ValKey<'_>, v: &Arc<[u8]>, vset: &ByteSet| {
            // The hit's key, built only on a hit whose name the target does not fix.
            let key = || match k {
                _ if t.name.is_some() => None,
                ValKey::None => None,
                ValKey::Static(k) => Some(Arc::from(k)),
                ValKey::Entry(k) => Some(k.clone()),
            };
            let mut test = |tv: &Arc<[u8]>, set: &ByteSet| {
                let r = link
                    .op
                    .as_ref()
                    .and_then(|op| op.eval_with(&hot.needs, tv, set, param, hot.capture()));
                if r.is_some() != negated {
                    hits.push(Hit {
                        kind: t.kind,
                        key: key(),
                        count: t.count,
                        target: ti,
                        value: tv.clone(),
                        set: *set,
                        captures: r.map(|m| m.captures).unwrap_or_default(),
                    });
                }
            };
            if hot.multi_match() {
                // The value and every stage that changed it.
                test(v, vset);
                let mut cur: Arc<[u8]> = v.clone();
                let mut cur_set = *vset;
                // Indexed, not zipped: a missing trigger set means "may change", never
                // a skipped transformation.
                for (k, t) in link.transforms.iter().enumerate() {
                    let trig = link.stage_triggers.get(k).copied().flatten();
                    if trig.is_some_and(|trig| !trig.intersects(&cur_set)) {
                        continue; // leaves the value as it is
                    }
                    if let Cow::Owned(next) = t.apply_cow(&cur) {
                        if next != *cur {
                            cur = Arc::from(next);
                            cur_set = ByteSet::of(&cur);
                            test(&cur, &cur_set);
                        }
                    }
                }
            } else if hot.unchanged(vset) {
                // No transformation of the chain changes this value (always so for an
                // empty chain). A value lacking the bytes the operator needs is no hit
                // (unless negated): answered here, without entering `test`.
                if !rejects(vset) {
                    test(v, vset);
                }
            } else {
                match cache.get(&cache_key(hot.tchain, v)) {
                    Some(c) => {
                        if !rejects(&c.set) {
                            test(&c.val, &c.set);
                        }
                    }
                    None => {
                        let (tv, set) = transform_into(cache, cache_bytes, link, v, vset);
                        test(&tv, &set);
                    }
                }
            }
        };
        for (ti, t) in hot.targets.targets.iter().enumerate() {
            if t.count {
                let mut n = 0usize;
                self.visit_values(rule, hot, t, &|_| false, &mut |_, _, _| {
                    n += 1;
                    false
                });
                // The name of a count hit is fixed by the target (`Target::name`).
                let v = i64::try_from(n)
                    .ok()
                    .and_then(crate::collection::small_int)
                    .unwrap_or_else(|| arc(n.to_string().as_bytes()));
                check(ti, t, ValKey::None, &v, &ByteSet::of(&v));
            } else {
                // No value of a collection is a hit when the chain leaves every value
                // unchanged (none has a trigger byte) and none has the bytes the
                // operator needs: judged once from the bytes of all its values.
                let none_can_hit =
                    |all: &ByteSet| !hot.multi_match() && hot.unchanged(all) && rejects(all);
                self.visit_values(rule, hot, t, &none_can_hit, &mut |k, v, vset| {
                    check(ti, t, k, v, vset);
                    false
                });
            }
        }
    }

    /// Calls `f` with each value a target selects (key and value, in order) until it returns
    /// true; the one walk both the fast no-match check and `collect` use.
    ///
    /// Generic over the visitor (called per selected value with its key, the value and
    /// its bytes; true stops the walk) so the visitor is inlined into the walk.
    ///
    /// `skip_all` sees a superset of the bytes of a collection's values (keys for
    /// `*_NAMES`); true skips the collection (nothing in it can matter to `f`).
    fn visit_values<P, F>(
        &self,
        rule: &Rule,
        hot: &LinkHot,
        t: &Target,
        skip_all: &P,
        f: &mut F,
    ) -> bool
    where
        P: Fn(&ByteSet) -> bool,
        F: FnMut(ValKey<'_>, &Arc<[u8]>, &ByteSet) -> bool,
    {
        if t.kind == VarKind::Xml {
            let attrs = matches!(&t.selector, Selector::Key(k, _) if k.contains('@'));
            if attrs {
                self.xml_attrs
                    .iter()
                    .any(|a| f(ValKey::Static("//@*"), a, &ByteSet::of(a)))
            } else {
                self.xml_text
                    .as_ref()
                    .is_some_and(|x| f(ValKey::Static("/*"), x, &ByteSet::of(x)))
            }
        } else if t.kind.is_collection() {
            let (cols, names) = self.sources(t.kind);
            let all = cols
                .into_iter()
                .flatten()
                .fold(ByteSet::EMPTY, |u, c| u.union(c.bytes_of_all(names)));
            if skip_all(&all) {
                return false;
            }
            // Only consult exclusions when one could apply to this collection.
            let may_exclude = self.target_removals.iter().any(|(_, e)| e.kind == t.kind)
                || hot.targets.exclusions.iter().any(|e| e.kind == t.kind);
            let mut visit = |e: &crate::collection::Entry| {
                if !t.selector.matches_entry(&e.lkey, e.khash)
                    || (may_exclude && self.excluded(rule, hot, t.kind, &e.lkey))
                {
                    return false;
                }
                if names {
                    f(ValKey::Entry(&e.key), &e.kbytes, &e.kset)
                } else {
                    f(ValKey::Entry(&e.key), &e.value, &e.vset)
                }
            };
            for c in cols.into_iter().flatten() {
                // One key (`TX:paranoia_level`): only entries with its hash.
                let hit = match &t.selector {
                    Selector::Key(_, h) => c.positions(*h).any(|i| visit(&c.entries()[i])),
                    _ => c.entries().iter().any(&mut visit),
                };
                if hit {
                    return true;
                }
            }
            false
        } else if !self.scalar_excluded(rule, hot, t.kind) {
            match t.kind {
                VarKind::MatchedVar => f(
                    ValKey::None,
                    &self.matched_var,
                    &ByteSet::of(&self.matched_var),
                ),
                VarKind::MatchedVarName => {
                    let v = arc(self.matched_var_name.as_bytes());
                    f(ValKey::None, &v, &ByteSet::of(&v))
                }
                VarKind::HighestSeverity => {
                    let h = self
                        .matched
                        .iter()
                        .filter_map(|m| m.severity)
                        .min()
                        .map_or(255, |s| s as u8);
                    let v = arc(h.to_string().as_bytes());
                    f(ValKey::None, &v, &ByteSet::of(&v))
                }
                k => match self.scalars.get(k as usize) {
                    Some(Some(v)) => f(ValKey::None, v, &self.scalar_sets[k as usize]),
                    _ => false,
                },
            }
        } else {
            false
        }
    }

    fn run_effects(&mut self, rule: &Rule, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::SetVar(sv) => self.setvar(rule, sv),
                Effect::Ctl(c) => self.ctl(c),
            }
        }
    }

    fn collection_mut(&mut self, kind: VarKind) -> &mut Collection {
        match kind {
            VarKind::Tx => &mut self.tx,
            VarKind::Env => &mut self.env,
            other => self.others.entry(other).or_default(),
        }
    }

    fn setvar(&mut self, rule: &Rule, sv: &SetVar) {
        // Keys are lowercased at load time; only macro keys need expanding here. A
        // literal key comes with its entry built at load (`proto`, lowercased, hashed).
        let key: Cow<'_, str> = match (&sv.proto, sv.key.as_static()) {
            (Some(p), _) => Cow::Borrowed(&*p.lkey),
            (None, Some(k)) => String::from_utf8_lossy(k),
            (None, None) => Cow::Owned(lower_key(self.expand(&sv.key, rule))),
        };
        let key = key.as_ref();
        let value = match &sv.op {
            SetOp::Delete => {
                self.collection_mut(sv.collection).remove(key);
                return;
            }
            SetOp::Set(v) | SetOp::Add(v) | SetOp::Sub(v) => self.expand_value(v, rule),
        };
        let mut digits = itoa::Buffer::new();
        let mut shared = match &value {
            Expanded::Shared(a) => Some(a.clone()),
            _ => sv.value.clone(),
        };
        let value: &[u8] = match &sv.op {
            SetOp::Add(_) | SetOp::Sub(_) => {
                let delta = atoi(&value);
                let col = self.collection_mut(sv.collection);
                let cur = match &sv.proto {
                    Some(p) => col.get_keyed(p),
                    None => col.get(key),
                }
                .map(|c| atoi(c))
                .unwrap_or(0);
                let n = if matches!(sv.op, SetOp::Add(_)) {
                    cur.saturating_add(delta)
                } else {
                    cur.saturating_sub(delta)
                };
                shared = crate::collection::small_int(n);
                digits.format(n).as_bytes()
            }
            _ => &value,
        };
        let col = self.collection_mut(sv.collection);
        match &sv.proto {
            Some(p) => col.set_keyed(p, value, shared.as_ref()),
            None => col.set(key, value),
        }
    }

    fn ctl(&mut self, c: &Ctl) {
        match c {
            Ctl::RuleRemoveById(r) => self.removed_ids.extend(r.iter().copied()),
            Ctl::RuleRemoveByTag(t) => self.removed_tags.push(t.clone()),
            Ctl::RuleRemoveByMsg(m) => self.removed_msgs.push(m.clone()),
            Ctl::RuleRemoveTargetById(r, ex) => {
                for e in ex {
                    self.target_removals
                        .push((RuleSel::Ids(r.clone()), e.clone()));
                }
            }
            Ctl::RuleRemoveTargetByTag(t, ex) => {
                for e in ex {
                    self.target_removals
                        .push((RuleSel::Tag(t.clone()), e.clone()));
                }
            }
            Ctl::RuleEngine(m) => self.mode = *m,
            Ctl::RequestBodyProcessor(bp) => self.set_body_processor(*bp),
            Ctl::RequestBodyAccess(b) => self.req_body_access = *b,
            Ctl::ResponseBodyAccess(b) => self.resp_body_access = *b,
            Ctl::ForceRequestBodyVariable(b) => self.force_body_var = *b,
            Ctl::RequestBodyLimit(l) => self.req_body_limit = *l,
            Ctl::Noop => {}
        }
    }

    fn excluded(&self, rule: &Rule, hot: &LinkHot, kind: VarKind, lkey: &str) -> bool {
        if hot
            .targets
            .exclusions
            .iter()
            .any(|e| e.excludes(kind, Some(lkey)))
        {
            return true;
        }
        // The kind compare first: most removals are for other variables, and testing
        // whether one applies to the rule compares tag strings.
        self.target_removals.iter().any(|(sel, e)| {
            e.kind == kind && rule_selected(rule, sel) && e.excludes(kind, Some(lkey))
        })
    }

    fn scalar_excluded(&self, rule: &Rule, hot: &LinkHot, kind: VarKind) -> bool {
        hot.targets
            .exclusions
            .iter()
            .any(|e| e.excludes(kind, None))
            || self.target_removals.iter().any(|(sel, e)| {
                e.kind == kind && rule_selected(rule, sel) && e.excludes(kind, None)
            })
    }

    /// The collections backing a collection variable; `names` = use keys as values.
    fn sources(&self, kind: VarKind) -> ([Option<&Collection>; 2], bool) {
        use VarKind::*;
        match kind {
            Args => ([Some(&self.args_get), Some(&self.args_post)], false),
            ArgsGet => ([Some(&self.args_get), None], false),
            ArgsPost => ([Some(&self.args_post), None], false),
            ArgsNames => ([Some(&self.args_get), Some(&self.args_post)], true),
            ArgsGetNames => ([Some(&self.args_get), None], true),
            ArgsPostNames => ([Some(&self.args_post), None], true),
            RequestHeaders => ([Some(&self.req_headers), None], false),
            RequestHeadersNames => ([Some(&self.req_headers), None], true),
            RequestCookies => ([Some(&self.cookies), None], false),
            RequestCookiesNames => ([Some(&self.cookies), None], true),
            ResponseHeaders => ([Some(&self.resp_headers), None], false),
            ResponseHeadersNames => ([Some(&self.resp_headers), None], true),
            Tx => ([Some(&self.tx), None], false),
            Env => ([Some(&self.env), None], false),
            Files => ([Some(&self.files), None], false),
            FilesNames => ([Some(&self.files), None], true),
            FilesSizes => ([Some(&self.files_sizes), None], false),
            MultipartPartHeaders => ([Some(&self.multipart_headers), None], false),
            MatchedVars => ([Some(&self.matched_vars), None], false),
            MatchedVarsNames => ([Some(&self.matched_vars), None], true),
            other => match self.others.get(&other) {
                Some(c) => ([Some(c), None], false),
                None => ([None, None], false),
            },
        }
    }

    /// First value of a variable for macro expansion.
    fn first_value(&self, kind: VarKind, key: Option<&MacroKey>) -> Option<Arc<[u8]>> {
        match kind {
            VarKind::MatchedVar => return Some(self.matched_var.clone()),
            VarKind::MatchedVarName => return Some(arc(self.matched_var_name.as_bytes())),
            VarKind::Tx => return key.and_then(|k| self.tx.get_hashed(&k.text, k.hash).cloned()),
            _ => {}
        }
        if kind.is_collection() && kind != VarKind::Xml {
            let (cols, names) = self.sources(kind);
            for c in cols.into_iter().flatten() {
                for e in c.entries() {
                    if key.is_none_or(|k| e.khash == k.hash && *e.lkey == *k.text) {
                        return Some(if names {
                            e.kbytes.clone()
                        } else {
                            e.value.clone()
                        });
                    }
                }
            }
            return None;
        }
        self.scalars.get(kind as usize).cloned().flatten()
    }

    /// `m` expanded, without copying when it is literal or one variable reference
    /// (`setvar:tx.score=+%{tx.critical_anomaly_score}`).
    fn expand_value<'m>(&self, m: &'m MacroStr, rule: &Rule) -> Expanded<'m> {
        match m.parts() {
            [] => Expanded::Static(b""),
            [Part::Lit(l)] => Expanded::Static(l),
            [Part::Var(k, key)] => match self.first_value(*k, key.as_ref()) {
                Some(v) => Expanded::Shared(v),
                None => Expanded::Static(b""),
            },
            _ => Expanded::Owned(self.expand(m, rule)),
        }
    }

    pub(crate) fn expand(&self, m: &MacroStr, rule: &Rule) -> Vec<u8> {
        // Room for the literal text and a short value or two: CRS's expansions
        // (`header_name_920450_%{tx.0}`, `/%{tx.0}/`) then grow no more than once.
        let lits: usize = m
            .parts()
            .iter()
            .map(|p| match p {
                Part::Lit(l) => l.len(),
                _ => 0,
            })
            .sum();
        let mut out = Vec::with_capacity(lits + 48);
        for p in m.parts() {
            match p {
                Part::Lit(l) => out.extend_from_slice(l),
                Part::Var(k, key) => {
                    if let Some(v) = self.first_value(*k, key.as_ref()) {
                        out.extend_from_slice(&v);
                    }
                }
                Part::Rule(f) => match f.as_str() {
                    "id" => {
                        let mut digits = itoa::Buffer::new();
                        out.extend_from_slice(digits.format(i64::from(rule.id)).as_bytes());
                    }
                    "severity" => {
                        if let Some(s) = rule.severity {
                            out.extend_from_slice(s.to_string().as_bytes());
                        }
                    }
                    "msg" => {
                        if let Some(s) = rule.msg.as_ref().and_then(|m| m.as_static()) {
                            out.extend_from_slice(s);
                        }
                    }
                    _ => {}
                },
            }
        }
        out
    }
}

/// An expanded macro: borrowed from the rule, shared with a variable, or built.
enum Expanded<'m> {
    Static(&'m [u8]),
    Shared(Arc<[u8]>),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Expanded<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Expanded::Static(s) => s,
            Expanded::Shared(a) => a,
            Expanded::Owned(v) => v,
        }
    }
}

/// `v` as lowercase hex, zero-padded to fill `out` (at most 16 digits; the unique id
/// without `format!`).
fn hex_into(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = out.len();
    for (i, d) in out.iter_mut().enumerate() {
        let shift = 4 * (n - 1 - i);
        *d = if shift < 64 {
            HEX[((v >> shift) & 15) as usize]
        } else {
            b'0'
        };
    }
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (
                crate::transform::hexval(b[i + 1]),
                crate::transform::hexval(b[i + 2]),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_key_matches_lossy_lowercase() {
        let alphabet: &[u8] = b"aZ_9.\xc3\xa9\xff\x80%{}";
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..5000 {
            let k = crate::test_support::random_input(alphabet, &mut seed, 12, 5);
            assert_eq!(
                super::lower_key(k.clone()),
                super::lossy(&k).to_ascii_lowercase(),
                "{k:?}"
            );
        }
    }

    /// The hand-written unique-id hex is `format!`'s.
    #[test]
    fn hex_matches_format() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut values = vec![0u64, 1, 9, 10, 65535, u64::from(u32::MAX), u64::MAX];
        for _ in 0..2000 {
            let x = crate::test_support::xorshift(&mut seed);
            values.push(x);
            values.push(x >> (x % 64));
        }
        for v in values {
            let mut uid = [0u8; 24];
            super::hex_into(&mut uid[..16], v);
            super::hex_into(&mut uid[16..], u64::from(v as u32));
            assert_eq!(uid, format!("{:016x}{:08x}", v, v as u32).as_bytes());
        }
    }
}
