//! One Nydus layer back to a layer tar: the tree of the layer's own bootstrap (the one inlined
//! in its blob, whiteouts kept as the `.wh.` files its tar had), each file's bytes read chunk by
//! chunk from the blobs its chunk indexes name, each chunk held to the digest the blob records
//! (RAFS v5: read where the bootstrap's chunk record says, held to the record's digest).
//!
//! The tar is what Go's `archive/tar` reads as containerd and Docker do: GNU headers (long names
//! and link targets as GNU extensions, large ids in base-256), xattrs and sub-second mtimes as
//! PAX records, a hardlink for every further name of an inode.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

use super::links::LayerTree;
use crate::blob::chunk::INLINED_BLOB_ID_PLACEHOLDER;
use crate::blob::reader::{BatchCache, BlobError, BlobReader, CiTable, chunk_digest};
use crate::blob::reader_v5::{read_chunk, sections};
use crate::common::digest::{from_io, into_io};
use crate::common::error::{Error, Result};
use crate::common::hex::hex;
use crate::ondisk::blob::{TOC_ENTRY_BLOB_DIGEST, TOC_ENTRY_BOOTSTRAP};
use crate::ondisk::bootstrap::RafsBootstrap;
use crate::ondisk::rafs_v5::RafsV5ChunkInfo;
use crate::ondisk::rafs_v6::RafsV6Blob;
use crate::ondisk::rafs_v6::reader::{Inode, Kind};

/// Opens a blob of the image by id (the hex of its layer digest).
pub trait BlobOpener {
    fn open(&self, id: &str) -> Result<BlobReader>;
}

/// A blob opened for reading chunks: its ci table, and its chunk digests when it has them.
struct OpenBlob {
    reader: BlobReader,
    entry: RafsV6Blob,
    ci: CiTable,
    digests: Option<Vec<[u8; 32]>>,
    /// The batch last read (batch blobs).
    batch: BatchCache,
}

/// The blobs one layer's bootstrap names, opened as its files need them.
pub struct Blobs<'a> {
    opener: &'a dyn BlobOpener,
    /// The layer's own blob (what the placeholder id names).
    own: String,
    table: Table,
    open: HashMap<u32, OpenBlob>,
    /// RAFS v5 blobs opened, with where their chunk data ends.
    open_v5: HashMap<u32, (BlobReader, u64)>,
}

/// What a layer's bootstrap says of its blobs.
enum Table {
    /// A v6 blob table: each blob's ci table locates its chunks.
    V6(Vec<RafsV6Blob>),
    /// A v5 bootstrap: blob ids, and the chunk records (a v5 blob has no ci table), by (blob
    /// index, chunk index).
    V5 {
        ids: Vec<String>,
        records: HashMap<(u32, u32), RafsV5ChunkInfo>,
        compressor: Option<u32>,
        digester: u32,
    },
}

