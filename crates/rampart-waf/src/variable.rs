//! Variables a rule can target (`ARGS`, `REQUEST_HEADERS:User-Agent`, `&TX:x`,
//! `!ARGS:/^foo/` …), parsed once at load time into typed selectors.

use regex::Regex;

/// Every variable or collection the engine knows. Collections take a key selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum VarKind {
    // collections
    Args,
    ArgsGet,
    ArgsPost,
    ArgsNames,
    ArgsGetNames,
    ArgsPostNames,
    RequestHeaders,
    RequestHeadersNames,
    RequestCookies,
    RequestCookiesNames,
    ResponseHeaders,
    ResponseHeadersNames,
    Tx,
    Env,
    Files,
    FilesNames,
    FilesSizes,
    FilesTmpNames,
    FilesTmpContent,
    MultipartPartHeaders,
    Xml,
    MatchedVars,
    MatchedVarsNames,
    Geo,
    Ip,
    Global,
    Session,
    User,
    Resource,
    Rule,
    // scalars
    ArgsCombinedSize,
    FilesCombinedSize,
    RequestUri,
    RequestUriRaw,
    RequestFilename,
    RequestBasename,
    RequestLine,
    RequestMethod,
    RequestProtocol,
    QueryString,
    RequestBody,
    RequestBodyLength,
    FullRequest,
    FullRequestLength,
    RemoteAddr,
    RemotePort,
    RemoteHost,
    ServerAddr,
    ServerPort,
    ServerName,
    UniqueId,
    ReqbodyProcessor,
    ReqbodyError,
    ReqbodyErrorMsg,
    ReqbodyProcessorError,
    ReqbodyProcessorErrorMsg,
    InboundDataError,
    OutboundDataError,
    MultipartStrictError,
    MultipartUnmatchedBoundary,
    MultipartBoundaryQuoted,
    MultipartBoundaryWhitespace,
    MultipartDataBefore,
    MultipartDataAfter,
    MultipartHeaderFolding,
    MultipartLfLine,
    MultipartCrlfLfLines,
    MultipartMissingSemicolon,
    MultipartInvalidQuoting,
    MultipartInvalidPart,
    MultipartInvalidHeaderFolding,
    MultipartFileLimitExceeded,
    MultipartFilename,
    MultipartName,
    ResponseBody,
    ResponseStatus,
    ResponseProtocol,
    ResponseContentType,
    ResponseContentLength,
    StatusLine,
    MatchedVar,
    MatchedVarName,
    HighestSeverity,
    Duration,
    Time,
    TimeEpoch,
    AuthType,
    PathInfo,
    UrlencodedError,
    Webserver,
}

impl VarKind {
    /// Number of variants (for tables indexed by `kind as usize`).
    pub const COUNT: usize = VarKind::Webserver as usize + 1;

    /// True for collections that accept `:key` selectors.
    pub fn is_collection(self) -> bool {
        use VarKind::*;
        matches!(
            self,
            Args | ArgsGet
                | ArgsPost
                | ArgsNames
                | ArgsGetNames
                | ArgsPostNames
                | RequestHeaders
                | RequestHeadersNames
                | RequestCookies
                | RequestCookiesNames
                | ResponseHeaders
                | ResponseHeadersNames
                | Tx
                | Env
                | Files
                | FilesNames
                | FilesSizes
                | FilesTmpNames
                | FilesTmpContent
                | MultipartPartHeaders
                | Xml
                | MatchedVars
                | MatchedVarsNames
                | Geo
                | Ip
                | Global
                | Session
                | User
                | Resource
                | Rule
        )
    }

