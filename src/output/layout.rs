//! Writing an OCI image layout so that it appears whole or not at all, as a directory or as one
//! tar file (`oci-archive`).
//!
//! Everything is first written into a *staging* directory, a hidden sibling of the destination
//! (`.<OUT>.nydus-offline-tmp.<pid>`, on the same filesystem so that renames are atomic). Blobs
//! are hashed while they are written and filed under their digest. Nothing at the destination
//! changes before [`LayoutWriter::commit`], which depends on what the destination was:
//!
//! ```text
//! OUT absent (or --force over    staging dir ──rename──▶ OUT            (old OUT moved aside
//!   something else)                                                      first, removed after)
//! OUT an OCI layout (add to it)  new blobs ──rename──▶ OUT/blobs/…, then index.json replaced
//!                                by rename: readers see the old index or the new, never half
//! oci-archive                    staging dir ──tar──▶ .OUT…tmp.<pid>.tar ──rename──▶ OUT
//! ```
//!
//! Adding to a layout keeps every image it held; a tag it has already is pointed at the new
//! image only with `--force`. Runs writing one output take turns at commit (an `flock` on the
//! directory the output is in), and each looks again at the destination under that lock: a run
//! that found no output may find the layout another run created meanwhile, and adds its image
//! to it, reading the index again, so no run's image is lost. Blobs the layout holds already
//! are not copied again. If adding fails half way, the blobs moved in so far are removed again;
//! were the process killed outright in that instant, what could remain are blobs no index
//! names, which no reader sees.
//!
//! Each run holds a lock file beside its staging directory (`.<OUT>.nydus-offline-tmp.<pid>.lock`)
//! for as long as it lives. A run killed outright (SIGKILL, a crash of the machine) leaves its
//! staging directory behind; the next run for the same output finds the lock free and removes
//! what the dead run left.
//!
//! Dropping an uncommitted writer (an error, a panic, an interruption by a signal) removes the
//! staging directory and the temporary archive.
//!
//! Blobs reach the disk in the background: a finished blob's file goes to a [`Syncer`] thread
//! that fsyncs it while the conversion goes on, and `commit` waits for every one of them before
//! anything is put in place. A blob's fsync waits for the disk (120 ms for the 371 MB blob of
//! many-small-files, 30 ms of a 0.75 s run on debian-python, measured), time the cores would
//! otherwise sit idle. A staging blob that only goes into an archive is not synced at all: the
//! archive is.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::image::{ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX};
use super::interrupt;
use crate::common::error::{Error, ErrorKind, Result};

/// The content of the `oci-layout` file this program writes.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// What the output is written as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// An OCI image layout directory.
    #[default]
    Layout,
    /// One tar file holding an OCI image layout (what `skopeo copy oci-archive:` reads).
    Archive,
}

/// A blob as it was stored: `sha256:<hex>` and its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: String,
    pub size: u64,
}

impl StoredBlob {
    /// The hex part of the digest, which is also the Nydus blob id of a data blob.
    pub fn hex(&self) -> &str {
        &self.digest["sha256:".len()..]
    }
}

/// What [`LayoutWriter::commit`] does with the staging directory.
enum Target {
    /// It becomes the destination; `replace`: something is there already and goes.
    New { replace: bool },
    /// The destination is an OCI layout: blobs are added, the index replaced.
    AddTo,
    /// It is packed into a tar file that becomes the destination.
    Archive { replace: bool },
}

/// An OCI image layout being written into a staging directory.
pub struct LayoutWriter {
    destination: PathBuf,
    staging: PathBuf,
    blobs: PathBuf,
    /// The temporary archive (oci-archive only), beside the staging directory.
    archive_tmp: PathBuf,
    /// Where a replaced destination is moved before it is removed.
    old: PathBuf,
    target: Target,
    /// `--force`: a tag the layout has already may be pointed at the new image.
    force: bool,
    next_tmp: u64,
    committed: bool,
    /// Fsyncs finished blobs in the background; `None` when writing an archive.
    syncer: Option<Syncer>,
    /// The directory the destination is in, locked while a run commits.
    parent: PathBuf,
    /// This run's lock file beside the staging directory, held (`flock`) while the run lives:
    /// a later run that can take it knows the run is dead and clears what it left.
    run_lock: Option<(File, PathBuf)>,
}

