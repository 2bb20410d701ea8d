//! Progress of a conversion, shown on stderr while it runs.
//!
//! The pipeline knows nothing about terminals: `convert` calls a [`Progress`]
//! at a few points (the run begins, a platform begins, a layer begins, its bootstrap is written,
//! it ends, a platform's bootstrap layer is written) and hands over a
//! [`LayerWatch`], the layer's running counters (atomics the layer reader and the blob writer
//! bump once per read or per batch of chunks). [`Display`] is the implementation the CLI uses:
//! a thread of its own polls the counters a few times a second and draws indicatif bars on a
//! terminal, or prints plain lines (no escape codes, no carriage returns) when stderr is a file
//! or a pipe. [`NoProgress`] shows nothing.
//!
//! On a terminal every line fits its width (the message at the end of a line is cut to fit,
//! however narrow the terminal is made while it runs), and a bar that is full says what is still
//! being done (`finishing the blob`, `writing its bootstrap`). When a signal interrupts the run
//! the bars are left as they were last drawn and no longer redrawn: Ctrl-C makes the terminal echo
//! `^C` below them, and a redraw from where the cursor was would repeat a line.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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

    /// The next `layers` layers of the platform (`bytes` stored bytes) were taken from the
    /// layer cache (`--cache`) and are not read.
    fn cache_hits(&self, _layers: usize, _bytes: u64) {}

    /// A layer begins; `watch` counts what is done of it as it goes.
    fn layer_start(&self, _layer: &LayerStart<'_>, _watch: LayerWatch) {}

    /// The layer's data is all read and its chunks stored; its bootstrap is being written (and
    /// after a platform's last layer, the platform's merged bootstrap).
    fn layer_bootstrap(&self) {}

    /// The layer is converted and its blob written.
    fn layer_done(&self, _report: &LayerReport) {}

    /// The platform's layers are done; its bootstrap layer (the merged bootstrap, gzipped),
    /// config and manifest are being written.
    fn bootstrap(&self, _platform: &Platform) {}

    /// Everything is written; the output is being put in place (an oci-archive written, after
    /// other runs adding to the same layout have had their turn).
    fn commit(&self) {}

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
    /// What is being written once a platform's layers are done: its bootstrap layer, or the
    /// output itself.
    step: Option<String>,
    last_line: Instant,
    bars: Option<Bars>,
}

struct Current {
    label: String,
    size: u64,
    watch: LayerWatch,
    started: Instant,
    /// Whether its data is all read and its bootstrap is being written.
    bootstrap: bool,
    bar: Option<ProgressBar>,
}

impl Current {
    /// What the layer is doing with `read` bytes read, then its counts: for a bar's message
    /// and plain lines.
    fn status(&self, read: u64) -> String {
        if self.bootstrap {
            format!("writing its bootstrap, {}", counts(&self.watch))
        } else if read >= self.size {
            format!("finishing the blob, {}", counts(&self.watch))
        } else {
            let seconds = self.started.elapsed().as_secs_f64().max(0.001);
            format!(
                "{}/{} at {}/s, {}",
                HumanBytes(read),
                HumanBytes(self.size),
                HumanBytes((read as f64 / seconds) as u64),
                counts(&self.watch)
            )
        }
    }
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    /// The template of every bar: labels padded to one width, so that the bars line up.
    template: String,
    /// Set once a signal arrived: nothing is drawn any more.
    hidden: bool,
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
                step: None,
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
        let mut state = self.inner.lock();
        hide_if_interrupted(&mut state);
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
        hide_if_interrupted(state);
        if let Some(bars) = &state.bars {
            // Also between layers: the last message set may not have been drawn yet (indicatif
            // draws at most 20 times a second), and the time goes on.
            update(&bars.overall, overall_status(state), bytes_read(state));
        }
        let Some(current) = &state.current else {
            return;
        };
        let read = current.watch.read.load(Ordering::Relaxed);
        match self.mode {
            Mode::Bars => {
                if let Some(bar) = &current.bar {
                    update(bar, current.status(read), read.min(current.size));
                }
            }
            Mode::Plain { after } => {
                let due = state.last_line.elapsed() >= PLAIN_EVERY
                    || (state.start.elapsed() >= after
                        && state.last_line.duration_since(state.start) < after);
                if due {
                    let text = if current.bootstrap || read >= current.size {
                        format!("{}: {}", current.label, current.status(read))
                    } else {
                        let seconds = current.started.elapsed().as_secs_f64();
                        format!(
                            "{}: {}/{} read ({}%), {}, {}/s",
                            current.label,
                            HumanBytes(read),
                            HumanBytes(current.size),
                            (read * 100).checked_div(current.size).unwrap_or(100),
                            counts(&current.watch),
                            HumanBytes((read as f64 / seconds.max(0.001)) as u64),
                        )
                    };
                    self.line(state, &text);
                    state.last_line = Instant::now();
                }
            }
        }
    }
}

/// Set a bar's message, then its position, each only if it changed: every change is a redraw,
/// and a run that waits (for its turn to commit) should leave the terminal alone. The message
/// goes first: indicatif may draw between the two, and a full bar must not show with the
/// message of one that is not.
fn update(bar: &ProgressBar, message: String, position: u64) {
    if *bar.message() != message {
        bar.set_message(message);
    }
    if bar.position() != position {
        bar.set_position(position);
    }
}