    /// Parses a variable name (case-insensitive), as written in SecLang.
    pub fn parse(name: &str) -> Option<VarKind> {
        use VarKind::*;
        let up = name.to_ascii_uppercase();
        Some(match up.as_str() {
            "ARGS" => Args,
            "ARGS_GET" => ArgsGet,
            "ARGS_POST" => ArgsPost,
            "ARGS_NAMES" => ArgsNames,
            "ARGS_GET_NAMES" => ArgsGetNames,
            "ARGS_POST_NAMES" => ArgsPostNames,
            "REQUEST_HEADERS" => RequestHeaders,
            "REQUEST_HEADERS_NAMES" => RequestHeadersNames,
            "REQUEST_COOKIES" => RequestCookies,
            "REQUEST_COOKIES_NAMES" => RequestCookiesNames,
            "RESPONSE_HEADERS" => ResponseHeaders,
            "RESPONSE_HEADERS_NAMES" => ResponseHeadersNames,
            "TX" => Tx,
            "ENV" => Env,
            "FILES" => Files,
            "FILES_NAMES" => FilesNames,
            "FILES_SIZES" => FilesSizes,
            "FILES_TMPNAMES" => FilesTmpNames,
            "FILES_TMP_CONTENT" => FilesTmpContent,
            "MULTIPART_PART_HEADERS" => MultipartPartHeaders,
            "XML" => Xml,
            "MATCHED_VARS" => MatchedVars,
            "MATCHED_VARS_NAMES" => MatchedVarsNames,
            "GEO" => Geo,
            "IP" => Ip,
            "GLOBAL" => Global,
            "SESSION" => Session,
            "USER" => User,
            "RESOURCE" => Resource,
            "RULE" => Rule,
            "ARGS_COMBINED_SIZE" => ArgsCombinedSize,
            "FILES_COMBINED_SIZE" => FilesCombinedSize,
            "REQUEST_URI" => RequestUri,
            "REQUEST_URI_RAW" => RequestUriRaw,
            "REQUEST_FILENAME" => RequestFilename,
            "REQUEST_BASENAME" => RequestBasename,
            "REQUEST_LINE" => RequestLine,
            "REQUEST_METHOD" => RequestMethod,
            "REQUEST_PROTOCOL" => RequestProtocol,
            "QUERY_STRING" => QueryString,
            "REQUEST_BODY" => RequestBody,
            "REQUEST_BODY_LENGTH" => RequestBodyLength,
            "FULL_REQUEST" => FullRequest,
            "FULL_REQUEST_LENGTH" => FullRequestLength,
            "REMOTE_ADDR" => RemoteAddr,
            "REMOTE_PORT" => RemotePort,
            "REMOTE_HOST" => RemoteHost,
            "SERVER_ADDR" => ServerAddr,
            "SERVER_PORT" => ServerPort,
            "SERVER_NAME" => ServerName,
            "UNIQUE_ID" => UniqueId,
            "REQBODY_PROCESSOR" => ReqbodyProcessor,
            "REQBODY_ERROR" => ReqbodyError,
            "REQBODY_ERROR_MSG" => ReqbodyErrorMsg,
            "REQBODY_PROCESSOR_ERROR" => ReqbodyProcessorError,
            "REQBODY_PROCESSOR_ERROR_MSG" => ReqbodyProcessorErrorMsg,
            "INBOUND_DATA_ERROR" => InboundDataError,
            "OUTBOUND_DATA_ERROR" => OutboundDataError,
            "MULTIPART_STRICT_ERROR" => MultipartStrictError,
            "MULTIPART_UNMATCHED_BOUNDARY" => MultipartUnmatchedBoundary,
            "MULTIPART_BOUNDARY_QUOTED" => MultipartBoundaryQuoted,
            "MULTIPART_BOUNDARY_WHITESPACE" => MultipartBoundaryWhitespace,
            "MULTIPART_DATA_BEFORE" => MultipartDataBefore,
            "MULTIPART_DATA_AFTER" => MultipartDataAfter,
            "MULTIPART_HEADER_FOLDING" => MultipartHeaderFolding,
            "MULTIPART_LF_LINE" => MultipartLfLine,
            "MULTIPART_CRLF_LF_LINES" => MultipartCrlfLfLines,
            "MULTIPART_MISSING_SEMICOLON" => MultipartMissingSemicolon,
            "MULTIPART_INVALID_QUOTING" => MultipartInvalidQuoting,
            "MULTIPART_INVALID_PART" => MultipartInvalidPart,
            "MULTIPART_INVALID_HEADER_FOLDING" => MultipartInvalidHeaderFolding,
            "MULTIPART_FILE_LIMIT_EXCEEDED" => MultipartFileLimitExceeded,
            "MULTIPART_FILENAME" => MultipartFilename,
            "MULTIPART_NAME" => MultipartName,
            "RESPONSE_BODY" => ResponseBody,
            "RESPONSE_STATUS" => ResponseStatus,
            "RESPONSE_PROTOCOL" => ResponseProtocol,
            "RESPONSE_CONTENT_TYPE" => ResponseContentType,
            "RESPONSE_CONTENT_LENGTH" => ResponseContentLength,
            "STATUS_LINE" => StatusLine,
            "MATCHED_VAR" => MatchedVar,
            "MATCHED_VAR_NAME" => MatchedVarName,
            "HIGHEST_SEVERITY" => HighestSeverity,
            "DURATION" => Duration,
            "TIME" => Time,
            "TIME_EPOCH" => TimeEpoch,
            "AUTH_TYPE" => AuthType,
            "PATH_INFO" => PathInfo,
            "URLENCODED_ERROR" => UrlencodedError,
            "WEBSERVER_ERROR_LOG" => Webserver,
            _ => return None,
        })
    }

