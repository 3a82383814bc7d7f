//! Tasks and their outcomes: the vocabulary every layer of muster shares.
//!
//! A task is one input with its sequence number ([`Seq`], 1-based, in input order; the engine's
//! tasks are [`crate::input::Input`]s). An [`Outcome`] is what finally became of a task. The
//! contract that the rest of the crate keeps is that every task that was read ends with exactly
//! one outcome: done, failed, timed out, or not run.
//!
//! This module holds plain data only; it never runs anything.

use std::fmt;
use std::time::Duration;

/// A task's position in its input, counted from 1.
pub type Seq = u64;

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
