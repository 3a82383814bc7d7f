//! Long-lived worker processes speaking a line protocol: the GIL escape hatch.
//!
//! Each worker is started once and kept: muster writes one task per record (a line, or a
//! NUL-terminated record) to its stdin and reads exactly one result record per task from its
//! stdout, in order. Several tasks are kept in flight per worker (`window`), so the cost of a
//! cross-CPU wake-up is paid per batch, not per task. stderr is passed through, line by line.
//!
//! - **Crash**: a worker that exits (or closes stdout) while holding tasks is replaced. With one
//!   task in flight, that task is charged an attempt. With several, none is charged yet: the
//!   replacement runs the held tasks one at a time (probing), so only the task that kills a
//!   worker on its own burns its retries.
//! - **Timeout**: replies come in order, so the oldest task in flight is the one being worked
//!   on (since it was sent, or since the previous reply). When it runs past `timeout` the
//!   worker is killed and replaced; that task is charged, the rest run again uncharged.
//! - **Protocol**: a reply with no task waiting for it (more than one reply per input) ends
//!   the worker; it is replaced and counted in [`Summary::protocol_breaks`].
//! - **Recycling**: `max_tasks_per_worker` replaces a worker between tasks (leaky workers).
//! - **Shutdown**: drain stops feeding, waits for replies in flight, then closes stdin (EOF is
//!   the seed's `'quit'`), waits `grace`, TERM, `grace`, KILL. A drain that has not ended
//!   `grace` after it began (a worker that never answers) becomes stop-now. Stop-now kills at
//!   once; tasks in flight are reported not run.
//!
//! Members: `machine` (a slot's life as a state machine; a loop per CPU feeds its share of
//! the workers), `worker` (one worker process: its window, its replies, and what becomes of
//! the tasks it held when lost), `pipes` (a thread per CPU reading the workers' stdout and
//! stderr), `settled` (tasks, local or from a source with receipts, settled by the engine's
//! output stage, as `muster run` settles its).

mod executor;
mod machine;
mod pipes;
mod worker;

pub(crate) use executor::run as run_executor;
pub use executor::Workers;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel as cb;

use crate::engine::poll::Waker;
use crate::halt::{Halt, HaltGate};
use crate::process::watchdog::Watchdog;
use crate::shutdown::Shutdown;
use crate::task::{Failure, Seq};

/// How to run persistent workers.
#[derive(Clone, Debug)]
pub struct PersistentConfig {
    /// The worker program.
    pub program: PathBuf,
    /// Its arguments (after `argv[0]`).
    pub args: Vec<OsString>,
    /// Number of worker processes.
    pub workers: usize,
    /// Most tasks in flight per worker (at least 1). Fewer are kept when tasks are slow:
    /// about 2 ms of work at the worker's measured pace, so slow tasks do not queue up
    /// behind one worker while another is idle.
    pub window: usize,
    /// Record separator on stdin and stdout: `b'\n'` or NUL.
    pub separator: u8,
    /// Extra attempts for a task that kills its worker.
    pub retries: u32,
    /// Replace a worker after this many tasks.
    pub max_tasks_per_worker: Option<u64>,
    /// Time a worker gets to exit after its stdin closes, and again after SIGTERM.
    pub grace: Duration,
    /// Stop early on failures (tasks that failed or timed out for good): `soon` starts no
    /// more tasks, `now` stops the workers at once.
    pub halt: Option<Halt>,
    /// The number of inputs, when known (for a percentage `halt`).
    pub known_total: Option<u64>,
    /// Longest a task may take; a worker whose oldest task runs past it is killed and
    /// replaced, that task is charged an attempt, and the others it held run again uncharged.
    pub timeout: Option<Duration>,
    /// Tells a watchdog about every worker's process group, so `kill -9` of muster leaves
    /// none behind (see [`crate::process::watchdog`]).
    pub watchdog: Option<Arc<Watchdog>>,
    /// How long a drain waits for the replies in flight before it becomes a stop-now;
    /// `None`: `grace`. A queue's worker waits as long as its tasks take.
    pub drain_patience: Option<Duration>,
}