impl LayoutWriter {
    /// Start writing the output at `destination` in `format`.
    ///
    /// For a layout, an existing `destination` that is an OCI image layout gets the new image
    /// added, and an empty directory is filled; anything else that exists is an error unless
    /// `force` is set, in which case it is replaced at commit time. For an archive, any existing `destination` is an error unless
    /// `force`.
    pub fn create(destination: &Path, format: OutputFormat, force: bool) -> Result<LayoutWriter> {
        let name = destination.file_name().ok_or_else(|| {
            Error::usage(format!(
                "{}: not a usable output path",
                destination.display()
            ))
        })?;
        let exists = fs::symlink_metadata(destination).is_ok();
        // An empty directory (made ready for the output) is as good as none: rename(2) replaces
        // it in one step.
        let empty_dir = fs::read_dir(destination).is_ok_and(|mut d| d.next().is_none());
        let target = match format {
            OutputFormat::Layout if empty_dir => Target::New { replace: false },
            OutputFormat::Layout if exists && is_layout(destination) => {
                // Read now so that an index we cannot add to fails before any work.
                read_index(destination)?;
                Target::AddTo
            }
            _ if exists && !force => {
                let what = match format {
                    OutputFormat::Layout => "already exists and is not an OCI image layout",
                    OutputFormat::Archive => "already exists",
                };
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "{}: {what} (choose another output, or --force to replace it)",
                        destination.display()
                    ),
                ));
            }
            OutputFormat::Layout => Target::New { replace: exists },
            OutputFormat::Archive => Target::Archive { replace: exists },
        };
        let parent = match destination.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| out_error(&parent, e))?;
        let base = format!(".{}.nydus-offline", name.to_string_lossy());
        let pid = std::process::id();
        remove_stale(&parent, &base);
        let run_lock = Some(take_run_lock(
            &parent.join(format!("{base}-tmp.{pid}.lock")),
        )?);
        let staging = parent.join(format!("{base}-tmp.{pid}"));
        let syncer = match target {
            Target::Archive { .. } => None,
            _ => Some(Syncer::start()?),
        };
        let writer = LayoutWriter {
            destination: destination.to_path_buf(),
            blobs: staging.join("blobs").join("sha256"),
            archive_tmp: parent.join(format!("{base}-tmp.{pid}.tar")),
            old: parent.join(format!("{base}-old.{pid}")),
            staging,
            target,
            force,
            next_tmp: 0,
            committed: false,
            syncer,
            parent: parent.clone(),
            run_lock,
        };
        // Left by an earlier run with this same pid that was killed outright: ours to reuse.
        writer.remove_temporaries();
        fs::create_dir_all(&writer.blobs).map_err(|e| out_error(destination, e))?;
        Ok(writer)
    }

    /// Refuse, before any work, to repoint `tag` in the layout being added to, unless `--force`:
    /// the image it names now is the user's. [`commit`](Self::commit) asks again under the
    /// layout's lock, since another run may have added the tag meanwhile.
    pub fn refuse_existing_tag(&self, tag: &str) -> Result<()> {
        if matches!(self.target, Target::AddTo) && !self.force {
            tag_taken(
                &self.destination,
                &read_index(&self.destination)?,
                &[tag.to_string()],
            )?;
        }
        Ok(())
    }

    /// The staging directory being filled (for tests and messages).
    pub fn tmp_dir(&self) -> &Path {
        &self.staging
    }

    /// Start a blob of unknown digest; [`BlobFile::finish`] files it under its sha256.
    pub fn blob(&mut self) -> Result<BlobFile> {
        interrupt::check()?;
        self.next_tmp += 1;
        let path = self.blobs.join(format!(".incoming-{}", self.next_tmp));
        let file = File::create(&path).map_err(|e| out_error(&self.destination, e))?;
        Ok(BlobFile {
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            size: 0,
            path,
            blobs: self.blobs.clone(),
            destination: self.destination.clone(),
            syncer: self.syncer.as_ref().map(|s| s.files.clone()),
        })
    }

    /// Store `bytes` as a blob (configs, manifests, small layers).
    pub fn put(&mut self, bytes: &[u8]) -> Result<StoredBlob> {
        let mut blob = self.blob()?;
        blob.write_all(bytes)
            .map_err(|e| out_error(&self.destination, e))?;
        blob.finish()
    }

    /// Copy a blob from `reader` as it is; the caller verifies it (the returned digest).
    pub fn copy(&mut self, reader: &mut dyn Read) -> Result<StoredBlob> {
        let mut blob = self.blob()?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(crate::common::digest::from_io(e, "reading the input")),
            };
            blob.write_all(&buf[..n])
                .map_err(|e| out_error(&self.destination, e))?;
        }
        blob.finish()
    }

    /// Where the finished blob `stored` is while the output is being written (to keep a copy of
    /// it, as the layer cache does).
    pub fn blob_path(&self, stored: &StoredBlob) -> PathBuf {
        self.blobs.join(stored.hex())
    }

    /// Add the file at `path` (a blob kept elsewhere, the layer cache's) as the blob `expected`:
    /// hard-linked where the filesystem allows, else copied, then read once to verify that its
    /// bytes are the blob's. `Ok(false)`, and nothing added, when they are not, or when the file
    /// cannot be linked, copied or read (another process removed it meanwhile): the caller
    /// makes the blob itself then.
    pub fn add_blob_file(&mut self, path: &Path, expected: &StoredBlob) -> Result<bool> {
        interrupt::check()?;
        self.next_tmp += 1;
        let tmp = self.blobs.join(format!(".incoming-{}", self.next_tmp));
        let placed = fs::hard_link(path, &tmp).or_else(|_| fs::copy(path, &tmp).map(|_| ()));
        let verified = placed.and_then(|()| sha256_of_file(&tmp));
        match verified {
            Ok((digest, size)) if digest == expected.digest && size == expected.size => {}
            _ => {
                let _ = fs::remove_file(&tmp);
                return Ok(false);
            }
        }
        let file = File::open(&tmp).map_err(|e| out_error(&self.destination, e))?;
        fs::rename(&tmp, self.blobs.join(expected.hex()))
            .map_err(|e| out_error(&self.destination, e))?;
        if let Some(syncer) = &self.syncer {
            // A copy must reach the disk like any blob (a link is there already).
            let _ = syncer.files.send(file);
        }
        Ok(true)
    }

    /// Name `entries` (descriptors carrying `org.opencontainers.image.ref.name`) in the output's
    /// `index.json`, flush everything to disk, and put the output in place. Until this returns,
    /// the destination is untouched (or, when adding to a layout, only holds new blobs that
    /// nothing names yet).
    ///
    /// Adding to a layout, its other entries stay, in their order, except those with a tag one of
    /// `entries` has; the new entries follow.
    pub fn commit(mut self, entries: Vec<Value>) -> Result<()> {
        interrupt::check()?;
        // Runs writing the same output take turns here: each looks again at what the
        // destination has become meanwhile (another run may have created it).
        let _turn = lock_dir(&self.parent)?;
        // A signal that came while this run waited for its turn stops it here.
        interrupt::check()?;
        self.retarget()?;
        // Held until the layout has the new index (released when dropped).
        let mut lock: Option<File> = None;
        let index = match &self.target {
            Target::AddTo => {
                // Another run may have added to the layout since this one started: under the
                // layout's lock, its index is read again, so both images stay named.
                lock = Some(lock_dir(&self.destination)?);
                let existing = read_index(&self.destination)?;
                if !self.force {
                    let tags: Vec<String> = entries.iter().filter_map(ref_name).collect();
                    tag_taken(&self.destination, &existing, &tags)?;
                }
                added_index(&existing, entries)
            }
            _ => json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_INDEX,
                "manifests": entries,
            }),
        };
        let index = serde_json::to_vec(&index)
            .map_err(|e| Error::internal(format!("encoding index.json: {e}")))?;
        let dest = self.destination.clone();
        if let Some(syncer) = self.syncer.take() {
            syncer.wait().map_err(|e| out_error(&dest, e))?;
        }
        let synced = |path: &Path, bytes: &[u8]| write_synced(path, bytes, &dest);
        synced(&self.staging.join("index.json"), &index)?;
        match self.target {
            Target::New { replace } => {
                synced(&self.staging.join("oci-layout"), OCI_LAYOUT)?;
                self.sync_staging()?;
                self.move_into_place(&self.staging, replace)?;
            }
            Target::Archive { replace } => {
                synced(&self.staging.join("oci-layout"), OCI_LAYOUT)?;
                super::archive::write(&self.staging, &self.archive_tmp, &self.destination)?;
                self.move_into_place(&self.archive_tmp, replace)?;
            }
            Target::AddTo => self.add_to_layout()?,
        }
        self.committed = true;
        self.remove_temporaries();
        drop(lock);
        Ok(())
    }

    fn sync_staging(&self) -> Result<()> {
        sync_dir(&self.blobs, &self.destination)?;
        sync_dir(
            self.blobs.parent().expect("blobs/sha256"),
            &self.destination,
        )?;
        sync_dir(&self.staging, &self.destination)
    }

    /// Rename `from` (the staging directory or the temporary archive) to the destination. When
    /// replacing, the old destination is moved aside first so that a failure keeps one of them.
    fn move_into_place(&self, from: &Path, replace: bool) -> Result<()> {
        let dest = &self.destination;
        if replace {
            fs::rename(dest, &self.old).map_err(|e| out_error(dest, e))?;
            if let Err(e) = fs::rename(from, dest) {
                let _ = fs::rename(&self.old, dest);
                return Err(out_error(dest, e));
            }
            remove_any(&self.old);
        } else {
            fs::rename(from, dest).map_err(|e| out_error(dest, e))?;
        }
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent, dest)?;
        }
        Ok(())
    }

    /// Move the blobs the layout lacks into it, then replace its `index.json` (already written
    /// into the staging directory) by rename. On failure, the blobs moved in are removed again.
    fn add_to_layout(&self) -> Result<()> {
        let dest = &self.destination;
        let dest_blobs = dest.join("blobs").join("sha256");
        fs::create_dir_all(&dest_blobs).map_err(|e| out_error(dest, e))?;
        let mut names: Vec<String> = fs::read_dir(&self.blobs)
            .and_then(|dir| {
                dir.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .map_err(|e| out_error(dest, e))?;
        names.sort();
        let mut moved: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for name in &names {
                let to = dest_blobs.join(name);
                if to.exists() {
                    continue;
                }
                move_file(&self.blobs.join(name), &to, dest)?;
                moved.push(to);
            }
            sync_dir(&dest_blobs, dest)?;
            let index = dest.join("index.json");
            fs::rename(self.staging.join("index.json"), &index).map_err(|e| out_error(dest, e))?;
            sync_dir(dest, dest)
        })();
        if result.is_err() {
            for path in moved {
                let _ = fs::remove_file(path);
            }
        }
        result
    }

    /// The destination as it is now, under the commit lock: a run that found no output may
    /// find the layout another run created meanwhile (its image is then added to it), or
    /// something else (refused without `--force`, as at the start).
    fn retarget(&mut self) -> Result<()> {
        let dest = &self.destination;
        let exists = fs::symlink_metadata(dest).is_ok();
        let empty_dir = fs::read_dir(dest).is_ok_and(|mut d| d.next().is_none());
        let fresh = match self.target {
            Target::New { replace: false } | Target::Archive { replace: false } => {
                exists && !empty_dir
            }
            _ => false,
        };
        if !fresh {
            return Ok(());
        }
        self.target = match self.target {
            Target::New { .. } if is_layout(dest) => Target::AddTo,
            _ if !self.force => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "{}: appeared while this run was converting (choose another output, \
                         or --force to replace it)",
                        dest.display()
                    ),
                ));
            }
            Target::New { .. } => Target::New { replace: true },
            _ => Target::Archive { replace: true },
        };
        Ok(())
    }

    fn remove_temporaries(&self) {
        remove_any(&self.staging);
        remove_any(&self.archive_tmp);
    }
}

