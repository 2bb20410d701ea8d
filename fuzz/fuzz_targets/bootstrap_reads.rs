//! What `inspect`, `unpack` and `convert --chunk-dict` read of a bootstrap, beyond `check`'s
//! walk: the one bootstrap reader's own tree walk, a path lookup, the tables, unpack's search
//! for hardlinks across layers (the bytes as two layers' trees and the merged one), and the
//! bytes as a chunk dictionary (with the chunk size they declare, so that their records are
//! judged, not refused wholesale); a RAFS v5 bootstrap through the v5 reader (its tables,
//! records, lookup, both tree walks) and the version-blind reader inspect and unpack use.
//! Shared by the `bootstrap` fuzz target and `tests/fuzz_regressions.rs`.

use nydus_offline::blob::chunk::BlobOptions;
use nydus_offline::blob::dict::ChunkDict;
use nydus_offline::ondisk::bootstrap::RafsBootstrap;
use nydus_offline::ondisk::rafs_v5;
use nydus_offline::ondisk::rafs_v6::reader::BootstrapReader;
use nydus_offline::unpack::links;

/// Read `data` as `inspect` and `unpack` would; never panics.
pub fn run(data: &[u8]) {
    run_any(data);
    if rafs_v5::RafsV5SuperBlock::is_v5(data) {
        run_v5(data);
        return;
    }
    let Ok(reader) = BootstrapReader::open(data.to_vec()) else {
        return;
    };
    let _ = reader.blob_table();
    let _ = reader.prefetch_table();
    let _ = reader.chunk_table();
    let options = BlobOptions {
        chunk_size: reader.ext.s_chunk_size,
        ..BlobOptions::default()
    };
    let _ = reader.lookup(b"/usr/bin/env");
    if let Ok(tree) = reader.tree() {
        let _ = links::find(&[&tree, &tree], &tree);
    }
    let _ = ChunkDict::from_bootstrap("fuzz", data.to_vec(), options);
}

/// The version-blind reads of `inspect` and `unpack`'s merged tree.
fn run_any(data: &[u8]) {
    let Ok(boot) = RafsBootstrap::open(data.to_vec()) else {
        return;
    };
    let _ = (
        boot.blob_ids(),
        boot.chunk_size(),
        boot.prefetch(),
        boot.version(),
    );
    if let Ok(tree) = boot.tree() {
        let _ = links::find(&[&tree, &tree], &tree);
    }
}

/// The v5 reader's reads.
fn run_v5(data: &[u8]) {
    let Ok(reader) = rafs_v5::reader::BootstrapReader::open(data.to_vec()) else {
        return;
    };
    let _ = (
        reader.blob_table(),
        reader.ext_blob_table(),
        reader.prefetch_table(),
    );
    let _ = (reader.compressor(), reader.digester());
    let _ = reader.lookup(b"/dir/small.txt");
    for slot in 0..reader.entries().min(64) + 2 {
        if let Ok(r) = reader.record(slot) {
            let _ = reader.children(&r);
            let _ = r.to_inode();
        }
    }
    let _ = reader.records();
}
