//! Layer decompression: recognise how a layer's bytes are compressed and undo it as a stream.
//!
//! The media type of a layer says how it *should* be compressed; the first bytes say how it *is*.
//! They disagree in the wild (Docker writes `diff.tar.gzip` over plain tars in some exports, and
//! hand-made layouts mislabel zstd), so the bytes win: [`sniff`] looks at the magic number and the
//! [`Decompressor`] undoes gzip, zstd or nothing. Nothing here holds more than a buffer of the
//! layer in memory.

use std::fmt;
use std::io::{self, Chain, Cursor, Read};

use flate2::read::MultiGzDecoder;

use crate::common::error::{Error, Result};

/// How a layer's bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952); several concatenated members are read as one stream, as `gzip -d` does.
    Gzip,
    /// Zstandard frames, including skippable frames (used by zstd:chunked and eStargz-style TOCs).
    Zstd,
}

impl Compression {
    /// The lower-case name used in messages and in `inspect` output.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the first bytes of a stream say about its compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// A compression we can undo (or none at all).
    Known(Compression),
    /// A compression format we recognise but do not read; the value is its name.
    Unsupported(&'static str),
}

/// How many leading bytes [`detect`] needs to tell every format apart.
pub const MAGIC_LEN: usize = 6;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Skippable zstd frames have magic 0x184D2A50..=0x184D2A5F, little-endian.
const ZSTD_SKIPPABLE_TAIL: &[u8] = &[0x2a, 0x4d, 0x18];
const XZ_MAGIC: &[u8] = &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";
const LZ4_MAGIC: &[u8] = &[0x04, 0x22, 0x4d, 0x18];

/// Classify a stream by its first bytes (up to [`MAGIC_LEN`]; fewer when the stream is shorter).
///
/// Anything without a known magic number is taken to be a plain tar: a tar starts with a file
/// name, which has no magic, and a stream that is no tar at all is rejected by the tar reader.
pub fn detect(head: &[u8]) -> Detected {
    if head.starts_with(GZIP_MAGIC) {
        Detected::Known(Compression::Gzip)
    } else if head.starts_with(ZSTD_MAGIC)
        || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && &head[1..4] == ZSTD_SKIPPABLE_TAIL)
    {
        Detected::Known(Compression::Zstd)
    } else if head.starts_with(XZ_MAGIC) {
        Detected::Unsupported("xz")
    } else if head.starts_with(BZIP2_MAGIC) {
        Detected::Unsupported("bzip2")
    } else if head.starts_with(LZ4_MAGIC) {
        Detected::Unsupported("lz4")
    } else {
        Detected::Known(Compression::None)
    }
}

/// What to warn of when a layer's media type says `declared` and its magic number says
/// `stored`; `None` when they agree. The layer is read as its bytes are, whatever the label.
pub fn mislabelled(media_type: &str, declared: Compression, stored: Compression) -> Option<String> {
    if declared == stored {
        return None;
    }
    let really = match stored {
        Compression::None => "is not compressed (read as a plain tar)".to_string(),
        other => format!("is {other}-compressed (read as {other})"),
    };
    let said = match declared {
        Compression::None => "no compression".to_string(),
        other => other.to_string(),
    };
    Some(format!(
        "its media type {media_type} says {said}, but it {really}"
    ))
}

/// A reader that has had its first bytes looked at; they are given back before the rest.
pub type Peeked<R> = Chain<Cursor<Vec<u8>>, R>;

/// [`sniff`], requiring a compression this program reads: anything else is a bad-input error
/// naming `location` (the blob, for messages).
pub fn sniff_readable<R: Read>(reader: R, location: &str) -> Result<(Compression, Peeked<R>)> {
    let (detected, peeked) =
        sniff(reader).map_err(|e| crate::common::digest::from_io(e, location))?;
    match detected {
        Detected::Known(c) => Ok((c, peeked)),
        Detected::Unsupported(name) => Err(Error::bad_input(
            location,
            format!("is {name}-compressed, which this program cannot read"),
        )),
    }
}

