//! The remote executor: an attempt is a task on a Redis queue (`muster submit`), and it ends
//! when a worker's result arrives. Settled exactly as a local run — the same printing, joblog,
//! progress, summary and exit status — because it *is* a run of the engine.
//!
//! A router thread reads the results stream, hands each result of this submission to the
//! event loop that sent the task, and deletes it. It also notices a task that vanished from
//! the queue without a result (a Redis restart that lost the write) and sends it again.
//! Stopping the submitter cancels the tasks no worker has taken; those already running are
//! left to finish and their results to whoever reads the queue.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel as cb;

use super::capture::Capture;
use super::dispatch::{Attempt, Ended, Executor, Remote, StopReason, Verdict};
use super::poll::Waker;
use super::{Io, Observer, RunConfig, RunError, Summary};
use crate::broker::{
    moved, pack_entry, scripts, task_entry, Beat, BrokerError, Connection, Fielded, Fields, Queue, GROUP,
    PACK_MOST,
};
use crate::source::Sourced;
use crate::task::{Failure, Outcome, Seq};

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Redis.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The engine (joblog, threads).
    #[error(transparent)]
    Engine(#[from] RunError),
    /// Reading inputs.
    #[error("reading input: {0}")]
    Input(io::Error),
}

/// Where a submission's tasks go and where its results are read from.
pub(crate) struct Submission<'b> {
    /// `redis://…`
    pub(crate) broker: &'b str,
    /// This submission's id (results carry it).
    pub(crate) job: String,
    pub(crate) queue: Queue,
    /// Failed attempts a task may have before it is dead-lettered.
    pub(crate) retries: u32,
    /// The results stream's last entry before the submission began.
    pub(crate) from: String,
    /// Tasks per entry, when the user said (else sized from the results' runtimes).
    pub(crate) pack: Option<usize>,
}

/// Puts tasks on the queue and settles their results as they come (and, for tasks with a
/// receipt, tells their source; see [`crate::source`]).
pub(crate) fn run_sourced(
    config: RunConfig,
    sourced: impl Iterator<Item = io::Result<Sourced>>,
    known_total: Option<u64>,
    submission: Submission<'_>,
    io: Io<'_, '_>,
) -> Result<Summary, SubmitError> {
    let router = Arc::new(Router {
        job: submission.job,
        queue: submission.queue.clone(),
        retries: submission.retries,
        routes: Mutex::new(HashMap::new()),
        loops: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
        spill_threshold: config.spill_threshold,
        task_time: TaskTime { in_flight: config.jobs, told: submission.pack, ..TaskTime::default() },
    });
    let shutdown = io.shutdown.clone();
    let observer = io.observer;
    let mut router_link = Connection::connect(submission.broker)?;
    let summary = std::thread::scope(|scope| {
        let reading = {
            let router = Arc::clone(&router);
            let shutdown = shutdown.clone();
            scope.spawn(move || router.run(&mut router_link, submission.from, &shutdown, observer))
        };
        let summary = super::run_on(config, sourced, known_total, io, |_events, waker, _slots| {
            let (inbox_tx, inbox) = cb::unbounded();
            let mut loops = router.loops.lock().unwrap_or_else(PoisonError::into_inner);
            loops.push((inbox_tx, Arc::clone(&waker)));
            Ok(RemoteExecutor {
                link: Connection::connect(submission.broker)
                    .map_err(|err| io::Error::other(err.to_string()))?,
                router: Arc::clone(&router),
                index: loops.len() - 1,
                waker,
                inbox,
                running: HashMap::new(),
                unsent: Vec::new(),
                unsent_since: None,
                ended_here: Vec::new(),
                shutdown: shutdown.clone(),
                full_since: None,
                retry_at: None,
            })
        });
        router.done.store(true, Ordering::SeqCst);
        let _ = reading.join();
        summary
    });
    Ok(summary?)
}

