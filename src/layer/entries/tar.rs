//! The tar stream itself: 512-byte headers, the extension records that precede an entry (PAX
//! `x` and `g`, GNU `L` and `K`, the extension blocks of old GNU sparse files), and each entry's
//! data, read as it streams past.
//!
//! We read the format ourselves rather than through the `tar` crate because the crate splits PAX
//! records on `'\n'` instead of by their length prefix, so a valid record whose value holds a
//! newline (a binary `security.capability`) makes it report a malformed header, and it keeps no
//! record of the order of repeated keys (PAX sparse 0.0). Where writers disagree, this reader
//! does what Go's `archive/tar` does, because that is what container runtimes and umoci use.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::common::digest::from_io;
use crate::common::error::{Error, ErrorKind, Result, shown};

/// The tar block size: headers are one block, data is padded to whole blocks.
pub const BLOCK: usize = 512;

/// Entry type flags (`typeflag`, byte 156 of a header).
pub mod flag {
    /// A regular file, pre-POSIX spelling (a name ending in `/` makes it a directory).
    pub const REGULAR_OLD: u8 = 0;
    pub const REGULAR: u8 = b'0';
    pub const HARDLINK: u8 = b'1';
    pub const SYMLINK: u8 = b'2';
    pub const CHAR: u8 = b'3';
    pub const BLOCK: u8 = b'4';
    pub const DIRECTORY: u8 = b'5';
    pub const FIFO: u8 = b'6';
    /// A contiguous file: a regular file to every reader but a few historic ones.
    pub const CONTIGUOUS: u8 = b'7';
    /// PAX extended header for the next entry.
    pub const PAX_LOCAL: u8 = b'x';
    /// PAX global header: records POSIX applies to every later entry, and container runtimes
    /// ignore (see [`TarReader::next`]).
    pub const PAX_GLOBAL: u8 = b'g';
    /// GNU: the next entry's name.
    pub const GNU_LONG_NAME: u8 = b'L';
    /// GNU: the next entry's link target.
    pub const GNU_LONG_LINK: u8 = b'K';
    /// Old GNU sparse file: the map sits in the header (and extension blocks after it).
    pub const GNU_SPARSE: u8 = b'S';
    /// GNU incremental directory: a directory whose data lists its entries.
    pub const GNU_DUMPDIR: u8 = b'D';
    /// GNU volume label: no file.
    pub const GNU_VOLUME: u8 = b'V';
}

/// Most bytes of extension data one entry may have (its PAX `x` headers, GNU long name and link,
/// old GNU sparse map blocks, together), and one PAX global header on its own; more is refused
/// rather than held in memory. Go's `archive/tar`, which containerd and Docker unpack layers
/// with, refuses any one extension header above 1 MiB; no real name, xattr set or sparse map
/// comes near this.
pub const MAX_EXTENSIONS: u64 = 4 << 20;

/// One 512-byte header block, with its fields decoded on demand.
#[derive(Clone)]
pub struct Header(pub [u8; BLOCK]);

impl Header {
    /// The entry type flag.
    pub fn typeflag(&self) -> u8 {
        self.0[156]
    }

    /// The name as the header spells it: ustar's `prefix/name` when the header is POSIX ustar
    /// (GNU headers keep times where ustar has the prefix).
    pub fn path(&self) -> Vec<u8> {
        let name = until_nul(&self.0[0..100]);
        let prefix = until_nul(&self.0[345..500]);
        if self.is_ustar() && !prefix.is_empty() {
            let mut out = prefix.to_vec();
            out.push(b'/');
            out.extend_from_slice(name);
            return out;
        }
        name.to_vec()
    }

    /// The link target field.
    pub fn link_name(&self) -> Vec<u8> {
        until_nul(&self.0[157..257]).to_vec()
    }

    /// POSIX ustar magic (`ustar\0`), as opposed to GNU's `ustar  \0` or none (v7).
    fn is_ustar(&self) -> bool {
        &self.0[257..263] == b"ustar\0"
    }

