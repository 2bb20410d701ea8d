//! Reading one layer's tar stream into [`LayerEntry`]s, in tar order.
//!
//! [`tar`] splits the stream into entries and resolves their extension headers (PAX records
//! parsed by their length prefix, GNU long names and link targets, sparse maps; PAX global
//! headers are ignored, as container runtimes ignore them);
//! this module gives each entry its meaning: PAX `uid`, `gid` and `mtime` (with nanoseconds and
//! before 1970) over the header's fields, xattrs from `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`,
//! empty device fields read as 0, contiguous files as regular files, and sparse files (old GNU
//! `S`, PAX 0.0, 0.1 and 1.0) streamed with their holes as zeros. Regular file content goes to a
//! [`ChunkSink`] as it streams past; nothing holds a whole file, and [`for_each_entry`] holds no
//! more than one entry.

mod sparse;
mod tar;
mod xattrs;

use std::io::Read;

use self::sparse::SparseReader;
use self::tar::{RawEntry, SparseMap, TarReader, flag};
use crate::blob::sink::ChunkSink;
use crate::common::error::{Error, ErrorKind, Result, shown, warn};
use crate::common::path::ImagePath;
use crate::layer::entry::{EntryKind, InodeData, LayerEntry, Metadata};

pub use self::sparse::MAX_SPARSE_EXTENTS;
pub use self::tar::MAX_EXTENSIONS;
pub use self::xattrs::XATTR_NAME_MAX;

/// What the layers of one image may declare beyond the bytes they store: holes of sparse
/// files, which are stored as zeros (and cost the time of hashing them) but take no bytes of the
/// layer. Everything else an entry declares is bounded by the bytes the layer really holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of holes the sparse files of all the image's layers may have together.
    pub max_sparse_holes: u64,
    /// Bytes of holes taken so far by the layers read with these limits.
    sparse_holes: u64,
}

impl Limits {
    /// The default of [`max_sparse_holes`](Limits::max_sparse_holes): 16 GiB, far beyond the
    /// sparse files of real images, and a few seconds of hashing zeros.
    pub const DEFAULT_MAX_SPARSE_HOLES: u64 = 16 << 30;

    /// Limits allowing `max_sparse_holes` bytes of holes, none taken yet.
    pub fn new(max_sparse_holes: u64) -> Limits {
        Limits {
            max_sparse_holes,
            sparse_holes: 0,
        }
    }

    /// Take `holes` bytes of holes for one sparse file, if they fit in what is left.
    fn take_holes(&mut self, holes: u64) -> Result<(), String> {
        match self.sparse_holes.checked_add(holes) {
            Some(total) if total <= self.max_sparse_holes => {
                self.sparse_holes = total;
                Ok(())
            }
            _ => Err(format!(
                "a sparse file with {holes} bytes of holes: the image's sparse files may have \
                 {} bytes of holes in all ({} taken already); --max-sparse-holes raises the \
                 limit",
                self.max_sparse_holes, self.sparse_holes
            )),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new(Limits::DEFAULT_MAX_SPARSE_HOLES)
    }
}

/// What reading a layer accepted with a doubt, to warn of once per layer.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use = "warn() tells the user"]
pub struct Notes {
    /// The first xattr skipped because no Linux filesystem holds it: entry and xattr name.
    first_skipped_xattr: Option<(Vec<u8>, Vec<u8>)>,
    /// How many were skipped in all.
    skipped_xattrs: u64,
}

impl Notes {
    /// How many xattrs were skipped (as no Linux filesystem holds them).
    pub fn skipped_xattrs(&self) -> u64 {
        self.skipped_xattrs
    }

    /// Print the warnings, one per kind, naming `layer`.
    pub fn warn(&self, layer: &str) {
        if let Some((entry, name)) = &self.first_skipped_xattr {
            let others = match self.skipped_xattrs - 1 {
                0 => String::new(),
                n => format!(" (and {n} more in this layer)"),
            };
            warn(format!(
                "{layer}: entry '{}': xattr '{}' skipped{others}: no Linux filesystem holds \
                 xattrs outside the user., trusted., security. and system. namespaces \
                 (containerd and Docker skip them too)",
                shown(entry),
                shown(name)
            ));
        }
    }

