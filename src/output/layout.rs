//! Writing an OCI image layout so that it appears whole or not at all.
//!
//! Everything goes into a temporary sibling of the destination (same filesystem, so the final
//! rename is atomic); blobs are hashed while they are written and land under their digest; the
//! directory is renamed into place only by [`LayoutWriter::commit`]. Dropping an uncommitted
//! writer (an error, a panic) removes the temporary directory.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};

/// The content of the `oci-layout` file this program writes.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A blob as it was stored: `sha256:<hex>` and its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: String,
    pub size: u64,
}

impl StoredBlob {
    /// The hex part of the digest, which is also the Nydus blob id of a data blob.
    pub fn hex(&self) -> &str {
        &self.digest["sha256:".len()..]
    }
}

/// An OCI image layout being written into a temporary directory.
pub struct LayoutWriter {
    destination: PathBuf,
    tmp: PathBuf,
    blobs: PathBuf,
    next_tmp: u64,
    committed: bool,
}

impl LayoutWriter {
    /// Start writing a layout that will become `destination`. An existing `destination` is an
    /// error unless `replace` is set, in which case it is replaced at commit time.
    pub fn create(destination: &Path, replace: bool) -> Result<LayoutWriter> {
        if destination.exists() && !replace {
            return Err(Error::new(
                crate::ErrorKind::Io,
                format!(
                    "{}: already exists (choose another output, or --force to replace it)",
                    destination.display()
                ),
            ));
        }
        let name = destination.file_name().ok_or_else(|| {
            Error::usage(format!(
                "{}: not a usable output path",
                destination.display()
            ))
        })?;
        let parent = match destination.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).with_path(&parent)?;
        let tmp = parent.join(format!(
            ".{}.nydus-offline-tmp.{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if tmp.exists() {
            // Left by an earlier run of this same pid number that was killed: ours to reuse.
            fs::remove_dir_all(&tmp).with_path(&tmp)?;
        }
        let blobs = tmp.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).with_path(&blobs)?;
        Ok(LayoutWriter {
            destination: destination.to_path_buf(),
            tmp,
            blobs,
            next_tmp: 0,
            committed: false,
        })
    }

    /// The temporary directory being filled (for tests and messages).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Start a blob of unknown digest; [`BlobFile::finish`] files it under its sha256.
    pub fn blob(&mut self) -> Result<BlobFile> {
        self.next_tmp += 1;
        let path = self.blobs.join(format!(".incoming-{}", self.next_tmp));
        let file = File::create(&path).with_path(&path)?;
        Ok(BlobFile {
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            size: 0,
            path,
            blobs: self.blobs.clone(),
        })
    }

    /// Store `bytes` as a blob (configs, manifests, small layers).
    pub fn put(&mut self, bytes: &[u8]) -> Result<StoredBlob> {
        let mut blob = self.blob()?;
        blob.write_all(bytes).with_path(&blob.path)?;
        blob.finish()
    }

    /// Write `oci-layout` and `index.json`, flush everything to disk, and move the layout into
    /// place. Until this returns, `destination` is untouched.
    pub fn commit(mut self, index_json: &[u8]) -> Result<()> {
        write_synced(&self.tmp.join("oci-layout"), OCI_LAYOUT)?;
        write_synced(&self.tmp.join("index.json"), index_json)?;
        sync_dir(&self.blobs)?;
        sync_dir(&self.tmp)?;
        if self.destination.exists() {
            // Replacing (--force): move the old one aside first so a failure keeps one of them.
            let old = self.tmp.with_extension("old");
            fs::rename(&self.destination, &old).with_path(&self.destination)?;
            fs::rename(&self.tmp, &self.destination).with_path(&self.destination)?;
            let _ = fs::remove_dir_all(&old);
        } else {
            fs::rename(&self.tmp, &self.destination).with_path(&self.destination)?;
        }
        if let Some(parent) = self
            .destination
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            sync_dir(parent)?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for LayoutWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// A blob being written; hashed as it goes.
pub struct BlobFile {
    out: BufWriter<File>,
    hasher: Sha256,
    size: u64,
    path: PathBuf,
    blobs: PathBuf,
}

impl BlobFile {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flush, sync and file the blob under its digest.
    pub fn finish(mut self) -> Result<StoredBlob> {
        self.out.flush().with_path(&self.path)?;
        self.out.get_ref().sync_all().with_path(&self.path)?;
        let hex: String = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let final_path = self.blobs.join(&hex);
        fs::rename(&self.path, &final_path).with_path(&final_path)?;
        Ok(StoredBlob {
            digest: format!("sha256:{hex}"),
            size: self.size,
        })
    }
}

impl Write for BlobFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).with_path(path)?;
    file.write_all(bytes).with_path(path)?;
    file.sync_all().with_path(path)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_path(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_until_commit_and_nothing_remains_on_drop() {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        {
            let mut w = LayoutWriter::create(&out, false).unwrap();
            let blob = w.put(b"hello").unwrap();
            assert_eq!(
                blob.digest,
                "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
            );
            assert!(w.tmp_dir().join("blobs/sha256").join(blob.hex()).exists());
            assert!(!out.exists());
        }
        assert!(!out.exists());
        assert_eq!(
            fs::read_dir(scratch.path()).unwrap().count(),
            0,
            "temp dir removed"
        );
    }

    #[test]
    fn commit_moves_the_whole_layout_into_place() {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        let mut w = LayoutWriter::create(&out, false).unwrap();
        let mut blob = w.blob().unwrap();
        blob.write_all(b"hel").unwrap();
        blob.write_all(b"lo").unwrap();
        assert_eq!(blob.size(), 5);
        let stored = blob.finish().unwrap();
        w.commit(b"{}").unwrap();
        assert_eq!(fs::read(out.join("oci-layout")).unwrap(), OCI_LAYOUT);
        assert_eq!(fs::read(out.join("index.json")).unwrap(), b"{}");
        assert_eq!(
            fs::read(out.join("blobs/sha256").join(stored.hex())).unwrap(),
            b"hello"
        );
        let names: Vec<_> = fs::read_dir(out.join("blobs/sha256")).unwrap().collect();
        assert_eq!(names.len(), 1, "no incoming files left");
        assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 1);

        let err = LayoutWriter::create(&out, false).err().unwrap();
        assert!(err.to_string().contains("already exists"), "{err}");
        let w = LayoutWriter::create(&out, true).unwrap();
        w.commit(b"{\"new\":1}").unwrap();
        assert_eq!(fs::read(out.join("index.json")).unwrap(), b"{\"new\":1}");
        assert_eq!(
            fs::read_dir(scratch.path()).unwrap().count(),
            1,
            "old layout removed"
        );
    }
}