    /// Old GNU magic, the only format with the sparse fields.
    fn is_gnu(&self) -> bool {
        &self.0[257..265] == b"ustar  \0"
    }

    pub fn mode(&self) -> Result<u64, String> {
        numeric(&self.0[100..108], "mode").and_then(|v| unsigned(v, "mode"))
    }

    pub fn uid(&self) -> Result<u64, String> {
        numeric(&self.0[108..116], "uid").and_then(|v| unsigned(v, "uid"))
    }

    pub fn gid(&self) -> Result<u64, String> {
        numeric(&self.0[116..124], "gid").and_then(|v| unsigned(v, "gid"))
    }

    pub fn size(&self) -> Result<u64, String> {
        numeric(&self.0[124..136], "size").and_then(|v| unsigned(v, "size"))
    }

    /// Seconds since the epoch; negative (base-256) before 1970.
    pub fn mtime(&self) -> Result<i64, String> {
        numeric(&self.0[136..148], "mtime")
    }

    /// Device major number; an empty field (as GNU tar and Python leave it) is 0.
    pub fn device_major(&self) -> Result<u64, String> {
        numeric(&self.0[329..337], "devmajor").and_then(|v| unsigned(v, "devmajor"))
    }

    /// Device minor number; an empty field is 0.
    pub fn device_minor(&self) -> Result<u64, String> {
        numeric(&self.0[337..345], "devminor").and_then(|v| unsigned(v, "devminor"))
    }

    /// Whether the stored checksum matches, summing bytes unsigned or (as some old writers did)
    /// signed, with the checksum field itself counted as spaces.
    fn checksum_ok(&self) -> bool {
        let Ok(stored) = numeric(&self.0[148..156], "chksum") else {
            return false;
        };
        let (mut unsigned, mut signed) = (0i64, 0i64);
        for (i, &b) in self.0.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += i64::from(b);
            signed += i64::from(b as i8);
        }
        stored == unsigned || stored == signed
    }

    /// Old GNU sparse: the real size of the file.
    fn gnu_real_size(&self) -> Result<u64, String> {
        numeric(&self.0[483..495], "realsize").and_then(|v| unsigned(v, "realsize"))
    }
}

/// The bytes before the first NUL.
fn until_nul(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(n) => &field[..n],
        None => field,
    }
}

/// A numeric header field: octal (spaces and NULs around it ignored; empty means 0) or, with the
/// high bit of the first byte set, GNU base-256 two's complement.
fn numeric(field: &[u8], name: &str) -> Result<i64, String> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        let invert = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in field.iter().enumerate() {
            let mut c = c ^ invert;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 != 0 {
                return Err(format!("the {name} field overflows"));
            }
            x = x << 8 | u64::from(c);
        }
        if x >> 63 != 0 {
            return Err(format!("the {name} field overflows"));
        }
        let x = x as i64;
        return Ok(if invert == 0xff { !x } else { x });
    }
    let start = field.iter().position(|&b| b != b' ' && b != 0);
    let Some(start) = start else { return Ok(0) };
    let end = field.iter().rposition(|&b| b != b' ' && b != 0).unwrap() + 1;
    let digits = &field[start..end];
    if !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return Err(format!("the {name} field is not an octal number"));
    }
    let s = std::str::from_utf8(digits).expect("octal digits are ASCII");
    i64::from_str_radix(s, 8).map_err(|_| format!("the {name} field overflows"))
}

fn unsigned(v: i64, name: &str) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("the {name} field is negative"))
}

/// One PAX record: key and value, as bytes.
pub type PaxRecord = (Vec<u8>, Vec<u8>);

