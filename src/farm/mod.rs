//! The process task farm: run a command once per input, in parallel, losing nothing.
//!
//! This is the engine behind `muster run`. The caller's thread reads inputs and feeds a bounded
//! queue (so input is never read far ahead); `jobs` slot threads each take a task, render its
//! command from the [`Template`], run it in its own process group (see `exec`) and retry it if
//! asked; one output thread prints, journals and counts (see `output`).
//!
//! ```text
//!  inputs ─▶ feeder ─queue(jobs)─▶ slot 1..=jobs ─events─▶ output thread ─▶ stdout/stderr, joblog
//! ```
//!
//! Shutdown follows DESIGN.md: when the [`Shutdown`] token trips, nothing new starts and
//! running tasks get `grace` to finish, then SIGTERM, then SIGKILL after another `grace`; on
//! stop-now they are stopped at once. Every task read ends with exactly one outcome in the
//! [`Summary`]: done, failed, timed out, stopped, not run, or skipped (already done according
//! to the joblog being resumed).

mod exec;
pub mod input;
mod output;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;

pub use exec::Stream;
pub use input::{Input, Inputs, Source};

pub use crate::journal::ResumeMode;
use crate::journal::{InputLedger, JournalError, JournalWriter, Record, RecordOutcome};
use crate::process::template::Template;
use crate::process::watchdog::Watchdog;
use crate::shutdown::{Level, Shutdown};
use crate::task::{Failure, Outcome, Seq};
use exec::{Ending, Limits};
use output::{Event, Finished, OutputConfig, OutputThread};

/// When `--halt` acts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HaltWhen {
    /// Stop running tasks at once.
    Now,
    /// Start no more tasks; let running ones finish.
    Soon,
}

/// How many failures trigger `--halt`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FailThreshold {
    /// This many failed tasks.
    Count(u64),
    /// This percentage of the tasks (of the known total, or of those finished so far).
    Percent(f64),
}

/// `--halt now|soon,fail=N|P%`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Halt {
    /// When to act.
    pub when: HaltWhen,
    /// On how many failures.
    pub threshold: FailThreshold,
}

/// Applies `--halt` as tasks finish. The slots consult it before starting each task, and
/// record into it as soon as a task ends, so no task starts after the threshold is reached.
pub(crate) struct HaltGate {
    halt: Option<Halt>,
    known_total: Option<u64>,
    finished: AtomicU64,
    failures: AtomicU64,
    /// `--halt soon` reached: start no more (without the drain's grace clock).
    soon: AtomicBool,
    reached: AtomicBool,
}

impl HaltGate {
    pub(crate) fn new(halt: Option<Halt>, known_total: Option<u64>) -> HaltGate {
        HaltGate {
            halt,
            known_total,
            finished: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            soon: AtomicBool::new(false),
            reached: AtomicBool::new(false),
        }
    }

    /// True once no new task may start.
    pub(crate) fn closed(&self) -> bool {
        self.soon.load(Ordering::SeqCst)
    }

    /// True once the threshold was reached.
    pub(crate) fn reached(&self) -> bool {
        self.reached.load(Ordering::SeqCst)
    }

    /// Counts a finished task (tasks stopped by a shutdown do not count) and halts if due.
    fn record(&self, outcome: &Outcome, shutdown: &Shutdown) {
        self.record_finished(outcome.is_done(), shutdown);
    }

    /// Counts a finished task that succeeded (`done`) or failed, and halts if due.
    pub(crate) fn record_finished(&self, done: bool, shutdown: &Shutdown) {
        let Some(halt) = self.halt else { return };
        let finished = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let failures = if done {
            self.failures.load(Ordering::SeqCst)
        } else {
            self.failures.fetch_add(1, Ordering::SeqCst) + 1
        };
        let reached = match halt.threshold {
            FailThreshold::Count(n) => failures >= n,
            FailThreshold::Percent(p) => {
                // A percentage needs a denominator: the total when known, else what finished.
                let base = self.known_total.unwrap_or(finished).max(1);
                failures > 0 && failures as f64 * 100.0 / base as f64 >= p
            }
        };
        if reached && !self.reached.swap(true, Ordering::SeqCst) {
            match halt.when {
                HaltWhen::Now => {
                    self.soon.store(true, Ordering::SeqCst);
                    shutdown.stop_now();
                }
                HaltWhen::Soon => self.soon.store(true, Ordering::SeqCst),
            }
        }
    }
}

/// How output reaches the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// Each task's output printed whole when it ends.
    Group,
    /// Complete lines passed on as they come.
    LineBuffer,
}

