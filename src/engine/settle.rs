//! The engine's settle stage, on one thread: prints each task's output whole (or line by line), in
//! input order when asked, writes the joblog, and counts outcomes.
//!
//! Every task read ends here with exactly one terminal event — finished, not run, or skipped
//! by a resume — so the counts in the [`Summary`](super::Summary) always add up. A task's final
//! joblog record is written after its output, so a crash between the two re-runs the task on
//! resume rather than losing its output (at-least-once execution, exactly-once records).
//!
//! A task whose output could not be written (a full disk, a closed pipe) is not done: it is
//! recorded `lost`, counted as failed and named on stderr, so `--resume` runs it again.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::time::Duration;

use crossbeam_channel as cb;

use super::capture::{write_tagged, Capture, Stream};
use super::note::Note;
use super::{Observer, Summary};
use crate::journal::{JournalError, JournalWriter, Record, RecordOutcome};
use crate::shutdown::Shutdown;
use crate::source::{Completion, Receipt, Settled, Settlement};
use crate::task::{Failure, Outcome, Seq};

/// A finished task, ready to print. What most tasks have none of is kept apart, in one box
/// ([`More`]): a finished task crosses from its loop to this thread in two cache lines where
/// it took four (what crosses between CPUs per task is most of a persistent run's cost).
pub(crate) struct Finished {
    pub(crate) seq: Seq,
    pub(crate) outcome: Outcome,
    /// Stopped by a shutdown rather than ending on its own.
    pub(crate) stopped: bool,
    pub(crate) stdout: Capture,
    pub(crate) runtime: Duration,
    more: Option<Box<More>>,
}

/// What a finished task may carry beside its output and outcome; none of it, most often.
#[derive(Default)]
pub(crate) struct More {
    /// Its source's handle, settled once its record is written.
    pub(crate) receipt: Option<Receipt>,
    /// The input's values, with `--results` (they name its folder).
    pub(crate) values: Option<Vec<Vec<u8>>>,
    /// `--tag` prefix (the input and a tab), when tagging.
    pub(crate) tag: Option<Vec<u8>>,
    /// Its stderr, when it wrote any.
    pub(crate) stderr: Option<Capture>,
    /// What muster says of it on stderr, when it did not succeed.
    pub(crate) note: Option<Note>,
    /// Its joblog record, when one is kept (or its source wants it).
    pub(crate) record: Option<Record>,
}

impl More {
    /// Whether any of these parts holds something (an empty stderr holds nothing): whether
    /// [`More::boxed`] is wanted. Asked first, so the plain case moves none of them.
    pub(crate) fn any(
        receipt: &Option<Receipt>,
        values: &Option<Vec<Vec<u8>>>,
        tag: &Option<Vec<u8>>,
        stderr: &Capture,
        note: &Option<Note>,
        record: &Option<Record>,
    ) -> bool {
        receipt.is_some()
            || values.is_some()
            || tag.is_some()
            || stderr.len() > 0
            || note.is_some()
            || record.is_some()
    }

    /// These parts, in a box.
    pub(crate) fn boxed(
        receipt: Option<Receipt>,
        values: Option<Vec<Vec<u8>>>,
        tag: Option<Vec<u8>>,
        stderr: Capture,
        note: Option<Note>,
        record: Option<Record>,
    ) -> Box<More> {
        let stderr = (stderr.len() > 0).then_some(stderr);
        Box::new(More { receipt, values, tag, stderr, note, record })
    }
}

impl Finished {
    /// A finished task, and what else it carries if anything.
    pub(crate) fn new(
        seq: Seq,
        outcome: Outcome,
        stopped: bool,
        stdout: Capture,
        runtime: Duration,
        more: Option<Box<More>>,
    ) -> Finished {
        Finished { seq, outcome, stopped, stdout, runtime, more }
    }

    pub(crate) fn receipt(&self) -> Option<&Receipt> {
        self.more.as_ref().and_then(|more| more.receipt.as_ref())
    }