    /// Canonical upper-case name, used in MATCHED_VAR_NAME and logs.
    pub fn name(self) -> &'static str {
        use VarKind::*;
        match self {
            Args => "ARGS",
            ArgsGet => "ARGS_GET",
            ArgsPost => "ARGS_POST",
            ArgsNames => "ARGS_NAMES",
            ArgsGetNames => "ARGS_GET_NAMES",
            ArgsPostNames => "ARGS_POST_NAMES",
            RequestHeaders => "REQUEST_HEADERS",
            RequestHeadersNames => "REQUEST_HEADERS_NAMES",
            RequestCookies => "REQUEST_COOKIES",
            RequestCookiesNames => "REQUEST_COOKIES_NAMES",
            ResponseHeaders => "RESPONSE_HEADERS",
            ResponseHeadersNames => "RESPONSE_HEADERS_NAMES",
            Tx => "TX",
            Env => "ENV",
            Files => "FILES",
            FilesNames => "FILES_NAMES",
            FilesSizes => "FILES_SIZES",
            FilesTmpNames => "FILES_TMPNAMES",
            FilesTmpContent => "FILES_TMP_CONTENT",
            MultipartPartHeaders => "MULTIPART_PART_HEADERS",
            Xml => "XML",
            MatchedVars => "MATCHED_VARS",
            MatchedVarsNames => "MATCHED_VARS_NAMES",
            Geo => "GEO",
            Ip => "IP",
            Global => "GLOBAL",
            Session => "SESSION",
            User => "USER",
            Resource => "RESOURCE",
            Rule => "RULE",
            ArgsCombinedSize => "ARGS_COMBINED_SIZE",
            FilesCombinedSize => "FILES_COMBINED_SIZE",
            RequestUri => "REQUEST_URI",
            RequestUriRaw => "REQUEST_URI_RAW",
            RequestFilename => "REQUEST_FILENAME",
            RequestBasename => "REQUEST_BASENAME",
            RequestLine => "REQUEST_LINE",
            RequestMethod => "REQUEST_METHOD",
            RequestProtocol => "REQUEST_PROTOCOL",
            QueryString => "QUERY_STRING",
            RequestBody => "REQUEST_BODY",
            RequestBodyLength => "REQUEST_BODY_LENGTH",
            FullRequest => "FULL_REQUEST",
            FullRequestLength => "FULL_REQUEST_LENGTH",
            RemoteAddr => "REMOTE_ADDR",
            RemotePort => "REMOTE_PORT",
            RemoteHost => "REMOTE_HOST",
            ServerAddr => "SERVER_ADDR",
            ServerPort => "SERVER_PORT",
            ServerName => "SERVER_NAME",
            UniqueId => "UNIQUE_ID",
            ReqbodyProcessor => "REQBODY_PROCESSOR",
            ReqbodyError => "REQBODY_ERROR",
            ReqbodyErrorMsg => "REQBODY_ERROR_MSG",
            ReqbodyProcessorError => "REQBODY_PROCESSOR_ERROR",
            ReqbodyProcessorErrorMsg => "REQBODY_PROCESSOR_ERROR_MSG",
            InboundDataError => "INBOUND_DATA_ERROR",
            OutboundDataError => "OUTBOUND_DATA_ERROR",
            MultipartStrictError => "MULTIPART_STRICT_ERROR",
            MultipartUnmatchedBoundary => "MULTIPART_UNMATCHED_BOUNDARY",
            MultipartBoundaryQuoted => "MULTIPART_BOUNDARY_QUOTED",
            MultipartBoundaryWhitespace => "MULTIPART_BOUNDARY_WHITESPACE",
            MultipartDataBefore => "MULTIPART_DATA_BEFORE",
            MultipartDataAfter => "MULTIPART_DATA_AFTER",
            MultipartHeaderFolding => "MULTIPART_HEADER_FOLDING",
            MultipartLfLine => "MULTIPART_LF_LINE",
            MultipartCrlfLfLines => "MULTIPART_CRLF_LF_LINES",
            MultipartMissingSemicolon => "MULTIPART_MISSING_SEMICOLON",
            MultipartInvalidQuoting => "MULTIPART_INVALID_QUOTING",
            MultipartInvalidPart => "MULTIPART_INVALID_PART",
            MultipartInvalidHeaderFolding => "MULTIPART_INVALID_HEADER_FOLDING",
            MultipartFileLimitExceeded => "MULTIPART_FILE_LIMIT_EXCEEDED",
            MultipartFilename => "MULTIPART_FILENAME",
            MultipartName => "MULTIPART_NAME",
            ResponseBody => "RESPONSE_BODY",
            ResponseStatus => "RESPONSE_STATUS",
            ResponseProtocol => "RESPONSE_PROTOCOL",
            ResponseContentType => "RESPONSE_CONTENT_TYPE",
            ResponseContentLength => "RESPONSE_CONTENT_LENGTH",
            StatusLine => "STATUS_LINE",
            MatchedVar => "MATCHED_VAR",
            MatchedVarName => "MATCHED_VAR_NAME",
            HighestSeverity => "HIGHEST_SEVERITY",
            Duration => "DURATION",
            Time => "TIME",
            TimeEpoch => "TIME_EPOCH",
            AuthType => "AUTH_TYPE",
            PathInfo => "PATH_INFO",
            UrlencodedError => "URLENCODED_ERROR",
            Webserver => "WEBSERVER_ERROR_LOG",
        }
    }
}