    fn skipped_xattr(&mut self, entry: &[u8], name: Vec<u8>) {
        self.skipped_xattrs += 1;
        self.first_skipped_xattr
            .get_or_insert_with(|| (entry.to_vec(), name));
    }
}

/// Read every entry of an uncompressed layer tar, handing regular files' content to `sink`.
///
/// Errors name the entry and the problem; the caller adds which layer it was.
pub fn read_layer(
    reader: impl Read,
    sink: &mut dyn ChunkSink,
    limits: &mut Limits,
) -> Result<(Vec<LayerEntry>, Notes)> {
    let mut out = Vec::new();
    let notes = for_each_entry(reader, sink, limits, &mut |entry| {
        out.push(entry);
        Ok(())
    })?;
    Ok((out, notes))
}

/// [`read_layer`], handing each entry to `each` as soon as it is read (its content already
/// through `sink`), so that a layer's entries need not all be held at once. An error of `each`
/// stops the reading and is returned as it is (it names the entry itself).
pub fn for_each_entry(
    reader: impl Read,
    sink: &mut dyn ChunkSink,
    limits: &mut Limits,
    each: &mut dyn FnMut(LayerEntry) -> Result<()>,
) -> Result<Notes> {
    let mut tar = TarReader::new(reader);
    let mut notes = Notes::default();
    while let Some(raw) = tar.next()? {
        let what = format!("entry '{}'", shown(&raw.name));
        let entry =
            layer_entry(&mut tar, raw, sink, limits, &mut notes).map_err(|e| e.context(&what))?;
        each(entry)?;
    }
    Ok(notes)
}

/// One entry's meaning; its data (for regular files) goes to `sink`.
fn layer_entry<R: Read>(
    tar: &mut TarReader<R>,
    raw: RawEntry,
    sink: &mut dyn ChunkSink,
    limits: &mut Limits,
    notes: &mut Notes,
) -> Result<LayerEntry> {
    let bad = |p: String| Error::new(ErrorKind::BadInput, p);
    let path = ImagePath::parse(&raw.name).map_err(|e| bad(e.to_string()))?;
    let (mut meta, skipped) = metadata(&raw).map_err(bad)?;
    for name in skipped {
        notes.skipped_xattr(&raw.name, name);
    }
    let kind = match raw.typeflag {
        flag::REGULAR | flag::CONTIGUOUS | flag::GNU_SPARSE => {
            EntryKind::Inode(InodeData::File(file(tar, &raw, &path, sink, limits)?))
        }
        flag::DIRECTORY | flag::GNU_DUMPDIR => EntryKind::Inode(InodeData::Dir),
        flag::SYMLINK => {
            // Every Linux unpacker shows a symlink as 0777 whatever its header says (lchmod
            // does not exist); some tar writers say 0755.
            meta.mode = 0o777;
            EntryKind::Inode(InodeData::Symlink(raw.link_name.clone()))
        }
        flag::HARDLINK => {
            let target = ImagePath::parse(&raw.link_name)
                .map_err(|e| bad(format!("hardlink target: {e}")))?;
            EntryKind::Hardlink(target)
        }
        flag::CHAR | flag::BLOCK => {
            let device = |v: Result<u64, String>| -> Result<u32> {
                let v = v.map_err(bad)?;
                u32::try_from(v).map_err(|_| bad(format!("device number {v} is above 2^32")))
            };
            let major = device(raw.header.device_major())?;
            let minor = device(raw.header.device_minor())?;
            EntryKind::Inode(if raw.typeflag == flag::CHAR {
                InodeData::CharDevice { major, minor }
            } else {
                InodeData::BlockDevice { major, minor }
            })
        }
        flag::FIFO => EntryKind::Inode(InodeData::Fifo),
        other => {
            return Err(bad(format!(
                "unsupported tar entry type '{}'",
                [other].escape_ascii()
            )));
        }
    };
    Ok(LayerEntry { path, kind, meta })
}

/// A regular file's content, through `sink`: as stored, or a sparse file whole, its holes as
/// zeros (once they fit in `limits`).
fn file<R: Read>(
    tar: &mut TarReader<R>,
    raw: &RawEntry,
    path: &ImagePath,
    sink: &mut dyn ChunkSink,
    limits: &mut Limits,
) -> Result<crate::blob::chunk::FileData> {
    let bad = |p: String| Error::new(ErrorKind::BadInput, p);
    let Some(s) = &raw.sparse else {
        return sink.file(path, &mut tar.data(), raw.data_size);
    };
    let mut stored = raw.data_size;
    let mut data = tar.data();
    let map = match &s.map {
        SparseMap::Known(map) => map.clone(),
        SparseMap::InData => {
            let (map, used) =
                sparse::read_map_1_0(&mut data).map_err(|p| bad(format!("sparse map: {p}")))?;
            stored = stored
                .checked_sub(used)
                .ok_or_else(|| bad("the sparse map is larger than the entry".into()))?;
            map
        }
    };
    sparse::check_map(&map, s.real_size, stored).map_err(|p| bad(format!("sparse map: {p}")))?;
    // The map lies inside the file and names exactly the stored bytes: the rest is holes.
    limits.take_holes(s.real_size - stored).map_err(bad)?;
    let mut file = SparseReader::new(&mut data, map, s.real_size);
    sink.file(path, &mut file, s.real_size)
}

/// The entry's metadata (header fields, overridden by PAX records), and the names of the xattrs
/// skipped as no Linux filesystem holds them.
fn metadata(raw: &RawEntry) -> Result<(Metadata, Vec<Vec<u8>>), String> {
    let pax = &raw.pax;
    let header = &raw.header;
    let number = |key: &str, from_header: Result<u64, String>| -> Result<u32, String> {
        let value = match pax.get(key.as_bytes()) {
            Some(v) => tar::decimal(v).ok_or_else(|| format!("PAX {key} is not a number"))?,
            None => from_header?,
        };
        u32::try_from(value).map_err(|_| format!("{key} {value} does not fit in 32 bits"))
    };
    let (mtime, mtime_nsec) = match pax.get(&b"mtime"[..]) {
        Some(v) => parse_time(v).ok_or("PAX mtime is not a time")?,
        None => (header.mtime()?, 0),
    };
    let (xattrs, skipped) = xattrs::from_pax(pax)?;
    let mode = header.mode()?;
    let meta = Metadata {
        mode: (mode & 0o7777) as u32,
        uid: number("uid", header.uid())?,
        gid: number("gid", header.gid())?,
        mtime,
        mtime_nsec,
        xattrs,
    };
    Ok((meta, skipped))
}

/// A PAX time: `[-]SECONDS[.FRACTION]`, as seconds and non-negative nanoseconds.
fn parse_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    // Nanoseconds from the first nine fraction digits, right-padded with zeros.
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nsec: u32 = digits.parse().ok()?;
    Some(match (negative, nsec) {
        (false, _) => (secs, nsec),
        (true, 0) => (-secs, 0),
        // -1.25 s is 2 s before the epoch plus 0.75 s.
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::chunk::FileData;
    use ::tar::{EntryType, Header};

    /// Keeps each file's bytes, to check what the reader hands over.
    #[derive(Default)]
    struct Collect(Vec<(Vec<u8>, Vec<u8>)>);

    impl ChunkSink for Collect {
        fn file(&mut self, path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<FileData> {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)
                .map_err(|e| Error::bad_input("file data", e))?;
            if bytes.len() as u64 != size {
                return Err(Error::bad_input("file data", "truncated"));
            }
            self.0.push((path.to_bytes(), bytes));
            Ok(FileData {
                size,
                chunks: vec![],
            })
        }
    }

    /// The entries of a layer, read with the default limits.
    fn read(tar: &[u8], sink: &mut dyn ChunkSink) -> Result<Vec<LayerEntry>> {
        read_layer(tar, sink, &mut Limits::default()).map(|(entries, _)| entries)
    }

    /// One test entry: name, type, content, PAX records.
    type TestEntry<'a> = (&'a str, EntryType, &'a [u8], &'a [(&'a str, &'a [u8])]);

    fn pax_tar(entries: &[TestEntry]) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        for (path, kind, data, pax) in entries {
            if !pax.is_empty() {
                b.append_pax_extensions(pax.iter().copied()).unwrap();
            }
            let mut h = Header::new_ustar();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(5);
            // Written by hand: the builder refuses names with `..`, which we must reject ourselves.
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn pax_records_override_the_header_and_carry_xattrs() {
        let tar = pax_tar(&[(
            "./dir/f",
            EntryType::Regular,
            b"hello",
            &[
                ("uid", b"70000"),
                ("gid", b"80000"),
                ("mtime", b"-1.25"),
                ("SCHILY.xattr.user.bin", b"\x00\x01\xff"),
                ("LIBARCHIVE.xattr.user.a%3Db", b"aGk"),
            ],
        )]);
        let mut sink = Collect::default();
        let entries = read(&tar[..], &mut sink).unwrap();
        assert_eq!(entries.len(), 1);
        let m = &entries[0].meta;
        assert_eq!(
            (m.uid, m.gid, m.mtime, m.mtime_nsec),
            (70000, 80000, -2, 750_000_000)
        );
        assert_eq!(m.xattrs[&b"user.bin"[..]], b"\x00\x01\xff");
        assert_eq!(m.xattrs[&b"user.a=b"[..]], b"hi");
        assert_eq!(sink.0, [(b"/dir/f".to_vec(), b"hello".to_vec())]);
    }

    #[test]
    fn global_headers_are_ignored_as_container_runtimes_ignore_them() {
        let mut b = ::tar::Builder::new(Vec::new());
        let records = b"15 uid=4242424\n";
        let mut g = Header::new_ustar();
        g.set_entry_type(EntryType::XGlobalHeader);
        g.set_size(records.len() as u64);
        b.append_data(&mut g, "pax_global_header", &records[..])
            .unwrap();
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(1);
        h.set_gid(1);
        h.set_mtime(1);
        h.set_size(0);
        b.append_data(&mut h, "a", &[][..]).unwrap();
        b.append_pax_extensions([("uid", &b"7"[..])]).unwrap();
        b.append_data(&mut h, "b", &[][..]).unwrap();
        let tar = b.into_inner().unwrap();
        let entries = read(&tar[..], &mut Collect::default()).unwrap();
        let uids: Vec<_> = entries.iter().map(|e| e.meta.uid).collect();
        assert_eq!(
            uids,
            [1, 7],
            "the global header is no entry of its own and changes nothing"
        );
    }

    #[test]
    fn escaping_names_and_truncated_streams_are_errors_naming_the_entry() {
        let tar = pax_tar(&[("a/../../etc/passwd", EntryType::Regular, b"x", &[])]);
        let err = read(&tar[..], &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("a/../../etc/passwd"), "{err}");
        assert!(err.to_string().contains("escapes"), "{err}");

        let tar = pax_tar(&[("big", EntryType::Regular, &[7u8; 4000], &[])]);
        let err = read(&tar[..1500], &mut Collect::default()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::BadInput, "{err}");
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_time(b"1700000000.123456789123"),
            Some((1700000000, 123456789))
        );
        assert_eq!(parse_time(b"-5"), Some((-5, 0)));
        assert_eq!(parse_time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_time(b"x"), None);
    }

    /// An extension header (`x`, `L`, `K`) of `data`, padded.
    fn extension(typeflag: u8, data: &[u8]) -> Vec<u8> {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::new(typeflag));
        h.set_size(data.len() as u64);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
        out
    }

