//! `check`'s blob reader through a blob table entry, on arbitrary bytes: the first 256 bytes are
//! the entry (`RafsV6Blob`: features, ci place, compressor, cipher and key), the rest the blob.
//! This is where the ci header and ci table are read (V1, or V2 with batch contexts), decrypted
//! with the entry's key, and every chunk and batch decompressed. Every outcome but a list of
//! problems is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nydus_offline::ondisk::rafs_v6::RafsV6Blob;

fuzz_target!(|data: &[u8]| {
    let Some((entry, blob)) = data.split_at_checked(RafsV6Blob::SIZE) else {
        return;
    };
    let Ok(entry) = RafsV6Blob::decode(entry) else {
        return;
    };
    let path = std::env::temp_dir().join(format!("fuzz-blob-entry-{}", std::process::id()));
    std::fs::write(&path, blob).unwrap();
    let hex = nydus_offline::common::hex::hex(&[0; 32]);
    let _ = nydus_offline::check::blob_problems_with_entry(&path, &hex, Some(&entry));
});
