//! `check` of an oci-archive: its layout is unpacked into a temporary directory and checked
//! there, as a layout directory is.
//!
//! Why a copy rather than reading members in place: every checker reads the layout by path
//! (`blobs/sha256/<hex>`, random access into blobs and bootstraps), and an archive this program
//! wrote is a plain tar the size of the layout; unpacking costs one sequential copy. Only the
//! members a layout has are taken (`oci-layout`, `index.json`, `blobs/<algorithm>/<hex>`), so
//! no name in the archive can write outside the temporary directory.

use std::fs::{self, File};
use std::io;
use std::path::{Component, Path, PathBuf};

use tempfile::TempDir;

use crate::common::error::{Error, Result};

/// Largest extension header (PAX, GNU long name) skipped in an archive: far above any real one.
const EXTENSION_LIMIT: u64 = 1 << 20;

/// Unpack the oci-archive `archive` into a new temporary directory (removed when dropped).
pub fn unpack(archive: &Path) -> Result<TempDir> {
    let bad = |what: String| Error::bad_input(archive.display(), what);
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let dir = tempfile::Builder::new()
        .prefix("nydus-offline-check.")
        .tempdir()
        .map_err(|e| Error::io(&std::env::temp_dir(), e))?;
    let mut tar = tar::Archive::new(file);
    // Raw: extension headers come as entries of their own, each held to a size here, instead of
    // being read whole into memory by the tar crate (a hostile PAX header may claim gigabytes).
    let entries = tar
        .entries()
        .map_err(|e| bad(format!("not a tar file (an oci-archive): {e}")))?
        .raw(true);
    let mut members = 0usize;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| bad(format!("not a readable tar (an oci-archive): {e}")))?;
        let name = entry
            .path()
            .map_err(|e| bad(format!("a member name is not readable: {e}")))?
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            // A layout's member names fit a plain header; extensions (times, long names of
            // members no layout has) are skipped, unread, up to a size.
            if entry.size() > EXTENSION_LIMIT {
                return Err(bad(format!(
                    "an extension header of {} bytes (more than {EXTENSION_LIMIT}) before member {}",
                    entry.size(),
                    name.display()
                )));
            }
            continue;
        }
        let Some(relative) = layout_member(&name) else {
            return Err(bad(format!(
                "member {} is not part of an OCI image layout",
                name.display()
            )));
        };
        if !kind.is_file() {
            return Err(bad(format!(
                "member {} is not a regular file",
                name.display()
            )));
        }
        let target = dir.path().join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut out = File::create(&target).map_err(|e| Error::io(&target, e))?;
        io::copy(&mut entry, &mut out)
            .map_err(|e| bad(format!("reading member {}: {e}", name.display())))?;
        members += 1;
    }
    if members == 0 {
        return Err(bad("is an empty tar, not an oci-archive".to_string()));
    }
    Ok(dir)
}

/// `name` as a path inside a layout, if it is one of a layout's files: `oci-layout`,
/// `index.json` or `blobs/<algorithm>/<hex>` (a leading `./` allowed).
fn layout_member(name: &Path) -> Option<PathBuf> {
    let parts: Vec<&str> = name
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            && s != "."
            && s != ".."
    };
    match parts.as_slice() {
        ["oci-layout"] | ["index.json"] => Some(PathBuf::from(parts[0])),
        ["blobs", algorithm, hex] if plain(algorithm) && plain(hex) => {
            Some(Path::new("blobs").join(algorithm).join(hex))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_layout_files_are_members() {
        for good in [
            "oci-layout",
            "./index.json",
            "blobs/sha256/ab12",
            "./blobs/sha512/ff",
        ] {
            assert!(layout_member(Path::new(good)).is_some(), "{good}");
        }
        for bad in [
            "../index.json",
            "/etc/passwd",
            "blobs/sha256/../../x",
            "blobs/sha256",
            "blobs/sha256/a/b",
            "other",
            "blobs/sha256/..",
        ] {
            assert!(layout_member(Path::new(bad)).is_none(), "{bad}");
        }
    }
}