/// Where a task's result goes: the loop and slot position that sent it, and what to send
/// again if the queue loses it.
struct Route {
    loop_index: usize,
    id: usize,
    /// Its stream entry (empty until the XADD returned).
    entry: String,
    values: Vec<Vec<u8>>,
    sent: Instant,
}

/// Reads results and routes them to the event loops.
struct Router {
    job: String,
    queue: Queue,
    retries: u32,
    routes: Mutex<HashMap<Seq, Route>>,
    /// Each loop's inbox and waker, by loop index.
    loops: Mutex<Vec<(cb::Sender<Ended>, Arc<Waker>)>>,
    done: AtomicBool,
    spill_threshold: usize,
    task_time: TaskTime,
}

/// How long the tasks of one entry may take together: tasks quicker than this travel in
/// packs (a pack is delivered to one worker, so it is work held there that an idle worker
/// cannot take: a few milliseconds of it is the price of moving each task in a fraction of a
/// stream entry's cost; slow tasks go one per entry).
const PACK_BUDGET: Duration = Duration::from_millis(20);

/// How long started tasks may wait here for a fuller pack while the queue holds enough of
/// this submission's tasks to keep the workers busy.
const PACK_WAIT: Duration = Duration::from_millis(2);

/// Results seen before packs are made: until then, one task per entry.
const PACK_AFTER: u64 = 32;

/// How long this submission's tasks take, as their results say (a running mean), and what
/// else sizes its packs.
#[derive(Default)]
struct TaskTime {
    seen: AtomicU64,
    /// The mean, in nanoseconds.
    mean_ns: AtomicU64,
    /// Tasks this submission keeps on the queue at once.
    in_flight: usize,
    /// Live workers serving the queue, as last heard (0: not heard yet).
    workers: AtomicU64,
    /// The pack size the user asked for (`--pack`).
    told: Option<usize>,
}

impl TaskTime {
    fn heard(&self, runtime: f64) {
        let seen = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        let ns = (runtime.max(0.0) * 1e9) as u64;
        let mean = self.mean_ns.load(Ordering::Relaxed);
        // The mean of the first results, then a moving one (recent tasks weigh 1/64).
        let weight = seen.min(64);
        let mean = (mean as i128 + (ns as i128 - mean as i128) / weight as i128).max(0) as u64;
        self.mean_ns.store(mean, Ordering::Relaxed);
    }

    /// How many tasks one entry carries now.
    fn pack_size(&self) -> usize {
        if let Some(told) = self.told {
            return told.clamp(1, PACK_MOST);
        }
        if self.seen.load(Ordering::Relaxed) < PACK_AFTER {
            return 1;
        }
        // Runtimes are reported to the millisecond: a quicker task counts as 10 µs.
        let mean = self.mean_ns.load(Ordering::Relaxed).max(10_000);
        // Every worker gets a pack or two of what is in flight, however quick the tasks.
        let workers = self.workers.load(Ordering::Relaxed).max(1) as usize;
        let shared = self.in_flight / (2 * workers);
        ((PACK_BUDGET.as_nanos() as u64 / mean) as usize).min(shared).clamp(1, PACK_MOST)
    }
}

/// How often the router looks for tasks the queue lost, and for workers serving it.
const LOST_CHECK: Duration = Duration::from_secs(3);

/// Most pending entries read to count a submission's tasks held by workers.
const HELD_LOOKED_AT: usize = 10_000;

/// A stream entry id (`ms-n`) as numbers, for ordering.
fn entry_order(id: &str) -> (u64, u64) {
    let (ms, n) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(u64::MAX), n.parse().unwrap_or(0))
}

/// How long tasks may wait on a queue no worker serves before the submitter says so.
const UNSERVED_NOTICE: Duration = Duration::from_secs(5);

/// Whether anyone serves the queue, as the submitter last heard: it says so when tasks wait on
/// a queue no worker serves (a typo in --queue or --broker would otherwise wait for ever in
/// silence), and again when a worker comes.
#[derive(Default)]
struct Serving {
    unserved_since: Option<Instant>,
    said: bool,
}

