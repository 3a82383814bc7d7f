//! Persistent workers as an executor of the engine: `muster run --persistent` and a queue's
//! `muster worker --persistent` are runs of the one engine, whose attempts are records written
//! to long-lived workers instead of processes spawned per task.
//!
//! Each event loop's executor owns its share of the workers (`machine`'s slots) and steps
//! them in its `wait`. Starting an attempt only queues its record; the slots send it when a
//! worker's paced window has room ([`room`](Executor::room) tells the dispatcher how much
//! there is, so slow tasks do not pile up behind one loop). Replies come back from the pipe
//! readers through the executor's inbox, each an attempt ended with the executor's facts: its
//! reply (the task's output), or how the worker holding it was lost.
//!
//! What only this executor knows stays here: a task's time is counted from its send or the
//! previous reply (so it keeps its own deadlines); a worker lost while holding several tasks
//! has them probed one at a time, uncharged, so that only the task that kills a worker is
//! reported failed; a retry the dispatcher starts runs alone, outside any window; a protocol
//! break replaces the worker. Retries, halts, drains, the joblog and the output are the
//! engine's, as for every executor.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel as cb;

use super::machine::Loop;
use super::worker::{JobQueue, Settle, SlotContext};
use super::{pipes, Event, Framing, Job, PersistentConfig, Reply};
use crate::engine::capture::Capture;
use crate::engine::dispatch::{Attempt, Decision, Ended, Executor, StopReason, Verdict};
use crate::engine::poll::{Bell, Waker};
use crate::engine::settle;
use crate::engine::{run_on, Io, RunConfig, RunError, Summary};
use crate::journal::Exit;
use crate::process::watchdog::Watchdog;
use crate::source::Sourced;
use crate::task::{Failure, Outcome, Seq};

/// What `--persistent` adds to a run's configuration: the worker program and how to feed it.
/// The run's `jobs` is the number of workers; its retries, time limit, grace and halt apply
/// to the tasks as in any run.
#[derive(Clone, Debug)]
pub struct Workers {
    /// The worker program.
    pub program: PathBuf,
    /// Its arguments (after `argv[0]`).
    pub args: Vec<OsString>,
    /// Most tasks in flight per worker (at least 1); fewer are kept when tasks are slow.
    pub window: usize,
    /// How records are cut on the workers' stdin and stdout.
    pub framing: Framing,
    /// Replace a worker after this many tasks.
    pub max_tasks_per_worker: Option<u64>,
    /// Environment variables set for the workers (beside what muster inherits).
    pub env: Vec<(OsString, OsString)>,
    /// Workers played by threads following each record's script (see `scripted`), so the
    /// policies are tested without spawning.
    #[cfg(test)]
    pub(crate) scripted: Option<Arc<super::scripted::Script>>,
}

impl Workers {
    /// `program args...`, up to 256 tasks in flight per worker, newline-separated records.
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> Workers {
        Workers {
            program: program.into(),
            args,
            window: 256,
            framing: Framing::Separated(b'\n'),
            max_tasks_per_worker: None,
            env: Vec::new(),
            #[cfg(test)]
            scripted: None,
        }
    }
}

/// What the workers did, over every loop.
#[derive(Default)]
struct Counts {
    started: AtomicU64,
    crashes: AtomicU64,
    protocol_breaks: AtomicU64,
}

