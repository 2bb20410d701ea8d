//! Content digests: hashing bytes as they stream past, and checking them against what the input
//! declares.
//!
//! Every blob an image names carries a digest and usually a size. [`Verifier`] wraps a reader,
//! hashes and counts what goes through it, refuses to read past the declared size, and at end of
//! stream compares both; nothing is buffered beyond the caller's own buffer.

use std::fmt;
use std::io::{self, Read};

use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::common::error::{Error, Result};
use crate::common::text::count;

/// A running hash in the algorithm a digest names.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    /// A hasher for the algorithm of `digest`; `what` names the object for the error, given when
    /// the algorithm is not one we can compute.
    pub fn for_digest(digest: &Digest, what: impl fmt::Display) -> Result<Hasher> {
        Ok(match digest.algorithm() {
            DigestAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            DigestAlgorithm::Sha384 => Hasher::Sha384(Sha384::new()),
            DigestAlgorithm::Sha512 => Hasher::Sha512(Sha512::new()),
            other => {
                return Err(Error::bad_input(
                    what,
                    format!("digest {digest} uses algorithm {other}, which cannot be verified"),
                ));
            }
        })
    }

    /// Feed more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far, as `algorithm:hex`.
    pub fn finish(self) -> Digest {
        let (algorithm, raw): (&str, Vec<u8>) = match self {
            Hasher::Sha256(h) => ("sha256", h.finalize().to_vec()),
            Hasher::Sha384(h) => ("sha384", h.finalize().to_vec()),
            Hasher::Sha512(h) => ("sha512", h.finalize().to_vec()),
        };
        let text = format!("{algorithm}:{}", super::hex::hex(&raw));
        // Lower-case hex of the right length always parses.
        text.parse().expect("a computed digest is well-formed")
    }
}

/// The sha256 digest of `bytes`.
pub fn sha256_of(bytes: &[u8]) -> Digest {
    let mut h = Hasher::Sha256(Sha256::new());
    h.update(bytes);
    h.finish()
}

/// Check `bytes` (already read whole; only for small JSON blobs) against a digest and size.
pub fn check_bytes(
    what: &str,
    bytes: &[u8],
    digest: &Digest,
    size: u64,
    declared_by: &str,
) -> Result<()> {
    if bytes.len() as u64 != size {
        return Err(Error::bad_input(
            what,
            format!(
                "is {}, but {declared_by} says {}",
                count(bytes.len() as u64, "byte"),
                count(size, "byte")
            ),
        ));
    }
    let mut h = Hasher::for_digest(digest, what)?;
    h.update(bytes);
    let actual = h.finish();
    if &actual != digest {
        return Err(Error::bad_input(
            what,
            format!("content has digest {actual}, but {declared_by} says {digest}"),
        ));
    }
    Ok(())
}

/// Wrap one of our errors so it can travel through `io::Read`; [`from_io`] unwraps it again.
pub fn into_io(err: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

/// Turn an `io::Error` from a verifying reader back into our [`Error`]: the original one if it
/// carries one, else an I/O failure on `what`.
pub fn from_io(err: io::Error, what: impl fmt::Display) -> Error {
    if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let inner = err.into_inner().expect("checked above");
        let ours = inner.downcast::<Error>().expect("checked above");
        return *ours;
    }
    Error::new(crate::ErrorKind::Io, format!("{what}: {err}"))
}

/// A reader that hashes and counts the bytes passing through and, at end of stream, checks them
/// against an expected digest and (optionally) size.
///
/// It never reads more than one byte past a declared size, so a blob larger than declared is
/// caught without reading it all. Failures come out of `read` as `io::Error`s carrying an
/// [`Error`] of kind `BadInput`; use [`from_io`] to recover it.
pub struct Verifier<R> {
    inner: R,
    what: String,
    declared_by: String,
    expected: Digest,
    size: Option<u64>,
    hasher: Option<Hasher>,
    count: u64,
}

impl<R: Read> Verifier<R> {
    /// Verify `inner` against `expected` (and `size` when given). `what` names the blob in errors
    /// and `declared_by` names where the expectation comes from ("the manifest").
    pub fn new(
        inner: R,
        what: impl Into<String>,
        declared_by: impl Into<String>,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<Verifier<R>> {
        let what = what.into();
        let hasher = Hasher::for_digest(expected, &what)?;
        Ok(Verifier {
            inner,
            what,
            declared_by: declared_by.into(),
            expected: expected.clone(),
            size,
            hasher: Some(hasher),
            count: 0,
        })
    }

    /// How many bytes have passed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether end of stream was reached and everything matched.
    pub fn is_verified(&self) -> bool {
        self.hasher.is_none()
    }

    /// Read to the end, discarding the bytes, so that the checks run. A stream that was already
    /// verified returns at once.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 64 * 1024];
        while self.read(&mut buf)? > 0 {}
        Ok(())
    }

    fn check_at_end(&mut self) -> io::Result<()> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        if let Some(size) = self.size
            && self.count != size
        {
            return Err(into_io(Error::bad_input(
                &self.what,
                format!(
                    "is {} bytes, but {} says {size} bytes (truncated?)",
                    self.count, self.declared_by
                ),
            )));
        }
        let actual = hasher.finish();
        if actual != self.expected {
            return Err(into_io(Error::bad_input(
                &self.what,
                format!(
                    "content has digest {actual}, but {} says {}",
                    self.declared_by, self.expected
                ),
            )));
        }
        Ok(())
    }
}

impl<R: Read> Read for Verifier<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.hasher.is_none() || buf.is_empty() {
            return Ok(0);
        }
        // Ask for at most one byte beyond the declared size: enough to notice an oversized blob.
        let limit = match self.size {
            Some(size) => (size.saturating_sub(self.count).saturating_add(1)).min(buf.len() as u64),
            None => buf.len() as u64,
        } as usize;
        let n = self.inner.read(&mut buf[..limit])?;
        if n == 0 {
            self.check_at_end()?;
            return Ok(0);
        }
        self.count += n as u64;
        if let Some(size) = self.size
            && self.count > size
        {
            self.hasher = None;
            return Err(into_io(Error::bad_input(
                &self.what,
                format!("is larger than the {size} bytes {} says", self.declared_by),
            )));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_accepts_exact_and_rejects_bad() {
        let data = b"some blob".to_vec();
        let d = sha256_of(&data);
        let mut ok = Verifier::new(&data[..], "blob", "the manifest", &d, Some(9)).unwrap();
        ok.drain().unwrap();
        assert!(ok.is_verified());

        let mut short = Verifier::new(&data[..], "blob", "the manifest", &d, Some(10)).unwrap();
        let e = from_io(short.drain().unwrap_err(), "blob");
        assert!(e.to_string().contains("is 9 bytes"), "{e}");

        let mut long = Verifier::new(&data[..], "blob", "the manifest", &d, Some(5)).unwrap();
        let e = from_io(long.drain().unwrap_err(), "blob");
        assert!(e.to_string().contains("larger than the 5 bytes"), "{e}");

        let other = sha256_of(b"x");
        let mut bad = Verifier::new(&data[..], "blob", "the manifest", &other, None).unwrap();
        let e = from_io(bad.drain().unwrap_err(), "blob");
        assert_eq!(e.kind(), crate::ErrorKind::BadInput);
        assert!(e.to_string().contains("content has digest"), "{e}");
    }

    #[test]
    fn sha256_matches_known_value() {
        assert_eq!(
            sha256_of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
