//! The engine: every task of every mode, from its source to its outcome, losing nothing.
//!
//! `muster run`, `muster run --persistent`, `muster submit` and `muster worker` are runs of
//! this engine over different executors. Streams are best made [`Source::interruptible`]
//! (read on a thread of their own, so a blocked read never holds up a shutdown); the caller's
//! thread admits inputs (skipping what a resumed joblog says is done) into a bounded queue, so
//! input is never read far ahead. One event loop per CPU takes tasks from the queue into its
//! share of the `jobs` slots. Each loop is a dispatcher (`dispatch`: slots, retries, time
//! limits, halts, what an ending means) over an executor. One thread settles (`settle`:
//! prints, journals, counts).
//!
//! ```text
//!  inputs ─▶ feeder ─queue─▶ dispatcher × CPUs ─events─▶ settle stage ─▶ stdout/stderr, joblog
//!  (or a source with receipts: run_sourced)                        └─▶ settlement (after the record)
//!                               │    ▲
//!                         start/signal  ended (status, captured output)
//!                               ▼    │
//!   executors, side by side: process (a process per task, epoll) · remote (a Redis queue)
//!                            · fake (scripted, for the tests)
//!   persistent (long-lived workers): its own feeding loops, settled by the same stage
//! ```
//!
//! Members: `dispatch` (the policy), `settle` (the one output, joblog and count stage),
//! `capture` (a task's output kept in memory or spilled), `results` (`--results` files),
//! `poll` (the loops' waker and tick), `priority` (the bookkeeping threads step aside for the
//! work), `process`, `remote` and `fake` (executors),
//! [`persistent`] (long-lived workers).
//!
//! Shutdown follows DESIGN.md: when the [`Shutdown`] token trips, nothing new starts and
//! running tasks get `grace` to finish, then SIGTERM, then SIGKILL after another `grace`; on
//! stop-now they are stopped at once. Every task read ends with exactly one outcome in the
//! [`Summary`]: done, failed, timed out, stopped, not run, or skipped (already done according
//! to the joblog being resumed).

pub(crate) mod capture;
pub(crate) mod dispatch;
#[cfg(test)]
mod fake;
mod feed;
mod median;
pub mod note;
pub mod persistent;
pub(crate) mod poll;
pub(crate) mod priority;
mod process;
#[cfg(feature = "redis")]
pub(crate) mod remote;
mod results;
pub(crate) mod settle;
mod slots;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel as cb;

pub use crate::input::{Input, Inputs, Interruptible, Source};

pub use crate::halt::{FailThreshold, Halt, HaltGate, HaltWhen};
pub use crate::journal::ResumeMode;
use crate::journal::{InputLedger, JournalError, JournalWriter};
use crate::process::template::{shell_quote, Template};
use crate::process::watchdog::Watchdog;
use crate::process::Launcher;
use crate::shutdown::{Level, Shutdown};
use crate::source::{NoSettlement, Receipt, Settlement, Sourced};
use crate::task::{Outcome, Seq};
use settle::{Event, OutputConfig, OutputThread};

/// How output reaches the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// Each task's output printed whole when it ends.
    Group,
    /// Complete lines passed on as they come.
    LineBuffer,
}

