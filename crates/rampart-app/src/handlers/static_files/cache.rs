//! The open-file cache: small hot files kept as `Bytes` with their response headers prebuilt.
//!
//! Every hit is re-validated with one `stat` of the file (device, inode, size, mtime and ctime
//! must all be unchanged), so a changed, replaced or deleted file is never served stale and
//! there is no expiry timer to tune. Memory is bounded by entry count and by bytes, both split
//! evenly over the shards (bytes are charged up front for the compressed variants an entry may
//! grow), so eviction only ever takes the one lock it already holds.

use std::collections::HashMap;
use std::fs::Metadata;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::filters::compress::{self, CompressSettings, Encoding};

const SHARDS: usize = 16;
/// Bookkeeping charged per entry on top of its bytes.
const ENTRY_OVERHEAD: usize = 512;

/// Identity of a file's current contents, as cheap to get as one `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    /// The stamp of `meta` (ctime catches in-place rewrites that restore the mtime).
    #[cfg(unix)]
    pub fn of(meta: &Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    /// The stamp of `meta`.
    #[cfg(not(unix))]
    pub fn of(meta: &Metadata) -> Stamp {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Stamp {
            dev: 0,
            ino: 0,
            len: meta.len(),
            mtime_ns,
            ctime_ns: 0,
        }
    }
}

/// Validators and type of one file, precomputed as header values.
#[derive(Debug, Clone)]
pub struct FileHeaders {
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// nginx-style `"<mtime hex>-<len hex>"`.
    pub etag: HeaderValue,
    /// `Last-Modified`.
    pub last_modified: HeaderValue,
    /// Last-Modified in Unix seconds, for date preconditions.
    pub mtime: u64,
}

impl FileHeaders {
    /// Headers for a file; `suffix` distinguishes a sidecar's tag from the identity one.
    pub fn new(meta: &Metadata, content_type: &str, suffix: &str) -> FileHeaders {
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let mtime = modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let etag = format!("\"{mtime:x}-{:x}{suffix}\"", meta.len());
        FileHeaders {
            content_type: HeaderValue::from_str(content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
            etag: HeaderValue::from_str(&etag)
                .unwrap_or_else(|_| HeaderValue::from_static("\"0\"")),
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(modified))
                .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT")),
            mtime,
        }
    }
}

/// A compressed form of a cached file.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The compressed bytes.
    pub data: Bytes,
    /// `W/` + the identity tag.
    pub etag: HeaderValue,
    /// Its `Content-Length`.
    pub content_length: HeaderValue,
}

/// One cached file.
#[derive(Debug)]
pub struct CachedFile {
    root: PathBuf,
    rel: Box<str>,
    /// The file (`stat`ed on every hit).
    pub path: PathBuf,
    /// What the contents were when read.
    pub stamp: Stamp,
    /// The parent directory's stamp, when sidecars were looked for (a sidecar appearing or
    /// disappearing changes it).
    pub dir_stamp: Option<Stamp>,
    /// Which `.br`/`.zst`/`.gz` sidecars existed (bit `Encoding::index`).
    pub sidecars: u8,
    /// Whether the file's canonical path is under the root.
    pub inside_root: bool,
    /// The contents.
    pub data: Bytes,
    /// Validators and type.
    pub headers: FileHeaders,
    /// Prebuilt `Content-Length`.
    pub content_length: HeaderValue,
    /// Whether the type is worth compressing.
    pub compressible: bool,
    variants: [OnceLock<Variant>; 3],
    /// Bytes of variants stored so far (bounded by `data.len()`, charged at insertion).
    variant_bytes: AtomicUsize,
    referenced: AtomicBool,
    /// Directory generations when cached (inotify); `None` = validate with `stat`.
    pub watch: Option<super::watch::WatchStamp>,
    /// Headers of the full identity answer, without and with `Vary` (routes sharing the cache
    /// may differ in compression), built on first use.
    full_headers: [OnceLock<HeaderMap>; 2],
}