/// Parse the records of a PAX extended header (`"%d %s=%s\n"`, the length counting the whole
/// record), by their length prefix: values may hold any byte, newlines included. Keys and values
/// stay bytes, in order.
pub fn pax_records(data: &[u8]) -> Result<Vec<PaxRecord>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    // Some writers pad the records with NULs to the block.
    while !rest.iter().all(|&b| b == 0) {
        // Named by number and offset, never shown: the bytes may be anything at all.
        let which = || {
            format!(
                "PAX record {} (at byte {})",
                out.len() + 1,
                data.len() - rest.len()
            )
        };
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .filter(|&n| n > 0 && rest[..n].iter().all(u8::is_ascii_digit))
            .ok_or_else(|| format!("{} does not start with its length", which()))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .expect("digits")
            .parse()
            .map_err(|_| format!("{}: its length overflows", which()))?;
        if len < space + 3 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(format!("{} has a wrong length ({len})", which()));
        }
        let record = &rest[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{} has no key", which()))?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

/// Whether a PAX key names an xattr: for those an empty value is an empty attribute, for every
/// other key it unsets the key (POSIX).
pub fn is_xattr_key(key: &[u8]) -> bool {
    key.starts_with(b"SCHILY.xattr.") || key.starts_with(b"LIBARCHIVE.xattr.")
}

/// How a sparse file's map is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SparseMap {
    /// Known from the headers (old GNU `S`, PAX 0.0 and 0.1): `(offset, length)` of each data
    /// extent, in order.
    Known(Vec<(u64, u64)>),
    /// PAX 1.0: at the start of the entry's data, in decimal lines padded to a block.
    InData,
}

/// A sparse file: its real size and where its data extents are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sparse {
    pub real_size: u64,
    pub map: SparseMap,
}

/// A PAX sparse file: the real name (`GNU.sparse.name`) if the records give one, and the file.
type PaxSparse = (Option<Vec<u8>>, Sparse);

/// One entry, with its extension records resolved: what the tar says, before any meaning is
/// given to it.
pub struct RawEntry {
    pub header: Header,
    /// The type flag; `REGULAR_OLD` is already turned into `REGULAR` or `DIRECTORY`.
    pub typeflag: u8,
    /// The name: PAX `path` (or `GNU.sparse.name`), else a GNU long name, else the header's.
    pub name: Vec<u8>,
    /// The link target: PAX `linkpath`, else a GNU long link, else the header's.
    pub link_name: Vec<u8>,
    /// The entry's own PAX records (an empty value has unset the key, except for xattrs).
    pub pax: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Bytes of data that follow the header in the stream (before padding).
    pub data_size: u64,
    /// Set for sparse files.
    pub sparse: Option<Sparse>,
}

/// Reads a tar stream entry by entry. After [`next`](TarReader::next) returns an entry, its
/// data can be read with [`data`](TarReader::data); whatever is left unread is skipped by the
/// next call.
pub struct TarReader<R> {
    inner: R,
    /// Bytes consumed from `inner`.
    pos: u64,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    /// The last entry's name, to say where a broken header sits.
    last_name: Option<Vec<u8>>,
    done: bool,
}

/// The extension headers read before an entry, not yet applied to it.
#[derive(Default)]
struct Extensions {
    /// The records of the entry's PAX `x` headers, in order.
    local: Vec<PaxRecord>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    /// Bytes of extension data read for the entry (the budget [`MAX_EXTENSIONS`] bounds).
    bytes: u64,
    /// Whether any extension header was read: the entry it belongs to must follow.
    pending: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> TarReader<R> {
        TarReader {
            inner,
            pos: 0,
            remaining: 0,
            padding: 0,
            last_name: None,
            done: false,
        }
    }

    /// Where we are, for messages: the byte offset and the entry before it.
    fn here(&self, at: u64) -> String {
        format!("tar header at byte {at}{}", self.after())
    }

    /// " (after entry 'NAME')" once an entry was read, for messages.
    fn after(&self) -> String {
        match &self.last_name {
            Some(name) => format!(" (after entry '{}')", shown(name)),
            None => String::new(),
        }
    }