    pub(crate) fn note(&self) -> Option<&Note> {
        self.more.as_ref().and_then(|more| more.note.as_ref())
    }

    pub(crate) fn record(&self) -> Option<&Record> {
        self.more.as_ref().and_then(|more| more.record.as_ref())
    }

    fn stderr_len(&self) -> u64 {
        self.more.as_ref().and_then(|more| more.stderr.as_ref()).map_or(0, Capture::len)
    }

    /// Its stdout, and what else it carries (an empty set when nothing).
    fn parts_mut(&mut self) -> (&mut Capture, &mut More) {
        let more = self.more.get_or_insert_with(Box::default);
        (&mut self.stdout, more)
    }
}

pub(crate) enum Event {
    /// A complete line of a running task (line-buffered mode).
    Line {
        seq: Seq,
        stream: Stream,
        tag: Option<Vec<u8>>,
        line: Vec<u8>,
    },
    /// A failed attempt that will be retried.
    Retry(Box<Record>),
    Finished(Finished),
    /// Read but never started, because of a shutdown or halt.
    NotRun(Seq, Option<Receipt>),
    /// Already done according to the joblog being resumed.
    Skipped(Seq, Option<Receipt>),
    /// One of muster's own lines for stderr (a persistent worker's stderr line, named).
    Say(Vec<u8>),
    /// Events handed over together (a dispatcher's turn), in order.
    Batch(Vec<Event>),
}

/// Settings the output thread needs.
pub(crate) struct OutputConfig<'a> {
    pub(crate) keep_order: bool,
    pub(crate) shutdown: &'a Shutdown,
    pub(crate) observer: &'a dyn Observer,
    /// In keep-order mode, one token per task between reading it and printing it.
    pub(crate) credits: Option<cb::Receiver<()>>,
    /// Told when a task with a receipt settles.
    pub(crate) settlement: &'a dyn Settlement,
}

/// A line of a running task waiting for its turn: its stream, `--tag` prefix and bytes.
type HeldLine = (Stream, Option<Vec<u8>>, Vec<u8>);

// A finished task travels by value, in the dispatchers' batches: boxed, each cost an
// allocation on a dispatcher's thread and a free on this one (measured: 6 % more instructions
// per task through persistent workers).
#[allow(clippy::large_enum_variant)]
enum Pending {
    Finished(Finished),
    /// Not run (`false`) or skipped (`true`), with its receipt.
    Silent(Option<Receipt>, bool),
}

pub(crate) struct OutputThread<'a> {
    config: OutputConfig<'a>,
    stdout: Box<dyn Write + Send + 'a>,
    stderr: Box<dyn Write + Send + 'a>,
    journal: Option<JournalWriter>,
    journal_error: Option<JournalError>,
    reorder: BTreeMap<Seq, Pending>,
    next_seq: Seq,
    summary: Summary,
    /// Running tasks (line-buffered) with a line that could not be written, and why.
    lost_lines: HashSet<Seq>,
    /// Line-buffered with keep-order: lines of tasks whose turn has not come, in order.
    held_lines: BTreeMap<Seq, Vec<HeldLine>>,
    /// Why output cannot be written any more, once a write failed.
    output_failure: Option<String>,
    /// `--results`: where output goes instead of stdout and stderr.
    results: Option<super::results::Results>,
    /// Flush stdout after every task (else when idle).
    flush_each: bool,
    /// Tasks whose output is in stdout's buffer, not yet flushed: recorded at the next idle
    /// (lost if the flush fails), never before.
    unflushed: Vec<(Finished, bool)>,
    /// Their output's size.
    unflushed_bytes: u64,
}

/// Most tasks, and most bytes of output, printed and not yet flushed and recorded.
const UNFLUSHED_TASKS: usize = 1024;
const UNFLUSHED_BYTES: u64 = 64 * 1024;

