//! Ordered, case-insensitive multimaps used for ARGS, headers, TX and friends.
//!
//! Values are `Arc`-shared so resolving a target for a rule clones pointers, not bytes.
//! Each entry carries a hash of its lowercased key so lookups compare integers first.

use crate::byteset::ByteSet;
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
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in k.as_bytes() {
        h = (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x100_0000_01b3);
    }
    h
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

/// Insertion-ordered multimap with case-insensitive keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collection {
    entries: Vec<Entry>,
    /// `entries[i].khash`, packed: key lookups scan this instead of the 72-byte entries
    /// (CRS reads and writes TX, ~100 entries, hundreds of times a request).
    hashes: Vec<u64>,
}

impl Collection {
    pub fn new() -> Self {
        Self::default()
    }

    fn position(&self, key: &str, h: u64) -> Option<usize> {
        self.positions(h)
            .find(|&i| self.entries[i].lkey.eq_ignore_ascii_case(key))
    }

    /// Indexes of the entries whose key hash is `h`, in order.
    pub fn positions(&self, h: u64) -> impl Iterator<Item = usize> + '_ {
        self.hashes
            .iter()
            .enumerate()
            .filter(move |(_, &x)| x == h)
            .map(|(i, _)| i)
    }

    fn push(&mut self, e: Entry) {
        self.hashes.push(e.khash);
        self.entries.push(e);
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
        let lkey: Arc<str> = if key.bytes().any(|b| b.is_ascii_uppercase()) {
            Arc::from(key.to_ascii_lowercase())
        } else {
            key.clone()
        };
        Entry {
            khash: key_hash(&key),
            kbytes: Arc::<[u8]>::from(key.clone()),
            kset: ByteSet::of(key.as_bytes()),
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
        self.push(Entry {
            vset: ByteSet::of(&value),
            value,
            ..proto.clone()
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
        }
        let mut i = pos + 1;
        while i < self.entries.len() {
            if self.hashes[i] == h && self.entries[i].lkey.eq_ignore_ascii_case(key) {
                self.entries.remove(i);
                self.hashes.remove(i);
            } else {
                i += 1;
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
    }

    /// `get` for a key prepared by [`Collection::keyed`] (hash computed at load).
    pub fn get_keyed(&self, proto: &Entry) -> Option<&Arc<[u8]>> {
        self.position(&proto.lkey, proto.khash)
            .map(|p| &self.entries[p].value)
    }

    pub fn get(&self, key: &str) -> Option<&Arc<[u8]>> {
        let h = key_hash(key);
        self.position(key, h).map(|p| &self.entries[p].value)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.hashes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
