//! The local cache of converted layers (`convert --cache DIR`): a layer converted once is taken
//! from here by every later run, instead of being converted again.
//!
//! ## The key
//!
//! A layer's blob depends on more than the layer: dedup against the layers below it decides
//! which chunks it stores, blob indexes count the lower blobs, and its own bootstrap names their
//! chunks. So an entry is keyed by the whole chain and every option that changes the output:
//!
//! ```text
//! key(layer n) = sha256("nydus-offline layer cache" · options · key(layer n-1) · diff_id(n))
//! ```
//!
//! where `options` ([`options_key`]) spells the program's version, the record version, the RAFS
//! version, chunk size, compressor, digester, the prefetch list (it lays out the blobs) and the
//! sparse-hole limit. Chaining the lower key, not just the lower diff ids, makes a layer's key
//! depend on the options its lower layers were converted with too.
//!
//! ## The directory
//!
//! ```text
//! DIR/entries/<key hex>/record   what later layers need ([`CachedLayer`], with its digest)
//!                      /blob     the Nydus blob, the layer's own bootstrap inlined
//!                      /used     empty; its mtime is when the entry was last used
//! DIR/tmp/…                      entries being written, and entries being removed
//! ```
//!
//! An entry is written whole in `tmp/`, fsynced, and renamed into `entries/` in one step: a
//! reader finds an entry complete or not at all, and a crash leaves only a directory in `tmp/`
//! (removed once it is an hour old, by a later run or by `cache prune`). Two runs
//! that convert the same layer at once both write it; the second rename fails on the first's
//! entry, which is kept (they are the same bytes). Removing an entry renames it into `tmp/`
//! first, so that no reader sees half of one. Entries never change once in place, except
//! `used`'s mtime.
//!
//! Nothing read from the cache is trusted: a record is checked whole before use (its digest,
//! every length, every index, [`record`]), and a blob is hard-linked or copied into the output
//! and its sha256 verified there. A damaged entry is a miss, with a warning, and is removed.

mod record;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use record::CachedLayer;

use crate::blob::chunk::BlobOptions;
use crate::common::error::{Error, Result};
use crate::common::hex::hex;
use crate::rafs::Prefetch;

/// The largest record read: far beyond a layer of millions of chunks and files.
const MAX_RECORD: u64 = 4 << 30;
/// A directory in `tmp/` older than this belongs to a run that died: entries are written there
/// only once their layer is converted, which takes a copy and an fsync.
const STALE: Duration = Duration::from_secs(3600);

/// The key of one cache entry ([module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// The key of the layer with `diff_id` converted with `options` over the layer whose key is
    /// `lower` (`None` for a bottom layer).
    pub fn of(lower: Option<&CacheKey>, diff_id: &str, options: &str) -> CacheKey {
        let mut h = Sha256::new();
        for part in [b"nydus-offline layer cache", options.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(lower.map_or([0; 32], |k| k.0));
        h.update(diff_id.as_bytes());
        CacheKey(h.finalize().into())
    }

    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

/// Every option that changes a converted layer, spelled once (part of each [`CacheKey`]).
pub fn options_key(blob: BlobOptions, prefetch: &Prefetch, max_sparse_holes: u64) -> String {
    let prefetch = match prefetch {
        Prefetch::Root => "/".to_string(),
        Prefetch::None => "none".to_string(),
        Prefetch::Paths(paths) => paths
            .iter()
            .map(|p| hex(&p.to_bytes()))
            .collect::<Vec<_>>()
            .join(","),
    };
    format!(
        "nydus-offline {} record {} rafs v{} chunk-size {} compressor {:?} \
         digester {:?} max-sparse-holes {max_sparse_holes} prefetch {prefetch}{}",
        env!("CARGO_PKG_VERSION"),
        record::VERSION,
        blob.fs_version.number(),
        blob.chunk_size,
        blob.compressor,
        blob.digester,
        // Named only when set, so that the keys of earlier entries stay what they were.
        match (blob.batch_size, blob.encrypt) {
            (0, false) => String::new(),
            (size, encrypt) => format!(" batch-size {size} encrypt {encrypt}"),
        },
    )
}

/// What [`LayerCache::load`] found.
pub enum Lookup {
    Miss,
    Hit(Box<CachedLayer>),
    /// An entry that cannot be used: what is wrong with it.
    Damaged(String),
}

/// One entry, as `cache ls` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct EntrySummary {
    pub key: String,
    /// The layer's place in its chain (1: a bottom layer).
    pub layer: Option<u32>,
    pub diff_id: Option<String>,
    pub blob: Option<String>,
    /// Bytes on disk (blob and record).
    pub size: u64,
    /// When it was stored or last used, in seconds since the epoch.
    pub last_used: u64,
    /// Why it cannot be used, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What [`LayerCache::prune`] removed and kept.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pruned {
    pub removed: usize,
    pub removed_bytes: u64,
    pub kept: usize,
    pub kept_bytes: u64,
}