    /// The next entry, or `None` at the end-of-archive block (or a clean end of stream).
    ///
    /// Extension headers are consumed here and applied to the entry they precede. A PAX global
    /// header is checked and then ignored: POSIX would apply its records to every later entry,
    /// but Go's `archive/tar` hands it to the caller as an entry of its own, and containerd and
    /// Docker skip it ("PAX Global Extended Headers found and ignored"), as libarchive does; the
    /// image must show what a container shows. GNU volume labels are skipped.
    pub fn next(&mut self) -> Result<Option<RawEntry>> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut ext = Extensions::default();
        loop {
            let Some((at, header)) = self.read_header(ext.pending)? else {
                self.done = true;
                return Ok(None);
            };
            let size = header
                .size()
                .map_err(|p| Error::bad_input(self.here(at), p))?;
            match header.typeflag() {
                typeflag @ (flag::PAX_LOCAL
                | flag::PAX_GLOBAL
                | flag::GNU_LONG_NAME
                | flag::GNU_LONG_LINK) => self.extension(typeflag, size, at, &mut ext)?,
                _ => {
                    let entry = self.entry(header, size, at, ext)?;
                    if entry.typeflag != flag::GNU_VOLUME {
                        return Ok(Some(entry));
                    }
                    self.skip_rest()?;
                    ext = Extensions::default();
                }
            }
        }
    }

    /// The next header block and where it starts, its checksum checked; `None` at the
    /// end-of-archive block or a clean end of stream. `pending` says an extension header was
    /// read, whose entry must follow.
    fn read_header(&mut self, pending: bool) -> Result<Option<(u64, Header)>> {
        let at = self.pos;
        let mut block = [0u8; BLOCK];
        let n = self.fill(&mut block)?;
        if n == 0 || block.iter().all(|&b| b == 0) {
            if pending {
                return Err(Error::bad_input(
                    self.here(at),
                    "the layer ends after an extension header, before its entry",
                ));
            }
            if n != 0 && n != BLOCK {
                return Err(Error::bad_input(
                    self.here(at),
                    "truncated: the layer ends inside the end-of-archive block",
                ));
            }
            return Ok(None);
        }
        if n < BLOCK {
            return Err(Error::bad_input(
                self.here(at),
                format!("truncated: the layer ends {n} bytes into a header"),
            ));
        }
        let header = Header(block);
        if !header.checksum_ok() {
            // Said without its bytes: a stream that is no tar at all lands here, and whatever it
            // holds has no place in a message.
            return Err(Error::new(
                ErrorKind::BadInput,
                format!(
                    "not a tar header at byte {at}{}: its checksum does not match (a corrupt or \
                     misaligned stream, or no tar at all)",
                    self.after()
                ),
            ));
        }
        Ok(Some((at, header)))
    }

    /// Read an extension header's data of `size` bytes into `ext` (a global header's records
    /// are checked and dropped).
    fn extension(&mut self, typeflag: u8, size: u64, at: u64, ext: &mut Extensions) -> Result<()> {
        let here = self.here(at);
        let bad = |p: String| Error::bad_input(&here, p);
        if typeflag == flag::PAX_GLOBAL {
            if size > MAX_EXTENSIONS {
                return Err(bad(format!(
                    "a PAX global header of {size} bytes, more than the {} MiB allowed",
                    MAX_EXTENSIONS >> 20
                )));
            }
            let data = self.extension_data(at, size)?;
            pax_records(&data).map_err(|p| bad(format!("PAX global header: {p}")))?;
            return Ok(());
        }
        ext.add_bytes(size).map_err(bad)?;
        let data = self.extension_data(at, size)?;
        match typeflag {
            flag::PAX_LOCAL => {
                ext.local
                    .extend(pax_records(&data).map_err(|p| bad(format!("PAX header: {p}")))?);
            }
            flag::GNU_LONG_NAME => ext.long_name = Some(until_nul(&data).to_vec()),
            _ => ext.long_link = Some(until_nul(&data).to_vec()),
        }
        ext.pending = true;
        Ok(())
    }

    /// The entry of `header` with its extensions applied; its data is next in the stream.
    fn entry(
        &mut self,
        header: Header,
        size: u64,
        at: u64,
        mut ext: Extensions,
    ) -> Result<RawEntry> {
        let here = self.here(at);
        let bad = |p: String| Error::bad_input(&here, p);
        let pax = pax_map(&ext.local);
        let mut name = pax
            .get(&b"path"[..])
            .cloned()
            .or_else(|| ext.long_name.take())
            .unwrap_or_else(|| header.path());
        let link_name = pax
            .get(&b"linkpath"[..])
            .cloned()
            .or_else(|| ext.long_link.take())
            .unwrap_or_else(|| header.link_name());
        let typeflag = match header.typeflag() {
            flag::REGULAR_OLD if name.ends_with(b"/") => flag::DIRECTORY,
            flag::REGULAR_OLD => flag::REGULAR,
            other => other,
        };
        let data_size = data_size(typeflag, &pax, size).map_err(bad)?;
        let mut sparse = None;
        if typeflag == flag::GNU_SPARSE {
            if !header.is_gnu() {
                return Err(bad("a sparse entry ('S') without a GNU header".into()));
            }
            let map = self.old_gnu_sparse_map(&header, at, &mut ext)?;
            sparse = Some(Sparse {
                real_size: header.gnu_real_size().map_err(bad)?,
                map: SparseMap::Known(map),
            });
        } else if matches!(typeflag, flag::REGULAR | flag::CONTIGUOUS)
            && let Some((real_name, s)) = pax_sparse(&pax, &ext.local).map_err(bad)?
        {
            if let Some(real_name) = real_name {
                name = real_name;
            }
            sparse = Some(s);
        }
        // Checked here, once: every later sum of the entry's sizes stays below this.
        let padded = data_size
            .checked_next_multiple_of(BLOCK as u64)
            .ok_or_else(|| bad(format!("a data size of {data_size} bytes overflows")))?;
        self.remaining = data_size;
        self.padding = padded - data_size;
        self.last_name = Some(name.clone());
        Ok(RawEntry {
            header,
            typeflag,
            name,
            link_name,
            pax,
            data_size,
            sparse,
        })
    }

    /// The current entry's data: at most its remaining bytes. A stream that ends early gives a
    /// short read (end of file), which readers of file content report as truncation.
    pub fn data(&mut self) -> EntryData<'_, R> {
        EntryData { tar: self }
    }

    /// Read as much of `buf` as the stream has; the count read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(from_io(e, "reading the layer")),
            }
        }
        self.pos += filled as u64;
        Ok(filled)
    }

    /// The data of an extension header, padding consumed. `size` was checked against the
    /// budget; even so the buffer grows with what the stream really holds.
    fn extension_data(&mut self, at: u64, size: u64) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        let mut chunk = [0u8; 8192];
        while (data.len() as u64) < size {
            let want = (size - data.len() as u64).min(chunk.len() as u64) as usize;
            let n = self.fill(&mut chunk[..want])?;
            if n < want {
                return Err(Error::bad_input(
                    self.here(at),
                    "truncated: the layer ends inside an extension header",
                ));
            }
            data.extend_from_slice(&chunk[..n]);
        }
        let mut pad = [0u8; BLOCK];
        let pad = &mut pad[..padding(size) as usize];
        if self.fill(pad)? < pad.len() {
            return Err(Error::bad_input(
                self.here(at),
                "truncated: the layer ends inside an extension header",
            ));
        }
        Ok(data)
    }

    /// The map of an old GNU sparse header: four slots in the header, then 21 in each extension
    /// block while the "is extended" flag is set. The blocks count against the entry's
    /// extension budget.
    fn old_gnu_sparse_map(
        &mut self,
        header: &Header,
        at: u64,
        ext: &mut Extensions,
    ) -> Result<Vec<(u64, u64)>> {
        let here = self.here(at);
        let bad = |p: String| Error::bad_input(&here, p);
        let mut map = Vec::new();
        let read_slots = |slots: &[u8], map: &mut Vec<(u64, u64)>| -> Result<(), String> {
            for slot in slots.chunks_exact(24) {
                if slot[0] == 0 {
                    break;
                }
                let offset = unsigned(numeric(&slot[..12], "sparse offset")?, "sparse offset")?;
                let len = unsigned(numeric(&slot[12..], "sparse length")?, "sparse length")?;
                map.push((offset, len));
            }
            Ok(())
        };
        read_slots(&header.0[386..482], &mut map).map_err(bad)?;
        let mut extended = header.0[482] != 0;
        while extended {
            ext.add_bytes(BLOCK as u64).map_err(bad)?;
            let mut block = [0u8; BLOCK];
            if self.fill(&mut block)? < BLOCK {
                return Err(bad("truncated: the layer ends inside a sparse map".into()));
            }
            read_slots(&block[..504], &mut map).map_err(bad)?;
            extended = block[504] != 0;
        }
        Ok(map)
    }

    /// Skip what is left of the current entry's data and its padding.
    fn skip_rest(&mut self) -> Result<()> {
        // No overflow: `entry` checked that the padded size fits.
        let mut left = self.remaining + self.padding;
        let mut buf = [0u8; 8192];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = self.fill(&mut buf[..want])?;
            if n == 0 {
                let name = self.last_name.clone().unwrap_or_default();
                return Err(Error::bad_input(
                    format!("entry '{}'", shown(&name)),
                    "truncated: the layer ends inside its data",
                ));
            }
            left -= n as u64;
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }
}