/// Everything a farm run needs to know. Build with [`FarmConfig::new`] and set the fields.
#[derive(Debug)]
pub struct FarmConfig {
    /// The command to run per input.
    pub template: Template,
    /// Tasks running at once (at least 1).
    pub jobs: usize,
    /// Grouped or line-buffered output.
    pub output: OutputMode,
    /// Prefix each output line with the task's input and a tab.
    pub tag: bool,
    /// Print outputs in input order (with a bounded reorder window).
    pub keep_order: bool,
    /// Extra attempts for a failing task.
    pub retries: u32,
    /// Time limit per attempt.
    pub timeout: Option<Duration>,
    /// Time a task gets after a stop request, and again between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Stop early on failures.
    pub halt: Option<Halt>,
    /// Where to journal every attempt.
    pub joblog: Option<PathBuf>,
    /// Resume from the joblog instead of starting it anew.
    pub resume: Option<ResumeMode>,
    /// Print the commands instead of running them.
    pub dry_run: bool,
    /// Output kept in memory per task before it spills to a temp file.
    pub spill_threshold: usize,
    /// How to start the orphan watchdog (see [`crate::process::watchdog`]); `None` runs without.
    pub watchdog: Option<std::process::Command>,
    /// Where the command's program was found, so each task can skip the `PATH` search. The
    /// task still sees the name it was given as `argv[0]`.
    pub program_path: Option<PathBuf>,
}

impl FarmConfig {
    /// A configuration for `template` with defaults: one job per CPU, grouped output, 10 s grace.
    pub fn new(template: Template) -> FarmConfig {
        FarmConfig {
            template,
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
            output: OutputMode::Group,
            tag: false,
            keep_order: false,
            retries: 0,
            timeout: None,
            grace: Duration::from_secs(10),
            halt: None,
            joblog: None,
            resume: None,
            dry_run: false,
            spill_threshold: 1 << 20,
            watchdog: None,
            program_path: None,
        }
    }

    /// The command as recorded in the joblog; resuming requires the same.
    pub fn command_label(&self) -> String {
        let shell = if self.template.is_shell() { " (--shell)" } else { "" };
        format!("{}{shell}", self.template.display())
    }
}

