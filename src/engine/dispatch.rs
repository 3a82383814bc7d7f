//! The dispatcher: what happens to a task between the queue and its outcome, whatever runs it.
//!
//! Each event loop of the engine is a dispatcher over an [`Executor`]. The dispatcher owns the
//! policy — which task starts in which slot, when a refused start is tried again, time limits,
//! the TERM → grace → KILL escalation of a timeout or a shutdown, retries, `--halt`, and how an
//! ended attempt becomes an outcome, a joblog record and an event for the settle stage. The
//! executor owns the mechanism: starting an attempt, stopping it, and telling which attempts
//! ended and how (a [`Verdict`], with their captured output). The executors are `process`,
//! `persistent`, `remote`; the tests run the same dispatcher over a scripted fake, so the
//! policy is proven without `sh`.
//!
//! An attempt lives in a slot position (`id`, 0-based, one per slot the loop owns); the slot
//! number (`{%}`, `MUSTER_WORKER`) is what the user sees.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel as cb;
use rustix::io::Errno;
use rustix::process::Signal;

use super::capture::Capture;
use super::feed::Taken;
use super::note::{shown, Note, What};
use super::poll::{Waker, TICK};
use super::settle::{Event, Finished, More};
use super::{HaltGate, Observer, Queued, RunConfig};
use crate::input::Input;
use crate::journal::{outcome_columns, Exit, Record};
use crate::shutdown::{Level, Shutdown};
use crate::task::{Failure, Outcome, Seq};

/// Ended attempts settled between two of an executor's [`pump`](Executor::pump)s.
const PUMP_EVERY: usize = 64;
/// Spawn attempts refused by the OS, with nothing running, before a task fails.
pub(crate) const SPAWN_TRIES: u32 = 8;
/// How long a task killed by SIGINT/SIGTERM waits to learn whether that signal was meant
/// for muster (a terminal's Ctrl-C reaching a task an instant after its spawn).
const SIGNAL_SETTLE: Duration = Duration::from_millis(200);
/// Tasks started before the loop looks at its running ones again: each process spawn copies
/// muster's descriptor table, so reaping short tasks between spawns keeps that table (and the
/// cost) small.
const STARTS_PER_TURN: usize = 16;

/// One attempt, as an executor is asked to start it.
pub(crate) struct Attempt<'t> {
    pub(crate) seq: Seq,
    /// From 1.
    pub(crate) attempt: u32,
    /// The slot number the user sees (`{%}`).
    pub(crate) slot: usize,
    pub(crate) argv: &'t [OsString],
    /// The input's values (what a remote executor sends instead of a command line).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) values: &'t [Vec<u8>],
    /// `--tag` prefix for lines passed on while it runs.
    pub(crate) tag: Option<&'t [u8]>,
    /// What its stdin reads (`--pipe`); none: /dev/null.
    pub(crate) stdin: Option<&'t [u8]>,
    /// The input's one value, lent to an executor that [lends_input](Executor::lends_input)
    /// (`values` then holds an empty value): it takes it, and gives it back in [`Ended`].
    pub(crate) lent: Option<Vec<u8>>,
}

/// An attempt that ended: its leader reaped and its output read to the end.
pub(crate) struct Ended {
    /// The slot position it ran in.
    pub(crate) id: usize,
    /// What its executor says of it.
    pub(crate) verdict: Verdict,
    /// When the executor learnt it ended.
    pub(crate) reaped_at: Instant,
    /// stdout and stderr.
    pub(crate) captures: [Capture; 2],
    /// Why its output could not be fully captured.
    pub(crate) output_error: Option<String>,
    /// The input lent to the executor for the attempt, given back.
    pub(crate) input: Option<Vec<u8>>,
    /// It counts against the task's retries. An executor that ended an innocent attempt
    /// (a task a killed worker held without working on it) says not: the task runs again
    /// on the same attempt number, and nothing is recorded of this one.
    pub(crate) charged: bool,
}

impl Ended {
    /// This ending, leaving an empty one in its place.
    fn take(&mut self) -> Ended {
        let husk = Ended {
            id: self.id,
            verdict: Verdict::Withdrawn,
            reaped_at: self.reaped_at,
            captures: [Capture::new(0), Capture::new(0)],
            output_error: None,
            input: None,
            charged: self.charged,
        };
        std::mem::replace(self, husk)
    }
}

/// How an attempt ended, as its executor saw it: the facts, never an invented status.
pub(crate) enum Verdict {
    /// Its process ended with this status.
    Exited(ExitStatus),
    /// It never ran (could not be started, or could not be sent), or how it ended could not
    /// be learnt: why.
    NotStarted(io::Error),
    /// It ran elsewhere (a queue's worker), which reported how it went.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Reported(Box<Remote>),
    /// The executor decided how it went, with its facts (a persistent worker's reply, or the
    /// worker lost or stopped while working on it).
    Decided(Decision),
    /// The executor took it back before anything ran it (a queued task cancelled by a stop).
    Withdrawn,
}

