//! The one little-endian field codec behind every on-disk structure of the program
//! (the blob and RAFS `ondisk` modules).
//!
//! A structure's `encode` writes its fields in declaration order through a [`LeWriter`]; its
//! `decode` reads them back in the same order through a [`LeReader`]. Neither uses `unsafe` or
//! casts the struct's memory: the Rust layout only has to have the right *size* (asserted next
//! to each type), the byte order is spelled out here.
//!
//! The reader checks the input length once, when it is created, so decoding short input is a
//! clean [`Error`] and never a panic.

use crate::common::error::{Error, Result};

/// Reads little-endian fields, in order, from exactly `size` bytes of a structure.
pub(crate) struct LeReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> LeReader<'a> {
    /// Starts reading the structure named `what`, `size` bytes long, at the start of `buf`.
    ///
    /// Bytes after the first `size` are ignored. If `buf` is shorter than `size`, the error names
    /// the structure and both lengths.
    pub(crate) fn new(what: &str, buf: &'a [u8], size: usize) -> Result<LeReader<'a>> {
        match buf.get(..size) {
            Some(buf) => Ok(LeReader { buf, pos: 0 }),
            None => Err(Error::bad_input(
                what,
                format!("truncated: need {size} bytes, got {}", buf.len()),
            )),
        }
    }

    /// The next `N` bytes, as they are.
    ///
    /// Reading past the declared size is a bug in a `decode` function (each one is exercised by
    /// the unit tests), so it panics rather than returning garbage.
    pub(crate) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        out
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }

    /// Ends the structure; every declared byte must have been read.
    pub(crate) fn finish(self) {
        debug_assert_eq!(self.pos, self.buf.len(), "decode read too few fields");
    }
}

/// Writes little-endian fields, in order, into an `N`-byte structure image.
pub(crate) struct LeWriter<const N: usize> {
    buf: [u8; N],
    pos: usize,
}

impl<const N: usize> LeWriter<N> {
    pub(crate) fn new() -> LeWriter<N> {
        LeWriter {
            buf: [0u8; N],
            pos: 0,
        }
    }

    /// Appends raw bytes (names, digests, reserved areas).
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// The finished image; every byte must have been written.
    pub(crate) fn finish(self) -> [u8; N] {
        debug_assert_eq!(self.pos, N, "encode wrote too few fields");
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_byte_order() {
        let mut w = LeWriter::<15>::new();
        w.u8(0xAB);
        w.u16(0x0102);
        w.u32(0x0304_0506);
        w.u64(0x0708_090A_0B0C_0D0E);
        let bytes = w.finish();
        assert_eq!(
            bytes,
            [
                0xAB, 2, 1, 6, 5, 4, 3, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A, 9, 8, 7
            ]
        );
        let mut r = LeReader::new("thing", &bytes, 15).unwrap();
        assert_eq!(r.u8(), 0xAB);
        assert_eq!(r.u16(), 0x0102);
        assert_eq!(r.u32(), 0x0304_0506);
        assert_eq!(r.u64(), 0x0708_090A_0B0C_0D0E);
        r.finish();
    }

    #[test]
    fn short_input_is_an_error_naming_the_structure() {
        let err = LeReader::new("RAFS v6 dirent", &[0u8; 5], 12)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "RAFS v6 dirent: truncated: need 12 bytes, got 5"
        );
    }
}