    #[test]
    fn symlinks_are_0777_whatever_their_header_says() {
        let tar = pax_tar(&[("l", EntryType::Symlink, b"", &[("linkpath", b"t")])]);
        let entries = read(&tar, &mut Collect::default()).unwrap();
        assert_eq!(entries[0].meta.mode, 0o777);
    }

    #[test]
    fn xattrs_no_linux_filesystem_holds_are_skipped_and_counted() {
        let quarantine: &[(&str, &[u8])] = &[
            ("SCHILY.xattr.com.apple.quarantine", b"q"),
            ("SCHILY.xattr.user.kept", b"k"),
        ];
        let tar = pax_tar(&[
            ("a", EntryType::Regular, b"", quarantine),
            ("b", EntryType::Regular, b"", quarantine),
        ]);
        let (entries, notes) =
            read_layer(&tar[..], &mut Collect::default(), &mut Limits::default()).unwrap();
        assert_eq!(notes.skipped_xattrs(), 2);
        assert_eq!(
            notes.first_skipped_xattr,
            Some((b"a".to_vec(), b"com.apple.quarantine".to_vec()))
        );
        let names: Vec<_> = entries[1].meta.xattrs.keys().cloned().collect();
        assert_eq!(names, [b"user.kept".to_vec()]);
    }