/// Runs `inputs` through `workers` (the run's `persistent`; their groups known to `watchdog`),
/// settled as every run is.
pub(crate) fn run(
    config: RunConfig,
    workers: Workers,
    watchdog: Option<Arc<Watchdog>>,
    inputs: impl Iterator<Item = io::Result<Sourced>>,
    known_total: Option<u64>,
    io: Io<'_, '_>,
) -> Result<Summary, RunError> {
    let count = config.jobs.max(1);
    // The engine decides retries, halts and drains: the slots report every ending.
    let feeding = PersistentConfig {
        program: workers.program,
        args: workers.args,
        window: workers.window.max(1),
        framing: workers.framing,
        env: workers.env,
        max_tasks_per_worker: workers.max_tasks_per_worker,
        grace: config.grace,
        timeout: config.timeout,
        watchdog,
        #[cfg(test)]
        scripted: workers.scripted,
    };
    let shutdown = io.shutdown;
    // One thread per CPU reads the workers' stderr, and their replies too once there are more
    // workers than CPUs (below that, a blocking reader per worker wakes once per reply batch
    // where a shared one needs two calls).
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let readers: Vec<Arc<pipes::PipeReader>> =
        (0..cpus.min(count)).filter_map(|_| pipes::PipeReader::start().ok().map(Arc::new)).collect();
    let counts = Counts::default();
    let mut summary = run_on(config, inputs, known_total, io, |to_settle, waker, slots| {
        Ok(PersistentExecutor::new(
            Setup {
                config: &feeding,
                shutdown,
                readers: &readers,
                share_replies: count > cpus,
                counts: &counts,
            },
            to_settle,
            waker,
            slots,
        ))
    })?;
    summary.workers_started = counts.started.load(Ordering::Relaxed);
    summary.worker_crashes = counts.crashes.load(Ordering::Relaxed);
    summary.protocol_breaks = counts.protocol_breaks.load(Ordering::Relaxed);
    Ok(summary)
}

/// What every loop's executor shares.
struct Setup<'a> {
    config: &'a PersistentConfig,
    shutdown: &'a crate::Shutdown,
    readers: &'a [Arc<pipes::PipeReader>],
    share_replies: bool,
    counts: &'a Counts,
}

/// One loop's workers as an executor; see the [module docs](self).
pub(crate) struct PersistentExecutor<'a> {
    /// The slots, stepped in `wait`; `None` when no epoll instance could be had.
    feeding: Option<Loop<'a>>,
    waker: Arc<Waker>,
    /// Records for the slots, closed by `finish`; what is left there once every slot has
    /// ended was never sent.
    jobs: JobQueue,
    /// What the slots and the pipe readers report.
    inbox: cb::Receiver<Event>,
    /// Rung by those reports while `wait` waits.
    bell: Arc<Bell>,
    /// To the settle stage: the workers' stderr lines.
    to_settle: cb::Sender<settle::Event>,
    /// Attempts to stop (their workers are stopped, the others they held run again).
    stops: Arc<Mutex<HashSet<Seq>>>,
    /// A stop was ever asked for (until then the set needs no look).
    stopping: bool,
    /// Attempts started and not ended.
    in_flight: usize,
    /// What the workers take now, as of the last wait.
    capacity: usize,
    /// Attempts ended without reaching a worker.
    ended_here: Vec<Ended>,
    /// Attempts started this turn, queued for the slots together (one lock per turn).
    starting: Vec<Job>,
    config: &'a PersistentConfig,
    counts: &'a Counts,
    workers: usize,
}

impl<'a> PersistentExecutor<'a> {
    fn new(
        setup: Setup<'a>,
        to_settle: cb::Sender<settle::Event>,
        waker: Arc<Waker>,
        slots: &[usize],
    ) -> Self {
        let config = setup.config;
        let queue = JobQueue::default();
        let (events, inbox) = cb::unbounded::<Event>();
        let bell = Arc::new(Bell::new(Arc::clone(&waker)));
        let settle = Settle::new(events.clone(), Arc::clone(&bell));
        let stops: Arc<Mutex<HashSet<Seq>>> = Arc::default();
        let stopped = {
            let stops = Arc::clone(&stops);
            Arc::new(move |seq: Seq| stops.lock().unwrap_or_else(PoisonError::into_inner).contains(&seq))
        };
        let contexts: Vec<SlotContext<'a>> = slots
            .iter()
            .map(|&slot| SlotContext {
                slot,
                config,
                shutdown: setup.shutdown,
                jobs: queue.clone(),
                events: events.clone(),
                settle: settle.for_slot(slot),
                pipes: (!setup.readers.is_empty())
                    .then(|| Arc::clone(&setup.readers[slot % setup.readers.len()])),
                share_replies: setup.share_replies,
                revoked: Some(stopped.clone()),
                waker: Arc::clone(&waker),
            })
            .collect();
        let feeding = Loop::new(contexts, &waker);
        PersistentExecutor {
            feeding,
            waker,
            jobs: queue,
            bell,
            inbox,
            to_settle,
            stops,
            stopping: false,
            in_flight: 0,
            capacity: slots.len(),
            ended_here: Vec::new(),
            starting: Vec::new(),
            config,
            counts: setup.counts,
            workers: slots.len(),
        }
    }