/// A cache directory.
#[derive(Clone, Debug)]
pub struct LayerCache {
    dir: PathBuf,
    entries: PathBuf,
    tmp: PathBuf,
}

impl LayerCache {
    /// The cache at `dir`, created if it does not exist; what runs that died left in it goes.
    pub fn open(dir: &Path) -> Result<LayerCache> {
        let cache = LayerCache::at(dir);
        for d in [&cache.entries, &cache.tmp] {
            fs::create_dir_all(d).map_err(|e| cache_error(d, e))?;
        }
        cache.remove_stale();
        Ok(cache)
    }

    /// The cache at `dir`, which must be one (for `cache ls` and `cache prune`, which should
    /// never empty a directory that is something else).
    pub fn open_existing(dir: &Path) -> Result<LayerCache> {
        let cache = LayerCache::at(dir);
        if !cache.entries.is_dir() {
            return Err(Error::usage(format!(
                "{}: not a layer cache (no entries/ directory; convert --cache creates one)",
                dir.display()
            )));
        }
        fs::create_dir_all(&cache.tmp).map_err(|e| cache_error(&cache.tmp, e))?;
        Ok(cache)
    }

    fn at(dir: &Path) -> LayerCache {
        LayerCache {
            dir: dir.to_path_buf(),
            entries: dir.join("entries"),
            tmp: dir.join("tmp"),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, key: &CacheKey) -> PathBuf {
        self.entries.join(key.hex())
    }

    /// The blob file of the entry `key`.
    pub fn blob_path(&self, key: &CacheKey) -> PathBuf {
        self.entry(key).join("blob")
    }

    /// The entry `key`, its record checked ([`CachedLayer::decode`]) and its blob's size.
    pub fn load(&self, key: &CacheKey) -> Lookup {
        let path = self.entry(key).join("record");
        let bytes = match read_limited(&path) {
            Ok(bytes) => bytes,
            // Entries appear whole: one without its record lost it.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.entry(key).exists() => {
                return Lookup::Miss;
            }
            Err(e) => return Lookup::Damaged(format!("{}: {e}", path.display())),
        };
        let layer = match CachedLayer::decode(&bytes) {
            Ok(layer) => layer,
            Err(problem) => return Lookup::Damaged(format!("{}: {problem}", path.display())),
        };
        if layer.key != key.0 {
            return Lookup::Damaged(format!("{}: the record of another key", path.display()));
        }
        let blob = self.blob_path(key);
        match fs::metadata(&blob) {
            Ok(m) if m.len() == layer.blob_size => Lookup::Hit(Box::new(layer)),
            Ok(m) => Lookup::Damaged(format!(
                "{}: {} bytes, the record says {}",
                blob.display(),
                m.len(),
                layer.blob_size
            )),
            Err(e) => Lookup::Damaged(format!("{}: {e}", blob.display())),
        }
    }

    /// Note that the entry `key` was used now (for least-recently-used eviction).
    pub fn touch(&self, key: &CacheKey) {
        let used = self.entry(key).join("used");
        if let Ok(file) = File::options().append(true).create(true).open(&used) {
            let _ = file.set_modified(SystemTime::now());
        }
    }

    /// Remove the entry `key` (a damaged one, so that the layer converted again can take its
    /// place).
    pub fn discard(&self, key: &CacheKey) {
        self.remove(&self.entry(key));
    }

    /// Keep `layer`, whose blob is the file at `blob`. An entry for its key already there (another
    /// run was first) stays as it is.
    pub fn store(&self, layer: &CachedLayer, blob: &Path) -> Result<()> {
        let key = CacheKey(layer.key);
        let target = self.entry(&key);
        if target.exists() {
            return Ok(());
        }
        let tmp = self
            .tmp
            .join(format!("{}.{}.{}", key.hex(), std::process::id(), unique()));
        let written = self.write_entry(&tmp, layer, blob).and_then(|()| {
            match fs::rename(&tmp, &target) {
                Ok(()) => sync_dir(&self.entries),
                // Another run put the same entry in place first: theirs stays.
                Err(_) if target.exists() => Ok(()),
                Err(e) => Err(e),
            }
        });
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        written.map_err(|e| cache_error(&target, e))
    }

