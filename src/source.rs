//! The seam between where tasks come from and the engine that runs them: a source hands each
//! task an opaque [`Receipt`] (a broker's message id, say), and a [`Settlement`] hears back —
//! when an attempt starts and ends (so a broker can renew the lease of what is running) and
//! when the task's outcome is durable (journaled and its output written), which is when a
//! broker may acknowledge it. Local inputs carry no receipt and need no settlement.

use std::sync::Arc;

use crate::input::Input;
use crate::journal::Record;
use crate::task::Outcome;

/// An opaque handle a source gives a task, handed back when the task settles.
pub type Receipt = Arc<[u8]>;

/// A task's input as a source yields it.
#[derive(Clone, Debug)]
pub struct Sourced {
    /// What the task runs on.
    pub input: Input,
    /// The source's handle on it; `None` for local inputs.
    pub receipt: Option<Receipt>,
}

impl Sourced {
    /// A local input: no receipt.
    pub fn local(input: Input) -> Sourced {
        Sourced { input, receipt: None }
    }
}

/// A task that ran to its final outcome, as its source hears of it.
#[derive(Debug)]
pub struct Completion<'a> {
    /// What became of it.
    pub outcome: &'a Outcome,
    /// Its final attempt, as the joblog has it (always there when the settlement
    /// [carries output](Settlement::carries_output)).
    pub record: Option<&'a Record>,
    /// Its captured stdout, when the settlement carries output (else empty).
    pub stdout: &'a [u8],
    /// Its captured stderr, when the settlement carries output (else empty).
    pub stderr: &'a [u8],
    /// What muster says of the task, if it did not succeed.
    pub note: Option<&'a crate::engine::note::Note>,
}

/// How a task with a receipt ended, as far as its source is concerned.
#[derive(Debug)]
pub enum Settled<'a> {
    /// It ran to a final outcome; its journal record (if any) and output are written.
    Finished(Completion<'a>),
    /// It was read but never started (a shutdown or a halt came first): give it back.
    NotRun,
    /// A shutdown stopped it before it finished (its record says `stopped`): give it back.
    Stopped,
    /// The joblog being resumed says it is already done.
    Skipped,
}

/// Hears what becomes of tasks that carry a receipt. Called from the engine's threads.
pub trait Settlement: Sync {
    /// An attempt of the task began running (a lease is worth renewing from now on).
    fn started(&self, _receipt: &Receipt) {}
    /// That attempt stopped running (the task may still be retried or settling).
    fn ended(&self, _receipt: &Receipt) {}
    /// The task settled, once: after its journal record was written, never before.
    fn settled(&self, _receipt: &Receipt, _how: Settled<'_>) {}
    /// A task done with output the settlement [carries](Self::carries_output), before its
    /// journal record is written: a settlement that must find that output again when a resume
    /// skips the task (a Python pool's results) keeps it here first. False when it could not:
    /// the task is then recorded as not done, and a resume runs it again.
    fn keep(&self, _receipt: &Receipt, _stdout: &[u8]) -> bool {
        true
    }
    /// The source no longer holds the task (a broker gave its lease to someone else): a
    /// running attempt is stopped and the task settles as [`Settled::Stopped`]. Asked of
    /// running attempts a few times a second, so it must be cheap.
    fn revoked(&self, _receipt: &Receipt) -> bool {
        false
    }
    /// Every settled task so far has been handed over and none is waiting: a settlement
    /// that batches its acknowledgements sends them now. Also called once at the end.
    fn flush(&self) {}
    /// How long to wait for more settled tasks before a [flush](Self::flush), so that tasks
    /// finishing one at a time share its round trip (none by default).
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// True when [`revoked`](Self::revoked) can ever say yes: an engine that cannot stop one
    /// task alone (a persistent worker holds several) looks only then, and stops the worker.
    fn revocable(&self) -> bool {
        false
    }
    /// True when finished tasks' output goes back to the source in [`Completion`] instead
    /// of being printed (a broker's worker sends it to whoever submitted the task).
    fn carries_output(&self) -> bool {
        false
    }
}

/// A settlement that ignores everything (local inputs).
#[derive(Debug, Default)]
pub struct NoSettlement;

impl Settlement for NoSettlement {}
