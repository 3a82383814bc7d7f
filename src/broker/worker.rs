//! `muster worker`: runs a queue's tasks with the command it was started with, on the engine.
//!
//! The queue is a [source](crate::source) for the engine: it reads only as many tasks as the
//! worker has free slots (no prefetch: a task waits in Redis, where any idle worker can take
//! it, rather than behind a busy one), and its [settlement](crate::source::Settlement)
//! records each result with a fenced script once the engine has the outcome. A heartbeat
//! thread renews the leases of everything held, marks as revoked what another worker took
//! over (the engine then stops that attempt), and watches for a drain.
//!
//! Shutdown: a drain (first SIGINT/SIGTERM, or `muster drain`) reads nothing new, gives back
//! what was read but not started, and lets running tasks finish and be recorded; a stop-now
//! stops them, and what they held goes back to the queue.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{
    decode_pack, decode_values, push_netstring, scripts, BrokerError, Connection, Entry, Fielded, Queue,
    GROUP,
};
use crate::engine::{self, Io, NoObserver, RunConfig, RunError};
use crate::input::Input;
use crate::shutdown::Shutdown;
use crate::source::{Completion, Receipt, Settled, Settlement, Sourced};
use crate::task::{Failure, Outcome};

/// What a worker needs.
pub struct WorkerConfig {
    /// `redis://…`
    pub broker: String,
    /// The queue it serves.
    pub queue: Queue,
    /// How it runs tasks.
    /// How it runs the tasks it takes: the command, slots (`jobs`: processes at once, or
    /// persistent workers, each holding a window of tasks), time limit, grace, watchdog.
    pub run: RunConfig,
    /// How long a held task stays this worker's without a renewal.
    pub lease: Duration,
    /// Its name in the queue (default: host-pid-random). Refused while a live worker holds it.
    pub name: Option<String>,
    /// Results older than this are trimmed from the queue's results stream by every worker's
    /// heartbeat: nobody will read them (their submitter died, or a detached submission was
    /// never fetched).
    pub results_ttl: Duration,
}

/// What a worker did.
#[derive(Debug)]
pub struct WorkerSummary {
    /// Its name in the queue.
    pub name: String,
    /// Tasks it ran to success.
    pub done: u64,
    /// Tasks whose attempt here failed or timed out.
    pub failed: u64,
    /// Results refused because the worker no longer held the task (its lease had passed on).
    pub rejected: u64,
    /// Failed attempts given back for another try.
    pub retried: u64,
    /// Tasks given back unrun or stopped (a drain, a stop).
    pub given_back: u64,
    /// Tasks dead-lettered after their last attempt failed here.
    pub dead: u64,
}

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Redis.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The engine.
    #[error(transparent)]
    Engine(#[from] RunError),
    /// Reading the queue failed for good.
    #[error("reading the queue: {0}")]
    Read(io::Error),
}

/// A task this worker holds, between reading it and recording it.
struct Held {
    /// Its stream entry: the task alone, or a pack (see [`scripts`]) that it is one of.
    entry: String,
    /// Its place in its pack.
    place: u32,
    /// Its pack's size; 0 when the entry is this task alone.
    size: u32,
    /// The delivery it holds the entry by (the fencing token).
    attempt: u32,
    /// Attempts it had in entries before this one (failed, or lost with their holder).
    earlier: u32,
    retries: u32,
    job: Vec<u8>,
    seq: Vec<u8>,
    /// Its input's values joined by a space (for whoever reads the result later).
    input: Vec<u8>,
    /// Another worker took it over; its attempt is stopped and its result not sent.
    revoked: bool,
    /// It ran to its outcome here; its result waits in a batch to be recorded.
    settled: bool,
    /// Its attempt ended (it may yet be retried): its slot is free for the next task.
    ended: bool,
}

/// A pack this worker holds.
struct PackHeld {
    /// Its tasks held here and not yet recorded (or given up).
    left: usize,
    /// Some of its tasks were not run here (a drain, a stop): once none is left, what is not
    /// recorded goes back to the queue.
    give_back: bool,
}

/// The tasks held (by receipt: the entry id, `ID/PLACE` for a task of a pack), shared by the
/// reader, the heartbeat and the settlement.
#[derive(Default)]
struct Holding {
    tasks: Mutex<HashMap<String, Held>>,
    /// The packs held, by entry id.
    packs: Mutex<HashMap<String, PackHeld>>,
    changed: Condvar,
    /// The reader waits on `changed` for a free slot (set and read under `tasks`' lock): only
    /// then is it woken (a wake-up is a system call, and there are two per task otherwise).
    reader_waiting: AtomicBool,
    /// A task was given back for another attempt: look for it now, not at the next scan.
    reclaim_soon: AtomicBool,
    /// How long tasks take here (a moving mean of their runtimes, in µs; 0 before any).
    task_us: AtomicU64,
    /// Entries given back unrun (a drain, a stop).
    given_back: AtomicU64,
}

/// Tasks quicker than this are read ahead: a slot's next task is held while its current one
/// runs, so a freed slot does not wait a round trip to Redis (at most this much work waits
/// here that an idle worker could have taken; slower tasks are read only into free slots).
const READ_AHEAD_BELOW: Duration = Duration::from_millis(10);

impl Holding {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tasks taken and not yet run to an outcome here (held until recorded).
    fn unsettled(tasks: &HashMap<String, Held>) -> usize {
        tasks.values().filter(|held| !held.settled).count()
    }