/// Everything a run needs to know. Build with [`RunConfig::new`] and set the fields.
#[derive(Debug)]
pub struct RunConfig {
    /// The command to run per input.
    pub template: Template,
    /// Tasks running at once (at least 1).
    pub jobs: usize,
    /// Grouped or line-buffered output.
    pub output: OutputMode,
    /// Prefix each output line with the task's input and a tab.
    pub tag: bool,
    /// Prefix each output line with this string (replacement strings rendered per task) and a
    /// tab, instead of the input (`--tagstring`).
    pub tagstring: Option<Template>,
    /// The least time between two task starts (`--delay`).
    pub delay: Option<Duration>,
    /// Print outputs in input order (with a bounded reorder window).
    pub keep_order: bool,
    /// Extra attempts for a failing task.
    pub retries: u32,
    /// Time limit per attempt.
    pub timeout: Option<Duration>,
    /// Time limit per attempt as a multiple of the median run time of recent successful tasks
    /// (GNU parallel's `--timeout 200%` is 2.0); no limit before a first task is done. Only
    /// for spawned tasks: an executor that keeps its own deadlines ignores it.
    pub timeout_of_median: Option<f64>,
    /// Time a task gets after a stop request, and again between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Time running tasks get to finish after a drain request, when not `grace` (a broker's
    /// worker finishes what it holds, however long).
    pub drain_patience: Option<Duration>,
    /// Stop early on failures.
    pub halt: Option<Halt>,
    /// Where to journal every attempt.
    pub joblog: Option<PathBuf>,
    /// Resume from the joblog instead of starting it anew.
    pub resume: Option<ResumeMode>,
    /// The joblog's columns (GNU parallel's only cannot be resumed from).
    pub joblog_format: crate::journal::JoblogFormat,
    /// Keep each task's output in files instead of printing it (`--results`): a folder in GNU
    /// parallel's layout, or one `.csv`/`.json` file.
    pub results: Option<PathBuf>,
    /// Tasks hold several inputs of this many values each, rendered with
    /// [`Template::render_many`]; `true` for context replacement (`-X`), `false` for `-m`.
    pub many: Option<(usize, bool)>,
    /// Each input is a chunk of data for the task's stdin, not part of its command line
    /// (`--pipe`; see [`crate::input::Blocks`]).
    pub pipe: bool,
    /// Print the commands instead of running them.
    pub dry_run: bool,
    /// Output kept in memory per task before it spills to a temp file.
    pub spill_threshold: usize,
    /// How to start the orphan watchdog (see [`crate::process::watchdog`]); `None` runs without.
    pub watchdog: Option<std::process::Command>,
    /// Where the command's program was found, so each task can skip the `PATH` search. The
    /// task still sees the name it was given as `argv[0]`.
    pub program_path: Option<PathBuf>,
    /// Run the command once per worker (`jobs` workers), each input a record on a worker's
    /// stdin, instead of once per input (`--persistent`; see [`persistent`]).
    pub persistent: Option<persistent::Workers>,
}

impl RunConfig {
    /// A configuration for `template` with defaults: one job per CPU, grouped output, 10 s grace.
    pub fn new(template: Template) -> RunConfig {
        RunConfig {
            template,
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
            output: OutputMode::Group,
            tag: false,
            tagstring: None,
            delay: None,
            keep_order: false,
            retries: 0,
            timeout: None,
            timeout_of_median: None,
            grace: Duration::from_secs(10),
            drain_patience: None,
            halt: None,
            joblog: None,
            resume: None,
            joblog_format: crate::journal::JoblogFormat::Muster,
            results: None,
            pipe: false,
            many: None,
            dry_run: false,
            spill_threshold: 1 << 20,
            watchdog: None,
            program_path: None,
            persistent: None,
        }
    }

    /// The command as recorded in the joblog; resuming requires the same.
    pub fn command_label(&self) -> String {
        let mode = match (&self.persistent, self.template.is_shell()) {
            (Some(_), _) => " (--persistent)",
            (None, true) => " (--shell)",
            (None, false) => "",
        };
        format!("{}{mode}", self.template.display())
    }
}