impl PersistentConfig {
    /// A configuration for `program args...` with up to 256 tasks in flight per worker.
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>, workers: usize) -> Self {
        PersistentConfig {
            program: program.into(),
            args,
            workers: workers.max(1),
            window: 256,
            separator: b'\n',
            retries: 0,
            max_tasks_per_worker: None,
            grace: Duration::from_secs(10),
            timeout: None,
            halt: None,
            known_total: None,
            watchdog: None,
            drain_patience: None,
        }
    }
}

/// What became of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The worker's result record (without the separator).
    Done(Vec<u8>),
    /// The task killed its worker on every attempt; how the last worker ended.
    Failed(Failure),
    /// The task ran past the timeout on every attempt.
    TimedOut,
    /// Never answered because of a shutdown.
    NotRun,
}

/// The attempt that settled a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Which attempt it was, from 1 (0: never attempted).
    pub number: u32,
    /// How long the worker spent on it: from when it was sent or the previous reply came,
    /// whichever is later, to its reply. Zero when it never ran or killed its worker.
    pub runtime: Duration,
    /// The worker slot it ran in, from 1 (0: never attempted).
    pub slot: usize,
    /// How its worker ended, when the attempt ended with the worker stopped for it (a
    /// timeout: TERM, then KILL after the grace).
    pub worker_status: Option<std::process::ExitStatus>,
}

impl Attempt {
    pub(crate) fn never() -> Attempt {
        Attempt { number: 0, runtime: Duration::ZERO, slot: 0, worker_status: None }
    }
}

/// Counts for a run. `read == done + failed + timed_out + not_run`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tasks read.
    pub read: u64,
    /// Tasks answered.
    pub done: u64,
    /// Tasks that failed for good (killed their worker on every attempt).
    pub failed: u64,
    /// Tasks that ran past the timeout on every attempt.
    pub timed_out: u64,
    /// Tasks never answered (shutdown).
    pub not_run: u64,
    /// Workers started, replacements and recycling included.
    pub workers_started: u64,
    /// Workers that died holding tasks.
    pub crashes: u64,
    /// Workers replaced because they sent a reply with no task waiting for it.
    pub protocol_breaks: u64,
    /// `halt` was reached.
    pub halted: bool,
}

impl Summary {
    fn count(&mut self, reply: &Reply) {
        match reply {
            Reply::Done(_) => self.done += 1,
            Reply::Failed(_) => self.failed += 1,
            Reply::TimedOut => self.timed_out += 1,
            Reply::NotRun => self.not_run += 1,
        }
    }
}

/// A task on its way to a worker.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub(crate) seq: Seq,
    pub(crate) input: Vec<u8>,
    /// Attempts charged so far.
    pub(crate) charged: u32,
    /// A retry of a task that failed its worker: it runs alone, outside any window, so a
    /// second failure is its own (as a crash's probing runs suspects).
    pub(crate) alone: bool,
}

/// What the worker slots report to the caller's thread.
pub(crate) enum Event {
    /// A task's final reply and the attempt that settled it.
    Reply(Seq, Reply, Attempt),
    /// Replies that arrived together.
    Replies(Vec<(Seq, Reply, Attempt)>),
    /// A charged attempt that failed (how, as a reply would say), and the task runs again.
    Retrying(Seq, Reply, Attempt),
    Stderr(usize, Vec<u8>),
    WorkerStarted,
    Crash,
    /// A worker sent a reply with no task waiting for it.
    ProtocolBreak,
}

/// Streams `inputs` through persistent workers, calling `on_reply` (on this thread) for every
/// task, with the [`Attempt`] that settled it, and `on_stderr` for every stderr line of a
/// worker (with its slot). Returns when every input read has a reply and every worker is
/// reaped. A worker that cannot be started fails the tasks its slot takes, with the reason.
pub fn run<I>(
    config: &PersistentConfig,
    inputs: I,
    shutdown: &Shutdown,
    on_reply: impl FnMut(Seq, Reply, Attempt),
    on_stderr: impl FnMut(usize, &[u8]),
) -> Summary
where
    I: Iterator<Item = Vec<u8>> + Send,
{
    run_with_idle(config, inputs, shutdown, on_reply, on_stderr, || {})
}

/// [`run`], also calling `on_idle` whenever every reply so far has been handed over and none
/// is waiting: the moment to flush buffered output, so a slow stream of inputs still shows its
/// results as they come.
pub fn run_with_idle<I>(
    config: &PersistentConfig,
    inputs: I,
    shutdown: &Shutdown,
    on_reply: impl FnMut(Seq, Reply, Attempt),
    on_stderr: impl FnMut(usize, &[u8]),
    on_idle: impl FnMut(),
) -> Summary
where
    I: Iterator<Item = Vec<u8>> + Send,
{
    run_engine(config, inputs, shutdown, on_reply, |_, _, _| {}, on_stderr, on_idle, None)
}