/// Receives progress as the farm runs (the CLI's progress bar). Methods are called from
/// several threads.
pub trait Observer: Sync {
    /// A task started running.
    fn task_started(&self) {}
    /// A task finished (after its output was printed).
    fn task_finished(&self, _outcome: &Outcome) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// What a farm run did. `read == done + failed + timed_out + stopped + not_run + skipped`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Inputs read.
    pub read: u64,
    /// Tasks that succeeded.
    pub done: u64,
    /// Tasks that failed for good (non-zero exit, signal, could not start).
    pub failed: u64,
    /// Tasks that ran past the time limit.
    pub timed_out: u64,
    /// Tasks stopped by a shutdown while running; a resume runs them again.
    pub stopped: u64,
    /// Tasks read but never started because of a shutdown or halt.
    pub not_run: u64,
    /// Tasks skipped because the joblog says they are done.
    pub skipped: u64,
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
    /// The shutdown level at the end.
    pub stopped_level: Option<Level>,
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

/// Why a farm could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum FarmError {
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

/// Runs the farm over `inputs`, writing task output to `stdout`/`stderr`. Returns when every
/// task read has an outcome and every process is reaped.
pub fn run(
    mut config: FarmConfig,
    inputs: Inputs,
    stdout: Box<dyn Write + Send + '_>,
    stderr: Box<dyn Write + Send + '_>,
    shutdown: &Shutdown,
    observer: &dyn Observer,
) -> Result<Summary, FarmError> {
    let started = Instant::now();
    let known_total = inputs.known_total();
    if config.dry_run {
        return Ok(dry_run(&config, inputs, stdout));
    }
    let command = config.command_label();
    let (journal, mut ledger) = match &config.joblog {
        None => (None, None),
        Some(path) => {
            let (writer, resume) = JournalWriter::open(path, &command, config.resume)?;
            (Some(writer), Some(InputLedger::new(resume)))
        }
    };
    let watchdog = match config.watchdog.take() {
        Some(command) => Some(
            Watchdog::start(command).map_err(|source| FarmError::Start { what: "the watchdog", source })?,
        ),
        None => None,
    };
    let jobs = config.jobs.max(1);
    let halt = HaltGate::new(config.halt, known_total);
    let drain_started = OnceLock::new();
    let limits = Limits {
        timeout: config.timeout,
        grace: config.grace,
        shutdown,
        drain_started: &drain_started,
        watchdog: watchdog.as_ref(),
        spill_threshold: config.spill_threshold,
        program_path: if config.template.is_shell() { None } else { config.program_path.as_deref() },
    };
    let window = (jobs * 4).max(64);
    let (credits_tx, credits_rx) = cb::bounded::<()>(window);
    let (tasks_tx, tasks_rx) = cb::bounded::<Queued>(jobs);
    let (events_tx, events_rx) = cb::unbounded::<Event>();
    let journaling = journal.is_some();

    let (mut summary, journal_error, read, input_error) = std::thread::scope(|scope| {
        let output = OutputThread::new(
            OutputConfig {
                keep_order: config.keep_order,
                shutdown,
                observer,
                credits: config.keep_order.then(|| credits_rx.clone()),
            },
            stdout,
            stderr,
            journal,
        );
        let output = scope.spawn(move || output.run(events_rx));
        for slot in 1..=jobs {
            let (tasks, events) = (tasks_rx.clone(), events_tx.clone());
            let (config, limits, halt) = (&config, &limits, &halt);
            scope.spawn(move || run_slot(slot, config, limits, halt, journaling, tasks, events, observer));
        }
        drop(tasks_rx);

        // The feeder: read, skip what the joblog says is done, and queue the rest.
        let mut read = 0u64;
        let mut input_error = None;
        for input in inputs {
            if shutdown.is_tripped() || halt.closed() {
                break;
            }
            let input = match input {
                Ok(input) => input,
                Err(err) => {
                    input_error = Some(format!("reading input after {read} records: {err}"));
                    break;
                }
            };
            read += 1;
            let seq = read;
            if config.keep_order && credits_tx.send(()).is_err() {
                break;
            }
            // Occurrences identify repeated inputs in the joblog; counted only when journaling.
            let mut occurrence = 0;
            if let Some(ledger) = ledger.as_mut() {
                let (nth, skip) = ledger.admit(&input.identity());
                if skip {
                    let _ = events_tx.send(Event::Skipped(seq));
                    continue;
                }
                occurrence = nth;
            }
            if let Err(cb::SendError(queued)) = tasks_tx.send(Queued { seq, occurrence, input }) {
                let _ = events_tx.send(Event::NotRun(queued.seq));
            }
        }
        drop(tasks_tx);
        drop(events_tx);
        // The output thread only panics on a bug in muster; let it surface.
        let (summary, journal_error) = match output.join() {
            Ok(result) => result,
            Err(payload) => std::panic::resume_unwind(payload),
        };
        (summary, journal_error, read, input_error)
    });
    drop(watchdog);
    if let Some(err) = journal_error {
        return Err(err.into());
    }
    summary.read = read;
    summary.jobs = jobs;
    summary.wall = started.elapsed();
    summary.input_error = input_error;
    summary.stopped_level = Some(shutdown.level());
    summary.halted = halt.reached.load(Ordering::SeqCst);
    Ok(summary)
}

/// A task waiting for a slot.
struct Queued {
    seq: Seq,
    /// Which occurrence of this input it is (0 when not journaling).
    occurrence: u32,
    input: Input,
}

/// One slot's loop: take tasks, run them (with retries), report each.
#[allow(clippy::too_many_arguments)]
fn run_slot(
    slot: usize,
    config: &FarmConfig,
    limits: &Limits<'_>,
    halt: &HaltGate,
    journaling: bool,
    tasks: cb::Receiver<Queued>,
    events: cb::Sender<Event>,
    observer: &dyn Observer,
) {
    for Queued { seq, occurrence, input } in tasks {
        if limits.shutdown.is_tripped() || halt.closed() {
            let _ = events.send(Event::NotRun(seq));
            continue;
        }
        observer.task_started();
        let tag = config.tag.then(|| [input.display(), b"\t".to_vec()].concat());
        let argv = config.template.render(&input.values, seq, slot);
        let mut attempt_number = 0;
        loop {
            attempt_number += 1;
            let env = [
                ("MUSTER_TASK", seq.to_string()),
                ("MUSTER_ATTEMPT", attempt_number.to_string()),
                ("MUSTER_WORKER", slot.to_string()),
            ];
            let mut forward = |stream, line| {
                let _ = events.send(Event::Line { stream, tag: tag.clone(), line });
            };
            let on_line: Option<&mut dyn FnMut(Stream, Vec<u8>)> = match config.output {
                OutputMode::LineBuffer => Some(&mut forward),
                OutputMode::Group => None,
            };
            let attempt = exec::run_attempt(&argv, &env, limits, on_line);
            let (outcome, stopped) = classify(&attempt.ending, config.timeout);
            let retry = !outcome.is_done()
                && !stopped
                && attempt_number <= config.retries
                && !limits.shutdown.is_tripped()
                && !halt.closed();
            let record = journaling.then(|| Record {
                seq,
                host: ":".into(),
                start: attempt.start.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
                runtime: attempt.runtime.as_secs_f64(),
                send: 0,
                receive: attempt.stdout.len() + attempt.stderr.len(),
                exitval: exit_value(&attempt.ending),
                signal: signal_number(&attempt.ending),
                command: argv.iter().map(|a| a.as_encoded_bytes()).collect::<Vec<_>>().join(&b' '),
                outcome: match (&outcome, stopped, retry) {
                    (Outcome::Done, _, _) => RecordOutcome::Done,
                    (_, true, _) => RecordOutcome::Stopped,
                    (_, _, true) => RecordOutcome::Retry,
                    (Outcome::TimedOut(_), _, _) => RecordOutcome::TimedOut,
                    _ => RecordOutcome::Failed,
                },
                attempt: attempt_number,
                occurrence,
                input: input.identity(),
            });
            if retry {
                if let Some(record) = record {
                    let _ = events.send(Event::Retry(record));
                }
                continue;
            }
            let note = match &attempt.ending {
                Ending::StartFailed(err) => Some(format!(
                    "muster: task {seq}: cannot run '{}': {err}",
                    argv.first().map_or(String::new(), |p| p.to_string_lossy().into_owned())
                )),
                _ => None,
            };
            let finished = Finished {
                seq,
                tag: tag.clone(),
                outcome,
                stopped,
                stdout: attempt.stdout,
                stderr: attempt.stderr,
                note,
                runtime: attempt.runtime,
                record,
            };
            if !stopped {
                halt.record(&finished.outcome, limits.shutdown);
            }
            let _ = events.send(Event::Finished(Box::new(finished)));
            break;
        }
    }
}

/// The outcome of an attempt, and whether a shutdown stopped it.
fn classify(ending: &Ending, timeout: Option<Duration>) -> (Outcome, bool) {
    let from_status = |status: &std::process::ExitStatus| match (status.code(), status.signal()) {
        (Some(0), _) => Outcome::Done,
        (Some(code), _) => Outcome::Failed(Failure::Exit(code)),
        (None, Some(signal)) => Outcome::Failed(Failure::Signal(signal)),
        (None, None) => Outcome::Failed(Failure::Exit(-1)),
    };
    match ending {
        Ending::Exited(status) => (from_status(status), false),
        Ending::TimedOut(_) => (Outcome::TimedOut(timeout.unwrap_or_default()), false),
        Ending::Stopped(status) => (from_status(status), !status.success()),
        Ending::StartFailed(err) => (Outcome::Failed(Failure::Start(err.to_string())), false),
    }
}

fn exit_value(ending: &Ending) -> i32 {
    match ending {
        Ending::Exited(s) | Ending::TimedOut(s) | Ending::Stopped(s) => s.code().unwrap_or(0),
        Ending::StartFailed(_) => -1,
    }
}

fn signal_number(ending: &Ending) -> i32 {
    match ending {
        Ending::Exited(s) | Ending::TimedOut(s) | Ending::Stopped(s) => s.signal().unwrap_or(0),
        Ending::StartFailed(_) => 0,
    }
}

/// `--dry-run`: print each command line (shell-quoted where needed) instead of running it.
fn dry_run(config: &FarmConfig, inputs: Inputs, mut stdout: Box<dyn Write + Send + '_>) -> Summary {
    let mut summary = Summary { jobs: config.jobs, ..Summary::default() };
    for input in inputs {
        let input = match input {
            Ok(input) => input,
            Err(err) => {
                summary.input_error = Some(format!("reading input after {} records: {err}", summary.read));
                break;
            }
        };
        summary.read += 1;
        summary.not_run += 1;
        let argv = config.template.render(&input.values, summary.read, 1);
        let words: Vec<Vec<u8>> = argv.iter().map(|a| quote_if_needed(a.as_encoded_bytes())).collect();
        let mut line = words.join(&b' ');
        line.push(b'\n');
        if let Err(err) = stdout.write_all(&line) {
            summary.broken_pipe = err.kind() == std::io::ErrorKind::BrokenPipe;
            break;
        }
    }
    let _ = stdout.flush();
    summary
}

fn quote_if_needed(word: &[u8]) -> Vec<u8> {
    let plain =
        !word.is_empty() && word.iter().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(b));
    if plain {
        word.to_vec()
    } else {
        crate::process::template::shell_quote(word)
    }
}