    /// Tasks waiting to run or running: what occupies a slot. A task whose attempt ended
    /// frees its slot then, not once its outcome is settled (a hand-over later), so the
    /// next task is read as soon as a slot is free.
    fn occupying(tasks: &HashMap<String, Held>) -> usize {
        tasks.values().filter(|held| !held.settled && !held.ended).count()
    }

    /// Marks the held task `id` as running or not.
    fn mark_ended(&self, id: &[u8], ended: bool) {
        let id = String::from_utf8_lossy(id);
        if let Some(held) = self.lock().get_mut(id.as_ref()) {
            held.ended = ended;
        }
        if ended {
            self.wake_reader();
        }
    }

    fn release(&self, id: &str) -> Option<Held> {
        let held = self.lock().remove(id);
        self.wake_reader();
        held
    }

    /// Notes how long a task took.
    fn took(&self, runtime: f64) {
        let us = (runtime.max(0.0) * 1e6) as u64;
        let mean = self.task_us.load(Ordering::Relaxed);
        let mean = if mean == 0 { us.max(1) } else { (mean * 15 + us) / 16 };
        self.task_us.store(mean.max(1), Ordering::Relaxed);
    }

    /// Tasks it may hold per slot: 2 while they are quick (one running, one next), else 1.
    fn per_slot(&self) -> usize {
        let mean = self.task_us.load(Ordering::Relaxed);
        if mean > 0 && mean < READ_AHEAD_BELOW.as_micros() as u64 {
            2
        } else {
            1
        }
    }

    /// Wakes the reader if it waits for a slot. Called after the change, with the lock
    /// released: a reader that set `reader_waiting` before it is woken, one that looks after
    /// it sees the change.
    fn wake_reader(&self) {
        if self.reader_waiting.load(Ordering::SeqCst) {
            self.changed.notify_all();
        }
    }

    /// Counts a released task off its pack: true when it was the pack's last held here and
    /// the pack is to be given back.
    fn pack_released(&self, held: &Held, given_back: bool) -> bool {
        if held.size == 0 {
            return false;
        }
        let mut packs = self.packs.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pack) = packs.get_mut(&held.entry) else { return false };
        pack.left = pack.left.saturating_sub(1);
        pack.give_back |= given_back;
        if pack.left > 0 {
            return false;
        }
        packs.remove(&held.entry).is_some_and(|pack| pack.give_back && !held.revoked)
    }
}

/// Runs a worker until a drain or stop (through `shutdown`, or `muster drain`) ends it.
pub fn run(config: WorkerConfig, shutdown: &Shutdown) -> Result<WorkerSummary, WorkerError> {
    let WorkerConfig { broker, queue, run: mut spawned, lease, name, results_ttl } = config;
    let lease = lease.max(Duration::from_millis(300));
    let since_epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    // host-pid alone collides for containers that share a host name and run muster as PID 1.
    let name = name.unwrap_or_else(|| {
        format!("{}-{}-{:04x}", super::hostname(), std::process::id(), since_epoch & 0xffff)
    });
    let token = format!("{}-{}-{since_epoch:x}", super::hostname(), std::process::id());
    let mut setup = Connection::connect(&broker)?;
    super::ensure_group(&mut setup, &queue, Some(shutdown))?;
    if let Some(holder) = claim_name(&mut setup, &queue, &name, &token, lease, shutdown)? {
        return Err(WorkerError::Broker(BrokerError::Usage(format!(
            "another worker named {name} is alive on queue {} ({holder}); a worker adopts what its name holds, \
             so two may not share one: give this one another --name (or none: a unique one is made)",
            queue.name()
        ))));
    }
    let started_ms = setup.time_ms(Some(shutdown))?;
    let holding = Arc::new(Holding::default());
    // A drain lets held tasks finish however long they take; a second signal stops them.
    let patient = Some(Duration::from_secs(365 * 24 * 3600));
    spawned.retries = 0; // a failed attempt goes back to the queue, for any worker
    spawned.halt = None;
    spawned.keep_order = false;
    spawned.joblog = None;
    spawned.resume = None;
    spawned.results = None;
    spawned.drain_patience = patient;
    // It holds no more tasks than it runs at once: its slots, or its workers' windows.
    let jobs = spawned.jobs.max(1) * spawned.persistent.as_ref().map_or(1, |workers| workers.window.max(1));
    let reader = Reader {
        link: Connection::connect(&broker)?,
        queue: queue.clone(),
        name: name.clone(),
        holding: Arc::clone(&holding),
        jobs,
        buffer: VecDeque::new(),
        last_pack: 1,
        cursor: "0-0".into(),
        next_reclaim: Instant::now(),
        adopt: true,
        reconnects_seen: 0,
        lease,
        shutdown: shutdown.clone(),
        started_ms,
        drain_looked: None,
    };
    let settlement = Acker {
        link: Mutex::new(Connection::connect(&broker)?),
        queue: queue.clone(),
        name: name.clone(),
        holding: Arc::clone(&holding),
        shutdown: shutdown.clone(),
        rejected: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        dead: AtomicU64::new(0),
        batch: Mutex::new(Vec::new()),
        refusing: AtomicBool::new(false),
    };
    let mut heartbeat = Heartbeat {
        link: setup,
        queue: queue.clone(),
        name: name.clone(),
        holding: Arc::clone(&holding),
        lease,
        jobs,
        started_ms,
        shutdown: shutdown.clone(),
        token: token.clone(),
        name_lost: false,
        results_ttl,
    };
    // Heard from before it takes a task: a submitter waiting on a task this worker holds can
    // then always name it if it falls silent (a worker killed at its first task was unknown).
    heartbeat.beat_or_say();
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let (done, failed) = std::thread::scope(|scope| {
        let acker = &settlement;
        let beating = scope.spawn(move || heartbeat.run(&stop_rx, acker));
        let io = Io {
            stdout: Box::new(io::sink()),
            stderr: Box::new(io::stderr()),
            shutdown,
            observer: &NoObserver,
            settlement: &settlement,
        };
        let ran = engine::run_sourced(spawned, reader, None, io);
        let ran = match ran {
            Ok(summary) => match summary.input_error {
                Some(err) => Err(WorkerError::Read(io::Error::other(queue_error(&err)))),
                None => Ok((summary.done, summary.failed + summary.timed_out)),
            },
            Err(err) => Err(WorkerError::from(err)),
        };
        drop(stop_tx);
        let _ = beating.join();
        ran
    })?;
    // Whoever is waiting on the heartbeat hash learns this worker left.
    let mut link = settlement.link.into_inner().unwrap_or_else(PoisonError::into_inner);
    let _ = link.call(Some(shutdown), |c| redis::cmd("HDEL").arg(queue.workers()).arg(&name).query::<()>(c));
    let _ = link
        .call(Some(shutdown), |c| scripts::RELEASE_NAME.key(queue.alive(&name)).arg(&token).invoke::<()>(c));
    Ok(WorkerSummary {
        name,
        done,
        failed,
        rejected: settlement.rejected.into_inner(),
        retried: settlement.retried.into_inner(),
        given_back: holding.given_back.load(Ordering::Relaxed),
        dead: settlement.dead.into_inner(),
    })
}

