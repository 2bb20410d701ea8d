//! `chunkdict generate`: a chunk dictionary made offline from local images, as nydusify's
//! `chunkdict generate` makes one from a registry and a database: the chunks that repeat across
//! the images, gathered into one Nydus image that `convert --chunk-dict bootstrap=DICT` refers
//! to instead of storing those chunks in every image again.
//!
//! Every layer of every image is read as `convert` reads it and its files cut into chunks with
//! the same chunk size and digester (a dictionary is only useful with the options of the
//! conversions that use it). A chunk found in `min_images` distinct images is spooled, once,
//! as a file of a synthetic layer (`chunks/DIGEST`); that layer, converted like any image,
//! is the dictionary: one blob holding each repeated chunk once, and a bootstrap whose chunk
//! table names them all. Memory: one counter per distinct chunk (about 80 bytes), whatever the
//! layers' sizes.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use sha2::{Digest as _, Sha256};

use crate::blob::chunk::{BlobOptions, FileData};
use crate::blob::reader::chunk_digest;
use crate::blob::sink::ChunkSink;
use crate::common::digest::from_io;
use crate::common::error::{Error, ErrorKind, Result};
use crate::common::hex::hex;
use crate::common::path::ImagePath;
use crate::convert::{self, ConvertOptions};
use crate::layer::entries::{self, Limits};
use crate::layer::readahead::ReadAhead;
use crate::output::layout::{refuse_overlap, sha256_of_file};
use crate::source::select::{Selection, choose};
use crate::source::{self, Image};

/// What `chunkdict generate` is told.
#[derive(Clone, Debug)]
pub struct ChunkdictOptions {
    /// Which platform of each image (one: a dictionary serves one platform's conversions).
    pub selection: Selection,
    /// Chunk size, compressor and digester: those of the conversions that will use it.
    pub blob: BlobOptions,
    /// In how many distinct images a chunk must be found to enter the dictionary (at least 2).
    pub min_images: usize,
    pub limits: Limits,
    /// The tag of the dictionary image.
    pub tag: String,
    /// Say on stderr which image is being read (a mirror takes minutes).
    pub progress: bool,
}

/// What a generation found and wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChunkdictSummary {
    /// Distinct images read.
    pub images: usize,
    /// Chunks read, and distinct chunks among them.
    pub chunks: u64,
    pub distinct_chunks: u64,
    /// Chunks in the dictionary, and their bytes (uncompressed).
    pub dict_chunks: u64,
    pub dict_bytes: u64,
    /// The dictionary image's manifest digest and tag.
    pub digest: String,
    pub tag: String,
}

/// How often a chunk was seen.
struct Seen {
    /// The last image (by number) it was seen in, and in how many distinct images.
    last_image: u32,
    images: u32,
    spooled: bool,
}

/// The chunk counter: a [`ChunkSink`] that cuts files as the blob writer does and spools the
/// chunks that reach `min_images` images into a tar.
struct Counter {
    options: BlobOptions,
    min_images: u32,
    image: u32,
    seen: HashMap<([u8; 32], u32), Seen>,
    spool: tar::Builder<BufWriter<File>>,
    chunks: u64,
    dict_chunks: u64,
    dict_bytes: u64,
    buf: Vec<u8>,
}

impl ChunkSink for Counter {
    fn file(&mut self, _path: &ImagePath, data: &mut dyn Read, size: u64) -> Result<FileData> {
        let chunk_size = u64::from(self.options.chunk_size);
        let mut offset = 0;
        while offset < size {
            let len = chunk_size.min(size - offset) as usize;
            self.buf.resize(len, 0);
            data.read_exact(&mut self.buf).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    Error::bad_input(
                        "file content",
                        format!("truncated: {size} bytes declared, the layer ends first"),
                    )
                } else {
                    from_io(e, "reading file content")
                }
            })?;
            self.count()?;
            offset += len as u64;
        }
        Ok(FileData {
            size,
            chunks: Vec::new(),
        })
    }
}

impl Counter {
    /// Count the chunk in `buf` for the current image; spool it when it reaches `min_images`.
    fn count(&mut self) -> Result<()> {
        self.chunks += 1;
        let digest = chunk_digest(self.options.digester.ondisk_id(), &self.buf);
        let key = (digest, self.buf.len() as u32);
        let seen = match self.seen.entry(key) {
            Entry::Vacant(v) => v.insert(Seen {
                last_image: self.image,
                images: 1,
                spooled: false,
            }),
            Entry::Occupied(o) => {
                let seen = o.into_mut();
                if seen.last_image != self.image {
                    seen.last_image = self.image;
                    seen.images += 1;
                }
                seen
            }
        };
        if seen.images >= self.min_images && !seen.spooled {
            seen.spooled = true;
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(self.buf.len() as u64);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            let name = format!("chunks/{}-{}", hex(&digest), self.buf.len());
            self.spool
                .append_data(&mut header, name, &self.buf[..])
                .map_err(|e| from_io(e, "writing the chunk spool"))?;
            self.dict_chunks += 1;
            self.dict_bytes += self.buf.len() as u64;
        }
        Ok(())
    }
}