impl Drop for LayoutWriter {
    fn drop(&mut self) {
        if !self.committed {
            self.remove_temporaries();
        }
        // Last: while the lock file is there and held, the temporaries are a live run's.
        if let Some((file, path)) = self.run_lock.take() {
            let _ = fs::remove_file(path);
            drop(file);
        }
    }
}

/// Create and lock this run's lock file. It is locked under a temporary name and then renamed,
/// so that no other run ever sees it unlocked while this run lives.
fn take_run_lock(path: &Path) -> Result<(File, PathBuf)> {
    let tmp = path.with_extension("lock-new");
    let file = File::create(&tmp).map_err(|e| out_error(path, e))?;
    file.lock().map_err(|e| out_error(path, e))?;
    fs::rename(&tmp, path).map_err(|e| out_error(path, e))?;
    Ok((file, path.to_path_buf()))
}

/// Remove what dead runs writing the same output left in `parent` (a run killed outright
/// cannot clean up: its staging directory, temporary archive and replaced output stay). A
/// run's files are `BASE-tmp.PID`, `BASE-tmp.PID.tar`, `BASE-old.PID` and its lock file
/// `BASE-tmp.PID.lock`; they are a dead run's when that lock file is missing or can be locked.
fn remove_stale(parent: &Path, base: &str) {
    let Ok(dir) = fs::read_dir(parent) else {
        return;
    };
    let mut pids: Vec<String> = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        let pid = rest
            .strip_prefix("-tmp.")
            .or_else(|| rest.strip_prefix("-old."))
            .map(|r| r.split('.').next().unwrap_or_default())
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if let Some(pid) = pid
            && !pids.iter().any(|p| p == pid)
        {
            pids.push(pid.to_string());
        }
    }
    for pid in pids {
        let lock = parent.join(format!("{base}-tmp.{pid}.lock"));
        let dead = match File::open(&lock) {
            Ok(file) => file.try_lock().is_ok(),
            Err(_) => true,
        };
        if dead {
            for suffix in [
                format!("-tmp.{pid}"),
                format!("-tmp.{pid}.tar"),
                format!("-old.{pid}"),
            ] {
                remove_any(&parent.join(format!("{base}{suffix}")));
            }
            let _ = fs::remove_file(&lock);
        }
    }
}