impl<'a> Blobs<'a> {
    /// The blobs of `boot`'s blob table; `own` is the id of the blob holding `boot`.
    pub fn new(opener: &'a dyn BlobOpener, own: &str, boot: &RafsBootstrap) -> Result<Blobs<'a>> {
        let table = match boot {
            RafsBootstrap::V6(b) => Table::V6(b.blob_table()),
            RafsBootstrap::V5(b) => {
                let what = format!("blob {own}: {TOC_ENTRY_BOOTSTRAP}");
                let records = b.records().map_err(|p| Error::bad_input(&what, p))?;
                Table::V5 {
                    ids: b.blob_table().into_iter().map(|e| e.blob_id).collect(),
                    records: records
                        .values()
                        .flat_map(|r| r.chunks.iter())
                        .map(|c| ((c.blob_index, c.index), *c))
                        .collect(),
                    compressor: b.compressor(),
                    digester: b.digester(),
                }
            }
        };
        Ok(Blobs {
            opener,
            own: own.to_string(),
            table,
            open: HashMap::new(),
            open_v5: HashMap::new(),
        })
    }

    /// The blob id of blob table entry `index`.
    fn id(&self, index: u32) -> Result<String> {
        let (id, len) = match &self.table {
            Table::V6(t) => (
                t.get(index as usize)
                    .map(|e| {
                        e.blob_id()
                            .map_err(|e| e.context(format!("blob {}", self.own)))
                    })
                    .transpose()?
                    .map(str::to_string),
                t.len(),
            ),
            Table::V5 { ids, .. } => (ids.get(index as usize).cloned(), ids.len()),
        };
        let id = id.ok_or_else(|| {
            Error::bad_input(
                format!("blob {}", self.own),
                format!("a chunk names blob {index}, the blob table has {len}"),
            )
        })?;
        Ok(if id == INLINED_BLOB_ID_PLACEHOLDER {
            self.own.clone()
        } else {
            id
        })
    }

    /// The decompressed bytes of chunk `ci_index` of blob table entry `index`, verified.
    pub fn chunk(&mut self, index: u32, ci_index: u32) -> Result<Vec<u8>> {
        if matches!(self.table, Table::V5 { .. }) {
            return self.chunk_v5(index, ci_index);
        }
        if !self.open.contains_key(&index) {
            let blob = self.open_blob(index)?;
            self.open.insert(index, blob);
        }
        let blob = self.open.get_mut(&index).expect("opened above");
        let what = || {
            format!(
                "blob {}: chunk {ci_index}",
                blob.entry.blob_id().unwrap_or("?")
            )
        };
        let ci = blob.ci.entries.get(ci_index as usize).ok_or_else(|| {
            Error::bad_input(
                what(),
                format!("is beyond the blob's {} chunks", blob.ci.entries.len()),
            )
        })?;
        let bytes = blob
            .reader
            .chunk(ci, &blob.ci, &blob.entry, &mut blob.batch)
            .map_err(|e| blob_error(e, &what()))?;
        if let Some(digests) = &blob.digests {
            let actual = chunk_digest(blob.entry.digest_algo, &bytes);
            if Some(&actual) != digests.get(ci_index as usize) {
                return Err(Error::bad_input(
                    what(),
                    format!("has digest {}, the blob records another", hex(&actual)),
                ));
            }
        }
        Ok(bytes)
    }

    /// [`chunk`](Self::chunk) of a v5 blob: read where the bootstrap's record says, inside the
    /// blob's chunk data, and held to the record's digest.
    fn chunk_v5(&mut self, index: u32, ci_index: u32) -> Result<Vec<u8>> {
        let id = self.id(index)?;
        let what = format!("blob {id}: chunk {ci_index}");
        if !self.open_v5.contains_key(&index) {
            let reader = self.opener.open(&id)?;
            let sections = sections(&reader).map_err(|e| blob_error(e, &format!("blob {id}")))?;
            self.open_v5.insert(index, (reader, sections.data_end));
        }
        let Table::V5 {
            records,
            compressor,
            digester,
            ..
        } = &self.table
        else {
            unreachable!("a v5 table");
        };
        let c = records
            .get(&(index, ci_index))
            .ok_or_else(|| Error::bad_input(&what, "has no chunk record in the bootstrap"))?;
        let (reader, data_end) = &self.open_v5[&index];
        if c.compressed_offset
            .checked_add(u64::from(c.compressed_size))
            .is_none_or(|end| end > *data_end)
        {
            return Err(Error::bad_input(
                &what,
                format!("lies past the blob's {data_end} bytes of chunk data"),
            ));
        }
        let bytes = read_chunk(reader, c, *compressor).map_err(|e| blob_error(e, &what))?;
        let actual = chunk_digest(*digester, &bytes);
        if actual != c.block_id {
            return Err(Error::bad_input(
                &what,
                format!("has digest {}, its record says another", hex(&actual)),
            ));
        }
        Ok(bytes)
    }

    fn open_blob(&self, index: u32) -> Result<OpenBlob> {
        let id = self.id(index)?;
        let what = format!("blob {id}");
        let Table::V6(table) = &self.table else {
            unreachable!("v5 blobs are read by chunk_v5");
        };
        let entry = table[index as usize];
        let reader = self.opener.open(&id)?;
        let ci = reader.ci_table(&entry).map_err(|e| blob_error(e, &what))?;
        let toc = reader.toc().map_err(|e| blob_error(e, &what))?;
        let digests = match toc.entry(TOC_ENTRY_BLOB_DIGEST) {
            Some(e) => {
                let bytes = reader
                    .section(e, toc.at)
                    .map_err(|e| blob_error(e, &what))?;
                Some(
                    bytes
                        .chunks_exact(32)
                        .map(|d| d.try_into().expect("32 bytes"))
                        .collect(),
                )
            }
            None => None,
        };
        Ok(OpenBlob {
            reader,
            entry,
            ci,
            digests,
            batch: BatchCache::default(),
        })
    }
}

/// A blob the reader found wanting, as an error naming `what`.
pub fn blob_error(e: BlobError, what: &str) -> Error {
    match e {
        BlobError::Io(e) => e,
        BlobError::Bad(p) => Error::bad_input(what, p),
    }
}

/// Write `tree` (of one layer's bootstrap, whose files are cut at `chunk_size`) as a tar to
/// `out`, file data from `blobs`.
/// Returns how many sockets were left out (a tar cannot hold one).
/// `lower_links` names the inodes to write as hardlinks to a lower layer's path
/// ([`super::links`]).
pub fn write_tar<W: Write>(
    chunk_size: u64,
    tree: &LayerTree,
    lower_links: &HashMap<u64, Vec<u8>>,
    blobs: &mut Blobs,
    out: W,
) -> Result<(W, u64)> {
    let mut tar = tar::Builder::new(out);
    let mut first_name: HashMap<u64, &[u8]> = HashMap::new();
    let mut sockets = 0;
    for (path, inode) in tree {
        let name = &path[1..];
        if inode.kind == Kind::Dir && implied(inode) {
            continue;
        }
        let name: &[u8] = if name.is_empty() { b"." } else { name };
        let io = |e: io::Error| from_io(e, format!("{}", name.escape_ascii()));
        let mut header = header_of(inode);
        let pax = pax_records(inode);
        if !pax.is_empty() {
            tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(io)?;
        }
        let name_os = std::ffi::OsStr::from_bytes(name);
        if inode.kind != Kind::Dir && (inode.nlink > 1 || lower_links.contains_key(&inode.nid)) {
            // A further name of an inode already written (a file, symlink, device or fifo):
            // a hardlink to its first name.
            // ... or the first name of a copy of a lower layer's file: a hardlink to that.
            let target = match first_name.get(&inode.nid) {
                Some(first) => Some(*first),
                None => lower_links.get(&inode.nid).map(|q| &q[1..]),
            };
            first_name.entry(inode.nid).or_insert(name);
            if let Some(target) = target {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                let target = std::ffi::OsStr::from_bytes(target);
                tar.append_link(&mut header, name_os, target).map_err(io)?;
                continue;
            }
        }
        match inode.kind {
            Kind::File => {
                header.set_size(inode.size);
                let data = FileData::new(inode, chunk_size, blobs);
                tar.append_data(&mut header, name_os, data).map_err(io)?;
            }
            Kind::Symlink => {
                let target = std::ffi::OsStr::from_bytes(&inode.symlink);
                tar.append_link(&mut header, name_os, target).map_err(io)?;
            }
            Kind::Socket => sockets += 1,
            Kind::Dir | Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                tar.append_data(&mut header, name_os, io::empty())
                    .map_err(io)?;
            }
        }
    }
    Ok((
        tar.into_inner().map_err(|e| from_io(e, "the layer tar"))?,
        sockets,
    ))
}