/// Which keys of a collection a target selects.
#[derive(Debug, Clone)]
pub enum Selector {
    /// All keys.
    All,
    /// One key, stored lowercased (lookups are case-insensitive), with its hash.
    Key(String, u64),
    /// Keys matching a regex (`ARGS:/[0-9]$/`).
    Regex(Regex),
    /// A regex that is `^` and literal text (`TX:/^header_name_920450_/`): a prefix test
    /// on the lowercased key, not a regex search per key.
    Prefix(String),
    /// A regex that is only literal text (`!REQUEST_COOKIES:/__utm/`, in the exclusions
    /// of dozens of CRS rules): a substring test on the lowercased key.
    Contains(String),
}

impl Selector {
    /// A key selector (lowercases `k`).
    pub fn key(k: &str) -> Selector {
        let l = k.to_ascii_lowercase();
        let h = crate::collection::key_hash(&l);
        Selector::Key(l, h)
    }

    /// True when the entry (lowercased key and its hash) is selected.
    pub fn matches_entry(&self, lkey: &str, khash: u64) -> bool {
        match self {
            Selector::All => true,
            Selector::Key(k, h) => *h == khash && k == lkey,
            other => other.matches(lkey),
        }
    }

    /// True when `lkey` (lowercased key) is selected.
    pub fn matches(&self, lkey: &str) -> bool {
        match self {
            Selector::All => true,
            Selector::Key(k, _) => k == lkey,
            Selector::Regex(r) => r.is_match(lkey),
            Selector::Prefix(p) => lkey.starts_with(p.as_str()),
            Selector::Contains(c) => memchr::memmem::find(lkey.as_bytes(), c.as_bytes()).is_some(),
        }
    }
}

