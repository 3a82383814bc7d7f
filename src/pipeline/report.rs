//! The account a finished pipeline gives of every item it read.

use std::time::Duration;

use super::Ledger;
use crate::shutdown::Level;
use crate::task::Seq;

/// What happened to the items of a pipeline run. `read == processed + failed + not_run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Items taken from the source.
    pub read: u64,
    /// Items that went through every stage and the final consumer.
    pub processed: u64,
    /// Items on which a stage or the consumer panicked: sequence number and message.
    pub failed: Vec<(Seq, String)>,
    /// Items that were read but not processed because of a stop-now, sorted.
    pub not_run: Vec<Seq>,
    /// The source's panic message, if the source panicked (which ends the input).
    pub source_panic: Option<String>,
    /// The shutdown level when the run ended.
    pub stopped: Level,
    /// Wall time from start to the last thread joined.
    pub elapsed: Duration,
}

impl Report {
    pub(super) fn new(mut ledger: Ledger, stopped: Level, elapsed: Duration) -> Report {
        ledger.failed.sort_unstable();
        ledger.not_run.sort_unstable();
        Report {
            read: ledger.read,
            processed: ledger.processed,
            failed: ledger.failed,
            not_run: ledger.not_run,
            source_panic: ledger.source_panic,
            stopped,
            elapsed,
        }
    }

    /// True when every item read was processed, nothing failed, and the source did not panic.
    pub fn all_processed(&self) -> bool {
        self.processed == self.read && self.source_panic.is_none()
    }

    /// True when every item read has exactly one recorded fate.
    pub fn accounts_for_everything(&self) -> bool {
        self.processed + self.failed.len() as u64 + self.not_run.len() as u64 == self.read
    }
}

/// A finished pipeline: the value its terminal operation produced, and the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run<A> {
    /// The folded value (or `()` for sinks).
    pub value: A,
    /// What happened to every item.
    pub report: Report,
}