/// Receives progress as the engine runs (the CLI's progress bar). Methods are called from
/// several threads.
pub trait Observer: Sync {
    /// A task started running (its first attempt).
    fn task_started(&self) {}
    /// An attempt began running in a slot.
    fn attempt_started(&self) {}
    /// An attempt stopped running (its task may be retried, or its output still printing), so
    /// attempts started minus ended is what occupies the slots.
    fn attempt_ended(&self) {}
    /// A task finished (after its output was printed).
    fn task_finished(&self, _outcome: &Outcome) {}
    /// A task was skipped: the joblog being resumed says it is done already.
    fn task_skipped(&self) {}
    /// Of the tasks this run has on a queue (a submission), `held` are held by workers: the
    /// rest wait on the queue. Told every few seconds.
    fn queue_held(&self, _held: u64) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// What a run did. `read == done + failed + timed_out + stopped + not_run + skipped`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Inputs read.
    pub read: u64,
    /// Tasks that succeeded.
    pub done: u64,
    /// Tasks that failed for good (non-zero exit, signal, could not start, output lost).
    pub failed: u64,
    /// Of the failed, tasks whose output could not be captured or written (a resume runs
    /// them again).
    pub lost: u64,
    /// Tasks that ran past the time limit.
    pub timed_out: u64,
    /// Tasks stopped by a shutdown while running; a resume runs them again.
    pub stopped: u64,
    /// Tasks read but never started because of a shutdown or halt.
    pub not_run: u64,
    /// Tasks skipped because the joblog says they are done.
    pub skipped: u64,
    /// Inputs known ahead (`:::`, files) that were never read because a halt or a stop came
    /// first: never run either, and not in `read`.
    pub unread: u64,
    /// Reading stopped (a halt or a stop) before a stream of unknown length ended: more
    /// inputs were not run than `unread` says.
    pub input_left: bool,
    /// Wall time of the run.
    pub wall: Duration,
    /// Sum of every finished task's run time.
    pub task_time: Duration,
    /// Slots (jobs) used.
    pub jobs: usize,
    /// `--halt` was reached.
    pub halted: bool,
    /// Our stdout was closed by its reader.
    pub broken_pipe: bool,
    /// Writing output failed otherwise.
    pub write_error: Option<String>,
    /// Reading input failed after this many inputs.
    pub input_error: Option<String>,
    /// The first failed or timed-out tasks, named (`task 7 (input): exited with status 3`),
    /// at most [`FAILURES_LISTED`].
    pub failed_tasks: Vec<note::Note>,
    /// The shutdown level at the end.
    pub stopped_level: Option<Level>,
    /// Persistent workers started, replacements and recycling included.
    pub workers_started: u64,
    /// Persistent workers that died holding tasks (or were stopped for one past its time).
    pub worker_crashes: u64,
    /// Persistent workers replaced because they sent a reply with no task waiting for it.
    pub protocol_breaks: u64,
}

impl Summary {
    /// Tasks that did not succeed (failed or timed out); what the exit status counts.
    pub fn failures(&self) -> u64 {
        self.failed + self.timed_out
    }

    /// True when the counts account for every input read.
    pub fn accounts_for_everything(&self) -> bool {
        self.done + self.failed + self.timed_out + self.stopped + self.not_run + self.skipped == self.read
    }
}

/// Why a run could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The joblog could not be used.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A thread or the watchdog could not be started.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What could not be started.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the engine over `inputs`, writing task output to `stdout`/`stderr`. Returns when every
/// task read has an outcome and every process is reaped.
///
/// The calling thread reads the inputs. While it does, it runs under `SCHED_BATCH` (if it ran
/// under the default policy), as muster's other bookkeeping threads do, so that waking it
/// never takes a CPU from a task; its policy is given back before this returns. Tasks and
/// workers run under the policy the caller had.
pub fn run(
    config: RunConfig,
    inputs: Inputs,
    stdout: Box<dyn Write + Send + '_>,
    stderr: Box<dyn Write + Send + '_>,
    shutdown: &Shutdown,
    observer: &dyn Observer,
) -> Result<Summary, RunError> {
    if config.dry_run {
        return dry_run(&config, inputs, shutdown, stdout);
    }
    let known_total = inputs.known_total();
    let sourced = inputs.map(|input| input.map(Sourced::local));
    let io = Io { stdout, stderr, shutdown, observer, settlement: &NoSettlement };
    run_sourced(config, sourced, known_total, io)
}

