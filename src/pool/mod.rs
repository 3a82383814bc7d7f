//! Thread pools: N worker threads running submitted closures.
//!
//! - [`Pool`]: a long-lived pool of `'static` tasks. [`Pool::submit`] returns a
//!   [`TaskHandle`] (join, try_join, cancel-if-not-started); [`Pool::map`] and
//!   [`Pool::map_unordered`] stream any iterator through the pool with a bounded window of
//!   work in flight, so memory does not grow with the input.
//! - [`scope`]: a pool whose tasks may borrow from the caller.
//!
//! A panicking task becomes a failed task ([`TaskError::Panicked`]); the pool keeps going.
//! Shutting down comes in the two levels of DESIGN.md: [`Pool::shutdown`] drains (every queued
//! task runs), [`Pool::shutdown_now`] lets running tasks finish but resolves the queued ones as
//! not run and returns their ids, and [`Pool::shutdown_within`] drains for a grace period and
//! then stops now. Dropping a pool drains it.
//!
//! Members: `handle` (task cells and handles), `job` (queue items and the thread loop),
//! `map` (streaming maps), `scope` (borrowing pool).

mod handle;
mod job;
mod map;
mod scope;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;

pub use handle::{TaskError, TaskHandle, TaskId};
pub use map::{Map, MapUnordered};
pub use scope::{scope, Scope};

use job::{resolve_threads, work, Fate, Job};

/// Settings for a [`Pool`]; start from [`Pool::builder`].
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    /// Number of threads; 0 means one per CPU.
    threads: usize,
    /// Prefix of the threads' names (`NAME-0`, `NAME-1`, ...).
    name: String,
    /// Stack size of each thread in bytes; `None` keeps the platform default.
    stack_size: Option<usize>,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder { threads: 0, name: "muster-pool".into(), stack_size: None }
    }
}

impl PoolBuilder {
    /// Number of threads; 0 (the default) means one per CPU.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Prefix for the threads' names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Stack size for each thread, in bytes.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts the threads. Fails only if the OS refuses to start one; the threads already
    /// started are stopped again.
    pub fn build(self) -> std::io::Result<Pool> {
        let size = resolve_threads(self.threads);
        let (injector, jobs) = cb::unbounded();
        let (exit_notice, exited) = cb::bounded::<()>(0);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(size);
        for index in 0..size {
            let mut builder = std::thread::Builder::new().name(format!("{}-{index}", self.name));
            if let Some(bytes) = self.stack_size {
                builder = builder.stack_size(bytes);
            }
            let jobs = jobs.clone();
            let stop = stop.clone();
            let exit_notice = exit_notice.clone();
            let spawned = builder.spawn(move || {
                let abandoned = work(jobs, &stop);
                drop(exit_notice);
                abandoned
            });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    drop(injector);
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(err);
                }
            }
        }
        Ok(Pool { injector: Some(injector), jobs, threads, stop, exited, next_id: AtomicU64::new(0), size })
    }
}

/// What a pool left undone when it shut down.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Ids of the tasks that never ran, in no particular order. Their handles give
    /// [`TaskError::NotRun`].
    pub not_run: Vec<TaskId>,
}

/// A pool of worker threads for `'static` tasks. See the [module docs](self).
pub struct Pool {
    /// Closed (set to `None`) when the pool shuts down; the threads then drain and exit.
    injector: Option<cb::Sender<Job<'static>>>,
    /// A receiver kept by the pool itself, so a stop-now can empty the queue without waiting
    /// for busy threads.
    jobs: cb::Receiver<Job<'static>>,
    threads: Vec<JoinHandle<Vec<TaskId>>>,
    /// Set by a stop-now: threads abandon every job they take from then on.
    stop: Arc<AtomicBool>,
    /// Disconnects once every thread has exited (each holds a sender it drops on exit).
    exited: cb::Receiver<()>,
    next_id: AtomicU64,
    size: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("threads", &self.size).field("queued", &self.jobs.len()).finish()
    }
}

impl Pool {
    /// A pool of `threads` threads (0: one per CPU) with default settings.
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        PoolBuilder::default().threads(threads).build()
    }

    /// Settings for a pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.size
    }

    /// Number of tasks waiting to start.
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }

    fn next_id(&self) -> TaskId {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn push(&self, job: Job<'static>) {
        let refused = match &self.injector {
            Some(injector) => injector.send(job).err().map(|cb::SendError(job)| job),
            None => Some(job),
        };
        // Unreachable while the pool is alive (it holds a receiver), but never drop a job
        // unresolved: a refused job resolves as not run.
        if let Some(job) = refused {
            job.abandon();
        }
    }

    /// Queues `f` to run on a pool thread and returns a handle on its result. Never blocks.
    pub fn submit<F, T>(&self, f: F) -> TaskHandle<'static, T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (runnable, handle) = handle::cell(self.next_id(), f);
        self.push(Job::Cell(runnable));
        handle
    }

    /// Queues a closure that is told whether it runs or is abandoned.
    pub(crate) fn push_once(&self, f: Box<dyn FnOnce(Fate) + Send + 'static>) {
        let id = self.next_id();
        self.push(Job::Once { id, f });
    }

    /// Streams `inputs` through `f` on the pool and yields the results in input order, keeping
    /// at most a window of tasks in flight (see [`Map::window`]).
    pub fn map<I, F, R>(&self, inputs: I, f: F) -> Map<'_, I::IntoIter, F, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        Map::new(self, inputs.into_iter(), f)
    }

    /// Like [`map`](Self::map), but yields `(seq, result)` as soon as each task finishes; `seq`
    /// is the input's position counted from 1.
    pub fn map_unordered<I, F, R>(&self, inputs: I, f: F) -> MapUnordered<'_, I::IntoIter, F, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        MapUnordered::new(self, inputs.into_iter(), f)
    }

    /// Drains: runs every queued task, then stops the threads. Nothing is left undone.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.close(None)
    }

    /// Drains for at most `grace`, then stops now: tasks still queued are resolved as not run
    /// and returned. Running tasks are always allowed to finish (threads cannot be killed).
    pub fn shutdown_within(mut self, grace: Duration) -> ShutdownReport {
        self.close(Some(grace))
    }

    /// Stops now: running tasks finish, queued tasks are resolved as not run and returned.
    pub fn shutdown_now(mut self) -> ShutdownReport {
        self.close(Some(Duration::ZERO))
    }

    fn close(&mut self, grace: Option<Duration>) -> ShutdownReport {
        self.injector.take();
        if let Some(grace) = grace {
            let deadline = Instant::now() + grace;
            // The exit channel disconnects when every thread has drained the queue and exited.
            let all_exited =
                matches!(self.exited.recv_deadline(deadline), Err(cb::RecvTimeoutError::Disconnected));
            if !all_exited {
                self.stop.store(true, Ordering::Relaxed);
            }
        }
        let mut not_run: Vec<TaskId> = Vec::new();
        if self.stop.load(Ordering::Relaxed) {
            not_run.extend(self.jobs.try_iter().filter_map(Job::abandon));
        }
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(abandoned) => not_run.extend(abandoned),
                // The thread loop catches task panics, so this is a bug in muster: fail loudly,
                // unless we are already unwinding.
                Err(payload) if !std::thread::panicking() => std::panic::resume_unwind(payload),
                Err(_) => {}
            }
        }
        ShutdownReport { not_run }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.close(None);
        }
    }
}

#[cfg(test)]
mod tests;