impl<'a> OutputThread<'a> {
    pub(crate) fn new(
        config: OutputConfig<'a>,
        stdout: Box<dyn Write + Send + 'a>,
        stderr: Box<dyn Write + Send + 'a>,
        journal: Option<JournalWriter>,
    ) -> Self {
        OutputThread {
            config,
            stdout,
            stderr,
            journal,
            journal_error: None,
            reorder: BTreeMap::new(),
            next_seq: 1,
            summary: Summary::default(),
            lost_lines: HashSet::new(),
            held_lines: BTreeMap::new(),
            output_failure: None,
            results: None,
            flush_each: true,
            unflushed: Vec::new(),
            unflushed_bytes: 0,
        }
    }

    /// Keeps task output in `results` instead of printing it.
    pub(crate) fn with_results(mut self, results: Option<super::results::Results>) -> Self {
        self.results = results;
        self
    }

    /// Handles events until every sender is gone; returns the counts.
    pub(crate) fn run(mut self, events: cb::Receiver<Event>) -> (Summary, Option<JournalError>) {
        let linger = self.config.settlement.linger();
        for event in events.iter() {
            self.handle(event);
            if events.is_empty() {
                // What else ends within the settlement's linger joins this flush.
                let until = std::time::Instant::now() + linger;
                while !linger.is_zero() {
                    match events.recv_deadline(until) {
                        Ok(event) => self.handle(event),
                        Err(_) => break,
                    }
                }
                self.idle();
            }
        }
        self.finish()
    }

    /// Prints task output whole but flushes it only when [idle](Self::idle): for a stream of
    /// small results (persistent workers' replies) written many to a write call.
    pub(crate) fn flush_when_idle(mut self) -> Self {
        self.flush_each = false;
        self
    }

    /// Nothing more to handle right now: what is buffered goes out, and a settlement that
    /// batches sends its batch.
    pub(crate) fn idle(&mut self) {
        self.flush_printed();
        self.config.settlement.flush();
    }

    /// Flushes stdout and records the tasks whose output that flush carried (lost if it
    /// failed).
    fn flush_printed(&mut self) {
        if self.flush_each {
            return;
        }
        let result = self.stdout.flush();
        let flushed = self.check_write(Stream::Stdout, result);
        let mut unflushed = std::mem::take(&mut self.unflushed);
        for (finished, written) in &mut unflushed {
            self.record(finished, *written && flushed, None);
        }
        unflushed.clear();
        // The list's room is kept for the next burst.
        self.unflushed = unflushed;
        self.unflushed_bytes = 0;
    }

    /// Writes one of muster's own lines (a worker's stderr line, a note) to stderr.
    pub(crate) fn say(&mut self, line: &[u8]) {
        let _ = self.stderr.write_all(line).and_then(|()| self.stderr.write_all(b"\n"));
        let _ = self.stderr.flush();
    }

    /// Handles one event.
    pub(crate) fn handle(&mut self, event: Event) {
        match event {
            Event::Line { seq, stream, tag, line } => {
                // With keep-order, only the oldest unfinished task's lines flow live (as
                // in GNU parallel); the others wait for their turn.
                if self.config.keep_order && seq != self.next_seq {
                    self.held_lines.entry(seq).or_default().push((stream, tag, line));
                    return;
                }
                self.line(seq, stream, tag.as_deref(), &line);
            }
            Event::Retry(record) => {
                self.journal(&record);
            }
            Event::Say(line) => self.say(&line),
            Event::Batch(events) => {
                for event in events {
                    match event {
                        Event::Finished(finished) if !self.config.keep_order => self.print_finished(finished),
                        event => self.handle(event),
                    }
                }
            }
            // In any order: printed at once (not moved through the reorder window's type).
            Event::Finished(finished) if !self.config.keep_order => self.print_finished(finished),
            Event::Finished(finished) => self.arrive(finished.seq, Pending::Finished(finished)),
            Event::NotRun(seq, receipt) => {
                self.summary.not_run += 1;
                self.arrive(seq, Pending::Silent(receipt, false));
            }
            Event::Skipped(seq, receipt) => {
                self.summary.skipped += 1;
                self.config.observer.task_skipped();
                self.arrive(seq, Pending::Silent(receipt, true));
            }
        }
    }

