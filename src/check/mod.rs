//! `check`: verify a converted Nydus image offline, before it ships.
//!
//! What is checked, in the order a reader meets it:
//!
//! ```text
//! layout.rs     oci-layout, index.json, every file under blobs/ against its name, every
//!               descriptor's size and digest, config diff_ids, the bootstrap layer's tar
//!   │
//! blob.rs       each Nydus data blob: TOC and its tar headers, every TOC entry's digest,
//!   │           ci header against the blob table, ci table rules, every chunk decompressed
//!   │           and compared with its digest in blob.digest
//!   │
//! bootstrap.rs  each bootstrap (the merged one and every blob's inlined one): super block rules
//!   │           as nydus 2.2.0 validates them, blob table and device slots, every inode, xattr,
//!   │           dirent, symlink, and chunk index resolved through the blob's ci table and the
//!   │           bootstrap's chunk info table
//!   │
//! blob_v5.rs,   the same for RAFS v5 images: a v5 blob (no TOC, no ci table) read through its
//! bootstrap_v5  inlined bootstrap's chunk records, and v5 bootstraps judged as nydus judges them
//!   │           (super block, every inode record, the inode digest tree, chunk records)
//!   │
//! compare.rs    with --source: the merged tree (metadata and every file's content, read from
//!               the blobs) against the source image's tree, and each layer's own bootstrap
//!               against that layer's entries
//! ```
//!
//! Nothing stops at the first problem: every problem found is collected into a [`Report`], and
//! a check goes on with whatever the damage leaves readable. Only failures of the machine (an
//! unreadable file) end it early, as an [`ErrorKind::Io`](crate::ErrorKind::Io) error.

mod archive;
mod blob;
mod blob_v5;
mod bootstrap;
mod bootstrap_v5;
mod compare;
mod layout;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::common::error::{Error, ErrorKind, Result};

/// What `check` is told.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// The image OUT was converted from; when given, the trees are compared.
    pub source: Option<PathBuf>,
    /// What the source's layers may declare beyond the bytes they store.
    pub limits: crate::layer::entries::Limits,
    /// Blob ids the image may name without holding them: the blobs of the chunk dictionary it
    /// was converted with (`--chunk-dict`, a bare bootstrap), which reach nydusd another way.
    pub external_blobs: Vec<String>,
}

/// What a check found and what it looked at.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One line per problem: "where: what is wrong". Empty when the output is good.
    pub problems: Vec<String>,
    /// Number of Nydus manifests checked.
    pub manifests: usize,
    /// Number of data blobs checked.
    pub blobs: usize,
    /// Number of chunks decompressed and verified.
    pub chunks: u64,
    /// Number of bootstraps decoded and validated (merged and inlined).
    pub bootstraps: usize,
    /// Number of paths compared with the source (0 without `--source`).
    pub compared: usize,
    /// Problems found beyond the first [`MAX_PROBLEMS`]: counted, not listed.
    pub unlisted: usize,
}

impl Report {
    /// Whether nothing was found wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Number of problems found, listed or not.
    pub fn count(&self) -> usize {
        self.problems.len() + self.unlisted
    }
}

/// Most problems listed in a [`Report`]. A damaged image can break a rule at every path or
/// chunk it names; past this many lines the rest are only counted, so memory and output stay
/// bounded whatever the damage.
pub const MAX_PROBLEMS: usize = 10_000;

/// Collects problems; the checkers push into it and go on.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    problems: Vec<String>,
    unlisted: usize,
}

impl Findings {
    /// Record one problem with `what` (file, structure, path) and the problem.
    pub(crate) fn problem(&mut self, what: impl fmt::Display, problem: impl fmt::Display) {
        self.push(|| format!("{what}: {problem}"));
    }

