//! A layer's entries packed into one byte buffer, for the few places that must go over a layer
//! twice: the merged tree takes a layer's whiteouts before its other entries, and platforms that
//! share lower layers rebuild the merged tree from them.
//!
//! A [`LayerEntry`] of a layer of 200,000 files takes about 200 bytes with its allocations; packed
//! (the path as the part it does not share with the previous entry's path, numbers as LEB128
//! varints, a file's chunks as deltas from a run) it takes a few dozen, and gives back exactly the
//! entry it was given.

use std::collections::BTreeMap;

use crate::blob::chunk::{ChunkIndex, FileData};
use crate::common::path::ImagePath;
use crate::layer::entry::{EntryKind, InodeData, LayerEntry, Metadata};

// Kind tags.
const DIR: u8 = 0;
const FILE: u8 = 1;
const SYMLINK: u8 = 2;
const CHAR_DEVICE: u8 = 3;
const BLOCK_DEVICE: u8 = 4;
const FIFO: u8 = 5;
const SOCKET: u8 = 6;
const HARDLINK: u8 = 7;

/// A layer's entries, in order, packed.
#[derive(Clone, Debug, Default)]
pub struct PackedEntries {
    bytes: Vec<u8>,
    /// The last entry's path, which the next one is written against.
    last_path: Vec<u8>,
    count: usize,
    /// Bytes of all the entries' last path components (what a tree stores of them).
    name_bytes: usize,
    whiteouts: bool,
}

impl PackedEntries {
    pub fn new() -> PackedEntries {
        PackedEntries::default()
    }

    /// Append one entry.
    pub fn push(&mut self, entry: &LayerEntry) {
        let path = entry.path.joined();
        let shared = path
            .iter()
            .zip(&self.last_path)
            .take_while(|(a, b)| a == b)
            .count();
        put(&mut self.bytes, shared as u64);
        put_bytes(&mut self.bytes, &path[shared..]);
        self.last_path.truncate(shared);
        self.last_path.extend_from_slice(&path[shared..]);
        let out = &mut self.bytes;
        match &entry.kind {
            EntryKind::Inode(InodeData::Dir) => out.push(DIR),
            EntryKind::Inode(InodeData::File(f)) => {
                out.push(FILE);
                put(out, f.size);
                put(out, f.chunks.len() as u64);
                // Each chunk as its distance from the one after the previous chunk: 0 in a run.
                let mut next = 0i64;
                for &c in &f.chunks {
                    put(out, zigzag(i64::from(c) - next));
                    next = i64::from(c) + 1;
                }
            }
            EntryKind::Inode(InodeData::Symlink(target)) => {
                out.push(SYMLINK);
                put_bytes(out, target);
            }
            EntryKind::Inode(InodeData::CharDevice { major, minor }) => {
                out.push(CHAR_DEVICE);
                put(out, u64::from(*major));
                put(out, u64::from(*minor));
            }
            EntryKind::Inode(InodeData::BlockDevice { major, minor }) => {
                out.push(BLOCK_DEVICE);
                put(out, u64::from(*major));
                put(out, u64::from(*minor));
            }
            EntryKind::Inode(InodeData::Fifo) => out.push(FIFO),
            EntryKind::Inode(InodeData::Socket) => out.push(SOCKET),
            EntryKind::Hardlink(target) => {
                out.push(HARDLINK);
                put_bytes(out, target.joined());
            }
        }
        let m = &entry.meta;
        put(out, u64::from(m.mode));
        put(out, u64::from(m.uid));
        put(out, u64::from(m.gid));
        put(out, zigzag(m.mtime));
        put(out, u64::from(m.mtime_nsec));
        put(out, m.xattrs.len() as u64);
        for (name, value) in &m.xattrs {
            put_bytes(out, name);
            put_bytes(out, value);
        }
        self.count += 1;
        self.name_bytes += entry.path.file_name().map_or(0, <[u8]>::len);
        self.whiteouts |= entry.is_whiteout();
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of all the entries' last path components.
    pub fn name_bytes(&self) -> usize {
        self.name_bytes
    }

    /// Whether any entry is a whiteout.
    pub fn has_whiteouts(&self) -> bool {
        self.whiteouts
    }

    /// The entries, in the order they were pushed, each as it was.
    pub fn iter(&self) -> impl Iterator<Item = LayerEntry> + '_ {
        let mut at = 0;
        let mut path = Vec::new();
        std::iter::from_fn(move || {
            (at < self.bytes.len())
                .then(|| read_entry(&self.bytes, &mut at, &mut path).expect("packed by push"))
        })
    }

