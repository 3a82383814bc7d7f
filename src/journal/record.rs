//! One joblog line: an attempt at a task, in GNU parallel's columns plus muster's own.

use std::fmt::Write;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::escape::{escape, escape_into, unescape};
use crate::task::{Failure, Outcome};

/// What became of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordOutcome {
    /// Succeeded (exit 0): the task is done.
    Done,
    /// Failed, and it will be retried.
    Retry,
    /// Failed for good.
    Failed,
    /// Ran past its time limit, for good.
    TimedOut,
    /// Stopped by a shutdown before it finished; a resume runs it again.
    Stopped,
    /// Ran, but its output could not be captured or written; a resume runs it again.
    Lost,
}

impl RecordOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RecordOutcome::Done => "done",
            RecordOutcome::Retry => "retry",
            RecordOutcome::Failed => "failed",
            RecordOutcome::TimedOut => "timeout",
            RecordOutcome::Stopped => "stopped",
            RecordOutcome::Lost => "lost",
        }
    }

    fn parse(text: &str) -> Option<RecordOutcome> {
        Some(match text {
            "done" => RecordOutcome::Done,
            "retry" => RecordOutcome::Retry,
            "failed" => RecordOutcome::Failed,
            "timeout" => RecordOutcome::TimedOut,
            "stopped" => RecordOutcome::Stopped,
            "lost" => RecordOutcome::Lost,
            _ => return None,
        })
    }
}

/// How the process behind an attempt ended, as far as muster saw it: what the joblog's
/// `Exitval` and `Signal` columns say, whichever executor ran the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// It never started, or how it ended is not known.
    Unknown,
}

impl Exit {
    /// What a process's wait status says.
    pub fn of(status: &std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Unknown,
        }
    }

    /// What a failure says of the process, when it says anything.
    pub fn of_failure(failure: &Failure) -> Exit {
        match failure {
            Failure::Exit(code) => Exit::Code(*code),
            Failure::Signal(signal) => Exit::Signal(*signal),
            _ => Exit::Unknown,
        }
    }
}

/// The one mapping from what became of an attempt to the joblog's `Outcome`, `Exitval` and
/// `Signal` columns, for every executor: `stopped` when a shutdown stopped it, `retry` when
/// it failed and runs again. A signal's death is exit value 0 with the signal (as GNU parallel
/// records it); a process that never started, or whose end is unknown, is -1 with no signal.
pub fn outcome_columns(
    outcome: &Outcome,
    exit: Exit,
    stopped: bool,
    retry: bool,
) -> (RecordOutcome, i32, i32) {
    let recorded = match (outcome, stopped, retry) {
        (Outcome::Done, _, _) => RecordOutcome::Done,
        (_, true, _) => RecordOutcome::Stopped,
        (_, _, true) => RecordOutcome::Retry,
        (Outcome::TimedOut(_), _, _) => RecordOutcome::TimedOut,
        (Outcome::Failed(Failure::Output(_)), _, _) => RecordOutcome::Lost,
        _ => RecordOutcome::Failed,
    };
    let exit = match (outcome, exit) {
        (Outcome::Done, _) => Exit::Code(0),
        (Outcome::Failed(failure @ (Failure::Exit(_) | Failure::Signal(_))), _) => Exit::of_failure(failure),
        (_, exit) => exit,
    };
    let (exitval, signal) = match exit {
        Exit::Code(code) => (code, 0),
        Exit::Signal(signal) => (0, signal),
        Exit::Unknown => (-1, 0),
    };
    (recorded, exitval, signal)
}

/// Identifies a task across runs: a hash of its input and which occurrence of that input it
/// is (1 for the first time the input appears).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InputKey {
    hash: u64,
    occurrence: u32,
}

/// The key of the `occurrence`-th appearance of `input`.
pub fn input_key(input: &[u8], occurrence: u32) -> InputKey {
    InputKey { hash: input_hash(input), occurrence }
}

/// The hash part of an [`InputKey`]; lets a caller count occurrences without keeping inputs.
pub fn input_hash(input: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    input.hash(&mut hasher);
    hasher.finish()
}

impl InputKey {
    /// The key of the `occurrence`-th appearance of the input whose [`input_hash`] is `hash`.
    pub fn new(hash: u64, occurrence: u32) -> InputKey {
        InputKey { hash, occurrence }
    }
}