impl CachedFile {
    /// Builds an entry for `rel` (the normalized request path, keyed with `root`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        root: &Path,
        rel: &str,
        path: PathBuf,
        meta: &Metadata,
        data: Bytes,
        inside_root: bool,
        sidecars: u8,
        dir_stamp: Option<Stamp>,
        content_type: &str,
    ) -> CachedFile {
        CachedFile {
            root: root.to_path_buf(),
            rel: rel.into(),
            path,
            stamp: Stamp::of(meta),
            dir_stamp,
            sidecars,
            inside_root,
            content_length: HeaderValue::from(data.len()),
            compressible: compress::is_compressible(content_type.as_bytes()),
            headers: FileHeaders::new(meta, content_type, ""),
            data,
            variants: Default::default(),
            variant_bytes: AtomicUsize::new(0),
            referenced: AtomicBool::new(true),
            watch: None,
            full_headers: Default::default(),
        }
    }

    /// Attaches the directory generations taken before the contents were read.
    pub fn with_watch(mut self, watch: Option<super::watch::WatchStamp>) -> Self {
        self.watch = watch;
        self
    }

    /// This file compressed with `enc`, built once and kept when it fits the entry's budget.
    /// `None` when compressing does not make it smaller (or fails).
    pub fn variant(&self, s: &CompressSettings, enc: Encoding) -> Option<Variant> {
        let cell = &self.variants[enc.index()];
        if let Some(v) = cell.get() {
            return Some(v.clone());
        }
        let data = compress::compress_bytes(s, enc, &self.data).ok()?;
        if data.len() >= self.data.len() {
            return None;
        }
        let mut etag = Vec::with_capacity(self.headers.etag.len() + 2);
        etag.extend_from_slice(b"W/");
        etag.extend_from_slice(self.headers.etag.as_bytes());
        let v = Variant {
            content_length: HeaderValue::from(data.len()),
            etag: HeaderValue::from_bytes(&etag).ok()?,
            data,
        };
        let fits = self
            .variant_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + v.data.len() <= self.data.len()).then_some(used + v.data.len())
            })
            .is_ok();
        if fits {
            let _ = cell.set(v.clone());
        }
        Some(v)
    }

    /// The prebuilt headers of a full identity answer (`build` runs once per `vary`).
    pub fn full_headers(&self, vary: bool, build: impl FnOnce() -> HeaderMap) -> &HeaderMap {
        self.full_headers[usize::from(vary)].get_or_init(build)
    }

    fn charge(&self) -> usize {
        // Identity bytes + room for the compressed variants + bookkeeping.
        let variants = if self.compressible {
            self.data.len()
        } else {
            0
        };
        self.data.len() + variants + ENTRY_OVERHEAD + self.path.as_os_str().len() * 2
    }
}

/// The hash already is the key: no second hashing.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, Arc<CachedFile>, BuildHasherDefault<IdHasher>>;

/// One lock's worth of entries with its own byte budget, so eviction never crosses locks.
#[derive(Debug, Default)]
struct Shard {
    map: Map,
    bytes: usize,
}

/// Open-file/metadata cache for hot small files.
#[derive(Debug)]
pub struct FileCache {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    max_entries_per_shard: usize,
    max_bytes_per_shard: usize,
    max_file_size: u64,
    watcher: Option<super::watch::DirWatcher>,
}

impl Default for FileCache {
    /// 16k entries, 64 MiB, files up to 64 KiB.
    fn default() -> Self {
        FileCache::new(16 * 1024, 64 * 1024 * 1024, 64 * 1024)
    }
}

impl FileCache {
    /// A cache of at most `max_entries` files and about `max_bytes` of contents, holding files
    /// of at most `max_file_size` bytes. `max_entries == 0` disables caching.
    pub fn new(max_entries: usize, max_bytes: usize, max_file_size: u64) -> FileCache {
        FileCache {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            max_entries_per_shard: max_entries.div_ceil(SHARDS),
            max_bytes_per_shard: max_bytes / SHARDS,
            max_file_size: if max_entries == 0 { 0 } else { max_file_size },
            watcher: if max_entries == 0 {
                None
            } else {
                super::watch::DirWatcher::new()
            },
        }
    }

    /// Starts change detection for `file` (before reading it); `None` = use `stat`.
    pub fn watch(&self, file: &Path) -> Option<super::watch::WatchStamp> {
        self.watcher.as_ref()?.watch(file)
    }

    /// True when `stamp` proves nothing changed; false means "check with `stat`".
    pub fn unchanged(&self, stamp: &super::watch::WatchStamp) -> bool {
        self.watcher.as_ref().is_some_and(|w| w.unchanged(stamp))
    }

    /// A cache that keeps nothing (files are still served, just read every time).
    pub fn disabled() -> FileCache {
        FileCache::new(0, 0, 0)
    }