/// How an attempt went, as the executor that ran it decided.
pub(crate) struct Decision {
    pub(crate) outcome: Outcome,
    /// How the process that ran it ended, as far as that says anything.
    pub(crate) exit: Exit,
    /// The time it took, as the executor measured it.
    pub(crate) runtime: Duration,
    /// The slot (worker) it ran in.
    pub(crate) slot: usize,
}

/// An attempt that ran on another machine, as that machine reported it.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) outcome: Outcome,
    /// Where it ran (the worker's name) and in which of its slots.
    pub(crate) host: String,
    pub(crate) slot: u32,
    /// Start, seconds since the Unix epoch, and run time in seconds, on that machine.
    pub(crate) start: f64,
    pub(crate) runtime: f64,
    pub(crate) exitval: i32,
    pub(crate) signal: i32,
    /// The command line the worker ran.
    pub(crate) command: Vec<u8>,
    /// Deliveries it took (the broker's attempts).
    pub(crate) attempt: u32,
}

/// Runs attempts for one dispatcher. Every method is called from the dispatcher's thread.
pub(crate) trait Executor {
    /// Starts `attempt` in slot position `id` (free until it is reported ended); it may only
    /// queue it, to be sent with others at the next [`wait`](Self::wait). An error of the
    /// kinds [`refused_for_now`] accepts means "try again later".
    fn start(&mut self, id: usize, attempt: &mut Attempt<'_>) -> io::Result<()>;
    /// Stops the attempt in `id`, for `why`, unless it has ended: asks it to end (a process's
    /// group gets SIGTERM), or with `force` makes it end (SIGKILL). It is reported ended as
    /// usual, with what the executor knows of how.
    fn stop(&mut self, id: usize, why: StopReason, force: bool);
    /// Waits at most `timeout` for attempts to end or the [`Waker`] to ring, and appends the
    /// attempts that ended.
    fn wait(&mut self, timeout: Duration, ended: &mut Vec<Ended>);
    /// Positions (attempt ids) it can hold at once, given `slots` slots.
    fn positions(&self, slots: usize) -> usize {
        slots
    }
    /// How many more attempts it takes now (persistent workers' paced windows), beside the
    /// free positions.
    fn room(&self) -> usize {
        usize::MAX
    }
    /// Attempts started per turn of the loop before it looks at the running ones again.
    fn starts_per_turn(&self) -> usize {
        STARTS_PER_TURN
    }
    /// `start` only queues (what it queued goes out at the next wait): one clock reading
    /// serves every start of a turn. Otherwise each start reads the clock (a spawn takes a
    /// while, and the next task's time must not include it).
    fn queues_starts(&self) -> bool {
        false
    }
    /// It times its attempts itself (persistent workers time a task from its send or the
    /// previous reply), so the dispatcher sets no deadline.
    fn keeps_deadlines(&self) -> bool {
        false
    }
    /// It takes an input's only value for the attempt's time (a persistent worker's record:
    /// no copy per task) and gives it back in [`Ended::input`]; its `start` then never fails.
    fn lends_input(&self) -> bool {
        false
    }
    /// A moment between settling ended attempts (every [`PUMP_EVERY`]): an executor whose
    /// attempts share workers moves what it has queued to them (a persistent worker's window
    /// refilled while the loop settles a long batch of its replies).
    fn pump(&mut self) {}
    /// Every attempt has ended and no more will start: let go of what it holds (workers
    /// closed, waited for).
    fn finish(&mut self) {}
}

/// What the dispatchers of one run share.
pub(crate) struct Shared<'a> {
    pub(crate) config: &'a RunConfig,
    /// With `--delay`: no task starts before this, across every loop.
    pub(crate) next_start: std::sync::Mutex<Instant>,
    /// With a time limit relative to the median run time: that median.
    pub(crate) median: Option<std::sync::Mutex<super::median::RecentMedian>>,
    /// The `{%}` numbers, when every slot runs one attempt; otherwise each loop numbers its own.
    pub(crate) slot_numbers: Option<std::sync::Mutex<super::slots::SlotNumbers>>,
    pub(crate) shutdown: &'a Shutdown,
    /// When draining began, as first noticed by any loop; running tasks get `grace` from it.
    pub(crate) drain_started: &'a OnceLock<Instant>,
    pub(crate) halt: &'a HaltGate,
    pub(crate) journaling: bool,
    /// `--results`: finished tasks carry their record and input values.
    pub(crate) results: bool,
    pub(crate) tasks: super::feed::Tasks<Queued>,
    pub(crate) observer: &'a dyn Observer,
    /// Told of attempts of tasks that carry a receipt.
    pub(crate) settlement: &'a dyn crate::source::Settlement,
    /// The command as the joblog records it, for executors whose attempts have no command
    /// line of their own (persistent workers).
    pub(crate) label: Vec<u8>,
    /// Where the inputs of settled tasks go: back to the feeder, which read them and keeps
    /// their buffers for the next (see `input::recycle`). Freed here, each one cost the
    /// feeder's allocator a contended lock (the malloc and free of inputs were a sixth of a
    /// 1M-task persistent run).
    pub(crate) spent: cb::Sender<Vec<Input>>,
}

