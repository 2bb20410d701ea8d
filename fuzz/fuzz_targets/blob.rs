//! `check`'s blob reader on arbitrary bytes: the bytes are a Nydus data blob (chunk data, ci
//! table, chunk digests, inlined bootstrap, TOC with its reverse tar headers), read and judged
//! as `check` reads a layer's blob, its inlined bootstrap included. Every outcome but a list of
//! problems is a finding: a panic, an abort, a hang, or memory beyond `-rss_limit_mb`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("fuzz-blob-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let hex = nydus_offline::common::hex::hex(&[0; 32]);
    let _ = nydus_offline::check::blob_problems(&path, &hex);
});