/// Read every image `options` selects from `inputs`, and write the dictionary of the chunks
/// that repeat across them as a Nydus image at `output` (an OCI layout, or an oci-archive for a
/// `.tar` path), ready for `convert --chunk-dict bootstrap=OUTPUT`.
pub fn generate(
    inputs: &[PathBuf],
    output: &Path,
    options: &ChunkdictOptions,
) -> Result<ChunkdictSummary> {
    if options.min_images < 2 {
        return Err(Error::usage(
            "--min-images must be at least 2: a chunk in one image repeats nothing",
        ));
    }
    for input in inputs {
        refuse_overlap(input, output)?;
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let work = tempfile::Builder::new()
        .prefix(".nydus-offline-chunkdict-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let spool_path = work.path().join("chunks.tar");
    let spool = File::create(&spool_path).map_err(|e| Error::io(&spool_path, e))?;
    let mut counter = Counter {
        options: options.blob,
        min_images: options.min_images as u32,
        image: 0,
        seen: HashMap::new(),
        spool: tar::Builder::new(BufWriter::with_capacity(1 << 20, spool)),
        chunks: 0,
        dict_chunks: 0,
        dict_bytes: 0,
        buf: Vec::new(),
    };
    let mut read: Vec<String> = Vec::new();
    let mut platform = None;
    for input in inputs {
        let source = source::open(input)?;
        for (entry, manifests) in choose(&*source, &options.selection, true)? {
            for m in manifests {
                let image = source.load(entry, m)?;
                if read.contains(&image.manifest.digest.to_string()) {
                    continue;
                }
                read.push(image.manifest.digest.to_string());
                platform.get_or_insert_with(|| image.platform.clone());
                counter.image = read.len() as u32;
                if options.progress {
                    crate::common::error::say(format!(
                        "chunkdict: reading image {} ({} {}, {})",
                        read.len(),
                        input.display(),
                        image.platform,
                        crate::common::text::count(image.layers.len() as u64, "layer")
                    ));
                }
                count_image(&*source, &image, &mut counter, options.limits)
                    .map_err(|e| e.context(format!("{}: {}", input.display(), image.platform)))?;
            }
        }
    }
    let distinct_chunks = counter.seen.len() as u64;
    let Counter {
        spool,
        chunks,
        dict_chunks,
        dict_bytes,
        ..
    } = counter;
    let mut spool = spool
        .into_inner()
        .map_err(|e| from_io(e, "writing the chunk spool"))?;
    spool
        .flush()
        .map_err(|e| from_io(e, "writing the chunk spool"))?;
    drop(spool);
    if dict_chunks == 0 {
        return Err(Error::new(
            ErrorKind::BadInput,
            format!(
                "no chunk is found in {} of the {} images read: there is nothing to put in a \
                 dictionary",
                options.min_images,
                read.len()
            ),
        ));
    }
    let platform = platform.expect("an image was read");
    let layout = work.path().join("dict.oci");
    write_layout(&layout, &spool_path, &platform.os, &platform.architecture)?;
    let converted = convert::convert(
        &layout,
        output,
        &ConvertOptions {
            blob: options.blob,
            tag: Some(options.tag.clone()),
            limits: options.limits,
            ..ConvertOptions::default()
        },
    )?;
    Ok(ChunkdictSummary {
        images: read.len(),
        chunks,
        distinct_chunks,
        dict_chunks,
        dict_bytes,
        digest: converted.digest,
        tag: converted.tag,
    })
}

/// Count the chunks of every layer of `image`.
fn count_image(
    source: &dyn source::ImageSource,
    image: &Image,
    counter: &mut Counter,
    mut limits: Limits,
) -> Result<()> {
    for layer in &image.layers {
        let what = layer.label();
        let mut reader = ReadAhead::open(source.store(), layer, Arc::new(AtomicU64::new(0)))?;
        entries::for_each_entry(&mut reader, counter, &mut limits, &mut |_| Ok(()))
            .map_err(|e| e.context(&what))?
            .warn(&what);
        reader.finish().map_err(|e| e.context(&what))?;
    }
    Ok(())
}

/// An OCI layout at `dir` with one image of the uncompressed layer `tar`.
fn write_layout(dir: &Path, tar: &Path, os: &str, architecture: &str) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
    let (digest, size) = sha256_of_file(tar).map_err(|e| Error::io(tar, e))?;
    let digest = digest.trim_start_matches("sha256:").to_string();
    std::fs::rename(tar, blobs.join(&digest)).map_err(|e| Error::io(tar, e))?;
    let put = |bytes: &[u8]| -> Result<(String, usize)> {
        let d = hex(&Sha256::digest(bytes));
        std::fs::write(blobs.join(&d), bytes).map_err(|e| Error::io(&blobs, e))?;
        Ok((format!("sha256:{d}"), bytes.len()))
    };
    let json = |v: serde_json::Value| serde_json::to_vec(&v).expect("JSON");
    let config = put(&json(serde_json::json!({
        "architecture": architecture,
        "os": os,
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{digest}")] },
    })))?;
    let manifest = put(&json(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0,
            "size": config.1,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{digest}"),
            "size": size,
        }],
    })))?;
    let index = json(serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.0,
            "size": manifest.1,
            "annotations": { "org.opencontainers.image.ref.name": "chunkdict" },
        }],
    }));
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).map_err(|e| Error::io(&dir.join(name), e))
    };
    write("index.json", &index)?;
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
}
