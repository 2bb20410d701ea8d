//! A tar archive read in place as a [`BlobStore`]: the members are indexed once (name → offset and
//! length in the archive file) and then read with positional reads, never extracted.
//!
//! Shared by the oci-archive and docker save readers, which differ only in what they look for
//! inside. Symbolic and hard links between members are followed (legacy `docker save` links
//! repeated layers to their first copy), but never out of the archive.
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
use crate::common::error::{Error, IoContext, Result};
use crate::source::compression::{Compression, Decompressor, Detected};
use crate::source::store::{BlobStore, FileExtent, Member, RangeReader, normalize};

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
        // The tar crate quotes header bytes in its messages; keep the error on one short line.
        let mut detail: String = e
            .to_string()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if let Some((cut, _)) = detail.char_indices().nth(160) {
            detail.truncate(cut);
            detail.push('…');
        }
        Error::bad_input(
            self.path.display(),
            format!("is not a readable tar archive: {detail}"),
        )
    }

    fn index(&mut self) -> Result<()> {
        let total = self.file.metadata().with_path(&self.path)?.len();
        let mut archive = tar::Archive::new(&*self.file);
        let entries = archive.entries_with_seek().map_err(|e| self.not_a_tar(e))?;
        let mut seen_any = false;
        for entry in entries {
            let entry = entry.map_err(|e| self.not_a_tar(e))?;
            seen_any = true;
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            if kind.is_dir()
                || raw_name
                    .trim_matches('/')
                    .trim_start_matches("./")
                    .is_empty()
            {
                continue;
            }
            let name = normalize(&raw_name).ok_or_else(|| {
                Error::bad_input(
                    format!("{}:{raw_name}", self.path.display()),
                    "member path escapes the archive (absolute or with `..`)",
                )
            })?;
            let item = if kind.is_file() || kind == tar::EntryType::Continuous {
                let offset = entry.raw_file_position();
                let len = entry.size();
                if offset.saturating_add(len) > total {
                    return Err(Error::bad_input(
                        format!("{}:{name}", self.path.display()),
                        format!("is cut short: the archive ends before its {len} bytes"),
                    ));
                }
                Entry::File { offset, len }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                // A symlink is relative to its own directory; a hard link names an archive path.
                let joined = match (kind.is_symlink(), name.rfind('/')) {
                    (true, Some(slash)) => format!("{}/{target}", &name[..slash]),
                    _ => target.clone(),
                };
                let resolved = resolve_inside(&joined).ok_or_else(|| {
                    Error::bad_input(
                        format!("{}:{name}", self.path.display()),
                        format!("link target {target} escapes the archive"),
                    )
                })?;
                Entry::Link(resolved)
            } else {
                // Devices, fifos and the like have no place in an image archive; ignore them.
                log::info!(
                    "{}: member {name} skipped (not a file, directory or link)",
                    self.path.display()
                );
                continue;
            };
            // Later members replace earlier ones of the same name, as when extracting.
            self.entries.insert(name, item);
        }
        if !seen_any {
            return Err(self.not_a_tar("it holds no members"));
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Result<Option<(u64, u64)>> {
        let mut current = name.to_string();
        for _ in 0..MAX_LINK_HOPS {
            match self.entries.get(&current) {
                None => return Ok(None),
                Some(Entry::File { offset, len }) => return Ok(Some((*offset, *len))),
                Some(Entry::Link(target)) => current = target.clone(),
            }
        }
        Err(Error::bad_input(
            self.describe(name),
            "links form a loop or a chain too long to follow",
        ))
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
        format!("{}:{name}", self.path.display())
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