/// A thread that fsyncs the files it is given, in order, and keeps the first error.
struct Syncer {
    files: Sender<File>,
    thread: JoinHandle<io::Result<()>>,
}

impl Syncer {
    fn start() -> Result<Syncer> {
        let (files, rx) = channel::<File>();
        let thread = std::thread::Builder::new()
            .name("blob-sync".into())
            .spawn(move || {
                let mut first = Ok(());
                for file in rx {
                    if first.is_ok() {
                        first = file.sync_all();
                    }
                }
                first
            })
            .map_err(|e| Error::internal(format!("starting the blob sync thread: {e}")))?;
        Ok(Syncer { files, thread })
    }

    /// Wait until every file sent is on disk; the first fsync error, if any.
    fn wait(self) -> io::Result<()> {
        drop(self.files);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the blob sync thread panicked")))
    }
}

/// A blob being written; hashed as it goes.
pub struct BlobFile {
    out: BufWriter<File>,
    hasher: Sha256,
    size: u64,
    path: PathBuf,
    blobs: PathBuf,
    /// The output, for messages.
    destination: PathBuf,
    /// Where the finished file goes to be fsynced (`None`: an archive's staging blob).
    syncer: Option<Sender<File>>,
}

impl BlobFile {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flush, file the blob under its digest, and hand it to the background fsync
    /// ([`LayoutWriter::commit`] waits for it).
    pub fn finish(self) -> Result<StoredBlob> {
        let dest = self.destination.clone();
        let file = self
            .out
            .into_inner()
            .map_err(|e| out_error(&dest, e.into_error()))?;
        let hex = crate::common::hex::hex(&self.hasher.finalize());
        let final_path = self.blobs.join(&hex);
        fs::rename(&self.path, &final_path).map_err(|e| out_error(&dest, e))?;
        if let Some(syncer) = &self.syncer {
            // Fails only if the thread is gone, which `commit` then reports.
            let _ = syncer.send(file);
        }
        Ok(StoredBlob {
            digest: format!("sha256:{hex}"),
            size: self.size,
        })
    }
}

