//! Sets of byte values. Each value the rules inspect gets the set of bytes it contains,
//! once; operators and transformations then answer "cannot match" / "leaves it
//! unchanged" for most values in a few word operations instead of a scan per rule:
//! a regex or phrase list that needs one of a few bytes the value lacks cannot match it.

/// A set of byte values (256 bits).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl std::fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries((0..=255u8).filter(|&b| self.contains(b)))
            .finish()
    }
}

impl ByteSet {
    /// No byte.
    pub const EMPTY: ByteSet = ByteSet([0; 4]);
    /// Every byte.
    pub const FULL: ByteSet = ByteSet([u64::MAX; 4]);
    /// `A`-`Z` (bits 65-90): whether a key needs lowercasing, from its set.
    pub const UPPER: ByteSet = ByteSet([0, 0x07ff_fffe, 0, 0]);

    /// The bytes `s` contains.
    pub fn of(s: &[u8]) -> ByteSet {
        let mut w = [0u64; 4];
        for &b in s {
            w[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        ByteSet(w)
    }

    /// The listed bytes.
    pub fn from_bytes(bytes: &[u8]) -> ByteSet {
        Self::of(bytes)
    }

    /// The bytes `lo..=hi`.
    pub fn range(lo: u8, hi: u8) -> ByteSet {
        let mut s = ByteSet::EMPTY;
        for b in lo..=hi {
            s.insert(b);
        }
        s
    }

    pub fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    pub fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    /// True when some byte is in both sets.
    #[inline]
    pub fn intersects(&self, o: &ByteSet) -> bool {
        (self.0[0] & o.0[0]) | (self.0[1] & o.0[1]) | (self.0[2] & o.0[2]) | (self.0[3] & o.0[3])
            != 0
    }

    /// True when every byte of `self` is in `o`.
    #[inline]
    pub fn is_subset(&self, o: &ByteSet) -> bool {
        (self.0[0] & !o.0[0])
            | (self.0[1] & !o.0[1])
            | (self.0[2] & !o.0[2])
            | (self.0[3] & !o.0[3])
            == 0
    }

    pub fn union(self, o: ByteSet) -> ByteSet {
        ByteSet([
            self.0[0] | o.0[0],
            self.0[1] | o.0[1],
            self.0[2] | o.0[2],
            self.0[3] | o.0[3],
        ])
    }

    pub fn is_full(&self) -> bool {
        *self == ByteSet::FULL
    }

    /// How often a value of ordinary HTTP traffic is expected to contain one of these
    /// bytes (a relative weight, not a probability): used to choose the most selective
    /// of several necessary sets. Letters, digits and URL punctuation are common.
    pub fn weight(&self) -> u32 {
        (0..=255u8)
            .filter(|&b| self.contains(b))
            .map(|b| match b {
                b'a'..=b'z' | b' ' => 8,
                b'0'..=b'9' | b'A'..=b'Z' => 4,
                b'%' | b'+' | b'=' | b'&' | b'.' | b'-' | b'_' | b'/' | b',' | b';' | b':' => 4,
                _ => 1,
            })
            .sum()
    }
}

/// A condition on the bytes of a value: it holds when the value contains a byte of each
/// set. Built per operator at load time; an empty list always holds.
///
/// Held inline (not a `Vec`): it is read for nearly every (rule, value) pair, and a
/// separate allocation per operator cost a cache miss per rule walked.
///
/// `repr(C)`, count first: in [`crate::rule::LinkHot`] the count shares a cache line
/// with the most selective set.
#[derive(Debug, Clone, Default)]
#[repr(C)]
pub(crate) struct Needs {
    len: u8,
    sets: [ByteSet; NEEDS_MAX],
}

/// At most this many sets are kept (the most selective ones).
const NEEDS_MAX: usize = 3;

impl Needs {
    /// No condition.
    pub fn none() -> Needs {
        Needs::default()
    }

    /// Keeps the most selective sets of `sets` (dropping full ones, which always hold).
    pub fn from_sets(mut sets: Vec<ByteSet>) -> Needs {
        sets.retain(|s| !s.is_full());
        sets.sort_by_key(ByteSet::weight);
        sets.dedup();
        sets.truncate(NEEDS_MAX);
        let mut n = Needs::default();
        for (slot, s) in n.sets.iter_mut().zip(&sets) {
            *slot = *s;
        }
        n.len = sets.len() as u8;
        n
    }

    /// False when a value whose bytes are `have` cannot satisfy the condition.
    #[inline]
    pub fn may_hold(&self, have: &ByteSet) -> bool {
        self.sets().iter().all(|s| s.intersects(have))
    }

    pub fn sets(&self) -> &[ByteSet] {
        &self.sets[..usize::from(self.len)]
    }
}

/// Sets of bytes such that every match of `hir` contains a byte of each set (none when
/// `hir` can match the empty string).
fn hir_needs(hir: &regex_syntax::hir::Hir) -> Vec<ByteSet> {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(l) => l.0.iter().map(|&b| ByteSet::from_bytes(&[b])).collect(),
        HirKind::Class(Class::Bytes(c)) => {
            let mut s = ByteSet::EMPTY;
            for r in c.ranges() {
                s = s.union(ByteSet::range(r.start(), r.end()));
            }
            vec![s]
        }
        HirKind::Class(Class::Unicode(c)) => {
            // A code point above U+007F is matched as several bytes, all >= 0x80.
            let mut s = ByteSet::EMPTY;
            for r in c.ranges() {
                let (a, b) = (u32::from(r.start()), u32::from(r.end()));
                if a <= 0x7f {
                    s = s.union(ByteSet::range(a as u8, b.min(0x7f) as u8));
                }
                if b > 0x7f {
                    s = s.union(ByteSet::range(0x80, 0xff));
                }
            }
            vec![s]
        }
        HirKind::Repetition(r) => {
            if r.min == 0 {
                Vec::new()
            } else {
                hir_needs(&r.sub)
            }
        }
        HirKind::Capture(c) => hir_needs(&c.sub),
        HirKind::Concat(subs) => {
            let mut v: Vec<ByteSet> = subs.iter().flat_map(hir_needs).collect();
            v.sort_by_key(ByteSet::weight);
            v.dedup();
            v.truncate(NEEDS_MAX);
            v
        }
        HirKind::Alternation(subs) => {
            // A match matches some branch, so it holds a byte of that branch's most
            // selective set: the union of those sets is necessary.
            // The same for each branch's second and third most selective set (its
            // best one when it has fewer): every set of a branch is necessary for it.
            let mut u = [ByteSet::EMPTY; NEEDS_MAX];
            for s in subs {
                let mut sets = hir_needs(s);
                sets.sort_by_key(ByteSet::weight);
                let Some(&best) = sets.first() else {
                    return Vec::new();
                };
                for (k, set) in u.iter_mut().enumerate() {
                    *set = set.union(sets.get(k).copied().unwrap_or(best));
                }
            }
            u.to_vec()
        }
    }
}

/// The condition every match of `pattern` satisfies, for a pattern compiled by the
/// `regex` crate with these `unicode`/byte-mode settings; no condition when the pattern
/// does not parse the same way here.
pub(crate) fn regex_needs(pattern: &str, unicode: bool) -> Needs {
    let parsed = regex_syntax::ParserBuilder::new()
        .unicode(unicode)
        .utf8(false)
        .build()
        .parse(pattern);
    match parsed {
        Ok(hir) => Needs::from_sets(hir_needs(&hir)),
        Err(_) => Needs::none(),
    }
}

/// The condition every match of a case-insensitive phrase list satisfies: a byte of
/// some phrase's most selective byte (both cases for letters).
pub(crate) fn phrases_needs(phrases: &[&str]) -> Needs {
    let mut u = ByteSet::EMPTY;
    for p in phrases {
        let best = p
            .bytes()
            .map(|b| {
                let mut s = ByteSet::from_bytes(&[b]);
                s.insert(b.to_ascii_lowercase());
                s.insert(b.to_ascii_uppercase());
                s
            })
            .min_by_key(ByteSet::weight);
        match best {
            Some(s) => u = u.union(s),
            None => return Needs::none(),
        }
    }
    Needs::from_sets(vec![u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        let s = ByteSet::of(b"abc");
        assert!(s.contains(b'a') && !s.contains(b'd'));
        assert!(s.intersects(&ByteSet::of(b"xc")));
        assert!(!s.intersects(&ByteSet::of(b"xyz\xff")));
        assert!(s.is_subset(&ByteSet::range(b'a', b'z')));
        assert!(!ByteSet::of(b"a\x80").is_subset(&ByteSet::range(0, 0x7f)));
    }

    /// The condition never rules out a value the regex matches, checked on many
    /// patterns and inputs (the filter must not change any verdict).
    #[test]
    fn regex_needs_never_rules_out_a_match() {
        let pats = [
            r"<script",
            r"(?i)<script[^>]*>",
            r"(?:union|select)\s+\w+",
            r"^abc$",
            r"a*",
            r"(?i:on(?:error|load))\s*=",
            r"[\x80-\xff]{2}",
            r"(?:\n?\z)",
            r"x|y|",
            r"\$\{[^}]+\}",
            r"(?i)(?:\b(?:cat|ls)\b|;\s*id)",
            r"[^a-z]",
            r"\.\./",
            r"(?:%[0-9a-f]{2})+",
            r"(?:lis|sol|tuz)\d",
            r"(?i)(?:ab|cb|ac)(?:x|yz)",
            r"(?:runtime|processbuilder|ls)",
        ];
        let alphabet: &[u8] = b"abcilnorstuxyz<>;$/{}.%0129 =\n\xff\x80SCRIPT";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for p in pats {
            let re = regex::bytes::RegexBuilder::new(p).unicode(false).build();
            let Ok(re) = re else { continue };
            let needs = regex_needs(p, false);
            for _ in 0..3000 {
                let input = crate::test_support::random_input(alphabet, &mut seed, 14, 4);
                if re.is_match(&input) {
                    assert!(
                        needs.may_hold(&ByteSet::of(&input)),
                        "{p} on {:?}",
                        String::from_utf8_lossy(&input)
                    );
                }
            }
            for s in [
                &b"<script>"[..],
                b"sol1",
                b"CBYZ",
                b"java.lang.ProcessBuilder",
                b"processbuilder",
                b"union  select x",
                b"abc",
                b"ls",
                b";id",
                b"../",
            ] {
                if re.is_match(s) {
                    assert!(needs.may_hold(&ByteSet::of(s)), "{p}");
                }
            }
        }
        assert_eq!(regex_needs(r"a*", false).sets().len(), 0);
        assert!(!regex_needs(r"<script", false).may_hold(&ByteSet::of(b"hello world")));
    }

    #[test]
    fn phrase_needs() {
        let n = phrases_needs(&["passwd", "Shadow"]);
        assert!(n.may_hold(&ByteSet::of(b"/etc/PASSWD")));
        assert!(n.may_hold(&ByteSet::of(b"shadow")));
        assert!(!n.may_hold(&ByteSet::of(b"xyz")));
    }
}
