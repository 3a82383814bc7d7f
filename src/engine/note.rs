//! What muster says about a task that did not succeed. A note is data — which task, shown how,
//! where it ran, what happened — rendered in one place, so nothing parses a message back: the
//! summary's list of failed tasks and a queue's dead-letter error are the same note rendered
//! without its prefix.

use std::fmt;
use std::time::Duration;

use crate::task::{Failure, Seq};

/// A task that did not succeed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The task's sequence number.
    pub seq: Seq,
    /// Its input as a message shows it (lossy UTF-8, shortened), when shown.
    pub input: Option<String>,
    /// The machine it ran on, when not this one (a queue's worker).
    pub host: Option<String>,
    /// What happened.
    pub what: What,
}

/// What happened to a task, as a note says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// Its program could not be started.
    CannotRun {
        /// The program, as the command line names it.
        program: String,
        /// Why.
        error: String,
    },
    /// It failed: how.
    Failed(Failure),
    /// It ran past the time limit.
    TimedOut(Duration),
}

impl Note {
    /// The task and what became of it, without muster's prefix: `task 7 (input): exited with
    /// status 3` — what the summary lists and a queue's dead letter carries.
    pub fn headline(&self) -> String {
        let mut text = format!("task {}", self.seq);
        if let Some(input) = &self.input {
            text.push_str(&format!(" ({input})"));
        }
        if let Some(host) = &self.host {
            text.push_str(&format!(" on {host}"));
        }
        text.push_str(": ");
        match &self.what {
            What::CannotRun { program, error } => text.push_str(&format!("cannot run '{program}': {error}")),
            What::Failed(failure) => text.push_str(&failure.to_string()),
            What::TimedOut(after) => text.push_str(&format!("timed out after {after:?}")),
        }
        text
    }
}

impl fmt::Display for Note {
    /// The line for muster's stderr.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "muster: {}", self.headline())?;
        if matches!(self.what, What::Failed(Failure::Output(_))) {
            write!(f, "; not recorded as done (--resume runs it again)")?;
        }
        Ok(())
    }
}

/// An input as a message shows it: lossy UTF-8 on one line (a newline or tab in it written
/// `\n`, `\t`, `\0`), at most 60 characters.
pub(crate) fn shown(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(input).replace('\n', "\\n").replace('\t', "\\t").replace('\0', "\\0");
    if text.chars().count() <= 60 {
        return text;
    }
    let cut: String = text.chars().take(59).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_renders_its_task_input_host_and_what_happened() {
        let note = Note {
            seq: 7,
            input: Some("a b".into()),
            host: Some("w1".into()),
            what: What::Failed(Failure::Exit(3)),
        };
        assert_eq!(note.headline(), "task 7 (a b) on w1: exited with status 3");
        assert_eq!(note.to_string(), "muster: task 7 (a b) on w1: exited with status 3");
        let lost =
            Note { seq: 2, input: None, host: None, what: What::Failed(Failure::Output("disk full".into())) };
        assert_eq!(lost.headline(), "task 2: output lost: disk full");
        assert!(lost.to_string().ends_with("; not recorded as done (--resume runs it again)"));
    }
}