    /// Prints what is still held back and returns the counts.
    pub(crate) fn finish(mut self) -> (Summary, Option<JournalError>) {
        // Anything still held back (only possible if a sequence number never arrived, which
        // would be a bug) is printed rather than lost.
        for (seq, lines) in std::mem::take(&mut self.held_lines) {
            for (stream, tag, line) in lines {
                self.line(seq, stream, tag.as_deref(), &line);
            }
        }
        for (_, pending) in std::mem::take(&mut self.reorder) {
            self.print(pending);
        }
        self.idle();
        let _ = self.stdout.flush();
        let _ = self.stderr.flush();
        (self.summary, self.journal_error)
    }

    /// Writes one line of a running task (line-buffered mode).
    fn line(&mut self, seq: Seq, stream: Stream, tag: Option<&[u8]>, line: &[u8]) {
        if self.output_failure.is_some() {
            self.lost_lines.insert(seq);
            return;
        }
        let out = self.stream(stream);
        let result = write_tagged(out, line, tag).and_then(|()| out.flush());
        if !self.check_write(stream, result) {
            self.lost_lines.insert(seq);
        }
    }

    /// Writes the held lines of the task whose turn it is now.
    fn release_lines(&mut self, seq: Seq) {
        for (stream, tag, line) in self.held_lines.remove(&seq).unwrap_or_default() {
            self.line(seq, stream, tag.as_deref(), &line);
        }
    }

    fn stream(&mut self, stream: Stream) -> &mut dyn Write {
        match stream {
            Stream::Stdout => &mut *self.stdout,
            Stream::Stderr => &mut *self.stderr,
        }
    }

    /// A write to our own stdout failing with a broken pipe means nobody reads any more: stop
    /// now, quietly. Other write errors are reported once and start no new task (their output
    /// would be lost too). False when the write failed: the task's output is lost. Failures
    /// on stderr are ignored.
    fn check_write(&mut self, stream: Stream, result: io::Result<()>) -> bool {
        let Err(err) = result else { return true };
        if stream == Stream::Stderr {
            // stderr carries diagnostics: a closed or full one costs them, not the run.
            return true;
        }
        self.output_failure
            .get_or_insert_with(|| format!("writing to muster's standard output failed: {err}"));
        if err.kind() == io::ErrorKind::BrokenPipe {
            if !self.summary.broken_pipe {
                self.summary.broken_pipe = true;
                self.config.shutdown.stop_now();
            }
        } else if self.summary.write_error.is_none() {
            self.summary.write_error = Some(format!("writing output: {err}; starting no new tasks"));
            self.config.shutdown.trip();
        }
        false
    }

    fn arrive(&mut self, seq: Seq, pending: Pending) {
        if !self.config.keep_order {
            self.print(pending);
            return;
        }
        self.reorder.insert(seq, pending);
        while let Some(pending) = self.reorder.remove(&self.next_seq) {
            // A finished task's held lines go out before its record and its successor's.
            self.release_lines(self.next_seq);
            self.next_seq += 1;
            self.print(pending);
            if let Some(credits) = &self.config.credits {
                let _ = credits.try_recv();
            }
        }
        // The new oldest task may have been running a while: its lines so far, then live.
        self.release_lines(self.next_seq);
    }

    fn print(&mut self, pending: Pending) {
        match pending {
            Pending::Finished(finished) => self.print_finished(finished),
            Pending::Silent(receipt, skipped) => {
                if let Some(receipt) = receipt {
                    let how = if skipped { Settled::Skipped } else { Settled::NotRun };
                    self.config.settlement.settled(&receipt, how);
                }
            }
        }
    }

