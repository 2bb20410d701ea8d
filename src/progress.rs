//! Progress of a conversion, shown on stderr while it runs.
//!
//! The pipeline knows nothing about terminals: `convert` calls a [`Progress`]
//! at a few points (the run begins, a platform begins, a layer begins and ends) and hands over a
//! [`LayerWatch`], the layer's running counters (atomics the layer reader and the blob writer
//! bump once per read or per batch of chunks). [`Display`] is the implementation the CLI uses:
//! a thread of its own polls the counters a few times a second and draws indicatif bars on a
//! terminal, or prints plain lines (no escape codes, no carriage returns) when stderr is a file
//! or a pipe. [`NoProgress`] shows nothing.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};

use crate::blob::writer::WriterCounts;
use crate::common::text::count;
use crate::report::LayerReport;
use crate::source::Platform;

/// What the pipeline tells about its progress. Every method has an empty default; all are
/// called from the converting thread.
pub trait Progress: Sync {
    /// The run begins: `layers` layers of `bytes` stored bytes in all, over every platform
    /// (layers shared between platforms counted once per platform).
    fn begin(&self, _layers: usize, _bytes: u64) {}

    /// A platform begins: `layers` layers, of which the first `shared` (`shared_bytes` stored
    /// bytes) reuse what an earlier platform converted and are not read again.
    fn platform(&self, _platform: &Platform, _layers: usize, _shared: usize, _shared_bytes: u64) {}

    /// A layer begins; `watch` counts what is done of it as it goes.
    fn layer_start(&self, _layer: &LayerStart<'_>, _watch: LayerWatch) {}

    /// The layer is converted and its blob written.
    fn layer_done(&self, _report: &LayerReport) {}

    /// The output is complete.
    fn end(&self) {}
}

/// Shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// A layer about to be converted.
pub struct LayerStart<'a> {
    /// Its position among the platform's layers, from 1, and their number.
    pub number: usize,
    pub count: usize,
    /// The source layer's digest.
    pub digest: &'a str,
    /// Its stored (compressed) size, from the manifest: the length of its bar.
    pub size: u64,
}

/// The running counters of the layer being converted.
#[derive(Clone, Debug, Default)]
pub struct LayerWatch {
    /// Stored (compressed) bytes of the layer read so far.
    pub read: Arc<AtomicU64>,
    /// The blob writer's counts.
    pub writer: Arc<WriterCounts>,
}

/// How [`Display`] shows progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// indicatif bars: one line per layer and an overall bar. For a terminal.
    Bars,
    /// Plain lines: one when a platform or layer begins and ends, and one every
    /// [`PLAIN_EVERY`] while a layer runs. Nothing is printed before `after` has passed since
    /// the run began, so that quick runs (and their errors) stay quiet in scripts.
    Plain { after: Duration },
}

/// How often plain mode reports on a layer that is still running.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// How long an automatic plain display waits before it prints anything.
pub const PLAIN_DELAY: Duration = Duration::from_secs(2);
/// How often the counters are polled.
const TICK: Duration = Duration::from_millis(100);

/// Progress on stderr, drawn by a thread of its own; stopped when dropped.
pub struct Display {
    inner: Arc<Inner>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Inner {
    mode: Mode,
    state: Mutex<State>,
}

struct State {
    start: Instant,
    layers: usize,
    layers_done: usize,
    bytes: u64,
    bytes_done: u64,
    current: Option<Current>,
    last_line: Instant,
    bars: Option<Bars>,
}

struct Current {
    label: String,
    size: u64,
    watch: LayerWatch,
    started: Instant,
    bar: Option<ProgressBar>,
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
}

impl Display {
    /// Start showing progress in `mode`.
    pub fn new(mode: Mode) -> Display {
        let now = Instant::now();
        let inner = Arc::new(Inner {
            mode,
            state: Mutex::new(State {
                start: now,
                layers: 0,
                layers_done: 0,
                bytes: 0,
                bytes_done: 0,
                current: None,
                last_line: now,
                bars: None,
            }),
        });
        let (stop, stopped) = channel::<()>();
        let ticker = Arc::clone(&inner);
        // Without the thread there are no periodic updates; the events still show.
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    ticker.tick();
                }
            })
            .ok();
        Display {
            inner,
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // An error ends the run: leave the bars as they stand, the error line follows.
        let state = self.inner.lock();
        if let Some(bar) = state.current.as_ref().and_then(|c| c.bar.as_ref()) {
            bar.abandon();
        }
        if let Some(bars) = &state.bars
            && !bars.overall.is_finished()
        {
            bars.overall.abandon();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Print one plain line, if plain lines are due by now.
    fn line(&self, state: &State, text: &str) {
        if let Mode::Plain { after } = self.mode
            && state.start.elapsed() >= after
        {
            crate::common::error::say(text);
        }
    }

    fn tick(&self) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(current) = &state.current else {
            return;
        };
        let read = current.watch.read.load(Ordering::Relaxed);
        match self.mode {
            Mode::Bars => {
                if let Some(bar) = &current.bar {
                    bar.set_position(read.min(current.size));
                    bar.set_message(counts(&current.watch));
                }
                if let Some(bars) = &state.bars {
                    bars.overall.set_position(state.bytes_done + read);
                }
            }
            Mode::Plain { after } => {
                let due = state.last_line.elapsed() >= PLAIN_EVERY
                    || (state.start.elapsed() >= after
                        && state.last_line.duration_since(state.start) < after);
                if due {
                    let seconds = current.started.elapsed().as_secs_f64();
                    let text = format!(
                        "{}: {}/{} read ({}%), {}, {}/s",
                        current.label,
                        HumanBytes(read),
                        HumanBytes(current.size),
                        (read * 100).checked_div(current.size).unwrap_or(100),
                        counts(&current.watch),
                        HumanBytes((read as f64 / seconds.max(0.001)) as u64),
                    );
                    self.line(state, &text);
                    state.last_line = Instant::now();
                }
            }
        }
    }
}

