//! RAFS v5 structures checked against the bootstrap nydus-image 2.2.0 wrote for
//! `testdata/ondisk/layer5.py` (`v5.boot`, see that directory's README). Every structure decoded
//! from it re-encodes to exactly the bytes it came from; the values are what
//! `nydus-image check -v` and `inspect` showed for it.

use super::*;
use crate::ondisk::rafs_v6::{
    RAFS_SUPER_FLAG_COMPRESSION_ZSTD, RAFS_SUPER_FLAG_EXPLICIT_UID_GID, RAFS_SUPER_FLAG_HAS_XATTR,
    RAFS_SUPER_FLAG_HASH_BLAKE3,
};

fn fixture() -> Vec<u8> {
    let path = format!("{}/testdata/ondisk/v5.boot", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const BLOB_ID: &str = "ac374b07058809d570f5b25dc9557cd3a36240fb9d6b30614db91e5b05662d53";

/// The record of inode number `ino` and its name.
fn record(boot: &[u8], sb: &RafsV5SuperBlock, ino: usize) -> (usize, RafsV5Inode, Vec<u8>) {
    let table = decode_u32_table(
        &boot[sb.s_inode_table_offset as usize..],
        sb.s_inode_table_entries as usize,
    )
    .unwrap();
    let off = table[ino - 1] as usize * 8;
    let raw = &boot[off..off + RafsV5Inode::SIZE];
    let inode = RafsV5Inode::decode(raw).unwrap();
    assert_eq!(inode.to_bytes(), raw, "inode {ino}");
    let name = boot[off + RafsV5Inode::SIZE..][..inode.i_name_size as usize].to_vec();
    (off, inode, name)
}

#[test]
fn super_block_and_tables() {
    let boot = fixture();
    let sb = RafsV5SuperBlock::decode(&boot).unwrap();
    assert_eq!(sb.to_bytes(), boot[..RafsV5SuperBlock::SIZE]);
    assert!(RafsV5SuperBlock::is_v5(&boot));
    assert_eq!(sb.s_block_size, 0x1000);
    assert_eq!(
        sb.s_flags,
        RAFS_SUPER_FLAG_HASH_BLAKE3
            | RAFS_SUPER_FLAG_EXPLICIT_UID_GID
            | RAFS_SUPER_FLAG_HAS_XATTR
            | RAFS_SUPER_FLAG_COMPRESSION_ZSTD
    );
    // 10 names, 9 inodes (`hard` and `small.txt` are one); 2.2.0 leaves the root out.
    assert_eq!((sb.s_inode_table_entries, sb.s_inodes_count), (10, 8));
    assert_eq!(sb.s_inode_table_offset, 8192);
    // Inode table 40 bytes, padded to 48; no prefetch table; blob table 72 bytes.
    assert_eq!(sb.s_prefetch_table_offset, 8192 + 40);
    assert_eq!(sb.s_prefetch_table_entries, 0);
    assert_eq!(sb.s_blob_table_offset, 8232);
    assert_eq!(sb.s_blob_table_size, 72);
    let table = &boot[8232..8232 + 72];
    let blobs = decode_blob_table(table).unwrap();
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0].blob_id, BLOB_ID);
    assert_eq!(encode_blob_table(&[BLOB_ID]).unwrap(), table);
    assert_eq!(sb.s_extended_blob_table_entries, 1);
    let off = sb.s_extended_blob_table_offset as usize;
    let ext = RafsV5ExtBlobEntry::decode(&boot[off..]).unwrap();
    assert_eq!(ext.to_bytes(), boot[off..off + 64]);
    // Four chunks (`sub/dup` repeats the first of `multi.bin`), laid end to end.
    assert_eq!(
        (ext.chunk_count, ext.features, ext.uncompressed_size),
        (4, 0x4000_0000, 12 + 9192)
    );
    assert_eq!(ext.compressed_size, 0x1407);
}

