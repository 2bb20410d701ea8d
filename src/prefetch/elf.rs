//! The parts of an ELF object the dynamic loader reads to start it: its class and machine, the
//! program interpreter (`PT_INTERP`), and from the dynamic section the libraries it needs
//! (`DT_NEEDED`) and where to look for them (`DT_RPATH`, `DT_RUNPATH`).
//!
//! Read through bounded reads of the image's files, never whole: an image may hold a hostile
//! ELF, so every count, offset and size is checked against the file and against fixed bounds.
//! Hand-written rather than a general ELF crate's because these few fields are all it needs,
//! read by offset from a spool through [`ImageFiles::read_at`], and every bound stays visible.

use super::ImageFiles;

/// Most program headers read (Linux's loader refuses tables over 64 KiB; 4096 is far beyond
/// real objects).
const MAX_PROGRAM_HEADERS: u64 = 4096;
/// Most dynamic entries read.
const MAX_DYNAMIC: u64 = 65_536;
/// Longest string (library name, search path) read.
const MAX_STRING: usize = 4096;
/// Most bytes of program headers read.
const MAX_HEADER_BYTES: u64 = 1 << 20;
/// Most DT_NEEDED, DT_RPATH and DT_RUNPATH entries read (real objects have a few dozen).
const MAX_STRINGS: usize = 1024;
/// Longest program interpreter path (PATH_MAX).
const MAX_INTERP: u64 = 4096;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// What the loader needs of one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Elf {
    /// ELFCLASS64 (else 32-bit).
    pub class64: bool,
    pub machine: u16,
    /// The program interpreter (`PT_INTERP`), for programs.
    pub interp: Option<Vec<u8>>,
    pub needed: Vec<Vec<u8>>,
    /// `DT_RPATH`, as stored (colon-separated, `$ORIGIN` unexpanded).
    pub rpath: Option<Vec<u8>>,
    /// `DT_RUNPATH`, as stored.
    pub runpath: Option<Vec<u8>>,
}

/// Whether `head` starts like an ELF object.
pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

/// Reads of one file, little- or big-endian.
struct File<'f> {
    files: &'f dyn ImageFiles,
    path: &'f [u8],
    size: u64,
    big: bool,
}

impl File<'_> {
    /// Exactly `len` bytes at `offset`, or why not.
    fn bytes(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| format!("{len} bytes at {offset:#x} lie past the end"))?;
        let mut buf = vec![0u8; (end - offset) as usize];
        let mut got = 0;
        while got < buf.len() {
            let n = self
                .files
                .read_at(self.path, offset + got as u64, &mut buf[got..])
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("{len} bytes at {offset:#x} lie past the end"));
            }
            got += n;
        }
        Ok(buf)
    }

    fn uint(&self, b: &[u8], at: usize, width: usize) -> u64 {
        let bytes = &b[at..at + width];
        let fold = |acc: u64, &x: &u8| acc << 8 | u64::from(x);
        if self.big {
            bytes.iter().fold(0, fold)
        } else {
            bytes.iter().rev().fold(0, fold)
        }
    }

    /// A NUL-terminated string at `offset`, at most [`MAX_STRING`] bytes.
    fn string(&self, offset: u64) -> Result<Vec<u8>, String> {
        let len = (MAX_STRING as u64 + 1).min(self.size.saturating_sub(offset));
        let b = self.bytes(offset, len)?;
        match b.iter().position(|&c| c == 0) {
            Some(n) => Ok(b[..n].to_vec()),
            None => Err(format!("the string at {offset:#x} has no end")),
        }
    }
}

