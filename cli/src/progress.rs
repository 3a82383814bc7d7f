//! The progress bar on stderr: done/failed/running, rate and ETA, drawn by indicatif. It
//! counts events and never reads input ahead, so it works on endless streams (no ETA then).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use muster::farm::Observer;
use muster::Outcome;

/// A progress bar fed by the farm.
pub struct Progress {
    bar: ProgressBar,
    running: AtomicU64,
    failed: AtomicU64,
}

impl Progress {
    /// A bar on stderr; `total` gives a bar with an ETA, `None` a counter.
    pub fn new(total: Option<u64>) -> Progress {
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = match total {
            Some(_) => "{elapsed_precise} [{wide_bar}] {pos}/{len} done {msg} {per_sec} ETA {eta}",
            None => "{elapsed_precise} {spinner} {pos} done {msg} {per_sec}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar, running: AtomicU64::new(0), failed: AtomicU64::new(0) }
    }

    fn refresh(&self) {
        let running = self.running.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        self.bar.set_message(format!("{failed} failed, {running} running"));
    }

    /// A task settled without being seen starting (persistent workers, skipped inputs).
    pub fn settled(&self, ok: bool) {
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.refresh();
        }
        self.bar.inc(1);
    }

    /// Runs `write` with the bar hidden, so what it prints and the bar never mix.
    pub fn suspend<R>(&self, write: impl FnOnce() -> R) -> R {
        self.bar.suspend(write)
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// A writer that hides the bar while it writes, so output and bar never mix.
    pub fn writer<W: Write>(&self, inner: W) -> SuspendingWriter<W> {
        SuspendingWriter { inner, bar: self.bar.clone() }
    }
}

impl Observer for Progress {
    fn task_started(&self) {
        self.running.fetch_add(1, Ordering::Relaxed);
        self.refresh();
    }

    fn task_finished(&self, outcome: &Outcome) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        if !outcome.is_done() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.refresh();
        self.bar.inc(1);
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
