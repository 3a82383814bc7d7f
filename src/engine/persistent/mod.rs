//! Long-lived worker processes speaking a line protocol, as an executor of the engine: the
//! GIL escape hatch.
//!
//! Each worker is started once and kept: muster writes one task per record (a line, or a
//! NUL-terminated record) to its stdin and reads exactly one result record per task from its
//! stdout, in order. Several tasks are kept in flight per worker (`window`), so the cost of a
//! cross-CPU wake-up is paid per batch, not per task. stderr is passed through, line by line.
//! A run configures them with [`Workers`] on its [`RunConfig`](crate::engine::RunConfig);
//! retries, halts, drains, the joblog and the output are the engine's.
//!
//! What only persistent workers have stays here:
//!
//! - **Crash**: a worker that exits (or closes stdout) while holding tasks is replaced. With one
//!   task in flight, that task's attempt failed (the engine retries it, alone). With several,
//!   none is reported yet: the replacement runs the held tasks one at a time (probing), so only
//!   the task that kills a worker on its own burns its retries.
//! - **Timeout**: replies come in order, so the oldest task in flight is the one being worked
//!   on (since it was sent, or since the previous reply). When it runs past `timeout` the
//!   worker is stopped (TERM, grace, KILL) and replaced; that task timed out, the rest run
//!   again, unreported.
//! - **Protocol**: a reply with no task waiting for it (more than one reply per input) ends
//!   the worker; it is replaced and counted in the run's `protocol_breaks`.
//! - **Recycling**: `max_tasks_per_worker` replaces a worker between tasks (leaky workers).
//! - **Shutdown**: a drain stops feeding, waits for replies in flight, then closes stdin (EOF
//!   is the seed's `'quit'`), waits `grace`, TERM, `grace`, KILL; stop-now kills at once, and
//!   tasks in flight are reported not run.
//!
//! Members: `executor` (the engine's side: attempts in, endings out), `machine` (a worker
//! slot's life as a state machine, stepped by its loop), `worker` (one worker process: its
//! window, its replies, and what becomes of the tasks it held when lost), `outbox` (a worker's
//! stdin, written without blocking), `pipes` (a thread per CPU reading the workers' stdout and
//! stderr); in tests, `scripted` (workers played by threads, so these policies are tested
//! without spawning).

mod executor;
mod framing;
mod machine;
mod outbox;
mod pipes;
#[cfg(test)]
pub(crate) mod scripted;
mod worker;

pub(crate) use executor::run as run_executor;
pub use executor::Workers;
pub use framing::{Framing, MAX_FRAME};

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::capture::Shared;
use crate::process::watchdog::Watchdog;
use crate::task::{Failure, Seq};

/// How the slots run their workers (made from a run's configuration and its [`Workers`]).
#[derive(Clone, Debug)]
pub(crate) struct PersistentConfig {
    /// The worker program.
    pub(crate) program: PathBuf,
    /// Its arguments (after `argv[0]`).
    pub(crate) args: Vec<OsString>,
    /// Most tasks in flight per worker (at least 1). Fewer are kept when tasks are slow:
    /// about 2 ms of work at the worker's measured pace, so slow tasks do not queue up
    /// behind one worker while another is idle.
    pub(crate) window: usize,
    /// How records are cut on stdin and stdout.
    pub(crate) framing: Framing,
    /// Replace a worker after this many tasks.
    pub(crate) max_tasks_per_worker: Option<u64>,
    /// Environment variables set for the workers.
    pub(crate) env: Vec<(OsString, OsString)>,
    /// Time a worker gets to exit after its stdin closes, and again after SIGTERM.
    pub(crate) grace: Duration,
    /// Longest a task may take, from its send or the previous reply; a worker whose oldest
    /// task runs past it is stopped and replaced.
    pub(crate) timeout: Option<Duration>,
    /// Tells a watchdog about every worker's process group, so `kill -9` of muster leaves
    /// none behind (see [`crate::process::watchdog`]).
    pub(crate) watchdog: Option<Arc<Watchdog>>,
    /// Workers played by threads following each record's script, instead of the program.
    #[cfg(test)]
    pub(crate) scripted: Option<Arc<scripted::Script>>,
}

/// What became of one task's attempt, as a slot reports it.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The worker's result record, as the task's output (a line with its separator).
    Done(Shared),
    /// Its worker died on it (how it ended), or no worker could be started (why).
    Failed(Failure),
    /// It ran past the timeout; its worker was stopped.
    TimedOut,
    /// Never answered because of a shutdown, or taken back.
    NotRun,
}

/// The facts of an attempt, as a slot reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// How long the worker spent on it: from when it was sent or the previous reply came,
    /// whichever is later, to its reply. Zero when it never ran or killed its worker.
    pub(crate) runtime: Duration,
    /// The worker slot it ran in, from 1 (0: never reached a worker).
    pub(crate) slot: usize,
    /// How its worker ended, when the attempt ended with the worker stopped for it (a
    /// timeout: TERM, then KILL after the grace).
    pub(crate) worker_status: Option<std::process::ExitStatus>,
}

impl Attempt {
    pub(crate) fn never() -> Attempt {
        Attempt { runtime: Duration::ZERO, slot: 0, worker_status: None }
    }
}

/// A task on its way to a worker.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    /// The engine's position for the attempt.
    pub(crate) seq: Seq,
    pub(crate) input: Vec<u8>,
    /// A retry of a task that failed its worker: it runs alone, outside any window, so a
    /// second failure is its own (as a crash's probing runs suspects).
    pub(crate) alone: bool,
}

/// What the worker slots report to their executor.
pub(crate) enum Event {
    /// A task's reply, or why it has none, and the attempt's facts; the job comes back with
    /// its input (the engine lent it).
    Reply(Job, Reply, Attempt),
    /// Replies that arrived together.
    Replies(Vec<(Job, Reply, Attempt)>),
    Stderr(usize, Vec<u8>),
    /// What muster says of a worker (lost, silent), for its stderr.
    Notice(String),
    WorkerStarted,
    Crash,
    /// A worker sent a reply with no task waiting for it.
    ProtocolBreak,
}

/// Tells whether a task (by its number) is to be stopped.
pub(crate) type Revoked<'r> = Arc<dyn Fn(Seq) -> bool + Send + Sync + 'r>;

#[cfg(test)]
mod tests;
