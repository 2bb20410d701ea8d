//! A tar archive read in place as a [`BlobStore`]: the members are indexed once (name → offset and
//! length in the archive file) and then read with positional reads, never extracted.
//!
//! Shared by the oci-archive and docker save readers, which differ only in what they look for
//! inside. Symbolic and hard links between members are followed (legacy `docker save` links
//! repeated layers to their first copy), but never out of the archive. The headers are walked by
//! [`tar_index`](crate::source::tar_index), which bounds what an archive can make us hold; a
//! name may appear only once, and members that are neither files, directories nor links
//! (devices, fifos) are left out (`-v` says so, in one line).
//!
//! A gzip- or zstd-compressed archive has no random access: the only way to reach a member is to
//! decompress everything before it. Decompressing from the start for each blob would cost time
//! quadratic in the number of layers, and holding the archive in memory is out of the question,
//! so such an archive is decompressed once, as a stream, into an anonymous temporary file (in
//! `$TMPDIR`, removed by the kernel when we exit), which is then read in place like a plain one.
//! That costs temporary disk space equal to the uncompressed archive; members of it have no
//! [`FileExtent`], since the copy is not a file the caller can name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compression;
use crate::common::error::{Error, IoContext, Result, shown};
use crate::source::compression::{Compression, Decompressor, Detected};
use crate::source::store::{BlobStore, FileExtent, Member, MetadataBudget, RangeReader, normalize};
use crate::source::tar_index::{Headers, Kind};

/// How many links in a row we follow before calling it a loop.
const MAX_LINK_HOPS: usize = 16;

#[derive(Clone, Debug)]
enum Entry {
    /// A regular file: its data's offset in the (uncompressed) archive and its length.
    File { offset: u64, len: u64 },
    /// A symbolic or hard link, with its target already resolved to a member path.
    Link(String),
}

/// The members of a tar archive, read in place.
pub struct TarStore {
    path: PathBuf,
    file: Arc<File>,
    /// The path the archive's bytes were read from, shared with every reader.
    read_path: Arc<Path>,
    /// Whether `file` is the user's archive itself (and so members have a [`FileExtent`]).
    in_place: bool,
    /// How the archive itself was compressed.
    compression: Compression,
    entries: HashMap<String, Entry>,
    budget: MetadataBudget,
}

impl TarStore {
    /// Index the archive at `path`. Fails with `BadInput` when it is empty, not a tar (plain,
    /// gzip or zstd), or has a member whose path or link target escapes the archive.
    pub fn open(path: &Path) -> Result<TarStore> {
        let mut file = File::open(path).with_path(path)?;
        let len = file.metadata().with_path(path)?.len();
        if len == 0 {
            return Err(Error::bad_input(
                path.display(),
                "is empty (zero bytes), not an image",
            ));
        }
        let (detected, _) = compression::sniff(&mut file).with_path(path)?;
        file.seek(SeekFrom::Start(0)).with_path(path)?;
        let compression = match detected {
            Detected::Known(c) => c,
            Detected::Unsupported(name) => {
                return Err(Error::bad_input(
                    path.display(),
                    format!("is {name}-compressed; only plain, gzip and zstd archives are read"),
                ));
            }
        };
        let (file, in_place) = match compression {
            Compression::None => (file, true),
            c => (unpack_to_temp(path, file, c)?, false),
        };
        let file = Arc::new(file);
        let mut store = TarStore {
            path: path.to_path_buf(),
            file,
            read_path: Arc::from(path),
            in_place,
            compression,
            entries: HashMap::new(),
            budget: MetadataBudget::default(),
        };
        store.index()?;
        Ok(store)
    }