/// The engine's source: tasks read from the queue, never more than free slots.
struct Reader {
    link: Connection,
    queue: Queue,
    name: String,
    holding: Arc<Holding>,
    jobs: usize,
    buffer: VecDeque<Sourced>,
    /// How many tasks the last entry read carried: entries are read so as to fill the free
    /// slots, not one per slot.
    last_pack: usize,
    /// Where the next XAUTOCLAIM scan starts.
    cursor: String,
    /// Look for entries this consumer holds unknown to us (at start, after a reconnect).
    adopt: bool,
    /// The link's reconnects when last looked at.
    reconnects_seen: u64,
    next_reclaim: Instant,
    lease: Duration,
    shutdown: Shutdown,
    /// Redis's time when the worker started: drains asked before it are not for it.
    started_ms: u64,
    /// When a drain was last looked for.
    drain_looked: Option<Instant>,
}

/// How long one blocking read waits before looking at the shutdown again.
const READ_BLOCK_MS: u64 = 250;
/// How often a reading worker looks whether a drain was asked: not a round trip per read
/// (a slot freed by a short task would wait for it), and still within a blink of the ask.
const DRAIN_LOOK: Duration = Duration::from_millis(50);

impl Iterator for Reader {
    type Item = io::Result<Sourced>;

    fn next(&mut self) -> Option<io::Result<Sourced>> {
        loop {
            if let Some(task) = self.buffer.pop_front() {
                return Some(Ok(task));
            }
            if self.shutdown.is_tripped() {
                return None;
            }
            // A drain stops reads at once, not at the next heartbeat — also while every slot
            // is busy (what was read and not started then goes back: see `Drop`).
            let look = self.drain_looked.is_none_or(|at| at.elapsed() >= DRAIN_LOOK);
            if look {
                self.drain_looked = Some(Instant::now());
            }
            match if look { self.drain_asked() } else { Ok(false) } {
                Ok(false) => {}
                Ok(true) => {
                    announce_drain(&self.name);
                    self.shutdown.trip();
                    return None;
                }
                Err(BrokerError::Stopped(_)) => return None,
                Err(err) => return Some(Err(io::Error::other(err.to_string()))),
            }
            let free = {
                let held = self.holding.lock();
                let free = (self.jobs * self.holding.per_slot()).saturating_sub(Holding::occupying(&held));
                if free == 0 {
                    self.holding.reader_waiting.store(true, Ordering::SeqCst);
                    let held = self.holding.changed.wait_timeout(held, Duration::from_millis(100));
                    self.holding.reader_waiting.store(false, Ordering::SeqCst);
                    drop(held);
                    continue;
                }
                free
            };
            if self.link.reconnects() != self.reconnects_seen {
                // A reply lost with the connection may have delivered entries to us.
                self.reconnects_seen = self.link.reconnects();
                self.adopt = true;
            }
            let adopted = if self.adopt { self.adopt_own(free) } else { Ok(0) };
            match adopted {
                Ok(0) => {}
                Ok(_) => continue,
                Err(BrokerError::Stopped(_)) => return None,
                Err(err) if self.queue_lost(&err) => continue,
                Err(err) if refuses_writes(&err) => {
                    // Redis is full: wait for it, as for a lost connection.
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
                Err(err) => return Some(Err(io::Error::other(err.to_string()))),
            }
            let read = if Instant::now() >= self.next_reclaim
                || self.holding.reclaim_soon.swap(false, Ordering::SeqCst)
            {
                self.next_reclaim = Instant::now() + (self.lease / 4).max(Duration::from_millis(100));
                let reclaimed = self.reclaim(free);
                if reclaimed.as_ref().is_ok_and(|&(taken, requeued)| taken >= free || requeued > 0) {
                    // As many as there was room for, or packs put back on the queue: more may
                    // have expired (a dead worker held many), so look again as soon as a slot
                    // frees, not a quarter lease later.
                    self.next_reclaim = Instant::now();
                }
                reclaimed.map(|(taken, _)| taken)
            } else {
                Ok(0)
            };
            let read = match read {
                Ok(0) => self.read_new(free),
                other => other,
            };
            match read {
                Ok(_) => {}
                Err(BrokerError::Stopped(_)) => return None,
                Err(err) if self.queue_lost(&err) => {}
                Err(err) if refuses_writes(&err) => std::thread::sleep(Duration::from_millis(250)),
                Err(err) => return Some(Err(io::Error::other(err.to_string()))),
            }
        }
    }
}

impl Reader {
    /// True when `err` says the queue's stream or its consumer group is gone — Redis came back
    /// empty (restarted without AOF) or the queue was deleted — after making them again: the
    /// worker carries on reading (the submitter sends again what was lost). Said once per loss.
    fn queue_lost(&mut self, err: &BrokerError) -> bool {
        let BrokerError::Redis(message) = err else { return false };
        if !message.contains("NOGROUP") && !message.contains("UNBLOCKED") {
            return false;
        }
        eprintln!(
            "muster: worker {}: queue {} was gone from Redis (restarted empty, or deleted); made it again and reading on",
            self.name,
            self.queue.name()
        );
        let _ = super::ensure_group(&mut self.link, &self.queue, Some(&self.shutdown));
        // What this worker held went with it: reclaim and adoption start afresh.
        self.cursor = "0-0".to_owned();
        true
    }