    /// Largest file kept in memory.
    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().map_or(0, |s| s.map.len()))
            .sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged now (contents, room for compressed variants, bookkeeping).
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().map_or(0, |s| s.bytes))
            .sum()
    }

    fn key(&self, root: &Path, rel: &str) -> (u64, usize) {
        // The request path comes from clients, so it goes through the keyed SipHash (no
        // crafted collisions); the root comes from the config and only needs telling roots
        // apart, so a multiply-rotate pass over its words replaces SipHash-ing its ~50 bytes on
        // every lookup (that was most of the lookup's cost).
        let mut h = self.hasher.build_hasher();
        h.write_u64(fold_words(root.as_os_str().as_encoded_bytes()));
        h.write(rel.as_bytes());
        let h = h.finish();
        (h, ((h >> 32) as usize) % SHARDS)
    }

    /// The entry for `rel` under `root`, unvalidated (the caller `stat`s).
    pub fn get(&self, root: &Path, rel: &str) -> Option<Arc<CachedFile>> {
        if self.max_file_size == 0 {
            return None;
        }
        let (h, shard) = self.key(root, rel);
        let shard = self.shards[shard].read().ok()?;
        let e = shard.map.get(&h)?;
        if &*e.rel != rel || e.root != root {
            return None;
        }
        if !e.referenced.load(Ordering::Relaxed) {
            e.referenced.store(true, Ordering::Relaxed);
        }
        Some(e.clone())
    }

    /// Caches `entry` under `rel` (its own path, or the directory request that led to it).
    pub fn insert(&self, root: &Path, rel: &str, entry: Arc<CachedFile>) {
        let charge = entry.charge();
        if self.max_file_size == 0 || charge > self.max_bytes_per_shard {
            return;
        }
        let (h, shard) = self.key(root, rel);
        let Ok(mut shard) = self.shards[shard].write() else {
            return;
        };
        let entry = if &*entry.rel == rel && entry.root == root {
            entry
        } else {
            // An alias key needs its own key fields (shares the bytes).
            Arc::new(CachedFile {
                root: root.to_path_buf(),
                rel: rel.into(),
                path: entry.path.clone(),
                stamp: entry.stamp,
                dir_stamp: entry.dir_stamp,
                sidecars: entry.sidecars,
                inside_root: entry.inside_root,
                data: entry.data.clone(),
                headers: entry.headers.clone(),
                content_length: entry.content_length.clone(),
                compressible: entry.compressible,
                variants: Default::default(),
                variant_bytes: AtomicUsize::new(0),
                referenced: AtomicBool::new(true),
                watch: entry.watch.clone(),
                full_headers: Default::default(),
            })
        };
        if let Some(old) = shard.map.insert(h, entry) {
            shard.bytes -= old.charge();
        }
        shard.bytes += charge;
        while shard.map.len() > self.max_entries_per_shard || shard.bytes > self.max_bytes_per_shard
        {
            let Some(victim) = pick_victim(&shard.map, h) else {
                break;
            };
            if let Some(old) = shard.map.remove(&victim) {
                shard.bytes -= old.charge();
            }
        }
    }

    /// Drops the entry for `rel` (e.g. after it failed validation).
    pub fn remove(&self, root: &Path, rel: &str) {
        let (h, shard) = self.key(root, rel);
        if let Ok(mut shard) = self.shards[shard].write() {
            if shard
                .map
                .get(&h)
                .is_some_and(|e| &*e.rel == rel && e.root == root)
            {
                if let Some(old) = shard.map.remove(&h) {
                    shard.bytes -= old.charge();
                }
            }
        }
    }
}

/// A fast unkeyed hash of trusted bytes (FxHash's mixing step, eight bytes at a time).
fn fold_words(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let mut w = [0u8; 8];
    w[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K)
}

/// CLOCK-style: the first entry not used since the last sweep (clearing marks on the way);
/// never the newly inserted `keep` (it fits the budget by itself).
fn pick_victim(map: &Map, keep: u64) -> Option<u64> {
    let mut fallback = None;
    for (&k, e) in map.iter() {
        if k == keep {
            continue;
        }
        if !e.referenced.swap(false, Ordering::Relaxed) {
            return Some(k);
        }
        fallback.get_or_insert(k);
    }
    fallback
}

impl std::fmt::Debug for IdHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdHasher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path, name: &str, data: &[u8]) -> Arc<CachedFile> {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap_or_else(|e| panic!("{e}"));
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(CachedFile::new(
            dir,
            &format!("/{name}"),
            path,
            &meta,
            Bytes::copy_from_slice(data),
            true,
            0,
            None,
            "application/octet-stream",
        ))
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let dir = std::env::temp_dir().join(format!("rampart-cache-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let cache = FileCache::new(SHARDS, 1 << 20, 4096);
        for i in 0..200 {
            let name = format!("f{i}");
            cache.insert(&dir, &format!("/{name}"), entry(&dir, &name, b"0123456789"));
        }
        assert!(cache.len() <= SHARDS, "{}", cache.len());
        let budget = SHARDS * 3 * (ENTRY_OVERHEAD + 400);
        let small = FileCache::new(1000, budget, 4096);
        for i in 0..50 {
            let name = format!("g{i}");
            small.insert(&dir, &format!("/{name}"), entry(&dir, &name, &[b'x'; 100]));
        }
        assert!(small.bytes() <= budget, "{}", small.bytes());
        // Every entry costs at least its overhead and its 100 bytes, so the byte budget
        // bounds the count (how entries spread over shards depends on the random hasher).
        assert!(
            small.len() <= budget / (ENTRY_OVERHEAD + 100),
            "{}",
            small.len()
        );
        assert!(!small.is_empty());
        let e = entry(&dir, "k", b"abc");
        small.insert(&dir, "/k", e);
        assert!(small.get(&dir, "/k").is_some());
        assert!(small.get(&dir, "/nope").is_none());
        assert!(small.get(Path::new("/other"), "/k").is_none());
        small.remove(&dir, "/k");
        assert!(small.get(&dir, "/k").is_none());
        let off = FileCache::disabled();
        off.insert(&dir, "/k", entry(&dir, "k", b"abc"));
        assert!(off.get(&dir, "/k").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
