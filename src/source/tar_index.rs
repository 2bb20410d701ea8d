//! The headers of an archive input (an oci-archive or a `docker save` tarball), walked with
//! positional reads: for each member its name, kind, and where its data lies, never its data.
//!
//! Why not the `tar` crate: it reads every PAX and GNU long-name extension whole into memory,
//! however large its header says it is, and it reads data sizes unchecked; an archive is as
//! hostile as any other input. Here every size is checked against the archive's length with
//! checked arithmetic before it is used, extension headers are bounded
//! ([`MAX_PAX_HEADER`], [`MAX_MEMBER_NAME`]), and so are the number of headers
//! ([`MAX_MEMBERS`]) and the bytes of names kept ([`MAX_NAME_BYTES`]). Only what locating a
//! member needs is read: the PAX `path`, `linkpath` and `size` records; where writers disagree,
//! this does what Go's `archive/tar` does (what Docker, skopeo and containerd use).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::common::error::{Error, Result, shown};
use crate::source::limits::{MAX_MEMBER_NAME, MAX_MEMBERS, MAX_NAME_BYTES, MAX_PAX_HEADER};

const BLOCK: u64 = 512;

/// What a member is, as far as reading an image from the archive cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular (or contiguous) file: its data is the member's bytes.
    File,
    /// A directory: nothing to read.
    Dir,
    /// A symbolic link to this target (relative to the link's directory).
    Symlink(Vec<u8>),
    /// A hard link to this archive path.
    Hardlink(Vec<u8>),
    /// Anything else (a device, a fifo, a sparse file, an unknown type), described for a
    /// message: it cannot be an image's member.
    Other(&'static str),
}

/// One member: its name as the archive spells it, its kind, and its data's place.
#[derive(Clone, Debug)]
pub struct RawMember {
    pub name: Vec<u8>,
    pub kind: Kind,
    /// Offset of the first data byte in the archive.
    pub offset: u64,
    /// Data length in bytes; `offset + len` is checked to lie inside the archive.
    pub len: u64,
}

/// What PAX extended headers say about the member that follows them.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    sparse: bool,
}

/// A walk over the headers of the archive in `file`, `total` bytes long.
pub struct Headers<'a> {
    file: &'a File,
    path: &'a Path,
    total: u64,
    pos: u64,
    headers: usize,
    name_bytes: usize,
    done: bool,
}