    /// True when `muster drain` was asked after this worker started.
    fn drain_asked(&mut self) -> Result<bool, BrokerError> {
        let key = self.queue.drain();
        let at: Option<u64> =
            self.link.call(Some(&self.shutdown), |c| redis::cmd("GET").arg(&key).query(c))?;
        Ok(at.is_some_and(|at| at >= self.started_ms))
    }

    /// Takes over up to `free` entries whose holders stopped renewing them: how many tasks
    /// it took, and how many went back to the queue (packs, one entry per task).
    fn reclaim(&mut self, free: usize) -> Result<(usize, usize), BrokerError> {
        let q = &self.queue;
        let lease_ms = self.lease.as_millis() as u64;
        let cursor = self.cursor.clone();
        let reply: redis::Value = self.link.call(Some(&self.shutdown), |c| {
            scripts::recording(&scripts::RECLAIM, q)
                .arg(GROUP)
                .arg(&self.name)
                .arg(lease_ms)
                .arg(&cursor)
                .arg(free)
                .arg(scripts::LOST_HOLDERS)
                .invoke(c)
        })?;
        let redis::Value::Array(parts) = reply else { return Ok((0, 0)) };
        if let Some(next) = parts.first().and_then(super::bytes) {
            self.cursor = String::from_utf8_lossy(next).into_owned();
        }
        let requeued = parts.get(2).and_then(super::integer).unwrap_or(0).max(0) as usize;
        Ok((parts.get(1).map_or(0, |claimed| self.hold_claimed(claimed)), requeued))
    }

    /// Holds entries a script claimed for us: `{{id, attempt, fields}, …}`. Returns how many.
    fn hold_claimed(&mut self, claimed: &redis::Value) -> usize {
        let redis::Value::Array(items) = claimed else { return 0 };
        let mut taken = 0;
        for item in items {
            let redis::Value::Array(item) = item else { continue };
            let (Some(id), Some(attempt), Some(fields)) = (item.first(), item.get(1), item.get(2)) else {
                continue;
            };
            let id = super::bytes(id).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            let attempt = super::integer(attempt).unwrap_or(1).max(1) as u32;
            let entry =
                Entry::parse(&redis::Value::Array(vec![redis::Value::BulkString(id.into()), fields.clone()]));
            if let Some(entry) = entry {
                taken += 1;
                self.hold(entry, attempt);
            }
        }
        taken
    }

    /// Takes up to `free` entries this consumer holds that this worker does not know of.
    fn adopt_own(&mut self, free: usize) -> Result<usize, BrokerError> {
        let q = &self.queue;
        let pending: Vec<(String, String, u64, u32)> = self.link.call(Some(&self.shutdown), |c| {
            redis::cmd("XPENDING")
                .arg(q.tasks())
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(1024)
                .arg(&self.name)
                .query(c)
        })?;
        let unknown: Vec<(String, u32)> = {
            let holding = self.holding.lock();
            let known: std::collections::HashSet<&str> = holding.values().map(|h| h.entry.as_str()).collect();
            pending
                .into_iter()
                .filter(|(id, ..)| !known.contains(id.as_str()))
                .map(|(id, _, _, attempt)| (id, attempt))
                .collect()
        };
        // What does not fit now is adopted at a later read.
        self.adopt = unknown.len() > free;
        if unknown.is_empty() {
            return Ok(0);
        }
        let claimed: redis::Value = self.link.call(Some(&self.shutdown), |c| {
            let mut invocation = scripts::recording(&scripts::ADOPT, q);
            invocation.arg(GROUP).arg(&self.name);
            for (id, attempt) in unknown.iter().take(free) {
                invocation.arg(id).arg(*attempt);
            }
            invocation.invoke(c)
        })?;
        Ok(self.hold_claimed(&claimed))
    }