    #[test]
    fn sizes_near_2_64_are_errors_not_overflows() {
        let tar = pax_tar(&[(
            "f",
            EntryType::Regular,
            b"",
            &[("size", u64::MAX.to_string().as_bytes())],
        )]);
        let err = read(&tar, &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
    }

    #[test]
    fn extension_headers_are_bounded_per_entry_not_per_header() {
        // Three PAX headers of 1.5 MiB: each fits, together they pass the 4 MiB an entry may
        // have.
        let value = vec![b'v'; 3 << 19];
        let record = {
            let body = format!(" comment={}\n", String::from_utf8_lossy(&value));
            let len = body.len() + 7;
            format!("{len}{body}").into_bytes()
        };
        let mut tar = Vec::new();
        for _ in 0..3 {
            tar.extend(extension(b'x', &record));
        }
        tar.extend(pax_tar(&[("f", EntryType::Regular, b"", &[])]));
        let err = read(&tar, &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("more than the 4 MiB"), "{err}");
        // GNU long names count too.
        let mut tar = Vec::new();
        for flag in [b'L', b'K', b'L'] {
            tar.extend(extension(flag, &value));
        }
        tar.extend(pax_tar(&[("f", EntryType::Regular, b"", &[])]));
        let err = read(&tar, &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("more than the 4 MiB"), "{err}");
    }

    #[test]
    fn holes_of_sparse_files_are_bounded_per_image() {
        let sparse: &[(&str, &[u8])] = &[
            ("GNU.sparse.major", b"0"),
            ("GNU.sparse.minor", b"1"),
            ("GNU.sparse.size", b"1000"),
            ("GNU.sparse.map", b"999,1"),
        ];
        let tar = pax_tar(&[
            ("a", EntryType::Regular, b"x", sparse),
            ("b", EntryType::Regular, b"y", sparse),
        ]);
        let mut limits = Limits::new(2000);
        let (entries, _) = read_layer(&tar[..], &mut Collect::default(), &mut limits).unwrap();
        assert_eq!(entries.len(), 2);
        // The budget is the image's: what one layer took is gone for the next.
        let err = read_layer(&tar[..], &mut Collect::default(), &mut limits).unwrap_err();
        assert!(err.to_string().contains("entry 'a'"), "{err}");
        assert!(err.to_string().contains("999 bytes of holes"), "{err}");
        assert!(read_layer(&tar[..], &mut Collect::default(), &mut Limits::new(1997)).is_err());
    }

    #[test]
    fn a_stream_that_is_no_tar_is_not_echoed() {
        let junk = b"PNG secret bytes that must not be shown ".repeat(20);
        let err = read(&junk, &mut Collect::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(
            err.to_string().starts_with("not a tar header at byte 0"),
            "{err}"
        );
        assert!(!err.to_string().contains("secret"), "{err}");
        // A broken PAX record is named by number, not shown.
        let mut tar = extension(b'x', b"12 uid=secret\n");
        tar.extend(pax_tar(&[("f", EntryType::Regular, b"", &[])]));
        let err = read(&tar, &mut Collect::default()).unwrap_err();
        assert!(
            err.to_string().contains("PAX record 1 (at byte 0)"),
            "{err}"
        );
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