impl<'a> Headers<'a> {
    /// Walk `file` (read from `path`, named in errors), which is `total` bytes long.
    pub fn new(file: &'a File, path: &'a Path, total: u64) -> Headers<'a> {
        Headers {
            file,
            path,
            total,
            pos: 0,
            headers: 0,
            name_bytes: 0,
            done: false,
        }
    }

    /// "`archive`: is not a readable tar archive: …", the error for anything that is not tar.
    fn not_a_tar(&self, detail: impl std::fmt::Display) -> Error {
        Error::bad_input(
            self.path.display(),
            format!("is not a readable tar archive: {detail}"),
        )
    }

    fn refuse(&self, detail: impl std::fmt::Display) -> Error {
        Error::bad_input(self.path.display(), detail)
    }

    /// The next member, or `None` at the end-of-archive block or the end of the file.
    pub fn next_member(&mut self) -> Result<Option<RawMember>> {
        if self.done {
            return Ok(None);
        }
        let mut pax = Pax::default();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pending = false;
        loop {
            let at = self.pos;
            let Some(header) = self.header()? else {
                self.done = true;
                if pending {
                    return Err(self.not_a_tar(format!(
                        "it ends after an extension header at byte {at}, before its member"
                    )));
                }
                return Ok(None);
            };
            let size = numeric(&header[124..136])
                .ok_or_else(|| self.not_a_tar(format!("bad size field at byte {at}")))?;
            let data = at + BLOCK;
            match header[156] {
                b'x' => {
                    let bytes = self.extension(data, size, MAX_PAX_HEADER, "a PAX header")?;
                    pax_records(&bytes, &mut pax).map_err(|e| {
                        self.not_a_tar(format!("malformed PAX header at byte {at}: {e}"))
                    })?;
                    pending = true;
                }
                b'L' | b'K' => {
                    // The name and its terminating NUL.
                    let limit = MAX_MEMBER_NAME as u64 + 1;
                    let bytes = self.extension(data, size, limit, "a GNU long name")?;
                    let value = until_nul(&bytes).to_vec();
                    if header[156] == b'L' {
                        long_name = Some(value);
                    } else {
                        long_link = Some(value);
                    }
                    pending = true;
                }
                b'g' => {
                    // A PAX global header: container tools ignore it, and so do we.
                    self.skip(at, data, size)?;
                }
                flag => {
                    let name = pax
                        .path
                        .take()
                        .or_else(|| long_name.take())
                        .unwrap_or_else(|| header_name(&header));
                    let link = pax
                        .linkpath
                        .take()
                        .or_else(|| long_link.take())
                        .unwrap_or_else(|| until_nul(&header[157..257]).to_vec());
                    let kind = kind_of(flag, &name, link, pax.sparse);
                    // Go reads no data for entries that are only a header, whatever size says.
                    let len = match kind {
                        Kind::File | Kind::Other(_) => pax.size.unwrap_or(size),
                        _ => 0,
                    };
                    self.account(&name, &kind)?;
                    self.skip(at, data, len).map_err(|_| {
                        Error::bad_input(
                            format!("{}:{}", self.path.display(), shown(&name)),
                            format!("is cut short: the archive ends before its {len} bytes"),
                        )
                    })?;
                    return Ok(Some(RawMember {
                        name,
                        kind,
                        offset: data,
                        len,
                    }));
                }
            }
        }
    }

    /// Read the header block at the current position and move past it; `None` at the end.
    fn header(&mut self) -> Result<Option<[u8; 512]>> {
        let at = self.pos;
        if at == self.total {
            return Ok(None);
        }
        if self.total - at < BLOCK {
            return Err(self.not_a_tar(format!(
                "it ends {} bytes into a header at byte {at}",
                self.total - at
            )));
        }
        let mut block = [0u8; 512];
        self.file
            .read_exact_at(&mut block, at)
            .map_err(|e| Error::io(self.path, e))?;
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        self.headers += 1;
        if self.headers > MAX_MEMBERS {
            return Err(self.refuse(format!(
                "has more than {MAX_MEMBERS} tar headers; refused (see README, Limits)"
            )));
        }
        if !checksum_ok(&block) {
            return Err(self.not_a_tar(format!(
                "bad header checksum at byte {at} (not a tar header: corrupt or misaligned)"
            )));
        }
        self.pos = at + BLOCK;
        Ok(Some(block))
    }

    /// Move past `len` data bytes starting at `data` (the header was at `at`), and their
    /// padding; fails when they do not fit in the archive.
    fn skip(&mut self, at: u64, data: u64, len: u64) -> Result<()> {
        let next = len
            .checked_next_multiple_of(BLOCK)
            .and_then(|padded| data.checked_add(padded));
        match next {
            Some(next) if data + len <= self.total => {
                // The padding of the last member may be missing; the end is the end.
                self.pos = next.min(self.total);
                Ok(())
            }
            _ => Err(self.not_a_tar(format!(
                "the member at byte {at} declares {len} bytes, past the end of the archive"
            ))),
        }
    }

    /// Read the data of an extension header (at most `limit` bytes) and move past it.
    fn extension(&mut self, data: u64, size: u64, limit: u64, what: &str) -> Result<Vec<u8>> {
        let at = data - BLOCK;
        if size > limit {
            return Err(self.refuse(format!(
                "{what} of {size} bytes at byte {at} (more than {limit}); refused"
            )));
        }
        self.skip(at, data, size)?;
        // `size` is at most `limit`, a few MiB, and lies inside the file: safe to allocate.
        let mut bytes = vec![0u8; size as usize];
        self.file
            .read_exact_at(&mut bytes, data)
            .map_err(|e| Error::io(self.path, e))?;
        Ok(bytes)
    }

    /// Count a member's name and link target against the limits.
    fn account(&mut self, name: &[u8], kind: &Kind) -> Result<()> {
        let link = match kind {
            Kind::Symlink(t) | Kind::Hardlink(t) => t.len(),
            _ => 0,
        };
        if name.len() > MAX_MEMBER_NAME || link > MAX_MEMBER_NAME {
            return Err(self.refuse(format!(
                "a member name or link target longer than {MAX_MEMBER_NAME} bytes \
                 (at byte {}); refused",
                self.pos - BLOCK
            )));
        }
        self.name_bytes += name.len() + link;
        if self.name_bytes > MAX_NAME_BYTES {
            return Err(self.refuse(format!(
                "member names and link targets exceed {MAX_NAME_BYTES} bytes in all; refused \
                 (see README, Limits)"
            )));
        }
        Ok(())
    }
}

