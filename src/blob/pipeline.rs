//! The parallel part of blob writing: worker threads that digest and compress batches of chunks.
//!
//! The thread reading the layer fills a [`Batch`] with chunks (one contiguous buffer, so that a
//! layer of tiny files does not pay a channel round trip per file), submits it, and goes on
//! reading. Workers digest and compress every chunk of a batch and send it back. Batches come
//! back in any order; [`Workers`] hands them out again strictly in submission order, so the blob
//! writer stores chunks in exactly the order a single thread would have: the output does not
//! depend on the number of threads.
//!
//! At most [`Workers::capacity`] batches are out at once, which bounds memory to a few batch
//! buffers whatever the size of a layer.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

use super::chunk::{Compressor, Digester};
use super::compress::PieceCompressor;
use crate::blob::chunk::ChunkIndex;
use crate::common::error::{Error, Result};

/// A batch is submitted once it holds this many bytes (or at the end of the layer).
pub const BATCH_BYTES: usize = 1 << 20;

/// One chunk inside a batch.
#[derive(Clone, Debug)]
pub struct Item {
    /// The chunk's reserved index in the chunk table.
    pub index: ChunkIndex,
    /// Offset of the chunk in its file.
    pub file_offset: u64,
    /// Where its bytes are in the batch buffer.
    pub start: usize,
    pub len: usize,
    /// Whether it joins a `--batch-size` batch if it is stored: then it is compressed with its
    /// batch, never alone, and the worker leaves it uncompressed.
    pub batched: bool,
    /// Filled by a worker: digest of the uncompressed bytes.
    pub digest: [u8; 32],
    /// Filled by a worker: where the compressed bytes are in the batch's `compressed` buffer,
    /// or `None` when the chunk is stored as it is (compression did not shrink it).
    pub compressed: Option<(usize, usize)>,
}

/// Chunks read in order, travelling together to a worker and back.
#[derive(Debug, Default)]
pub struct Batch {
    /// Submission number, from 0.
    seq: u64,
    /// The chunks' bytes, back to back.
    pub data: Vec<u8>,
    pub items: Vec<Item>,
    /// Filled by a worker: the compressed chunks, back to back.
    pub compressed: Vec<u8>,
}