/// "N chunks, M dedup hits".
fn counts(watch: &LayerWatch) -> String {
    let w = &watch.writer;
    format!(
        "{}, {}",
        count(WriterCounts::get(&w.chunks), "chunk"),
        count(WriterCounts::get(&w.dedup_hits), "dedup hit")
    )
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress for Display {
    fn begin(&self, layers: usize, bytes: u64) {
        let mut state = self.inner.lock();
        state.layers = layers;
        state.bytes = bytes;
        if self.inner.mode == Mode::Bars {
            let multi = MultiProgress::new();
            let overall = multi.add(ProgressBar::new(bytes));
            overall.set_style(style(
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {msg} {elapsed}",
            ));
            overall.set_prefix("total");
            overall.set_message(format!("0/{}", count(layers as u64, "layer")));
            state.bars = Some(Bars { multi, overall });
        }
    }

    fn platform(&self, platform: &Platform, layers: usize, shared: usize, shared_bytes: u64) {
        let mut state = self.inner.lock();
        state.layers_done += shared;
        state.bytes_done += shared_bytes;
        let mut text = format!("{platform}: {}", count(layers as u64, "layer"));
        if shared > 0 {
            let _ = write!(text, ", {shared} already converted for an earlier platform");
        }
        match &state.bars {
            Some(bars) => bars.multi.suspend(|| crate::common::error::say(&text)),
            None => self.inner.line(&state, &text),
        }
    }

    fn layer_start(&self, layer: &LayerStart<'_>, watch: LayerWatch) {
        let mut state = self.inner.lock();
        let short = layer
            .digest
            .get(..layer.digest.find(':').map_or(0, |i| i + 13))
            .unwrap_or(layer.digest);
        let label = format!("layer {}/{} {short}", layer.number, layer.count);
        let bar = state.bars.as_ref().map(|bars| {
            let bar = bars
                .multi
                .insert_before(&bars.overall, ProgressBar::new(layer.size));
            bar.set_style(style(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} {binary_bytes_per_sec}",
            ));
            bar.set_prefix(label.clone());
            bar
        });
        self.inner.line(
            &state,
            &format!("{label}: started, {} stored", HumanBytes(layer.size)),
        );
        state.last_line = Instant::now();
        state.current = Some(Current {
            label,
            size: layer.size,
            watch,
            started: Instant::now(),
            bar,
        });
    }

    fn layer_done(&self, report: &LayerReport) {
        let mut state = self.inner.lock();
        let Some(current) = state.current.take() else {
            return;
        };
        state.layers_done += 1;
        state.bytes_done += current.size;
        let blob = &report.blob;
        let done = format!(
            "{}, {} ({:.1}%), blob {}",
            count(blob.chunks, "chunk"),
            count(blob.dedup_hits, "dedup hit"),
            blob.dedup_ratio * 100.0,
            HumanBytes(blob.size)
        );
        if let Some(bar) = &current.bar {
            bar.set_position(current.size);
            bar.finish_with_message(format!("{done}, {:.1}s", report.timing.seconds));
        }
        if let Some(bars) = &state.bars {
            bars.overall.set_position(state.bytes_done);
            bars.overall.set_message(format!(
                "{}/{}",
                state.layers_done,
                count(state.layers as u64, "layer")
            ));
        }
        self.inner.line(
            &state,
            &format!(
                "{}: done in {:.1}s, {} read, {} uncompressed, {done}",
                current.label,
                report.timing.seconds,
                HumanBytes(report.source.size),
                HumanBytes(report.source.uncompressed_size),
            ),
        );
        state.last_line = Instant::now();
    }

    fn end(&self) {
        let state = self.inner.lock();
        if let Some(bars) = &state.bars {
            bars.overall.finish();
        }
        self.inner.line(
            &state,
            &format!(
                "done: {} in {:.1}s",
                count(state.layers as u64, "layer"),
                state.start.elapsed().as_secs_f64()
            ),
        );
    }
}
