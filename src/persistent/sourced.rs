//! Persistent workers over a [source](crate::source): tasks that carry a receipt (a queue's
//! entries) run through the same long-lived workers as local inputs, and their
//! [`Settlement`] hears each outcome — the reply as the task's stdout, a joblog-style record —
//! after the engine has it, and is asked to [flush](Settlement::flush) whenever no reply is
//! waiting, so a broker can acknowledge replies in batches.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;

use super::{Attempt, PersistentConfig, Reply, Summary};
use crate::journal::Record;
use crate::shutdown::Shutdown;
use crate::source::{Completion, Receipt, Settled, Settlement, Sourced};
use crate::task::{Failure, Outcome, Seq};

/// Streams `sources` through persistent workers and settles every task that carries a
/// receipt with `settlement`; `on_stderr` gets the workers' stderr lines. A task whose input
/// holds the record separator cannot be one record on a worker's stdin: it settles failed
/// at once. Returns the counts, and the error that ended reading, if one did.
pub fn run_sourced<I>(
    config: &PersistentConfig,
    sources: I,
    shutdown: &Shutdown,
    settlement: &dyn Settlement,
    on_stderr: impl FnMut(usize, &[u8]),
) -> (Summary, Option<io::Error>)
where
    I: Iterator<Item = io::Result<Sourced>> + Send,
{
    let receipts: Mutex<HashMap<Seq, Receipt>> = Mutex::default();
    let read_error: Mutex<Option<io::Error>> = Mutex::default();
    let command = super::settled::journal_label(config);
    let separator = config.separator;
    let mut refused = 0u64;
    let mut sent: Seq = 0;
    let records = {
        let (receipts, read_error, command, refused) = (&receipts, &read_error, &command, &mut refused);
        sources
            .map_while(move |sourced| match sourced {
                Ok(sourced) => Some(sourced),
                Err(err) => {
                    *read_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err);
                    None
                }
            })
            .filter_map(move |Sourced { input, receipt }| {
                let record = input.into_display();
                if record.contains(&separator) {
                    if let Some(receipt) = &receipt {
                        *refused += 1;
                        let why = format!(
                            "its input holds the record separator ({}), so it cannot be one record on a worker's stdin",
                            if separator == b'\n' { "a newline" } else { "NUL" }
                        );
                        let outcome = Outcome::Failed(Failure::Start(why));
                        let note = format!("muster: task ({}): {outcome}", String::from_utf8_lossy(&record));
                        let record = record_of(command, 0, &outcome, Attempt::never(), 0);
                        let completion = Completion {
                            outcome: &outcome,
                            record: Some(&record),
                            stdout: &[],
                            stderr: &[],
                            note: Some(&note),
                        };
                        settlement.settled(receipt, Settled::Finished(completion));
                    }
                    return None;
                }
                sent += 1;
                if let Some(receipt) = receipt {
                    receipts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(sent, receipt);
                }
                Some(record)
            })
    };
    let timeout = config.timeout.unwrap_or_default();
    let mut summary = super::run_with_idle(
        config,
        records,
        shutdown,
        |seq, reply, attempt| {
            let receipt = receipts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&seq);
            let Some(receipt) = receipt else { return };
            let (outcome, mut stdout) = match reply {
                Reply::Done(record) => (Outcome::Done, record),
                Reply::Failed(failure) => (Outcome::Failed(failure), Vec::new()),
                Reply::TimedOut => (Outcome::TimedOut(timeout), Vec::new()),
                Reply::NotRun => {
                    settlement.settled(&receipt, Settled::NotRun);
                    return;
                }
            };
            if outcome.is_done() {
                stdout.push(separator);
            }
            let note = (!outcome.is_done()).then(|| format!("muster: task {seq}: {outcome}, every attempt"));
            let record = record_of(&command, seq, &outcome, attempt, stdout.len() as u64);
            let completion = Completion {
                outcome: &outcome,
                record: Some(&record),
                stdout: &stdout,
                stderr: &[],
                note: note.as_deref(),
            };
            settlement.settled(&receipt, Settled::Finished(completion));
        },
        on_stderr,
        || settlement.flush(),
    );
    settlement.flush();
    summary.failed += refused;
    summary.read += refused;
    let error = read_error.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    (summary, error)
}

/// A task's record for its settlement (what a broker's result carries).
fn record_of(command: &str, seq: Seq, outcome: &Outcome, attempt: Attempt, receive: u64) -> Record {
    let task =
        super::settled::Sent { input_no: seq, identity: Vec::new(), occurrence: 0, display: Vec::new() };
    super::settled::journal_record(command, outcome, receive, attempt, &task)
}