/// One program header, the fields read.
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Parse the object at `path` (`size` bytes); `Err` says what is wrong with it.
pub fn parse(files: &dyn ImageFiles, path: &[u8], size: u64) -> Result<Elf, String> {
    let mut file = File {
        files,
        path,
        size,
        big: false,
    };
    let ident = file.bytes(0, 16)?;
    if !is_elf(&ident) {
        return Err("not an ELF object".into());
    }
    let class64 = match ident[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    file.big = match ident[5] {
        1 => false,
        2 => true,
        d => return Err(format!("unknown ELF data encoding {d}")),
    };
    let header = file.bytes(0, if class64 { 64 } else { 52 })?;
    let machine = file.uint(&header, 18, 2) as u16;
    let (phoff, phentsize, phnum) = if class64 {
        (
            file.uint(&header, 32, 8),
            file.uint(&header, 54, 2),
            file.uint(&header, 56, 2),
        )
    } else {
        (
            file.uint(&header, 28, 4),
            file.uint(&header, 42, 2),
            file.uint(&header, 44, 2),
        )
    };
    let min_entsize = if class64 { 56 } else { 32 };
    if phnum > MAX_PROGRAM_HEADERS {
        return Err(format!("{phnum} program headers"));
    }
    if phnum > 0 && (phentsize < min_entsize || phentsize * phnum > MAX_HEADER_BYTES) {
        return Err(format!("{phnum} program headers of {phentsize} bytes"));
    }
    let table = file.bytes(phoff, phentsize * phnum)?;
    let segments: Vec<Segment> = table
        .chunks_exact(phentsize.max(1) as usize)
        .map(|p| {
            let w = if class64 { 8 } else { 4 };
            let at = |n: usize| if class64 { n } else { [0, 4, 8, 12, 16][n / 8] };
            Segment {
                kind: file.uint(p, 0, 4) as u32,
                offset: file.uint(p, at(8), w),
                vaddr: file.uint(p, at(16), w),
                filesz: file.uint(p, at(32), w),
            }
        })
        .collect();
    let mut elf = Elf {
        class64,
        machine,
        ..Elf::default()
    };
    if let Some(s) = segments.iter().find(|s| s.kind == PT_INTERP) {
        let raw = file.bytes(s.offset, s.filesz.min(MAX_INTERP))?;
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        elf.interp = Some(raw[..end].to_vec());
    }
    if let Some(s) = segments.iter().find(|s| s.kind == PT_DYNAMIC) {
        dynamic(&file, &segments, s, &mut elf)?;
    }
    Ok(elf)
}

/// The dynamic section's strings: the entries first, then the strings they point at once
/// `DT_STRTAB` (which may come after them) is known.
fn dynamic(file: &File, segments: &[Segment], s: &Segment, elf: &mut Elf) -> Result<(), String> {
    let entsize: u64 = if elf.class64 { 16 } else { 8 };
    let count = (s.filesz / entsize).min(MAX_DYNAMIC);
    let raw = file.bytes(s.offset, count * entsize)?;
    let w = entsize as usize / 2;
    let mut strtab = None;
    let mut wanted = Vec::new();
    for e in raw.chunks_exact(entsize as usize) {
        let (tag, val) = (file.uint(e, 0, w), file.uint(e, w, w));
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(val),
            DT_NEEDED | DT_RPATH | DT_RUNPATH if wanted.len() < MAX_STRINGS => {
                wanted.push((tag, val))
            }
            _ => {}
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let strtab = strtab.ok_or("a dynamic section without DT_STRTAB")?;
    // DT_STRTAB is an address: the file offset is where a loaded segment puts it.
    let base = segments
        .iter()
        .filter(|seg| seg.kind == PT_LOAD)
        .find(|seg| strtab >= seg.vaddr && strtab - seg.vaddr < seg.filesz)
        .map(|seg| strtab - seg.vaddr + seg.offset)
        .ok_or_else(|| format!("DT_STRTAB {strtab:#x} is in no loaded segment"))?;
    for (tag, val) in wanted {
        let at = base
            .checked_add(val)
            .ok_or("a dynamic string offset overflows")?;
        let string = file.string(at)?;
        match tag {
            DT_NEEDED => elf.needed.push(string),
            DT_RPATH => elf.rpath = Some(string),
            _ => elf.runpath = Some(string),
        }
    }
    Ok(())
}