#[test]
fn inode_records() {
    let boot = fixture();
    let sb = RafsV5SuperBlock::decode(&boot).unwrap();
    let (_, root, name) = record(&boot, &sb, 1);
    assert_eq!(name, b"/");
    assert_eq!((root.i_ino, root.i_parent, root.i_nlink), (1, 0, 4));
    assert_eq!((root.i_child_index, root.i_child_count), (2, 5));
    assert_eq!((root.i_size, root.i_blocks), (4096, 8));
    let (_, dir, name) = record(&boot, &sb, 2);
    assert_eq!(name, b"dir");
    assert_eq!((dir.i_uid, dir.i_gid, dir.i_child_index), (70000, 70001, 7));
    let (off, link, name) = record(&boot, &sb, 4);
    assert_eq!(name, b"link");
    assert_eq!(link.i_flags, RAFS_V5_INODE_FLAG_SYMLINK);
    assert_eq!(link.head_size(), 128 + 8 + 16);
    assert_eq!(&boot[off + 136..off + 136 + 13], b"dir/small.txt");
    let (_, null, _) = record(&boot, &sb, 5);
    assert_eq!((null.i_mode, null.i_rdev), (0o20666, 0x103));
    // `hard` comes first by name: the group's inode number is its own, `small.txt` shares it.
    let (_, hard, _) = record(&boot, &sb, 7);
    let (off, small, name) = record(&boot, &sb, 9);
    assert_eq!(name, b"small.txt");
    assert_eq!((hard.i_ino, small.i_ino, small.i_nlink), (7, 7, 2));
    assert_eq!(hard.i_flags, RAFS_V5_INODE_FLAG_HARDLINK);
    assert_eq!(hard.i_digest, small.i_digest);
    assert_eq!(small.i_rdev, RAFS_V5_NO_RDEV);
    let chunk = RafsV5ChunkInfo::decode(&boot[off + small.head_size()..]).unwrap();
    assert_eq!((chunk.uncompressed_size, chunk.file_offset), (12, 0));
    // `multi.bin`: the xattr table, then three chunk records.
    let (off, multi, name) = record(&boot, &sb, 8);
    assert_eq!(name, b"multi.bin");
    assert_eq!(multi.i_flags, RAFS_V5_INODE_FLAG_XATTR);
    assert_eq!((multi.i_child_count, multi.i_blocks), (3, 18));
    let xattrs = &boot[off + multi.head_size()..];
    let pairs = decode_xattrs(xattrs).unwrap();
    assert_eq!(pairs, [(b"user.foo".to_vec(), b"bar".to_vec())]);
    let table = encode_xattrs(&[(b"user.foo", b"bar")]).unwrap();
    assert_eq!(table, xattrs[..table.len()]);
    assert_eq!(xattr_table_size(16), Some(table.len() as u64));
    let chunks = off + multi.head_size() + table.len();
    let offsets: Vec<u64> = (0..3)
        .map(|i| {
            RafsV5ChunkInfo::decode(&boot[chunks + 80 * i..])
                .unwrap()
                .file_offset
        })
        .collect();
    assert_eq!(offsets, [0, 4096, 8192]);
}

#[test]
fn damaged_tables_are_errors_not_panics() {
    assert!(RafsV5SuperBlock::decode(&[0; 100]).is_err());
    assert!(RafsV5SuperBlock::decode(&[0; 8192]).is_err());
    assert!(decode_u32_table(&[0; 7], 2).is_none());
    assert!(decode_u32_table(&[0; 8], usize::MAX).is_none());
    assert!(decode_xattrs(&[0xff; 16]).is_err());
    let mut pair = 24u64.to_le_bytes().to_vec();
    pair.extend_from_slice(&100u32.to_le_bytes());
    assert!(decode_xattrs(&pair).is_err());
    assert!(decode_blob_table(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff]).is_err());
    // Ids running to the end, several NULs: as many entries as there is room for, no more.
    let entries = decode_blob_table(&[0; 64]).unwrap();
    assert!(entries.len() <= 64 / 9);
    assert!(encode_blob_table(&["a\0b"]).is_err());
}