    /// Reads up to `free` new tasks, waiting a little for them.
    fn read_new(&mut self, free: usize) -> Result<usize, BrokerError> {
        let tasks = self.queue.tasks();
        let reply = self.link.call(Some(&self.shutdown), |c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.name)
                .arg("COUNT")
                .arg((free / self.last_pack).max(1))
                .arg("BLOCK")
                .arg(READ_BLOCK_MS)
                .arg("STREAMS")
                .arg(&tasks)
                .arg(">")
                .query::<redis::Value>(c)
        });
        let reply = reply?;
        // [[stream, [entries]]] or nil on timeout.
        let redis::Value::Array(streams) = reply else { return Ok(0) };
        let mut taken = 0;
        for stream in &streams {
            let redis::Value::Array(parts) = stream else { continue };
            if let Some(entries) = parts.get(1) {
                for entry in Entry::parse_all(entries) {
                    taken += 1;
                    self.hold(entry, 1);
                }
            }
        }
        Ok(taken)
    }

    /// Registers an entry's tasks as held and queues them for the engine; an entry that is not
    /// a task (or a pack of them) is dead-lettered at once.
    fn hold(&mut self, entry: Entry, attempt: u32) {
        let job = entry.get("job").unwrap_or_default().to_vec();
        let retries = entry.number("retries");
        let earlier = entry.number::<u32>("failed").saturating_add(entry.number("lost"));
        let held = |place: usize, size: usize, seq: Vec<u8>, values: &[Vec<u8>]| Held {
            entry: entry.id.clone(),
            place: place as u32,
            size: size as u32,
            attempt,
            earlier,
            retries,
            job: job.clone(),
            seq,
            input: values.join(&b' '),
            revoked: false,
            settled: false,
            ended: false,
        };
        let tasks = match entry.get("pack") {
            Some(pack) => decode_pack(pack).filter(|tasks| !tasks.is_empty()).map(|tasks| {
                let size = tasks.len();
                self.holding
                    .packs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(entry.id.clone(), PackHeld { left: size, give_back: false });
                let mut holding = self.holding.lock();
                tasks
                    .into_iter()
                    .enumerate()
                    .map(|(place, (seq, values))| {
                        let receipt = format!("{}/{place}", entry.id);
                        holding.insert(receipt.clone(), held(place, size, seq, &values));
                        (receipt, values)
                    })
                    .collect::<Vec<_>>()
            }),
            None => entry.get("values").and_then(decode_values).map(|values| {
                let seq = entry.get("seq").unwrap_or_default().to_vec();
                self.holding.lock().insert(entry.id.clone(), held(0, 0, seq, &values));
                vec![(entry.id.clone(), values)]
            }),
        };
        let Some(tasks) = tasks else {
            let _ = fail(
                &mut self.link,
                &self.queue,
                &self.name,
                &self.shutdown,
                &Failing { id: &entry.id, attempt, place: 0, size: 0, retries: 0 },
                "not a muster task (no 'values' field in netstring form, nor a 'pack' of them)",
                &[],
            );
            return;
        };
        self.last_pack = tasks.len().max(1);
        for (receipt, values) in tasks {
            let receipt: Receipt = Arc::from(receipt.as_bytes());
            self.buffer.push_back(Sourced { input: Input { values }, receipt: Some(receipt) });
        }
    }
}

impl Drop for Reader {
    /// What was read and never handed to the engine (it stopped taking tasks: a drain, a stop)
    /// goes back to the queue at once, for any worker, rather than after the lease.
    fn drop(&mut self) {
        for task in std::mem::take(&mut self.buffer) {
            let Some(receipt) = task.receipt else { continue };
            let Some(held) = self.holding.release(&String::from_utf8_lossy(&receipt)) else { continue };
            if held.size == 0 || self.holding.pack_released(&held, true) {
                give_back(&mut self.link, &self.queue, &self.name, &self.shutdown, &self.holding, &held);
            }
        }
    }
}

/// Renews leases, reports the worker alive, and turns a `muster drain` into a drain.
struct Heartbeat {
    link: Connection,
    queue: Queue,
    name: String,
    holding: Arc<Holding>,
    lease: Duration,
    jobs: usize,
    started_ms: u64,
    shutdown: Shutdown,
    /// This worker's hold on its name (see [`claim_name`]).
    token: String,
    /// Another worker took the name (said once).
    name_lost: bool,
    /// Results older than this are trimmed.
    results_ttl: Duration,
}

/// Claims `name` on `queue` for this worker (`token`) for a lease, renewed by each heartbeat:
/// the token of another live worker holding it instead. Two live workers of one name would
/// take each other's tasks (a worker adopts what its name holds).
fn claim_name(
    link: &mut Connection,
    queue: &Queue,
    name: &str,
    token: &str,
    lease: Duration,
    shutdown: &Shutdown,
) -> Result<Option<String>, BrokerError> {
    link.call(Some(shutdown), |c| {
        scripts::CLAIM_NAME
            .key(queue.alive(name))
            .arg(token)
            .arg(lease.as_millis() as u64)
            .invoke::<Option<String>>(c)
    })
}

impl Heartbeat {
    /// Beats every third of the lease (the first beat came before the worker read a task).
    fn run(mut self, stop: &crossbeam_channel::Receiver<()>, acker: &Acker) {
        let every = self.lease / 3;
        loop {
            match stop.recv_timeout(every) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            self.beat_or_say();
            // Results Redis refused (OOM) are tried again while their tasks' leases are renewed.
            if acker.keeps_results() {
                acker.flush();
            }
        }
    }