    fn print_finished(&mut self, mut finished: Finished) {
        let mut written = self.lost_lines.is_empty() || !self.lost_lines.remove(&finished.seq);
        let mut carried = None;
        if finished.receipt().is_some() && self.config.settlement.carries_output() {
            // The output goes back to the source with the settlement, not to our stdout.
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let (out, more) = finished.parts_mut();
            let read = out.write_to(&mut stdout, None).and_then(|()| match &mut more.stderr {
                Some(err) => err.write_to(&mut stderr, None),
                None => Ok(()),
            });
            if let Err(err) = read {
                written = false;
                self.output_failure.get_or_insert_with(|| format!("reading captured output failed: {err}"));
            }
            if let Some(note) = finished.note() {
                let _ = writeln!(self.stderr, "{note}").and_then(|()| self.stderr.flush());
            }
            carried = Some((stdout, stderr));
        } else if let Some(results) = &mut self.results {
            let (out, more) = finished.parts_mut();
            let values = more.values.take().unwrap_or_default();
            let mut no_stderr = Capture::new(0);
            let err = more.stderr.as_mut().unwrap_or(&mut no_stderr);
            let outcome = match &more.record {
                Some(record) => results.write(record, &values, out, err),
                None => Ok(()),
            };
            if let Err(err) = outcome {
                written = false;
                self.output_failure.get_or_insert_with(|| format!("writing --results failed: {err}"));
                if self.summary.write_error.is_none() {
                    self.summary.write_error =
                        Some(format!("writing --results: {err}; starting no new tasks"));
                    self.config.shutdown.trip();
                }
            }
            if let Some(note) = finished.note() {
                let _ = writeln!(self.stderr, "{note}").and_then(|()| self.stderr.flush());
            }
        } else if self.output_failure.is_none() {
            let tag = finished.more.as_ref().and_then(|more| more.tag.as_deref());
            let mut result = finished.stdout.write_to(&mut *self.stdout, tag);
            if self.flush_each {
                result = result.and_then(|()| self.stdout.flush());
            }
            written &= self.check_write(Stream::Stdout, result);
            if let Some(more) = finished.more.as_deref_mut() {
                if let Some(err) = &mut more.stderr {
                    let result = err
                        .write_to(&mut *self.stderr, more.tag.as_deref())
                        .and_then(|()| self.stderr.flush());
                    self.check_write(Stream::Stderr, result);
                }
                if let Some(note) = &more.note {
                    let _ = writeln!(self.stderr, "{note}").and_then(|()| self.stderr.flush());
                }
            }
        } else {
            written = false;
        }
        if !self.flush_each && carried.is_none() {
            // Recorded once the buffer holding its output reaches stdout: at the next idle, or
            // once a buffer's worth is waiting (which bounds what is held).
            self.unflushed_bytes += finished.stdout.len();
            finished.stdout.release();
            self.unflushed.push((finished, written));
            if self.unflushed.len() >= UNFLUSHED_TASKS || self.unflushed_bytes >= UNFLUSHED_BYTES {
                self.flush_printed();
            }
            return;
        }
        self.record(&mut finished, written, carried);
    }

    /// Journals, settles and counts a task whose output was written (`written`) or lost.
    fn record(&mut self, finished: &mut Finished, written: bool, carried: Option<(Vec<u8>, Vec<u8>)>) {
        let has_output = finished.stdout.len() + finished.stderr_len() > 0;
        if !written && has_output && !finished.stopped {
            self.output_lost(finished);
        }
        if let (Some(receipt), Some((stdout, _)), true) =
            (finished.receipt(), &carried, finished.outcome.is_done())
        {
            if !self.config.settlement.keep(receipt, stdout) {
                self.output_lost(finished);
            }
        }
        let mut durable = true;
        if let Some(record) = finished.record() {
            durable = self.journal(record);
        }
        // Settled only once its record is on disk: a source acknowledging it then loses nothing.
        if let (Some(receipt), true) = (finished.receipt(), durable) {
            let (stdout, stderr) = carried.as_ref().map_or((&[][..], &[][..]), |(o, e)| (o, e));
            let how = if finished.stopped {
                Settled::Stopped
            } else {
                Settled::Finished(Completion {
                    outcome: &finished.outcome,
                    record: finished.record(),
                    stdout,
                    stderr,
                    note: finished.note(),
                })
            };
            self.config.settlement.settled(receipt, how);
        }
        self.count(finished);
    }