impl Extensions {
    /// Count `size` more bytes of extension data against the entry's budget.
    fn add_bytes(&mut self, size: u64) -> Result<(), String> {
        match self.bytes.checked_add(size) {
            Some(total) if total <= MAX_EXTENSIONS => {
                self.bytes = total;
                Ok(())
            }
            _ => Err(format!(
                "the extension headers of one entry (PAX records, GNU long names and links, \
                 sparse maps) hold more than the {} MiB allowed ({size} bytes here after {})",
                MAX_EXTENSIONS >> 20,
                self.bytes
            )),
        }
    }
}

/// The entry's PAX records as a map: a later record wins, and an empty value unsets its key
/// (POSIX), except for xattrs, where it is an empty attribute.
fn pax_map(local: &[PaxRecord]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut pax = BTreeMap::new();
    for (key, value) in local {
        if value.is_empty() && !is_xattr_key(key) {
            pax.remove(key);
        } else {
            pax.insert(key.clone(), value.clone());
        }
    }
    pax
}

/// Bytes of data that follow an entry's header: PAX `size` over the header's, and none for
/// entries that are only a header, whatever their size field says (Go's archive/tar reads them
/// so; GNU tar never writes data for them).
fn data_size(
    typeflag: u8,
    pax: &BTreeMap<Vec<u8>, Vec<u8>>,
    header_size: u64,
) -> Result<u64, String> {
    let size = match pax.get(&b"size"[..]) {
        Some(v) => decimal(v).ok_or("PAX size is not a number")?,
        None => header_size,
    };
    let header_only = matches!(
        typeflag,
        flag::HARDLINK | flag::SYMLINK | flag::CHAR | flag::BLOCK | flag::DIRECTORY | flag::FIFO
    );
    Ok(if header_only { 0 } else { size })
}

