//! Reading a bootstrap layer back (`check`, `inspect`, `unpack`): the gzip tar
//! [`super::image::bootstrap_layer`] writes, streamed once. The bootstrap is taken out of it and
//! the uncompressed tar is hashed on the way, which is the layer's diff_id.
//!
//! The layer may come from anyone: the tar is read raw, so an extension header (PAX, GNU long
//! name) is refused instead of being held in memory, and the bootstrap is read up to a limit.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use oci_spec::image::{Descriptor, ImageManifest};

use super::image::{ANNOTATION_NYDUS_BOOTSTRAP, BOOTSTRAP_PATH_IN_LAYER};
use crate::common::digest::from_io;
use crate::common::error::{Error, Result};
use crate::common::hex::hex;
use crate::source::layout::blob_path;
use crate::source::store::BlobStore;

/// Largest bootstrap read from a bootstrap layer: far above any real one (about 1 GiB for ten
/// million files).
pub const BOOTSTRAP_LIMIT: u64 = 4 << 30;

/// What was found in a bootstrap layer.
#[derive(Debug)]
pub struct BootstrapLayer {
    /// The bytes of `image/image.boot`.
    pub bootstrap: Vec<u8>,
    /// `sha256:` digest of the uncompressed tar (the config's diff_id for this layer).
    pub diff_id: String,
}

/// Why a bootstrap layer could not be read: the file failed (`Io`), or it is not a bootstrap
/// layer (`Bad`, a sentence for the caller to name the layer in).
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Bad(String),
}

/// The bootstrap layer of a manifest: the layer annotated as one (a Nydus manifest has it).
pub fn find(manifest: &ImageManifest) -> Option<&Descriptor> {
    manifest.layers().iter().find(|l| {
        l.annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_NYDUS_BOOTSTRAP))
            .is_some_and(|v| v == "true")
    })
}

/// The bootstrap of the bootstrap layer `layer`, read from an input's `store` (`inspect` and
/// `unpack` of a Nydus image). `what` names the layer in errors.
pub fn read_from(store: &dyn BlobStore, layer: &Descriptor, what: &str) -> Result<Vec<u8>> {
    let name = blob_path(layer.digest())?;
    let Some(member) = store.open(&name)? else {
        return Err(Error::bad_input(what, "is missing from the input"));
    };
    match read(member.reader) {
        Ok(layer) => Ok(layer.bootstrap),
        Err(ReadError::Io(e)) => Err(from_io(e, store.describe(&name))),
        Err(ReadError::Bad(problem)) => Err(Error::bad_input(what, problem)),
    }
}

/// Read the bootstrap out of the gzip tar `gz`.
pub fn read(gz: impl Read) -> std::result::Result<BootstrapLayer, ReadError> {
    let mut tar = HashingReader {
        inner: flate2::read::MultiGzDecoder::new(gz),
        hasher: Sha256::new(),
    };
    let bootstrap = find_bootstrap(&mut tar)?;
    // The rest (end-of-archive blocks, padding) belongs to the diff_id too.
    io::copy(&mut tar, &mut io::sink()).map_err(classify)?;
    Ok(BootstrapLayer {
        bootstrap: bootstrap.ok_or_else(|| {
            ReadError::Bad(format!(
                "bootstrap layer holds no {BOOTSTRAP_PATH_IN_LAYER}"
            ))
        })?,
        diff_id: format!("sha256:{}", hex(&tar.hasher.finalize())),
    })
}

/// Walk the tar's entries (raw: extension headers are entries of their own) and return the
/// bootstrap's bytes, if there is one.
fn find_bootstrap<R: Read>(tar: &mut R) -> std::result::Result<Option<Vec<u8>>, ReadError> {
    let mut archive = tar::Archive::new(tar);
    let mut found = None;
    let entries = archive.entries().map_err(classify)?.raw(true);
    for entry in entries {
        let mut entry = entry.map_err(classify)?;
        let kind = entry.header().entry_type();
        if !matches!(
            kind,
            tar::EntryType::Regular | tar::EntryType::Directory | tar::EntryType::Continuous
        ) {
            return Err(ReadError::Bad(format!(
                "bootstrap layer holds a tar entry of type {:?}; the bootstrap layer is plain \
                 files and directories",
                kind.as_byte() as char
            )));
        }
        if entry.path_bytes().as_ref() != BOOTSTRAP_PATH_IN_LAYER.as_bytes() {
            continue;
        }
        let size = entry.size();
        if size > BOOTSTRAP_LIMIT {
            return Err(ReadError::Bad(format!(
                "{BOOTSTRAP_PATH_IN_LAYER} is {size} bytes, more than the {BOOTSTRAP_LIMIT} \
                 a bootstrap may have"
            )));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(classify)?;
        found = Some(bytes);
    }
    Ok(found)
}

/// An error of the file itself (it has an OS error code) is the caller's to report as I/O;
/// anything else is the layer's fault.
fn classify(e: io::Error) -> ReadError {
    if e.raw_os_error().is_some() {
        ReadError::Io(e)
    } else {
        ReadError::Bad(format!("bootstrap layer is not a gzip tar: {e}"))
    }
}

/// Hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn tar_of(entries: &[(&str, &[u8])], pax: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        if pax {
            b.append_pax_extensions([("comment", &b"x"[..])]).unwrap();
        }
        for (name, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o444);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn the_bootstrap_and_the_digest_of_the_whole_tar() {
        let tar = tar_of(
            &[("image/other", b"no"), (BOOTSTRAP_PATH_IN_LAYER, b"boot")],
            false,
        );
        let layer = read(&gzip(&tar)[..]).unwrap();
        assert_eq!(layer.bootstrap, b"boot");
        assert_eq!(
            layer.diff_id,
            format!("sha256:{}", hex(&Sha256::digest(&tar)))
        );
    }

    #[test]
    fn extension_headers_missing_bootstraps_and_garbage_are_refused() {
        let problem = |gz: &[u8]| match read(gz) {
            Err(ReadError::Bad(p)) => p,
            other => panic!("{other:?}"),
        };
        let pax = tar_of(&[(BOOTSTRAP_PATH_IN_LAYER, b"boot")], true);
        assert!(problem(&gzip(&pax)).contains("type 'x'"));
        let none = tar_of(&[("image/other", b"no")], false);
        assert!(problem(&gzip(&none)).contains("holds no image/image.boot"));
        assert!(problem(b"not gzip at all").contains("not a gzip tar"));
    }
}
