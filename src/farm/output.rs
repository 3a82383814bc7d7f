//! The farm's single output thread: prints each task's output whole (or line by line), in
//! input order when asked, writes the joblog, and counts outcomes.
//!
//! Every task read ends here with exactly one terminal event — finished, not run, or skipped
//! by a resume — so the counts in the [`Summary`](super::Summary) always add up. A task's final
//! joblog record is written after its output, so a crash between the two re-runs the task on
//! resume rather than losing its output (at-least-once execution, exactly-once records).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use crossbeam_channel as cb;

use super::exec::{write_tagged, Capture, Stream};
use super::{Observer, Summary};
use crate::journal::{JournalError, JournalWriter, Record};
use crate::shutdown::Shutdown;
use crate::task::{Outcome, Seq};

/// A finished task, ready to print.
pub(crate) struct Finished {
    pub(crate) seq: Seq,
    /// `--tag` prefix (the input and a tab), when tagging.
    pub(crate) tag: Option<Vec<u8>>,
    pub(crate) outcome: Outcome,
    /// Stopped by a shutdown rather than ending on its own.
    pub(crate) stopped: bool,
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
    /// A line for muster's own stderr (e.g. why the task could not start).
    pub(crate) note: Option<String>,
    pub(crate) runtime: Duration,
    pub(crate) record: Option<Record>,
}

pub(crate) enum Event {
    /// A complete line of a running task (line-buffered mode).
    Line {
        stream: Stream,
        tag: Option<Vec<u8>>,
        line: Vec<u8>,
    },
    /// A failed attempt that will be retried.
    Retry(Record),
    Finished(Box<Finished>),
    /// Read but never started, because of a shutdown or halt.
    NotRun(Seq),
    /// Already done according to the joblog being resumed.
    Skipped(Seq),
}

/// Settings the output thread needs.
pub(crate) struct OutputConfig<'a> {
    pub(crate) keep_order: bool,
    pub(crate) shutdown: &'a Shutdown,
    pub(crate) observer: &'a dyn Observer,
    /// In keep-order mode, one token per task between reading it and printing it.
    pub(crate) credits: Option<cb::Receiver<()>>,
}

enum Pending {
    Finished(Box<Finished>),
    Silent,
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
}

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
        }
    }

    /// Handles events until every sender is gone; returns the counts.
    pub(crate) fn run(mut self, events: cb::Receiver<Event>) -> (Summary, Option<JournalError>) {
        for event in events {
            match event {
                Event::Line { stream, tag, line } => {
                    let out = self.stream(stream);
                    let result = write_tagged(out, &line, tag.as_deref()).and_then(|()| out.flush());
                    self.check_write(stream, result);
                }
                Event::Retry(record) => self.journal(&record),
                Event::Finished(finished) => self.arrive(finished.seq, Pending::Finished(finished)),
                Event::NotRun(seq) => {
                    self.summary.not_run += 1;
                    self.arrive(seq, Pending::Silent);
                }
                Event::Skipped(seq) => {
                    self.summary.skipped += 1;
                    self.arrive(seq, Pending::Silent);
                }
            }
        }
        // Anything still held back (only possible if a sequence number never arrived, which
        // would be a bug) is printed rather than lost.
        for (_, pending) in std::mem::take(&mut self.reorder) {
            self.print(pending);
        }
        let _ = self.stdout.flush();
        let _ = self.stderr.flush();
        (self.summary, self.journal_error)
    }

    fn stream(&mut self, stream: Stream) -> &mut dyn Write {
        match stream {
            Stream::Stdout => &mut *self.stdout,
            Stream::Stderr => &mut *self.stderr,
        }
    }

    /// A write to our own stdout failing with a broken pipe means nobody reads any more: stop
    /// now, quietly. Other write errors are reported once.
    fn check_write(&mut self, stream: Stream, result: io::Result<()>) {
        let Err(err) = result else { return };
        if stream == Stream::Stdout && err.kind() == io::ErrorKind::BrokenPipe {
            if !self.summary.broken_pipe {
                self.summary.broken_pipe = true;
                self.config.shutdown.stop_now();
            }
        } else if self.summary.write_error.is_none() {
            self.summary.write_error = Some(format!("writing output: {err}"));
        }
    }

    fn arrive(&mut self, seq: Seq, pending: Pending) {
        if !self.config.keep_order {
            self.print(pending);
            return;
        }
        self.reorder.insert(seq, pending);
        while let Some(pending) = self.reorder.remove(&self.next_seq) {
            self.next_seq += 1;
            self.print(pending);
            if let Some(credits) = &self.config.credits {
                let _ = credits.try_recv();
            }
        }
    }

    fn print(&mut self, pending: Pending) {
        let Pending::Finished(mut finished) = pending else { return };
        if !self.summary.broken_pipe {
            let tag = finished.tag.as_deref();
            let result = finished.stdout.write_to(&mut *self.stdout, tag).and_then(|()| self.stdout.flush());
            self.check_write(Stream::Stdout, result);
            let mut result = finished.stderr.write_to(&mut *self.stderr, tag);
            if let Some(note) = &finished.note {
                result = result.and_then(|()| writeln!(self.stderr, "{note}"));
            }
            let result = result.and_then(|()| self.stderr.flush());
            self.check_write(Stream::Stderr, result);
        }
        if let Some(record) = &finished.record {
            self.journal(record);
        }
        self.count(&finished);
    }

    fn journal(&mut self, record: &Record) {
        if let Some(journal) = &mut self.journal {
            if let Err(err) = journal.write(record) {
                // Without a joblog, --resume cannot be exact: stop starting tasks.
                self.journal = None;
                self.journal_error = Some(err);
                self.config.shutdown.trip();
            }
        }
    }

    fn count(&mut self, finished: &Finished) {
        let summary = &mut self.summary;
        summary.task_time += finished.runtime;
        match &finished.outcome {
            Outcome::Done => summary.done += 1,
            Outcome::TimedOut(_) => summary.timed_out += 1,
            Outcome::Failed(_) if finished.stopped => summary.stopped += 1,
            Outcome::Failed(_) | Outcome::NotRun => summary.failed += 1,
        }
        self.config.observer.task_finished(&finished.outcome);
    }
}