/// A task between the queue and its final outcome.
struct Task {
    seq: Seq,
    occurrence: u32,
    input: Input,
    /// The attempt it is on, from 1.
    attempt: u32,
    /// `--tag` prefix, when tagging.
    tag: Option<Vec<u8>>,
    /// Starts refused by the OS in a row while nothing else ran.
    refused: u32,
    /// Not to be tried again before this (after a refused start).
    not_before: Option<Instant>,
    /// The observer was told it started.
    announced: bool,
    /// Its source's handle, handed back when it settles.
    receipt: Option<crate::source::Receipt>,
    /// Its feeding order, until its first attempt ran (a retry takes any free number).
    order: Option<u64>,
}

impl Task {
    fn new(queued: Queued, tag: bool) -> Task {
        let tag = tag.then(|| [queued.input.display(), b"\t".to_vec()].concat());
        Task {
            seq: queued.seq,
            occurrence: queued.occurrence,
            input: queued.input,
            attempt: 1,
            tag,
            refused: 0,
            not_before: None,
            announced: false,
            receipt: queued.receipt,
            order: Some(queued.order),
        }
    }
}

/// Why an attempt is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    TimedOut,
    Shutdown,
    /// The source no longer holds the task (its lease went to someone else).
    Revoked,
}

/// A running attempt, as the dispatcher sees it (its task is kept beside it, in `tasks`: each
/// under two cache lines, they move about as a few register copies where the two together
/// took a call to memcpy per move).
struct Running {
    argv: Vec<OsString>,
    start: SystemTime,
    started: Instant,
    deadline: Option<Instant>,
    /// Its time limit, when it has one (what a timeout's note says).
    limit: Option<Duration>,
    stopping: Option<(StopReason, Instant)>,
    /// Set once the executor reported it ended; it settles from here.
    ended: Option<Box<Ended>>,
}

/// How an attempt ended.
enum Ending {
    Exited(ExitStatus),
    /// Past its time limit (this long).
    TimedOut(ExitStatus, Option<Duration>),
    /// A shutdown stopped it, or it died of the signal that was meant for muster.
    Stopped(ExitStatus),
    StartFailed(io::Error),
    /// It ran elsewhere; the remote end decided.
    Remote(Box<Remote>),
    /// Taken back by its executor before anything ran it, for this reason.
    Withdrawn(StopReason),
    /// Its executor decided, with these facts.
    Decided(Decision),
}

/// One event loop; see the [module docs](self).
pub(crate) struct Dispatcher<'s, 'a, E> {
    shared: &'s Shared<'a>,
    executor: E,
    /// To the settle stage; it ends when every loop has.
    events: cb::Sender<Event>,
    /// Events of this turn, sent together at its end (one hand-over per turn, not per task).
    outbox: Vec<Event>,
    /// Inputs of the tasks settled this turn, handed back to the feeder at its end.
    spent: Vec<Input>,
    /// The most events or inputs one turn handed over.
    busiest_turn: usize,
    waker: Arc<Waker>,
    /// Slot number per slot position (the number its attempt holds, when numbers are shared).
    slots: Vec<usize>,
    running: Vec<Option<Running>>,
    /// The task of each running attempt, by position.
    tasks: Vec<Option<Task>>,
    free: Vec<usize>,
    count: usize,
    pending: VecDeque<Task>,
    /// Tasks taken from the queue together, not started yet (a take is for what a turn can
    /// start, so no loop holds tasks another could run).
    fresh: VecDeque<Queued>,
    input_ended: bool,
    /// Ended attempts not settled yet.
    held: Vec<usize>,
    next_scan: Instant,
    level_seen: Level,
}

impl<'s, 'a, E: Executor> Dispatcher<'s, 'a, E> {
    /// A loop over `slots` (the `{%}` numbers it hands out), running attempts on `executor`.
    pub(crate) fn new(
        shared: &'s Shared<'a>,
        executor: E,
        events: cb::Sender<Event>,
        waker: Arc<Waker>,
        slots: Vec<usize>,
    ) -> Self {
        // An executor may hold several attempts per slot (a persistent worker's window): the
        // positions beyond the slots share their numbers.
        let positions = executor.positions(slots.len()).max(slots.len());
        let slots: Vec<usize> =
            (0..positions).filter_map(|id| slots.get(id % slots.len().max(1)).copied()).collect();
        let free = (0..slots.len()).rev().collect();
        Dispatcher {
            shared,
            executor,
            events,
            outbox: Vec::new(),
            spent: Vec::new(),
            busiest_turn: 0,
            waker,
            running: slots.iter().map(|_| None).collect(),
            tasks: slots.iter().map(|_| None).collect(),
            slots,
            free,
            count: 0,
            pending: VecDeque::new(),
            fresh: VecDeque::new(),
            input_ended: false,
            held: Vec::new(),
            next_scan: Instant::now() + TICK,
            level_seen: Level::Running,
        }
    }