    /// The files of an entry, in `dir`, each on disk before this returns.
    fn write_entry(&self, dir: &Path, layer: &CachedLayer, blob: &Path) -> io::Result<()> {
        fs::create_dir(dir)?;
        let kept = dir.join("blob");
        // The output's blob, linked: the two names share the bytes, and nothing ever writes to
        // a finished blob. Copied when the cache is on another filesystem.
        if fs::hard_link(blob, &kept).is_err() {
            fs::copy(blob, &kept)?;
        }
        File::open(&kept)?.sync_all()?;
        let mut record = File::create(dir.join("record"))?;
        record.write_all(&layer.encode())?;
        record.sync_all()?;
        File::create(dir.join("used"))?.sync_all()?;
        sync_dir(dir)
    }

    /// Every entry, least recently used first.
    pub fn list(&self) -> Result<Vec<EntrySummary>> {
        let mut out = Vec::new();
        for (path, size, used) in self.scan()? {
            let key = file_name(&path);
            let mut summary = EntrySummary {
                key: key.clone(),
                layer: None,
                diff_id: None,
                blob: None,
                size,
                last_used: used.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                problem: None,
            };
            match self.load(&key_of(&key)) {
                Lookup::Hit(layer) => {
                    summary.layer = Some(layer.depth.saturating_add(1));
                    summary.diff_id = Some(layer.diff_id);
                    summary.blob = Some(layer.blob_digest);
                }
                Lookup::Damaged(problem) => summary.problem = Some(problem),
                Lookup::Miss => summary.problem = Some("no record".into()),
            }
            out.push(summary);
        }
        Ok(out)
    }

    /// Remove entries, least recently used first, until those left take at most `max_size`
    /// bytes (`None`: all of them); and what dead runs left in `tmp/`.
    pub fn prune(&self, max_size: Option<u64>) -> Result<Pruned> {
        self.remove_stale();
        let entries = self.scan()?;
        let mut total: u64 = entries.iter().map(|(_, size, _)| size).sum();
        let mut pruned = Pruned::default();
        for (path, size, _) in entries {
            if max_size.is_some_and(|max| total <= max) {
                pruned.kept += 1;
                pruned.kept_bytes += size;
                continue;
            }
            self.remove(&path);
            total -= size;
            pruned.removed += 1;
            pruned.removed_bytes += size;
        }
        Ok(pruned)
    }

