//! `muster submit`: puts tasks on a queue and, unless detached, waits for their results and
//! settles them exactly as a local run does — the same printing (grouped, tagged, in input
//! order), joblog, progress, summary and exit status — because it *is* a run of the engine
//! whose executor is the queue ([`crate::engine::remote`]).

use super::{ensure_group, pack_entry, task_entry, Connection, Queue, PACK_MOST};
use crate::engine::{Inputs, Io, RunConfig, Summary};
use crate::source::Sourced;
use crate::task::Seq;

/// What a submission needs.
pub struct SubmitConfig {
    /// `redis://…`
    pub broker: String,
    /// The queue to put tasks on.
    pub queue: Queue,
    /// How results are settled: output mode, tag, keep-order, joblog, resume; `jobs` is how
    /// many of this submission's tasks are on the queue at once. Its command is only a label.
    pub run: RunConfig,
    /// Failed attempts a task may have before it is dead-lettered.
    pub retries: u32,
    /// Tasks per queue entry (at most 256); `None`: sized from the results' runtimes (one per
    /// entry for a detached submission, which sees none).
    pub pack: Option<usize>,
}

pub use crate::engine::remote::SubmitError;

/// A new submission's id: unique enough across machines and runs.
fn new_job_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", nanos as u64, std::process::id())
}

/// Puts every input on the queue and returns at once: the submission's id and task count.
pub fn detach(config: SubmitConfig, inputs: Inputs) -> Result<(String, u64), SubmitError> {
    let mut link = Connection::connect(&config.broker)?;
    ensure_group(&mut link, &config.queue, None)?;
    let job = new_job_id();
    // Registered before any task is queued, so `muster results` knows its results are free
    // to take (a waiting submitter's are its own); the count is filled in at the end.
    let detached = config.queue.detached();
    link.call(None, |c| redis::cmd("HSET").arg(&detached).arg(&job).arg("?").query::<()>(c))?;
    let pack_size = config.pack.unwrap_or(1).clamp(1, PACK_MOST);
    let (queue, retries) = (&config.queue, config.retries);
    let mut batch = redis::pipe();
    let mut batched = 0;
    let mut pack: Vec<(Seq, Vec<Vec<u8>>)> = Vec::with_capacity(pack_size);
    let mut count = 0u64;
    let mut inputs = inputs.peekable();
    while let Some(input) = inputs.next() {
        let input = input.map_err(SubmitError::Input)?;
        count += 1;
        pack.push((count, input.values));
        let last = inputs.peek().is_none();
        if pack.len() == pack_size || last {
            batch.add_command(match pack.as_slice() {
                [(seq, values)] => task_entry(queue, &job, *seq, retries, values),
                _ => pack_entry(
                    queue,
                    &job,
                    retries,
                    pack.iter().map(|(seq, values)| (*seq, values.as_slice())),
                ),
            });
            batch.ignore();
            batched += pack.len();
            pack.clear();
        }
        if batched >= 512 || last {
            // What the queue holds, for `muster status`.
            batch.cmd("HINCRBY").arg(queue.stats()).arg("queued").arg(batched).ignore();
            link.call(None, |c| batch.query::<()>(c))?;
            batch = redis::pipe();
            batched = 0;
        }
    }
    link.call(None, |c| redis::cmd("HSET").arg(&detached).arg(&job).arg(count).query::<()>(c))?;
    Ok((job, count))
}

/// Puts tasks on the queue and settles their results as they come, as `muster run` does.
pub fn submit(config: SubmitConfig, inputs: Inputs, io: Io<'_, '_>) -> Result<Summary, SubmitError> {
    let known_total = inputs.known_total();
    submit_sourced(config, inputs.map(|input| input.map(Sourced::local)), known_total, io)
}

/// [`submit`] over tasks from a source that wants to hear back (see [`crate::source`]): the
/// settlement hears each task's result (a Python pool's records, say).
pub fn submit_sourced(
    config: SubmitConfig,
    inputs: impl Iterator<Item = std::io::Result<Sourced>>,
    known_total: Option<u64>,
    io: Io<'_, '_>,
) -> Result<Summary, SubmitError> {
    let SubmitConfig { broker, queue, run, retries, pack } = config;
    let mut link = Connection::connect(&broker)?;
    ensure_group(&mut link, &queue, None)?;
    // Results of this submission come after the stream's current end.
    let last: Vec<(String, redis::Value)> = link.call(None, |c| {
        redis::cmd("XREVRANGE").arg(queue.results()).arg("+").arg("-").arg("COUNT").arg(1).query(c)
    })?;
    let from = last.first().map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone());
    let submission =
        crate::engine::remote::Submission { broker: &broker, job: new_job_id(), queue, retries, from, pack };
    crate::engine::remote::run_sourced(run, inputs, known_total, submission, io)
}
