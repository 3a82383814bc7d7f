//! A pool whose tasks may borrow from the caller's stack, built on `std::thread::scope`.
//!
//! [`scope`] starts its threads, lets the body submit tasks that borrow anything that outlives
//! the call, and returns only after every task has run and every thread has been joined — the
//! seed's "End is printed only after both threads finished", enforced by the borrow checker.
//! Threads are started per call (tens of microseconds), so use [`Pool`](super::Pool) for many
//! small batches of `'static` work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel as cb;

use super::handle::{cell, TaskHandle};
use super::job::{resolve_threads, work, Job};

/// Lets a [`scope`] body submit borrowing tasks.
pub struct Scope<'env> {
    injector: cb::Sender<Job<'env>>,
    next_id: AtomicU64,
}

impl<'env> Scope<'env> {
    /// Queues `f` to run on one of the scope's threads; the handle joins it.
    pub fn submit<F, T>(&self, f: F) -> TaskHandle<'env, T>
    where
        F: FnOnce() -> T + Send + 'env,
        T: Send + 'env,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (runnable, handle) = cell(id, f);
        // The scope's threads hold the receiver until the scope ends, so this cannot fail
        // while `self` is alive; if it somehow did, the handle resolves as not run.
        if let Err(cb::SendError(job)) = self.injector.send(Job::Cell(runnable)) {
            job.abandon();
        }
        handle
    }
}

/// Runs `body` with a pool of `threads` threads (0: one per CPU) whose tasks may borrow from
/// the caller. Returns `body`'s value after every submitted task has finished.
///
/// A panicking task becomes that task's [`TaskError::Panicked`](super::TaskError); a panic in
/// `body` itself propagates after the tasks already submitted have finished.
pub fn scope<'env, R>(threads: usize, body: impl FnOnce(&Scope<'env>) -> R) -> R {
    let stop = AtomicBool::new(false);
    let threads = resolve_threads(threads);
    std::thread::scope(|s| {
        let (injector, jobs) = cb::unbounded::<Job<'env>>();
        for _ in 0..threads {
            let jobs = jobs.clone();
            let stop = &stop;
            s.spawn(move || work(jobs, stop));
        }
        drop(jobs);
        let scope = Scope { injector, next_id: AtomicU64::new(0) };
        body(&scope)
        // `scope` drops here: its injector closes, the threads drain the queue and exit, and
        // `std::thread::scope` joins them before returning.
    })
}