    /// List the problem `line` makes, or only count it once the list is full.
    fn push(&mut self, line: impl FnOnce() -> String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(line());
        } else {
            self.unlisted += 1;
        }
    }

    /// Keep a value, or record a damaged-input error as a problem and give `None`. Errors of
    /// other kinds (the machine failed, a bug) are returned: they say nothing about OUT.
    pub(crate) fn take<T>(&mut self, result: Result<T>) -> Result<Option<T>> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == ErrorKind::BadInput => {
                self.push(|| e.to_string());
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Check the Nydus image in `out`: an OCI image layout directory, or an oci-archive (a tar of
/// one), which is first unpacked into a temporary directory (see [`archive`]).
///
/// Fails with [`ErrorKind::BadInput`] only when `out` is neither (nothing to check) or the
/// source given with `--source` cannot be read; with [`ErrorKind::Io`] when a file cannot be
/// read. Everything wrong *inside* `out` is a problem in the returned report.
pub fn check(out: &Path, options: &CheckOptions) -> Result<Report> {
    match std::fs::metadata(out) {
        Ok(m) if m.is_dir() => check_layout(out, options),
        Ok(m) if m.is_file() => {
            let unpacked = archive::unpack(out)?;
            let mut report = check_layout(unpacked.path(), options)?;
            // Problems name the archive's members, not the temporary copy.
            let copy = unpacked.path().display().to_string();
            let named = format!("{}:", out.display());
            for problem in &mut report.problems {
                *problem = problem
                    .replace(&format!("{copy}/"), &named)
                    .replace(&copy, &named);
            }
            Ok(report)
        }
        Ok(_) => Err(Error::bad_input(
            out.display(),
            "is neither an OCI image layout directory nor an oci-archive file",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::bad_input(out.display(), "does not exist"))
        }
        Err(e) => Err(Error::io(out, e)),
    }
}

/// The problems `check` finds in `bytes` read as a RAFS v6 bootstrap on its own: super blocks,
/// tables, the whole tree and every chunk index (no blob is at hand, so chunks are resolved
/// through the bootstrap's own tables only). For the fuzzer and for tools; never panics.
pub fn bootstrap_problems(bytes: Vec<u8>) -> Vec<String> {
    let mut findings = Findings::default();
    if crate::ondisk::rafs_v5::RafsV5SuperBlock::is_v5(&bytes) {
        bootstrap_v5_problems(bytes, &mut findings);
        return findings.problems;
    }
    if let Some(boot) = bootstrap::Bootstrap::parse("bootstrap".to_string(), bytes, &mut findings) {
        boot.check_blob_table(&[], &[], None, &mut findings);
        let listing = boot.walk(&mut findings);
        boot.check_chunks(&listing, &blob::BlobSet::default(), None, &mut findings);
    }
    findings.problems
}

/// [`bootstrap_problems`] of a RAFS v5 bootstrap: super block, tables, the whole tree with
/// its digests, and every chunk record against the extended blob table.
fn bootstrap_v5_problems(bytes: Vec<u8>, findings: &mut Findings) {
    let what = "bootstrap".to_string();
    if let Some(boot) = bootstrap_v5::BootstrapV5::parse(what, bytes, findings) {
        boot.check_blob_table(&[], &[], None, findings);
        let (_, records) = boot.walk(findings);
        boot.check_chunks(&records, &blob::BlobSet::default(), None, findings);
    }
}

/// The problems `check` finds in the Nydus data blob at `path` read on its own (its TOC, ci
/// table, chunk digests and inlined bootstrap), as if a layer of a layout named it by the id
/// `hex`. For the fuzzer and for tools; never panics.
pub fn blob_problems(path: &Path, hex: &str) -> Result<Vec<String>> {
    blob_problems_with_entry(path, hex, None)
}

/// [`blob_problems`] of a blob read through the blob table entry `entry` (as the merged
/// bootstrap of an image would describe it): its ci header and ci table (V1 or V2, batch
/// contexts, encrypted with the entry's key) and every chunk too. For the fuzzer; never panics.
pub fn blob_problems_with_entry(
    path: &Path,
    hex: &str,
    entry: Option<&crate::ondisk::rafs_v6::RafsV6Blob>,
) -> Result<Vec<String>> {
    let mut findings = Findings::default();
    let layer = layout::BlobLayer {
        hex: hex.to_string(),
        path: path.to_path_buf(),
        dict: false,
    };
    let v5 = crate::blob::reader::BlobReader::open(path)
        .is_ok_and(|b| crate::blob::reader_v5::is_v5_blob(&b));
    let data = if v5 {
        blob_v5::check(&layer, &mut findings)?
    } else {
        blob::check(&layer, entry, &mut findings)?
    };
    if let Some(data) = data
        && let Some(inlined) = data.inlined_bootstrap
    {
        findings.problems.extend(bootstrap_problems(inlined));
    }
    Ok(findings.problems)
}

/// The blob ids of the chunk dictionary bootstrap at `path` (`check --chunk-dict`): blobs an
/// image converted with it may name without holding.
pub fn dict_blob_ids(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let reader = crate::ondisk::rafs_v6::reader::BootstrapReader::open(bytes).map_err(|p| {
        Error::bad_input(
            format!("chunk dictionary {}", path.display()),
            format!("not a RAFS v6 bootstrap: {p}"),
        )
    })?;
    Ok(reader
        .blob_table()
        .iter()
        .filter_map(|b| b.blob_id().ok().map(str::to_string))
        .collect())
}

/// [`check`] of a layout directory.
fn check_layout(out: &Path, options: &CheckOptions) -> Result<Report> {
    let mut findings = Findings::default();
    let mut report = Report::default();
    let images = layout::read(out, &mut findings)?;
    let source = match &options.source {
        Some(path) => Some(compare::Source::open(path, options.limits)?),
        None => None,
    };
    for image in &images {
        report.manifests += 1;
        let checked = check_image(image, &options.external_blobs, &mut findings, &mut report)?;
        if let (Some(source), Some(checked)) = (&source, checked) {
            report.compared += source.compare(image, &checked, &mut findings)?;
        }
    }
    if images.is_empty() {
        findings.problem(
            out.display(),
            "holds no Nydus image (no manifest has a layer annotated as a Nydus bootstrap)",
        );
    }
    report.problems = findings.problems;
    report.unlisted = findings.unlisted;
    Ok(report)
}

/// Blobs and bootstraps of one Nydus manifest, checked, for the comparison with the source.
pub(crate) struct CheckedImage {
    /// The merged bootstrap and its tree.
    pub merged: (Boot, bootstrap::Listing),
    /// Per manifest blob layer, bottom first: its inlined bootstrap and tree, if readable.
    pub layers: Vec<Option<(Boot, bootstrap::Listing)>>,
    /// Every blob's verified chunks, by blob id.
    pub blobs: blob::BlobSet,
}

/// A checked bootstrap of either RAFS version: what the comparison with the source asks of it.
pub(crate) enum Boot {
    V6(Box<bootstrap::Bootstrap>),
    V5(Box<bootstrap_v5::BootstrapV5>),
}

impl Boot {
    /// The blob ids of its blob table, in order.
    pub fn blob_ids(&self) -> Vec<String> {
        match self {
            Boot::V6(b) => b
                .blobs
                .iter()
                .map(|e| e.blob_id().unwrap_or("").to_string())
                .collect(),
            Boot::V5(b) => b.blob_ids(),
        }
    }

    /// The chunk size its files are cut at.
    pub fn chunk_size(&self) -> u64 {
        match self {
            Boot::V6(b) => u64::from(
                b.ext
                    .s_chunk_size
                    .clamp(4096, crate::ondisk::blob::BLOB_CHUNK_MAX_SIZE),
            ),
            Boot::V5(b) => b.reader.chunk_size(),
        }
    }

    /// The sha256 of each chunk of a file, `None` where it could not be read or verified.
    pub fn content(
        &self,
        e: &crate::ondisk::rafs_v6::reader::Inode,
        blobs: &blob::BlobSet,
        own: Option<&str>,
    ) -> Vec<Option<[u8; 32]>> {
        match self {
            Boot::V6(b) => b.content(e, blobs, own),
            Boot::V5(b) => b.content(e, blobs, own),
        }
    }
}

/// Check the blobs and bootstraps of one Nydus manifest. `None` when its merged bootstrap is
/// unreadable (the problems say why), so there is no tree to compare.
fn check_image(
    image: &layout::NydusManifest,
    external: &[String],
    findings: &mut Findings,
    report: &mut Report,
) -> Result<Option<CheckedImage>> {
    if image
        .bootstrap
        .as_ref()
        .is_some_and(|b| crate::ondisk::rafs_v5::RafsV5SuperBlock::is_v5(b))
    {
        return check_image_v5(image, external, findings, report);
    }
    let merged = match &image.bootstrap {
        Some(bytes) => bootstrap::Bootstrap::parse(
            format!("{}: merged bootstrap", image.label),
            bytes.clone(),
            findings,
        ),
        None => None,
    };
    // The blob table entry of each blob, by id, from the merged bootstrap.
    let mut blobs = blob::BlobSet::default();
    for layer in &image.blobs {
        let entry = merged.as_ref().and_then(|m| {
            m.blobs
                .iter()
                .find(|b| b.blob_id().ok() == Some(&layer.hex))
        });
        if let Some(data) = blob::check(layer, entry, findings)? {
            report.chunks += data.chunks.len() as u64;
            blobs.insert(data);
        }
        report.blobs += 1;
    }
    let Some(merged) = merged else {
        return Ok(None);
    };
    Ok(Some(judge_bootstraps(
        image, external, merged, blobs, findings, report,
    )))
}

/// What [`judge_bootstraps`] asks of a checked bootstrap of either RAFS version.
trait Judged: Sized {
    /// The bootstrap `bytes`, or `None` (with the problems said) if it cannot be read.
    fn parse(what: String, bytes: Vec<u8>, f: &mut Findings) -> Option<Self>;
    /// Its blob table against the manifest; `inlined`: the blob holding it and the merged
    /// bootstrap.
    fn check_blob_table(
        &self,
        layers: &[layout::BlobLayer],
        external: &[String],
        inlined: Option<(&str, &Self)>,
        f: &mut Findings,
    );
    /// Its tree walked and every chunk its files use checked against the verified blobs.
    fn judge_tree(
        &self,
        blobs: &blob::BlobSet,
        own: Option<&str>,
        f: &mut Findings,
    ) -> bootstrap::Listing;
    fn into_boot(self) -> Boot;
}

impl Judged for bootstrap::Bootstrap {
    fn parse(what: String, bytes: Vec<u8>, f: &mut Findings) -> Option<Self> {
        bootstrap::Bootstrap::parse(what, bytes, f)
    }

    fn check_blob_table(
        &self,
        layers: &[layout::BlobLayer],
        external: &[String],
        inlined: Option<(&str, &Self)>,
        f: &mut Findings,
    ) {
        bootstrap::Bootstrap::check_blob_table(self, layers, external, inlined, f)
    }

    fn judge_tree(
        &self,
        blobs: &blob::BlobSet,
        own: Option<&str>,
        f: &mut Findings,
    ) -> bootstrap::Listing {
        let listing = self.walk(f);
        self.check_chunks(&listing, blobs, own, f);
        listing
    }

    fn into_boot(self) -> Boot {
        Boot::V6(Box::new(self))
    }
}

impl Judged for bootstrap_v5::BootstrapV5 {
    fn parse(what: String, bytes: Vec<u8>, f: &mut Findings) -> Option<Self> {
        bootstrap_v5::BootstrapV5::parse(what, bytes, f)
    }

    fn check_blob_table(
        &self,
        layers: &[layout::BlobLayer],
        external: &[String],
        inlined: Option<(&str, &Self)>,
        f: &mut Findings,
    ) {
        bootstrap_v5::BootstrapV5::check_blob_table(self, layers, external, inlined, f)
    }

    fn judge_tree(
        &self,
        blobs: &blob::BlobSet,
        own: Option<&str>,
        f: &mut Findings,
    ) -> bootstrap::Listing {
        let (listing, records) = self.walk(f);
        self.check_chunks(&records, blobs, own, f);
        listing
    }

    fn into_boot(self) -> Boot {
        Boot::V5(Box::new(self))
    }
}

/// The merged bootstrap and every bootstrap inlined in a layer blob, once the blobs are
/// verified: each blob table against the manifest, each tree walked, each chunk checked.
fn judge_bootstraps<B: Judged>(
    image: &layout::NydusManifest,
    external: &[String],
    merged: B,
    blobs: blob::BlobSet,
    findings: &mut Findings,
    report: &mut Report,
) -> CheckedImage {
    report.bootstraps += 1;
    merged.check_blob_table(&image.blobs, external, None, findings);
    let merged_listing = merged.judge_tree(&blobs, None, findings);
    let mut layers = Vec::new();
    for layer in &image.blobs {
        let inlined = blobs
            .get(&layer.hex)
            .and_then(|b| b.inlined_bootstrap.clone());
        // A chunk dictionary's blob carries a layer bootstrap of the dictionary image, which
        // names that image's blobs: not one of this image's layers (its chunks were verified
        // with the blob, and the merged bootstrap's use of them is checked with it).
        let Some(bytes) = inlined.filter(|_| !layer.dict) else {
            layers.push(None);
            continue;
        };
        let what = format!("{}: bootstrap inlined in blob {}", image.label, layer.hex);
        let Some(boot) = B::parse(what, bytes, findings) else {
            layers.push(None);
            continue;
        };
        report.bootstraps += 1;
        boot.check_blob_table(
            &image.blobs,
            external,
            Some((&layer.hex, &merged)),
            findings,
        );
        let listing = boot.judge_tree(&blobs, Some(&layer.hex), findings);
        layers.push(Some((boot.into_boot(), listing)));
    }
    CheckedImage {
        merged: (merged.into_boot(), merged_listing),
        layers,
        blobs,
    }
}

/// [`check_image`] of a RAFS v5 image: its blobs read through their own bootstraps (a v5 blob
/// has no ci table), the merged bootstrap and every inlined one judged, every chunk record
/// against the verified chunks.
fn check_image_v5(
    image: &layout::NydusManifest,
    external: &[String],
    findings: &mut Findings,
    report: &mut Report,
) -> Result<Option<CheckedImage>> {
    let merged = image.bootstrap.as_ref().and_then(|bytes| {
        let what = format!("{}: merged bootstrap", image.label);
        bootstrap_v5::BootstrapV5::parse(what, bytes.clone(), findings)
    });
    let mut blobs = blob::BlobSet::default();
    for layer in &image.blobs {
        if let Some(data) = blob_v5::check(layer, findings)? {
            report.chunks += data.by_index.len() as u64;
            blobs.insert(data);
        }
        report.blobs += 1;
    }
    let Some(merged) = merged else {
        return Ok(None);
    };
    Ok(Some(judge_bootstraps(
        image, external, merged, blobs, findings, report,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_past_the_limit_are_counted_not_listed() {
        let mut f = Findings::default();
        for i in 0..MAX_PROBLEMS + 5 {
            f.problem("blob", i);
        }
        assert!(
            f.take::<()>(Err(Error::bad_input("bootstrap", "damaged")))
                .unwrap()
                .is_none()
        );
        assert_eq!(f.problems.len(), MAX_PROBLEMS);
        assert_eq!(f.problems[0], "blob: 0");
        assert_eq!(f.unlisted, 6);
    }
}