/// One attempt at one task.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The task's sequence number in this run.
    pub seq: u64,
    /// Where it ran; `:` is this machine, as in GNU parallel.
    pub host: String,
    /// Start time, seconds since the Unix epoch.
    pub start: f64,
    /// Wall time of the attempt, seconds.
    pub runtime: f64,
    /// Bytes sent to its stdin.
    pub send: u64,
    /// Bytes it wrote to stdout and stderr.
    pub receive: u64,
    /// Exit status (0 when killed by a signal, -1 when it could not start).
    pub exitval: i32,
    /// The signal that killed it, or 0.
    pub signal: i32,
    /// The command line that ran.
    pub command: Vec<u8>,
    /// What became of the attempt.
    pub outcome: RecordOutcome,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Which occurrence of this input the task is, from 1.
    pub occurrence: u32,
    /// The task's input (several sources' values joined by NUL).
    pub input: Vec<u8>,
    /// The slot it ran in (`{%}`, or the persistent worker's number), from 1; 0 when not
    /// known (a version 1 joblog, or a task that never reached a slot).
    pub slot: u32,
}

impl Record {
    /// The task's identity across runs.
    pub fn key(&self) -> InputKey {
        input_key(&self.input, self.occurrence)
    }

    /// The line in the current format, with its checksum and newline.
    pub fn to_line(&self) -> String {
        self.to_line_in(super::VERSION)
    }

    /// The line in GNU parallel's nine columns (tabs and newlines in the command become
    /// spaces, as GNU's readers split on them).
    pub fn to_gnu_line(&self) -> String {
        let command: String = String::from_utf8_lossy(&self.command)
            .chars()
            .map(|c| if c == '\t' || c == '\n' { ' ' } else { c })
            .collect();
        let mut line = String::with_capacity(64 + self.host.len() + command.len());
        self.push_gnu_columns(&mut line, &self.host, &command);
        line.push('\n');
        line
    }

    /// GNU parallel's nine columns, with `host` and `command` as given, appended to `line`.
    fn push_gnu_columns(&self, line: &mut String, host: &str, command: &str) {
        let _ = write!(
            line,
            "{}\t{host}\t{:.3}\t{:.3}\t{}\t{}\t{}\t{}\t{command}",
            self.seq, self.start, self.runtime, self.send, self.receive, self.exitval, self.signal
        );
    }

    /// The line in format `version` (1 has no `Slot` column), with its checksum and newline.
    /// Written into one string (it was a `format!` per column and an allocation per escaped
    /// field: two thirds of muster's work per task in a journaled run).
    pub fn to_line_in(&self, version: u32) -> String {
        let mut line = String::with_capacity(96 + self.host.len() + self.command.len() + self.input.len());
        self.push_gnu_columns(&mut line, &escape(self.host.as_bytes()), &escape(&self.command));
        let _ = write!(line, "\t{}\t{}\t{}\t", self.outcome.as_str(), self.attempt, self.occurrence);
        escape_into(&mut line, &self.input);
        if version >= 2 {
            let _ = write!(line, "\t{}", self.slot);
        }
        let check = crc32fast::hash(line.as_bytes());
        let _ = writeln!(line, "\t{check:08x}");
        line
    }

    /// Parses a line (without its newline), verifying the checksum.
    pub fn parse(line: &[u8]) -> Result<Record, String> {
        let split = line.iter().rposition(|&b| b == b'\t').ok_or("no fields")?;
        let (body, check) = (&line[..split], &line[split + 1..]);
        let check = std::str::from_utf8(check).ok().and_then(|c| u32::from_str_radix(c, 16).ok());
        if check != Some(crc32fast::hash(body)) {
            return Err("checksum mismatch".into());
        }
        let fields: Vec<&[u8]> = body.split(|&b| b == b'\t').collect();
        let (fields, slot) = match fields.len() {
            13 => (&fields[..], None),
            14 => (&fields[..13], Some(fields[13])),
            n => return Err(format!("{n} fields instead of 13 or 14")),
        };
        let [seq, host, start, runtime, send, receive, exitval, signal, command, outcome, attempt, occurrence, input] =
            fields[..]
        else {
            return Err("a record's fields".into());
        };
        fn num<T: std::str::FromStr>(field: &[u8], name: &str) -> Result<T, String> {
            std::str::from_utf8(field).ok().and_then(|f| f.parse().ok()).ok_or_else(|| format!("bad {name}"))
        }
        Ok(Record {
            seq: num(seq, "Seq")?,
            host: String::from_utf8_lossy(&unescape(host)).into_owned(),
            start: num(start, "Starttime")?,
            runtime: num(runtime, "JobRuntime")?,
            send: num(send, "Send")?,
            receive: num(receive, "Receive")?,
            exitval: num(exitval, "Exitval")?,
            signal: num(signal, "Signal")?,
            command: unescape(command),
            outcome: std::str::from_utf8(outcome).ok().and_then(RecordOutcome::parse).ok_or("bad Outcome")?,
            attempt: num(attempt, "Attempt")?,
            occurrence: num(occurrence, "Occurrence")?,
            input: unescape(input),
            slot: slot.map_or(Ok(0), |slot| num(slot, "Slot"))?,
        })
    }
}
