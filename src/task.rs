//! Tasks and their outcomes: the vocabulary every layer of muster shares.
//!
//! A [`Task`] is one input together with its sequence number (1-based, in input order) and its
//! [`Provenance`] (where it was read from). An [`Outcome`] is what finally became of a task.
//! The contract that the rest of the crate keeps is that every task that was read ends with
//! exactly one outcome: done, failed, timed out, or not run.
//!
//! This module holds plain data only; it never runs anything.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A task's position in its input, counted from 1.
pub type Seq = u64;

/// Where a task's input came from, such as `stdin:3` or `inputs.txt:12`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Provenance {
    /// The name of the source (`stdin`, a file name, `:::`, or a caller-chosen label).
    pub source: Arc<str>,
    /// The record's position within that source, counted from 1.
    pub index: u64,
}

impl Provenance {
    /// Builds the provenance of record `index` (1-based) of `source`.
    pub fn new(source: impl Into<Arc<str>>, index: u64) -> Self {
        Provenance { source: source.into(), index }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.index)
    }
}

/// One unit of work: an input with its sequence number and provenance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task<I> {
    /// Position in the overall input, 1-based. Unique within a run.
    pub seq: Seq,
    /// Where the input was read from.
    pub provenance: Provenance,
    /// The input itself. For process tasks this is raw bytes, never assumed to be UTF-8.
    pub input: I,
}

impl<I> Task<I> {
    /// Builds a task.
    pub fn new(seq: Seq, provenance: Provenance, input: I) -> Self {
        Task { seq, provenance, input }
    }

    /// Replaces the input, keeping the sequence number and provenance.
    pub fn map<J>(self, f: impl FnOnce(I) -> J) -> Task<J> {
        Task { seq: self.seq, provenance: self.provenance, input: f(self.input) }
    }
}

/// Why a task failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A process exited with this non-zero status.
    Exit(i32),
    /// A process was killed by this signal number.
    Signal(i32),
    /// A closure panicked; the panic message, or a placeholder when it was not a string.
    Panic(String),
    /// The task could not be started at all (command not found, spawn error, ...).
    Start(String),
    /// The task ran, but its output could not be captured or written (a full disk, a closed
    /// device), so it is not done: a resume runs it again.
    Output(String),
    /// Every attempt's holder stopped answering (a broker's worker died or froze each time).
    Abandoned(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Exit(code) => write!(f, "exited with status {code}"),
            Failure::Signal(sig) => write!(f, "killed by signal {sig}"),
            Failure::Panic(msg) => write!(f, "panicked: {msg}"),
            Failure::Start(msg) => write!(f, "could not start: {msg}"),
            Failure::Output(msg) => write!(f, "output lost: {msg}"),
            Failure::Abandoned(msg) => write!(f, "abandoned: {msg}"),
        }
    }
}

/// What finally became of a task. Every task that was read ends with exactly one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The task ran to completion successfully.
    Done,
    /// The task ran and failed.
    Failed(Failure),
    /// The task ran past its time limit and was stopped.
    TimedOut(Duration),
    /// The task was never started, because shutdown came first.
    NotRun,
}

impl Outcome {
    /// True for [`Outcome::Done`].
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done => f.write_str("done"),
            Outcome::Failed(failure) => write!(f, "failed: {failure}"),
            Outcome::TimedOut(after) => write!(f, "timed out after {after:?}"),
            Outcome::NotRun => f.write_str("not run"),
        }
    }
}

/// Turns a panic payload into a readable message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_displays_as_source_colon_index() {
        assert_eq!(Provenance::new("stdin", 3).to_string(), "stdin:3");
    }

    #[test]
    fn map_keeps_sequence_and_provenance() {
        let task = Task::new(7, Provenance::new("a.txt", 2), "x").map(str::len);
        assert_eq!((task.seq, task.provenance.to_string(), task.input), (7, "a.txt:2".into(), 1));
    }

    #[test]
    fn panic_message_reads_str_and_string_payloads() {
        let caught = std::panic::catch_unwind(|| panic!("boom {}", 1)).expect_err("panics");
        assert_eq!(panic_message(caught.as_ref()), "boom 1");
        let caught = std::panic::catch_unwind(|| panic!("plain")).expect_err("panics");
        assert_eq!(panic_message(caught.as_ref()), "plain");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(5u8)).expect_err("panics");
        assert_eq!(panic_message(caught.as_ref()), "non-string panic payload");
    }

    #[test]
    fn outcomes_describe_themselves() {
        assert_eq!(Outcome::Failed(Failure::Exit(3)).to_string(), "failed: exited with status 3");
        assert_eq!(Outcome::NotRun.to_string(), "not run");
        assert!(Outcome::Done.is_done());
    }
}