impl Write for BlobFile {
    /// Writes, unless a signal asked us to stop ([`interrupt::check_io`]). Errors name the
    /// output, so that "no space left on device" says where.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        interrupt::check_io()?;
        let n = self.out.write(buf).map_err(|e| self.name_output(e))?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush().map_err(|e| self.name_output(e))
    }
}

impl crate::blob::writer::BlobOut for BlobFile {
    fn sha256_so_far(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

impl BlobFile {
    fn name_output(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.destination.display()))
    }
}

/// The `sha256:<hex>` digest and the size of the file at `path`.
pub fn sha256_of_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex = crate::common::hex::hex(&hasher.finalize());
    Ok((format!("sha256:{hex}"), size))
}

/// Whether `dir` is an OCI image layout: a directory with `oci-layout` and `index.json`.
pub fn is_layout(dir: &Path) -> bool {
    dir.is_dir() && dir.join("oci-layout").is_file() && dir.join("index.json").is_file()
}

fn read_index(layout: &Path) -> Result<Value> {
    let path = layout.join("index.json");
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let index: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!(
                "{}: not JSON ({e}); cannot add an image to this layout",
                path.display()
            ),
        )
    })?;
    if !index.get("manifests").is_some_and(Value::is_array) {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{}: not an OCI image index (no \"manifests\" list); cannot add an image to \
                 this layout",
                path.display()
            ),
        ));
    }
    Ok(index)
}