    fn shutdown(&self) -> &'a Shutdown {
        self.shared.shutdown
    }

    /// Runs until the queue is closed and every task taken has an outcome.
    pub(crate) fn run(mut self) {
        let mut ended = Vec::new();
        loop {
            let more = self.fill();
            if self.count == 0 && self.pending.is_empty() && self.fresh.is_empty() {
                if self.input_ended {
                    self.hand_over();
                    self.executor.finish();
                    return;
                }
                // About to wait for tasks: what is settled goes out first.
                self.hand_over();
                match self.shared.tasks.take(self.room(), &mut self.fresh) {
                    Taken::Some(_) => {}
                    Taken::Ended => self.input_ended = true,
                    Taken::Empty => {
                        self.waker.become_hungry();
                        if self.shared.tasks.is_idle() {
                            self.waker.wait(TICK);
                        }
                        self.waker.sated();
                    }
                }
                continue;
            }
            let hungry = !more
                && !self.input_ended
                && self.has_room()
                && self.pending.is_empty()
                && self.fresh.is_empty();
            if hungry {
                self.waker.become_hungry();
                if !self.shared.tasks.is_empty() {
                    self.waker.sated();
                    continue;
                }
            }
            let wait = if more {
                Duration::ZERO
            } else {
                self.next_wake().saturating_duration_since(Instant::now())
            };
            self.executor.wait(wait, &mut ended);
            if hungry {
                self.waker.sated();
            }
            // Settled where they lie (an ended attempt is too big to move about per task).
            for (settled, attempt) in ended.iter_mut().enumerate() {
                if settled % PUMP_EVERY == PUMP_EVERY - 1 {
                    self.executor.pump();
                }
                let id = attempt.id;
                let Some(run) = self.running.get_mut(id).and_then(Option::as_mut) else { continue };
                if matches!(attempt.verdict, Verdict::Exited(_)) {
                    // Settled in `settle_held`, which may give a signal time to land.
                    self.held.push(id);
                    run.ended = Some(Box::new(attempt.take()));
                } else if let (Some(run), Some(task)) = (self.running[id].take(), self.tasks[id].take()) {
                    self.finish_with(run, task, attempt);
                }
            }
            ended.clear();
            let level = self.shutdown().level();
            if level != self.level_seen || Instant::now() >= self.next_scan {
                self.level_seen = level;
                self.scan();
            }
            self.settle_held();
            self.hand_over();
        }
    }

    /// Queues an event for the settle stage (sent at the end of the turn).
    fn emit(&mut self, event: Event) {
        self.outbox.push(event);
    }

    /// Sends the turn's events to the settle stage, and its settled tasks' inputs back.
    fn hand_over(&mut self) {
        // The next turn's room, sized as the busiest turn's so far: a turn bigger than the last
        // one grew its vectors by doubling, copying what they held (a tenth of a persistent
        // run's copying).
        self.busiest_turn = self.busiest_turn.max(self.outbox.len()).max(self.spent.len());
        if !self.spent.is_empty() {
            let spent = std::mem::replace(&mut self.spent, Vec::with_capacity(self.busiest_turn));
            let _ = self.shared.spent.send(spent);
        }
        match self.outbox.len() {
            0 => {}
            1 => self.outbox.drain(..).for_each(|event| {
                let _ = self.events.send(event);
            }),
            _ => {
                let batch = std::mem::replace(&mut self.outbox, Vec::with_capacity(self.busiest_turn));
                let _ = self.events.send(Event::Batch(batch));
            }
        }
    }

    /// Position `id` is free, and its `{%}` number when the loops share them (the record of
    /// its last attempt still reads it from `slots`).
    fn release(&mut self, id: usize) {
        self.free.push(id);
        if let Some(numbers) = &self.shared.slot_numbers {
            numbers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).give_back(self.slots[id]);
        }
    }

    /// A position is free and the executor takes more.
    fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// How many attempts could start now: free positions the executor takes.
    fn room(&self) -> usize {
        self.free.len().min(self.executor.room())
    }

    /// When the loop must look again without an event.
    fn next_wake(&self) -> Instant {
        let mut at = self.next_scan;
        if let Some(not_before) = self.pending.front().and_then(|t| t.not_before) {
            at = at.min(not_before);
        }
        at
    }

    /// Starts tasks while there is room and tasks to start, at most the executor's
    /// [`starts_per_turn`](Executor::starts_per_turn); true when it stopped at that limit with
    /// more to start.
    fn fill(&mut self) -> bool {
        let (mut now, mut wall) = (Instant::now(), SystemTime::now());
        let clock_per_start = !self.executor.queues_starts();
        let starts = self.executor.starts_per_turn();
        for started in 0..starts {
            if clock_per_start {
                (now, wall) = (Instant::now(), SystemTime::now());
            }
            if self.shutdown().is_tripped() || self.shared.halt.closed() {
                // Nothing new starts; what is queued or waiting ends as not run.
                for task in std::mem::take(&mut self.pending) {
                    self.emit(Event::NotRun(task.seq, task.receipt));
                }
                let mut queued = std::mem::take(&mut self.fresh);
                while let Taken::Some(_) = self.shared.tasks.take(usize::MAX, &mut queued) {}
                for queued in queued {
                    self.emit(Event::NotRun(queued.seq, queued.receipt));
                }
                return false;
            }
            if !self.has_room() {
                return false;
            }
            let task = match self.pending.front() {
                Some(task) if task.not_before.is_some_and(|t| now < t) => return false,
                Some(_) => self.pending.pop_front(),
                None => {
                    // What this turn can still start, at most.
                    let want = (starts - started).min(self.room());
                    let Some(queued) = self.next_fresh(want) else { return false };
                    Some(Task::new(queued, self.shared.config.tag))
                }
            };
            let Some(mut task) = task else { return false };
            if let Some(delay) = self.shared.config.delay {
                let mut next =
                    self.shared.next_start.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if now < *next {
                    task.not_before = Some(*next);
                    self.pending.push_front(task);
                    return false;
                }
                *next = now + delay;
            }
            if !self.start(task, now, wall) {
                return false;
            }
        }
        self.has_room()
    }

    /// The next task from the queue: one of the last take's, or of a new take of up to `want`.
    fn next_fresh(&mut self, want: usize) -> Option<Queued> {
        if let Some(queued) = self.fresh.pop_front() {
            return Some(queued);
        }
        if self.input_ended {
            return None;
        }
        match self.shared.tasks.take(want, &mut self.fresh) {
            Taken::Some(_) => self.fresh.pop_front(),
            Taken::Empty => None,
            Taken::Ended => {
                self.input_ended = true;
                None
            }
        }
    }

    /// Starts one attempt; false when the OS refused it and the task waits.
    fn start(&mut self, mut task: Task, now: Instant, wall: SystemTime) -> bool {
        let Some(id) = self.free.pop() else {
            self.pending.push_front(task);
            return false;
        };
        if let Some(numbers) = &self.shared.slot_numbers {
            let mut numbers = numbers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Every position holds a number, so one is free for a free position.
            if let Some(number) = numbers.take(task.order) {
                self.slots[id] = number;
            }
        }
        let slot = self.slots[id];
        let shared = self.shared;
        if let Some(tagstring) = &shared.config.tagstring {
            let mut tag = tagstring.render_line(&task.input.values, task.seq, slot);
            tag.push(b'\t');
            task.tag = Some(tag);
        }
        if !task.announced {
            task.announced = true;
            shared.observer.task_started();
        }
        // With --pipe the input is the task's stdin, not part of its command line.
        let values: &[Vec<u8>] = if shared.config.pipe { &[] } else { &task.input.values };
        // Persistent workers have their command already: the input is their stdin's record.
        let argv = match (shared.config.many, &shared.config.persistent) {
            (_, Some(_)) => Vec::new(),
            (Some((per_input, context)), None) => {
                shared.config.template.render_many(values, per_input, context, task.seq, slot)
            }
            (None, None) => shared.config.template.render(values, task.seq, slot),
        };
        let (start, started) = (wall, now);
        let lent = match task.input.values.as_mut_slice() {
            [one] if self.executor.lends_input() && !shared.config.pipe => Some(std::mem::take(one)),
            _ => None,
        };
        let stdin = shared.config.pipe.then(|| task.input.values.first().map_or(&[][..], Vec::as_slice));
        let tag = task.tag.as_deref();
        let values = &task.input.values;
        let mut attempt =
            Attempt { seq: task.seq, attempt: task.attempt, slot, argv: &argv, values, tag, stdin, lent };
        let started_now = self.executor.start(id, &mut attempt);
        if let Some(unused) = attempt.lent {
            task.input.values[0] = unused;
        }
        match started_now {
            Ok(()) => {}
            Err(err) if refused_for_now(&err) => {
                self.release(id);
                if self.count == 0 {
                    task.refused += 1;
                }
                if task.refused >= SPAWN_TRIES {
                    let why = io::Error::new(err.kind(), format!("{err} (refused {SPAWN_TRIES} times)"));
                    self.settle(task, id, argv, start, started, Ending::StartFailed(why), None, None);
                    return true;
                }
                let backoff = Duration::from_millis(10 << task.refused.min(7)).min(Duration::from_secs(1));
                task.not_before = Some(Instant::now() + backoff);
                self.pending.push_front(task);
                return false;
            }
            Err(err) => {
                self.settle(task, id, argv, start, started, Ending::StartFailed(err), None, None);
                return true;
            }
        }
        shared.observer.attempt_started();
        task.order = None;
        if let Some(receipt) = &task.receipt {
            shared.settlement.started(receipt);
        }
        let limit = match &shared.median {
            Some(median) => median.lock().unwrap_or_else(std::sync::PoisonError::into_inner).limit(),
            None => shared.config.timeout,
        };
        let limit = limit.filter(|_| !self.executor.keeps_deadlines());
        let deadline = limit.map(|t| started + t);
        if let Some(deadline) = deadline {
            self.next_scan = self.next_scan.min(deadline);
        }
        self.tasks[id] = Some(task);
        self.running[id] =
            Some(Running { argv, start, started, deadline, limit, stopping: None, ended: None });
        self.count += 1;
        true
    }

    /// Looks at every running attempt: time limits and shutdown, escalating TERM to KILL.
    /// Sets when to look again.
    fn scan(&mut self) {
        let now = Instant::now();
        let shared = self.shared;
        let grace = shared.config.grace;
        let patience = shared.config.drain_patience.unwrap_or(grace);
        let drain_deadline =
            shared.shutdown.is_tripped().then(|| *shared.drain_started.get_or_init(Instant::now) + patience);
        let mut next = now + TICK;
        for (id, slot) in self.running.iter_mut().enumerate() {
            let Some(run) = slot else { continue };
            if run.ended.is_some() {
                continue;
            }
            match run.stopping {
                None => {
                    let reason = if run.deadline.is_some_and(|d| now >= d) {
                        Some(StopReason::TimedOut)
                    } else if shared.shutdown.is_stopping_now() || drain_deadline.is_some_and(|d| now >= d) {
                        Some(StopReason::Shutdown)
                    } else if self.tasks[id]
                        .as_ref()
                        .and_then(|task| task.receipt.as_ref())
                        .is_some_and(|r| shared.settlement.revoked(r))
                    {
                        Some(StopReason::Revoked)
                    } else {
                        None
                    };
                    match reason {
                        Some(reason) => {
                            self.executor.stop(id, reason, false);
                            run.stopping = Some((reason, now + grace));
                            next = next.min(now + grace);
                        }
                        None => {
                            for at in [run.deadline, drain_deadline].into_iter().flatten() {
                                next = next.min(at);
                            }
                        }
                    }
                }
                Some((reason, kill_at)) if now >= kill_at => self.executor.stop(id, reason, true),
                Some((_, kill_at)) => next = next.min(kill_at),
            }
        }
        self.next_scan = next;
    }

    /// Settles the ended attempts, except one killed by SIGINT/SIGTERM that may have caught
    /// the signal meant for muster (spawned into our group an instant before Ctrl-C): that one
    /// gives the signal time to land first.
    fn settle_held(&mut self) {
        let now = Instant::now();
        let shutdown = self.shutdown();
        let mut waiting = Vec::new();
        for id in std::mem::take(&mut self.held) {
            let settle_at = {
                let Some(run) = self.running.get(id).and_then(Option::as_ref) else { continue };
                let Some(ended) = &run.ended else { continue };
                let signal = match &ended.verdict {
                    Verdict::Exited(status) => status.signal(),
                    _ => None,
                };
                let ours = signal.is_some_and(|s| s == Signal::INT.as_raw() || s == Signal::TERM.as_raw());
                let unexplained = ours && run.stopping.is_none() && shutdown.signal().is_none();
                unexplained.then(|| ended.reaped_at + SIGNAL_SETTLE)
            };
            match settle_at {
                Some(at) if now < at => {
                    self.next_scan = self.next_scan.min(at);
                    waiting.push(id);
                }
                _ => self.finish(id),
            }
        }
        self.held = waiting;
    }

    /// Settles an ended attempt.
    fn finish(&mut self, id: usize) {
        let Some(run) = self.running.get_mut(id).and_then(Option::as_mut) else { return };
        let Some(mut ended) = run.ended.take() else { return };
        if let (Some(run), Some(task)) = (self.running[id].take(), self.tasks[id].take()) {
            self.finish_with(run, task, &mut ended);
        }
    }

    /// Settles `run` of `task`, which ended so (what it is settled with is taken from `ended`).
    fn finish_with(&mut self, run: Running, mut task: Task, ended: &mut Ended) {
        let id = ended.id;
        if let (Some(input), [value]) = (ended.input.take(), task.input.values.as_mut_slice()) {
            *value = input;
        }
        self.count -= 1;
        self.shared.observer.attempt_ended();
        if let Some(receipt) = &task.receipt {
            self.shared.settlement.ended(receipt);
        }
        if !ended.charged {
            // Nothing is recorded of an innocent attempt: the task runs again, on the same
            // attempt, unless nothing new may start.
            self.release(id);
            task.not_before = None;
            if self.shutdown().is_tripped() || self.shared.halt.closed() {
                self.emit(Event::NotRun(task.seq, task.receipt));
            } else {
                self.pending.push_front(task);
            }
            return;
        }
        let ending = match (std::mem::replace(&mut ended.verdict, Verdict::Withdrawn), run.stopping) {
            (Verdict::NotStarted(err), _) => Ending::StartFailed(err),
            (Verdict::Reported(remote), _) => Ending::Remote(remote),
            (Verdict::Decided(decision), _) => Ending::Decided(decision),
            (Verdict::Withdrawn, Some((reason, _))) => Ending::Withdrawn(reason),
            (Verdict::Withdrawn, None) => Ending::Withdrawn(StopReason::Shutdown),
            (Verdict::Exited(status), Some((StopReason::TimedOut, _))) => Ending::TimedOut(status, run.limit),
            (Verdict::Exited(status), Some((StopReason::Shutdown | StopReason::Revoked, _))) => {
                Ending::Stopped(status)
            }
            (Verdict::Exited(status), None) if died_of_our_signal(&status, self.shutdown()) => {
                Ending::Stopped(status)
            }
            (Verdict::Exited(status), None) => Ending::Exited(status),
        };
        let Running { argv, start, started, .. } = run;
        let captures = std::mem::replace(&mut ended.captures, [Capture::new(0), Capture::new(0)]);
        self.settle(task, id, argv, start, started, ending, ended.output_error.take(), Some(captures));
    }

    /// Records an ended attempt: a retry goes back to the pending queue, a final outcome goes
    /// to the output thread.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        task: Task,
        id: usize,
        argv: Vec<OsString>,
        start: SystemTime,
        started: Instant,
        ending: Ending,
        output_error: Option<String>,
        captures: Option<[Capture; 2]>,
    ) {
        self.release(id);
        let shared = self.shared;
        let shutdown = shared.shutdown;
        // The time it ran, as whoever ran it measured: a queued task's wait on the queue is no
        // run time, and one taken back never ran (the summary's task time and speedup).
        let (runtime, decided_slot) = match &ending {
            Ending::Decided(decision) => (decision.runtime, Some(decision.slot)),
            Ending::Remote(remote) => (Duration::try_from_secs_f64(remote.runtime).unwrap_or_default(), None),
            Ending::Withdrawn(_) => (Duration::ZERO, None),
            _ => (started.elapsed(), None),
        };
        let (mut outcome, stopped) = classify(&ending, shared.config.timeout);
        if let (Some(why), false) = (&output_error, stopped) {
            if !matches!(outcome, Outcome::TimedOut(_)) {
                outcome = Outcome::Failed(Failure::Output(why.clone()));
            }
        }
        if let (Some(median), true) = (&shared.median, outcome.is_done()) {
            median.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(runtime);
        }
        let retry = !outcome.is_done()
            && !stopped
            && task.attempt <= shared.config.retries
            && !shutdown.is_tripped()
            && !shared.halt.closed();
        let [stdout, stderr] = captures.unwrap_or_else(|| [Capture::new(0), Capture::new(0)]);
        let remote = match &ending {
            Ending::Remote(remote) => Some(remote),
            _ => None,
        };
        let carries = shared.settlement.carries_output();
        let exit = match &ending {
            Ending::Exited(s) | Ending::TimedOut(s, _) | Ending::Stopped(s) => Exit::of(s),
            Ending::StartFailed(_) | Ending::Withdrawn(_) => Exit::Unknown,
            Ending::Decided(decision) => decision.exit,
            Ending::Remote(remote) if remote.signal > 0 => Exit::Signal(remote.signal),
            Ending::Remote(remote) => Exit::Code(remote.exitval),
        };
        let record = (shared.journaling || shared.results || carries).then(|| {
            let (recorded, exitval, signal) = outcome_columns(&outcome, exit, stopped, retry);
            Record {
                seq: task.seq,
                host: remote.map_or_else(|| ":".into(), |r| r.host.clone()),
                start: match (remote, decided_slot) {
                    (Some(r), _) => r.start,
                    // Its time ended now.
                    (None, Some(_)) => epoch_seconds(SystemTime::now()) - runtime.as_secs_f64(),
                    (None, None) => epoch_seconds(start),
                },
                runtime: remote.map_or(runtime.as_secs_f64(), |r| r.runtime),
                // Bytes written to its stdin: the chunk with --pipe, the record and its separator
                // to a persistent worker (none when it never reached one).
                send: match (&shared.config.persistent, decided_slot) {
                    (Some(_), Some(slot)) if slot > 0 => record_len(&task.input.values) + 1,
                    (Some(_), _) => 0,
                    (None, _) if shared.config.pipe => {
                        task.input.values.first().map_or(0, |v| v.len() as u64)
                    }
                    (None, _) => 0,
                },
                receive: stdout.len() + stderr.len(),
                exitval,
                signal,
                command: match remote {
                    Some(r) => r.command.clone(),
                    None if shared.config.persistent.is_some() => shared.label.clone(),
                    None => argv.iter().map(|a| a.as_encoded_bytes()).collect::<Vec<_>>().join(&b' '),
                },
                outcome: recorded,
                attempt: remote.map_or(task.attempt, |r| r.attempt),
                occurrence: task.occurrence,
                input: task.input.identity(),
                slot: match (remote, decided_slot) {
                    (Some(r), _) => r.slot,
                    (None, Some(slot)) => u32::try_from(slot).unwrap_or(u32::MAX),
                    (None, None) => u32::try_from(self.slots[id]).unwrap_or(u32::MAX),
                },
            }
        });
        if retry {
            if let Some(record) = record {
                self.emit(Event::Retry(Box::new(record)));
            }
            let mut task = task;
            task.attempt += 1;
            task.refused = 0;
            task.not_before = None;
            self.pending.push_back(task);
            return;
        }
        let what = match (&ending, &outcome) {
            (Ending::StartFailed(err), _) => Some(What::CannotRun {
                program: argv.first().map_or(String::new(), |p| p.to_string_lossy().into_owned()),
                error: err.to_string(),
            }),
            (_, Outcome::Failed(failure @ Failure::Output(_))) => Some(What::Failed(failure.clone())),
            (_, Outcome::Failed(failure)) if !stopped => Some(What::Failed(failure.clone())),
            (_, Outcome::TimedOut(after)) => Some(What::TimedOut(*after)),
            _ => None,
        };
        let note = what.map(|what| Note {
            seq: task.seq,
            input: Some(shown(&task.input.display())),
            host: remote.map(|r| r.host.clone()),
            what,
        });
        let mut task = task;
        let values = shared.results.then(|| std::mem::take(&mut task.input.values));
        let more = if More::any(&task.receipt, &values, &task.tag, &stderr, &note, &record) {
            Some(More::boxed(task.receipt, values, task.tag, stderr, note, record))
        } else {
            None
        };
        let finished = Finished::new(task.seq, outcome, stopped, stdout, runtime, more);
        self.spent.push(task.input);
        if !stopped {
            shared.halt.record_finished(finished.outcome.is_done(), shutdown);
        }
        self.emit(Event::Finished(finished));
    }
}

