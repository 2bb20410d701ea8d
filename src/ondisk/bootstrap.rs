//! A bootstrap of either RAFS version, told apart by its super block's magic and version, as
//! `inspect` and `unpack` read it: the tree (in the v6 reader's [`Inode`] terms, which both
//! readers give), the blob ids, the chunk size, the prefetch table. `check` judges each version
//! with its own rules and reads the version's reader directly.

use std::collections::BTreeMap;

use super::rafs_v5::RafsV5SuperBlock;
use super::rafs_v6::reader::{Decoded, Inode};
use super::{rafs_v5, rafs_v6};

/// A bootstrap whose super block(s) could be decoded.
pub enum RafsBootstrap {
    /// Both boxed: the readers differ in size (a v5 super block is 8 KiB).
    V5(Box<rafs_v5::reader::BootstrapReader>),
    V6(Box<rafs_v6::reader::BootstrapReader>),
}

impl RafsBootstrap {
    /// Open `bytes` as the RAFS version its first bytes say (v5's magic, else v6).
    pub fn open(bytes: Vec<u8>) -> Decoded<RafsBootstrap> {
        if RafsV5SuperBlock::is_v5(&bytes) {
            rafs_v5::reader::BootstrapReader::open(bytes).map(|r| RafsBootstrap::V5(Box::new(r)))
        } else {
            rafs_v6::reader::BootstrapReader::open(bytes).map(|r| RafsBootstrap::V6(Box::new(r)))
        }
    }

    /// 5 or 6.
    pub fn version(&self) -> u32 {
        match self {
            RafsBootstrap::V5(_) => 5,
            RafsBootstrap::V6(_) => 6,
        }
    }

    /// Every path of the tree with its inode ([`rafs_v6::reader::BootstrapReader::tree`],
    /// [`rafs_v5::reader::BootstrapReader::tree`]).
    pub fn tree(&self) -> Decoded<BTreeMap<Vec<u8>, Inode>> {
        match self {
            RafsBootstrap::V5(r) => r.tree(),
            RafsBootstrap::V6(r) => r.tree(),
        }
    }

    /// The blob ids of the blob table, in order ("" for an id that cannot be read).
    pub fn blob_ids(&self) -> Vec<String> {
        match self {
            RafsBootstrap::V5(r) => r.blob_table().into_iter().map(|b| b.blob_id).collect(),
            RafsBootstrap::V6(r) => r
                .blob_table()
                .iter()
                .map(|b| b.blob_id().unwrap_or("").to_string())
                .collect(),
        }
    }

    /// The chunk size files are cut at.
    pub fn chunk_size(&self) -> u64 {
        match self {
            RafsBootstrap::V5(r) => r.chunk_size(),
            RafsBootstrap::V6(r) => r.chunk_size(),
        }
    }

    /// The prefetch table's entries up to the first 0: v6 nids, v5 inode numbers; either is
    /// the `nid` of the tree's [`Inode`]s.
    pub fn prefetch(&self) -> Vec<u64> {
        let table = match self {
            RafsBootstrap::V5(r) => r.prefetch_table(),
            RafsBootstrap::V6(r) => r.prefetch_table(),
        };
        table
            .into_iter()
            .take_while(|&n| n != 0)
            .map(u64::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/ondisk/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn each_version_is_opened_by_its_magic_and_reads_alike() {
        let v5 = RafsBootstrap::open(fixture("v5.boot")).unwrap();
        let v6 = RafsBootstrap::open(fixture("plain.boot")).unwrap();
        assert_eq!((v5.version(), v6.version()), (5, 6));
        assert_eq!((v5.chunk_size(), v6.chunk_size()), (4096, 4096));
        assert_eq!(v5.blob_ids().len(), 1);
        assert_eq!(v6.blob_ids().len(), 1);
        // The same files (layer5.py is layer1.py without `bigdev`), with the same content sizes
        // and link groups.
        let (t5, t6) = (v5.tree().unwrap(), v6.tree().unwrap());
        for (path, e5) in &t5 {
            let e6 = &t6[path];
            assert_eq!(
                (e5.kind, e5.mode, e5.nlink),
                (e6.kind, e6.mode, e6.nlink),
                "{path:?}"
            );
            if e5.kind != crate::ondisk::rafs_v6::reader::Kind::Dir {
                assert_eq!(e5.size, e6.size, "{path:?}");
                assert_eq!(e5.chunks.len(), e6.chunks.len(), "{path:?}");
            }
        }
        assert_eq!(t6.len(), t5.len() + 1);
        assert!(RafsBootstrap::open(vec![0; 100]).is_err());
        assert!(v5.prefetch().is_empty());
        let pf = RafsBootstrap::open(fixture("pf.boot")).unwrap();
        assert!(!pf.prefetch().is_empty());
    }
}