impl Batch {
    /// Bytes of chunk data in the batch.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the batch holds no chunk.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

type Done = (u64, Result<Batch>);

/// A pool of worker threads for one blob, and the reordering of their results.
pub struct Workers {
    jobs: Option<Sender<Batch>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
    next_seq: u64,
    next_out: u64,
    waiting: BTreeMap<u64, Result<Batch>>,
    /// Spare batch buffers, so that steady state allocates nothing.
    spare: Vec<Batch>,
}

impl Workers {
    /// Start `threads` workers (0: one per CPU) digesting with `digester` and compressing with
    /// `compressor`.
    pub fn new(threads: usize, digester: Digester, compressor: Compressor) -> Result<Workers> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (jobs, job_rx) = channel::<Batch>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done) = channel::<Done>();
        let mut handles = Vec::with_capacity(threads);
        for n in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let mut compressor = PieceCompressor::new(compressor)?;
            let handle = std::thread::Builder::new()
                .name(format!("chunk-worker-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking one batch off the queue.
                        let next = job_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok(mut batch)) = next else { return };
                        let seq = batch.seq;
                        let result = process(&mut batch, digester, &mut compressor).map(|()| batch);
                        if done_tx.send((seq, result)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::internal(format!("starting a chunk worker: {e}")))?;
            handles.push(handle);
        }
        Ok(Workers {
            jobs: Some(jobs),
            done,
            threads: handles,
            next_seq: 0,
            next_out: 0,
            waiting: BTreeMap::new(),
            spare: Vec::new(),
        })
    }

    /// How many batches may be out at once: enough to keep every worker busy while the reader
    /// fills the next one.
    pub fn capacity(&self) -> u64 {
        2 * self.threads.len() as u64 + 1
    }

    /// Batches submitted and not yet taken back.
    pub fn in_flight(&self) -> u64 {
        self.next_seq - self.next_out
    }

    /// An empty batch to fill, reusing a returned buffer when there is one.
    pub fn empty_batch(&mut self) -> Batch {
        let mut batch = self.spare.pop().unwrap_or_default();
        batch.data.clear();
        batch.items.clear();
        batch.compressed.clear();
        batch
    }

    /// Give a processed batch's buffers back for reuse.
    pub fn recycle(&mut self, batch: Batch) {
        if self.spare.len() < self.capacity() as usize {
            self.spare.push(batch);
        }
    }

    /// Send a filled batch to the workers.
    pub fn submit(&mut self, mut batch: Batch) -> Result<()> {
        batch.seq = self.next_seq;
        self.next_seq += 1;
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(batch).ok())
            .ok_or_else(|| Error::internal("chunk workers stopped"))
    }

    /// The next batch in submission order if it is done; with `wait`, wait for it. `None` when
    /// nothing is out, or (without `wait`) when the next one is not back yet.
    pub fn next_done(&mut self, wait: bool) -> Result<Option<Batch>> {
        loop {
            if self.next_out == self.next_seq {
                return Ok(None);
            }
            if let Some(result) = self.waiting.remove(&self.next_out) {
                self.next_out += 1;
                return result.map(Some);
            }
            let (seq, result) = if wait {
                self.done
                    .recv()
                    .map_err(|_| Error::internal("chunk workers stopped"))?
            } else {
                match self.done.try_recv() {
                    Ok(done) => done,
                    Err(_) => return Ok(None),
                }
            };
            self.waiting.insert(seq, result);
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queue ends every worker once it finishes its batch.
        self.jobs.take();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Digest and compress every chunk of a batch.
fn process(batch: &mut Batch, digester: Digester, compressor: &mut PieceCompressor) -> Result<()> {
    let Batch {
        data,
        items,
        compressed,
        ..
    } = batch;
    for item in items.iter_mut() {
        let bytes = &data[item.start..item.start + item.len];
        item.digest = match digester {
            Digester::Blake3 => *blake3::hash(bytes).as_bytes(),
            Digester::Sha256 => Sha256::digest(bytes).into(),
        };
        item.compressed = match compressor.compress(bytes)? {
            _ if item.batched => None,
            Some(c) => {
                let start = compressed.len();
                compressed.extend_from_slice(c);
                Some((start, c.len()))
            }
            None => None,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(workers: &mut Workers, chunks: &[&[u8]], first: ChunkIndex) -> Batch {
        let mut batch = workers.empty_batch();
        for (i, c) in chunks.iter().enumerate() {
            let start = batch.data.len();
            batch.data.extend_from_slice(c);
            batch.items.push(Item {
                index: first + i as ChunkIndex,
                file_offset: 0,
                start,
                len: c.len(),
                batched: false,
                digest: [0; 32],
                compressed: None,
            });
        }
        batch
    }

    #[test]
    fn results_come_back_in_submission_order_with_digests_and_compression() {
        let mut workers = Workers::new(3, Digester::Sha256, Compressor::Zstd).unwrap();
        let text = vec![b'a'; 10_000];
        let mut expected = Vec::new();
        for n in 0..20u32 {
            let unique = n.to_le_bytes();
            let batch = batch_of(&mut workers, &[&text, &unique], n * 2);
            workers.submit(batch).unwrap();
            expected.push(n * 2);
        }
        let mut seen = Vec::new();
        while let Some(batch) = workers.next_done(true).unwrap() {
            seen.push(batch.items[0].index);
            let first = &batch.items[0];
            assert_eq!(first.digest, <[u8; 32]>::from(Sha256::digest(&text)));
            let (start, len) = first.compressed.expect("10 000 equal bytes compress");
            let back =
                zstd::bulk::decompress(&batch.compressed[start..start + len], 10_000).unwrap();
            assert_eq!(back, text);
            assert_eq!(batch.items[1].compressed, None, "4 bytes do not shrink");
            workers.recycle(batch);
        }
        assert_eq!(seen, expected);
        assert_eq!(workers.in_flight(), 0);
    }
}
