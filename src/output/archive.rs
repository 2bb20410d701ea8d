//! The `oci-archive` form: one tar file holding an OCI image layout, what people carry into an
//! air-gapped site (`skopeo copy oci-archive:FILE docker://…`).
//!
//! The same layout always gives the same bytes: entries in a fixed order (`oci-layout`,
//! `index.json`, `blobs/`, `blobs/sha256/`, then the blobs by name), ustar headers with owner 0,
//! time 0, mode 0644 for files and 0755 for directories, no user or group names.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::interrupt;
use super::layout::out_error;
use crate::common::error::Result;

/// Pack the layout directory `layout` into the tar file `tmp` (created, flushed and synced), for
/// the caller to rename to `destination` (named in errors).
pub fn write(layout: &Path, tmp: &Path, destination: &Path) -> Result<()> {
    let err = |e: io::Error| out_error(destination, e);
    let file = File::create(tmp).map_err(err)?;
    let mut tar = tar::Builder::new(Checked(BufWriter::with_capacity(1 << 20, file)));
    tar.mode(tar::HeaderMode::Deterministic);
    for name in ["oci-layout", "index.json"] {
        append_file(&mut tar, &layout.join(name), name).map_err(err)?;
    }
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut header, dir, io::empty())
            .map_err(err)?;
    }
    let blobs = layout.join("blobs").join("sha256");
    let mut names: Vec<String> = fs::read_dir(&blobs)
        .and_then(|dir| {
            dir.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .map_err(err)?;
    names.sort();
    for name in names {
        append_file(
            &mut tar,
            &blobs.join(&name),
            &format!("blobs/sha256/{name}"),
        )
        .map_err(err)?;
    }
    let Checked(mut out) = tar.into_inner().map_err(err)?;
    out.flush().map_err(err)?;
    out.get_ref().sync_all().map_err(err)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, path: &Path, name: &str) -> io::Result<()> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut header = header(tar::EntryType::Regular, 0o644, size);
    tar.append_data(&mut header, name, file)
}

/// A writer that stops once a signal asked us to ([`interrupt::check_io`]).
struct Checked<W>(W);

impl<W: Write> Write for Checked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        interrupt::check_io()?;
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_layout_gives_the_same_bytes_in_a_fixed_order() {
        let scratch = tempfile::tempdir().unwrap();
        let layout = scratch.path().join("layout");
        fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        fs::write(layout.join("oci-layout"), b"{}").unwrap();
        fs::write(layout.join("index.json"), b"{\"manifests\":[]}").unwrap();
        for name in ["bb", "aa"] {
            fs::write(layout.join("blobs/sha256").join(name), name).unwrap();
        }
        let one = scratch.path().join("one.tar");
        write(&layout, &one, &one).unwrap();
        // Other times and modes on disk change nothing.
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(layout.join("blobs/sha256/aa"), "aa").unwrap();
        let two = scratch.path().join("two.tar");
        write(&layout, &two, &two).unwrap();
        assert_eq!(fs::read(&one).unwrap(), fs::read(&two).unwrap());

        let bytes = fs::read(&one).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let entries: Vec<(String, u64, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mtime().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("oci-layout".into(), 0, 0o644),
                ("index.json".into(), 0, 0o644),
                ("blobs/".into(), 0, 0o755),
                ("blobs/sha256/".into(), 0, 0o755),
                ("blobs/sha256/aa".into(), 0, 0o644),
                ("blobs/sha256/bb".into(), 0, 0o644),
            ]
        );
    }
}