/// `existing` with `entries` added: entries of `existing` tagged like one of `entries` go.
/// The tag (`org.opencontainers.image.ref.name`) of an index entry.
fn ref_name(entry: &Value) -> Option<String> {
    entry
        .get("annotations")
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An error naming the first of `tags` that `index` (of the layout at `dir`) has already, and
/// what it points to.
fn tag_taken(dir: &Path, index: &Value, tags: &[String]) -> Result<()> {
    let manifests = index["manifests"].as_array().into_iter().flatten();
    for entry in manifests {
        if let Some(tag) = ref_name(entry).filter(|t| tags.contains(t)) {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "{}: tag {tag:?} already names {} (choose another --tag, or --force to \
                     point it at the new image)",
                    dir.display(),
                    entry["digest"]
                        .as_str()
                        .unwrap_or("an entry without a digest")
                ),
            ));
        }
    }
    Ok(())
}

fn added_index(existing: &Value, entries: Vec<Value>) -> Value {
    let tag = ref_name;
    let new_tags: Vec<String> = entries.iter().filter_map(tag).collect();
    let mut index = existing.clone();
    let mut manifests: Vec<Value> = existing["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| tag(m).is_none_or(|t| !new_tags.contains(&t)))
        .cloned()
        .collect();
    manifests.extend(entries);
    index["manifests"] = Value::Array(manifests);
    index
}

/// Refuse an output that is the input, lies inside it, or holds it: writing it would replace or
/// change the user's own image, whatever `--force` says. Paths are compared resolved (symlinks,
/// `..`), and every existing directory on the way is compared by device and inode too, so that a
/// bind mount or a hardlinked archive is seen as the same file.
pub fn refuse_overlap(input: &Path, output: &Path) -> Result<()> {
    refuse_overlap_as(input, output, "the output")
}

/// [`refuse_overlap`] for another file a run writes (`what`: "the --report file"): it may not
/// be, lie inside or hold `input`. Also refused: the same path as `output`, which it would
/// overwrite once written.
pub fn refuse_side_file(inputs: &[PathBuf], output: &Path, file: &Path, what: &str) -> Result<()> {
    for input in inputs {
        refuse_overlap_as(input, file, what)?;
    }
    if resolve_to_be(file) == resolve_to_be(output) {
        return Err(Error::usage(format!(
            "{}: {what} would overwrite the output {}",
            file.display(),
            output.display()
        )));
    }
    Ok(())
}

/// [`refuse_side_file`] for a directory a run writes into besides the output (`what`: "the
/// --cache directory"): it may not be, lie inside or hold an input, nor the output.
pub fn refuse_side_dir(inputs: &[PathBuf], output: &Path, dir: &Path, what: &str) -> Result<()> {
    for input in inputs {
        refuse_overlap_as(input, dir, what)?;
    }
    let (dir_real, output_real) = (resolve_to_be(dir), resolve_to_be(output));
    if dir_real.starts_with(&output_real) || output_real.starts_with(&dir_real) {
        return Err(Error::usage(format!(
            "{}: {what} would be, lie inside or hold the output {} (choose a path apart from it)",
            dir.display(),
            output.display()
        )));
    }
    Ok(())
}

fn refuse_overlap_as(input: &Path, output: &Path, what: &str) -> Result<()> {
    let Ok(input_real) = fs::canonicalize(input) else {
        return Ok(()); // an input that cannot be resolved fails when it is opened
    };
    let output_real = resolve_to_be(output);
    let same_file = |a: &Path, b: &Path| match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            a.dev() == b.dev() && a.ino() == b.ino()
        }
        _ => false,
    };
    let overlaps = output_real.starts_with(&input_real)
        || input_real.starts_with(&output_real)
        || output_real.ancestors().any(|a| same_file(a, &input_real))
        || input_real.ancestors().any(|a| same_file(a, &output_real));
    if overlaps {
        return Err(Error::usage(format!(
            "{}: {what} would be, lie inside or hold the input {} (choose a path apart from \
             it; --force does not change this)",
            output.display(),
            input.display()
        )));
    }
    Ok(())
}