/// One element of a rule's target list.
#[derive(Debug, Clone)]
pub struct Target {
    /// Variable or collection.
    pub kind: VarKind,
    /// Key selector (`All` for scalars).
    pub selector: Selector,
    /// `&VAR`: the number of values instead of the values.
    pub count: bool,
    /// The MATCHED_VARS entry of a hit when the name does not depend on the request
    /// (`&TX:x`, scalars such as `REQUEST_METHOD`): built at load, not per request.
    /// Boxed: read only on a hit, while the rest of the target is read for every rule
    /// walked (inline it made a target ~190 bytes, three cache lines).
    pub(crate) name: Option<Box<crate::collection::Entry>>,
}

/// A `!VAR:key` exclusion.
#[derive(Debug, Clone)]
pub struct Exclusion {
    /// Collection the exclusion applies to.
    pub kind: VarKind,
    /// Keys excluded.
    pub selector: Selector,
}

impl Exclusion {
    /// True when the exclusion removes `kind`/`lkey`.
    pub fn excludes(&self, kind: VarKind, lkey: Option<&str>) -> bool {
        if self.kind != kind {
            return false;
        }
        match (&self.selector, lkey) {
            (Selector::All, _) => true,
            (sel, Some(k)) => sel.matches(k),
            (_, None) => false,
        }
    }
}

/// Parsed target list of a rule: what to inspect and what to leave out.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Selected targets, in order.
    pub targets: Vec<Target>,
    /// Exclusions.
    pub exclusions: Vec<Exclusion>,
}

/// Parses one selector text (after the `:`) into a [`Selector`].
pub fn parse_selector(sel: &str) -> Result<Selector, String> {
    if sel.len() >= 2 && sel.starts_with('/') && sel.ends_with('/') {
        let pat = &sel[1..sel.len() - 1];
        // Keys are compared lowercased and the regex is case-insensitive, so literal
        // patterns become plain string tests on the lowercased text.
        let literal = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if let Some(rest) = pat.strip_prefix('^') {
            if literal(rest) {
                return Ok(Selector::Prefix(rest.to_ascii_lowercase()));
            }
        } else if literal(pat) {
            return Ok(Selector::Contains(pat.to_ascii_lowercase()));
        }
        let re = regex::RegexBuilder::new(pat)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("bad key regex {pat:?}: {e}"))?;
        Ok(Selector::Regex(re))
    } else {
        let s = sel.trim_matches('\'');
        Ok(Selector::key(s))
    }
}