    /// The packed bytes, to store them (the layer cache) and give them back to
    /// [`from_bytes`](Self::from_bytes).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Entries packed elsewhere (read back from a file, so not trusted): every entry is decoded
    /// once and checked (lengths within the bytes, numbers in range, paths normalised, chunk
    /// indexes below `chunks`); the problem if one is not.
    pub fn from_bytes(bytes: Vec<u8>, chunks: usize) -> Result<PackedEntries, String> {
        let mut packed = PackedEntries::default();
        let (mut at, mut path) = (0, Vec::new());
        while at < bytes.len() {
            let entry = read_entry(&bytes, &mut at, &mut path).ok_or_else(|| {
                format!("packed entry {} is cut short or malformed", packed.count)
            })?;
            let in_table = match &entry.kind {
                EntryKind::Inode(InodeData::File(f)) => {
                    f.chunks.iter().all(|&c| (c as usize) < chunks)
                }
                _ => true,
            };
            if !in_table {
                return Err(format!(
                    "packed entry {} ({}) names a chunk beyond the chunk table",
                    packed.count,
                    entry.path.to_bytes().escape_ascii()
                ));
            }
            packed.count += 1;
            packed.name_bytes += entry.path.file_name().map_or(0, <[u8]>::len);
            packed.whiteouts |= entry.is_whiteout();
        }
        packed.bytes = bytes;
        Ok(packed)
    }

    /// Give back the room the buffer grew beyond its content.
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.last_path = Vec::new();
    }
}

/// The entry at `*at`, moving `*at` past it; `path` holds the previous entry's path. `None` if
/// the bytes do not hold a whole, well-formed entry there (only bytes from outside can fail).
fn read_entry(bytes: &[u8], at: &mut usize, path: &mut Vec<u8>) -> Option<LayerEntry> {
    let shared = usize::try_from(get(bytes, at)?).ok()?;
    if shared > path.len() {
        return None;
    }
    path.truncate(shared);
    path.extend_from_slice(get_bytes(bytes, at)?);
    let tag = *bytes.get(*at)?;
    *at += 1;
    let u32_at = |at: &mut usize| get(bytes, at).and_then(|v| u32::try_from(v).ok());
    let kind = match tag {
        DIR => EntryKind::Inode(InodeData::Dir),
        FILE => {
            let size = get(bytes, at)?;
            let count = usize::try_from(get(bytes, at)?).ok()?;
            // Each chunk takes at least a byte: a count beyond the bytes left is a lie.
            let mut chunks = Vec::with_capacity(count.min(bytes.len() - *at));
            let mut next = 0i64;
            for _ in 0..count {
                let c = next.checked_add(unzigzag(get(bytes, at)?))?;
                chunks.push(ChunkIndex::try_from(c).ok()?);
                next = c + 1;
            }
            EntryKind::Inode(InodeData::File(FileData { size, chunks }))
        }
        SYMLINK => EntryKind::Inode(InodeData::Symlink(get_bytes(bytes, at)?.to_vec())),
        CHAR_DEVICE | BLOCK_DEVICE => {
            let major = u32_at(at)?;
            let minor = u32_at(at)?;
            EntryKind::Inode(if tag == CHAR_DEVICE {
                InodeData::CharDevice { major, minor }
            } else {
                InodeData::BlockDevice { major, minor }
            })
        }
        FIFO => EntryKind::Inode(InodeData::Fifo),
        SOCKET => EntryKind::Inode(InodeData::Socket),
        HARDLINK => EntryKind::Hardlink(normalised(get_bytes(bytes, at)?)?),
        _ => return None,
    };
    let mode = u32_at(at)?;
    let uid = u32_at(at)?;
    let gid = u32_at(at)?;
    let mtime = unzigzag(get(bytes, at)?);
    let mtime_nsec = u32_at(at)?;
    let mut xattrs = BTreeMap::new();
    for _ in 0..get(bytes, at)? {
        let name = get_bytes(bytes, at)?.to_vec();
        xattrs.insert(name, get_bytes(bytes, at)?.to_vec());
    }
    Some(LayerEntry {
        path: normalised(path)?,
        kind,
        meta: Metadata {
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec,
            xattrs,
        },
    })
}

/// The path these normalised bytes spell; `None` if they are not normalised (bytes from
/// outside: a path that parses to other bytes would break the trees' invariants).
fn normalised(joined: &[u8]) -> Option<ImagePath> {
    ImagePath::parse(joined)
        .ok()
        .filter(|p| p.joined() == joined)
}

/// Append `v` as a LEB128 varint.
fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append a length and the bytes.
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The varint at `*at`; `None` past the end or beyond 64 bits.
fn get(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*at)?;
        *at += 1;
        if shift > 63 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
}

/// The length-prefixed bytes at `*at`; `None` if they run past the end.
fn get_bytes<'b>(bytes: &'b [u8], at: &mut usize) -> Option<&'b [u8]> {
    let len = usize::try_from(get(bytes, at)?).ok()?;
    let b = bytes.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some(b)
}

