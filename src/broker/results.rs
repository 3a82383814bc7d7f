//! `muster results`: the results of detached submissions, read from a queue's results stream
//! in the order they were recorded. Whoever reads a result removes it once it is handed over,
//! so each result is delivered once. Results of a submitter that waits for them are left to
//! it: only submissions registered as detached are read.

use std::collections::HashSet;
use std::time::Duration;

use super::{BrokerError, Connection, Fielded, Fields, Queue};
use crate::Shutdown;

/// One task's result, as its worker recorded it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueResult {
    /// Its entry in the results stream.
    pub id: String,
    /// The submission it belongs to (what `submit --detach` printed).
    pub job: String,
    /// Its number within the submission, from 1.
    pub seq: u64,
    /// Its input, values joined by a space.
    pub input: Vec<u8>,
    /// `done`, `failed`, `timed_out`, `lost` (output not kept), `not_started`, or `dead`
    /// (its holders kept vanishing).
    pub outcome: String,
    /// The worker that ran its last attempt (empty when none finished it).
    pub worker: String,
    /// Deliveries it took.
    pub attempt: u32,
    /// Its exit status (-1 when it did not exit on its own).
    pub exit: i32,
    /// The signal that ended it (0: none).
    pub signal: i32,
    /// Seconds its last attempt ran.
    pub runtime: f64,
    /// What it wrote to stdout.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Why it failed (empty when done).
    pub error: String,
}

impl QueueResult {
    /// True when the task succeeded.
    pub fn is_done(&self) -> bool {
        self.outcome == "done"
    }

    /// One result of the results entry `id`.
    fn from_fields(id: &str, entry: &impl Fielded) -> QueueResult {
        let bytes = |field: &str| entry.get(field).unwrap_or_default().to_vec();
        QueueResult {
            id: id.to_owned(),
            job: entry.text("job"),
            seq: entry.number("seq"),
            input: bytes("input"),
            outcome: entry.text("outcome"),
            worker: entry.text("worker"),
            attempt: entry.number("attempt"),
            exit: entry.number("exit"),
            signal: entry.number("signal"),
            runtime: entry.number("runtime"),
            stdout: bytes("stdout"),
            stderr: bytes("stderr"),
            error: entry.text("error"),
        }
    }
}

/// Reads a queue's results from the oldest on, all of them or one submission's.
pub struct ResultReader {
    queue: Queue,
    job: Option<String>,
    /// The last entry read.
    cursor: String,
    /// Detached submissions known so far.
    detached: HashSet<String>,
}

/// Results read in one call at most.
const BATCH: usize = 512;

impl ResultReader {
    /// A reader of `queue`'s results; with `job`, only that submission's (others are left).
    pub fn new(queue: Queue, job: Option<String>) -> ResultReader {
        ResultReader { queue, job, cursor: "0-0".into(), detached: HashSet::new() }
    }

    /// True when `job` was submitted detached (asking Redis again for one not seen yet).
    fn is_detached(
        &mut self,
        link: &mut Connection,
        job: &str,
        shutdown: &Shutdown,
    ) -> Result<bool, BrokerError> {
        if !self.detached.contains(job) {
            let key = self.queue.detached();
            let jobs: Vec<String> = link.call(Some(shutdown), |c| redis::cmd("HKEYS").arg(&key).query(c))?;
            self.detached.extend(jobs);
        }
        Ok(self.detached.contains(job))
    }

    /// Tasks in a detached submission, or `None` when there is none with that id.
    pub fn submitted(
        &self,
        link: &mut Connection,
        job: &str,
        shutdown: &Shutdown,
    ) -> Result<Option<String>, BrokerError> {
        let key = self.queue.detached();
        link.call(Some(shutdown), |c| redis::cmd("HGET").arg(&key).arg(job).query(c))
    }

    /// The next results, waiting up to `block` for one to come when there is none.
    pub fn next_batch(
        &mut self,
        link: &mut Connection,
        block: Option<Duration>,
        shutdown: &Shutdown,
    ) -> Result<Vec<QueueResult>, BrokerError> {
        let results = self.queue.results();
        let cursor = self.cursor.clone();
        let reply: redis::Value = link.call(Some(shutdown), |c| {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(BATCH);
            if let Some(block) = block {
                cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
            }
            cmd.arg("STREAMS").arg(&results).arg(&cursor).query(c)
        })?;
        let redis::Value::Array(streams) = reply else { return Ok(Vec::new()) };
        let mut batch = Vec::new();
        for stream in &streams {
            let redis::Value::Array(parts) = stream else { continue };
            let Some(redis::Value::Array(entries)) = parts.get(1) else { continue };
            // Read where Redis's reply holds them: a results pack is not copied first.
            for (id, entry) in entries.iter().filter_map(Fields::of_entry) {
                self.cursor = String::from_utf8_lossy(id).into_owned();
                let job = entry.text("job");
                let wanted = self.job.as_deref().is_none_or(|wanted| wanted == job);
                if wanted && self.is_detached(link, &job, shutdown)? {
                    // A results entry may carry a pack of them.
                    let id = &self.cursor;
                    batch.extend(entry.results().iter().map(|result| QueueResult::from_fields(id, result)));
                }
            }
        }
        Ok(batch)
    }

    /// Removes results that were handed over, so no one reads them again.
    pub fn remove(
        &self,
        link: &mut Connection,
        ids: &[&str],
        shutdown: &Shutdown,
    ) -> Result<(), BrokerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let results = self.queue.results();
        link.call(Some(shutdown), |c| redis::cmd("XDEL").arg(&results).arg(ids).query::<()>(c))
    }

    /// Entries of the queue not finished yet (waiting, running, or held by a worker that
    /// vanished and will be taken over): 0 when no task is left (an entry may carry a pack).
    pub fn unfinished(&self, link: &mut Connection, shutdown: &Shutdown) -> Result<u64, BrokerError> {
        let tasks = self.queue.tasks();
        link.call(Some(shutdown), |c| redis::cmd("XLEN").arg(&tasks).query(c))
    }
}