/// Splits a `VAR1|!VAR2:key|&VAR3` list, honouring `/regex/` selectors that contain `|`.
fn split_targets(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut in_re = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\\' && in_re {
            i += 2;
            continue;
        }
        if c == b'/' && i > 0 && (bytes[i - 1] == b':' || in_re) {
            // A regex selector starts right after ':' and ends at the next unescaped '/'
            // followed by '|' or the end.
            if !in_re {
                let name = s[start..i - 1].trim_start_matches(['!', '&']);
                in_re = !name.eq_ignore_ascii_case("XML");
            } else if i + 1 == bytes.len() || bytes[i + 1] == b'|' {
                in_re = false;
            }
        }
        if c == b'|' && !in_re {
            out.push(&s[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    out.push(&s[start..]);
    out
}

/// Parses a whole target list (`ARGS|!ARGS:foo|&TX:x`).
pub fn parse_targets(s: &str) -> Result<Targets, String> {
    let mut t = Targets::default();
    for part in split_targets(s.trim()) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (neg, rest) = match part.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, part),
        };
        let (count, rest) = match rest.strip_prefix('&') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (name, sel) = match rest.find(':') {
            Some(p) => (&rest[..p], Some(&rest[p + 1..])),
            None => (rest, None),
        };
        let kind = VarKind::parse(name).ok_or_else(|| format!("unknown variable {name}"))?;
        let selector = match sel {
            Some(s) if kind == VarKind::Xml => Selector::Key(s.to_string(), 0),
            Some(s) if !s.is_empty() => parse_selector(s)?,
            _ => Selector::All,
        };
        if neg {
            t.exclusions.push(Exclusion { kind, selector });
        } else {
            let fixed = count || !(kind.is_collection() || kind == VarKind::Xml);
            let name = fixed.then(|| {
                let key = match &selector {
                    Selector::Key(k, _) if count => Some(k.as_str()),
                    _ => None,
                };
                Box::new(crate::collection::Collection::keyed(
                    crate::transaction::var_name(kind, key, count).into(),
                ))
            });
            t.targets.push(Target {
                kind,
                selector,
                count,
                name,
            });
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Literal key regexes become string tests that select exactly what the regex did.
    #[test]
    #[allow(clippy::regex_creation_in_loops)] // one regex per case, compared against
    fn literal_key_regexes_become_string_tests() {
        let cases = [
            ("/^header_name_920450_/", true),
            ("/__utm/", false),
            ("/^a-b/", true),
        ];
        for (sel, prefix) in cases {
            let s = parse_selector(sel).unwrap_or(Selector::All);
            assert!(
                matches!(
                    (&s, prefix),
                    (Selector::Prefix(_), true) | (Selector::Contains(_), false)
                ),
                "{sel}: {s:?}"
            );
            let re = regex::RegexBuilder::new(&sel[1..sel.len() - 1])
                .case_insensitive(true)
                .build()
                .unwrap_or_else(|_| regex::Regex::new("$^").unwrap_or_else(|_| unreachable!()));
            for key in [
                "header_name_920450_host",
                "x-header_name_920450_",
                "__utma",
                "x__utmz",
                "a-b",
                "xa-b",
                "",
                "HEADER_NAME_920450_X",
            ] {
                let lkey = key.to_ascii_lowercase();
                assert_eq!(s.matches(&lkey), re.is_match(&lkey), "{sel} on {key}");
            }
        }
        // Anything with a metacharacter stays a regex.
        assert!(matches!(parse_selector("/^a|b$/"), Ok(Selector::Regex(_))));
        assert!(matches!(
            parse_selector("/^id_[0-9]+/"),
            Ok(Selector::Regex(_))
        ));
    }

    #[test]
    fn parses_targets_with_regex_and_exclusions() {
        let t = parse_targets("ARGS|!ARGS:foo|&TX:x|REQUEST_COOKIES:/^a|b$/|XML:/*")
            .unwrap_or_default();
        assert_eq!(t.targets.len(), 4);
        assert_eq!(t.exclusions.len(), 1);
        assert!(t.targets[1].count);
        assert!(matches!(t.targets[2].selector, Selector::Regex(_)));
    }
}