/// Once a signal arrived, draw the bars no more. Ctrl-C makes the terminal echo `^C` where the
/// cursor is, after the last bar, which can move the cursor a line down: a redraw, which starts
/// from the cursor, would then leave a copy of the first bar above the new one.
fn hide_if_interrupted(state: &mut State) {
    if let Some(bars) = &mut state.bars
        && !bars.hidden
        && crate::output::interrupt::requested()
    {
        bars.multi.set_draw_target(ProgressDrawTarget::hidden());
        bars.hidden = true;
    }
}

/// Stored bytes of layers read so far, in all.
fn bytes_read(state: &State) -> u64 {
    let current = state
        .current
        .as_ref()
        .map_or(0, |c| c.watch.read.load(Ordering::Relaxed).min(c.size));
    state.bytes_done + current
}

/// What the run is doing, for the overall bar: the layer it is at, or the bootstrap layer.
fn overall_status(state: &State) -> String {
    let bytes = format!(
        "{}/{}",
        HumanBytes(bytes_read(state)),
        HumanBytes(state.bytes)
    );
    match (&state.step, &state.current) {
        (Some(step), _) => format!("{step}, {bytes}"),
        (None, Some(_)) => format!(
            "layer {}/{}, {bytes}",
            (state.layers_done + 1).min(state.layers),
            state.layers
        ),
        (None, None) => format!(
            "{} of {} done, {bytes}",
            state.layers_done,
            count(state.layers as u64, "layer")
        ),
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

/// The label of a layer: its number and the first 12 hex digits of its digest, as `docker`
/// shortens ids; on plain lines with the digest's algorithm (`sha256:7fca807546e8`), on a bar
/// without, for room.
fn label(layer: &LayerStart<'_>, algorithm: bool) -> String {
    let colon = layer.digest.find(':').map_or(0, |i| i + 1);
    let short = layer
        .digest
        .get(if algorithm { 0 } else { colon }..colon + 12)
        .unwrap_or(layer.digest);
    format!("layer {}/{} {short}", layer.number, layer.count)
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
            // Bars and labels line up under the widest label; the message after them is cut to
            // what the terminal has left (`wide_msg`), so that no line wraps.
            let digits = layers.max(1).to_string().len();
            let width = label(
                &LayerStart {
                    number: 1,
                    count: 1,
                    digest: "sha256:000000000000",
                    size: 0,
                },
                false,
            )
            .len()
                + 2 * (digits - 1);
            let template = format!("{{prefix:{width}}} [{{bar:12}}] {{percent:>3}}% {{wide_msg}}");
            let multi = MultiProgress::new();
            let overall = multi.add(ProgressBar::new(bytes));
            overall.set_style(style(&template));
            overall.set_prefix("total");
            state.bars = Some(Bars {
                multi,
                overall,
                template,
                hidden: false,
            });
            let status = overall_status(&state);
            if let Some(bars) = &state.bars {
                bars.overall.set_message(status);
            }
        }
    }

    fn platform(&self, platform: &Platform, layers: usize, shared: usize, shared_bytes: u64) {
        let mut state = self.inner.lock();
        state.step = None;
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

    fn cache_hits(&self, layers: usize, bytes: u64) {
        if layers == 0 {
            return;
        }
        let mut state = self.inner.lock();
        state.layers_done += layers;
        state.bytes_done += bytes;
        let text = format!("{} taken from the cache", count(layers as u64, "layer"));
        match &state.bars {
            Some(bars) => bars.multi.suspend(|| crate::common::error::say(&text)),
            None => self.inner.line(&state, &text),
        }
    }

    fn layer_start(&self, layer: &LayerStart<'_>, watch: LayerWatch) {
        let mut state = self.inner.lock();
        let label = label(layer, true);
        let bar = state.bars.as_ref().map(|bars| {
            let bar = bars
                .multi
                .insert_before(&bars.overall, ProgressBar::new(layer.size));
            bar.set_style(style(&bars.template));
            bar.set_prefix(self::label(layer, false));
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
            bootstrap: false,
            bar,
        });
        if let Some(current) = &state.current
            && let Some(bar) = &current.bar
        {
            bar.set_message(current.status(0));
        }
        if let Some(bars) = &state.bars {
            bars.overall.set_message(overall_status(&state));
        }
    }

    fn layer_bootstrap(&self) {
        let mut state = self.inner.lock();
        if let Some(current) = &mut state.current {
            current.bootstrap = true;
            if let Some(bar) = &current.bar {
                bar.set_message(current.status(current.size));
                bar.set_position(current.size);
            }
        }
    }

    fn bootstrap(&self, platform: &Platform) {
        let mut state = self.inner.lock();
        state.step = Some(format!("{platform}: writing the bootstrap layer"));
        match &state.bars {
            Some(bars) => {
                bars.overall.set_position(state.bytes_done);
                bars.overall.set_message(overall_status(&state));
            }
            None => self
                .inner
                .line(&state, &format!("{platform}: writing the bootstrap layer")),
        }
        state.last_line = Instant::now();
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
            bar.finish_with_message(format!("done in {:.1}s, {done}", report.timing.seconds));
        }
        if let Some(bars) = &state.bars {
            bars.overall.set_position(state.bytes_done);
            bars.overall.set_message(overall_status(&state));
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

    fn commit(&self) {
        let mut state = self.inner.lock();
        state.step = Some("putting the output in place".to_string());
        if let Some(bars) = &state.bars {
            bars.overall.set_message(overall_status(&state));
        }
    }

    fn end(&self) {
        let mut state = self.inner.lock();
        state.step = None;
        if let Some(bars) = &state.bars {
            bars.overall.finish_with_message(format!(
                "done: {} in {:.1}s",
                count(state.layers as u64, "layer"),
                state.start.elapsed().as_secs_f64()
            ));
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
