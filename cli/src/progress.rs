//! Progress on stderr: done/failed/running, rate and ETA. On a terminal indicatif draws a
//! bar; elsewhere (a log file, CI) `--progress` prints a status line every few seconds. It
//! counts events and never reads input ahead, so it works on endless streams (no ETA then).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use muster::engine::Observer;
use muster::Outcome;

/// How often the status line is printed when stderr is not a terminal.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// How often the bar redraws on its own (its clock), on a terminal.
const TICK: Duration = Duration::from_millis(500);

/// The bar's look: with the ETA once `with_eta` (a task finished) and the total is known.
fn set_template(bar: &ProgressBar, total: Option<u64>, with_eta: bool) {
    let template = match (total, with_eta) {
        (Some(_), true) => "{elapsed_precise} [{wide_bar}] {pos}/{len} done {msg} ETA {eta}",
        (Some(_), false) => "{elapsed_precise} [{wide_bar}] {pos}/{len} done {msg}",
        (None, _) => "{elapsed_precise} {spinner} {pos} done {msg}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}

/// Counts shared with the status-line thread.
#[derive(Default)]
struct Counts {
    done: AtomicU64,
    failed: AtomicU64,
    running: AtomicU64,
    /// The tasks are a submission's: "running" is on the queue, of which workers hold `held`.
    on_queue: AtomicBool,
    held: AtomicU64,
    over: AtomicBool,
    /// A task has finished: the ETA has something to go on.
    eta_shown: AtomicBool,
}

/// Progress fed by the engine's settle stage (spawned or persistent tasks).
pub struct Progress {
    bar: ProgressBar,
    counts: Arc<Counts>,
    total: Option<u64>,
    started: Instant,
    /// The status-line thread, off a terminal.
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Progress on stderr: a bar on a terminal (with an ETA when `total` is known), else a
    /// status line every [`STATUS_EVERY`].
    pub fn new(total: Option<u64>, terminal: bool) -> Progress {
        let target = if terminal { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(total, target);
        // No ETA before a task has finished: there is nothing to base it on yet.
        set_template(&bar, total, false);
        if terminal {
            // The clock moves while tasks run, not only when one ends.
            bar.enable_steady_tick(TICK);
        }
        let counts = Arc::new(Counts::default());
        let started = Instant::now();
        let ticker = (!terminal).then(|| {
            let counts = Arc::clone(&counts);
            std::thread::Builder::new()
                .name("muster-progress".into())
                .spawn(move || loop {
                    let wake = Instant::now() + STATUS_EVERY;
                    while Instant::now() < wake {
                        if counts.over.load(Ordering::Acquire) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    crate::say(format_args!("muster: {}", status(&counts, total, started)));
                })
                .ok()
        });
        Progress { bar, counts, total, started, ticker: ticker.flatten() }
    }

    /// The tasks go to a queue: the bar tells those waiting on it from those workers hold.
    pub fn for_queue(self) -> Progress {
        self.counts.on_queue.store(true, Ordering::Relaxed);
        self.refresh();
        self
    }

    fn refresh(&self) {
        self.bar.set_message(message(&self.counts, self.started));
    }

    /// Removes the bar from the screen; off a terminal, prints the last status line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        if self.ticker.is_some() && !self.counts.over.swap(true, Ordering::AcqRel) {
            crate::say(format_args!("muster: {}", status(&self.counts, self.total, self.started)));
        }
    }

    /// The bar, for a writer of muster's own lines to hide it while writing.
    pub fn bar(&self) -> indicatif::ProgressBar {
        self.bar.clone()
    }

    /// A writer that hides the bar while it writes, so output and bar never mix.
    pub fn writer<W: Write>(&self, inner: W) -> SuspendingWriter<W> {
        SuspendingWriter { inner, bar: self.bar.clone() }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.counts.over.store(true, Ordering::Release);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// `3 failed, 2 running, 41.5/s` — the rate over the whole run, one decimal; a submission's
/// `3 failed, 5 queued, 2 running, 41.5/s`.
fn message(counts: &Counts, started: Instant) -> String {
    let done = counts.done.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    let running = counts.running.load(Ordering::Relaxed);
    let rate = (done + failed) as f64 / started.elapsed().as_secs_f64().max(1e-3);
    if counts.on_queue.load(Ordering::Relaxed) {
        let held = counts.held.load(Ordering::Relaxed).min(running);
        let queued = running - held;
        return format!("{failed} failed, {queued} queued, {held} running, {rate:.1}/s");
    }
    format!("{failed} failed, {running} running, {rate:.1}/s")
}

/// The status line: `120/1000 done, 3 failed, 2 running, 41.5/s, ETA 21s`.
fn status(counts: &Counts, total: Option<u64>, started: Instant) -> String {
    let finished = counts.done.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed);
    let message = message(counts, started);
    match total {
        Some(total) => {
            let rate = finished as f64 / started.elapsed().as_secs_f64().max(1e-3);
            let eta = if rate > 0.0 {
                format!(", ETA {:.0}s", total.saturating_sub(finished) as f64 / rate)
            } else {
                String::new()
            };
            format!("{finished}/{total} done, {message}{eta}")
        }
        None => format!("{finished} done, {message}"),
    }
}

impl Observer for Progress {
    fn attempt_started(&self) {
        self.counts.running.fetch_add(1, Ordering::Relaxed);
        self.refresh();
    }

    fn attempt_ended(&self) {
        let _ = self.counts.running.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.refresh();
    }

    fn task_finished(&self, outcome: &Outcome) {
        let counter = if outcome.is_done() { &self.counts.done } else { &self.counts.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.refresh();
        self.bar.inc(1);
        if !self.counts.eta_shown.swap(true, Ordering::Relaxed) {
            set_template(&self.bar, self.total, true);
        }
    }

    fn queue_held(&self, held: u64) {
        self.counts.held.store(held, Ordering::Relaxed);
        self.refresh();
    }

    fn task_skipped(&self) {
        // Done by an earlier run: it counts toward the total, so the bar can reach it.
        self.task_finished(&Outcome::Done);
    }
}

/// Writes through `inner` with the progress bar suspended.
pub struct SuspendingWriter<W> {
    inner: W,
    bar: ProgressBar,
}

impl<W: Write> Write for SuspendingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let inner = &mut self.inner;
        self.bar.suspend(|| inner.write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let inner = &mut self.inner;
        self.bar.suspend(|| inner.write_all(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        let inner = &mut self.inner;
        self.bar.suspend(|| inner.flush())
    }
}