/// Read the first [`MAGIC_LEN`] bytes of `reader` (fewer at end of stream), classify them, and
/// return a reader that still yields every byte from the start.
pub fn sniff<R: Read>(mut reader: R) -> io::Result<(Detected, Peeked<R>)> {
    let mut head = vec![0u8; MAGIC_LEN];
    let mut filled = 0;
    // One read may return fewer bytes than asked even before the end; keep going until full.
    while filled < head.len() {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    Ok((detect(&head), Cursor::new(head).chain(reader)))
}

/// A stream of uncompressed bytes over a (possibly) compressed reader.
///
/// Errors of the inner reader pass through unchanged; errors of the decoder itself (corrupt data,
/// a stream that ends before its last frame or gzip trailer) come back as `io::Error`s whose kind
/// is `InvalidData`, `InvalidInput` or `UnexpectedEof`.
pub struct Decompressor<R: Read> {
    inner: Inner<R>,
}

enum Inner<R: Read> {
    Plain(R),
    Gzip(Box<MultiGzDecoder<R>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, io::BufReader<R>>>),
}

impl<R: Read> Decompressor<R> {
    /// Undo `compression` on the bytes of `reader`.
    pub fn new(reader: R, compression: Compression) -> io::Result<Decompressor<R>> {
        let inner = match compression {
            Compression::None => Inner::Plain(reader),
            Compression::Gzip => Inner::Gzip(Box::new(MultiGzDecoder::new(reader))),
            Compression::Zstd => Inner::Zstd(Box::new(zstd::stream::read::Decoder::new(reader)?)),
        };
        Ok(Decompressor { inner })
    }

    /// The compressed stream underneath. Decoders read ahead, so its position may be past the
    /// bytes that have been decompressed so far.
    pub fn get_mut(&mut self) -> &mut R {
        match &mut self.inner {
            Inner::Plain(r) => r,
            Inner::Gzip(d) => d.get_mut(),
            Inner::Zstd(d) => d.get_mut().get_mut(),
        }
    }
}

impl<R: Read> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(r) => r.read(buf),
            Inner::Gzip(d) => d.read(buf),
            Inner::Zstd(d) => d.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn roundtrip(stored: Vec<u8>) -> io::Result<(Detected, Vec<u8>)> {
        let (detected, peeked) = sniff(Cursor::new(stored))?;
        let Detected::Known(c) = detected else {
            return Ok((detected, Vec::new()));
        };
        let mut out = Vec::new();
        Decompressor::new(peeked, c)?.read_to_end(&mut out)?;
        Ok((detected, out))
    }

    #[test]
    fn detects_and_undoes_each_compression() {
        let data = b"hello layer".repeat(100);
        let (d, out) = roundtrip(gzip(&data)).unwrap();
        assert_eq!((d, &out), (Detected::Known(Compression::Gzip), &data));
        let (d, out) = roundtrip(zstd::encode_all(&data[..], 3).unwrap()).unwrap();
        assert_eq!((d, &out), (Detected::Known(Compression::Zstd), &data));
        let (d, out) = roundtrip(data.clone()).unwrap();
        assert_eq!((d, &out), (Detected::Known(Compression::None), &data));
        let (d, out) = roundtrip(b"ab".to_vec()).unwrap();
        assert_eq!(
            (d, out),
            (Detected::Known(Compression::None), b"ab".to_vec())
        );
        assert_eq!(
            detect(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0]),
            Detected::Unsupported("xz")
        );
    }

    #[test]
    fn a_mislabelled_layer_is_said_as_it_is() {
        let media = "application/vnd.oci.image.layer.v1.tar+gzip";
        assert_eq!(
            mislabelled(media, Compression::Gzip, Compression::Gzip),
            None
        );
        assert_eq!(
            mislabelled(media, Compression::Gzip, Compression::Zstd).unwrap(),
            format!("its media type {media} says gzip, but it is zstd-compressed (read as zstd)")
        );
        assert!(
            mislabelled(media, Compression::Gzip, Compression::None)
                .unwrap()
                .ends_with("but it is not compressed (read as a plain tar)")
        );
        let plain = "application/vnd.oci.image.layer.v1.tar";
        assert!(
            mislabelled(plain, Compression::None, Compression::Gzip)
                .unwrap()
                .contains("says no compression, but it is gzip-compressed")
        );
    }

    #[test]
    fn truncated_streams_are_errors() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let gz = gzip(&data);
        assert!(roundtrip(gz[..gz.len() / 2].to_vec()).is_err());
        assert!(roundtrip(gz[..gz.len() - 4].to_vec()).is_err());
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        assert!(roundtrip(zst[..zst.len() / 2].to_vec()).is_err());
        assert!(roundtrip(zst[..zst.len() - 3].to_vec()).is_err());
    }
}