impl Serving {
    fn heard(&mut self, served: bool, waiting: bool, queue: &Queue, at: &str) {
        if served || !waiting {
            if served && self.said {
                eprintln!("muster: a worker is serving queue {} now", queue.name());
            }
            *self = Serving::default();
            return;
        }
        let since = *self.unserved_since.get_or_insert_with(Instant::now);
        if !self.said && since.elapsed() >= UNSERVED_NOTICE {
            self.said = true;
            eprintln!(
                "muster: no worker is serving queue {name} at Redis {at}; the tasks wait until one does \
                 (start one: muster worker --broker URL --queue {name} COMMAND…)",
                name = queue.name()
            );
        }
    }
}

/// Workers holding this submission's tasks that stopped answering: named once each, with
/// when their tasks return to the queue (the lease's wait is otherwise silent).
#[derive(Default)]
struct SilentHolders {
    named: std::collections::HashSet<String>,
}

impl SilentHolders {
    fn heard(&mut self, now: u64, beats: &HashMap<String, Beat>, held: &HashMap<String, u64>) {
        for (name, &count) in held {
            let Some(beat) = beats.get(name) else { continue };
            let silent_ms = now.saturating_sub(beat.at);
            // Heartbeats come every third of a lease: two missed is no hiccup.
            if silent_ms <= beat.lease_ms * 2 / 3 + 1000 {
                if self.named.remove(name) {
                    eprintln!("muster: worker {name} answers again");
                }
                continue;
            }
            if self.named.insert(name.clone()) {
                let returns = match beat.lease_ms.saturating_sub(silent_ms).div_ceil(1000) {
                    0 => "its lease has ended: they return to the queue now".to_owned(),
                    secs => format!("they return to the queue when its lease ends, in about {secs}s"),
                };
                eprintln!(
                    "muster: worker {name} holds {count} of these tasks and has not been heard from for \
                     {}s (killed, frozen or cut off?); {returns}, and run again",
                    silent_ms / 1000
                );
            }
        }
    }
}

