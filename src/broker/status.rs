//! `muster status --queue` and `muster drain`: what a queue holds and who serves it, and
//! asking every worker of a queue to finish what it holds and stop.

use super::{BrokerError, Link, Queue};

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
    /// Workers that renewed within three heartbeats: name, slots, tasks held.
    pub workers: Vec<(String, u64, u64)>,
}

impl QueueStatus {
    /// Tasks held by workers, all together.
    pub fn running_total(&self) -> u64 {
        self.running.iter().map(|(_, n)| n).sum()
    }
}

/// Reads a queue's figures. `lease` tells how recent a heartbeat must be to count a worker
/// alive (heartbeats come every third of a lease; three missed ones mean gone).
pub fn status(
    link: &mut Link,
    queue: &Queue,
    lease: std::time::Duration,
) -> Result<QueueStatus, BrokerError> {
    let mut status = QueueStatus::default();
    let stats: Vec<(String, u64)> = link.call(None, |c| redis::cmd("HGETALL").arg(queue.stats()).query(c))?;
    for (name, value) in stats {
        match name.as_str() {
            "done" => status.done = value,
            "failed" => status.failed = value,
            "retried" => status.retried = value,
            "rejected" => status.rejected = value,
            _ => {}
        }
    }
    status.dead_lettered = link.call(None, |c| redis::cmd("XLEN").arg(queue.dead()).query(c))?;
    status.results_waiting = link.call(None, |c| redis::cmd("XLEN").arg(queue.results()).query(c))?;
    let now = link.time_ms(None)?;
    let beats: Vec<(String, String)> =
        link.call(None, |c| redis::cmd("HGETALL").arg(queue.workers()).query(c))?;
    let alive_within = (lease.as_millis() as u64).max(1000);
    for (name, beat) in beats {
        let mut parts = beat.split_whitespace().map(|p| p.parse::<u64>().unwrap_or(0));
        let (at, slots, held) =
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if now.saturating_sub(at) <= alive_within {
            status.workers.push((name, slots, held));
        }
    }
    status.workers.sort();
    // Every task not finished is an entry of the stream: held by a worker, or waiting.
    let entries: u64 = link.call(None, |c| redis::cmd("XLEN").arg(queue.tasks()).query(c))?;
    status.running = status.workers.iter().map(|(name, _, held)| (name.clone(), *held)).collect();
    status.pending = entries.saturating_sub(status.running_total());
    Ok(status)
}

/// Asks every worker serving `queue` now to finish what it holds and stop (workers started
/// after this are not affected). Returns how many workers were alive to hear it.
pub fn drain(link: &mut Link, queue: &Queue, lease: std::time::Duration) -> Result<usize, BrokerError> {
    let now = link.time_ms(None)?;
    link.call(None, |c| redis::cmd("SET").arg(queue.drain()).arg(now).query::<()>(c))?;
    Ok(status(link, queue, lease)?.workers.len())
}