    /// A heartbeat; a failure is said (a full Redis, or a stop, silently).
    fn beat_or_say(&mut self) {
        if let Err(err) = self.beat() {
            if !matches!(err, BrokerError::Stopped(_)) && !refuses_writes(&err) {
                eprintln!("muster: worker {}: heartbeat failed: {err}", self.name);
            }
        }
    }

    fn beat(&mut self) -> Result<(), BrokerError> {
        // Leases are the entries' (a pack's tasks share one).
        let held: Vec<(String, u32)> = {
            let holding = self.holding.lock();
            let entries: HashMap<&str, u32> =
                holding.values().filter(|h| !h.revoked).map(|h| (h.entry.as_str(), h.attempt)).collect();
            entries.into_iter().map(|(id, attempt)| (id.to_owned(), attempt)).collect()
        };
        let q = &self.queue;
        for chunk in held.chunks(256) {
            let lost: Vec<String> = self.link.call(Some(&self.shutdown), |c| {
                let mut invocation = scripts::RENEW.key(q.tasks());
                invocation.arg(GROUP).arg(&self.name);
                for (id, attempt) in chunk {
                    invocation.arg(id).arg(*attempt);
                }
                invocation.invoke(c)
            })?;
            if !lost.is_empty() {
                let lost: std::collections::HashSet<String> = lost.into_iter().collect();
                let mut holding = self.holding.lock();
                for (receipt, held) in holding.iter_mut().filter(|(_, h)| lost.contains(&h.entry)) {
                    if !held.revoked {
                        eprintln!(
                            "muster: worker {}: lost the lease of task {receipt} to another worker; stopping it here",
                            self.name
                        );
                        held.revoked = true;
                    }
                }
            }
        }
        // After the renewals, which a Redis refusing writes (OOM) still takes: this SET is not.
        let claimed =
            claim_name(&mut self.link, &self.queue, &self.name, &self.token, self.lease, &self.shutdown);
        if let Ok(Some(holder)) = claimed {
            if !self.name_lost {
                eprintln!(
                    "muster: worker {}: another worker took this name ({holder}) while this one was not heard from; its results may be refused",
                    self.name
                );
                self.name_lost = true;
            }
        }
        let now = self.link.time_ms(Some(&self.shutdown))?;
        // Stream ids are milliseconds: everything added before now - ttl goes.
        let oldest_kept = now.saturating_sub(self.results_ttl.as_millis() as u64);
        if oldest_kept > 0 {
            self.link.call(Some(&self.shutdown), |c| {
                redis::cmd("XTRIM").arg(q.results()).arg("MINID").arg(oldest_kept).query::<()>(c)
            })?;
        }
        let running = Holding::unsettled(&self.holding.lock());
        let (drain, ()): (Option<u64>, ()) = self.link.call(Some(&self.shutdown), |c| {
            redis::pipe()
                .cmd("GET")
                .arg(q.drain())
                .cmd("HSET")
                .arg(q.workers())
                .arg(&self.name)
                .arg(format!("{now} {} {running} {}", self.jobs, self.lease.as_millis()))
                .ignore()
                .query(c)
                .map(|(drain,): (Option<u64>,)| (drain, ()))
        })?;
        if drain.is_some_and(|at| at >= self.started_ms) && !self.shutdown.is_tripped() {
            announce_drain(&self.name);
            self.shutdown.trip();
        }
        Ok(())
    }
}

/// A read error as the engine reports it, without the input position it names first: what
/// matters for a queue is Redis's word.
fn queue_error(err: &str) -> String {
    err.split_once(" records: ").map_or(err, |(_, why)| why).to_owned()
}

fn announce_drain(name: &str) {
    eprintln!("muster: worker {name}: drain asked; finishing the tasks held, reading no more");
}

/// The settlement: records results with the fenced scripts, gives back what did not run.
/// Successes are recorded in batches (one round trip for many), sent whenever the engine
/// has nothing more to hand over; a task stays held, its lease renewed, until its batch is
/// recorded.
struct Acker {
    link: Mutex<Connection>,
    queue: Queue,
    name: String,
    holding: Arc<Holding>,
    shutdown: Shutdown,
    rejected: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    /// Successes not recorded yet.
    batch: Mutex<Vec<Success>>,
    /// Redis refused to record results (OOM): they wait in `batch`, their tasks still held.
    refusing: AtomicBool,
}

/// How long successes wait for others to share their recording round trip: tasks that end
/// one at a time (processes) would otherwise be recorded one script call each.
const RECORD_LINGER: Duration = Duration::from_millis(5);

/// A success waiting in a batch.
struct Success {
    /// Its receipt.
    id: String,
    entry: String,
    place: u32,
    size: u32,
    attempt: u32,
    job: Vec<u8>,
    /// Its result, encoded for the completion script.
    result: Vec<u8>,
}

impl Settlement for Acker {
    fn started(&self, receipt: &Receipt) {
        self.holding.mark_ended(receipt, false);
    }

    fn ended(&self, receipt: &Receipt) {
        self.holding.mark_ended(receipt, true);
    }

