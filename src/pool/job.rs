//! What travels through a pool's queue, and the loop each pool thread runs over it.
//!
//! A job is either a task cell shared with a [`TaskHandle`](super::TaskHandle), or a boxed
//! closure that reports its own result (used by `map_unordered`). Either way the pool decides
//! its fate: run it, or — once a stop-now was asked — abandon it, which resolves it as not run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel as cb;

use super::handle::{Runnable, TaskId};

/// What the pool decided for a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Run,
    Abandon,
}

pub(crate) enum Job<'a> {
    Cell(Arc<dyn Runnable + 'a>),
    Once { id: TaskId, f: Box<dyn FnOnce(Fate) + Send + 'a> },
}

impl Job<'_> {
    fn run(self) {
        match self {
            Job::Cell(cell) => cell.run(),
            Job::Once { f, .. } => f(Fate::Run),
        }
    }

    /// Resolves the job as not run; returns its id if it had not already started or been
    /// cancelled.
    pub(crate) fn abandon(self) -> Option<TaskId> {
        match self {
            Job::Cell(cell) => cell.abandon().then(|| cell.id()),
            Job::Once { id, f } => {
                f(Fate::Abandon);
                Some(id)
            }
        }
    }
}

/// The body of every pool thread: run jobs until the queue closes; once `stop` is set, abandon
/// the rest instead. Returns the ids of the jobs it abandoned.
pub(crate) fn work(jobs: cb::Receiver<Job<'_>>, stop: &AtomicBool) -> Vec<TaskId> {
    let mut abandoned = Vec::new();
    for job in jobs.iter() {
        if stop.load(Ordering::Relaxed) {
            abandoned.extend(job.abandon());
        } else {
            job.run();
        }
    }
    abandoned
}

/// Thread count for a request of `0` (one per CPU) or `n`.
pub(crate) fn resolve_threads(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}