    /// The task's output could not be written: it is not done, and a resume runs it again.
    fn output_lost(&mut self, finished: &mut Finished) {
        let why = self.output_failure.clone().unwrap_or_else(|| "its output could not be written".into());
        if let Some(record) = finished.more.as_mut().and_then(|more| more.record.as_mut()) {
            record.outcome = RecordOutcome::Lost;
        }
        if !matches!(finished.outcome, Outcome::Failed(Failure::Output(_))) {
            finished.outcome = Outcome::Failed(Failure::Output(why));
        }
    }

    /// Journals `record`; false when a joblog is kept and the write failed.
    fn journal(&mut self, record: &Record) -> bool {
        if self.journal_error.is_some() {
            return false;
        }
        if let Some(journal) = &mut self.journal {
            if let Err(err) = journal.write(record) {
                // Without a joblog, --resume cannot be exact: stop starting tasks.
                self.journal = None;
                self.journal_error = Some(err);
                self.config.shutdown.trip();
                return false;
            }
        }
        true
    }

    fn count(&mut self, finished: &Finished) {
        let summary = &mut self.summary;
        let failed =
            matches!(finished.outcome, Outcome::Failed(_) | Outcome::TimedOut(_)) && !finished.stopped;
        if let (true, Some(note)) = (failed, finished.note()) {
            if summary.failed_tasks.len() < super::FAILURES_LISTED {
                summary.failed_tasks.push(note.clone());
            }
        }
        summary.task_time += finished.runtime;
        match &finished.outcome {
            Outcome::Done => summary.done += 1,
            Outcome::TimedOut(_) => summary.timed_out += 1,
            Outcome::Failed(_) | Outcome::NotRun if finished.stopped => summary.stopped += 1,
            Outcome::Failed(Failure::Output(_)) => {
                summary.failed += 1;
                summary.lost += 1;
            }
            Outcome::Failed(_) | Outcome::NotRun => summary.failed += 1,
        }
        self.config.observer.task_finished(&finished.outcome);
    }
}

#[cfg(test)]
mod tests {
    //! The settle stage on its own: events in, prints, counts and records out — no processes.

    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;
    use crate::engine::NoObserver;

