//! The shared cell behind a submitted task, and the [`TaskHandle`] that joins it.
//!
//! A submitted closure lives in one `Arc`'d cell that both the pool's queue and the caller's
//! handle point at (one allocation per task). The cell moves through
//! `Pending → Running → Finished`, or `Pending → Finished(NotRun)` when the task is cancelled
//! or abandoned by `shutdown_now`; whoever moves it out of `Pending` first wins, so a task runs
//! at most once and its handle always resolves.
//!
//! The condition variable is notified only when a joiner has said it is waiting: notifying an
//! idle futex is still a system call, and most tasks finish before anybody joins them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::task::{panic_message, Failure, Outcome};

/// Identifies a task submitted to a pool: its submission number, counted from 1.
pub type TaskId = u64;

/// Why a task produced no value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task panicked; its message.
    #[error("task panicked: {0}")]
    Panicked(String),
    /// The task never ran: it was cancelled, or the pool stopped before reaching it.
    #[error("task was not run")]
    NotRun,
}

impl TaskError {
    /// The task's final [`Outcome`].
    pub fn outcome(&self) -> Outcome {
        match self {
            TaskError::Panicked(msg) => Outcome::Failed(Failure::Panic(msg.clone())),
            TaskError::NotRun => Outcome::NotRun,
        }
    }
}

enum State<F, T> {
    Pending(F),
    Running,
    Finished(Result<T, TaskError>),
    Taken,
}

struct Guarded<F, T> {
    state: State<F, T>,
    /// A joiner is blocked on the condition variable and must be notified.
    waiting: bool,
}

pub(crate) struct TaskCell<F, T> {
    id: TaskId,
    guarded: Mutex<Guarded<F, T>>,
    finished: Condvar,
}

impl<F, T> TaskCell<F, T> {
    pub(crate) fn new(id: TaskId, f: F) -> Self {
        TaskCell {
            id,
            guarded: Mutex::new(Guarded { state: State::Pending(f), waiting: false }),
            finished: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Guarded<F, T>> {
        // A task's panic is caught outside the lock, so poison can only come from a bug here;
        // the state itself stays consistent either way.
        self.guarded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, mut guarded: MutexGuard<'_, Guarded<F, T>>, result: Result<T, TaskError>) {
        guarded.state = State::Finished(result);
        if guarded.waiting {
            guarded.waiting = false;
            self.finished.notify_all();
        }
    }
}

/// What the pool's queue needs from a cell, whatever its closure and result types.
pub(crate) trait Runnable: Send + Sync {
    fn id(&self) -> TaskId;
    /// Runs the task if nobody cancelled it first.
    fn run(&self);
    /// Marks the task not run if it has not started; returns whether it had not.
    fn abandon(&self) -> bool;
}

impl<F, T> Runnable for TaskCell<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn id(&self) -> TaskId {
        self.id
    }

    fn run(&self) {
        let f = {
            let mut guarded = self.lock();
            match std::mem::replace(&mut guarded.state, State::Running) {
                State::Pending(f) => f,
                other => {
                    guarded.state = other;
                    return;
                }
            }
        };
        let result = catch_unwind(AssertUnwindSafe(f))
            .map_err(|payload| TaskError::Panicked(panic_message(payload.as_ref())));
        self.finish(self.lock(), result);
    }

    fn abandon(&self) -> bool {
        let guarded = self.lock();
        if matches!(guarded.state, State::Pending(_)) {
            self.finish(guarded, Err(TaskError::NotRun));
            true
        } else {
            false
        }
    }
}

/// What a [`TaskHandle`] needs from a cell, whatever its closure type.
pub(crate) trait Joinable<T>: Send + Sync {
    fn id(&self) -> TaskId;
    fn join(&self) -> Result<T, TaskError>;
    fn try_take(&self) -> Option<Result<T, TaskError>>;
    fn is_finished(&self) -> bool;
    fn cancel(&self) -> bool;
}

impl<F, T> Joinable<T> for TaskCell<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn id(&self) -> TaskId {
        self.id
    }

    fn join(&self) -> Result<T, TaskError> {
        let mut guarded = self.lock();
        loop {
            match std::mem::replace(&mut guarded.state, State::Taken) {
                State::Finished(result) => return result,
                State::Taken => return Err(TaskError::NotRun),
                pending_or_running => {
                    guarded.state = pending_or_running;
                    guarded.waiting = true;
                    guarded = self.finished.wait(guarded).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    fn try_take(&self) -> Option<Result<T, TaskError>> {
        let mut guarded = self.lock();
        match std::mem::replace(&mut guarded.state, State::Taken) {
            State::Finished(result) => Some(result),
            other => {
                guarded.state = other;
                None
            }
        }
    }

    fn is_finished(&self) -> bool {
        matches!(self.lock().state, State::Finished(_) | State::Taken)
    }

    fn cancel(&self) -> bool {
        Runnable::abandon(self)
    }
}

/// A handle on one submitted task: wait for its value, poll it, or cancel it before it starts.
///
/// Dropping the handle does not cancel the task; it still runs and its value is dropped.
pub struct TaskHandle<'a, T> {
    cell: Arc<dyn Joinable<T> + 'a>,
}

impl<'a, T> TaskHandle<'a, T> {
    pub(crate) fn new(cell: Arc<dyn Joinable<T> + 'a>) -> Self {
        TaskHandle { cell }
    }

    /// The task's submission number.
    pub fn id(&self) -> TaskId {
        self.cell.id()
    }

    /// Blocks until the task has finished and returns its value, or why there is none.
    pub fn join(self) -> Result<T, TaskError> {
        self.cell.join()
    }

    /// Returns the result if the task has finished, or the handle back if it has not.
    pub fn try_join(self) -> Result<Result<T, TaskError>, Self> {
        match self.cell.try_take() {
            Some(result) => Ok(result),
            None => Err(self),
        }
    }

    /// True once the task has finished (run, panicked, or been marked not run).
    pub fn is_finished(&self) -> bool {
        self.cell.is_finished()
    }

    /// Cancels the task if it has not started; returns whether it was cancelled. A cancelled
    /// task's `join` gives [`TaskError::NotRun`].
    pub fn cancel(&self) -> bool {
        self.cell.cancel()
    }
}

impl<T> std::fmt::Debug for TaskHandle<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle").field("id", &self.id()).field("finished", &self.is_finished()).finish()
    }
}

/// Builds a cell for `f` and returns the queue's view and the caller's handle of it.
pub(crate) fn cell<'a, F, T>(id: TaskId, f: F) -> (Arc<dyn Runnable + 'a>, TaskHandle<'a, T>)
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
{
    let cell = Arc::new(TaskCell::new(id, f));
    let joinable: Arc<dyn Joinable<T> + 'a> = cell.clone();
    (cell, TaskHandle::new(joinable))
}
