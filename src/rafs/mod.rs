//! RAFS bootstrap writers: the merged tree laid out as RAFS v6 metadata (EROFS-compatible, what
//! nydusd and the kernel mount) or as RAFS v5 (nydusd only), as `--fs-version` chooses.

pub mod bootstrap;
pub mod v5;
pub mod v6;

use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::blob::chunk::{BlobInfo, BlobOptions, FsVersion};
use crate::common::error::{Error, ErrorKind, Result};
pub use bootstrap::{Bootstrap, BootstrapInput, Prefetch};

/// Build the bootstrap of the version `input.options` names, writing it to `out` front to
/// back; returns its size.
pub fn write_to(input: &BootstrapInput, out: &mut dyn Write) -> Result<u64> {
    match input.options.fs_version {
        FsVersion::V5 => v5::writer::write_to(input, out),
        FsVersion::V6 => v6::writer::write_to(input, out),
    }
}

/// Build the bootstrap into an unnamed temporary file in `dir`: the output's own directory is
/// the place, as a temporary directory may be a tmpfs, whose pages are memory too.
pub fn write_temp(input: &BootstrapInput, dir: &Path) -> Result<Bootstrap> {
    let io_error = |e: io::Error| {
        Error::new(
            ErrorKind::Io,
            format!("writing the bootstrap to a temporary file: {e}"),
        )
    };
    let file = tempfile::tempfile_in(dir).map_err(io_error)?;
    let mut out = BufWriter::with_capacity(256 << 10, file);
    let len = write_to(input, &mut out)?;
    let file = out.into_inner().map_err(|e| io_error(e.into_error()))?;
    Ok(Bootstrap { file, len })
}

/// Build the bootstrap bytes in memory.
pub fn write(input: &BootstrapInput) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_to(input, &mut out)?;
    Ok(out)
}

/// Give a bootstrap written by [`write_temp`] the blob table of `blobs`, which must differ from
/// the blobs it was written with in their ids only: nothing else of a bootstrap depends on blob
/// ids (all 64 characters long), so the result is what `write_temp` would write for `blobs`.
/// This lets the merged bootstrap be written, and the tree freed, before the last layer's blob
/// (whose digest is its id) is finished.
pub fn set_blob_ids(bootstrap: &Bootstrap, blobs: &[BlobInfo], options: BlobOptions) -> Result<()> {
    match options.fs_version {
        FsVersion::V5 => v5::writer::set_blob_ids(bootstrap, blobs),
        FsVersion::V6 => v6::writer::set_blob_ids(bootstrap, blobs, options),
    }
}
