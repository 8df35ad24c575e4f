//! Ordered, case-insensitive multimaps used for ARGS, headers, TX and friends.
//!
//! Values are `Arc`-shared so resolving a target for a rule clones pointers, not bytes.

use std::sync::Arc;

/// One key/value entry; `lkey` is the lowercased key used for lookups.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: Arc<str>,
    pub lkey: Arc<str>,
    /// Hash of `lkey`, so key lookups compare integers before strings.
    pub khash: u64,
    pub value: Arc<[u8]>,
}

/// Cheap hash of a (lowercased) key for [`Entry::khash`] and key selectors.
pub(crate) fn key_hash(k: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in k.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Insertion-ordered multimap with case-insensitive keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collection {
    entries: Vec<Entry>,
}

impl Collection {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value, keeping earlier ones with the same key (ARGS, headers).
    pub fn add(&mut self, key: &str, value: &[u8]) {
        let lkey: Arc<str> = if key.bytes().any(|b| b.is_ascii_uppercase()) {
            Arc::from(key.to_ascii_lowercase())
        } else {
            Arc::from(key)
        };
        self.entries.push(Entry {
            key: Arc::from(key),
            khash: key_hash(&lkey),
            lkey,
            value: Arc::from(value),
        });
    }

    /// Replaces every value under `key` with one value (TX semantics).
    pub fn set(&mut self, key: &str, value: &[u8]) {
        let lk = key.to_ascii_lowercase();
        let h = key_hash(&lk);
        if let Some(pos) = self
            .entries
            .iter()
            .position(|e| e.khash == h && *e.lkey == *lk)
        {
            self.entries[pos].value = Arc::from(value);
            let mut i = pos + 1;
            while i < self.entries.len() {
                if *self.entries[i].lkey == *lk {
                    self.entries.remove(i);
                } else {
                    i += 1;
                }
            }
        } else {
            self.add(key, value);
        }
    }

    pub fn remove(&mut self, key: &str) {
        let lk = key.to_ascii_lowercase();
        self.entries.retain(|e| *e.lkey != *lk);
    }

    pub fn get(&self, key: &str) -> Option<&Arc<[u8]>> {
        let lk = key.to_ascii_lowercase();
        let h = key_hash(&lk);
        self.entries
            .iter()
            .find(|e| e.khash == h && *e.lkey == *lk)
            .map(|e| &e.value)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