/// The length of an input as one record (its values joined by spaces).
fn record_len(values: &[Vec<u8>]) -> u64 {
    (values.iter().map(Vec::len).sum::<usize>() + values.len().saturating_sub(1)) as u64
}

/// Seconds since the Unix epoch.
fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Errors that mean "not now" rather than "never": the OS is out of processes, descriptors
/// or memory for the moment.
pub(crate) fn refused_for_now(err: &io::Error) -> bool {
    let codes = [Errno::AGAIN, Errno::MFILE, Errno::NFILE, Errno::NOMEM].map(Errno::raw_os_error);
    err.raw_os_error().is_some_and(|code| codes.contains(&code))
}

/// True when the task died of SIGINT/SIGTERM and that is the signal that stopped muster:
/// it was interrupted with muster, not failed, and a resume runs it again.
fn died_of_our_signal(status: &ExitStatus, shutdown: &Shutdown) -> bool {
    status.signal().is_some_and(|signal| {
        (signal == Signal::INT.as_raw() || signal == Signal::TERM.as_raw())
            && shutdown.signal() == Some(signal)
    })
}

/// The outcome of an attempt, and whether a shutdown stopped it.
fn classify(ending: &Ending, timeout: Option<Duration>) -> (Outcome, bool) {
    let from_status = |status: &ExitStatus| match (status.code(), status.signal()) {
        (Some(0), _) => Outcome::Done,
        (Some(code), _) => Outcome::Failed(Failure::Exit(code)),
        (None, Some(signal)) => Outcome::Failed(Failure::Signal(signal)),
        (None, None) => Outcome::Failed(Failure::Exit(-1)),
    };
    match ending {
        Ending::Exited(status) => (from_status(status), false),
        Ending::TimedOut(_, limit) => (Outcome::TimedOut(limit.or(timeout).unwrap_or_default()), false),
        Ending::Stopped(status) => (from_status(status), !status.success()),
        Ending::StartFailed(err) => (Outcome::Failed(Failure::Start(err.to_string())), false),
        Ending::Remote(remote) => (remote.outcome.clone(), false),
        Ending::Decided(decision) => (decision.outcome.clone(), false),
        Ending::Withdrawn(StopReason::TimedOut) => (Outcome::TimedOut(timeout.unwrap_or_default()), false),
        // Nothing ran it: a resume (or another worker) runs it.
        Ending::Withdrawn(_) => (Outcome::NotRun, true),
    }
}
