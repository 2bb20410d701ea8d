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

use std::collections::BTreeMap;
use std::io::Read;

use self::sparse::SparseReader;
use self::tar::{RawEntry, SparseMap, TarReader, flag};
use super::ChunkSink;
use crate::error::{Error, ErrorKind, Result};
use crate::tree::{EntryKind, ImagePath, InodeData, LayerEntry, Metadata};

/// PAX keys that hold extended attributes: SCHILY's carry raw bytes, libarchive's carry a
/// percent-encoded name and a base64 value.
const SCHILY_XATTR: &[u8] = b"SCHILY.xattr.";
const LIBARCHIVE_XATTR: &[u8] = b"LIBARCHIVE.xattr.";

/// Read every entry of an uncompressed layer tar, handing regular files' content to `sink`.
///
/// Errors name the entry and the problem; the caller adds which layer it was.
pub fn read_layer(reader: impl Read, sink: &mut dyn ChunkSink) -> Result<Vec<LayerEntry>> {
    let mut out = Vec::new();
    for_each_entry(reader, sink, &mut |entry| {
        out.push(entry);
        Ok(())
    })?;
    Ok(out)
}

/// [`read_layer`], handing each entry to `each` as soon as it is read (its content already
/// through `sink`), so that a layer's entries need not all be held at once. An error of `each`
/// stops the reading and is returned as it is (it names the entry itself).
pub fn for_each_entry(
    reader: impl Read,
    sink: &mut dyn ChunkSink,
    each: &mut dyn FnMut(LayerEntry) -> Result<()>,
) -> Result<()> {
    let mut tar = TarReader::new(reader);
    while let Some(raw) = tar.next()? {
        let what = format!("entry '{}'", raw.name.escape_ascii());
        let entry = layer_entry(&mut tar, raw, sink).map_err(|e| e.context(&what))?;
        each(entry)?;
    }
    Ok(())
}

/// One entry's meaning; its data (for regular files) goes to `sink`.
fn layer_entry<R: Read>(
    tar: &mut TarReader<R>,
    raw: RawEntry,
    sink: &mut dyn ChunkSink,
) -> Result<LayerEntry> {
    let bad = |p: String| Error::new(ErrorKind::BadInput, p);
    let path = ImagePath::parse(&raw.name).map_err(|e| bad(e.to_string()))?;
    let meta = metadata(&raw).map_err(bad)?;
    let kind = match raw.typeflag {
        flag::REGULAR | flag::CONTIGUOUS | flag::GNU_SPARSE => {
            let data = match &raw.sparse {
                None => sink.file(&path, &mut tar.data(), raw.data_size)?,
                Some(s) => {
                    let mut stored = raw.data_size;
                    let mut data = tar.data();
                    let map = match &s.map {
                        SparseMap::Known(map) => map.clone(),
                        SparseMap::InData => {
                            let (map, used) = sparse::read_map_1_0(&mut data)
                                .map_err(|p| bad(format!("sparse map: {p}")))?;
                            stored = stored.checked_sub(used).ok_or_else(|| {
                                bad("the sparse map is larger than the entry".into())
                            })?;
                            map
                        }
                    };
                    sparse::check_map(&map, s.real_size, stored)
                        .map_err(|p| bad(format!("sparse map: {p}")))?;
                    let mut file = SparseReader::new(&mut data, map, s.real_size);
                    sink.file(&path, &mut file, s.real_size)?
                }
            };
            EntryKind::Inode(InodeData::File(data))
        }
        flag::DIRECTORY | flag::GNU_DUMPDIR => EntryKind::Inode(InodeData::Dir),
        flag::SYMLINK => EntryKind::Inode(InodeData::Symlink(raw.link_name.clone())),
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

/// The entry's metadata: header fields, overridden by PAX records.
fn metadata(raw: &RawEntry) -> Result<Metadata, String> {
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
    let mut xattrs = BTreeMap::new();
    for (key, value) in pax {
        if let Some(name) = key.strip_prefix(SCHILY_XATTR) {
            xattrs.insert(name.to_vec(), value.clone());
        }
    }
    // libarchive writes each xattr twice, as SCHILY and as LIBARCHIVE records; its own spelling
    // (which can carry any name) wins.
    for (key, value) in pax {
        if let Some(name) = key.strip_prefix(LIBARCHIVE_XATTR) {
            let name = percent_decode(name).ok_or("bad LIBARCHIVE.xattr name")?;
            let value = base64_decode(value).ok_or("bad LIBARCHIVE.xattr value (not base64)")?;
            xattrs.insert(name, value);
        }
    }
    let mode = header.mode()?;
    Ok(Metadata {
        mode: (mode & 0o7777) as u32,
        uid: number("uid", header.uid())?,
        gid: number("gid", header.gid())?,
        mtime,
        mtime_nsec,
        xattrs,
    })
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

fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    // libarchive writes base64 without padding; accept it with padding too.
    let s: Vec<u8> = s.iter().copied().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for group in s.chunks(4) {
        if group.len() == 1 {
            return None;
        }
        let mut acc = 0u32;
        for (i, &c) in group.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::FileData;
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
        let entries = read_layer(&tar[..], &mut sink).unwrap();
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
        let entries = read_layer(&tar[..], &mut Collect::default()).unwrap();
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
        let err = read_layer(&tar[..], &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("a/../../etc/passwd"), "{err}");
        assert!(err.to_string().contains("escapes"), "{err}");

        let tar = pax_tar(&[("big", EntryType::Regular, &[7u8; 4000], &[])]);
        let err = read_layer(&tar[..1500], &mut Collect::default()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::BadInput, "{err}");
    }

    #[test]
    fn pax_times_and_base64() {
        assert_eq!(
            parse_time(b"1700000000.123456789123"),
            Some((1700000000, 123456789))
        );
        assert_eq!(parse_time(b"-5"), Some((-5, 0)));
        assert_eq!(parse_time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_time(b"x"), None);
        assert_eq!(base64_decode(b"aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"a"), None);
    }
}