/// `path` resolved as far as it exists, with the components that do not exist yet appended.
fn resolve_to_be(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        if let Ok(real) = fs::canonicalize(existing) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// An output failure: names the output and the cause ("No space left on device").
pub(crate) fn out_error(destination: &Path, err: io::Error) -> Error {
    if interrupt::requested() {
        return interrupt::error();
    }
    Error::new(
        ErrorKind::Io,
        format!("writing {}: {err}", destination.display()),
    )
}

/// Rename `from` to `to`; across filesystems (a layout that is a mount point), copy into a
/// temporary name beside `to` and rename that.
fn move_file(from: &Path, to: &Path, destination: &Path) -> Result<()> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let tmp = to.with_file_name(format!(
                ".incoming-{}.{}",
                std::process::id(),
                to.file_name().unwrap_or_default().to_string_lossy()
            ));
            let copied = fs::copy(from, &tmp)
                .and_then(|_| File::open(&tmp)?.sync_all())
                .and_then(|()| fs::rename(&tmp, to));
            if let Err(e) = copied {
                let _ = fs::remove_file(&tmp);
                return Err(out_error(destination, e));
            }
            Ok(())
        }
        Err(e) => Err(out_error(destination, e)),
    }
}

fn remove_any(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = fs::remove_file(path);
        }
        Err(_) => {}
    }
}

fn write_synced(path: &Path, bytes: &[u8], destination: &Path) -> Result<()> {
    let write = || -> io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|e| out_error(destination, e))
}

/// An exclusive `flock` on the directory `dir`, waiting for another holder (another run adding
/// to the same layout) to finish; released when the file is closed. A lock on the directory
/// itself, so that nothing is added to the layout for it.
fn lock_dir(dir: &Path) -> Result<File> {
    let file = File::open(dir).map_err(|e| out_error(dir, e))?;
    file.lock().map_err(|e| out_error(dir, e))?;
    Ok(file)
}

