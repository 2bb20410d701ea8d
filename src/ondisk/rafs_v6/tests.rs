//! RAFS v6 structures checked against bootstraps written by nydus-image 2.2.0
//! (`testdata/ondisk/`, see its README for how they were made). Expected values are what
//! `nydus-image check -v` and `nydus-image inspect` printed for the same files. Every structure
//! decoded from a fixture must also re-encode to exactly the bytes it came from.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::reader::{BootstrapReader, Inode};
use super::*;
use crate::common::hex::hex;
use crate::ondisk::blob::{
    BLOB_FEATURE_ALIGNED, BLOB_FEATURE_CAP_TAR_TOC, BlobCompressionContextHeader,
    COMPRESSOR_LZ4_BLOCK, COMPRESSOR_NONE, COMPRESSOR_ZSTD, DIGESTER_BLAKE3, DIGESTER_SHA256,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/ondisk/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const LAYER1_BLOB_ID: &str = "a0001eeade559605fdfd7a4cd7fb093ce256f8422d036027cc1c819b92894eb8";
const LAYER2_BLOB_ID: &str = "b579854d1c6774c0689fa05176a7faba0c7cd4a58d9180320dbd43e6efb08b9d";

/// Decodes a structure at `off` with `decode` and asserts that `to_bytes` gives the same bytes.
macro_rules! at {
    ($ty:ty, $boot:expr, $off:expr) => {{
        let off = $off as usize;
        let raw = &$boot[off..off + <$ty>::SIZE];
        let v = <$ty>::decode(raw).unwrap();
        assert_eq!(&v.to_bytes()[..], raw, "{} at {off:#x}", stringify!($ty));
        v
    }};
}

/// A bootstrap read through [`BootstrapReader`], each structure it meets also decoded raw
/// and re-encoded into `rebuilt` at the offset the reader found it.
struct Boot {
    bytes: Vec<u8>,
    reader: BootstrapReader,
    sb: RafsV6SuperBlock,
    ext: RafsV6SuperBlockExt,
    /// The bootstrap as re-encoded from every structure decoded so far (plus the raw names,
    /// xattr values and symlink targets), zeros elsewhere.
    rebuilt: RefCell<Vec<u8>>,
}

/// One inode met in the tree walk.
#[derive(Debug)]
struct Node {
    nid: u64,
    inode: RafsV6InodeExtended,
    /// What the reader made of it.
    read: Inode,
    /// Inline xattrs, full names.
    xattrs: BTreeMap<String, Vec<u8>>,
}

impl Boot {
    fn load(name: &str) -> Boot {
        let bytes = fixture(name);
        assert_eq!(bytes.len() % EROFS_BLOCK_SIZE as usize, 0);
        assert!(bytes[..1024].iter().all(|&b| b == 0));
        let sb = at!(RafsV6SuperBlock, bytes, RafsV6SuperBlock::OFFSET);
        let ext = at!(RafsV6SuperBlockExt, bytes, RafsV6SuperBlockExt::OFFSET);
        let reader = BootstrapReader::open(bytes.clone()).unwrap();
        assert_eq!((reader.sb, reader.ext), (sb, ext));
        let rebuilt = RefCell::new(vec![0u8; bytes.len()]);
        let b = Boot {
            bytes,
            reader,
            sb,
            ext,
            rebuilt,
        };
        b.keep(RafsV6SuperBlock::OFFSET as usize, &sb.to_bytes());
        b.keep(RafsV6SuperBlockExt::OFFSET as usize, &ext.to_bytes());
        b
    }

    /// Records `bytes` at `off` in the rebuilt image.
    fn keep(&self, off: usize, bytes: &[u8]) {
        self.rebuilt.borrow_mut()[off..off + bytes.len()].copy_from_slice(bytes);
    }

    /// Records the original bytes `off..off + len` (names, values) in the rebuilt image.
    fn keep_raw(&self, off: usize, len: usize) {
        self.keep(off, &self.bytes[off..off + len]);
    }

    fn node(&self, nid: u64) -> Node {
        let read = self.reader.inode(nid).unwrap();
        let off = read.offset as usize;
        assert_eq!(off as u64, nid_offset(nid, self.sb.s_meta_blkaddr));
        assert_eq!(calculate_nid(off as u64, self.sb.s_meta_blkaddr), Some(nid));
        let inode = at!(RafsV6InodeExtended, self.bytes, off);
        self.keep(off, &inode.to_bytes());
        let body = off + RafsV6InodeExtended::SIZE;
        let ibody = xattr_ibody_size(inode.i_xattr_icount);
        assert_eq!(read.head as usize, RafsV6InodeExtended::SIZE + ibody);
        if ibody > 0 {
            assert_eq!(xattr_icount(ibody).unwrap(), inode.i_xattr_icount);
            let h = at!(RafsV6XattrIbodyHeader, self.bytes, body);
            self.keep(body, &h.to_bytes());
            assert_eq!(h, RafsV6XattrIbodyHeader::default());
            // Each entry re-encoded where it lies; the names and values are the reader's.
            let mut pos = body + RafsV6XattrIbodyHeader::SIZE;
            while pos < body + ibody {
                let e = at!(RafsV6XattrEntry, self.bytes, pos);
                self.keep(pos, &e.to_bytes());
                let raw = usize::from(e.e_name_len) + usize::from(e.e_value_size);
                self.keep_raw(pos + RafsV6XattrEntry::SIZE, raw);
                let name_at = pos + RafsV6XattrEntry::SIZE;
                let mut name = xattr_prefix(e.e_name_index).unwrap().as_bytes().to_vec();
                name.extend_from_slice(&self.bytes[name_at..name_at + usize::from(e.e_name_len)]);
                assert_eq!(xattr_split_name(&name).unwrap().0, e.e_name_index);
                assert!(read.xattrs.contains_key(&name));
                pos += e.record_size();
            }
            assert_eq!(pos, body + ibody);
        }
        let xattrs = read
            .xattrs
            .iter()
            .map(|(n, v)| (String::from_utf8(n.clone()).unwrap(), v.clone()))
            .collect();
        Node {
            nid,
            inode,
            read,
            xattrs,
        }
    }

    /// The data of a flat inode (symlink target), recorded raw in the rebuilt image.
    fn flat_data(&self, n: &Node) -> Vec<u8> {
        for (off, len) in self.reader.data_ranges(&n.read).unwrap() {
            self.keep_raw(off as usize, len as usize);
        }
        self.reader.data(&n.read).unwrap()
    }

    /// The entries of directory `n`: name → (nid, file type), checking the block format.
    fn dir(&self, n: &Node) -> BTreeMap<String, (u64, u8)> {
        for (off, len) in self.reader.data_ranges(&n.read).unwrap() {
            let (off, len) = (off as usize, len as usize);
            let block = &self.bytes[off..off + len];
            let first = at!(RafsV6Dirent, block, 0);
            let count = usize::from(first.e_nameoff) / RafsV6Dirent::SIZE;
            for i in 0..count {
                let d = at!(RafsV6Dirent, block, i * RafsV6Dirent::SIZE);
                assert_eq!(d.e_reserved, 0);
                self.keep(off + i * RafsV6Dirent::SIZE, &d.to_bytes());
            }
            // The names, back to back after the dirents.
            let names = usize::from(first.e_nameoff);
            self.keep_raw(off + names, len - names);
        }
        let dirents = self.reader.dirents(&n.read).unwrap();
        // Globally sorted by raw bytes, `.` and `..` included.
        assert!(dirents.windows(2).all(|w| w[0].name < w[1].name));
        dirents
            .into_iter()
            .map(|d| (String::from_utf8(d.name).unwrap(), (d.nid, d.file_type)))
            .collect()
    }

    fn lookup(&self, path: &str) -> Node {
        self.node(self.reader.lookup(path.as_bytes()).unwrap().nid)
    }

    /// The chunk indexes of regular file `n`.
    fn chunks(&self, n: &Node) -> Vec<RafsV6InodeChunkAddr> {
        assert_eq!(n.read.layout, EROFS_INODE_CHUNK_BASED);
        let start = (n.read.offset + n.read.head).next_multiple_of(8) as usize;
        for (i, c) in n.read.chunks.iter().enumerate() {
            let raw = at!(RafsV6InodeChunkAddr, self.bytes, start + i * 8);
            assert_eq!(&raw, c);
            self.keep(start + i * 8, &c.to_bytes());
        }
        n.read.chunks.to_vec()
    }

    fn blob(&self, index: usize) -> RafsV6Blob {
        let off = self.ext.s_blob_table_offset as usize + index * RafsV6Blob::SIZE;
        let blob = at!(RafsV6Blob, self.bytes, off);
        assert_eq!(self.reader.blob_table()[index], blob);
        self.keep(off, &blob.to_bytes());
        blob
    }

    fn device(&self, index: usize) -> RafsV6Device {
        let base = usize::from(self.sb.s_devt_slotoff) * RafsV6Device::SIZE;
        let off = base + index * RafsV6Device::SIZE;
        let dev = at!(RafsV6Device, self.bytes, off);
        assert_eq!(self.reader.device(index as u32), Some(dev));
        self.keep(off, &dev.to_bytes());
        dev
    }

    fn chunk_table(&self) -> Vec<RafsV5ChunkInfo> {
        let start = self.ext.s_chunk_table_offset as usize;
        let table = self.reader.chunk_table();
        for (i, c) in table.iter().enumerate() {
            let off = start + i * RafsV5ChunkInfo::SIZE;
            assert_eq!(&at!(RafsV5ChunkInfo, self.bytes, off), c);
            self.keep(off, &c.to_bytes());
        }
        table
    }
}

#[test]
fn plain_super_blocks_match_nydus() {
    let b = Boot::load("plain.boot");
    let sb = b.sb;
    assert_eq!(sb.s_magic, EROFS_SUPER_MAGIC_V1);
    assert_eq!(sb.s_checksum, 0);
    assert_eq!(sb.s_feature_compat, EROFS_FEATURE_COMPAT_RAFS_V6);
    assert_eq!(sb.s_blkszbits, 12);
    assert_eq!(sb.s_extslots, 0);
    assert_eq!(sb.s_root_nid, 128);
    assert_eq!(sb.s_inos, 11); // inspect "stats": inodes_count 11
    assert_eq!((sb.s_build_time, sb.s_build_time_nsec), (0, 0));
    assert_eq!(sb.s_blocks, 4); // 0x4000 bytes of uncompressed blob
    assert_eq!(sb.s_meta_blkaddr, 2);
    assert_eq!(sb.s_xattr_blkaddr, 0);
    assert_eq!(sb.s_feature_incompat, RAFS_V6_FEATURE_INCOMPAT);
    assert_eq!(sb.s_u, 0);
    assert_eq!(sb.s_extra_devices, 1);
    assert_eq!(sb.s_devt_slotoff, 11);
    // Everything nydus sets beyond the per-image numbers is our Default.
    let expected = RafsV6SuperBlock {
        s_root_nid: 128,
        s_inos: 11,
        s_blocks: 4,
        s_meta_blkaddr: 2,
        s_extra_devices: 1,
        ..Default::default()
    };
    assert_eq!(sb, expected);

    let ext = b.ext;
    assert_eq!(
        ext.s_flags,
        RAFS_SUPER_FLAG_COMPRESSION_ZSTD
            | RAFS_SUPER_FLAG_HASH_BLAKE3
            | RAFS_SUPER_FLAG_EXPLICIT_UID_GID
            | RAFS_SUPER_FLAG_HAS_XATTR
    );
    assert_eq!(ext.s_flags & !RAFS_SUPER_FLAGS_KNOWN_V2_2, 0);
    assert_eq!(
        (ext.s_blob_table_offset, ext.s_blob_table_size),
        (4096, 256)
    );
    assert_eq!(ext.s_chunk_size, 0x1000);
    assert_eq!(
        (ext.s_chunk_table_offset, ext.s_chunk_table_size),
        (0x4000, 4 * 80)
    );
    assert_eq!(
        (ext.s_prefetch_table_offset, ext.s_prefetch_table_size),
        (0, 0)
    );
    assert_eq!((ext.s_padding, ext.s_reserved), (0, [0; 200]));
}

#[test]
fn plain_device_slot_and_blob_entry_match_nydus_and_the_blob() {
    let b = Boot::load("plain.boot");
    let dev = b.device(0);
    assert_eq!(dev.blob_id().unwrap(), LAYER1_BLOB_ID);
    assert_eq!((dev.blocks, dev.mapped_blkaddr), (4, 0));
    assert_eq!(dev.blob_id, blob_id_field(LAYER1_BLOB_ID).unwrap());

    let blob = b.blob(0);
    // inspect "blobs" / check: id, compressed_size 9287, decompressed 16384, 4 chunks.
    assert_eq!(blob.blob_id().unwrap(), LAYER1_BLOB_ID);
    assert_eq!(blob.blob_index, 0);
    assert_eq!(blob.chunk_size, 0x1000);
    assert_eq!(blob.chunk_count, 4);
    assert_eq!(blob.compression_algo, COMPRESSOR_ZSTD);
    assert_eq!(blob.digest_algo, DIGESTER_BLAKE3);
    assert_eq!(
        blob.features,
        BLOB_FEATURE_CAP_TAR_TOC | BLOB_FEATURE_ALIGNED
    );
    assert_eq!(blob.compressed_size, 9287);
    assert_eq!(blob.uncompressed_size, 16384);
    assert_eq!((blob.blob_toc_size, blob.blob_toc_digest), (0, [0; 32]));
    assert_eq!((blob.blob_meta_size, blob.blob_meta_digest), (0, [0; 32]));
    assert_eq!((blob.cipher_iv, blob.cipher_algo), ([0; 8], CIPHER_NONE));
    assert_eq!(blob.reserved, [0; 36]);

    // The entry agrees with the ci header at the end of the blob file itself.
    let blob_file = fixture("plain.blob");
    assert_eq!(blob_file.len() as u64, blob.compressed_size);
    let h = BlobCompressionContextHeader::decode(&blob_file[blob_file.len() - 4096..]).unwrap();
    assert_eq!(h.s_features, blob.features);
    assert_eq!(h.s_ci_entries, blob.chunk_count);
    assert_eq!(h.s_ci_compressor, blob.ci_compressor);
    assert_eq!(h.s_ci_offset, blob.ci_offset);
    assert_eq!(h.s_ci_compressed_size, blob.ci_compressed_size);
    assert_eq!(h.s_ci_uncompressed_size, blob.ci_uncompressed_size);
    assert_eq!(blob.ci_compressor, COMPRESSOR_NONE);
}

#[test]
fn plain_tree_matches_nydus() {
    let b = Boot::load("plain.boot");
    let root = b.node(128);
    assert_eq!(root.inode.i_mode, 0o040755);
    assert_eq!(root.inode.i_nlink, 4);
    assert_eq!(root.inode.i_size, 124);
    assert_eq!(root.inode.i_ino, 1);
    assert_eq!(
        root.inode.i_format,
        i_format(EROFS_INODE_LAYOUT_EXTENDED, EROFS_INODE_FLAT_INLINE)
    );
    // nids as `nydus-image check -v` printed them ("ino").
    let entries = b.dir(&root);
    let want: BTreeMap<String, (u64, u8)> = [
        (".", 128, EROFS_FT_DIR),
        ("..", 128, EROFS_FT_DIR),
        ("bigdev", 134, EROFS_FT_BLKDEV),
        ("dir", 143, EROFS_FT_DIR),
        ("empty", 136, EROFS_FT_REG_FILE),
        ("link", 138, EROFS_FT_SYMLINK),
        ("null", 141, EROFS_FT_CHRDEV),
        ("sub", 155, EROFS_FT_DIR),
    ]
    .into_iter()
    .map(|(n, nid, t)| (n.to_string(), (nid, t)))
    .collect();
    assert_eq!(entries, want);
    for (name, (nid, ft)) in &entries {
        assert_eq!(
            erofs_file_type(u32::from(b.node(*nid).inode.i_mode)),
            *ft,
            "{name}"
        );
    }

    let dir = b.lookup("dir");
    assert_eq!((dir.inode.i_uid, dir.inode.i_gid), (70000, 70001));
    assert_eq!(
        (dir.inode.i_mtime, dir.inode.i_mtime_nsec),
        (1_700_000_000, 0)
    );
    assert_eq!((dir.inode.i_nlink, dir.inode.i_size), (2, 85));
    let d = b.dir(&dir);
    assert_eq!(d["hard"].0, 148);
    assert_eq!(d["small.txt"].0, 148);
    assert_eq!(d["multi.bin"].0, 152);
    assert_eq!(d[".."].0, 128);

    // Symlink, stored inline.
    let link = b.lookup("link");
    assert_eq!(link.inode.i_mode, 0o120777);
    assert_eq!(b.flat_data(&link), b"dir/small.txt");

    // Devices: rdev in i_u, new_encode_dev format.
    let null = b.lookup("null");
    assert_eq!((null.inode.i_mode, null.inode.i_size), (0o020666, 0));
    assert_eq!(null.inode.i_u, 0x103);
    assert_eq!(null.inode.i_u, new_encode_dev(1, 3).unwrap());
    let bigdev = b.lookup("bigdev");
    assert_eq!(bigdev.inode.i_mode, 0o060660);
    assert_eq!(bigdev.inode.i_u, new_encode_dev(259, 0x12345).unwrap());
    assert_eq!(new_decode_dev(bigdev.inode.i_u), (259, 0x12345));
    assert_eq!(
        i_format_datalayout(bigdev.inode.i_format),
        EROFS_INODE_FLAT_PLAIN
    );

    // Hardlinked file with xattrs: one inode, nlink 2, icount 6 (12 + 12 + 8 bytes).
    let small = b.lookup("dir/small.txt");
    assert_eq!((small.inode.i_nlink, small.inode.i_size), (2, 12));
    assert_eq!(small.inode.i_xattr_icount, 6);
    let want: BTreeMap<String, Vec<u8>> = [
        ("trusted.t".to_string(), b"tv".to_vec()),
        ("user.foo".to_string(), b"bar".to_vec()),
    ]
    .into();
    assert_eq!(small.xattrs, want);
    let chunks = b.chunks(&small);
    assert_eq!(chunks.len(), 1);
    assert_eq!(
        (
            chunks[0].blob_index(),
            chunks[0].ci_index(),
            chunks[0].c_blk_addr
        ),
        (Some(0), 0, 0)
    );
    let header = RafsV6InodeChunkHeader::from_u32(small.inode.i_u);
    assert_eq!(header, RafsV6InodeChunkHeader::new(0x1000).unwrap());
    assert_eq!(header.to_u32(), small.inode.i_u);

    // Three contiguous chunks: ci 1..=3 at blocks 1..=3; the chunk bits say 16 KiB (the
    // "page cache sharing" size, next power of two of 9192).
    let multi = b.lookup("dir/multi.bin");
    assert_eq!(multi.inode.i_size, 9192);
    assert_eq!(multi.inode.i_u, 0x22);
    assert_eq!(
        RafsV6InodeChunkHeader::from_u32(multi.inode.i_u).chunk_size(),
        16384
    );
    let got: Vec<_> = b
        .chunks(&multi)
        .iter()
        .map(|c| (c.blob_index(), c.ci_index(), c.c_blk_addr))
        .collect();
    assert_eq!(got, [(Some(0), 1, 1), (Some(0), 2, 2), (Some(0), 3, 3)]);
    for c in b.chunks(&multi) {
        let again = RafsV6InodeChunkAddr::new(0, c.ci_index(), c.c_blk_addr).unwrap();
        assert_eq!(again, c);
    }

    // Deduplicated: sub/dup reuses chunk 1.
    let dup = b.lookup("sub/dup");
    assert_eq!(dup.nid, 159);
    let got: Vec<_> = b.chunks(&dup).iter().map(|c| c.ci_index()).collect();
    assert_eq!(got, [1]);

    let empty = b.lookup("empty");
    assert_eq!(empty.inode.i_size, 0);
    assert!(b.chunks(&empty).is_empty());
}

#[test]
fn plain_chunk_table_matches_nydus_and_the_data() {
    let b = Boot::load("plain.boot");
    let table = b.chunk_table();
    // Sorted by digest; (digest, ci index, compressed off/size, uncompressed off/size) as
    // `nydus-image check -v` listed the chunks.
    let want = [
        (
            "352642ddb3510d1c53aa3a3c5cdd341637e212f790d822a1d4ba31e8e9e715aa",
            2,
            31,
            4096,
            8192,
            4096,
        ),
        (
            "9d5ba732f8b45bd9785c1cf92a035f37a63ba656f27dacaaf3505dcc6c8e5b6c",
            0,
            0,
            12,
            0,
            12,
        ),
        (
            "cf657d3fd42311a258afdf3b5261c256983e3deb2bb38980cb0e754db903d549",
            1,
            12,
            19,
            4096,
            4096,
        ),
        (
            "d64ce8ffca7920391bc9369dc8ce4d004f7d9b228e32965c6aed7cd9654a7fa6",
            3,
            4127,
            1000,
            12288,
            1000,
        ),
    ];
    assert_eq!(table.len(), want.len());
    for (c, &(digest, index, co, cs, uo, us)) in table.iter().zip(&want) {
        assert_eq!(hex(&c.block_id), digest);
        assert_eq!(c.blob_index, 0);
        assert_eq!(c.index, index);
        assert_eq!((c.compressed_offset, c.compressed_size), (co, cs));
        assert_eq!((c.uncompressed_offset, c.uncompressed_size), (uo, us));
        let compressed = cs != us;
        assert_eq!(c.flags == BLOB_CHUNK_FLAG_COMPRESSED, compressed);
        assert_eq!(c.reserved, 0);
    }
    // The digest is blake3 of the uncompressed chunk: "hello nydus\n" and 4096 × 'a'.
    assert_eq!(
        table[1].block_id,
        *blake3::hash(b"hello nydus\n").as_bytes()
    );
    assert_eq!(table[2].block_id, *blake3::hash(&[b'a'; 4096]).as_bytes());
    assert_eq!(table[2].file_offset, 0);
    assert_eq!(table[0].file_offset, 4096);
}

#[test]
fn prefetch_table_and_other_algorithms_match_nydus() {
    use sha2::Digest;
    let b = Boot::load("pf.boot");
    assert_eq!(
        b.ext.s_flags,
        RAFS_SUPER_FLAG_COMPRESSION_LZ4
            | RAFS_SUPER_FLAG_HASH_SHA256
            | RAFS_SUPER_FLAG_EXPLICIT_UID_GID
            | RAFS_SUPER_FLAG_HAS_XATTR
    );
    assert_eq!(b.ext.s_prefetch_table_offset, 4096 + 256);
    assert_eq!(b.ext.s_prefetch_table_size, 12);
    let off = b.ext.s_prefetch_table_offset as usize;
    let raw = &b.bytes[off..off + 12];
    let table = RafsV6PrefetchTable::decode(raw).unwrap();
    assert_eq!(table.to_bytes(), raw);
    // inspect "prefetch": /dir/small.txt (= the inode of /dir/hard) 148, /sub 155, unmatched 0.
    assert_eq!(table.nids, [148, 155, 0]);
    assert_eq!(b.lookup("dir/small.txt").nid, 148);
    let blob = b.blob(0);
    assert_eq!(blob.compression_algo, COMPRESSOR_LZ4_BLOCK);
    assert_eq!(blob.digest_algo, DIGESTER_SHA256);
    // sha256 digests in the chunk table.
    let table = b.chunk_table();
    let hello = table.iter().find(|c| c.uncompressed_size == 12).unwrap();
    let want: [u8; 32] = sha2::Sha256::digest(b"hello nydus\n").into();
    assert_eq!(hello.block_id, want);
    assert_eq!(b.sb.s_meta_blkaddr, 2);
}

#[test]
fn merged_bootstrap_has_two_devices_and_blob_indexes() {
    let b = Boot::load("merged.boot");
    assert_eq!(b.sb.s_extra_devices, 2);
    assert_eq!(b.sb.s_blocks, 4 + 3);
    assert_eq!(b.ext.s_blob_table_size, 2 * 256);
    let ids = [LAYER1_BLOB_ID, LAYER2_BLOB_ID];
    let blocks = [4, 3];
    for i in 0..2 {
        let dev = b.device(i);
        assert_eq!(dev.blob_id().unwrap(), ids[i]);
        assert_eq!(dev.blocks, blocks[i]);
        let blob = b.blob(i);
        assert_eq!(blob.blob_id().unwrap(), ids[i]);
        assert_eq!(blob.blob_index, i as u32);
        assert_eq!(u64::from(dev.blocks) * 4096, blob.uncompressed_size);
    }
    // The root's i_ino is its nid after a merge.
    assert_eq!(b.node(128).inode.i_ino, 128);
    // The whiteout removed dir/small.txt (and so the hardlink group keeps dir/hard only).
    let dir = b.dir(&b.lookup("dir"));
    let names: Vec<_> = dir.keys().map(String::as_str).collect();
    assert_eq!(names, [".", "..", "hard", "multi.bin", "new.txt"]);
    // Layer 2's chunks name blob index 1 (stored as 2 in the device byte).
    let z = b.chunks(&b.lookup("z"));
    let got: Vec<_> = z.iter().map(|c| (c.blob_index(), c.ci_index())).collect();
    assert_eq!(got, [(Some(1), 1), (Some(1), 2)]);
    assert_eq!(z[0].c_blob_addr_hi, 2);
    let table = b.chunk_table();
    assert_eq!(table.iter().filter(|c| c.blob_index == 1).count(), 3);
    assert_eq!(table.iter().filter(|c| c.blob_index == 0).count(), 4);
}

#[test]
fn inlined_bootstrap_in_toc_blob_uses_the_placeholder_id() {
    // The zstd bootstrap inside the snapshotter-layout blob is the 2nd section from the end.
    let blob = fixture("toc.blob");
    let toc_hdr = &blob[blob.len() - 512..];
    let toc_size = crate::ondisk::blob::BlobTarHeader::decode(toc_hdr)
        .unwrap()
        .section_size()
        .unwrap() as usize;
    let boot_hdr_end = blob.len() - 512 - toc_size;
    let boot_hdr =
        crate::ondisk::blob::BlobTarHeader::decode(&blob[boot_hdr_end - 512..boot_hdr_end])
            .unwrap();
    assert_eq!(boot_hdr.section_name().unwrap(), "image.boot");
    let size = boot_hdr.section_size().unwrap() as usize;
    let start = boot_hdr_end - 512 - size;
    let boot = zstd::bulk::decompress(&blob[start..start + size], 1 << 20).unwrap();
    let sb = at!(RafsV6SuperBlock, boot, RafsV6SuperBlock::OFFSET);
    let ext = at!(RafsV6SuperBlockExt, boot, RafsV6SuperBlockExt::OFFSET);
    assert_eq!(sb.s_root_nid, 128);
    assert_ne!(ext.s_flags & RAFS_SUPER_FLAG_INLINED_CHUNK_DIGEST, 0);
    let entry = at!(RafsV6Blob, boot, ext.s_blob_table_offset);
    assert_eq!(entry.blob_id().unwrap(), "x".repeat(64));
    assert_eq!(entry.features, 0x7000_0023);
    // For inline-meta blobs compressed_size is where the bootstrap's data starts.
    assert_eq!(entry.compressed_size, start as u64);
}

/// Visits every inode reachable from the root (each once) and every table, so that the
/// rebuilt image holds every structure of the bootstrap.
fn walk_everything(b: &Boot) {
    let mut seen = BTreeSet::new();
    let mut todo = vec![u64::from(b.sb.s_root_nid)];
    while let Some(nid) = todo.pop() {
        if !seen.insert(nid) {
            continue;
        }
        let n = b.node(nid);
        match u32::from(n.inode.i_mode) & libc::S_IFMT {
            libc::S_IFDIR => todo.extend(b.dir(&n).values().map(|&(nid, _)| nid)),
            libc::S_IFREG => {
                b.chunks(&n);
            }
            libc::S_IFLNK => {
                b.flat_data(&n);
            }
            _ => {}
        }
    }
    for i in 0..usize::from(b.sb.s_extra_devices) {
        b.device(i);
        b.blob(i);
    }
    if b.ext.s_prefetch_table_size > 0 {
        let off = b.ext.s_prefetch_table_offset as usize;
        let raw = &b.bytes[off..off + b.ext.s_prefetch_table_size as usize];
        b.keep(off, &RafsV6PrefetchTable::decode(raw).unwrap().to_bytes());
    }
    b.chunk_table();
}

#[test]
fn bootstraps_rebuilt_from_our_encoders_equal_nydus_bytes() {
    // Every byte nydus wrote is accounted for by a structure declared here (or is a name, an
    // xattr value or a symlink target), and our encoders reproduce all of them.
    for name in ["plain.boot", "pf.boot", "merged.boot"] {
        let b = Boot::load(name);
        walk_everything(&b);
        let rebuilt = b.rebuilt.borrow();
        let first_diff = rebuilt.iter().zip(&b.bytes).position(|(x, y)| x != y);
        assert_eq!(first_diff, None, "{name}: first difference at this offset");
    }
}

#[test]
fn chunk_addr_splits_the_ci_index() {
    let c = RafsV6InodeChunkAddr::new(254, 0x00ab_cdef, 0x1234_5678).unwrap();
    assert_eq!(
        c.to_bytes(),
        [0xef, 0xcd, 0xff, 0xab, 0x78, 0x56, 0x34, 0x12]
    );
    assert_eq!((c.blob_index(), c.ci_index()), (Some(254), 0x00ab_cdef));
    assert_eq!(RafsV6InodeChunkAddr::decode(&c.to_bytes()).unwrap(), c);
    assert!(RafsV6InodeChunkAddr::new(255, 0, 0).is_err());
    assert!(RafsV6InodeChunkAddr::new(0, 1 << 24, 0).is_err());
    assert_eq!(RafsV6InodeChunkAddr::default().blob_index(), None);
}

#[test]
fn helpers() {
    assert_eq!(calculate_nid(12288, 2), Some(128));
    assert_eq!(calculate_nid(12289, 2), None);
    assert_eq!(calculate_nid(4096, 2), None);
    assert_eq!(nid_offset(128, 2), 12288);
    assert_eq!(new_encode_dev(0xfff, 0xf_ffff), Some(0xffff_ffff));
    assert_eq!(new_decode_dev(0xffff_ffff), (0xfff, 0xf_ffff));
    assert_eq!(new_encode_dev(0x1000, 0), None);
    assert_eq!(new_encode_dev(0, 0x10_0000), None);
    assert_eq!(xattr_icount(0).unwrap(), 0);
    assert_eq!(xattr_icount(32).unwrap(), 6);
    assert_eq!(xattr_ibody_size(6), 32);
    assert!(xattr_icount(13).is_err());
    assert!(xattr_icount(8).is_err());
    assert_eq!(
        xattr_split_name(b"security.capability"),
        Some((EROFS_XATTR_INDEX_SECURITY, &b"capability"[..]))
    );
    assert_eq!(
        xattr_split_name(b"system.posix_acl_access"),
        Some((EROFS_XATTR_INDEX_POSIX_ACL_ACCESS, &b""[..]))
    );
    assert_eq!(xattr_split_name(b"system.other"), None);
    assert_eq!(xattr_prefix(5), None);
    assert_eq!(
        RafsV6XattrEntry {
            e_name_len: 3,
            e_name_index: 1,
            e_value_size: 3
        }
        .record_size(),
        12
    );
    assert!(RafsV6InodeChunkHeader::new(2048).is_err());
    assert!(RafsV6InodeChunkHeader::new(3 << 12).is_err());
    assert_eq!(RafsV6InodeChunkHeader::new(1 << 20).unwrap().format, 0x28);
    assert_eq!(blob_id_field("ab").unwrap()[..3], *b"ab\0");
    assert!(blob_id_field(&"a".repeat(65)).is_err());
    assert!(blob_id_field("").is_err());
}

#[test]
fn decode_rejects_short_and_garbled_input() {
    assert!(RafsV6SuperBlock::decode(&[]).is_err());
    assert!(RafsV6SuperBlock::decode(&[0u8; 128]).is_err()); // magic
    assert!(RafsV6SuperBlockExt::decode(&[0u8; 255]).is_err());
    assert!(RafsV6Device::decode(&[0u8; 127]).is_err());
    assert!(RafsV6Blob::decode(&[0u8; 255]).is_err());
    assert!(RafsV6InodeCompact::decode(&[0u8; 31]).is_err());
    assert!(RafsV6InodeExtended::decode(&[0u8; 63]).is_err());
    assert!(RafsV6XattrIbodyHeader::decode(&[0u8; 11]).is_err());
    assert!(RafsV6XattrEntry::decode(&[0u8; 3]).is_err());
    assert!(RafsV6InodeChunkHeader::decode(&[0u8; 3]).is_err());
    assert!(RafsV6InodeChunkAddr::decode(&[0u8; 7]).is_err());
    assert!(RafsV6Dirent::decode(&[0u8; 11]).is_err());
    assert!(RafsV5ChunkInfo::decode(&[0u8; 79]).is_err());
    assert!(RafsV6PrefetchTable::decode(&[0u8; 6]).is_err());
    // The version bit must match the inode kind.
    let ext = RafsV6InodeExtended {
        i_format: i_format(EROFS_INODE_LAYOUT_EXTENDED, EROFS_INODE_CHUNK_BASED),
        ..Default::default()
    };
    assert!(RafsV6InodeCompact::decode(&ext.to_bytes()).is_err());
    let compact = RafsV6InodeCompact {
        i_format: i_format(EROFS_INODE_LAYOUT_COMPACT, EROFS_INODE_FLAT_INLINE),
        i_xattr_icount: 1,
        i_mode: 0o100644,
        i_nlink: 1,
        i_size: 0xdead_beef,
        i_reserved: 0,
        i_u: 7,
        i_ino: 9,
        i_uid: 65535,
        i_gid: 2,
        i_reserved2: [0; 4],
    };
    let bytes = compact.to_bytes();
    assert_eq!(RafsV6InodeCompact::decode(&bytes).unwrap(), compact);
    assert!(RafsV6InodeExtended::decode(&[bytes, bytes].concat()).is_err());
    assert_eq!(&bytes[8..12], &0xdead_beef_u32.to_le_bytes());
    // A bad blob id is an error, not a panic.
    let mut blob = RafsV6Blob::default();
    blob.blob_id[0] = 0xff;
    assert!(
        RafsV6Blob::decode(&blob.to_bytes())
            .unwrap()
            .blob_id()
            .is_err()
    );
}

#[test]
fn a_walk_budget_is_the_file_times_its_factors_plus_the_slack() {
    use super::reader::{BUDGET_SLACK, Budget, PATH_OVERHEAD};
    let mut budget = Budget::new(4096);
    // Paths: 16 × 4096 + 64 MiB, each path counted with its overhead.
    let path = vec![b'a'; 4096 - PATH_OVERHEAD as usize];
    let fit = (16 * 4096 + BUDGET_SLACK) / 4096;
    for _ in 0..fit {
        budget.charge_path(&path).unwrap();
    }
    let e = budget.charge_path(b"/x").unwrap_err();
    assert!(e.contains("the walk stops"), "{e}");
    // A directory's size is charged as decoded data: one the size of the budget is too much.
    let root = BootstrapReader::open(fixture("plain.boot"))
        .unwrap()
        .lookup(b"/")
        .unwrap();
    let mut budget = Budget::new(4096);
    budget.charge_inode(&root).unwrap();
    let huge = Inode {
        size: 2 * 4096 + BUDGET_SLACK,
        ..root
    };
    assert!(budget.charge_inode(&huge).is_err());
}
