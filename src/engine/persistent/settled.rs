//! Tasks through persistent workers, settled by the engine's settle stage: printing (each reply
//! is its task's whole output, `--tag` prefixed), the bounded reorder window of
//! `--keep-order`, the joblog and `--resume`, counts, progress and failure messages are the
//! ones `muster run` uses, so the modes cannot drift apart. Workers' stderr lines pass
//! through the same stage, so they never cut into a result. Tasks from a source with receipts
//! (a queue) settle through its [`Settlement`](crate::source::Settlement) there too, which is
//! asked to flush whenever no reply is waiting, so a broker acknowledges in batches.
//!
//! The stage is shared by two threads behind a lock: the engine's feeder (inputs a resume
//! skips settle there at once, so a long run of them never waits for a reply) and the
//! caller's thread, which hands over replies.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel as cb;

use super::{Attempt, PersistentConfig, Reply, Summary};
use crate::engine::capture::Capture;
use crate::engine::note::{Note, What};
use crate::engine::settle::{Event, Finished, OutputConfig, OutputThread};
use crate::engine::{self, Io, RunError};
use crate::journal::{outcome_columns, Exit, InputLedger, JournalWriter, Record, ResumeMode};
use crate::source::{Receipt, Sourced};
use crate::task::{Failure, Outcome, Seq};

/// What a local run adds to the workers' configuration.
#[derive(Clone, Debug, Default)]
pub struct LocalRun {
    /// Print results in input order (holding back a bounded window).
    pub keep_order: bool,
    /// Prefix each result with its input and a tab.
    pub tag: bool,
    /// Where to keep the joblog.
    pub joblog: Option<PathBuf>,
    /// What a resume of that joblog skips.
    pub resume: Option<ResumeMode>,
}

/// What is kept of a task between sending it and settling it.
struct Sent {
    /// Its place among all inputs read (skipped ones included): the joblog's and the output
    /// stage's sequence number.
    input_no: Seq,
    identity: Vec<u8>,
    occurrence: u32,
    display: Vec<u8>,
    /// Its source's handle, if it came from one.
    receipt: Option<Receipt>,
}

