//! `%{tx.score}` style macros in action arguments and operator parameters, parsed once
//! at load time into literal and variable parts.

use crate::collection::key_hash;
use crate::variable::VarKind;

/// One piece of a macro string.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    Lit(Vec<u8>),
    /// Variable with an optional (lowercased) key: `%{tx.x}`, `%{MATCHED_VAR}`.
    Var(VarKind, Option<MacroKey>),
    /// `%{rule.id}`, `%{rule.msg}`…
    Rule(String),
}

/// A lowercased macro key with its [`key_hash`], computed at load: CRS reads
/// `%{tx.critical_anomaly_score}` and friends ~15 times a request, and hashing the key
/// each time showed in profiles.
#[derive(Debug, Clone)]
pub(crate) struct MacroKey {
    pub text: String,
    pub hash: u64,
}

impl MacroKey {
    pub fn new(text: String) -> MacroKey {
        MacroKey {
            hash: key_hash(&text),
            text,
        }
    }
}

/// A string that may contain `%{…}` references.
#[derive(Debug, Clone, Default)]
pub(crate) struct MacroStr {
    parts: Parts,
}

/// The parts of a [`MacroStr`]. Most are one part (`@lt 1`, `setvar:tx.x=%{tx.y}`), held
/// inline: expanding an operator parameter or a `setvar` value then does not load a
/// separate list first.
#[derive(Debug, Clone)]
enum Parts {
    One(Part),
    Many(Vec<Part>),
}

impl Default for Parts {
    fn default() -> Self {
        Parts::Many(Vec::new())
    }
}

impl MacroStr {
    pub fn parse(s: &str) -> MacroStr {
        let mut parts = Vec::new();
        let mut lit: Vec<u8> = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 1 < b.len() && b[i + 1] == b'{' {
                if let Some(end) = s[i + 2..].find('}') {
                    let inner = &s[i + 2..i + 2 + end];
                    let (name, key) = match inner.find(['.', ':']) {
                        Some(p) => (&inner[..p], Some(inner[p + 1..].to_ascii_lowercase())),
                        None => (inner, None),
                    };
                    let part = if name.eq_ignore_ascii_case("rule") {
                        Some(Part::Rule(key.unwrap_or_default()))
                    } else {
                        VarKind::parse(name).map(|k| Part::Var(k, key.map(MacroKey::new)))
                    };
                    if let Some(p) = part {
                        if !lit.is_empty() {
                            parts.push(Part::Lit(std::mem::take(&mut lit)));
                        }
                        parts.push(p);
                        i += 2 + end + 1;
                        continue;
                    }
                }
            }
            lit.push(b[i]);
            i += 1;
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        let parts = if parts.len() == 1 {
            match parts.pop() {
                Some(p) => Parts::One(p),
                None => Parts::Many(parts),
            }
        } else {
            Parts::Many(parts)
        };
        MacroStr { parts }
    }

    /// The parts, in order.
    #[inline]
    pub fn parts(&self) -> &[Part] {
        match &self.parts {
            Parts::One(p) => std::slice::from_ref(p),
            Parts::Many(v) => v,
        }
    }

    /// The literal text when there are no references.
    pub fn as_static(&self) -> Option<&[u8]> {
        match self.parts() {
            [] => Some(b""),
            [Part::Lit(l)] => Some(l),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_refs() {
        let m = MacroStr::parse("a%{tx.X}b%{MATCHED_VAR}%{rule.id}%{bogus}");
        assert_eq!(m.parts().len(), 6);
        assert!(
            matches!(&m.parts()[1], Part::Var(VarKind::Tx, Some(k)) if k.text == "x" && k.hash == key_hash("x"))
        );
    }
}