/// Runs the engine over tasks from a source that wants to hear back (see [`crate::source`]):
/// `settlement` is told when each task's attempts start and end and when it settles.
/// `known_total` is the number of tasks when known ahead (for `--halt` percentages).
pub fn run_sourced(
    mut config: RunConfig,
    inputs: impl Iterator<Item = std::io::Result<Sourced>>,
    known_total: Option<u64>,
    io: Io<'_, '_>,
) -> Result<Summary, RunError> {
    let watchdog = match config.watchdog.take() {
        Some(command) => Some(Arc::new(
            Watchdog::start(command).map_err(|source| RunError::Start { what: "the watchdog", source })?,
        )),
        None => None,
    };
    if let Some(workers) = config.persistent.clone() {
        return persistent::run_executor(config, workers, watchdog, inputs, known_total, io);
    }
    let launcher = Launcher::new(watchdog);
    let program_path = if config.template.is_shell() { None } else { config.program_path.clone() };
    let settings = process::ProcessSettings {
        launcher: &launcher,
        program_path: program_path.as_deref(),
        spill_threshold: config.spill_threshold,
        line_mode: config.output == OutputMode::LineBuffer,
        jobs: config.jobs.max(1),
        running: std::sync::atomic::AtomicUsize::new(0),
    };
    process::raise_fd_limit(config.jobs.max(1));
    run_on(config, inputs, known_total, io, |events, waker, slots| {
        process::ProcessExecutor::new(&settings, events, waker, slots.len())
    })
}

/// Where a run's output, progress and settlements go, and what stops it.
pub struct Io<'w, 'r> {
    /// Task output.
    pub stdout: Box<dyn Write + Send + 'w>,
    /// Task errors and muster's notes about tasks.
    pub stderr: Box<dyn Write + Send + 'w>,
    /// Stops the run (a drain, or stop-now).
    pub shutdown: &'r Shutdown,
    /// Progress.
    pub observer: &'r dyn Observer,
    /// Hears about tasks that carry a receipt.
    pub settlement: &'r dyn Settlement,
}

