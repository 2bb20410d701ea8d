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