    fn settled(&self, receipt: &Receipt, how: Settled<'_>) {
        let id = String::from_utf8_lossy(receipt).into_owned();
        if let Settled::Finished(completion) = &how {
            if let Some(record) = completion.record {
                self.holding.took(record.runtime);
            }
            if completion.outcome.is_done() {
                let success = {
                    let mut holding = self.holding.lock();
                    let Some(held) = holding.get_mut(&id) else { return };
                    held.settled = true;
                    Success {
                        result: packed_result(completion, held, &self.name),
                        id,
                        entry: held.entry.clone(),
                        place: held.place,
                        size: held.size,
                        attempt: held.attempt,
                        job: held.job.clone(),
                    }
                };
                // The slot is free again: the reader may take another task at once.
                self.holding.wake_reader();
                let full = {
                    let mut batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
                    batch.push(success);
                    batch.len() >= scripts::COMPLETE_BATCH
                };
                if full {
                    self.flush();
                }
                return;
            }
        }
        let Some(held) = self.holding.release(&id) else { return };
        let q = &self.queue;
        let result = match how {
            Settled::Finished(completion) => {
                let mut fields = Vec::new();
                result_fields(&completion, &held, &self.name, &mut |field, value| {
                    fields.push((field, value.to_vec()));
                });
                let error = completion.note.map_or_else(
                    || completion.outcome.to_string(),
                    |note| {
                        // Named by the submission's number for it, not this worker's count.
                        let mut note = note.clone();
                        if let Some(seq) = std::str::from_utf8(&held.seq).ok().and_then(|s| s.parse().ok()) {
                            note.seq = seq;
                        }
                        note.headline()
                    },
                );
                let failing = Failing {
                    id: &held.entry,
                    attempt: held.attempt,
                    place: held.place,
                    size: held.size,
                    retries: held.retries,
                };
                let outcome = {
                    let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
                    fail(&mut link, q, &self.name, &self.shutdown, &failing, &error, &fields)
                };
                match outcome {
                    Ok(1) => {
                        self.holding.reclaim_soon.store(true, Ordering::SeqCst);
                        self.retried.fetch_add(1, Ordering::Relaxed)
                    }
                    Ok(2) => self.dead.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                if self.holding.pack_released(&held, false) {
                    self.give_back(&held);
                }
                outcome
            }
            Settled::NotRun | Settled::Stopped if !held.revoked => {
                if held.size == 0 || self.holding.pack_released(&held, true) {
                    self.give_back(&held);
                }
                return;
            }
            Settled::NotRun | Settled::Stopped | Settled::Skipped => {
                if self.holding.pack_released(&held, false) {
                    self.give_back(&held);
                }
                return;
            }
        };
        self.report(&id, result);
    }

    fn flush(&self) {
        let batch = std::mem::take(&mut *self.batch.lock().unwrap_or_else(PoisonError::into_inner));
        if batch.is_empty() {
            return;
        }
        let q = &self.queue;
        let replies: Result<Vec<i64>, BrokerError> = {
            let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
            let mut tries = 0;
            link.call(Some(&self.shutdown), |c| {
                tries += 1;
                let mut invocation = scripts::recording(&scripts::COMPLETE, q);
                invocation.arg(GROUP).arg(&self.name).arg(again(tries));
                for success in &batch {
                    invocation
                        .arg(&success.entry)
                        .arg(success.place)
                        .arg(success.size)
                        .arg(success.attempt)
                        .arg(success.job.as_slice())
                        .arg(success.result.as_slice());
                }
                invocation.invoke(c)
            })
        };
        if let Err(err) = &replies {
            if refuses_writes(err) {
                // A live worker is not a dead one: its results wait here, its tasks stay held
                // (the heartbeat renews them: Redis still takes XCLAIM), and they are recorded
                // once Redis accepts writes again.
                if !self.refusing.swap(true, Ordering::SeqCst) {
                    eprintln!(
                        "muster: worker {}: Redis refuses writes (OOM: its maxmemory is reached); \
                         results are kept here and recorded once it accepts writes again",
                        self.name
                    );
                }
                let mut waiting = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
                let newer = std::mem::replace(&mut *waiting, batch);
                waiting.extend(newer);
                return;
            }
        } else if self.refusing.swap(false, Ordering::SeqCst) {
            eprintln!(
                "muster: worker {}: Redis accepts writes again; the kept results are recorded",
                self.name
            );
        }
        for (i, success) in batch.iter().enumerate() {
            if let Some(held) = self.holding.release(&success.id) {
                if self.holding.pack_released(&held, false) {
                    self.give_back(&held);
                }
            }
            let result = match &replies {
                Ok(replies) => Ok(replies.get(i).copied().unwrap_or(0)),
                Err(err) => Err(BrokerError::Redis(err.to_string())),
            };
            self.report(&success.id, result);
        }
    }

    fn linger(&self) -> Duration {
        RECORD_LINGER
    }

    fn revocable(&self) -> bool {
        true
    }

    fn revoked(&self, receipt: &Receipt) -> bool {
        let id = String::from_utf8_lossy(receipt);
        self.holding.lock().get(id.as_ref()).is_some_and(|held| held.revoked)
    }

    fn carries_output(&self) -> bool {
        true
    }
}

/// True when Redis refused a write for want of memory (`maxmemory` reached, `noeviction`).
fn refuses_writes(err: &BrokerError) -> bool {
    matches!(err, BrokerError::Redis(message) if message.contains("OOM"))
}

impl Acker {
    /// Gives the entry `held` came in back to the queue, uncounted (see [`scripts::GIVE_BACK`]).
    fn give_back(&self, held: &Held) {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        give_back(&mut link, &self.queue, &self.name, &self.shutdown, &self.holding, held);
    }

    /// True while results wait because Redis refused them.
    fn keeps_results(&self) -> bool {
        self.refusing.load(Ordering::SeqCst)
    }

