//! The input side's JSON on arbitrary bytes: the bytes are an OCI layout's `index.json`, beside
//! the sample image's real blobs (so that an index naming them by digest reaches the manifest,
//! config and layer checks), and the image is selected as `convert` and `inspect` select it;
//! then the same bytes as a manifest, a config and a `docker save` `manifest.json`
//! ([`source_json_roles`]). Every outcome but an error is a finding: a panic, an abort, a hang
//! (nested indexes walked without end), or memory beyond `-rss_limit_mb`.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nydus_offline::source::{self, PlatformChoice, Selection};

mod source_json_roles;

/// A layout holding the sample's blobs; each run writes its own `index.json` into a copy.
fn layout() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fuzz-source-json-{}", std::process::id()));
        let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/sample");
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::copy(sample.join("oci-layout"), dir.join("oci-layout")).unwrap();
        for blob in std::fs::read_dir(sample.join("blobs/sha256")).unwrap() {
            let blob = blob.unwrap();
            std::fs::copy(blob.path(), dir.join("blobs/sha256").join(blob.file_name())).unwrap();
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = layout();
    std::fs::write(dir.join("index.json"), data).unwrap();
    if let Ok(source) = source::open(dir) {
        for platform in [PlatformChoice::All, PlatformChoice::Host] {
            let selection = Selection {
                image: None,
                platform,
            };
            let _ = source::select(&*source, &selection);
        }
    }
    source_json_roles::run(data);
});
