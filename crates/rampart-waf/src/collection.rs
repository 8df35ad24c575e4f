//! Ordered, case-insensitive multimaps used for ARGS, headers, TX and friends.
//!
//! Values are `Arc`-shared so resolving a target for a rule clones pointers, not bytes.
//! Each entry carries a hash of its lowercased key so lookups compare integers first.

use crate::byteset::ByteSet;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

/// One key/value entry; `lkey` is the lowercased key used for lookups.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: Arc<str>,
    pub lkey: Arc<str>,
    /// Hash of `lkey`, so key lookups compare integers before strings.
    pub khash: u64,
    /// The key as bytes, the value of `*_NAMES` variables: the same allocation as `key`
    /// (`Arc<str>` converts to `Arc<[u8]>` without copying).
    pub kbytes: Arc<[u8]>,
    pub value: Arc<[u8]>,
    /// The bytes of `key` and of `value` (see [`ByteSet`]).
    pub kset: ByteSet,
    pub vset: ByteSet,
}

/// Case-insensitive hash of a key (hashes the ASCII-lowercased bytes).
pub(crate) fn key_hash(k: &str) -> u64 {
    fnv1a(k.bytes().map(|b| b.to_ascii_lowercase()))
}

/// [`key_hash`] of a key known to have no ASCII capital (no lowercasing per byte).
fn key_hash_of_lower(k: &str) -> u64 {
    fnv1a(k.bytes())
}

/// 64-bit FNV-1a.
#[inline]
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// One shared empty value (an `Arc<[u8]>` of length 0 still allocates its counts).
pub(crate) fn empty_value() -> Arc<[u8]> {
    static EMPTY: std::sync::LazyLock<Arc<[u8]>> = std::sync::LazyLock::new(|| Arc::from(&[][..]));
    EMPTY.clone()
}

/// The decimal text of `n` when it is small (0–255), one shared `Arc` per number:
/// `setvar` arithmetic (anomaly scores, counters) stays in this range.
pub(crate) fn small_int(n: i64) -> Option<Arc<[u8]>> {
    static SMALL: std::sync::LazyLock<Vec<Arc<[u8]>>> = std::sync::LazyLock::new(|| {
        (0..256)
            .map(|i: u32| Arc::from(i.to_string().as_bytes()))
            .collect()
    });
    usize::try_from(n).ok().and_then(|i| SMALL.get(i)).cloned()
}

/// `value` in an `Arc`, the shared one when empty.
pub(crate) fn value_arc(value: &[u8]) -> Arc<[u8]> {
    if value.is_empty() {
        empty_value()
    } else {
        Arc::from(value)
    }
}

/// Hasher for the key-hash index: the keys are already 64-bit hashes; one multiply
/// and shift spread them over the table's low bits.
#[derive(Default, Clone, Copy)]
struct MixHasher(u64);

impl std::hash::Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        let x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

type KeyIndex = HashMap<u64, u32, BuildHasherDefault<MixHasher>>;

/// A collection gets a key-hash index once it holds this many entries (TX under CRS
/// holds ~150; request headers ~10 are scanned faster than hashed).
const INDEX_MIN: usize = 24;

/// Insertion-ordered multimap with case-insensitive keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collection {
    entries: Vec<Entry>,
    /// `entries[i].khash`, packed: key lookups scan this instead of the 72-byte entries
    /// (CRS reads and writes TX, ~100 entries, hundreds of times a request).
    hashes: Vec<u64>,
    /// When present (from [`INDEX_MIN`] entries on), complete: each key hash maps to the
    /// index of its first entry. CRS looks TX variables up hundreds of times a request;
    /// scanning ~150 hashes each time showed in profiles.
    index: Option<KeyIndex>,
    /// Some key hash occurs more than once: `positions` scans instead of using `index`.
    dups: bool,
    /// A superset of the bytes of every key and of every value (bits are only added,
    /// until `clear`): when an operator needs bytes none of the values has, a rule
    /// answers "no match" for the whole collection without visiting its entries.
    keys_bytes: ByteSet,
    values_bytes: ByteSet,
}

