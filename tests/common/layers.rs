//! Layer tars written byte by byte at test time, and OCI layouts assembled from them, for the
//! tar-feature and layer-merge tests: every odd corner of the tar format (PAX records with any
//! bytes, GNU long names, empty device fields, base-256 numbers) is spelled out here instead of
//! being committed as a fixture.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::run;

/// Header flavour of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// POSIX ustar magic; PAX records when asked for.
    Ustar,
    /// Old GNU magic (`ustar  \0`), long names as `L`/`K` records, empty device fields.
    Gnu,
}

/// One tar entry, with every header field settable.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    /// Device numbers; `None` leaves both fields empty (NUL bytes), as GNU tar and Python do.
    pub device: Option<(u32, u32)>,
    /// PAX records for this entry (an `x` header before it).
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    pub format: Format,
}

impl Entry {
    fn new(name: &[u8], typeflag: u8, mode: u32) -> Entry {
        Entry {
            name: name.to_vec(),
            typeflag,
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            data: Vec::new(),
            link: Vec::new(),
            device: None,
            pax: Vec::new(),
            format: Format::Ustar,
        }
    }

    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Entry {
        let mut e = Entry::new(name.as_ref(), b'0', 0o644);
        e.data = data.as_ref().to_vec();
        e
    }

    pub fn dir(name: impl AsRef<[u8]>) -> Entry {
        Entry::new(name.as_ref(), b'5', 0o755)
    }

    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        let mut e = Entry::new(name.as_ref(), b'2', 0o777);
        e.link = target.as_ref().to_vec();
        e
    }

    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        let mut e = Entry::new(name.as_ref(), b'1', 0o644);
        e.link = target.as_ref().to_vec();
        e
    }

    /// A character (`b'3'`), block (`b'4'`) device or FIFO (`b'6'`).
    pub fn special(name: impl AsRef<[u8]>, typeflag: u8, device: Option<(u32, u32)>) -> Entry {
        let mut e = Entry::new(name.as_ref(), typeflag, 0o600);
        e.device = device;
        e
    }

    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mtime(mut self, mtime: i64) -> Entry {
        self.mtime = mtime;
        self
    }

    pub fn typeflag(mut self, typeflag: u8) -> Entry {
        self.typeflag = typeflag;
        self
    }

    pub fn gnu(mut self) -> Entry {
        self.format = Format::Gnu;
        self
    }

    pub fn pax(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Entry {
        self.pax
            .push((key.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// An xattr as GNU tar and Go write it.
    pub fn xattr(self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Entry {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name.as_ref());
        self.pax(key, value)
    }
}

/// One PAX record, its length prefix counting itself.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while (len.to_string().len() + body) != len {
        len += 1;
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Writes a tar stream entry by entry.
#[derive(Default)]
pub struct Tar {
    pub bytes: Vec<u8>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    /// A PAX global header (`g`) with these records.
    pub fn global(&mut self, records: &[(&[u8], &[u8])]) -> &mut Tar {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let h = header(
            b"pax_global_header",
            b'g',
            0o644,
            0,
            0,
            0,
            data.len() as u64,
            b"",
            None,
            Format::Ustar,
        );
        self.block(&h).data(&data)
    }

    pub fn add(&mut self, e: Entry) -> &mut Tar {
        if !e.pax.is_empty() {
            let data: Vec<u8> = e.pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            let h = header(
                b"PaxHeaders/x",
                b'x',
                0o644,
                0,
                0,
                0,
                data.len() as u64,
                b"",
                None,
                Format::Ustar,
            );
            self.block(&h).data(&data);
        }
        let mut name = e.name.clone();
        let mut link = e.link.clone();
        if e.format == Format::Gnu {
            for (flag, value) in [(b'K', &mut link), (b'L', &mut name)] {
                if value.len() > 100 {
                    let mut data = value.clone();
                    data.push(0);
                    let h = header(
                        b"././@LongLink",
                        flag,
                        0o644,
                        0,
                        0,
                        0,
                        data.len() as u64,
                        b"",
                        None,
                        Format::Gnu,
                    );
                    self.block(&h).data(&data);
                    value.truncate(100);
                }
            }
        }
        // Names the header cannot hold are left to the PAX records (cut here).
        name.truncate(100);
        link.truncate(100);
        let h = header(
            &name,
            e.typeflag,
            e.mode,
            e.uid,
            e.gid,
            e.mtime,
            e.data.len() as u64,
            &link,
            e.device,
            e.format,
        );
        self.block(&h).data(&e.data)
    }

    /// An extension header of its own (`x` PAX records, `L` GNU long name, `K` GNU long link,
    /// `g` PAX global records) holding `data`, as hostile tars repeat them.
    pub fn extension(&mut self, typeflag: u8, data: &[u8]) -> &mut Tar {
        let h = header(
            b"././@Extension",
            typeflag,
            0o644,
            0,
            0,
            0,
            data.len() as u64,
            b"",
            None,
            if typeflag == b'L' || typeflag == b'K' {
                Format::Gnu
            } else {
                Format::Ustar
            },
        );
        self.block(&h).data(data)
    }

    /// An old GNU sparse file (`S`): a file of `real_size` bytes whose data extents are `map`
    /// (offset, length), their bytes `data` back to back. The first four extents sit in the
    /// header, the others in extension blocks of 21 after it.
    pub fn old_gnu_sparse(
        &mut self,
        name: &[u8],
        real_size: u64,
        map: &[(u64, u64)],
        data: &[u8],
    ) -> &mut Tar {
        let slot = |field: &mut [u8], (offset, len): (u64, u64)| {
            numeric(&mut field[..12], offset as i64);
            numeric(&mut field[12..24], len as i64);
        };
        let mut h = header(
            name,
            b'S',
            0o644,
            0,
            0,
            1_600_000_000,
            data.len() as u64,
            b"",
            None,
            Format::Gnu,
        );
        let (first, rest) = map.split_at(map.len().min(4));
        for (i, &extent) in first.iter().enumerate() {
            slot(&mut h[386 + 24 * i..386 + 24 * (i + 1)], extent);
        }
        h[482] = u8::from(!rest.is_empty());
        numeric(&mut h[483..495], real_size as i64);
        set_checksum(&mut h);
        self.block(&h);
        let blocks: Vec<&[(u64, u64)]> = rest.chunks(21).collect();
        for (n, extents) in blocks.iter().enumerate() {
            let mut block = [0u8; 512];
            for (i, &extent) in extents.iter().enumerate() {
                slot(&mut block[24 * i..24 * (i + 1)], extent);
            }
            block[504] = u8::from(n + 1 < blocks.len());
            self.block(&block);
        }
        self.data(data)
    }

    /// Raw bytes, for hand-made records.
    pub fn block(&mut self, bytes: &[u8]) -> &mut Tar {
        self.bytes.extend_from_slice(bytes);
        self
    }

    /// Data padded to the block size.
    pub fn data(&mut self, data: &[u8]) -> &mut Tar {
        self.bytes.extend_from_slice(data);
        let pad = data.len().next_multiple_of(512) - data.len();
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// The stream with its end-of-archive blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.bytes);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

/// A numeric field: octal when it fits, else GNU base-256 (negative numbers too).
fn numeric(field: &mut [u8], value: i64) {
    let width = field.len();
    let octal = format!("{:0w$o}", value, w = width - 1);
    if value >= 0 && octal.len() < width {
        field[..width - 1].copy_from_slice(octal.as_bytes());
        field[width - 1] = 0;
        return;
    }
    let bytes = value.to_be_bytes();
    let fill = if value < 0 { 0xff } else { 0 };
    for b in field.iter_mut() {
        *b = fill;
    }
    field[width - 8..].copy_from_slice(&bytes);
    field[0] |= 0x80;
}

#[allow(clippy::too_many_arguments)]
fn header(
    name: &[u8],
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: &[u8],
    device: Option<(u32, u32)>,
    format: Format,
) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    numeric(&mut h[100..108], i64::from(mode));
    numeric(&mut h[108..116], uid as i64);
    numeric(&mut h[116..124], gid as i64);
    numeric(&mut h[124..136], size as i64);
    numeric(&mut h[136..148], mtime);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link);
    match format {
        Format::Ustar => h[257..265].copy_from_slice(b"ustar\x0000"),
        Format::Gnu => h[257..265].copy_from_slice(b"ustar  \0"),
    }
    if let Some((major, minor)) = device {
        numeric(&mut h[329..337], i64::from(major));
        numeric(&mut h[337..345], i64::from(minor));
    }
    set_checksum(&mut h);
    h
}

/// Fill in a header's checksum (after any change to it).
fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// One layer blob of a layout being assembled, as its manifest descriptor and the config's
/// `rootfs.diff_ids` name it.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
}

/// The blobs directory of the layout at `dir`, created.
fn blobs_dir(dir: &Path) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    blobs
}

/// Store `bytes` as a blob of the layout at `dir`; its digest and size.
fn put(dir: &Path, bytes: &[u8]) -> (String, u64) {
    let hex = super::hex(&Sha256::digest(bytes));
    fs::write(blobs_dir(dir).join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len() as u64)
}

/// A layer blob of the layout at `dir`: `stored` under `media_type`, whose uncompressed tar is
/// `tar` (the same bytes for an uncompressed layer). Nothing checks that the media type says
/// what the bytes are: mislabelled layers are made so.
pub fn blob(dir: &Path, stored: &[u8], tar: &[u8], media_type: &str) -> Blob {
    let (digest, size) = put(dir, stored);
    Blob {
        media_type: media_type.to_string(),
        digest,
        size,
        diff_id: format!("sha256:{}", super::hex(&Sha256::digest(tar))),
    }
}

/// An uncompressed layer blob of the layout at `dir` from the tar file at `file` (moved in),
/// hashed by `sha256sum`: a layer of hundreds of MiB would take minutes to hash in a debug build.
pub fn blob_file(dir: &Path, file: &Path) -> Blob {
    let out = run(Command::new("sha256sum").arg(file));
    let hex = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    let size = fs::metadata(file).unwrap().len();
    fs::rename(file, blobs_dir(dir).join(&hex)).unwrap();
    Blob {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: format!("sha256:{hex}"),
        size,
        diff_id: format!("sha256:{hex}"),
    }
}

/// Write an OCI image layout at `dir` whose image, tagged `latest`, has these uncompressed
/// layer tars, bottom first.
pub fn oci_layout(dir: &Path, layers: &[Vec<u8>]) -> PathBuf {
    let blobs: Vec<Blob> = layers
        .iter()
        .map(|tar| blob(dir, tar, tar, "application/vnd.oci.image.layer.v1.tar"))
        .collect();
    oci_layout_of(dir, &blobs)
}

/// Write an OCI image layout at `dir` whose image, tagged `latest`, has these layer blobs
/// (stored in `dir` already), bottom first.
pub fn oci_layout_of(dir: &Path, layers: &[Blob]) -> PathBuf {
    let descriptors: Vec<_> = layers
        .iter()
        .map(|b| {
            serde_json::json!({
                "mediaType": b.media_type,
                "digest": b.digest,
                "size": b.size,
            })
        })
        .collect();
    let diff_ids: Vec<&str> = layers.iter().map(|b| b.diff_id.as_str()).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let (config_digest, config_size) = put(dir, &serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": descriptors,
    });
    let (manifest_digest, manifest_size) = put(dir, &serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": "latest" },
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir.to_path_buf()
}

/// Extract one layer tar with bsdtar (libarchive), as root keeping owners, modes and xattrs:
/// the expected side for what umoci 0.4.7 refuses (GNU sparse files).
pub fn bsdtar_unpack(tar: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    run(Command::new("bsdtar")
        .args(["-x", "-p", "--xattrs", "--numeric-owner", "-f"])
        .arg(tar)
        .arg("-C")
        .arg(dir));
}

/// Three layers holding every layer-merge case (whiteouts of files, directories and symlinks,
/// opaque directories, replaced types, hardlinks across and within layers, metadata-only
/// changes, entries below a symlinked parent), each path named for its case: judged against
/// umoci by `tests/tar_features.rs` and round-tripped by `tests/unpack.rs`.
pub fn merge_cases() -> Vec<Vec<u8>> {
    let mut l1 = Tar::new();
    l1.add(Entry::dir("wh"))
        .add(Entry::file("wh/file", "gone"))
        .add(Entry::dir("wh/dir"))
        .add(Entry::file("wh/dir/inner", "gone"))
        .add(Entry::symlink("wh/symlink", "file"))
        .add(Entry::file("wh/kept", "kept"))
        // Opaque directories: one filled again in the upper layer, one listed again (new mode)
        // and marked opaque in the same layer.
        .add(Entry::dir("opq"))
        .add(Entry::file("opq/old", "hidden"))
        .add(Entry::dir("opq/old-dir"))
        .add(Entry::file("opq/old-dir/x", "hidden"))
        .add(Entry::dir("opq2"))
        .add(Entry::file("opq2/old", "hidden"))
        // Replaced: a directory by a file, a file by a directory.
        .add(Entry::dir("dir2file"))
        .add(Entry::file("dir2file/child", "gone"))
        .add(Entry::file("file2dir", "gone"))
        // Hardlinks within the layer, to a symlink, and groups an upper layer breaks.
        .add(Entry::dir("hl"))
        .add(
            Entry::file("hl/src", "shared content")
                .mode(0o640)
                .owner(5, 6),
        )
        .add(Entry::hardlink("hl/same-layer", "hl/src"))
        .add(Entry::symlink("hl/sym", "src"))
        .add(Entry::hardlink("hl/link-to-sym", "hl/sym"))
        .add(Entry::file("hl/pair-a", "pair"))
        .add(Entry::hardlink("hl/pair-deleted", "hl/pair-a"))
        .add(Entry::hardlink("hl/pair-overwritten", "hl/pair-a"))
        // Changed only in metadata by the upper layer.
        .add(Entry::dir("meta"))
        .add(Entry::file("meta/mode", "same").mode(0o644))
        .add(Entry::file("meta/owner", "same"))
        .add(Entry::file("meta/xattr", "same").xattr("user.a", "1"))
        .add(Entry::dir("meta/dir").mode(0o755))
        // A symlink to a directory: entries below it in later layers land in the target.
        .add(Entry::dir("real"))
        .add(Entry::symlink("via", "real"))
        .add(Entry::symlink("via-abs", "/real"))
        .add(Entry::symlink("via-dotdot", "../../real"));
    let mut l2 = Tar::new();
    l2.add(Entry::file("wh/.wh.file", ""))
        .add(Entry::file("wh/.wh.dir", ""))
        .add(Entry::file("wh/.wh.symlink", ""))
        .add(Entry::file("wh/.wh.never-existed", ""))
        .add(Entry::file(".wh.nothing-here", ""))
        .add(Entry::file("opq/.wh..wh..opq", ""))
        .add(Entry::file("opq/new", "new"))
        .add(Entry::dir("opq2").mode(0o700))
        .add(Entry::file("opq2/.wh..wh..opq", ""))
        .add(Entry::file("opq2/fresh", "fresh"))
        .add(Entry::file("dir2file", "now a file"))
        .add(Entry::dir("file2dir"))
        .add(Entry::file("file2dir/child", "now a dir"))
        // A hardlink to a file of the lower layer, and one to a lower symlink.
        .add(Entry::hardlink("hl/to-lower", "hl/src"))
        .add(Entry::hardlink("hl/to-lower-sym", "hl/sym"))
        .add(Entry::file("hl/.wh.pair-deleted", ""))
        .add(Entry::file("hl/pair-overwritten", "new content"))
        .add(Entry::file("meta/mode", "same").mode(0o600))
        .add(Entry::file("meta/owner", "same").owner(1234, 5678))
        .add(
            Entry::file("meta/xattr", "same")
                .xattr("user.a", "2")
                .xattr("user.b", "3"),
        )
        .add(Entry::dir("meta/dir").mode(0o711).owner(9, 9))
        .add(Entry::file("via/through-relative", "r"))
        .add(Entry::file("via-abs/through-absolute", "a"))
        .add(Entry::file("via-dotdot/through-dotdot", "d"))
        .add(Entry::file("via/.wh.nothing", ""));
    // Layer 3 deletes the hardlink source of layer 2's link, which keeps the content.
    let mut l3 = Tar::new();
    l3.add(Entry::file("hl/.wh.src", ""));
    vec![l1.finish(), l2.finish(), l3.finish()]
}

const MIB: usize = 1 << 20;

/// Deterministic bytes that do not compress.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One layer holding every tar feature runtimes accept (PAX and GNU extensions, owners and
/// times beyond the header's fields, xattrs, devices, special modes, chunk-size edges, odd
/// names and spellings, implied parents, a path listed twice, thousands of entries), each path
/// named for its case: judged against umoci by `tests/tar_features.rs` and round-tripped by
/// `tests/unpack.rs`. Its implied directories are `/implied`, `/implied/a`, `/implied/a/b`.
pub fn feature_layer() -> Vec<u8> {
    let long_dir = format!("pax/{}", "d".repeat(150));
    let long_target = format!("../{}", "t".repeat(300));
    let mut l1 = Tar::new();
    l1.add(Entry::dir("./pax"))
        // PAX path, longer than the header's 100 bytes, and a file inside it.
        .add(Entry::dir(&long_dir).pax("path", &long_dir))
        .add(
            Entry::file(format!("{long_dir}/f"), "in a long dir")
                .pax("path", format!("{long_dir}/f")),
        )
        // PAX linkpath.
        .add(Entry::symlink("pax/long-link", "x").pax("linkpath", &long_target))
        // PAX owners above 65535, and owners too big for the octal header (base-256).
        .add(
            Entry::file("pax/owners", "o")
                .pax("uid", "70000")
                .pax("gid", "80000"),
        )
        .add(Entry::file("pax/owners-base256", "o").owner(3_000_000, 4_000_000_000))
        // PAX mtimes: nanoseconds, before 1970, far in the future; base-256 negative header time.
        .add(Entry::file("pax/mtime-ns", "t").pax("mtime", "1700000000.123456789"))
        .add(Entry::file("pax/mtime-1969", "t").pax("mtime", "-86400.25"))
        // Go's time.UnixNano, which umoci and containerd both set times through, ends in 2262:
        // 2200 is as far as any runtime can show.
        .add(Entry::file("pax/mtime-2200", "t").pax("mtime", "7258118400.999999999"))
        .add(Entry::file("pax/mtime-1906", "t").pax("mtime", "-2000000000"))
        .add(Entry::file("pax/mtime-header-negative", "t").mtime(-1_000_000))
        // PAX size overriding the header's (which says 0).
        .add({
            let mut e = Entry::file("pax/size", "sized by PAX").pax("size", "12");
            e.pax.push((b"comment".to_vec(), b"ignored".to_vec()));
            e
        })
        // GNU long names and long link targets.
        .add(Entry::dir("gnu"))
        .add(Entry::file(format!("gnu/{}", "n".repeat(200)), "gnu long name").gnu())
        .add(Entry::symlink("gnu/long-target", "y".repeat(250)).gnu())
        .add(Entry::file("gnu/plain", "gnu header").gnu())
        // xattrs: user, trusted, security.capability with newlines and NULs, empty values.
        .add(Entry::dir("xattrs").xattr("user.on-dir", "d"))
        .add(
            Entry::file("xattrs/file", "x")
                .xattr("user.plain", "v")
                .xattr("trusted.t", "trusted value")
                .xattr(
                    "security.capability",
                    b"\x01\x00\x00\x02\x00\x20\n\x00\x00\x00\x00\x00\n\x00\x00\x00\x00\x00\x00\x00",
                )
                .xattr("user.newlines", "a\nb\n5 uid=1\n"),
        )
        // Devices and FIFOs, GNU and POSIX, with empty or zero device fields.
        .add(Entry::dir("dev"))
        .add(Entry::special("dev/char-gnu", b'3', Some((1, 3))).gnu())
        .add(Entry::special("dev/char-posix", b'3', Some((5, 1))))
        .add(Entry::special("dev/char-big", b'3', Some((511, 70000))))
        .add(Entry::special("dev/block-posix", b'4', Some((8, 0))))
        .add(Entry::special("dev/block-gnu-zero", b'4', Some((0, 0))).gnu())
        .add(Entry::special("dev/char-empty-fields", b'3', None))
        .add(Entry::special("dev/fifo-gnu-empty", b'6', None).gnu())
        .add(Entry::special("dev/fifo-posix-empty", b'6', None))
        .add(Entry::special("dev/fifo-posix-zero", b'6', Some((0, 0))))
        // setuid, setgid, sticky.
        .add(Entry::file("modes-setuid", "s").mode(0o4755))
        .add(Entry::dir("modes-setgid-dir").mode(0o2755))
        .add(Entry::dir("modes-sticky-dir").mode(0o1777))
        .add(Entry::file("modes-all", "s").mode(0o7777))
        // Sizes around the 1 MiB chunk.
        .add(Entry::dir("sizes"))
        .add(Entry::file("sizes/empty", ""))
        .add(Entry::file("sizes/one-chunk", noise(MIB, 1)))
        .add(Entry::file("sizes/one-chunk-plus-one", noise(MIB + 1, 2)))
        // Names: 255 bytes, not UTF-8, Unicode.
        .add(Entry::dir("names"))
        .add(
            Entry::file(format!("names/{}", "x".repeat(255)), "255")
                .pax("path", format!("names/{}", "x".repeat(255))),
        )
        .add(Entry::file(b"names/bytes-\xff\xfe\x80", "not utf-8"))
        .add(Entry::file("names/ünïcødé-日本語-🙂", "unicode"))
        // Spellings of paths.
        .add(Entry::dir("./spell"))
        .add(Entry::file("./spell/dot-slash", "1"))
        .add(Entry::file("spell/bare", "2"))
        .add(Entry::dir("spell/trailing/"))
        .add(Entry::file("spell//double", "3"))
        // Parents without entries of their own.
        .add(Entry::file("implied/a/b/file", "deep"))
        // A path twice in one layer: the last one wins.
        .add(Entry::file("dup", "first"))
        .add(Entry::file("dup", "second, longer").mode(0o600))
        // Thousands of entries, names sorting before '.'.
        .add(Entry::dir("many"));
    for i in 0..3000 {
        let prefix = ["-", "!", "#", "+", ",", "a", "Z", "~"][i % 8];
        l1.add(Entry::file(format!("many/{prefix}{i:05}"), ""));
    }
    l1.add(Entry::file("many/-", "dash"))
        .add(Entry::file("many/!", "bang"));
    l1.finish()
}

/// Whiteouts in the bottom layer, among entries before and after them, hardlinks across them,
/// and whiteouts of names the same layer adds: judged against umoci by `tests/tar_features.rs`
/// and round-tripped by `tests/unpack.rs`.
pub fn bottom_whiteout_cases() -> Vec<Vec<u8>> {
    let mut l1 = Tar::new();
    l1.add(Entry::dir("before"))
        .add(Entry::file("before/file", "before the first whiteout").mode(0o640))
        .add(Entry::symlink("before/link", "file"))
        .add(Entry::file(".wh.never-existed", ""))
        .add(Entry::dir("empty-opaque"))
        .add(Entry::file("empty-opaque/.wh..wh..opq", ""))
        .add(Entry::hardlink("after-hardlink", "before/file"))
        .add(Entry::dir("after"))
        .add(Entry::file("after/file", "after the whiteouts").owner(7, 8))
        .add(Entry::file("after/.wh.ghost", ""))
        .add(Entry::hardlink("after/to-before-link", "before/link"))
        .add(Entry::dir("before/sub"))
        .add(Entry::file(
            "before/sub/late",
            "added to an early directory late",
        ))
        // A whiteout hides only what lower layers hold (image-spec layer.md), not a name its
        // own layer adds, before or after it; umoci keeps such names too.
        .add(Entry::file("same-layer", "kept"))
        .add(Entry::file(".wh.same-layer", ""));
    // An upper layer changes a file of the hardlink group and removes one name of it; and
    // adds a name it whites out itself.
    let mut l2 = Tar::new();
    l2.add(Entry::file("after/file", "changed above"))
        .add(Entry::file("before/.wh.file", ""))
        .add(Entry::file("upper-same-layer", "kept"))
        .add(Entry::file(".wh.upper-same-layer", ""));
    vec![l1.finish(), l2.finish()]
}