/// Streams `inputs` through persistent workers and settles every task as `muster run` does
/// (and, for tasks with a receipt, through `io.settlement`). A task whose input holds the
/// record separator cannot be one record on a worker's stdin: it fails at once, saying so.
/// Returns the run's counts (as a spawned run's) and the workers' own.
pub fn run_local<I>(
    config: &PersistentConfig,
    run: &LocalRun,
    inputs: I,
    io: Io<'_, '_>,
) -> Result<(engine::Summary, Summary), RunError>
where
    I: Iterator<Item = io::Result<Sourced>> + Send,
{
    let started = Instant::now();
    let Io { stdout, stderr, shutdown, observer, settlement } = io;
    let label = journal_label(config);
    let (journal, ledger) = match &run.joblog {
        None => (None, None),
        Some(path) => {
            let (writer, resume) = JournalWriter::open(path, &label, run.resume)?;
            (Some(writer), Some(InputLedger::new(resume)))
        }
    };
    let journaling = journal.is_some();
    // A settlement that carries output gets each task's record.
    let recording = journaling || settlement.carries_output();
    // Without a joblog, a tag or receipts nothing needs keeping per task while the engine's
    // numbers are the inputs' own; from the first input where that stops being so (a refused
    // one, a receipt), tasks are kept. Replies of tasks not kept have their input's number.
    let remembering = AtomicBool::new(journaling || run.tag);
    // --keep-order holds replies behind the oldest unanswered task: one credit per input from
    // when it is read until it is printed bounds what is held (and how far input runs ahead).
    let reorder_window = (config.workers * config.window * 4).max(1024);
    let (credits_tx, credits_rx) = cb::bounded::<()>(reorder_window);
    let output = OutputThread::new(
        OutputConfig {
            keep_order: run.keep_order,
            shutdown,
            observer,
            credits: run.keep_order.then(|| credits_rx.clone()),
            settlement,
        },
        stdout,
        stderr,
        journal,
    )
    .flush_when_idle();
    let output = Mutex::new(output);
    let stage = || output.lock().unwrap_or_else(PoisonError::into_inner);
    let sent: Mutex<HashMap<Seq, Sent>> = Mutex::default();
    let read_error: Mutex<Option<String>> = Mutex::default();
    // Inputs read, skipped ones included (written by the feeder, read once it is over).
    let read = AtomicU64::new(0);
    let records = {
        let (sent, read_error, read, stage, remembering) = (&sent, &read_error, &read, &stage, &remembering);
        let label = &label;
        let mut ledger = ledger;
        let mut engine_seq: Seq = 0;
        inputs
            .map_while(move |input| match input {
                Ok(input) => Some(input),
                Err(err) => {
                    let why = format!("reading input after {} records: {err}", read.load(Ordering::Relaxed));
                    *read_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
                    None
                }
            })
            .map_while(move |input| {
                let credited = !run.keep_order
                    || cb::select! {
                        send(credits_tx, ()) -> sent => sent.is_ok(),
                        recv(shutdown.tripped()) -> _ => false,
                    };
                credited.then_some(input)
            })
            .filter_map(move |Sourced { input, receipt }| {
                let input_no = read.fetch_add(1, Ordering::Relaxed) + 1;
                let (identity, occurrence) = match ledger.as_mut() {
                    Some(ledger) => {
                        let identity = input.identity();
                        let (occurrence, skip) = ledger.admit(&identity);
                        if skip {
                            stage().handle(Event::Skipped(input_no, receipt));
                            return None;
                        }
                        (identity, occurrence)
                    }
                    None => (Vec::new(), 0),
                };
                let display = input.into_display();
                if display.contains(&config.separator) {
                    let task = Sent { input_no, identity, occurrence, display, receipt };
                    stage().handle(refused(config, run, label, recording, task));
                    return None;
                }
                engine_seq += 1;
                if receipt.is_some() || engine_seq != input_no {
                    remembering.store(true, Ordering::Release);
                }
                if remembering.load(Ordering::Acquire) {
                    let task = Sent { input_no, identity, occurrence, display: display.clone(), receipt };
                    sent.lock().unwrap_or_else(PoisonError::into_inner).insert(engine_seq, task);
                }
                Some(display)
            })
    };
    let timeout = config.timeout.unwrap_or_default();
    // This thread keeps the stage locked from one idle moment to the next (replies come in
    // bursts); it lets go before it waits, so the feeder is never held up for long.
    let held = RefCell::new(None);
    let hold = || std::cell::RefMut::map(held.borrow_mut(), |held| &mut **held.get_or_insert_with(stage));
    // A queue's task whose lease passed on: the worker holding it here is stopped.
    let taken_back = |seq: Seq| {
        let sent = sent.lock().unwrap_or_else(PoisonError::into_inner);
        sent.get(&seq)
            .and_then(|task| task.receipt.as_ref())
            .is_some_and(|receipt| settlement.revoked(receipt))
    };
    let revocable = settlement.revocable();
    let workers = super::run_engine(
        config,
        records,
        shutdown,
        |seq, reply, attempt| {
            let kept = match remembering.load(Ordering::Acquire) {
                true => sent.lock().unwrap_or_else(PoisonError::into_inner).remove(&seq),
                false => None,
            };
            let task = kept.unwrap_or_else(|| Sent {
                input_no: seq,
                identity: Vec::new(),
                occurrence: 0,
                display: Vec::new(),
                receipt: None,
            });
            let event = settle(config, run, &label, recording, timeout, task, reply, attempt);
            hold().handle(event);
        },
        |seq, how, attempt| {
            if !recording {
                return;
            }
            let record = {
                let sent = sent.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(task) = sent.get(&seq) else { return };
                let outcome = match how {
                    Reply::Failed(failure) => Outcome::Failed(failure),
                    _ => Outcome::TimedOut(timeout),
                };
                journal_record(&label, &outcome, 0, true, attempt, task)
            };
            hold().handle(Event::Retry(record));
        },
        |slot, line| {
            let mut text = format!("worker {slot}: ").into_bytes();
            text.extend_from_slice(line);
            hold().say(&text);
        },
        || {
            hold().idle();
            held.borrow_mut().take();
        },
        revocable.then_some(&taken_back as super::Revoked<'_>),
    );
    drop(held.into_inner());
    let output = output.into_inner().unwrap_or_else(PoisonError::into_inner);
    let (mut summary, journal_error) = output.finish();
    if let Some(err) = journal_error {
        return Err(err.into());
    }
    summary.read = read.into_inner();
    summary.jobs = config.workers;
    summary.wall = started.elapsed();
    summary.input_error = read_error.into_inner().unwrap_or_else(PoisonError::into_inner);
    summary.stopped_level = Some(shutdown.level());
    summary.halted = workers.halted;
    Ok((summary, workers))
}

/// The output stage's event for a task's reply.
#[allow(clippy::too_many_arguments)]
fn settle(
    config: &PersistentConfig,
    run: &LocalRun,
    label: &str,
    recording: bool,
    timeout: Duration,
    task: Sent,
    reply: Reply,
    attempt: Attempt,
) -> Event {
    let (outcome, mut stdout) = match reply {
        Reply::NotRun => return Event::NotRun(task.input_no, task.receipt),
        Reply::Done(record) => (Outcome::Done, record),
        Reply::Failed(failure) => (Outcome::Failed(failure), Vec::new()),
        Reply::TimedOut => (Outcome::TimedOut(timeout), Vec::new()),
    };
    if outcome.is_done() {
        stdout.push(config.separator);
    }
    let tag = run.tag.then(|| [task.display.as_slice(), b"\t"].concat());
    let what = match &outcome {
        Outcome::TimedOut(after) => Some(What::TimedOut { after: *after, worker_replaced: true }),
        Outcome::Failed(failure) => Some(What::Failed { failure: failure.clone(), every_attempt: true }),
        Outcome::Done | Outcome::NotRun => None,
    };
    let input = run.tag.then(|| String::from_utf8_lossy(&task.display).into_owned());
    let note = what.map(|what| Note { seq: task.input_no, input, host: None, what });
    let record =
        recording.then(|| journal_record(label, &outcome, stdout.len() as u64, false, attempt, &task));
    Event::Finished(Box::new(Finished {
        seq: task.input_no,
        receipt: task.receipt,
        values: None,
        tag,
        outcome,
        stopped: false,
        stdout: Capture::holding(stdout),
        stderr: Capture::new(0),
        note,
        runtime: attempt.runtime,
        record,
    }))
}

/// The event for a task refused before any worker saw it: its input holds the separator.
fn refused(config: &PersistentConfig, run: &LocalRun, label: &str, recording: bool, task: Sent) -> Event {
    let separator = if config.separator == b'\n' { "a newline" } else { "NUL" };
    let failure = Failure::Start(format!(
        "its input holds the record separator ({separator}), so it cannot be one record on a worker's stdin"
    ));
    let outcome = Outcome::Failed(failure.clone());
    let shown = String::from_utf8_lossy(&task.display).replace('\n', "\\n");
    let what = What::Failed { failure, every_attempt: false };
    let note = Note { seq: task.input_no, input: Some(shown), host: None, what };
    let record = recording.then(|| journal_record(label, &outcome, 0, false, Attempt::never(), &task));
    Event::Finished(Box::new(Finished {
        seq: task.input_no,
        receipt: task.receipt,
        values: None,
        tag: run.tag.then(|| [task.display.as_slice(), b"\t"].concat()),
        outcome,
        stopped: false,
        stdout: Capture::new(0),
        stderr: Capture::new(0),
        note: Some(note),
        runtime: Duration::ZERO,
        record,
    }))
}

/// The joblog's command (a resume is refused when it changed), also a broker result's.
fn journal_label(config: &PersistentConfig) -> String {
    let mut words = vec![config.program.to_string_lossy().into_owned()];
    words.extend(config.args.iter().map(|arg| arg.to_string_lossy().into_owned()));
    format!("{} (--persistent)", words.join(" "))
}

/// The joblog record of an attempt whose reply was `receive` bytes (`retry`: a charged
/// attempt that failed, its task running again), in the columns every executor writes.
fn journal_record(
    label: &str,
    outcome: &Outcome,
    receive: u64,
    retry: bool,
    attempt: Attempt,
    task: &Sent,
) -> Record {
    let exit = attempt.worker_status.as_ref().map_or(Exit::Unknown, Exit::of);
    let (recorded, exitval, signal) = outcome_columns(outcome, exit, false, retry);
    let end = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Record {
        seq: task.input_no,
        host: ":".into(),
        start: end.saturating_sub(attempt.runtime).as_secs_f64(),
        runtime: attempt.runtime.as_secs_f64(),
        // Bytes written to the worker's stdin for it: the record and its separator.
        send: if attempt.number == 0 { 0 } else { task.display.len() as u64 + 1 },
        receive,
        exitval,
        signal,
        command: label.as_bytes().to_vec(),
        outcome: recorded,
        attempt: attempt.number.max(1),
        occurrence: task.occurrence,
        input: task.identity.clone(),
        slot: u32::try_from(attempt.slot).unwrap_or(u32::MAX),
    }
}