    /// Tells the operator about a result that was not recorded.
    fn report(&self, id: &str, result: Result<i64, BrokerError>) {
        match result {
            Ok(0) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "muster: worker {}: task {id} ended after its lease passed to another worker; \
                     its result was not recorded",
                    self.name
                );
            }
            Ok(_) => {}
            Err(err) => eprintln!(
                "muster: worker {}: could not record task {id} ({err}); it returns to the queue after the lease",
                self.name
            ),
        }
    }
}

/// Gives the entry `held` came in back to the queue, uncounted, and counts it (see
/// [`scripts::GIVE_BACK`]).
fn give_back(
    link: &mut Connection,
    q: &Queue,
    name: &str,
    shutdown: &Shutdown,
    holding: &Holding,
    held: &Held,
) {
    let given = link.call(Some(shutdown), |c| {
        scripts::recording(&scripts::GIVE_BACK, q)
            .arg(GROUP)
            .arg(&held.entry)
            .arg(name)
            .arg(held.attempt)
            .invoke::<i64>(c)
    });
    if let Ok(1) = given {
        holding.given_back.fetch_add(1, Ordering::Relaxed);
    }
}

/// The attempt a failure is recorded for.
struct Failing<'a> {
    /// Its entry.
    id: &'a str,
    attempt: u32,
    /// Its place in its pack, and the pack's size (0: the entry is this task alone).
    place: u32,
    size: u32,
    retries: u32,
}

/// Records a failed attempt (see [`scripts::FAIL`]): 1 retried, 2 dead-lettered, 0 rejected.
fn fail(
    link: &mut Connection,
    q: &Queue,
    name: &str,
    shutdown: &Shutdown,
    failing: &Failing<'_>,
    error: &str,
    fields: &[(&str, Vec<u8>)],
) -> Result<i64, BrokerError> {
    let mut tries = 0;
    link.call(Some(shutdown), |c| {
        tries += 1;
        let mut invocation = scripts::recording(&scripts::FAIL, q);
        invocation.arg(GROUP).arg(failing.id).arg(name).arg(failing.attempt).arg(failing.retries);
        invocation.arg(error).arg(again(tries)).arg(failing.place).arg(failing.size);
        for (field, value) in fields {
            invocation.arg(*field).arg(value.as_slice());
        }
        invocation.invoke::<i64>(c)
    })
}

/// The `again` argument of a script: "1" when this try repeats one whose reply was lost
/// (the connection dropped), so the first may have been carried out.
fn again(tries: u32) -> &'static str {
    if tries > 1 {
        "1"
    } else {
        "0"
    }
}

/// Hands each field of a finished task's result to `put`.
fn result_fields(
    completion: &Completion<'_>,
    held: &Held,
    worker: &str,
    put: &mut dyn FnMut(&'static str, &[u8]),
) {
    use std::fmt::Write;
    let outcome = match completion.outcome {
        Outcome::Done => "done",
        Outcome::TimedOut(_) => "timed_out",
        Outcome::Failed(Failure::Output(_)) => "lost",
        Outcome::Failed(Failure::Start(_)) => "not_started",
        _ => "failed",
    };
    // Numbers are written through one buffer, not a String each.
    let mut number = String::new();
    let mut shown = |value: &dyn std::fmt::Display| -> Vec<u8> {
        number.clear();
        let _ = write!(number, "{value}");
        number.as_bytes().to_vec()
    };
    put("job", &held.job);
    put("seq", &held.seq);
    put("input", &held.input);
    put("outcome", outcome.as_bytes());
    put("worker", worker.as_bytes());
    put("attempt", &shown(&held.attempt.saturating_add(held.earlier)));
    put("stdout", completion.stdout);
    put("stderr", completion.stderr);
    if let Some(record) = completion.record {
        put("exit", &shown(&record.exitval));
        put("signal", &shown(&record.signal));
        put("start", &shown(&format_args!("{:.3}", record.start)));
        put("runtime", &shown(&format_args!("{:.3}", record.runtime)));
        put("slot", &shown(&record.slot));
        put("command", &record.command);
    }
    let error = match completion.outcome {
        Outcome::Failed(failure) => failure.to_string(),
        Outcome::TimedOut(after) => format!("timed out after {after:?}"),
        _ => String::new(),
    };
    put("error", error.as_bytes());
}

/// A success's result as the completion script takes it (see [`scripts::COMPLETE`]): a
/// netstring of its field/value netstrings. The pack it joins names the submission, and a
/// field that is empty or zero is left out (it reads the same absent).
fn packed_result(completion: &Completion<'_>, held: &Held, worker: &str) -> Vec<u8> {
    let mut fields = Vec::with_capacity(160 + completion.stdout.len() + held.input.len());
    result_fields(completion, held, worker, &mut |field, value| {
        if field != "job" && !matches!(value, b"" | b"0" | b"0.000") {
            push_netstring(&mut fields, field.as_bytes());
            push_netstring(&mut fields, value);
        }
    });
    let mut result = Vec::with_capacity(fields.len() + 8);
    push_netstring(&mut result, &fields);
    result
}

impl WorkerSummary {
    /// One line for the worker's stderr when it stops.
    pub fn line(&self) -> String {
        format!(
            "muster worker {}: {} done, {} failed ({} retried elsewhere, {} dead-lettered), {} given back, {} late results rejected",
            self.name,
            self.done,
            self.failed,
            self.retried,
            self.dead,
            self.given_back,
            self.rejected
        )
    }
}
