//! Reading a layer on a thread of its own.
//!
//! Reading a layer means reading its stored bytes, hashing them against the manifest's digest,
//! decompressing, and hashing the result against the config's diff_id: on a small-file layer
//! that is most of the work of the thread that also parses the tar and feeds the chunk workers.
//! [`ReadAhead`] moves it to another thread, which hands over decompressed blocks through a short
//! queue (memory stays at [`DEPTH`] blocks), so parsing and decompressing overlap.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::source::{LayerReader, LayerSummary};

/// Bytes per block handed over.
pub const BLOCK: usize = 256 * 1024;
/// Blocks that may wait in the queue.
pub const DEPTH: usize = 8;

enum Message {
    Data(Vec<u8>),
    /// A read error; the thread stops after it.
    Failed(io::Error),
    /// The stream ended and was verified (or not): the thread's last word.
    End(Result<LayerSummary>),
}

/// A [`LayerReader`] running on its own thread; reads return its decompressed bytes in order.
pub struct ReadAhead {
    rx: Receiver<Message>,
    /// Returned buffers, reused by the thread.
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    end: Option<Result<LayerSummary>>,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Start reading `layer` on a new thread.
    pub fn spawn(mut layer: LayerReader) -> Result<ReadAhead> {
        let (tx, rx) = sync_channel::<Message>(DEPTH);
        let (spare, spare_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let thread = std::thread::Builder::new()
            .name("layer-reader".into())
            .spawn(move || {
                loop {
                    let mut block = spare_rx.try_recv().unwrap_or_else(|_| vec![0; BLOCK]);
                    block.resize(BLOCK, 0);
                    match read_full(&mut layer, &mut block) {
                        Ok(0) => break,
                        Ok(n) => {
                            block.truncate(n);
                            if tx.send(Message::Data(block)).is_err() {
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
            .map_err(|e| Error::internal(format!("starting the layer reader thread: {e}")))?;
        Ok(ReadAhead {
            rx,
            spare,
            current: Vec::new(),
            pos: 0,
            end: None,
            thread: Some(thread),
        })
    }

    /// Read what the consumer left (padding after the tar's end) and return the verified sizes
    /// and diff_id, or the first verification error — as [`LayerReader::finish`].
    pub fn finish(mut self) -> Result<LayerSummary> {
        let mut sink = [0u8; 64 * 1024];
        loop {
            match self.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(crate::source::digest::from_io(e, "layer")),
            }
        }
        self.end.take().unwrap_or_else(|| {
            Err(Error::internal(
                "layer reader thread ended without a result",
            ))
        })
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.end.is_some() {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Message::Data(block)) => {
                    let done = std::mem::replace(&mut self.current, block);
                    let _ = self.spare.try_send(done);
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