/// Tells whether a task (by its number) was taken back by its source.
pub(crate) type Revoked<'r> = Arc<dyn Fn(Seq) -> bool + Send + Sync + 'r>;

/// [`run_with_idle`], also calling `on_retry` for each charged attempt that failed while its
/// task runs again (the joblog records it); with `revoked`, a worker holding a task its source took back (a lease
/// that passed to another machine) is killed — a worker cannot stop one task alone — and the
/// others it held run again, uncharged.
#[allow(clippy::too_many_arguments)] // the adapter goes once persistent workers are an executor (issue 17)
pub(crate) fn run_engine<I>(
    config: &PersistentConfig,
    inputs: I,
    shutdown: &Shutdown,
    mut on_reply: impl FnMut(Seq, Reply, Attempt),
    mut on_retry: impl FnMut(Seq, Reply, Attempt),
    mut on_stderr: impl FnMut(usize, &[u8]),
    mut on_idle: impl FnMut(),
    revoked: Option<Revoked<'_>>,
) -> Summary
where
    I: Iterator<Item = Vec<u8>> + Send,
{
    let workers = config.workers.max(1);
    // Room for several windows per worker, so the feeder is woken rarely. A drain starts none
    // of the queued tasks (they are answered not run), so the size costs no extra work.
    let capacity = (workers * config.window.max(1) * 8).max(256);
    let (jobs_tx, jobs_rx) = cb::bounded::<Job>(capacity);
    let (space_tx, space_rx) = cb::bounded::<()>(1);
    let queue = worker::JobQueue::new(jobs_rx.clone(), space_tx);
    // Set once every slot has ended: the feeder then stops waiting for room.
    let slots_ended = std::sync::atomic::AtomicBool::new(false);
    let (events_tx, events_rx) = cb::unbounded::<Event>();
    let mut summary = Summary::default();
    let halt = Arc::new(HaltGate::new(config.halt, config.known_total));
    let settle = worker::Settle::new(events_tx.clone(), halt.clone(), shutdown.clone());

    // Closed when the run is over, to end the grace watcher.
    let (over_tx, over_rx) = cb::bounded::<()>(0);
    std::thread::scope(|scope| {
        let patience = config.drain_patience.unwrap_or(config.grace);
        scope.spawn(move || stop_after_grace(shutdown, patience, &over_rx));
        // One thread per CPU reads the workers' stderr, each a share of the workers, and their
        // replies too once there are more workers than CPUs (below that, a blocking reader
        // per worker wakes once per reply batch where a shared one needs two calls). Without
        // one (no thread or descriptor to be had) a worker's pipes get threads of their own.
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let share_replies = workers > cpus;
        let readers: Vec<Arc<pipes::PipeReader>> =
            (0..cpus.min(workers)).filter_map(|_| pipes::PipeReader::start().ok().map(Arc::new)).collect();
        // One loop per CPU feeds its share of the workers (see `machine`).
        let wakers: Vec<Arc<Waker>> =
            (0..cpus.min(workers)).filter_map(|_| Waker::new().ok().map(Arc::new)).collect();
        let mut slots = Vec::new();
        if wakers.is_empty() {
            // No eventfd to be had: every task read fails, saying why.
            let (queue, settle) = (queue.clone(), settle.clone());
            slots.push(scope.spawn(move || {
                let failure =
                    Failure::Start("no event loop to feed the workers (out of descriptors?)".into());
                worker::refuse_all(&queue, &settle, &failure);
            }));
        }
        let mut by_loop: Vec<Vec<worker::SlotContext<'_>>> = wakers.iter().map(|_| Vec::new()).collect();
        for slot in 1..=workers {
            let Some(index) = slot.checked_rem(wakers.len()) else { break };
            let ctx = worker::SlotContext {
                slot,
                config,
                shutdown,
                jobs: queue.clone(),
                events: events_tx.clone(),
                settle: settle.for_slot(slot),
                pipes: (!readers.is_empty()).then(|| Arc::clone(&readers[slot % readers.len()])),
                share_replies,
                revoked: revoked.clone(),
                waker: Arc::clone(&wakers[index]),
            };
            by_loop[index].push(ctx);
        }
        for (group, waker) in by_loop.into_iter().zip(&wakers) {
            let waker = Arc::clone(waker);
            slots.push(scope.spawn(move || machine::run_loop(group, &waker)));
        }
        drop((queue, events_tx, settle, readers));

        let ended = &slots_ended;
        let feeder = scope.spawn(move || {
            let mut read = 0u64;
            let mut inputs = inputs;
            let mut unsent = None;
            // The shutdown is checked before each read, never after: an input taken from
            // the iterator always gets a reply (a queue's task would otherwise wait a lease).
            while !shutdown.is_tripped() {
                let Some(input) = inputs.next() else { break };
                read += 1;
                if !send_job(&jobs_tx, &space_rx, ended, Job { seq: read, input, charged: 0, alone: false }) {
                    // Only if every slot ended early, which a slot never does while input
                    // flows; the task is still accounted for.
                    unsent = Some(read);
                    break;
                }
                wakers.iter().for_each(|waker| waker.wake());
            }
            // The loops learn that no task will come any more.
            drop(jobs_tx);
            wakers.iter().for_each(|waker| waker.ring());
            (read, unsent)
        });

        for event in events_rx.iter() {
            match event {
                Event::Reply(seq, reply, attempt) => {
                    summary.count(&reply);
                    on_reply(seq, reply, attempt);
                }
                Event::Replies(replies) => {
                    for (seq, reply, attempt) in replies {
                        summary.count(&reply);
                        on_reply(seq, reply, attempt);
                    }
                }
                Event::Retrying(seq, reply, attempt) => on_retry(seq, reply, attempt),
                Event::Stderr(slot, line) => on_stderr(slot, &line),
                Event::WorkerStarted => summary.workers_started += 1,
                Event::Crash => summary.crashes += 1,
                Event::ProtocolBreak => summary.protocol_breaks += 1,
            }
            if events_rx.is_empty() {
                on_idle();
            }
        }
        slots_ended.store(true, std::sync::atomic::Ordering::Release);
        // The feeder runs the caller's iterator; its panic is the caller's, so pass it on
        // rather than report zero tasks read.
        let (read, unsent) = match feeder.join() {
            Ok(counts) => counts,
            Err(payload) => std::panic::resume_unwind(payload),
        };
        summary.read = read;
        // What was queued but never taken (a drain, or slots that all ended) was not run.
        let leftovers = unsent.into_iter().chain(jobs_rx.try_iter().map(|job| job.seq));
        for seq in leftovers {
            summary.not_run += 1;
            on_reply(seq, Reply::NotRun, Attempt::never());
        }
        for slot in slots {
            // A slot only panics on a bug in muster; let it surface.
            if let Err(payload) = slot.join() {
                std::panic::resume_unwind(payload);
            }
        }
        drop(over_tx);
    });
    summary.halted = halt.reached();
    summary
}

