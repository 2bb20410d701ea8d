//! The input readers' JSON in the roles an OCI layout gives it beyond `index.json`: the bytes are,
//! in turn, the image manifest `index.json` names, the config a well-formed manifest names, and a
//! `docker save` `manifest.json`. An in-memory store serves each layout, so that descriptors
//! naming the bytes by digest really reach them (the size and digest checks, platform matching,
//! the layer checks).
//!
//! Shared by the `source_json` target and `tests/fuzz_regressions.rs` (included by path), so that
//! a regression runs exactly what the fuzzer ran.

use std::collections::HashMap;
use std::io::Cursor;

use nydus_offline::Result;
use nydus_offline::common::digest::sha256_of;
use nydus_offline::source::store::{BlobStore, Member};
use nydus_offline::source::{docker_archive, layout};

/// An image layout held in memory: member path to bytes.
#[derive(Default)]
struct MemStore(HashMap<String, Vec<u8>>);

impl MemStore {
    /// Store `bytes` as a blob; returns its descriptor's digest and size.
    fn blob(&mut self, bytes: &[u8]) -> (String, usize) {
        let digest = sha256_of(bytes);
        self.0
            .insert(format!("blobs/sha256/{}", digest.digest()), bytes.to_vec());
        (digest.to_string(), bytes.len())
    }
}

impl BlobStore for MemStore {
    fn describe(&self, name: &str) -> String {
        format!("mem:{name}")
    }

    fn open(&self, name: &str) -> Result<Option<Member>> {
        Ok(self.0.get(name).map(|bytes| Member {
            reader: Box::new(Cursor::new(bytes.clone())),
            len: bytes.len() as u64,
            extent: None,
        }))
    }

    fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An empty tar: two zero blocks.
const EMPTY_TAR: [u8; 1024] = [0; 1024];

/// List the layout in `store` as `inspect` does and load every manifest it lists.
fn list_and_load(store: &MemStore) {
    let Ok(images) = layout::catalog(store) else {
        return;
    };
    for image in &images {
        for m in image.manifests.iter().filter(|m| m.present) {
            let _ = layout::load(store, &image.names, m);
        }
    }
}

/// A layout whose `index.json` names one manifest, stored beside it.
fn layout_over_manifest(store: &mut MemStore, manifest: &[u8]) {
    let (digest, size) = store.blob(manifest);
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{MANIFEST}","digest":"{digest}","size":{size},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#
    );
    store.0.insert("oci-layout".into(), LAYOUT.to_vec());
    store.0.insert("index.json".into(), index.into_bytes());
}

/// Run `data` through every role above. Every outcome but a return is a finding.
pub fn run(data: &[u8]) {
    // The bytes as the manifest index.json names, with one real empty layer stored.
    let mut store = MemStore::default();
    store.blob(&EMPTY_TAR);
    layout_over_manifest(&mut store, data);
    list_and_load(&store);

    // The bytes as the config a well-formed manifest names.
    let mut store = MemStore::default();
    let (layer, layer_size) = store.blob(&EMPTY_TAR);
    let (config, config_size) = store.blob(data);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"{CONFIG}","digest":"{config}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{layer_size}}}]}}"#
    );
    layout_over_manifest(&mut store, manifest.as_bytes());
    list_and_load(&store);

    // The bytes as a docker save manifest.json.
    let _ = docker_archive::parse_manifest(data, "manifest.json");
}