    /// How the archive file itself is compressed (not its members).
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The archive's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn not_a_tar(&self, e: impl std::fmt::Display) -> Error {
        Error::bad_input(
            self.path.display(),
            format!("is not a readable tar archive: {e}"),
        )
    }

    /// Index every member: regular files by their data's place, links by their resolved
    /// target. Devices, fifos and the like have no place in an image archive: they are left
    /// out; `-v` names the first and counts the rest.
    fn index(&mut self) -> Result<()> {
        let total = self.file.metadata().with_path(&self.path)?.len();
        let (file, read_path) = (self.file.clone(), self.read_path.clone());
        let mut headers = Headers::new(&file, &read_path, total);
        let mut seen_any = false;
        let mut skipped = Skipped::default();
        while let Some(member) = headers.next_member()? {
            seen_any = true;
            let raw_name = String::from_utf8_lossy(&member.name).into_owned();
            if member.kind == Kind::Dir
                || raw_name
                    .trim_matches('/')
                    .trim_start_matches("./")
                    .is_empty()
            {
                continue;
            }
            let name = normalize(&raw_name).ok_or_else(|| {
                Error::bad_input(
                    format!("{}:{}", self.path.display(), shown(&member.name)),
                    "member path escapes the archive (absolute or with `..`)",
                )
            })?;
            let item = match member.kind {
                Kind::File => Entry::File {
                    offset: member.offset,
                    len: member.len,
                },
                Kind::Symlink(target) => Entry::Link(self.link_target(&name, &target, true)?),
                Kind::Hardlink(target) => Entry::Link(self.link_target(&name, &target, false)?),
                Kind::Other(what) => {
                    skipped.first.get_or_insert((name, what));
                    skipped.count += 1;
                    continue;
                }
                Kind::Dir => continue,
            };
            self.insert(name, item)?;
        }
        if !seen_any {
            return Err(self.not_a_tar("it holds no members"));
        }
        skipped.report(&self.path);
        Ok(())
    }

    /// Add a member. A name may appear once: two members of one name would leave it to each
    /// reader which copy is meant (extraction keeps the last, a streaming reader may take the
    /// first), and no image writer repeats one.
    fn insert(&mut self, name: String, item: Entry) -> Result<()> {
        if self.entries.contains_key(&name) {
            return Err(Error::bad_input(
                self.describe(&name),
                "appears twice in the archive; which copy is meant is ambiguous",
            ));
        }
        self.entries.insert(name, item);
        Ok(())
    }

    /// Resolve a link's target to a member path, refusing one that leaves the archive.
    fn link_target(&self, name: &str, raw: &[u8], symlink: bool) -> Result<String> {
        let target = String::from_utf8_lossy(raw);
        // A symlink is relative to its own directory; a hard link names an archive path.
        let joined = match (symlink, name.rfind('/')) {
            (true, Some(slash)) => format!("{}/{target}", &name[..slash]),
            _ => target.to_string(),
        };
        resolve_inside(&joined).ok_or_else(|| {
            Error::bad_input(
                self.describe(name),
                format!("link target {} escapes the archive", shown(raw)),
            )
        })
    }

    /// The member path `name` leads to once links are followed; `None` when it does not
    /// exist. Two names of one member resolve alike.
    pub fn resolve(&self, name: &str) -> Result<Option<String>> {
        let mut current = name.to_string();
        for _ in 0..MAX_LINK_HOPS {
            match self.entries.get(&current) {
                None => return Ok(None),
                Some(Entry::File { .. }) => return Ok(Some(current)),
                Some(Entry::Link(target)) => current = target.clone(),
            }
        }
        Err(Error::bad_input(
            self.describe(name),
            "links form a loop or a chain too long to follow",
        ))
    }

    fn lookup(&self, name: &str) -> Result<Option<(u64, u64)>> {
        Ok(match self.resolve(name)? {
            Some(found) => match self.entries.get(&found) {
                Some(Entry::File { offset, len }) => Some((*offset, *len)),
                _ => None,
            },
            None => None,
        })
    }
}

/// The members left out of the index because an image has no use for them (devices, fifos,
/// sparse files): the first, for the message, and how many.
#[derive(Default)]
struct Skipped {
    first: Option<(String, &'static str)>,
    count: usize,
}

impl Skipped {
    /// One `-v` line for them all: an archive of a million fifos must not print a million lines.
    fn report(&self, archive: &Path) {
        let Some((first, what)) = &self.first else {
            return;
        };
        let more = match self.count {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        log::info!(
            "{}: member {} skipped ({what}){more}: not a file, directory or link",
            archive.display(),
            shown(first.as_bytes())
        );
    }
}

/// Resolve `..` and `.` in a path inside the archive; `None` if it climbs above the root.
fn resolve_inside(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Decompress `file` into an anonymous temporary file and return it, rewound.
fn unpack_to_temp(path: &Path, file: File, compression: Compression) -> Result<File> {
    let temp_dir = std::env::temp_dir();
    let mut temp = tempfile::tempfile_in(&temp_dir).with_path(&temp_dir)?;
    let mut decoder = Decompressor::new(io::BufReader::new(file), compression).with_path(path)?;
    io::copy(&mut decoder, &mut temp).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            Error::bad_input(
                path.display(),
                format!("{compression} data is truncated or corrupt: {e}"),
            )
        }
        _ => Error::io(path, e),
    })?;
    temp.seek(SeekFrom::Start(0)).with_path(&temp_dir)?;
    Ok(temp)
}

impl BlobStore for TarStore {
    fn describe(&self, name: &str) -> String {
        format!("{}:{}", self.path.display(), shown(name.as_bytes()))
    }

    fn open(&self, name: &str) -> Result<Option<Member>> {
        let Some((offset, len)) = self.lookup(name)? else {
            return Ok(None);
        };
        let extent = self.in_place.then(|| FileExtent {
            path: self.path.clone(),
            offset,
            len,
        });
        Ok(Some(Member {
            reader: Box::new(RangeReader::new(
                self.file.clone(),
                self.read_path.clone(),
                offset,
                len,
            )),
            len,
            extent,
        }))
    }

    fn contains(&self, name: &str) -> bool {
        matches!(self.lookup(name), Ok(Some(_)))
    }

    fn metadata_budget(&self) -> Option<&MetadataBudget> {
        Some(&self.budget)
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_inside;

    #[test]
    fn links_resolve_inside_only() {
        assert_eq!(
            resolve_inside("abc/../def/layer.tar").as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(resolve_inside("abc/../../etc/passwd"), None);
        assert_eq!(resolve_inside("/etc/passwd"), None);
    }
}
