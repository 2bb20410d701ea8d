//! Reading a layer on a thread of its own.
//!
//! Reading a layer means reading its stored bytes, hashing them against the manifest's digest,
//! decompressing, and hashing the result against the config's diff_id: on a small-file layer
//! that is most of the work of the thread that also parses the tar and feeds the chunk workers.
//! [`ReadAhead`] moves it to another thread, which hands over blocks of the layer's tar through
//! a short queue, so parsing and reading overlap.
//!
//! A layer whose tar lies uncompressed in a plain file is not read at all but mapped
//! ([`MappedLayer`]): the thread maps and hashes a window of the file at a time and hands over
//! the mapping itself, which the tar reader reads file content from; the window is unmapped as
//! soon as the reader is past it. Other layers are streamed through a [`LayerReader`] into
//! buffers of [`BLOCK`] bytes that go back and forth. Either way memory stays at a few blocks or
//! windows, whatever the size of the layer.

use std::io::{self, Read};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::common::error::{Error, Result, warn};
use crate::layer::mapped::{MappedLayer, Window};
use crate::source::compression::mislabelled;
use crate::source::store::CountingStore;
use crate::source::{BlobStore, Layer, LayerReader, LayerSummary};

/// Bytes per block handed over when streaming.
pub const BLOCK: usize = 256 * 1024;
/// Blocks that may wait in the queue when streaming.
pub const DEPTH: usize = 8;
/// Mapped windows that may wait in the queue: with the one being hashed and the one being
/// read, at most `MAPPED_DEPTH + 2` windows are mapped at once.
pub const MAPPED_DEPTH: usize = 3;

/// Bytes of the layer's tar, as the thread hands them over.
enum Block {
    /// Read (and decompressed) into a buffer; the buffer goes back to the thread for reuse.
    Owned(Vec<u8>),
    /// A window of the mapped file, unmapped when dropped.
    Mapped(Window),
}

impl Deref for Block {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Block::Owned(v) => v,
            Block::Mapped(w) => w,
        }
    }
}

enum Message {
    Data(Block),
    /// A read error; the thread stops after it.
    Failed(io::Error),
    /// The stream ended and was verified (or not): the thread's last word.
    End(Result<LayerSummary>),
}

/// A layer read on its own thread; reads return its uncompressed tar bytes in order.
pub struct ReadAhead {
    rx: Receiver<Message>,
    /// Returned buffers, reused by the thread.
    spare: SyncSender<Vec<u8>>,
    current: Block,
    pos: usize,
    end: Option<Result<LayerSummary>>,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Start reading `layer` of `store` on a new thread: mapped when its tar lies uncompressed
    /// in a plain file, else streamed. `read` counts the stored bytes read, for progress.
    /// A layer whose media type names another compression than its bytes have is read as its
    /// bytes are, with a warning.
    pub fn open(store: &dyn BlobStore, layer: &Layer, read: Arc<AtomicU64>) -> Result<ReadAhead> {
        if let Some(doubt) = mislabelled(&layer.media_type, layer.declared, layer.stored) {
            warn(format!("{}: {doubt}", layer.label()));
        }
        match MappedLayer::open(layer, Arc::clone(&read))? {
            Some(mapped) => {
                log::debug!("{}: mapped (a plain tar in a plain file)", layer.label());
                ReadAhead::spawn_mapped(mapped)
            }
            None => {
                log::info!(
                    "{}: streamed (not a plain tar in a plain file, or not mappable)",
                    layer.label()
                );
                ReadAhead::spawn(LayerReader::open(
                    &CountingStore { inner: store, read },
                    layer,
                )?)
            }
        }
    }