    /// The entries: path, bytes on disk and last use, least recently used first.
    fn scan(&self) -> Result<Vec<(PathBuf, u64, SystemTime)>> {
        let read = fs::read_dir(&self.entries).map_err(|e| cache_error(&self.entries, e))?;
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| cache_error(&self.entries, e))?;
            let path = entry.path();
            if !is_key(&file_name(&path)) {
                continue;
            }
            let mut size = 0;
            let mut used = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH);
            for name in ["record", "blob", "used"] {
                if let Ok(m) = fs::metadata(path.join(name)) {
                    size += m.len();
                    if name == "used" {
                        used = m.modified().unwrap_or(used);
                    }
                }
            }
            out.push((path, size, used));
        }
        out.sort_by_key(|(path, _, used)| (*used, path.clone()));
        Ok(out)
    }

    /// Remove an entry: renamed into `tmp/` first, so that it leaves `entries/` in one step.
    fn remove(&self, path: &Path) {
        let aside = self.tmp.join(format!(
            "removed-{}.{}.{}",
            file_name(path),
            std::process::id(),
            unique()
        ));
        if fs::rename(path, &aside).is_ok() {
            let _ = fs::remove_dir_all(&aside);
        }
    }

    /// Remove what runs that died left in `tmp/`.
    fn remove_stale(&self) {
        let Ok(read) = fs::read_dir(&self.tmp) else {
            return;
        };
        let now = SystemTime::now();
        for entry in read.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE);
            if old {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Whether `name` is an entry's: a key in lowercase hex.
fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The key an entry's name (checked by [`is_key`]) spells.
fn key_of(name: &str) -> CacheKey {
    let mut key = [0u8; 32];
    for (i, pair) in name.as_bytes().chunks_exact(2).take(32).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
        key[i] = digit(pair[0]) << 4 | digit(pair[1]);
    }
    CacheKey(key)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A number no other call in this process returns, for temporary names.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The file at `path`, unless it is larger than any record.
fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_RECORD {
        return Err(io::Error::other(format!("{len} bytes, more than a record")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_RECORD).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Make a directory's new names durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn cache_error(path: &Path, e: io::Error) -> Error {
    Error::io(path, e).context("the layer cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache in a scratch directory, with one blob file to keep.
    fn scratch() -> (tempfile::TempDir, LayerCache, PathBuf, CachedLayer) {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(&dir.path().join("cache")).unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, vec![7u8; 4242]).unwrap();
        (dir, cache, blob, record::tests::sample())
    }

    #[test]
    fn an_entry_is_stored_once_and_found_whole() {
        let (_dir, cache, blob, layer) = scratch();
        let key = CacheKey(layer.key);
        assert!(matches!(cache.load(&key), Lookup::Miss));
        cache.store(&layer, &blob).unwrap();
        // A second run storing the same layer keeps the first's entry.
        cache.store(&layer, &blob).unwrap();
        match cache.load(&key) {
            Lookup::Hit(hit) => assert_eq!(hit.encode(), layer.encode()),
            _ => panic!("not a hit"),
        }
        assert_eq!(fs::read_dir(&cache.tmp).unwrap().count(), 0);
        let listed = cache.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, key.hex());
        assert_eq!(listed[0].layer, Some(2));
    }

    #[test]
    fn an_entry_filed_under_another_key_or_cut_short_is_damaged() {
        let (_dir, cache, blob, layer) = scratch();
        cache.store(&layer, &blob).unwrap();
        let key = CacheKey(layer.key);
        let other = CacheKey([9; 32]);
        fs::rename(cache.entry(&key), cache.entry(&other)).unwrap();
        assert!(matches!(cache.load(&other), Lookup::Damaged(p) if p.contains("another key")));
        cache.discard(&other);
        assert!(matches!(cache.load(&other), Lookup::Miss));

        cache.store(&layer, &blob).unwrap();
        fs::write(cache.blob_path(&key), b"short").unwrap();
        assert!(matches!(cache.load(&key), Lookup::Damaged(p) if p.contains("5 bytes")));
    }

    #[test]
    fn prune_removes_the_least_recently_used_first() {
        let (_dir, cache, blob, mut layer) = scratch();
        let mut keys = Vec::new();
        for n in 0..3u8 {
            layer.key = [n; 32];
            cache.store(&layer, &blob).unwrap();
            keys.push(CacheKey(layer.key));
            // Distinct times, whatever the filesystem's resolution.
            let used = File::options()
                .append(true)
                .open(cache.entry(&keys[n as usize]).join("used"))
                .unwrap();
            used.set_modified(UNIX_EPOCH + Duration::from_secs(1000 + u64::from(n)))
                .unwrap();
        }
        cache.touch(&keys[0]);
        let size = cache.list().unwrap()[0].size;
        let pruned = cache.prune(Some(2 * size)).unwrap();
        assert_eq!((pruned.removed, pruned.kept), (1, 2));
        assert!(
            matches!(cache.load(&keys[1]), Lookup::Miss),
            "the oldest went"
        );
        assert!(
            matches!(cache.load(&keys[0]), Lookup::Hit(_)),
            "touched: kept"
        );
        let pruned = cache.prune(None).unwrap();
        assert_eq!((pruned.removed, pruned.kept), (2, 0));
        assert!(cache.list().unwrap().is_empty());
    }

    #[test]
    fn keys_chain_and_options_count() {
        let a = CacheKey::of(None, "sha256:a", "o");
        assert_ne!(a, CacheKey::of(None, "sha256:a", "p"));
        assert_ne!(a, CacheKey::of(None, "sha256:b", "o"));
        let above = CacheKey::of(Some(&a), "sha256:b", "o");
        assert_ne!(above, CacheKey::of(None, "sha256:b", "o"));
        assert_ne!(
            above,
            CacheKey::of(Some(&CacheKey([0; 32])), "sha256:b", "o")
        );
        assert_eq!(above, CacheKey::of(Some(&a), "sha256:b", "o"));
        assert!(is_key(&a.hex()));
        assert_eq!(key_of(&a.hex()), a);
    }
}