pub(crate) fn sync_dir(dir: &Path, destination: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| out_error(destination, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(out: &Path, force: bool) -> Result<LayoutWriter> {
        LayoutWriter::create(out, OutputFormat::Layout, force)
    }

    fn tagged(digest: &str, tag: &str) -> Value {
        json!({"mediaType": "m", "digest": digest, "size": 1,
               "annotations": {ANNOTATION_REF_NAME: tag}})
    }

    #[test]
    fn nothing_appears_until_commit_and_nothing_remains_on_drop() {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        {
            let mut w = layout(&out, false).unwrap();
            let blob = w.put(b"hello").unwrap();
            assert_eq!(
                blob.digest,
                "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
            );
            assert!(w.tmp_dir().join("blobs/sha256").join(blob.hex()).exists());
            assert!(!out.exists());
        }
        assert!(!out.exists());
        assert_eq!(
            fs::read_dir(scratch.path()).unwrap().count(),
            0,
            "temp dir removed"
        );
    }

    #[test]
    fn commit_moves_the_whole_layout_into_place() {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        let mut w = layout(&out, false).unwrap();
        let mut blob = w.blob().unwrap();
        blob.write_all(b"hel").unwrap();
        blob.write_all(b"lo").unwrap();
        assert_eq!(blob.size(), 5);
        let stored = blob.finish().unwrap();
        w.commit(vec![tagged(&stored.digest, "a")]).unwrap();
        assert_eq!(fs::read(out.join("oci-layout")).unwrap(), OCI_LAYOUT);
        let index: Value =
            serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], stored.digest.as_str());
        assert_eq!(
            fs::read(out.join("blobs/sha256").join(stored.hex())).unwrap(),
            b"hello"
        );
        let names: Vec<_> = fs::read_dir(out.join("blobs/sha256")).unwrap().collect();
        assert_eq!(names.len(), 1, "no incoming files left");
        assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_existing_layout_gets_the_image_added_and_the_tag_moved() {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        let mut w = layout(&out, false).unwrap();
        let a = w.put(b"a").unwrap();
        let shared = w.put(b"shared").unwrap();
        w.commit(vec![
            tagged(&a.digest, "one"),
            tagged(&shared.digest, "two"),
        ])
        .unwrap();
        let shared_path = out.join("blobs/sha256").join(shared.hex());
        let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&shared_path).unwrap());

        // Tag "one" is the layout's already: moved only with force.
        let w = layout(&out, false).unwrap();
        let err = w.commit(vec![tagged("sha256:00", "one")]).unwrap_err();
        assert!(
            err.to_string().contains("tag \"one\" already names"),
            "{err}"
        );
        let mut w = layout(&out, true).unwrap();
        let b = w.put(b"b").unwrap();
        w.put(b"shared").unwrap();
        w.commit(vec![tagged(&b.digest, "one")]).unwrap();
        let index: Value =
            serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
        let listed: Vec<(&str, &str)> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["digest"].as_str().unwrap(),
                    m["annotations"][ANNOTATION_REF_NAME].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            vec![(shared.digest.as_str(), "two"), (b.digest.as_str(), "one")]
        );
        assert!(
            out.join("blobs/sha256").join(a.hex()).exists(),
            "old blobs stay"
        );
        assert!(out.join("blobs/sha256").join(b.hex()).exists());
        let again = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&shared_path).unwrap());
        assert_eq!(inode, again, "a blob the layout had is not written again");
        assert_eq!(
            fs::read_dir(scratch.path()).unwrap().count(),
            1,
            "no temporaries"
        );
    }

    #[test]
    fn anything_else_existing_needs_force() {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        fs::create_dir(&out).unwrap();
        layout(&out, false).unwrap().commit(vec![]).unwrap();
        assert!(is_layout(&out), "an empty directory is filled");
        fs::remove_dir_all(&out).unwrap();
        fs::create_dir(&out).unwrap();
        fs::write(out.join("file"), b"x").unwrap();
        let err = layout(&out, false).err().unwrap();
        assert!(err.to_string().contains("already exists"), "{err}");
        let w = layout(&out, true).unwrap();
        w.commit(vec![]).unwrap();
        assert!(!out.join("file").exists(), "replaced");
        assert!(is_layout(&out));

        let file = scratch.path().join("archive.tar");
        fs::write(&file, b"x").unwrap();
        let err = LayoutWriter::create(&file, OutputFormat::Archive, false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("already exists"), "{err}");
        let w = LayoutWriter::create(&file, OutputFormat::Archive, true).unwrap();
        w.commit(vec![]).unwrap();
        assert!(fs::metadata(&file).unwrap().len() > 1024);
        assert_eq!(
            fs::read_dir(scratch.path()).unwrap().count(),
            2,
            "no temporaries"
        );
    }
}