    /// Start streaming `layer` on a new thread.
    pub fn spawn(mut layer: LayerReader) -> Result<ReadAhead> {
        let (spare, spare_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
        ReadAhead::start(spare, DEPTH, move |tx| {
            loop {
                let mut block = spare_rx.try_recv().unwrap_or_else(|_| vec![0; BLOCK]);
                block.resize(BLOCK, 0);
                match read_full(&mut layer, &mut block) {
                    Ok(0) => break,
                    Ok(n) => {
                        block.truncate(n);
                        if tx.send(Message::Data(Block::Owned(block))).is_err() {
                            return; // The consumer gave up.
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Message::Failed(e));
                        return;
                    }
                }
            }
            let _ = tx.send(Message::End(layer.finish()));
        })
    }

    /// Start mapping and verifying `layer` on a new thread.
    pub fn spawn_mapped(mut layer: MappedLayer) -> Result<ReadAhead> {
        // No buffers go back: a window is unmapped where it is dropped.
        let (spare, _) = sync_channel::<Vec<u8>>(0);
        ReadAhead::start(spare, MAPPED_DEPTH, move |tx| {
            loop {
                match layer.next_window() {
                    Ok(Some(window)) => {
                        if tx.send(Message::Data(Block::Mapped(window))).is_err() {
                            return; // The consumer gave up.
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Message::Failed(io::Error::other(e)));
                        return;
                    }
                }
            }
            let _ = tx.send(Message::End(layer.finish()));
        })
    }

    /// Run `body` on the reader thread, with a queue of `depth` messages to us.
    fn start(
        spare: SyncSender<Vec<u8>>,
        depth: usize,
        body: impl FnOnce(SyncSender<Message>) + Send + 'static,
    ) -> Result<ReadAhead> {
        let (tx, rx) = sync_channel::<Message>(depth);
        let thread = std::thread::Builder::new()
            .name("layer-reader".into())
            .spawn(move || body(tx))
            .map_err(|e| Error::internal(format!("starting the layer reader thread: {e}")))?;
        Ok(ReadAhead {
            rx,
            spare,
            current: Block::Owned(Vec::new()),
            pos: 0,
            end: None,
            thread: Some(thread),
        })
    }

    /// Let go of what the consumer left (padding after the tar's end: nothing is copied) and
    /// return the verified sizes and diff_id, or the first verification error — as
    /// [`LayerReader::finish`].
    pub fn finish(mut self) -> Result<LayerSummary> {
        loop {
            self.pos = self.current.len();
            match self.next_block() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(crate::common::digest::from_io(e, "layer")),
            }
        }
        self.end.take().unwrap_or_else(|| {
            Err(Error::internal(
                "layer reader thread ended without a result",
            ))
        })
    }