/// Whether a directory has the metadata of one the layer implies but never lists (its root,
/// the parents of its entries): 0755, root-owned, time 0, no xattrs. It is left out, so that the
/// unpacker creates it only where nothing is there, and follows a lower layer's symlink in its
/// place as it did for the original layer (`via/file` under a lower `via -> real`).
fn implied(dir: &Inode) -> bool {
    dir.mode & 0o7777 == 0o755
        && dir.uid == 0
        && dir.gid == 0
        && dir.mtime == 0
        && dir.mtime_nsec == 0
        && dir.xattrs.is_empty()
}

/// The ustar fields of `inode` (GNU header: long names, base-256 numbers).
fn header_of(inode: &Inode) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(inode.mode & 0o7777);
    h.set_uid(u64::from(inode.uid));
    h.set_gid(u64::from(inode.gid));
    // RAFS keeps the signed seconds as two's complement: a time before 1970 goes in a PAX
    // record (below), the header says 0.
    h.set_mtime((inode.mtime as i64).max(0) as u64);
    h.set_size(0);
    h.set_entry_type(match inode.kind {
        Kind::Dir => tar::EntryType::Directory,
        Kind::File => tar::EntryType::Regular,
        Kind::Symlink => tar::EntryType::Symlink,
        Kind::CharDevice => tar::EntryType::Char,
        Kind::BlockDevice => tar::EntryType::Block,
        Kind::Fifo | Kind::Socket => tar::EntryType::Fifo,
    });
    if matches!(inode.kind, Kind::CharDevice | Kind::BlockDevice) {
        // Device numbers above the 7 octal digits a field holds cannot be written; nydus keeps
        // 12-bit majors and 20-bit minors, which fit.
        let _ = h.set_device_major(inode.rdev.0);
        let _ = h.set_device_minor(inode.rdev.1);
    }
    h
}