/// Runs the engine with attempts started by the executors `executor` makes (one per event loop,
/// given the output thread's sender, the loop's waker and its number of slots).
pub(crate) fn run_on<E, F>(
    config: RunConfig,
    inputs: impl Iterator<Item = std::io::Result<Sourced>>,
    known_total: Option<u64>,
    io: Io<'_, '_>,
    executor: F,
) -> Result<Summary, RunError>
where
    E: dispatch::Executor + Send,
    F: Fn(cb::Sender<Event>, Arc<poll::Waker>, &[usize]) -> std::io::Result<E>,
{
    let started = Instant::now();
    let Io { stdout, stderr, shutdown, observer, settlement } = io;
    let command = config.command_label();
    let (journal, mut ledger) = match &config.joblog {
        None => (None, None),
        Some(path) if config.joblog_format == crate::journal::JoblogFormat::Gnu => {
            (Some(JournalWriter::create_gnu(path)?), Some(InputLedger::new(None)))
        }
        Some(path) => {
            let (writer, resume) = JournalWriter::open(path, &command, config.resume)?;
            (Some(writer), Some(InputLedger::new(resume)))
        }
    };
    let results = match &config.results {
        Some(path) => Some(
            results::Results::open(path).map_err(|source| RunError::Start { what: "--results", source })?,
        ),
        None => None,
    };
    let jobs = config.jobs.max(1);
    let halt = HaltGate::new(config.halt, known_total);
    let drain_started = OnceLock::new();
    let (events_tx, events_rx) = cb::unbounded::<Event>();
    // One loop per CPU, each with its share of the slots; never more loops than slots.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let loops = jobs.min(cpus).max(1);
    let mut loop_parts = Vec::with_capacity(loops);
    for index in 0..loops {
        let waker =
            Arc::new(poll::Waker::new().map_err(|source| RunError::Start { what: "an event loop", source })?);
        let slots: Vec<usize> = (1..=jobs).skip(index).step_by(loops).collect();
        let executor = executor(events_tx.clone(), Arc::clone(&waker), &slots)
            .map_err(|source| RunError::Start { what: "an event loop", source })?;
        loop_parts.push((executor, waker, slots));
    }
    // What the loops can hold at once: their slots, or their workers' windows.
    let positions: usize =
        loop_parts.iter().map(|(e, _, slots)| e.positions(slots.len())).sum::<usize>().max(jobs);
    let window = (positions.saturating_mul(4)).clamp(64, MAX_QUEUE * 4);
    let (credits_tx, credits_rx) = cb::bounded::<()>(window);
    let loop_wakers = loop_parts.iter().map(|(_, waker, _)| Arc::clone(waker)).collect();
    let (tasks_tx, tasks_rx) = feed::queue::<Queued>(positions.min(MAX_QUEUE), loop_wakers);
    let (spent_tx, spent_rx) = cb::unbounded::<Vec<Input>>();
    // One attempt per slot: the loops share the `{%}` numbers, handed out as GNU parallel does.
    let one_per_slot = loop_parts.iter().all(|(e, _, slots)| e.positions(slots.len()) <= slots.len());
    let shared = dispatch::Shared {
        config: &config,
        median: config
            .timeout_of_median
            .map(|fraction| std::sync::Mutex::new(median::RecentMedian::new(fraction))),
        slot_numbers: one_per_slot.then(|| std::sync::Mutex::new(slots::SlotNumbers::new(jobs))),
        next_start: std::sync::Mutex::new(Instant::now()),
        shutdown,
        drain_started: &drain_started,
        halt: &halt,
        journaling: journal.is_some(),
        results: results.is_some(),
        tasks: tasks_rx,
        observer,
        settlement,
        label: command.clone().into_bytes(),
        spent: spent_tx,
    };
    let mut dispatchers = Vec::with_capacity(loops);
    for (executor, waker, slots) in loop_parts {
        dispatchers.push(dispatch::Dispatcher::new(&shared, executor, events_tx.clone(), waker, slots));
    }

    let (mut summary, journal_error, read, input_error, exhausted) = std::thread::scope(|scope| {
        let output = OutputThread::new(
            OutputConfig {
                keep_order: config.keep_order,
                shutdown,
                observer,
                credits: config.keep_order.then(|| credits_rx.clone()),
                settlement,
            },
            stdout,
            stderr,
            journal,
        )
        .with_results(results);
        // Persistent workers' results are small and many: written many to a write call.
        let output = if config.persistent.is_some() { output.flush_when_idle() } else { output };
        let output = scope.spawn(move || {
            let _aside = priority::step_aside();
            output.run(events_rx)
        });
        for dispatcher in dispatchers {
            scope.spawn(move || dispatcher.run());
        }

        // The feeder: read, skip what the joblog says is done, and queue the rest (on the
        // caller's thread, stepped aside for the run).
        let aside = priority::step_aside();
        let mut read = 0u64;
        let mut fed = 0u64;
        let mut input_error = None;
        let mut exhausted = false;
        let mut inputs = inputs;
        // Checked before each read, never after: a task read is queued, so it gets an outcome
        // (not run, when a shutdown came meanwhile) and its source hears of it.
        while !shutdown.is_tripped() && !halt.closed() {
            let Some(input) = inputs.next() else {
                exhausted = true;
                break;
            };
            let Sourced { input, receipt } = match input {
                Ok(sourced) => sourced,
                Err(err) => {
                    input_error = Some(format!("reading input after {read} records: {err}"));
                    break;
                }
            };
            read += 1;
            let seq = read;
            // The inputs of settled tasks, kept for the next ones (or freed) where they were
            // allocated.
            if read.is_multiple_of(64) {
                crate::input::recycle(spent_rx.try_iter().flatten());
            }
            if config.keep_order && credits_tx.send(()).is_err() {
                break;
            }
            // Occurrences identify repeated inputs in the joblog; counted only when journaling.
            let mut occurrence = 0;
            if let Some(ledger) = ledger.as_mut() {
                let (nth, skip) = ledger.admit(&input.identity());
                if skip {
                    let _ = events_tx.send(Event::Skipped(seq, receipt));
                    continue;
                }
                occurrence = nth;
            }
            let order = fed;
            fed += 1;
            if let Err(queued) = tasks_tx.send(Queued { seq, occurrence, input, receipt, order }) {
                let _ = events_tx.send(Event::NotRun(queued.seq, queued.receipt));
            }
        }
        drop(aside);
        // The queue closes; every loop is rung to see it.
        drop(tasks_tx);
        drop(events_tx);
        // The output thread only panics on a bug in muster; let it surface.
        let (summary, journal_error) = match output.join() {
            Ok(result) => result,
            Err(payload) => std::panic::resume_unwind(payload),
        };
        (summary, journal_error, read, input_error, exhausted)
    });
    if let Some(err) = journal_error {
        return Err(err.into());
    }
    summary.read = read;
    // Inputs a halt or a stop left unread: counted where their number is known, else said.
    summary.unread = known_total.map_or(0, |total| total.saturating_sub(read));
    summary.input_left = !exhausted && known_total.is_none() && input_error.is_none();
    summary.jobs = jobs;
    summary.wall = started.elapsed();
    summary.input_error = input_error;
    summary.stopped_level = Some(shutdown.level());
    summary.halted = halt.reached();
    Ok(summary)
}