/// Signed to unsigned, small magnitudes small.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8], kind: EntryKind, meta: Metadata) -> LayerEntry {
        LayerEntry {
            path: ImagePath::parse(path).unwrap(),
            kind,
            meta,
        }
    }

    #[test]
    fn entries_come_back_exactly() {
        let mut xattrs = BTreeMap::new();
        xattrs.insert(b"user.\xff".to_vec(), vec![0, 1, 255]);
        xattrs.insert(b"security.capability".to_vec(), vec![]);
        let full = Metadata {
            mode: 0o7777,
            uid: u32::MAX,
            gid: 70_000,
            mtime: i64::MIN,
            mtime_nsec: 999_999_999,
            xattrs,
        };
        let plain = Metadata {
            mode: 0o644,
            mtime: 1_700_000_000,
            ..Metadata::default()
        };
        let file = |chunks: Vec<ChunkIndex>| {
            EntryKind::Inode(InodeData::File(FileData {
                size: u64::MAX,
                chunks,
            }))
        };
        let entries = vec![
            entry(b"", EntryKind::Inode(InodeData::Dir), plain.clone()),
            entry(b"usr", EntryKind::Inode(InodeData::Dir), full.clone()),
            entry(b"usr/lib/a", file(vec![]), plain.clone()),
            entry(b"usr/lib/ab", file(vec![5, 6, 7]), full.clone()),
            entry(
                b"usr/lib/b",
                file(vec![u32::MAX, 0, 3, 3, 2]),
                plain.clone(),
            ),
            entry(
                b"usr/lib/.wh.x",
                EntryKind::Inode(InodeData::Symlink(b"../\xfe".to_vec())),
                plain.clone(),
            ),
            entry(
                b"u",
                EntryKind::Inode(InodeData::CharDevice {
                    major: u32::MAX,
                    minor: 0,
                }),
                full.clone(),
            ),
            entry(
                b"u/\xff",
                EntryKind::Inode(InodeData::BlockDevice { major: 8, minor: 1 }),
                plain.clone(),
            ),
            entry(b"fifo", EntryKind::Inode(InodeData::Fifo), plain.clone()),
            entry(b"sock", EntryKind::Inode(InodeData::Socket), full.clone()),
            entry(
                b"link",
                EntryKind::Hardlink(ImagePath::parse(b"usr/lib/ab").unwrap()),
                Metadata {
                    mtime: -1,
                    ..plain.clone()
                },
            ),
        ];
        let mut packed = PackedEntries::new();
        entries.iter().for_each(|e| packed.push(e));
        packed.shrink_to_fit();
        assert_eq!(packed.iter().collect::<Vec<_>>(), entries);
        assert_eq!(packed.len(), entries.len());
        assert!(packed.has_whiteouts());
        assert_eq!(
            packed.name_bytes(),
            entries
                .iter()
                .filter_map(|e| e.path.file_name())
                .map(<[u8]>::len)
                .sum::<usize>()
        );

        // Bytes from outside: the same come back whole; every cut and every flipped byte is
        // an error or other valid entries, never a panic.
        let bytes = packed.as_bytes().to_vec();
        let back = PackedEntries::from_bytes(bytes.clone(), u32::MAX as usize + 1).unwrap();
        assert_eq!(back.iter().collect::<Vec<_>>(), entries);
        assert!(back.has_whiteouts());
        assert_eq!(back.name_bytes(), packed.name_bytes());
        assert!(
            PackedEntries::from_bytes(bytes.clone(), 7).is_err(),
            "chunk 7 is beyond"
        );
        for cut in 0..bytes.len() {
            let _ = PackedEntries::from_bytes(bytes[..cut].to_vec(), 100);
        }
        for at in 0..bytes.len() {
            for bit in [0x01, 0x80, 0xff] {
                let mut flipped = bytes.clone();
                flipped[at] ^= bit;
                if let Ok(p) = PackedEntries::from_bytes(flipped, 100) {
                    assert_eq!(p.iter().count(), p.len());
                }
            }
        }

        // A typical small file after its neighbour: a few dozen bytes, not a couple of hundred.
        let small = |path: &[u8], chunk| {
            let data = InodeData::File(FileData {
                size: 3000,
                chunks: vec![chunk],
            });
            entry(path, EntryKind::Inode(data), plain.clone())
        };
        let mut packed = PackedEntries::new();
        packed.push(&small(b"usr/share/doc/a/copyright", 7));
        let before = packed.bytes.len();
        packed.push(&small(b"usr/share/doc/b/copyright", 8));
        assert!(
            packed.bytes.len() - before <= 32,
            "{}",
            packed.bytes.len() - before
        );
    }
}