/// What the type flag (and the name, and PAX sparse records) make of a member.
fn kind_of(flag: u8, name: &[u8], link: Vec<u8>, sparse: bool) -> Kind {
    match flag {
        // Pre-POSIX regular files: a trailing slash made them directories.
        b'\0' if name.ends_with(b"/") => Kind::Dir,
        b'0' | b'\0' | b'7' if sparse => Kind::Other("a sparse file"),
        b'0' | b'\0' | b'7' => Kind::File,
        b'1' => Kind::Hardlink(link),
        b'2' => Kind::Symlink(link),
        b'3' => Kind::Other("a character device"),
        b'4' => Kind::Other("a block device"),
        b'5' => Kind::Dir,
        b'6' => Kind::Other("a fifo"),
        b'S' => Kind::Other("a sparse file"),
        _ => Kind::Other("an entry of an unknown type"),
    }
}

/// The name a header spells: ustar's `prefix/name`, or the name alone (GNU and v7 headers use
/// the prefix bytes for other things).
fn header_name(h: &[u8; 512]) -> Vec<u8> {
    let name = until_nul(&h[0..100]);
    let prefix = until_nul(&h[345..500]);
    if &h[257..263] == b"ustar\0" && !prefix.is_empty() {
        [prefix, b"/", name].concat()
    } else {
        name.to_vec()
    }
}

fn until_nul(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or_default()
}

/// A numeric header field: octal text (spaces and NULs around it), or GNU base-256 binary
/// with the high bit of the first byte set. `None` when malformed, negative or over `u64`.
fn numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| b != b' ' && b != 0)
        .collect::<Vec<u8>>();
    let mut v: u64 = 0;
    for b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Whether the stored checksum matches the header, summed unsigned or (as some old writers
/// did) signed, with the checksum field counted as spaces.
fn checksum_ok(h: &[u8; 512]) -> bool {
    let Some(stored) = numeric(&h[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    stored as i64 == unsigned || stored as i64 == signed
}

/// Apply the records of a PAX header (`"<length> <key>=<value>\n"`, split by their length
/// prefix, not by newlines) to `pax`; later records win.
fn pax_records(mut data: &[u8], pax: &mut Pax) -> std::result::Result<(), String> {
    while !data.is_empty() {
        // GNU tar pads the header's data with NULs after the last record.
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let space = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("a record without a length")?;
        let len = decimal(&data[..space]).ok_or("a record length that is not a number")?;
        let len = usize::try_from(len).map_err(|_| "a record longer than the header")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("a record whose length does not match its text".into());
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("a record without '='")?;
        apply_record(&record[..eq], &record[eq + 1..], pax)?;
        data = &data[len..];
    }
    Ok(())
}

fn apply_record(key: &[u8], value: &[u8], pax: &mut Pax) -> std::result::Result<(), String> {
    match key {
        b"path" => pax.path = Some(value.to_vec()).filter(|v| !v.is_empty()),
        b"linkpath" => pax.linkpath = Some(value.to_vec()).filter(|v| !v.is_empty()),
        b"size" if value.is_empty() => pax.size = None,
        b"size" => pax.size = Some(decimal(value).ok_or("a size that is not a number")?),
        k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
        _ => {}
    }
    Ok(())
}

/// A decimal number as PAX spells it: digits only, fitting in a `u64`.
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(numeric(b"00000001750\0"), Some(0o1750));
        assert_eq!(numeric(b"   17 \0\0\0\0\0\0"), Some(0o17));
        assert_eq!(numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(numeric(b"0009"), None);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 5;
        assert_eq!(numeric(&big), Some(5));
        big[1..].fill(0xff);
        assert_eq!(numeric(&big), None, "over u64");
        assert_eq!(numeric(&[0xff; 12]), None, "negative");
    }

    #[test]
    fn pax_records_by_length() {
        let mut pax = Pax::default();
        pax_records(b"12 path=a\nb\n11 size=42\n\0\0\0", &mut pax).unwrap();
        assert_eq!(pax.path.as_deref(), Some(&b"a\nb"[..]));
        assert_eq!(pax.size, Some(42));
        for bad in [&b"8 path=a\n"[..], b"99999999999999999999999 x=y\n", b"x"] {
            assert!(pax_records(bad, &mut Pax::default()).is_err());
        }
    }
}