    /// Make the next block current once the current one is used up; `false` at the end.
    fn next_block(&mut self) -> io::Result<bool> {
        while self.pos == self.current.len() {
            if self.end.is_some() {
                return Ok(false);
            }
            match self.rx.recv() {
                Ok(Message::Data(block)) => {
                    // A streamed buffer goes back for reuse; a window is unmapped here.
                    if let Block::Owned(done) = std::mem::replace(&mut self.current, block) {
                        let _ = self.spare.try_send(done);
                    }
                    self.pos = 0;
                }
                Ok(Message::Failed(e)) => return Err(e),
                Ok(Message::End(result)) => {
                    // A verification failure at the end must surface as a read error too, as
                    // it does when reading the LayerReader itself.
                    if let Err(e) = &result {
                        let e = Error::new(e.kind(), e.to_string());
                        self.end = Some(result);
                        return Err(io::Error::other(e));
                    }
                    self.end = Some(result);
                }
                Err(_) => {
                    return Err(io::Error::other(Error::internal(
                        "layer reader thread stopped",
                    )));
                }
            }
        }
        Ok(true)
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.next_block()? {
            return Ok(0);
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Unblock the thread if it waits to send, then let it end.
        while self.rx.try_recv().is_ok() {}
        let (_, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Fill `buf` as far as the stream goes; returns the bytes read (less than `buf.len()` only at
/// the end).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use sha2::{Digest as _, Sha512};

    use super::*;
    use crate::ErrorKind;
    use crate::common::digest::sha256_of;
    use crate::layer::mapped::WINDOW;
    use crate::source::FileExtent;
    use crate::source::compression::Compression;
    use crate::source::oci_layout::DirStore;

    /// Bytes that do not repeat, `len` of them.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A plain layer of `bytes` stored at byte 1000 of `dir/archive` (as in a docker save
    /// tarball) and whole in `dir/blob`; mapped from the archive when `mapped`, else streamed
    /// from the blob.
    fn layer(dir: &Path, bytes: &[u8], mapped: bool) -> Layer {
        let mut archive = vec![0xaa; 1000];
        archive.extend_from_slice(bytes);
        archive.extend_from_slice(&[0xbb; 700]);
        fs::write(dir.join("archive"), archive).unwrap();
        fs::write(dir.join("blob"), bytes).unwrap();
        let digest = sha256_of(bytes);
        Layer {
            index: 0,
            media_type: crate::source::image::media::OCI_LAYER.into(),
            digest: digest.clone(),
            size: bytes.len() as u64,
            diff_id: digest,
            declared: Compression::None,
            stored: Compression::None,
            extent: mapped.then(|| FileExtent {
                path: dir.join("archive"),
                offset: 1000,
                len: bytes.len() as u64,
            }),
            location: "the-layer".into(),
            blob: "blob".into(),
        }
    }

    fn read(dir: &Path, layer: &Layer) -> Result<(Vec<u8>, LayerSummary, u64)> {
        let count = Arc::new(AtomicU64::new(0));
        let mut reader = ReadAhead::open(&DirStore::new(dir), layer, Arc::clone(&count))?;
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(from_io)?;
        let summary = reader.finish()?;
        Ok((
            bytes,
            summary,
            count.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }

    fn from_io(e: io::Error) -> Error {
        crate::common::digest::from_io(e, "test")
    }

    #[test]
    fn a_mapped_layer_reads_as_the_streamed_one() {
        let dir = tempfile::tempdir().unwrap();
        // Windows end inside the layer and the last one is short.
        for len in [0, 1, 4095, 2 * WINDOW + 12345] {
            let bytes = noise(len);
            let streamed = read(dir.path(), &layer(dir.path(), &bytes, false)).unwrap();
            let mapped = read(dir.path(), &layer(dir.path(), &bytes, true)).unwrap();
            assert!(mapped.0 == bytes, "{len} bytes mapped");
            assert_eq!(mapped, streamed, "{len} bytes");
            assert_eq!(mapped.2, len as u64, "progress counts every byte");
        }
    }

    #[test]
    fn a_plain_layer_is_checked_against_its_digest_and_diff_id_mapped_or_not() {
        for mapped in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let bytes = noise(WINDOW + 100);
            let good = layer(dir.path(), &bytes, mapped);

            // Another algorithm for the diff_id: hashed on its own.
            let sha512 = crate::common::hex::hex(&Sha512::digest(&bytes));
            let mut l = good.clone();
            l.diff_id = format!("sha512:{sha512}").parse().unwrap();
            assert_eq!(read(dir.path(), &l).unwrap().1.diff_id, l.diff_id);
            l.diff_id = format!("sha512:{}", "0".repeat(128)).parse().unwrap();
            let e = read(dir.path(), &l).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BadInput);
            assert!(
                e.to_string().contains("rootfs.diff_ids says sha512:000"),
                "{e}"
            );

            // Same algorithm, other value: the one hash is compared with both.
            let mut l = good.clone();
            l.diff_id = sha256_of(b"something else");
            let e = read(dir.path(), &l).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "the-layer: uncompressed content has digest {}, but the config's \
                     rootfs.diff_ids says {}",
                    good.digest, l.diff_id
                )
            );

            // A flipped byte: the manifest's digest fails first.
            let mut damaged = bytes.clone();
            damaged[WINDOW + 50] ^= 1;
            let archive = dir.path().join("archive");
            let mut stored = fs::read(&archive).unwrap();
            stored[1000..1000 + bytes.len()].copy_from_slice(&damaged);
            fs::write(&archive, stored).unwrap();
            fs::write(dir.path().join("blob"), &damaged).unwrap();
            let e = read(dir.path(), &good).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BadInput);
            assert_eq!(
                e.to_string(),
                format!(
                    "the-layer: content has digest {}, but the manifest says {}",
                    sha256_of(&damaged),
                    good.digest
                ),
                "mapped: {mapped}"
            );
        }
    }

    #[test]
    fn a_file_shorter_than_its_layer_is_refused_before_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = noise(5000);
        let mut l = layer(dir.path(), &bytes, true);
        l.extent.as_mut().unwrap().offset = 1000 + 701;
        let count = Arc::new(AtomicU64::new(0));
        let e = ReadAhead::open(&DirStore::new(dir.path()), &l, count)
            .err()
            .expect("the extent runs past the end of the file");
        assert_eq!(e.kind(), ErrorKind::BadInput);
        let archive = dir.path().join("archive").display().to_string();
        assert!(
            e.to_string().starts_with(&archive) && e.to_string().contains("ends early"),
            "{e}"
        );

        // An extent of another length than the manifest's: what streaming says of it.
        let mut l = layer(dir.path(), &bytes, true);
        l.size = 4000;
        let e = read(dir.path(), &l).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the-layer: is 5000 bytes, but the manifest says 4000 bytes (truncated?)"
        );
    }

    #[test]
    fn dropping_a_mapped_layer_half_read_stops_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = noise(8 * WINDOW);
        let l = layer(dir.path(), &bytes, true);
        let count = Arc::new(AtomicU64::new(0));
        let mut reader = ReadAhead::open(&DirStore::new(dir.path()), &l, count).unwrap();
        let mut some = [0u8; 100];
        reader.read_exact(&mut some).unwrap();
        assert_eq!(some, bytes[..100]);
        drop(reader); // Joins the thread, which was blocked on a full queue.
    }
}
