//! The uncompressed tar stream of one layer, verified as it is read.
//!
//! Two checks run on every byte, with no second pass and no buffering beyond the decoder's:
//! the stored (compressed) bytes against the manifest's digest and size, and the uncompressed
//! bytes against the config's `rootfs.diff_ids` entry. Both are settled when the stream ends.
//! A layer stored uncompressed is hashed once: its stored bytes are its uncompressed bytes, so
//! when both digests use one algorithm the stored hash settles the diff_id too.
//!
//! ```text
//! member bytes ─▶ Verifier (digest, size) ─▶ Decompressor (by magic) ─▶ diff_id hash ─▶ caller
//! ```

use std::io::{self, Read};

use oci_spec::image::Digest;

use super::compression;
use crate::common::digest::{Hasher, Verifier, from_io, into_io};
use crate::common::error::{Error, ErrorKind, Result};
use crate::source::compression::{Compression, Decompressor, Peeked};
use crate::source::image::Layer;
use crate::source::store::BlobStore;

/// A layer's stored bytes, verified as they are read.
pub type Stored = Verifier<Box<dyn Read + Send>>;

/// How the diff_id is checked.
enum DiffCheck {
    /// By hashing the uncompressed bytes.
    Hash(Hasher),
    /// The layer is stored uncompressed and its digest has the diff_id's algorithm: once the
    /// stored bytes matched this digest, the uncompressed bytes have this digest too.
    Stored(Digest),
    /// Checked already.
    Done,
}

/// What a fully read and verified layer turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSummary {
    /// Bytes of the stored (compressed) blob.
    pub stored_size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    /// The uncompressed digest, equal to the config's diff_id.
    pub diff_id: Digest,
}

/// A reader of a layer's uncompressed tar bytes that verifies as it goes.
///
/// Reading to end of stream runs both checks; a mismatch comes out of `read` as an
/// `io::Error` wrapping a `BadInput` [`Error`] (see [`from_io`]). A tar reader usually stops at
/// the end-of-archive marker before the end of the stream, so always call [`finish`], which
/// reads whatever is left and reports the checks' outcome.
///
/// [`finish`]: LayerReader::finish
pub struct LayerReader {
    decoder: Decompressor<Peeked<Stored>>,
    compression: Compression,
    diff_check: DiffCheck,
    expected_diff_id: Digest,
    uncompressed: u64,
    /// Set once the stream ended and verified.
    done: bool,
    /// Set once a check failed; every later read repeats the failure instead of pretending the
    /// stream ended cleanly.
    failure: Option<(ErrorKind, String)>,
    location: String,
}

/// The layer's stored (still compressed) bytes, checked against the manifest's digest and size
/// as they are read.
pub fn open_stored(store: &dyn BlobStore, layer: &Layer) -> Result<Stored> {
    let Some(member) = store.open(&layer.blob)? else {
        return Err(Error::bad_input(
            &layer.location,
            format!("{} is missing", layer.label()),
        ));
    };
    Verifier::new(
        member.reader,
        layer.location.clone(),
        "the manifest",
        &layer.digest,
        Some(layer.size),
    )
}

impl LayerReader {
    /// Open `layer` in `store` for reading.
    pub fn open(store: &dyn BlobStore, layer: &Layer) -> Result<LayerReader> {
        let label = layer.label();
        let stored = open_stored(store, layer)?;
        let (compression, peeked) = compression::sniff_readable(stored, &layer.location)?;
        let decoder = Decompressor::new(peeked, compression).map_err(|e| {
            Error::bad_input(
                &layer.location,
                format!("cannot start {compression} decoding: {e}"),
            )
        })?;
        Ok(LayerReader {
            decoder,
            compression,
            diff_check: if compression == Compression::None
                && layer.digest.algorithm() == layer.diff_id.algorithm()
            {
                DiffCheck::Stored(layer.digest.clone())
            } else {
                DiffCheck::Hash(Hasher::for_digest(&layer.diff_id, &label)?)
            },
            expected_diff_id: layer.diff_id.clone(),
            uncompressed: 0,
            done: false,
            failure: None,
            location: layer.location.clone(),
        })
    }

    /// The compression actually undone (from the magic bytes, whatever the media type said).
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Read the rest of the stream, discarding it, and return the verified sizes and diff_id;
    /// or the first verification error.
    pub fn finish(mut self) -> Result<LayerSummary> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(from_io(e, &self.location)),
            }
        }
        Ok(LayerSummary {
            stored_size: self.stored().count(),
            uncompressed_size: self.uncompressed,
            diff_id: self.expected_diff_id.clone(),
        })
    }

    fn stored(&mut self) -> &mut Stored {
        self.decoder.get_mut().get_mut().1
    }

    /// Called when the decoder reports the end: the stored bytes must end too (anything after
    /// the compressed stream still has to match the digest), then the diff_id must match.
    fn check_at_end(&mut self) -> io::Result<()> {
        let actual = match std::mem::replace(&mut self.diff_check, DiffCheck::Done) {
            DiffCheck::Done => return Ok(()),
            DiffCheck::Hash(hasher) => {
                self.stored().drain()?;
                hasher.finish()
            }
            DiffCheck::Stored(digest) => {
                // Draining checks the stored bytes against `digest`; past it, they have it.
                self.stored().drain()?;
                digest
            }
        };
        if actual != self.expected_diff_id {
            return Err(into_io(Error::bad_input(
                &self.location,
                format!(
                    "uncompressed content has digest {actual}, but the config's \
                     rootfs.diff_ids says {}",
                    self.expected_diff_id
                ),
            )));
        }
        Ok(())
    }

    /// A decoder error: prefer the stored bytes' own mismatch when there is one, since a bad
    /// digest or size explains a corrupt stream better than the decoder can.
    fn decode_error(&mut self, e: io::Error) -> io::Error {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return e;
        }
        if let Err(stored_err) = self.stored().drain() {
            return stored_err;
        }
        // The layer's label is the caller's to add, as for every error of its reading.
        into_io(Error::bad_input(
            &self.location,
            format!("{} data is truncated or corrupt: {e}", self.compression),
        ))
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, message)) = &self.failure {
            return Err(into_io(Error::new(*kind, message.clone())));
        }
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let result = match self.decoder.read(buf) {
            Ok(0) => self.check_at_end().map(|()| {
                self.done = true;
                0
            }),
            Ok(n) => {
                self.uncompressed += n as u64;
                if let DiffCheck::Hash(h) = &mut self.diff_check {
                    h.update(&buf[..n]);
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => Err(self.decode_error(e)),
        };
        if let Err(e) = &result {
            self.failure = Some(match e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
                Some(ours) => (ours.kind(), ours.to_string()),
                None => (ErrorKind::Io, format!("{}: {e}", self.location)),
            });
        }
        result
    }
}
