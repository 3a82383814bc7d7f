//! `muster run --persistent`: inputs streamed through long-lived worker processes (the
//! library's `persistent` module), with results printed one record per input.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use muster::farm::{Inputs, Source};
use muster::input::Link;
use muster::journal::{InputLedger, JournalWriter, Record, RecordOutcome};
use muster::persistent::{self, Attempt, PersistentConfig, Reply};
use muster::process::template::Template;
use muster::process::watchdog::Watchdog;
use muster::Failure;
use muster::{Seq, Shutdown};

use crate::args::RunArgs;
use crate::progress::Progress;
use crate::run::{
    announce_drain, check_program, resolve_jobs, stdout_writer, usage, watchdog_command, Fatal,
};

pub fn run(
    args: &RunArgs,
    template: &Template,
    command: Vec<OsString>,
    sources: Vec<Source>,
    links: &[Link],
    separator: u8,
    shutdown: &Shutdown,
) -> Result<u8, Fatal> {
    if template.substitutes() {
        return Err(usage(
            "replacement strings are not used with --persistent: each input goes to a worker's stdin",
        ));
    }
    let program = check_program(&command[0])?;
    let inputs =
        Inputs::linked(sources, links, separator).map_err(|err| usage(format!("reading inputs: {err}")))?;
    let mut config = PersistentConfig::new(
        program,
        command[1..].to_vec(),
        resolve_jobs(args.jobs, inputs.known_total(), true),
    );
    config.window = args.window as usize;
    config.separator = separator;
    config.retries = args.retries;
    config.max_tasks_per_worker = args.max_tasks_per_worker;
    config.grace = args.grace;
    config.watchdog = watchdog_command().and_then(|command| Watchdog::start(command).ok()).map(Arc::new);

    config.timeout = args.timeout.filter(|limit| !limit.is_zero());
    config.halt = args.halt;
    config.known_total = inputs.known_total();
    let label = journal_label(&command);
    let (mut journal, mut ledger) = match &args.joblog {
        None => (None, None),
        Some(path) => {
            let (writer, resume) = JournalWriter::open(path, &label, args.resume_mode())
                .map_err(|err| usage(err.to_string()))?;
            (Some(writer), Some(InputLedger::new(resume)))
        }
    };

    announce_drain(shutdown, args.grace);
    let known_total = inputs.known_total();

    // What is remembered of a task while it is in flight: only what --tag or the joblog need.
    let tasks: Arc<Mutex<HashMap<Seq, TaskMeta>>> = Arc::default();
    let input_error: Arc<Mutex<Option<String>>> = Arc::default();
    let (feeder_tasks, errors) = (tasks.clone(), input_error.clone());
    let interactive = io::stderr().is_terminal();
    let progress = (args.progress || (interactive && !args.no_progress))
        .then(|| Progress::new(known_total, interactive));
    let bar = progress.as_ref();
    // Messages on stderr hide the bar while they are printed.
    let note = |text: String| match bar {
        Some(bar) => bar.suspend(|| crate::say(&text)),
        None => crate::say(&text),
    };
    let remember = args.tag || journal.is_some();
    // --keep-order holds replies behind the oldest unanswered task: one credit per task from
    // when it is read until it is printed bounds what is held (and how far input runs ahead).
    let reorder_window = (config.workers * config.window * 4).max(1024);
    let (credits_tx, credits_rx) = crossbeam_channel::bounded::<()>(reorder_window);
    let keep_order = args.keep_order;
    let credit_shutdown = shutdown.clone();
    let (mut read, mut sent) = (0u64, 0u64);
    let skipped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let skips = skipped.clone();
    let skip_credits = credits_rx.clone();
    let records = inputs
        .map_while(move |input| match input {
            Ok(input) => Some(input),
            Err(err) => {
                *errors.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(format!("reading input: {err}"));
                None
            }
        })
        .map_while(move |input| {
            let credited = !keep_order
                || crossbeam_channel::select! {
                    send(credits_tx, ()) -> sent => sent.is_ok(),
                    recv(credit_shutdown.tripped()) -> _ => false,
                };
            credited.then_some(input)
        })
        .filter_map(move |input| {
            read += 1;
            // Occurrences tell repeated inputs apart in the joblog (as `muster run` does).
            let (identity, occurrence) = match ledger.as_mut() {
                Some(ledger) => {
                    let identity = input.identity();
                    let (occurrence, skip) = ledger.admit(&identity);
                    if skip {
                        if keep_order {
                            let _ = skip_credits.try_recv();
                        }
                        skips.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Some(bar) = bar {
                            bar.settled(true);
                        }
                        return None;
                    }
                    (identity, occurrence)
                }
                None => (Vec::new(), 0),
            };
            sent += 1;
            let record = input.into_display();
            if remember {
                let meta = TaskMeta { input_no: read, identity, occurrence, display: record.clone() };
                feeder_tasks.lock().unwrap_or_else(PoisonError::into_inner).insert(sent, meta);
            }
            Some(record)
        });

    let stdout = stdout_writer().map_err(|err| usage(format!("cannot use stdout: {err}")))?;
    // Buffered outside the bar's suspension, so the bar is hidden once per buffer, not per line.
    let out: Box<dyn Write> = match bar {
        Some(bar) => Box::new(io::BufWriter::with_capacity(64 * 1024, bar.writer(stdout))),
        None => Box::new(stdout),
    };
    let mut broken_pipe = false;
    let mut journal_error: Option<String> = None;
    let mut held: BTreeMap<Seq, (Reply, Attempt)> = BTreeMap::new();
    let mut next = 1;
    let started = Instant::now();
    let tagging = args.tag;
    // The first failed tasks, named for the summary.
    let mut failed_tasks: Vec<String> = Vec::new();
    let mut print = |seq: Seq, reply: Reply, attempt: Attempt, out: &mut dyn Write| {
        let meta =
            if remember { tasks.lock().unwrap_or_else(PoisonError::into_inner).remove(&seq) } else { None };
        if let Some(bar) = bar {
            if !matches!(reply, Reply::NotRun) {
                bar.settled(matches!(reply, Reply::Done(_)));
            }
        }
        if let (Some(writer), Some(meta)) = (journal.as_mut(), meta.as_ref()) {
            if let Some(record) = journal_record(&label, &reply, attempt, meta) {
                if let Err(err) = writer.write(&record) {
                    // Without the journal a resume would run finished tasks again: stop.
                    journal_error.get_or_insert_with(|| err.to_string());
                    shutdown.trip();
                }
            }
        }
        // Skipped inputs leave gaps: name a task by its place among all inputs.
        let seq = meta.as_ref().map_or(seq, |m| m.input_no);
        let tag = meta.filter(|_| tagging).map(|m| m.display);
        match reply {
            Reply::Done(mut record) if !broken_pipe => {
                record.push(separator);
                let written = match &tag {
                    Some(tag) => out.write_all(tag).and_then(|()| out.write_all(b"\t")),
                    None => Ok(()),
                }
                .and_then(|()| out.write_all(&record));
                if let Err(err) = written {
                    if err.kind() == io::ErrorKind::BrokenPipe {
                        broken_pipe = true;
                        shutdown.stop_now();
                    }
                }
            }
            Reply::Failed(_) | Reply::TimedOut => {
                let shown = tag.map(|t| format!(" ({})", String::from_utf8_lossy(&t))).unwrap_or_default();
                let (why, replaced) = match &reply {
                    Reply::Failed(failure) => (failure.to_string(), ""),
                    _ => {
                        let limit = args.timeout.map(|t| t.as_secs_f64()).unwrap_or_default();
                        (format!("no reply within {limit}s"), " (worker replaced)")
                    }
                };
                let named = format!("task {seq}{shown}: {why}");
                note(format!("muster: {named}, every attempt{replaced}"));
                if failed_tasks.len() < muster::farm::FAILURES_LISTED {
                    failed_tasks.push(named);
                }
            }
            _ => {}
        }
    };
    // Shared by the reply handler and the idle flush (both on this thread).
    let out = std::cell::RefCell::new(out);
    let summary = persistent::run_with_idle(
        &config,
        records,
        shutdown,
        |seq, reply, attempt| {
            let out = &mut **out.borrow_mut();
            if !keep_order {
                print(seq, reply, attempt, out);
                return;
            }
            held.insert(seq, (reply, attempt));
            while let Some((reply, attempt)) = held.remove(&next) {
                print(next, reply, attempt, out);
                let _ = credits_rx.try_recv();
                next += 1;
            }
        },
        |slot, line| note(format!("worker {slot}: {}", String::from_utf8_lossy(line))),
        // Nothing more to print right now: show what is buffered (a slow input stream).
        || {
            let _ = out.borrow_mut().flush();
        },
    );
    let mut out = out.into_inner();
    for (seq, (reply, attempt)) in std::mem::take(&mut held) {
        print(seq, reply, attempt, &mut *out);
    }
    let flushed = out.flush();
    drop(out);
    if let Some(bar) = bar {
        bar.finish();
    }
    broken_pipe |= flushed.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::BrokenPipe);
    if let Some(problem) = input_error.lock().unwrap_or_else(PoisonError::into_inner).take() {
        crate::say(format_args!("muster: {problem}"));
    }
    if let Some(problem) = &journal_error {
        crate::say(format_args!("muster: writing the joblog: {problem}"));
    }
    let skipped = skipped.load(std::sync::atomic::Ordering::Relaxed);
    if summary.protocol_breaks > 0 {
        note(format!(
            "muster: {} worker(s) sent a reply with no task waiting for it and were replaced \
             (the protocol is exactly one reply per input, in order)",
            summary.protocol_breaks
        ));
    }
    if summary.halted {
        note(format!(
            "muster: halted (--halt): {} tasks failed; the rest were not started",
            summary.failed + summary.timed_out
        ));
    }
    if (args.summary || (interactive && !args.no_summary)) && !broken_pipe {
        let timed_out =
            if summary.timed_out > 0 { format!(", {} timed out", summary.timed_out) } else { String::new() };
        let skipped_text =
            if skipped > 0 { format!(", {skipped} skipped (already done)") } else { String::new() };
        crate::say(format_args!(
            "muster: {} tasks: {} done, {} failed{timed_out}, {} not run{skipped_text}; wall {:.2}s; {} workers started, {} crashed",
            summary.read + skipped,
            summary.done,
            summary.failed,
            summary.not_run,
            started.elapsed().as_secs_f64(),
            summary.workers_started,
            summary.crashes
        ));
        if !failed_tasks.is_empty() {
            let more = (summary.failed + summary.timed_out).saturating_sub(failed_tasks.len() as u64);
            let more = if more > 0 { format!("; and {more} more") } else { String::new() };
            crate::say(format_args!("muster: failed: {}{more}", failed_tasks.join("; ")));
        }
    }
    if let Some(signal) = shutdown.signal() {
        return Ok(u8::try_from(128 + signal).unwrap_or(130));
    }
    if broken_pipe {
        return Ok(141);
    }
    Ok(match summary.failed + summary.timed_out {
        0 if journal_error.is_some() => 2,
        n @ 0..=100 => n as u8,
        _ => 101,
    })
}