    /// Queues the attempts started since the last look for the slots.
    fn hand_to_slots(&mut self) {
        if self.starting.is_empty() || self.jobs.push(&mut self.starting) {
            return;
        }
        for job in std::mem::take(&mut self.starting) {
            let why = Failure::Start("the workers are closed".into());
            let ended = self.ended(job, Reply::Failed(why), super::Attempt::never(), Instant::now());
            self.ended_here.push(ended);
        }
    }

    /// Turns what the slots and readers reported into ended attempts.
    fn collect(&mut self, ended: &mut Vec<Ended>) {
        ended.append(&mut self.ended_here);
        let inbox = self.inbox.clone();
        let now = Instant::now();
        for event in inbox.try_iter() {
            match event {
                Event::Reply(job, reply, attempt) => ended.push(self.ended(job, reply, attempt, now)),
                Event::Replies(replies) => {
                    ended.reserve(replies.len());
                    for (job, reply, attempt) in replies {
                        ended.push(self.ended(job, reply, attempt, now));
                    }
                }
                Event::Stderr(slot, line) => {
                    let mut text = format!("worker {slot}: ").into_bytes();
                    text.extend_from_slice(&line);
                    let _ = self.to_settle.send(settle::Event::Say(text));
                }
                Event::Notice(text) => {
                    let _ = self.to_settle.send(settle::Event::Say(text.into_bytes()));
                }
                Event::WorkerStarted => {
                    self.counts.started.fetch_add(1, Ordering::Relaxed);
                }
                Event::Crash => {
                    self.counts.crashes.fetch_add(1, Ordering::Relaxed);
                }
                Event::ProtocolBreak => {
                    self.counts.protocol_breaks.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The ended attempt a slot's reply stands for. Inlined: built where the list keeps it,
    /// not copied there.
    #[inline]
    fn ended(&mut self, job: Job, reply: Reply, attempt: super::Attempt, now: Instant) -> Ended {
        self.in_flight = self.in_flight.saturating_sub(1);
        let id = job.seq as usize;
        let decided = |outcome: Outcome, exit: Exit| {
            Verdict::Decided(Decision { outcome, exit, runtime: attempt.runtime, slot: attempt.slot })
        };
        let (verdict, stdout) = match reply {
            Reply::Done(output) => (decided(Outcome::Done, Exit::Code(0)), Capture::holding(output)),
            Reply::Failed(failure) => {
                let exit = Exit::of_failure(&failure);
                (decided(Outcome::Failed(failure), exit), Capture::new(0))
            }
            Reply::TimedOut => {
                let exit = attempt.worker_status.as_ref().map_or(Exit::Unknown, Exit::of);
                (decided(Outcome::TimedOut(self.config.timeout.unwrap_or_default()), exit), Capture::new(0))
            }
            Reply::NotRun => (Verdict::Withdrawn, Capture::new(0)),
        };
        Ended {
            id,
            verdict,
            reaped_at: now,
            captures: [stdout, Capture::new(0)],
            output_error: None,
            charged: true,
            input: Some(job.input),
        }
    }
}

impl Executor for PersistentExecutor<'_> {
    fn start(&mut self, id: usize, attempt: &mut Attempt<'_>) -> io::Result<()> {
        // The record: the input the engine lends (given back when the attempt ends), or a copy.
        let record = match (attempt.lent.take(), attempt.values) {
            (Some(lent), _) => lent,
            (None, [one]) => one.clone(),
            (None, many) => many.join(&b' '),
        };
        self.in_flight += 1;
        let job = Job { seq: id as Seq, input: record, alone: attempt.attempt > 1 };
        let refused = self.config.framing.refuses(&job.input).or_else(|| {
            self.feeding.is_none().then(|| "no event loop to feed the workers (out of descriptors?)".into())
        });
        if let Some(why) = refused {
            let ended =
                self.ended(job, Reply::Failed(Failure::Start(why)), super::Attempt::never(), Instant::now());
            self.ended_here.push(ended);
            return Ok(());
        }
        if self.stopping {
            // A position used again: a stop asked of its earlier attempt is not this one's.
            self.stops.lock().unwrap_or_else(PoisonError::into_inner).remove(&(id as Seq));
        }
        self.starting.push(job);
        Ok(())
    }

    fn lends_input(&self) -> bool {
        true
    }

    fn stop(&mut self, id: usize, _why: StopReason, _force: bool) {
        // A worker cannot stop one task alone: the one holding it is stopped (at its next
        // look), and the others it held run again, uncharged.
        self.stopping = true;
        self.stops.lock().unwrap_or_else(PoisonError::into_inner).insert(id as Seq);
    }

    fn wait(&mut self, timeout: Duration, ended: &mut Vec<Ended>) {
        self.hand_to_slots();
        self.bell.listen();
        let patience =
            if self.ended_here.is_empty() && self.inbox.is_empty() { timeout } else { Duration::ZERO };
        let slots_ended = match &mut self.feeding {
            Some(feeding) => {
                let ended = feeding.turn(&self.waker, patience);
                self.bell.deaf();
                if !ended {
                    // Workers whose replies woke us get their next records before the
                    // dispatcher settles those replies: they work while it does.
                    feeding.step();
                }
                self.capacity = feeding.capacity();
                ended
            }
            None => true,
        };
        if slots_ended {
            // Every slot stopped (a drain, or stop-now): what is still queued was never sent.
            for job in self.jobs.queued_now() {
                let not_run = self.ended(job, Reply::NotRun, super::Attempt::never(), Instant::now());
                self.ended_here.push(not_run);
            }
            if self.ended_here.is_empty() && self.inbox.is_empty() {
                // Nothing can happen here but a ring: wait for it, not spin.
                self.waker.wait(patience);
            }
        }
        self.bell.deaf();
        self.collect(ended);
    }

    fn pump(&mut self) {
        self.hand_to_slots();
        if let Some(feeding) = &mut self.feeding {
            feeding.step();
        }
    }

    fn positions(&self, slots: usize) -> usize {
        // A window in flight and one queued per worker, at most (see `Loop::capacity`).
        slots * self.config.window.max(1) * 2
    }

    fn room(&self) -> usize {
        self.capacity.saturating_sub(self.in_flight)
    }

    fn starts_per_turn(&self) -> usize {
        (self.workers * self.config.window.max(1)).max(64)
    }

    fn queues_starts(&self) -> bool {
        true
    }

    fn keeps_deadlines(&self) -> bool {
        true
    }

    fn finish(&mut self) {
        // No more tasks: the slots drain, close their workers' stdin (the quit) and reap them.
        self.hand_to_slots();
        self.jobs.close();
        if let Some(feeding) = &mut self.feeding {
            while !feeding.turn(&self.waker, crate::engine::poll::TICK) {}
        }
        let mut late = Vec::new();
        self.collect(&mut late);
    }
}
