//! Sparse files: the map of data extents (checked once), the PAX 1.0 map stored at the start of
//! the data, and a reader that streams the whole file with its holes as zeros, so a file of
//! many gigabytes costs no memory.

use std::io::{self, Read};

use super::tar::BLOCK;

/// Most data extents a PAX 1.0 map (stored in the entry's data) may list: 16 MiB of map in
/// memory. Maps in headers are bounded by the extension budget already
/// ([`MAX_EXTENSIONS`](super::tar::MAX_EXTENSIONS)).
pub const MAX_SPARSE_EXTENTS: u64 = 1 << 20;

/// Check a map against the file's real size and the bytes the tar stores: extents in order,
/// not overlapping, inside the file, and together exactly the stored data.
pub fn check_map(map: &[(u64, u64)], real_size: u64, stored: u64) -> Result<(), String> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(offset, len) in map {
        let extent_end = offset.checked_add(len).ok_or("a sparse extent overflows")?;
        if offset < end {
            return Err(format!(
                "sparse extents overlap or are out of order (one at {offset}, after one ending at {end})"
            ));
        }
        if extent_end > real_size {
            return Err(format!(
                "a sparse extent ends at {extent_end}, beyond the file's size {real_size}"
            ));
        }
        end = extent_end;
        // Cannot overflow: the extents lie apart inside the file. Checked all the same.
        total = total
            .checked_add(len)
            .ok_or("the sparse extents overflow")?;
    }
    if total != stored {
        return Err(format!(
            "the sparse map names {total} bytes of data but the entry stores {stored}"
        ));
    }
    Ok(())
}

/// Read the PAX 1.0 sparse map from the start of an entry's data: decimal numbers, each ended by
/// `'\n'` (the count, then offset and length of each extent), padded with NULs to whole blocks.
/// Returns the map and how many bytes of data it took. Only the block being read is held.
pub fn read_map_1_0(data: &mut dyn Read) -> Result<(Vec<(u64, u64)>, u64), String> {
    let mut numbers = MapNumbers {
        data,
        block: [0; BLOCK],
        pos: BLOCK,
        consumed: 0,
        digits: Vec::new(),
    };
    let count = numbers.next()?;
    if count > MAX_SPARSE_EXTENTS {
        return Err(format!(
            "{count} extents, more than the {MAX_SPARSE_EXTENTS} a sparse file may have"
        ));
    }
    let mut map = Vec::new();
    for _ in 0..count {
        let offset = numbers.next()?;
        let len = numbers.next()?;
        map.push((offset, len));
    }
    Ok((map, numbers.consumed))
}

/// The decimal numbers of a PAX 1.0 map, read a block at a time.
struct MapNumbers<'a> {
    data: &'a mut dyn Read,
    block: [u8; BLOCK],
    /// Where the next number starts in `block` (`BLOCK`: read the next block first).
    pos: usize,
    /// Bytes of data read, whole blocks.
    consumed: u64,
    /// The digits of a number that runs across blocks.
    digits: Vec<u8>,
}

impl MapNumbers<'_> {
    fn next(&mut self) -> Result<u64, String> {
        self.digits.clear();
        loop {
            if self.pos == BLOCK {
                read_exact(self.data, &mut self.block)?;
                self.consumed += BLOCK as u64;
                self.pos = 0;
            }
            let rest = &self.block[self.pos..];
            let end = rest.iter().position(|&b| b == b'\n');
            let take = end.unwrap_or(rest.len());
            self.digits.extend_from_slice(&rest[..take]);
            if self.digits.len() > 64 {
                return Err("a number is too long".into());
            }
            match end {
                Some(nl) => {
                    self.pos += nl + 1;
                    return super::tar::decimal(&self.digits)
                        .ok_or_else(|| "a number of the map is not a decimal number".into());
                }
                None => self.pos = BLOCK,
            }
        }
    }
}

fn read_exact(data: &mut dyn Read, buf: &mut [u8]) -> Result<(), String> {
    data.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => "truncated: the layer ends inside the sparse map".into(),
        _ => format!("reading the sparse map: {e}"),
    })
}

/// The whole file: bytes of the data extents from `data`, zeros in between and after the last
/// extent up to the real size. Ends early (a short read) if `data` does.
pub struct SparseReader<'a> {
    data: &'a mut dyn Read,
    map: Vec<(u64, u64)>,
    /// The first extent not wholly behind `pos`.
    next: usize,
    pos: u64,
    size: u64,
}

impl<'a> SparseReader<'a> {
    /// A reader over a map already checked with [`check_map`].
    pub fn new(data: &'a mut dyn Read, map: Vec<(u64, u64)>, size: u64) -> SparseReader<'a> {
        SparseReader {
            data,
            map,
            next: 0,
            pos: 0,
            size,
        }
    }
}

impl Read for SparseReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self
            .map
            .get(self.next)
            .is_some_and(|&(offset, len)| offset + len <= self.pos)
        {
            self.next += 1;
        }
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let n = match self.map.get(self.next) {
            Some(&(offset, len)) if offset <= self.pos => {
                let want = (offset + len - self.pos).min(buf.len() as u64) as usize;
                self.data.read(&mut buf[..want])?
            }
            upcoming => {
                let hole_end = upcoming.map_or(self.size, |&(offset, _)| offset);
                let want = (hole_end - self.pos).min(buf.len() as u64) as usize;
                buf[..want].fill(0);
                want
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_read_as_zeros_and_data_in_place() {
        let mut data: &[u8] = b"abcXY";
        let map = vec![(2, 3), (8, 2), (10, 0)];
        check_map(&map, 10, 5).unwrap();
        let mut out = Vec::new();
        SparseReader::new(&mut data, map, 12)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"\0\0abc\0\0\0XY\0\0");
    }

    #[test]
    fn bad_maps_are_refused() {
        assert!(check_map(&[(4, 2), (3, 1)], 10, 3).is_err());
        assert!(check_map(&[(4, 8)], 10, 8).is_err());
        assert!(check_map(&[(0, 2)], 10, 3).is_err());
        assert!(check_map(&[(u64::MAX, 2)], 10, 2).is_err());
    }

    #[test]
    fn map_1_0_is_read_to_its_block_boundary() {
        let mut stored = b"2\n0\n5\n100\n3\n".to_vec();
        stored.resize(BLOCK, 0);
        stored.extend_from_slice(b"helloxyz");
        let mut r = &stored[..];
        let (map, used) = read_map_1_0(&mut r).unwrap();
        assert_eq!(map, [(0, 5), (100, 3)]);
        assert_eq!(used, BLOCK as u64);
        assert_eq!(r, b"helloxyz");
    }
}