/// What a task in flight needs for its tag and its joblog record.
struct TaskMeta {
    /// Its number among all inputs read (skipped ones included), as the joblog's Seq.
    input_no: u64,
    identity: Vec<u8>,
    occurrence: u32,
    display: Vec<u8>,
}

/// The joblog's command: a resume is refused when it changed.
fn journal_label(command: &[OsString]) -> String {
    let words: Vec<String> = command.iter().map(|w| w.to_string_lossy().into_owned()).collect();
    format!("{} (--persistent)", words.join(" "))
}

/// The joblog record for a settled task; none for a task never answered (a resume runs it).
fn journal_record(label: &str, reply: &Reply, attempt: Attempt, meta: &TaskMeta) -> Option<Record> {
    let (outcome, exitval, signal, receive) = match reply {
        Reply::Done(record) => (RecordOutcome::Done, 0, 0, record.len() as u64 + 1),
        Reply::Failed(Failure::Exit(code)) => (RecordOutcome::Failed, *code, 0, 0),
        Reply::Failed(Failure::Signal(signal)) => (RecordOutcome::Failed, -1, *signal, 0),
        Reply::Failed(_) => (RecordOutcome::Failed, -1, 0, 0),
        Reply::TimedOut => (RecordOutcome::TimedOut, -1, 9, 0),
        Reply::NotRun => return None,
    };
    let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Some(Record {
        seq: meta.input_no,
        host: ":".into(),
        start: end.saturating_sub(attempt.runtime).as_secs_f64(),
        runtime: attempt.runtime.as_secs_f64(),
        send: meta.display.len() as u64 + 1,
        receive,
        exitval,
        signal,
        command: label.as_bytes().to_vec(),
        outcome,
        attempt: attempt.number.max(1),
        occurrence: meta.occurrence,
        input: meta.identity.clone(),
        slot: u32::try_from(attempt.slot).unwrap_or(u32::MAX),
    })
}