/// A drain waits for the replies in flight; a worker that never answers must not hold it
/// forever. Once `grace` has passed since the drain began, stop now.
fn stop_after_grace(shutdown: &Shutdown, grace: Duration, over: &cb::Receiver<()>) {
    cb::select! {
        recv(shutdown.tripped()) -> _ => {}
        recv(over) -> _ => return,
    }
    cb::select! {
        recv(shutdown.stopping_now()) -> _ => {}
        recv(over) -> _ => {}
        default(grace) => shutdown.stop_now(),
    }
}

/// Queues `job`; when the queue is full, sleeps until the slots have taken half of it (see
/// [`worker::JobQueue`]). False when every slot has ended.
fn send_job(
    jobs: &cb::Sender<Job>,
    space: &cb::Receiver<()>,
    slots_ended: &std::sync::atomic::AtomicBool,
    mut job: Job,
) -> bool {
    loop {
        if slots_ended.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        match jobs.try_send(job) {
            Ok(()) => return true,
            Err(cb::TrySendError::Disconnected(_)) => return false,
            Err(cb::TrySendError::Full(back)) => {
                job = back;
                // The slots signal after every take that leaves the queue half empty, so a
                // signal cannot be missed; a stale one only costs another look. The timeout
                // notices slots that all ended while the queue was full.
                let _ = space.recv_timeout(Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
mod tests;