    /// A writer whose bytes the test can read, or one that fails every write.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        fail: Option<io::ErrorKind>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(kind) = self.fail {
                return Err(io::Error::new(kind, "refused"));
            }
            self.bytes.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.bytes.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
        }
    }

    fn record(seq: Seq, outcome: RecordOutcome) -> Record {
        Record {
            seq,
            host: ":".into(),
            start: 0.0,
            runtime: 0.0,
            send: 0,
            receive: 0,
            exitval: 0,
            signal: 0,
            command: b"x".to_vec(),
            outcome,
            attempt: 1,
            occurrence: 1,
            input: seq.to_string().into_bytes(),
            slot: 1,
        }
    }

    fn finished(seq: Seq, outcome: Outcome, stdout: &str) -> Event {
        let mut capture = Capture::new(1 << 20);
        capture.push(stdout.as_bytes()).expect("in memory");
        let recorded = match outcome {
            Outcome::Done => RecordOutcome::Done,
            Outcome::TimedOut(_) => RecordOutcome::TimedOut,
            _ => RecordOutcome::Failed,
        };
        let more = More { record: Some(record(seq, recorded)), ..More::default() };
        Event::Finished(Finished::new(
            seq,
            outcome,
            false,
            capture,
            Duration::from_millis(seq),
            Some(Box::new(more)),
        ))
    }

    /// Runs the output thread over `events`; returns the summary, stdout, and the joblog's
    /// outcome column in order.
    fn settle(
        events: Vec<Event>,
        keep_order: bool,
        stdout: Sink,
        shutdown: &Shutdown,
    ) -> (Summary, String, Vec<String>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        let journal = JournalWriter::create(&path, "x").expect("joblog");
        let (tx, rx) = cb::unbounded();
        for event in events {
            tx.send(event).expect("queued");
        }
        drop(tx);
        let config = OutputConfig {
            keep_order,
            shutdown,
            observer: &NoObserver,
            credits: None,
            settlement: &crate::source::NoSettlement,
        };
        let output =
            OutputThread::new(config, Box::new(stdout.clone()), Box::new(Sink::default()), Some(journal));
        let (summary, error) = output.run(rx);
        assert!(error.is_none());
        let log = std::fs::read_to_string(&path).expect("read joblog");
        let outcomes = log.lines().skip(2).map(|l| l.split('\t').nth(9).unwrap_or("").to_owned()).collect();
        (summary, stdout.text(), outcomes)
    }

    #[test]
    fn keep_order_prints_in_input_order_whatever_order_tasks_end_in() {
        let events = vec![
            finished(3, Outcome::Done, "three\n"),
            Event::Skipped(2, None),
            finished(1, Outcome::Done, "one\n"),
            finished(4, Outcome::Done, "four\n"),
        ];
        let (_, out, outcomes) = settle(events, true, Sink::default(), &Shutdown::new());
        assert_eq!(out, "one\nthree\nfour\n");
        assert_eq!(outcomes, ["done", "done", "done"], "records follow the printing");
    }

    #[test]
    fn every_task_is_counted_exactly_once() {
        let stopped = {
            let Event::Finished(mut f) = finished(5, Outcome::Failed(Failure::Signal(15)), "") else {
                unreachable!()
            };
            f.stopped = true;
            Event::Finished(f)
        };
        let events = vec![
            finished(1, Outcome::Done, "a\n"),
            finished(2, Outcome::Failed(Failure::Exit(3)), ""),
            finished(3, Outcome::TimedOut(Duration::from_secs(1)), ""),
            finished(4, Outcome::Failed(Failure::Output("disk full".into())), "partial"),
            stopped,
            Event::NotRun(6, None),
            Event::Skipped(7, None),
        ];
        let (mut summary, _, _) = settle(events, false, Sink::default(), &Shutdown::new());
        summary.read = 7;
        assert_eq!(
            (
                summary.done,
                summary.failed,
                summary.lost,
                summary.timed_out,
                summary.stopped,
                summary.not_run,
                summary.skipped
            ),
            (1, 2, 1, 1, 1, 1, 1)
        );
        assert!(summary.accounts_for_everything());
    }

    #[test]
    fn output_that_cannot_be_written_is_recorded_lost_and_starts_nothing_new() {
        let full = Sink { fail: Some(io::ErrorKind::StorageFull), ..Sink::default() };
        let shutdown = Shutdown::new();
        let events = vec![finished(1, Outcome::Done, "one\n"), finished(2, Outcome::Done, "")];
        let (summary, _, outcomes) = settle(events, false, full, &shutdown);
        assert_eq!(outcomes, ["lost", "done"], "a task with nothing to print lost nothing");
        assert_eq!((summary.done, summary.failed, summary.lost), (1, 1, 1));
        assert!(summary.write_error.is_some());
        assert!(shutdown.is_tripped() && !shutdown.is_stopping_now(), "a drain: start nothing new");
    }

    #[test]
    fn a_closed_stdout_stops_now_and_what_it_could_not_print_is_lost() {
        let closed = Sink { fail: Some(io::ErrorKind::BrokenPipe), ..Sink::default() };
        let shutdown = Shutdown::new();
        let events = vec![finished(1, Outcome::Done, "one\n"), finished(2, Outcome::Done, "two\n")];
        let (summary, _, outcomes) = settle(events, false, closed, &shutdown);
        assert_eq!(outcomes, ["lost", "lost"]);
        assert!(summary.broken_pipe && summary.write_error.is_none());
        assert!(shutdown.is_stopping_now());
    }
}