/// How many tasks can run at once as far as the open-file limit goes (three descriptors each,
/// some kept for muster), after the soft limit is raised to the hard one.
pub fn jobs_the_fd_limit_allows() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let files = limit.maximum.unwrap_or(u64::MAX);
    usize::try_from(files.saturating_sub(256) / 3).unwrap_or(usize::MAX).max(1)
}

/// How many failed tasks a [`Summary`] names.
pub const FAILURES_LISTED: usize = 10;

/// The most tasks queued ahead of the loops, however large `-j` is.
const MAX_QUEUE: usize = 4096;

/// A task waiting for a slot.
pub(crate) struct Queued {
    pub(crate) seq: Seq,
    /// Which occurrence of this input it is (0 when not journaling).
    pub(crate) occurrence: u32,
    pub(crate) input: Input,
    pub(crate) receipt: Option<Receipt>,
    /// How many tasks were fed before it (its `{%}` among the first `-j`).
    pub(crate) order: u64,
}

/// `--dry-run`: print each command line (shell-quoted where needed) instead of running it;
/// with a resume, only those of tasks the joblog does not settle (the joblog is only read).
fn dry_run(
    config: &RunConfig,
    inputs: Inputs,
    shutdown: &Shutdown,
    mut stdout: Box<dyn Write + Send + '_>,
) -> Result<Summary, RunError> {
    let mut ledger = match (&config.joblog, config.resume) {
        (Some(path), Some(mode)) => match crate::journal::Joblog::read(path) {
            Ok(joblog) => {
                let resume = crate::journal::Resume::of(path, &joblog, &config.command_label())?;
                Some(InputLedger::new(Some((mode, resume))))
            }
            Err(JournalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(err.into()),
        },
        _ => None,
    };
    let mut summary = Summary { jobs: config.jobs, ..Summary::default() };
    for input in inputs {
        if shutdown.is_tripped() {
            break;
        }
        let input = match input {
            Ok(input) => input,
            Err(err) => {
                summary.input_error = Some(format!("reading input after {} records: {err}", summary.read));
                break;
            }
        };
        summary.read += 1;
        if let Some(ledger) = ledger.as_mut() {
            if ledger.admit(&input.identity()).1 {
                summary.skipped += 1;
                continue;
            }
        }
        summary.not_run += 1;
        let argv = config.template.render(&input.values, summary.read, 1);
        let words: Vec<Vec<u8>> = argv.iter().map(|a| shell_quote(a.as_encoded_bytes())).collect();
        let mut line = words.join(&b' ');
        line.push(b'\n');
        if let Err(err) = stdout.write_all(&line) {
            summary.broken_pipe = err.kind() == std::io::ErrorKind::BrokenPipe;
            break;
        }
    }
    let _ = stdout.flush();
    Ok(summary)
}
