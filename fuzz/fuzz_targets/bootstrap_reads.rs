//! What `inspect`, `unpack` and `convert --chunk-dict` read of a bootstrap, beyond `check`'s
//! walk: the one bootstrap reader's own tree walk, a path lookup, the tables, unpack's search
//! for hardlinks across layers (the bytes as two layers' trees and the merged one), and the
//! bytes as a chunk dictionary (with the chunk size they declare, so that their records are
//! judged, not refused wholesale). Shared by the `bootstrap` fuzz
//! target and `tests/fuzz_regressions.rs`.

use nydus_offline::blob::chunk::BlobOptions;
use nydus_offline::blob::dict::ChunkDict;
use nydus_offline::ondisk::rafs_v6::reader::BootstrapReader;
use nydus_offline::unpack::links;

/// Read `data` as `inspect` and `unpack` would; never panics.
pub fn run(data: &[u8]) {
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