/// Reader of the current entry's data.
pub struct EntryData<'a, R> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.tar.remaining) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.tar.inner.read(&mut buf[..want])?;
        self.tar.pos += n as u64;
        self.tar.remaining -= n as u64;
        Ok(n)
    }
}

/// Padding after `size` bytes of data, to the next block.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// A decimal number, as PAX records spell them.
pub fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The GNU sparse records of a PAX entry, read as Go's `archive/tar` reads them: versions 0.0
/// (repeated `GNU.sparse.offset`/`numbytes`), 0.1 (`GNU.sparse.map`) and 1.0 (map in the data);
/// an unknown version is no sparse file. Returns the real name (`GNU.sparse.name`) if given.
fn pax_sparse(
    pax: &BTreeMap<Vec<u8>, Vec<u8>>,
    local: &[PaxRecord],
) -> Result<Option<PaxSparse>, String> {
    let get = |k: &str| pax.get(k.as_bytes()).map(Vec::as_slice);
    // Version 0.0 repeats these two keys; pair them up in order.
    let repeated: Vec<&[u8]> = local
        .iter()
        .filter(|(k, _)| k == b"GNU.sparse.offset" || k == b"GNU.sparse.numbytes")
        .map(|(_, v)| v.as_slice())
        .collect();
    let (major, minor) = (get("GNU.sparse.major"), get("GNU.sparse.minor"));
    let in_data = match (major, minor) {
        (Some(b"0"), Some(b"0" | b"1")) => false,
        (Some(b"1"), Some(b"0")) => true,
        (Some(major), minor) => {
            // Go's archive/tar reads such an entry as a plain file, and so do we.
            log::info!(
                "PAX sparse version {}.{} is unknown: the entry is read as a plain file",
                major.escape_ascii(),
                minor.unwrap_or_default().escape_ascii()
            );
            return Ok(None);
        }
        (_, Some(_)) => return Ok(None),
        _ if get("GNU.sparse.map").is_some() || !repeated.is_empty() => false,
        _ => return Ok(None),
    };
    let size = get("GNU.sparse.size")
        .or_else(|| get("GNU.sparse.realsize"))
        .ok_or("a PAX sparse file without GNU.sparse.size or GNU.sparse.realsize")?;
    let real_size = decimal(size).ok_or("GNU.sparse size is not a number")?;
    let name = get("GNU.sparse.name")
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec);
    let map = if in_data {
        SparseMap::InData
    } else {
        let numbers: Vec<&[u8]> = match get("GNU.sparse.map") {
            _ if !repeated.is_empty() => repeated,
            Some(m) if !m.is_empty() => m.split(|&b| b == b',').collect(),
            _ => Vec::new(),
        };
        if !numbers.len().is_multiple_of(2) {
            return Err("GNU.sparse map has an odd count of numbers".into());
        }
        if let Some(n) = get("GNU.sparse.numblocks") {
            let n = decimal(n).ok_or("GNU.sparse.numblocks is not a number")?;
            if n.checked_mul(2) != Some(numbers.len() as u64) {
                return Err(format!(
                    "GNU.sparse.numblocks is {n} but the map has {} extents",
                    numbers.len() / 2
                ));
            }
        }
        let mut map = Vec::new();
        for pair in numbers.chunks_exact(2) {
            let offset = decimal(pair[0]).ok_or("a GNU.sparse offset is not a number")?;
            let len = decimal(pair[1]).ok_or("a GNU.sparse length is not a number")?;
            map.push((offset, len));
        }
        SparseMap::Known(map)
    };
    Ok(Some((name, Sparse { real_size, map })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_are_split_by_length_not_by_newline() {
        let value = b"\x01\x00\n\x02\n";
        let mut record = b"SCHILY.xattr.security.capability=".to_vec();
        record.extend_from_slice(value);
        record.push(b'\n');
        let len = record.len() + 3; // "NN " prefix
        let mut data = format!("{len} ").into_bytes();
        data.extend_from_slice(&record);
        data.extend_from_slice(b"8 uid=7\n");
        let records = pax_records(&data).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].1, value);
        assert_eq!(records[1], (b"uid".to_vec(), b"7".to_vec()));
        assert!(pax_records(b"10 uid=7\n").is_err());
        assert!(pax_records(b"x uid=7\n").is_err());
        assert!(pax_records(b"6 =77\n").is_err());
        assert_eq!(pax_records(b"\0\0\0").unwrap(), vec![]);
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(numeric(b"0000644\0", "m"), Ok(0o644));
        assert_eq!(numeric(b"  12 \0", "m"), Ok(0o12));
        assert_eq!(numeric(b"\0\0\0\0", "m"), Ok(0));
        assert_eq!(numeric(b"", "m"), Ok(0));
        assert!(numeric(b"12x\0", "m").is_err());
        // Base-256: 2^40, and -1.
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[6] = 1;
        assert_eq!(numeric(&big, "m"), Ok(1 << 40));
        assert_eq!(numeric(&[0xff; 12], "m"), Ok(-1));
    }
}