/// PAX records for what ustar cannot say: xattrs (`SCHILY.xattr.`) and sub-second mtimes.
fn pax_records(inode: &Inode) -> Vec<(String, Vec<u8>)> {
    let mut records = Vec::new();
    let secs = inode.mtime as i64;
    if inode.mtime_nsec != 0 || secs < 0 {
        records.push((
            "mtime".to_string(),
            pax_time(secs, inode.mtime_nsec).into_bytes(),
        ));
    }
    for (name, value) in inode.xattrs.iter() {
        records.push((
            format!("SCHILY.xattr.{}", String::from_utf8_lossy(name)),
            value.clone(),
        ));
    }
    records
}

/// A PAX time: `secs` (negative before 1970) plus `nsec` (0..1e9, forward) as a decimal, the
/// way Go's `archive/tar` reads it back (`-86400.25` is 86400.25 seconds before 1970).
fn pax_time(secs: i64, nsec: u32) -> String {
    if secs >= 0 || nsec == 0 {
        format!("{secs}.{nsec:09}")
    } else {
        format!("-{}.{:09}", -(secs + 1), 1_000_000_000 - nsec)
    }
}

/// A regular file's bytes, chunk after chunk.
struct FileData<'a, 'b> {
    inode: &'a Inode,
    chunk_size: u64,
    blobs: &'a mut Blobs<'b>,
    next: usize,
    current: Vec<u8>,
    pos: usize,
}

impl<'a, 'b> FileData<'a, 'b> {
    fn new(inode: &'a Inode, chunk_size: u64, blobs: &'a mut Blobs<'b>) -> Self {
        FileData {
            inode,
            chunk_size,
            blobs,
            next: 0,
            current: Vec::new(),
            pos: 0,
        }
    }

    /// Load the next chunk; false at the end of the file.
    fn load(&mut self) -> io::Result<bool> {
        let Some(c) = self.inode.chunks.get(self.next) else {
            return Ok(false);
        };
        let offset = self.next as u64 * self.chunk_size;
        let piece = self.chunk_size.min(self.inode.size.saturating_sub(offset)) as usize;
        let what = format!("blob {}: inode {}", self.blobs.own, self.inode.nid);
        let bad = |problem: String| into_io(Error::bad_input(&what, problem));
        let index = c
            .blob_index()
            .ok_or_else(|| bad(format!("chunk {} names no blob", self.next)))?;
        let bytes = self.blobs.chunk(index, c.ci_index()).map_err(into_io)?;
        if bytes.len() != piece {
            return Err(bad(format!(
                "chunk {} holds {} bytes, the file needs {piece} there",
                self.next,
                bytes.len()
            )));
        }
        self.next += 1;
        self.current = bytes;
        self.pos = 0;
        Ok(true)
    }
}

impl Read for FileData<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if !self.load()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::pax_time;

    #[test]
    fn pax_times_read_back_as_go_reads_them() {
        assert_eq!(pax_time(1_700_000_000, 123_456_789), "1700000000.123456789");
        assert_eq!(pax_time(-86401, 750_000_000), "-86400.250000000");
        assert_eq!(pax_time(-2_000_000_000, 0), "-2000000000.000000000");
        assert_eq!(pax_time(0, 1), "0.000000001");
    }
}
