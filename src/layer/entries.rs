//! Reading one layer's tar stream into [`LayerEntry`]s, in tar order.
//!
//! The `tar` crate splits the stream into entries and resolves GNU long names, PAX `path`,
//! `linkpath` and `size`, and old GNU sparse files. What it leaves to us (see
//! `shared/tar-notes.md`) is done here: PAX `uid`, `gid` and `mtime` (with nanoseconds and before
//! 1970), PAX global headers applied to every later entry, xattrs from `SCHILY.xattr.*` and
//! `LIBARCHIVE.xattr.*`, and empty device fields read as 0. Regular file content goes to a
//! [`ChunkSink`] as it streams past; nothing holds a whole file.

use std::collections::BTreeMap;
use std::io::Read;

use ::tar::{Archive, EntryType, Header};

use super::ChunkSink;
use crate::error::{Error, Result};
use crate::tree::{EntryKind, ImagePath, InodeData, LayerEntry, Metadata};

/// PAX keys that hold extended attributes: SCHILY's carry raw bytes, libarchive's carry a
/// percent-encoded name and a base64 value.
const SCHILY_XATTR: &str = "SCHILY.xattr.";
const LIBARCHIVE_XATTR: &str = "LIBARCHIVE.xattr.";

/// Read every entry of an uncompressed layer tar, handing regular files' content to `sink`.
///
/// Errors name the entry and the problem; the caller adds which layer it was.
pub fn read_layer(reader: impl Read, sink: &mut dyn ChunkSink) -> Result<Vec<LayerEntry>> {
    let mut archive = Archive::new(reader);
    let mut out = Vec::new();
    // Records of PAX global headers seen so far; later ones override earlier keys.
    let mut global: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let entries = archive.entries().map_err(corrupt)?;
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            if let Some(records) = entry.pax_extensions().map_err(corrupt)? {
                for record in records {
                    let record = record.map_err(corrupt)?;
                    let key = record
                        .key()
                        .map_err(|e| Error::bad_input("PAX global header", e))?
                        .to_string();
                    global.insert(key, record.value_bytes().to_vec());
                }
            }
            continue;
        }
        let raw_path = entry.path_bytes().into_owned();
        let what = || format!("entry '{}'", raw_path.escape_ascii());
        let path = ImagePath::parse(&raw_path).map_err(|e| Error::bad_input(what(), e))?;

        let mut pax = global.clone();
        if let Some(records) = entry
            .pax_extensions()
            .map_err(|e| Error::bad_input(what(), e))?
        {
            for record in records {
                let record = record.map_err(|e| Error::bad_input(what(), e))?;
                let key = record.key().map_err(|e| Error::bad_input(what(), e))?;
                pax.insert(key.to_string(), record.value_bytes().to_vec());
            }
        }
        if pax.keys().any(|k| k.starts_with("GNU.sparse.")) {
            return Err(Error::bad_input(
                what(),
                "PAX-format GNU sparse files are not supported yet",
            ));
        }
        let meta = metadata(entry.header(), &pax).map_err(|p| Error::bad_input(what(), p))?;
        let link_target = || -> Vec<u8> {
            entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default()
        };

        let kind = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let size = entry.size();
                let data = sink
                    .file(&path, &mut entry, size)
                    .map_err(|e| e.context(what()))?;
                EntryKind::Inode(InodeData::File(data))
            }
            EntryType::Directory => EntryKind::Inode(InodeData::Dir),
            EntryType::Symlink => EntryKind::Inode(InodeData::Symlink(link_target())),
            EntryType::Link => {
                let target = ImagePath::parse(&link_target())
                    .map_err(|e| Error::bad_input(what(), format!("hardlink target: {e}")))?;
                EntryKind::Hardlink(target)
            }
            EntryType::Char | EntryType::Block => {
                // An empty device field (as some writers leave it) means 0.
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                EntryKind::Inode(if kind == EntryType::Char {
                    InodeData::CharDevice { major, minor }
                } else {
                    InodeData::BlockDevice { major, minor }
                })
            }
            EntryType::Fifo => EntryKind::Inode(InodeData::Fifo),
            other => {
                return Err(Error::bad_input(
                    what(),
                    format!(
                        "unsupported tar entry type '{}'",
                        other.as_byte().escape_ascii()
                    ),
                ));
            }
        };
        out.push(LayerEntry { path, kind, meta });
    }
    Ok(out)
}

fn corrupt(err: std::io::Error) -> Error {
    Error::bad_input("tar stream", format!("truncated or corrupt: {err}"))
}

/// The entry's metadata: header fields, overridden by PAX records.
fn metadata(header: &Header, pax: &BTreeMap<String, Vec<u8>>) -> Result<Metadata, String> {
    let number = |key: &str, from_header: std::io::Result<u64>| -> Result<u32, String> {
        let value = match pax.get(key) {
            Some(v) => parse_decimal(v).ok_or_else(|| format!("PAX {key} is not a number"))?,
            None => from_header.map_err(|e| format!("bad {key} field: {e}"))?,
        };
        u32::try_from(value).map_err(|_| format!("{key} {value} does not fit in 32 bits"))
    };
    let (mtime, mtime_nsec) = match pax.get("mtime") {
        Some(v) => parse_time(v).ok_or("PAX mtime is not a time")?,
        None => {
            let secs = header
                .mtime()
                .map_err(|e| format!("bad mtime field: {e}"))?;
            (i64::try_from(secs).map_err(|_| "mtime out of range")?, 0)
        }
    };
    let mut xattrs = BTreeMap::new();
    for (key, value) in pax {
        if let Some(name) = key.strip_prefix(SCHILY_XATTR) {
            xattrs.insert(name.as_bytes().to_vec(), value.clone());
        } else if let Some(name) = key.strip_prefix(LIBARCHIVE_XATTR) {
            let name = percent_decode(name.as_bytes()).ok_or("bad LIBARCHIVE.xattr name")?;
            let value = base64_decode(value).ok_or("bad LIBARCHIVE.xattr value (not base64)")?;
            xattrs.insert(name, value);
        }
    }
    Ok(Metadata {
        mode: header.mode().map_err(|e| format!("bad mode field: {e}"))? & 0o7777,
        uid: number("uid", header.uid())?,
        gid: number("gid", header.gid())?,
        mtime,
        mtime_nsec,
        xattrs,
    })
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
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
    fn global_headers_apply_to_later_entries_unless_overridden() {
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
            [4242424, 7],
            "the global header is no entry of its own"
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
