//! Streaming maps over a [`Pool`]: any iterator in, results out, bounded work in flight.
//!
//! Both adapters pull inputs lazily on the caller's thread and keep at most `window` tasks
//! submitted but not yet yielded, so an endless input runs in constant memory. [`Map`] yields
//! in input order (a slow task holds back the ones after it, up to the window); [`MapUnordered`]
//! yields each result as soon as it is ready, tagged with the input's sequence number.
//!
//! Dropping either adapter early cancels the work that has not started yet.

use std::collections::VecDeque;
use std::iter::Fuse;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel as cb;

use super::handle::{TaskError, TaskHandle};
use super::job::Fate;
use super::Pool;
use crate::task::{panic_message, Seq};

fn default_window(pool: &Pool) -> usize {
    // Enough queued work that a thread finishing a task always finds the next one waiting,
    // without waking the caller's thread per task.
    (pool.threads() * 64).max(256)
}

/// Results of [`Pool::map`], in input order.
pub struct Map<'p, I: Iterator, F, R> {
    pool: &'p Pool,
    inputs: Fuse<I>,
    f: Arc<F>,
    window: usize,
    pending: VecDeque<TaskHandle<'static, R>>,
}

impl<'p, I, F, R> Map<'p, I, F, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    pub(super) fn new(pool: &'p Pool, inputs: I, f: F) -> Self {
        Map {
            pool,
            inputs: inputs.fuse(),
            f: Arc::new(f),
            window: default_window(pool),
            pending: VecDeque::new(),
        }
    }

    /// Keeps at most `window` (at least 1) tasks in flight. The default is 64 per thread.
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    fn refill(&mut self) {
        while self.pending.len() < self.window {
            let Some(input) = self.inputs.next() else { break };
            let f = self.f.clone();
            self.pending.push_back(self.pool.submit(move || f(input)));
        }
    }
}

impl<I, F, R> Iterator for Map<'_, I, F, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.refill();
        let result = self.pending.pop_front()?.join();
        Some(result)
    }
}

impl<I: Iterator, F, R> Drop for Map<'_, I, F, R> {
    fn drop(&mut self) {
        for handle in &self.pending {
            handle.cancel();
        }
    }
}

/// Results of [`Pool::map_unordered`]: `(seq, result)` in completion order, `seq` counted
/// from 1 in input order.
pub struct MapUnordered<'p, I: Iterator, F, R> {
    pool: &'p Pool,
    inputs: Fuse<I>,
    f: Arc<F>,
    window: usize,
    in_flight: usize,
    submitted: Seq,
    results: cb::Receiver<(Seq, Result<R, TaskError>)>,
    results_tx: cb::Sender<(Seq, Result<R, TaskError>)>,
    /// Set when the adapter is dropped, so queued tasks skip their work.
    cancelled: Arc<AtomicBool>,
}

impl<'p, I, F, R> MapUnordered<'p, I, F, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    pub(super) fn new(pool: &'p Pool, inputs: I, f: F) -> Self {
        let (results_tx, results) = cb::unbounded();
        MapUnordered {
            pool,
            inputs: inputs.fuse(),
            f: Arc::new(f),
            window: default_window(pool),
            in_flight: 0,
            submitted: 0,
            results,
            results_tx,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Keeps at most `window` (at least 1) tasks in flight. The default is 64 per thread.
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    fn refill(&mut self) {
        while self.in_flight < self.window {
            let Some(input) = self.inputs.next() else { break };
            self.submitted += 1;
            let seq = self.submitted;
            let f = self.f.clone();
            let results = self.results_tx.clone();
            let cancelled = self.cancelled.clone();
            self.pool.push_once(Box::new(move |fate| {
                let result = if fate == Fate::Abandon || cancelled.load(Ordering::Relaxed) {
                    Err(TaskError::NotRun)
                } else {
                    catch_unwind(AssertUnwindSafe(|| f(input)))
                        .map_err(|payload| TaskError::Panicked(panic_message(payload.as_ref())))
                };
                // The receiver is gone only if the adapter was dropped; nobody wants it then.
                let _ = results.send((seq, result));
            }));
            self.in_flight += 1;
        }
    }
}

impl<I, F, R> Iterator for MapUnordered<'_, I, F, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    type Item = (Seq, Result<R, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        self.refill();
        if self.in_flight == 0 {
            return None;
        }
        // Every submitted job sends exactly once (run or abandoned), and we hold a sender, so
        // this only fails if a job was lost, which the pool never does.
        let item = self.results.recv().ok()?;
        self.in_flight -= 1;
        Some(item)
    }
}

impl<I: Iterator, F, R> Drop for MapUnordered<'_, I, F, R> {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}