/// The indexes [`Collection::positions`] yields.
pub(crate) enum Positions<'a> {
    /// At most one (the index knows every hash occurs once).
    One(Option<usize>),
    /// A scan over the packed hashes from `i`.
    Scan { hashes: &'a [u64], h: u64, i: usize },
}

impl Iterator for Positions<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        match self {
            Positions::One(o) => o.take(),
            Positions::Scan { hashes, h, i } => {
                while *i < hashes.len() {
                    let j = *i;
                    *i += 1;
                    if hashes[j] == *h {
                        return Some(j);
                    }
                }
                None
            }
        }
    }
}

impl Collection {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty collection with room for `n` entries (TX under CRS: growing it entry by
    /// entry copied it seven times a request).
    pub fn with_capacity(n: usize) -> Self {
        Collection {
            entries: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    fn position(&self, key: &str, h: u64) -> Option<usize> {
        self.positions(h)
            .find(|&i| self.entries[i].lkey.eq_ignore_ascii_case(key))
    }

    /// Indexes of the entries whose key hash is `h`, in order.
    pub fn positions(&self, h: u64) -> Positions<'_> {
        match &self.index {
            Some(ix) if !self.dups => Positions::One(ix.get(&h).map(|&i| i as usize)),
            _ => Positions::Scan {
                hashes: &self.hashes,
                h,
                i: 0,
            },
        }
    }

    fn push(&mut self, e: Entry) {
        let h = e.khash;
        self.keys_bytes = self.keys_bytes.union(e.kset);
        self.values_bytes = self.values_bytes.union(e.vset);
        self.hashes.push(h);
        self.entries.push(e);
        match &mut self.index {
            Some(ix) => {
                let at = (self.hashes.len() - 1) as u32;
                match ix.entry(h) {
                    // Keeps the first entry's index.
                    std::collections::hash_map::Entry::Occupied(_) => self.dups = true,
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(at);
                    }
                }
            }
            None if self.hashes.len() >= INDEX_MIN => self.reindex(),
            None => {}
        }
    }

    /// Rebuilds `index` and `dups` after entries moved (or builds them once the
    /// collection is large enough).
    fn reindex(&mut self) {
        if self.index.is_none() && self.hashes.len() < INDEX_MIN {
            return;
        }
        let ix = self.index.get_or_insert_with(|| {
            KeyIndex::with_capacity_and_hasher(4 * INDEX_MIN, Default::default())
        });
        ix.clear();
        self.dups = false;
        for (i, &h) in self.hashes.iter().enumerate() {
            match ix.entry(h) {
                std::collections::hash_map::Entry::Occupied(_) => self.dups = true,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i as u32);
                }
            }
        }
    }

    /// Adds a value, keeping earlier ones with the same key (ARGS, headers).
    pub fn add(&mut self, key: &str, value: &[u8]) {
        self.push(Self::entry(Arc::from(key), value_arc(value)));
    }

    /// An entry for `key` with an empty value, to be reused by [`Collection::push_keyed`]
    /// (MATCHED_VARS names repeat: building them once spares three allocations a match).
    pub fn keyed(key: Arc<str>) -> Entry {
        Self::entry(key, empty_value())
    }

    fn entry(key: Arc<str>, value: Arc<[u8]>) -> Entry {
        // The key's byte set tells whether it has a capital (no separate scan), and the
        // hash is taken over the lowercased key (no lowercasing per byte).
        let kset = ByteSet::of(key.as_bytes());
        let lkey: Arc<str> = if kset.intersects(&ByteSet::UPPER) {
            // Lowercased in its own allocation (no intermediate `String`).
            let mut l: Arc<str> = Arc::from(&*key);
            match Arc::get_mut(&mut l) {
                Some(s) => s.make_ascii_lowercase(),
                None => l = Arc::from(key.to_ascii_lowercase()),
            }
            l
        } else {
            key.clone()
        };
        Entry {
            khash: key_hash_of_lower(&lkey),
            kbytes: Arc::<[u8]>::from(key.clone()),
            kset,
            vset: ByteSet::of(&value),
            key,
            lkey,
            value,
        }
    }

    /// `set` for a key prepared by [`Collection::keyed`] (no key allocation); `shared`,
    /// when given, holds the same bytes as `value` and is stored instead of a copy.
    pub fn set_keyed(&mut self, proto: &Entry, value: &[u8], shared: Option<&Arc<[u8]>>) {
        if !self.replace(&proto.lkey, proto.khash, value, shared) {
            self.push_keyed(proto, shared.cloned().unwrap_or_else(|| value_arc(value)));
        }
    }

    /// Adds `value` under a key prepared by [`Collection::keyed`].
    pub fn push_keyed(&mut self, proto: &Entry, value: Arc<[u8]>) {
        let set = ByteSet::of(&value);
        self.push_keyed_set(proto, value, set);
    }

    /// [`Collection::push_keyed`] for a value whose bytes are known: `set` must hold
    /// every byte of `value` (MATCHED_VARS takes the set the rule's walk computed).
    pub fn push_keyed_set(&mut self, proto: &Entry, value: Arc<[u8]>, set: ByteSet) {
        self.push(Entry {
            key: proto.key.clone(),
            lkey: proto.lkey.clone(),
            khash: proto.khash,
            kbytes: proto.kbytes.clone(),
            value,
            kset: proto.kset,
            vset: set,
        });
    }

    /// Replaces every value under `key` with one value (TX semantics).
    pub fn set(&mut self, key: &str, value: &[u8]) {
        if !self.replace(key, key_hash(key), value, None) {
            self.add(key, value);
        }
    }

    /// Puts `value` in the first entry under `key` (hash `h`) and drops the later ones;
    /// false when there is none.
    fn replace(&mut self, key: &str, h: u64, value: &[u8], shared: Option<&Arc<[u8]>>) -> bool {
        let Some(pos) = self.position(key, h) else {
            return false;
        };
        if *self.entries[pos].value != *value {
            self.entries[pos].value = shared.cloned().unwrap_or_else(|| value_arc(value));
            self.entries[pos].vset = ByteSet::of(value);
            self.values_bytes = self.values_bytes.union(self.entries[pos].vset);
        }
        // Later entries under the same key: only possible when some hash repeats
        // (the index, when present, knows none does).
        if self.index.is_none() || self.dups {
            let mut removed = false;
            let mut i = pos + 1;
            while i < self.entries.len() {
                if self.hashes[i] == h && self.entries[i].lkey.eq_ignore_ascii_case(key) {
                    self.entries.remove(i);
                    self.hashes.remove(i);
                    removed = true;
                } else {
                    i += 1;
                }
            }
            if removed {
                self.reindex();
            }
        }
        true
    }

    pub fn remove(&mut self, key: &str) {
        let h = key_hash(key);
        self.entries
            .retain(|e| !(e.khash == h && e.lkey.eq_ignore_ascii_case(key)));
        self.hashes.clear();
        self.hashes.extend(self.entries.iter().map(|e| e.khash));
        self.reindex();
    }

    /// `get` for a key prepared by [`Collection::keyed`] (hash computed at load).
    pub fn get_keyed(&self, proto: &Entry) -> Option<&Arc<[u8]>> {
        self.position(&proto.lkey, proto.khash)
            .map(|p| &self.entries[p].value)
    }

    /// `get` for a key whose [`key_hash`] is `h` (macro keys hash at load).
    pub fn get_hashed(&self, key: &str, h: u64) -> Option<&Arc<[u8]>> {
        self.position(key, h).map(|p| &self.entries[p].value)
    }

    pub fn get(&self, key: &str) -> Option<&Arc<[u8]>> {
        let h = key_hash(key);
        self.position(key, h).map(|p| &self.entries[p].value)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// A superset of the bytes of every key (`names`) or of every value.
    pub fn bytes_of_all(&self, names: bool) -> ByteSet {
        if names {
            self.keys_bytes
        } else {
            self.values_bytes
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        // MATCHED_VARS is cleared before every rule and is mostly empty already.
        if self.entries.is_empty() {
            return;
        }
        self.entries.clear();
        self.hashes.clear();
        if let Some(ix) = &mut self.index {
            ix.clear();
        }
        self.dups = false;
        self.keys_bytes = ByteSet::EMPTY;
        self.values_bytes = ByteSet::EMPTY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries get the hash and lowercased key the slow path gives, for keys with and
    /// without capitals and non-ASCII bytes; `UPPER` is `A`-`Z`.
    #[test]
    fn entry_key_fields_match_the_slow_path() {
        assert_eq!(ByteSet::UPPER, ByteSet::range(b'A', b'Z'));
        let alphabet = "aZb_-9.Ké\u{ff}MzA@[`{".as_bytes();
        let mut seed: u64 = 0x853c_49e6_748f_ea9b;
        for _ in 0..5000 {
            let k = crate::test_support::random_input(alphabet, &mut seed, 16, 5);
            let k = String::from_utf8_lossy(&k).into_owned();
            let e = Collection::keyed(Arc::from(k.as_str()));
            assert_eq!(e.khash, key_hash(&k), "{k:?}");
            assert_eq!(&*e.lkey, k.to_ascii_lowercase(), "{k:?}");
            assert_eq!(&*e.key, k, "{k:?}");
            assert_eq!(e.kset, ByteSet::of(k.as_bytes()), "{k:?}");
        }
    }

    /// The key-hash index gives the same answers as a scan, and the byte unions cover
    /// every key and value, through adds (duplicate keys included), sets, removals and
    /// clears, below and above `INDEX_MIN`.
    #[test]
    fn index_agrees_with_a_scan() {
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let keys: Vec<String> = (0..60)
            .map(|i| {
                if i % 7 == 0 {
                    format!("Key{i}")
                } else {
                    format!("key{i}")
                }
            })
            .collect();
        let mut indexed = 0;
        for round in 0..20 {
            let mut c = Collection::new();
            for _ in 0..400 {
                let k = &keys[(next() % keys.len() as u64) as usize];
                let v = ["1", "x%", "<a>", "", "O'B"][(next() % 5) as usize];
                match next() % 10 {
                    0..=3 => c.set(k, v.as_bytes()),
                    4..=6 if round % 2 == 0 => c.add(k, v.as_bytes()),
                    4..=6 => c.set_keyed(&Collection::keyed(k.as_str().into()), v.as_bytes(), None),
                    7 | 8 => c.remove(k),
                    _ if next() % 20 == 0 => c.clear(),
                    _ => {}
                }
                indexed += usize::from(c.index.is_some() && c.len() >= INDEX_MIN);
                // The byte unions cover every key and value.
                for e in c.entries() {
                    assert_eq!(e.kset, ByteSet::of(e.key.as_bytes()));
                    assert_eq!(e.vset, ByteSet::of(&e.value));
                    assert!(e.kset.is_subset(&c.bytes_of_all(true)), "{}", e.key);
                    assert!(e.vset.is_subset(&c.bytes_of_all(false)), "{}", e.key);
                }
                for k in &keys {
                    let h = key_hash(k);
                    let scan: Vec<usize> = c
                        .entries()
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.khash == h)
                        .map(|(i, _)| i)
                        .collect();
                    assert_eq!(c.positions(h).collect::<Vec<_>>(), scan, "{k}");
                    let first = c
                        .entries()
                        .iter()
                        .find(|e| e.lkey.eq_ignore_ascii_case(k))
                        .map(|e| e.value.clone());
                    assert_eq!(c.get(k).cloned(), first, "{k}");
                }
            }
        }
        assert!(indexed > 1000, "the index was exercised ({indexed} steps)");
    }

    #[test]
    fn small_ints_are_their_decimal_text() {
        for n in [-1i64, 0, 7, 10, 99, 255, 256, i64::MAX, i64::MIN] {
            let got = small_int(n);
            if (0..256).contains(&n) {
                assert_eq!(got.as_deref(), Some(n.to_string().as_bytes()));
            } else {
                assert!(got.is_none());
            }
        }
        assert!(empty_value().is_empty());
    }

    #[test]
    fn case_insensitive_set_get_remove() {
        let mut c = Collection::new();
        c.add("Foo", b"1");
        c.add("foo", b"2");
        assert_eq!(c.get("FOO").map(|v| v.to_vec()), Some(b"1".to_vec()));
        c.set("fOo", b"3");
        assert_eq!(c.len(), 1);
        assert_eq!(&*c.entries()[0].key, "Foo");
        c.remove("FOO");
        assert_eq!(c.len(), 0);
    }
}