impl Router {
    fn run(
        &self,
        link: &mut Connection,
        mut from: String,
        shutdown: &crate::Shutdown,
        observer: &dyn Observer,
    ) {
        let mut next_check = Instant::now() + LOST_CHECK;
        if let Ok((now, beats)) = self.beats(link) {
            self.count_workers(now, &beats);
        }
        let mut serving = Serving::default();
        let mut silent = SilentHolders::default();
        while !self.done.load(Ordering::SeqCst) {
            // Waiting for nothing (the submission starting, or ending: its last result was
            // read), a read blocks briefly: the end must not wait out a long block.
            let waiting = !self.routes.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
            if let Err(err) = self.read(link, &mut from, if waiting { 250 } else { 5 }) {
                if !matches!(err, BrokerError::Stopped(_)) {
                    eprintln!("muster: reading results: {err}");
                }
                if shutdown.is_stopping_now() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if Instant::now() >= next_check {
                next_check = Instant::now() + LOST_CHECK;
                if let Err(err) = self.resend_lost(link, &mut from) {
                    eprintln!("muster: checking the queue: {err}");
                }
                let waiting = !self.routes.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
                let beats = self.beats(link);
                if let Ok((now, beats)) = &beats {
                    self.count_workers(*now, beats);
                    serving.heard(
                        beats.values().any(|beat| beat.alive(*now)),
                        waiting,
                        &self.queue,
                        link.shown(),
                    );
                }
                if let Ok(held) = self.held_by_workers(link) {
                    observer.queue_held(held.values().sum());
                    if let Ok((now, beats)) = &beats {
                        silent.heard(*now, beats, &held);
                    }
                }
            }
        }
    }

    /// How many of this submission's tasks each worker holds (delivered, not yet
    /// acknowledged); the rest wait on the queue. Looks at most [`HELD_LOOKED_AT`] entries
    /// from our oldest.
    fn held_by_workers(&self, link: &mut Connection) -> Result<HashMap<String, u64>, BrokerError> {
        // Tasks of ours per entry (a pack holds several).
        let mut ours: HashMap<String, u64> = HashMap::new();
        for route in self.routes.lock().unwrap_or_else(PoisonError::into_inner).values() {
            if !route.entry.is_empty() {
                *ours.entry(route.entry.clone()).or_insert(0) += 1;
            }
        }
        let mut held = HashMap::new();
        let Some(oldest) = ours.keys().min_by_key(|id| entry_order(id)) else { return Ok(held) };
        let pending: Vec<(String, String, u64, u64)> = link.call(None, |c| {
            redis::cmd("XPENDING")
                .arg(self.queue.tasks())
                .arg(GROUP)
                .arg(oldest)
                .arg("+")
                .arg(HELD_LOOKED_AT)
                .query(c)
        })?;
        for (id, holder, ..) in &pending {
            if let Some(tasks) = ours.get(id) {
                *held.entry(holder.clone()).or_insert(0) += tasks;
            }
        }
        Ok(held)
    }

    fn count_workers(&self, now: u64, beats: &HashMap<String, Beat>) {
        let live = beats.values().filter(|beat| beat.alive(now)).count();
        self.task_time.workers.store(live as u64, Ordering::Relaxed);
    }

    /// Redis's clock (ms) and each worker's last heartbeat, by name.
    fn beats(&self, link: &mut Connection) -> Result<(u64, HashMap<String, Beat>), BrokerError> {
        let now = link.time_ms(None)?;
        let beats: Vec<(String, String)> =
            link.call(None, |c| redis::cmd("HGETALL").arg(self.queue.workers()).query(c))?;
        Ok((now, beats.into_iter().map(|(name, beat)| (name, Beat::parse(&beat))).collect()))
    }

    /// Reads results after `from`, waiting up to `block_ms`; routes this job's and deletes them.
    fn read(&self, link: &mut Connection, from: &mut String, block_ms: u64) -> Result<(), BrokerError> {
        let results = self.queue.results();
        let reply: redis::Value = link.call(None, |c| {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(512);
            if block_ms > 0 {
                cmd.arg("BLOCK").arg(block_ms);
            }
            cmd.arg("STREAMS").arg(&results).arg(from.as_str()).query(c)
        })?;
        let redis::Value::Array(streams) = reply else { return Ok(()) };
        let mut ours = Vec::new();
        for stream in &streams {
            let redis::Value::Array(parts) = stream else { continue };
            let Some(redis::Value::Array(entries)) = parts.get(1) else { continue };
            // Read where Redis's reply holds them: a results pack is not copied.
            for (id, entry) in entries.iter().filter_map(Fields::of_entry) {
                *from = String::from_utf8_lossy(id).into_owned();
                if entry.get("job") != Some(self.job.as_bytes()) {
                    continue;
                }
                ours.push(from.clone());
                self.follow(&entry);
                for result in entry.results() {
                    self.deliver(&result);
                }
            }
        }
        if !ours.is_empty() {
            link.call(None, |c| redis::cmd("XDEL").arg(&results).arg(&ours).query::<()>(c))?;
        }
        Ok(())
    }

    /// Notes where the queue moved tasks (a pack put back as new entries), so that their old
    /// entry's absence is not taken for a loss.
    fn follow(&self, notice: &Fields<'_>) {
        let moved = moved(notice);
        if moved.is_empty() {
            return;
        }
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        for (seq, entry) in moved {
            if let Some(route) = routes.get_mut(&seq) {
                route.entry = entry;
                route.sent = Instant::now();
            }
        }
    }

    /// Hands a result to the loop waiting for it (a duplicate, or one for a task given up
    /// on, is dropped).
    fn deliver(&self, entry: &Fields<'_>) {
        let seq: Seq = entry.number("seq");
        let Some(route) = self.routes.lock().unwrap_or_else(PoisonError::into_inner).remove(&seq) else {
            return;
        };
        let runtime: f64 = entry.number("runtime");
        self.task_time.heard(runtime);
        let exitval: i32 = entry.number("exit");
        let signal: i32 = entry.number("signal");
        let error = entry.text("error");
        let outcome = match entry.get("outcome").unwrap_or_default() {
            b"done" => Outcome::Done,
            b"timed_out" => Outcome::TimedOut(Duration::from_secs_f64(runtime.max(0.0))),
            b"lost" => Outcome::Failed(Failure::Output(error)),
            b"not_started" => Outcome::Failed(Failure::Start(error)),
            b"dead" => Outcome::Failed(Failure::Abandoned(error)),
            _ if signal > 0 => Outcome::Failed(Failure::Signal(signal)),
            _ => Outcome::Failed(Failure::Exit(exitval)),
        };
        let mut stdout = Capture::new(self.spill_threshold);
        let mut stderr = Capture::new(self.spill_threshold);
        let captured = stdout
            .push(entry.get("stdout").unwrap_or_default())
            .and_then(|()| stderr.push(entry.get("stderr").unwrap_or_default()));
        let host = entry.text("worker");
        let remote = Remote {
            outcome,
            host: if host.is_empty() { "(no worker)".into() } else { host },
            slot: entry.number("slot"),
            start: entry.number("start"),
            runtime,
            exitval,
            signal,
            command: entry.get("command").unwrap_or_default().to_vec(),
            attempt: entry.number::<u32>("attempt").max(1),
        };
        let ended = Ended {
            id: route.id,
            verdict: Verdict::Reported(Box::new(remote)),
            reaped_at: Instant::now(),
            captures: [stdout, stderr],
            output_error: captured.err().map(|err| format!("keeping the result's output: {err}")),
            charged: true,
            input: None,
        };
        let loops = self.loops.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((inbox, waker)) = loops.get(route.loop_index) {
            let _ = inbox.send(ended);
            waker.ring();
        }
    }

    /// Sends again the tasks that left the queue without a result (Redis lost the write).
    fn resend_lost(&self, link: &mut Connection, from: &mut String) -> Result<(), BrokerError> {
        let due: Vec<(Seq, String)> = {
            let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            routes
                .iter()
                .filter(|(_, r)| !r.entry.is_empty() && r.sent.elapsed() >= LOST_CHECK)
                .take(2048)
                .map(|(seq, r)| (*seq, r.entry.clone()))
                .collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        let tasks = self.queue.tasks();
        // A pack's tasks share an entry: looked at once.
        let entries: Vec<&String> = due
            .iter()
            .map(|(_, entry)| entry)
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect();
        let present: Vec<Vec<redis::Value>> = link.call(None, |c| {
            let mut pipe = redis::pipe();
            for entry in &entries {
                pipe.cmd("XRANGE").arg(&tasks).arg(*entry).arg(*entry);
            }
            pipe.query(c)
        })?;
        let gone: std::collections::HashSet<&String> = entries
            .iter()
            .zip(present)
            .filter(|(_, found)| found.is_empty())
            .map(|(entry, _)| *entry)
            .collect();
        // A result (or a notice that tasks moved) may have landed between our last read and
        // the check: read it first.
        self.read(link, from, 0)?;
        for (seq, entry) in due.iter().filter(|(_, entry)| gone.contains(entry)) {
            let values = {
                let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
                match routes.get(seq) {
                    Some(route) if route.entry == *entry => route.values.clone(),
                    _ => continue,
                }
            };
            eprintln!(
                "muster: task {seq} left queue {} without a result (Redis lost it?); sending it again",
                self.queue.name()
            );
            let xadd = task_entry(&self.queue, &self.job, *seq, self.retries, &values);
            let (new_entry,): (String,) = link.call(None, |c| {
                redis::pipe()
                    .add_command(xadd.clone())
                    .cmd("HINCRBY")
                    .arg(self.queue.stats())
                    .arg("queued")
                    .arg(1)
                    .ignore()
                    .query(c)
            })?;
            if let Some(route) = self.routes.lock().unwrap_or_else(PoisonError::into_inner).get_mut(seq) {
                route.entry = new_entry;
                route.sent = Instant::now();
            }
        }
        Ok(())
    }
}

/// An event loop's executor: an attempt is a task on the queue.
struct RemoteExecutor {
    link: Connection,
    router: Arc<Router>,
    index: usize,
    waker: Arc<Waker>,
    inbox: cb::Receiver<Ended>,
    /// Slot position → the task's sequence number.
    running: HashMap<usize, Seq>,
    /// Started since the last wait, not on the queue yet: sent together, in one round trip.
    unsent: Vec<(usize, Seq, String)>,
    /// Since when `unsent` has waited for a fuller pack.
    unsent_since: Option<Instant>,
    /// Attempts this side gave up on (cancelled or stopped waiting for).
    ended_here: Vec<Ended>,
    shutdown: crate::Shutdown,
    /// Since when Redis has refused the tasks for want of memory (they wait in `unsent`).
    full_since: Option<Instant>,
    /// When to try a full Redis again.
    retry_at: Option<Instant>,
}

/// How long a submitter waits for a full Redis to take its tasks before they fail.
const FULL_PATIENCE: Duration = Duration::from_secs(60);

impl Executor for RemoteExecutor {
    /// Starting only queues the task (it goes at the next wait, packed with the turn's others):
    /// as many per turn as packs can carry, not the few a process spawner takes between reaps.
    fn starts_per_turn(&self) -> usize {
        2 * PACK_MOST
    }

    fn queues_starts(&self) -> bool {
        true
    }

    fn start(&mut self, id: usize, attempt: &mut Attempt<'_>) -> io::Result<()> {
        let seq = attempt.seq;
        let route = Route {
            loop_index: self.index,
            id,
            entry: String::new(),
            values: attempt.values.to_vec(),
            sent: Instant::now(),
        };
        // Routed before it is sent: a quick worker's result must find its way.
        self.router.routes.lock().unwrap_or_else(PoisonError::into_inner).insert(seq, route);
        self.unsent.push((id, seq, String::new()));
        self.running.insert(id, seq);
        Ok(())
    }

    fn stop(&mut self, id: usize, _why: StopReason, _force: bool) {
        let Some(seq) = self.running.remove(&id) else { return };
        self.unsent.retain(|(unsent, _, _)| *unsent != id);
        let route = {
            let mut routes = self.router.routes.lock().unwrap_or_else(PoisonError::into_inner);
            // A pack is cancelled with the last of its tasks stopped here.
            routes
                .remove(&seq)
                .filter(|r| !r.entry.is_empty() && !routes.values().any(|o| o.entry == r.entry))
        };
        if let Some(route) = route {
            // Not taken by a worker yet: take it off the queue. Taken: let it finish there.
            let q = &self.router.queue;
            let _ = self.link.call(Some(&self.shutdown), |c| {
                scripts::recording(&scripts::CANCEL, q).arg(GROUP).arg(&route.entry).invoke::<i64>(c)
            });
        }
        self.ended_here.push(Ended {
            id,
            verdict: Verdict::Withdrawn,
            reaped_at: Instant::now(),
            captures: [Capture::new(0), Capture::new(0)],
            output_error: None,
            charged: true,
            input: None,
        });
    }

    fn wait(&mut self, timeout: Duration, ended: &mut Vec<Ended>) {
        let timeout = self.send().map_or(timeout, |held| timeout.min(held));
        let nothing_yet = self.ended_here.is_empty() && self.inbox.is_empty();
        self.waker.wait(if nothing_yet { timeout } else { Duration::ZERO });
        ended.append(&mut self.ended_here);
        for result in self.inbox.try_iter() {
            self.running.remove(&result.id);
            ended.push(result);
        }
    }
}

impl RemoteExecutor {
    /// Puts the tasks started since the last wait on the queue, in one round trip; a task
    /// that could not be put there ends as not started, with the reason.
    /// Returns how long it holds them back, when it does (for a fuller pack).
    fn send(&mut self) -> Option<Duration> {
        if self.unsent.is_empty() || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        let pack_size = self.router.task_time.pack_size();
        if self.unsent.len() < pack_size {
            let on_queue = self.running.len().saturating_sub(self.unsent.len());
            let waited = self.unsent_since.get_or_insert_with(Instant::now).elapsed();
            if on_queue >= pack_size.min(self.running.len() / 2) && waited < PACK_WAIT {
                return Some(PACK_WAIT - waited);
            }
        }
        self.unsent_since = None;
        let mut unsent = std::mem::take(&mut self.unsent);
        let r = &self.router;
        let added: Result<Vec<String>, BrokerError> = {
            let mut pipe = redis::pipe();
            {
                let routes = r.routes.lock().unwrap_or_else(PoisonError::into_inner);
                let values = |seq: &Seq| routes.get(seq).map_or(&[][..], |route| route.values.as_slice());
                for pack in unsent.chunks(pack_size) {
                    pipe.add_command(match pack {
                        [(_, seq, _)] => task_entry(&r.queue, &r.job, *seq, r.retries, values(seq)),
                        _ => pack_entry(
                            &r.queue,
                            &r.job,
                            r.retries,
                            pack.iter().map(|(_, seq, _)| (*seq, values(seq))),
                        ),
                    });
                }
            }
            // What the queue holds, for `muster status`.
            pipe.cmd("HINCRBY").arg(r.queue.stats()).arg("queued").arg(unsent.len()).ignore();
            self.link.call(Some(&self.shutdown), |c| pipe.query(c))
        };
        let full = matches!(&added, Err(BrokerError::Redis(message)) if message.contains("OOM"));
        if full && self.full_since.get_or_insert_with(Instant::now).elapsed() < FULL_PATIENCE {
            // Redis is full (maxmemory): the tasks wait and go when it takes writes again.
            if self.retry_at.is_none() {
                eprintln!(
                    "muster: Redis at {} refuses writes (OOM: its maxmemory is reached); the tasks wait \
                     and are sent when it takes them (for up to {} s)",
                    self.link.shown(),
                    FULL_PATIENCE.as_secs()
                );
            }
            self.retry_at = Some(Instant::now() + Duration::from_millis(250));
            unsent.append(&mut self.unsent);
            self.unsent = unsent;
            return None;
        }
        if self.full_since.take().is_some() && !full {
            eprintln!("muster: Redis at {} takes writes again; the tasks are sent", self.link.shown());
        }
        self.retry_at = None;
        match added {
            Ok(entries) => {
                for (pack, added) in unsent.chunks_mut(pack_size).zip(entries) {
                    for (_, _, entry) in pack {
                        entry.clone_from(&added);
                    }
                }
                let mut routes = r.routes.lock().unwrap_or_else(PoisonError::into_inner);
                for (_, seq, entry) in unsent {
                    if let Some(route) = routes.get_mut(&seq) {
                        route.entry = entry;
                        route.sent = Instant::now();
                    }
                }
            }
            Err(err) => {
                for (id, seq, _) in unsent {
                    r.routes.lock().unwrap_or_else(PoisonError::into_inner).remove(&seq);
                    self.running.remove(&id);
                    let why = format!("putting it on queue {}: {err}", r.queue.name());
                    self.ended_here.push(Ended {
                        id,
                        verdict: Verdict::NotStarted(io::Error::other(why)),
                        reaped_at: Instant::now(),
                        captures: [Capture::new(0), Capture::new(0)],
                        output_error: None,
                        charged: true,
                        input: None,
                    });
                }
            }
        }
        None
    }
}
