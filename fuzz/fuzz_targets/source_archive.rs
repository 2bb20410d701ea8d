//! The input archives on arbitrary bytes: the bytes are a file opened as `convert` and
//! `inspect` open one (an oci-archive, a docker save tarball, compressed or not), its images
//! selected, and the first layer of the first image read through its verifying reader (at most
//! 1 MiB of it). Every outcome but an error is a finding: a panic, an abort, a hang, or memory
//! beyond `-rss_limit_mb`.

#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use nydus_offline::source::{self, PlatformChoice, Selection};

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("fuzz-source-archive-{}.tar", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let Ok(source) = source::open(&path) else {
        return;
    };
    let selection = Selection {
        image: None,
        platform: PlatformChoice::All,
    };
    let Ok(images) = source::select(&*source, &selection) else {
        return;
    };
    if let Some(layer) = images.first().and_then(|i| i.layers.first())
        && let Ok(mut reader) = source.open_layer(layer)
    {
        let _ = std::io::copy(&mut (&mut reader).take(1 << 20), &mut std::io::sink());
    }
});
