//! `muster status --queue` and `muster drain`: what a queue holds and who serves it, and
//! asking every worker of a queue to finish what it holds and stop.

use super::{BrokerError, Connection, Queue};

/// A queue at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStatus {
    /// Tasks no worker has taken yet.
    pub pending: u64,
    /// Tasks held by live workers (running, or about to), by worker, as of their last heartbeat.
    pub running: Vec<(String, u64)>,
    /// Tasks completed successfully.
    pub done: u64,
    /// Tasks that failed for good (their last attempt failed, or holders kept vanishing).
    pub failed: u64,
    /// Failed attempts given back for another try.
    pub retried: u64,
    /// Entries in the dead-letter stream.
    pub dead_lettered: u64,
    /// Results refused because their worker no longer held the task.
    pub rejected: u64,
    /// Results not read by a submitter yet.
    pub results_waiting: u64,
    /// Workers serving the queue, alive or silent (a heartbeat older than its lease: killed,
    /// frozen or cut off, its tasks returning to the queue), by name.
    pub workers: Vec<WorkerSeen>,
}

/// A worker as its last heartbeat shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerSeen {
    /// Its name (`--name`).
    pub name: String,
    /// Tasks it runs at once.
    pub slots: u64,
    /// Tasks it held at its last heartbeat.
    pub running: u64,
    /// How long ago its last heartbeat was written (Redis's clock).
    pub heard_ago: std::time::Duration,
    /// Its lease: silent longer than this, it is taken for gone.
    pub lease: std::time::Duration,
}

impl WorkerSeen {
    /// True while its heartbeat is within its lease.
    pub fn alive(&self) -> bool {
        self.heard_ago <= self.lease.max(std::time::Duration::from_secs(1))
    }
}

impl QueueStatus {
    /// Tasks held by workers, all together.
    pub fn running_total(&self) -> u64 {
        self.running.iter().map(|(_, n)| n).sum()
    }
}

/// Reads a queue's figures. Each worker's heartbeat carries its lease: silent longer than
/// that, it is shown as silent (heartbeats come every third of a lease).
pub fn status(link: &mut Connection, queue: &Queue) -> Result<QueueStatus, BrokerError> {
    let mut status = QueueStatus::default();
    let stats: Vec<(String, i64)> = link.call(None, |c| redis::cmd("HGETALL").arg(queue.stats()).query(c))?;
    // Tasks on the queue, waiting or held (an entry may carry a pack of them); an entry added
    // by hand is not counted, so this may dip below zero.
    let mut queued = 0;
    for (name, value) in stats {
        let value_or_zero = value.max(0) as u64;
        match name.as_str() {
            "done" => status.done = value_or_zero,
            "failed" => status.failed = value_or_zero,
            "retried" => status.retried = value_or_zero,
            "rejected" => status.rejected = value_or_zero,
            "queued" => queued = value,
            _ => {}
        }
    }
    status.dead_lettered = link.call(None, |c| redis::cmd("XLEN").arg(queue.dead()).query(c))?;
    status.results_waiting = link.call(None, |c| redis::cmd("XLEN").arg(queue.results()).query(c))?;
    let now = link.time_ms(None)?;
    let beats: Vec<(String, String)> =
        link.call(None, |c| redis::cmd("HGETALL").arg(queue.workers()).query(c))?;
    for (name, beat) in beats {
        let beat = super::Beat::parse(&beat);
        let seen = WorkerSeen {
            name,
            slots: beat.slots,
            running: beat.running,
            heard_ago: std::time::Duration::from_millis(now.saturating_sub(beat.at)),
            lease: std::time::Duration::from_millis(beat.lease_ms),
        };
        // A worker silent for ten leases is long gone: not listed (its entry is left to Redis).
        if seen.heard_ago <= seen.lease.max(std::time::Duration::from_secs(1)) * 10 {
            status.workers.push(seen);
        }
    }
    status.workers.sort_by(|a, b| a.name.cmp(&b.name));
    // Every task not finished is an entry of the stream: held by a worker, or waiting.
    status.running =
        status.workers.iter().filter(|w| w.alive()).map(|w| (w.name.clone(), w.running)).collect();
    status.pending = (queued.max(0) as u64).saturating_sub(status.running_total());
    Ok(status)
}

/// Asks every worker serving `queue` now to finish what it holds and stop (workers started
/// after this are not affected). Returns how many workers were alive to hear it.
pub fn drain(link: &mut Connection, queue: &Queue) -> Result<usize, BrokerError> {
    let now = link.time_ms(None)?;
    link.call(None, |c| redis::cmd("SET").arg(queue.drain()).arg(now).query::<()>(c))?;
    Ok(status(link, queue)?.workers.iter().filter(|w| w.alive()).count())
}
