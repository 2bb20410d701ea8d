//! `check`'s RAFS v6 and v5 readers on arbitrary bytes: the bytes are a bootstrap, decoded and
//! judged as `check` judges a merged one (super blocks, tables, the whole tree, chunk indexes;
//! for v5 every inode record, the digest tree, chunk records). Every outcome but a list of
//! problems is a finding: a panic, an abort (an allocation sized by a damaged field), a hang (a
//! directory cycle), or memory beyond `-rss_limit_mb`. Then the same bytes as `inspect` and
//! `unpack` read them ([`bootstrap_reads`]). Each input is read as it is and, with its first 8
//! bytes made a v5 super block's magic and version, as RAFS v5, so that every input reaches the
//! v5 reader too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nydus_offline::ondisk::rafs_v5::{RAFS_V5_MAGIC, RAFS_V5_VERSION, RafsV5SuperBlock};

mod bootstrap_reads;

fuzz_target!(|data: &[u8]| {
    let _ = nydus_offline::check::bootstrap_problems(data.to_vec());
    bootstrap_reads::run(data);
    if data.len() >= 8 && !RafsV5SuperBlock::is_v5(data) {
        let mut v5 = data.to_vec();
        v5[..4].copy_from_slice(&RAFS_V5_MAGIC.to_le_bytes());
        v5[4..8].copy_from_slice(&RAFS_V5_VERSION.to_le_bytes());
        let _ = nydus_offline::check::bootstrap_problems(v5.clone());
        bootstrap_reads::run(&v5);
    }
});
