//! One persistent worker: its process, its window of tasks in flight, the handler that
//! matches its replies to them, and what becomes of the tasks it held when it is lost (crash
//! probing, timeouts, tasks taken back). Its slot's life — started, fed, replaced — is
//! `machine`'s.
//!
//! Who wakes whom: the slot's loop writes stdin; the pipe reader pops the oldest in-flight task
//! for each reply record, counts the batch off the window, and reports the batch, which
//! rings the loop if it waits (its executor's [`Bell`]); when stdout ends (the worker died or
//! closed it) the reply handler is dropped, which disconnects `alive` and rings the loop.

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;
use rustix::process::Signal;

use super::{Attempt, Event, Framing, Job, PersistentConfig, Reply};
use crate::engine::poll::{Bell, Waker};
use crate::process::{Launched, Launcher};
use crate::shutdown::Shutdown;
use crate::task::Failure;
use crate::task::Seq;

pub(crate) struct SlotContext<'a> {
    pub(crate) slot: usize,
    pub(crate) config: &'a PersistentConfig,
    pub(crate) shutdown: &'a Shutdown,
    pub(crate) jobs: JobQueue,
    pub(crate) events: cb::Sender<Event>,
    pub(crate) settle: Settle,
    /// Reads this worker's stdout and stderr (with its share of the others'); none: its
    /// pipes get threads of their own.
    pub(crate) pipes: Option<Arc<super::pipes::PipeReader>>,
    /// Replies are read by `pipes` too (else by a thread of this worker's own).
    pub(crate) share_replies: bool,
    /// Tells whether a task was taken back by its source (queue workers only).
    pub(crate) revoked: Option<super::Revoked<'a>>,
    /// The event loop feeding this slot, rung when a reply frees room or a pipe ends.
    pub(crate) waker: Arc<Waker>,
}

/// Reports what became of tasks to the executor, stamped with the worker slot, and rings it.
#[derive(Clone)]
pub(crate) struct Settle {
    events: cb::Sender<Event>,
    /// The worker slot whose tasks this settles (stamped on each attempt).
    slot: usize,
    /// Rung after each report: the executor's loop waits on it.
    ring: Arc<Bell>,
}

impl Settle {
    pub(crate) fn new(events: cb::Sender<Event>, ring: Arc<Bell>) -> Settle {
        Settle { events, slot: 0, ring }
    }

    /// The same, for the tasks of worker slot `slot`.
    pub(crate) fn for_slot(&self, slot: usize) -> Settle {
        Settle { slot, ..self.clone() }
    }

    pub(super) fn one(&self, job: Job, reply: Reply, mut attempt: Attempt) {
        attempt.slot = self.slot;
        let _ = self.events.send(Event::Reply(job, reply, attempt));
        self.ring.ring();
    }

    fn protocol_break(&self) {
        let _ = self.events.send(Event::ProtocolBreak);
    }

    fn batch(&self, mut answered: Vec<(Job, Reply, Attempt)>) {
        for (_, _, attempt) in &mut answered {
            attempt.slot = self.slot;
        }
        let _ = self.events.send(Event::Replies(answered));
        self.ring.ring();
    }
}

/// The records a loop's slots take, queued by its executor on the same thread (a lock that is
/// never contended: cheaper than a channel's hand-off), until the executor closes it.
#[derive(Clone, Default)]
pub(crate) struct JobQueue {
    queue: Arc<Mutex<Queued>>,
}

#[derive(Default)]
struct Queued {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl JobQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the jobs `jobs` holds (taking them); false when the queue is closed (they stay).
    pub(crate) fn push(&self, jobs: &mut Vec<Job>) -> bool {
        let mut queued = self.lock();
        if queued.closed {
            return false;
        }
        queued.jobs.extend(jobs.drain(..));
        true
    }

    /// No job will come any more: the slots drain and close their workers.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// The next job, without waiting for it.
    pub(super) fn next_now(&self) -> Next {
        let mut queued = self.lock();
        match queued.jobs.pop_front() {
            Some(job) => Next::Job(job),
            None if queued.closed => Next::Ended,
            None => Next::NotYet,
        }
    }

    /// Up to `most` jobs (at least one), into `taken`: fewer when one that must run alone
    /// comes (it is the last taken); how many, or why none.
    pub(super) fn take(&self, most: usize, taken: &mut Vec<Job>) -> Next<usize> {
        let mut queued = self.lock();
        if queued.jobs.is_empty() {
            return if queued.closed { Next::Ended } else { Next::NotYet };
        }
        let before = taken.len();
        while taken.len() - before < most {
            let Some(job) = queued.jobs.pop_front() else { break };
            let alone = job.alone;
            taken.push(job);
            if alone {
                break;
            }
        }
        Next::Job(taken.len() - before)
    }

    /// The jobs queued now, taken.
    pub(crate) fn queued_now(&self) -> impl Iterator<Item = Job> {
        std::mem::take(&mut self.lock().jobs).into_iter()
    }
}

/// Fails, with `failure`, every task queued: where no worker can be fed at all.
pub(super) fn refuse_all(jobs: &JobQueue, settle: &Settle, failure: &Failure) {
    for job in jobs.queued_now() {
        settle.one(job, Reply::Failed(failure.clone()), Attempt::never());
    }
}

/// What the queue has for a slot now: its next job (or, from [`JobQueue::take`], how many were
/// taken), or why none.
pub(super) enum Next<T = Job> {
    Job(T),
    /// Nothing queued yet; the feeder wakes the loop when something is.
    NotYet,
    /// The feeder has ended and the queue is empty.
    Ended,
}

/// The tasks a worker holds, oldest first, and when it last answered: the oldest task has been
/// worked on since it was sent or since the previous reply, whichever is later.
struct Flight {
    jobs: VecDeque<(Job, Instant)>,
    last_reply: Instant,
}

type InFlight = Arc<Mutex<Flight>>;

fn lock(in_flight: &InFlight) -> std::sync::MutexGuard<'_, Flight> {
    in_flight.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long a slot waits when no task can be overdue.
pub(super) const NO_DEADLINE: Duration = Duration::from_secs(3600);

/// A running worker process and its helper threads.
pub(super) struct Worker {
    pub(super) child: WorkerProcess,
    /// Its stdin, written without blocking.
    pub(super) outbox: Option<super::outbox::Outbox>,
    in_flight: InFlight,
    /// Tasks in flight (sent and not answered), counted against the window.
    in_window: Arc<AtomicUsize>,
    /// The configured window: most tasks in flight.
    max_window: usize,
    /// Disconnects when the reader thread ends (stdout closed: the worker died or misbehaved).
    pub(super) alive: cb::Receiver<()>,
    /// Tasks to keep in flight now (see [`Pace`]).
    limit: Arc<AtomicUsize>,
    /// Set by the reader when the worker broke the protocol (see [`lost`]).
    pub(super) broke_protocol: Arc<AtomicBool>,
    /// Its pipes' own reader threads, if any (see `pipes::read_on`).
    pub(super) threads: Vec<JoinHandle<()>>,
    /// Disconnects once every line of its stderr was passed on.
    pub(super) stderr_ended: Option<cb::Receiver<()>>,
    pub(super) sent: u64,
    /// When to look again for a task taken back.
    next_look: Instant,
    /// It was named for answering nothing for a while (once per worker).
    pub(super) named_silent: bool,
}

/// A worker's process: spawned, or (in the engine's tests) a thread playing one.
pub(super) enum WorkerProcess {
    Spawned(Launched),
    #[cfg(test)]
    Scripted(super::scripted::ScriptedChild),
}

/// A worker's stdin, stdout and stderr, as muster holds them.
type WorkerPipes = (Option<OwnedFd>, Option<OwnedFd>, Option<OwnedFd>);

impl WorkerProcess {
    /// Starts the slot's worker, with its stdin, stdout and stderr.
    fn start(ctx: &SlotContext<'_>) -> std::io::Result<(WorkerProcess, WorkerPipes)> {
        #[cfg(test)]
        if let Some(script) = &ctx.config.scripted {
            let (child, pipes) = super::scripted::ScriptedChild::start(script, ctx.config.framing)?;
            let pipes = (Some(pipes.stdin), Some(pipes.stdout), Some(pipes.stderr));
            return Ok((WorkerProcess::Scripted(child), pipes));
        }
        let mut command = Command::new(&ctx.config.program);
        command
            .args(&ctx.config.args)
            .envs(ctx.config.env.iter().map(|(k, v)| (k, v)))
            .env("MUSTER_WORKER", ctx.slot.to_string());
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = Launcher::new(ctx.config.watchdog.clone()).spawn(&mut command)?;
        let pipes = child.child_mut().child_mut();
        let stdin = pipes.stdin.take().map(OwnedFd::from);
        let stdout = pipes.stdout.take().map(OwnedFd::from);
        let stderr = pipes.stderr.take().map(OwnedFd::from);
        Ok((WorkerProcess::Spawned(child), (stdin, stdout, stderr)))
    }

    pub(super) fn id(&self) -> u32 {
        match self {
            WorkerProcess::Spawned(child) => child.id(),
            #[cfg(test)]
            WorkerProcess::Scripted(child) => child.id(),
        }
    }

    /// Sends `signal` to the worker's process group.
    pub(super) fn signal_group(&self, signal: Signal) {
        match self {
            WorkerProcess::Spawned(child) => {
                let _ = child.child().signal_group(signal);
            }
            #[cfg(test)]
            WorkerProcess::Scripted(child) => child.signal(signal),
        }
    }

    /// Readable once the worker has exited, where there is such a descriptor.
    pub(super) fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            WorkerProcess::Spawned(child) => child.child().exit_fd(),
            #[cfg(test)]
            WorkerProcess::Scripted(child) => Some(child.exit_fd()),
        }
    }

    /// True once it has exited (or when that cannot be told).
    pub(super) fn has_exited(&self) -> bool {
        match self {
            WorkerProcess::Spawned(child) => child.child().has_exited().unwrap_or(true),
            #[cfg(test)]
            WorkerProcess::Scripted(child) => child.has_exited(),
        }
    }

    /// TERM, KILL what is left of its group, reap; how it ended, when that is known.
    pub(super) fn terminate_now(&mut self) -> Option<ExitStatus> {
        match self {
            WorkerProcess::Spawned(child) => {
                child.terminate(Duration::ZERO).ok().map(|stopped| stopped.status)
            }
            #[cfg(test)]
            WorkerProcess::Scripted(child) => child.terminate_now(),
        }
    }
}

/// Why feeding a worker stopped.
pub(super) enum End {
    /// No more input: every task read has been handed out.
    InputDone,
    /// Time to recycle this worker.
    Recycle,
    /// The worker died or broke the protocol.
    Died,
    /// Stop now.
    StopNow,
    /// The oldest task in flight ran past the timeout.
    TimedOut,
    /// A task in flight was taken back by its source.
    Revoked,
}

/// How often the tasks in flight are looked at for one taken back (queue workers only).
const REVOCATION_LOOK: Duration = Duration::from_millis(250);

impl Worker {
    pub(super) fn start(ctx: &SlotContext<'_>) -> std::io::Result<Worker> {
        let (child, (stdin, stdout, stderr)) = WorkerProcess::start(ctx)?;
        let outbox = stdin.map(super::outbox::Outbox::new);
        let in_flight: InFlight =
            Arc::new(Mutex::new(Flight { jobs: VecDeque::new(), last_reply: Instant::now() }));
        let in_window = Arc::new(AtomicUsize::new(0));
        let (alive_notice, alive) = super::pipes::EndNotice::new(Arc::clone(&ctx.waker));
        let limit = Arc::new(AtomicUsize::new(1));
        let broke_protocol = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        if let Some(stdout) = stdout {
            let (in_flight, settle, framing) = (in_flight.clone(), ctx.settle.clone(), ctx.config.framing);
            let window = Window {
                in_window: in_window.clone(),
                limit: limit.clone(),
                pace: Pace::for_slot(ctx),
                broke_protocol: broke_protocol.clone(),
            };
            let replies = Box::new(Replies { in_flight, framing, window, settle, _alive: alive_notice });
            let reader = ctx.pipes.as_deref().filter(|_| ctx.share_replies);
            threads.extend(super::pipes::read_on(reader, stdout, framing, replies));
        }
        let stderr_ended = stderr.map(|stderr| {
            let (lines, ended) =
                super::pipes::stderr_lines(ctx.slot, ctx.events.clone(), Arc::clone(&ctx.waker));
            threads.extend(super::pipes::read_on(
                ctx.pipes.as_deref(),
                stderr,
                Framing::Separated(b'\n'),
                lines,
            ));
            ended
        });
        let _ = ctx.events.send(Event::WorkerStarted);
        Ok(Worker {
            child,
            outbox,
            in_flight,
            in_window,
            max_window: ctx.config.window.max(1),
            alive,
            limit,
            broke_protocol,
            threads,
            stderr_ended,
            sent: 0,
            next_look: Instant::now() + REVOCATION_LOOK,
            named_silent: false,
        })
    }

    /// True when a task in flight was taken back by its source; looked at every
    /// [`REVOCATION_LOOK`], and only when the source can take tasks back.
    pub(super) fn holds_revoked(&mut self, revoked: Option<&super::Revoked<'_>>, now: Instant) -> bool {
        let Some(revoked) = revoked else { return false };
        if now < self.next_look {
            return false;
        }
        self.next_look = now + REVOCATION_LOOK;
        let held: Vec<Seq> = lock(&self.in_flight).jobs.iter().map(|(job, _)| job.seq).collect();
        held.into_iter().any(|seq| revoked(seq))
    }

    /// How long a wait may last before the clock must be looked at again.
    pub(super) fn wait_bound(until_overdue: Duration, revoked: Option<&super::Revoked<'_>>) -> Duration {
        match revoked {
            Some(_) => until_overdue.min(REVOCATION_LOOK),
            None => until_overdue,
        }
    }

    /// Tasks to keep in flight now, as its pace says.
    pub(super) fn window_now(&self) -> usize {
        self.limit.load(Ordering::Relaxed).min(self.max_window)
    }

    pub(super) fn window_full(&self) -> bool {
        self.in_window.load(Ordering::Relaxed) >= self.window_now()
    }

    /// Since when the worker has worked on its oldest task without answering (its send, or
    /// the previous reply), when it holds any.
    pub(super) fn working_since(&self) -> Option<Instant> {
        let flight = lock(&self.in_flight);
        flight.jobs.front().map(|(_, sent)| (*sent).max(flight.last_reply))
    }

    /// Tasks it holds.
    pub(super) fn held(&self) -> usize {
        lock(&self.in_flight).jobs.len()
    }

    /// The oldest task in flight: the one being worked on.
    pub(super) fn oldest(&self) -> Option<Seq> {
        lock(&self.in_flight).jobs.front().map(|(job, _)| job.seq)
    }

    pub(super) fn is_idle(&self) -> bool {
        lock(&self.in_flight).jobs.is_empty()
    }

    /// How long until the oldest task in flight runs past `timeout` (zero: it has); a long
    /// wait when nothing can time out.
    pub(super) fn until_overdue(&self, timeout: Option<Duration>) -> Duration {
        let Some(timeout) = timeout else { return NO_DEADLINE };
        let flight = lock(&self.in_flight);
        match flight.jobs.front() {
            Some((_, sent)) => {
                let working_since = (*sent).max(flight.last_reply);
                (working_since + timeout).saturating_duration_since(Instant::now())
            }
            None => NO_DEADLINE,
        }
    }

    /// Queues tasks, sent at `now` (the loop's step: one clock read for all it sends): in the
    /// outbox, which the loop writes (a worker whose stdin is gone fails that write, and is
    /// lost with the tasks), and in flight.
    pub(super) fn queue(&mut self, jobs: impl Iterator<Item = Job>, framing: Framing, now: Instant) {
        let mut flight = lock(&self.in_flight);
        let before = flight.jobs.len();
        for job in jobs {
            if let Some(outbox) = self.outbox.as_mut() {
                outbox.push(&job.input, framing);
            }
            flight.jobs.push_back((job, now));
        }
        let queued = flight.jobs.len() - before;
        drop(flight);
        self.in_window.fetch_add(queued, Ordering::Relaxed);
        self.sent += queued as u64;
    }

    /// How many more tasks its window takes now.
    pub(super) fn room(&self) -> usize {
        self.window_now().saturating_sub(self.in_window.load(Ordering::Relaxed))
    }

    /// The tasks it still holds, taken (once its replies have all been read).
    pub(super) fn take_held(&self) -> VecDeque<Job> {
        std::mem::take(&mut lock(&self.in_flight).jobs).into_iter().map(|(job, _)| job).collect()
    }
}

/// The reader's side of a worker's window of tasks in flight.
struct Window {
    /// Tasks in flight; the reader counts off those answered.
    in_window: Arc<AtomicUsize>,
    /// Tasks to keep in flight now, set from `pace`.
    limit: Arc<AtomicUsize>,
    pace: Pace,
    /// Set when the worker sent a reply with no task waiting for it.
    broke_protocol: Arc<AtomicBool>,
}

/// How much work to keep queued at a worker.
///
/// In flight, tasks hide the wake-ups between a reply and the next request — but tasks
/// queued at one worker cannot move to an idle one, so a deep queue of slow tasks leaves the
/// run's tail to a single worker. The window therefore holds about [`Pace::QUEUED_WORK`] of
/// work: as many tasks as fit in it at the worker's measured pace, between 1 and the
/// configured window. Tiny tasks get the whole window; one-second tasks get one at a time.
struct Pace {
    /// Smoothed time the worker takes per task, in nanoseconds; `None` before the first reply.
    per_task_ns: Option<f64>,
    max: usize,
    /// The work to keep queued, in nanoseconds.
    queued_work: f64,
}

impl Pace {
    const QUEUED_WORK: Duration = Duration::from_millis(2);

    fn new(max: usize, queued_work: Duration) -> Pace {
        Pace { per_task_ns: None, max, queued_work: queued_work.as_nanos() as f64 }
    }

    /// The pace for `ctx`'s workers: [`Self::QUEUED_WORK`], except for scripted workers,
    /// whose tests count on the whole window (a loaded machine's slow first reply would
    /// otherwise narrow it to one).
    fn for_slot(ctx: &SlotContext<'_>) -> Pace {
        #[cfg(test)]
        if ctx.config.scripted.is_some() {
            return Pace::new(ctx.config.window.max(1), Duration::from_secs(3600));
        }
        Pace::new(ctx.config.window.max(1), Pace::QUEUED_WORK)
    }

    /// Learns from `tasks` replies that took `busy` of the worker's time; returns the window.
    fn observe(&mut self, tasks: usize, busy: Duration) -> usize {
        let sample = busy.as_nanos() as f64 / tasks.max(1) as f64;
        let smoothed = match self.per_task_ns {
            Some(previous) => previous * 0.8 + sample * 0.2,
            None => sample,
        };
        self.per_task_ns = Some(smoothed);
        let fits = self.queued_work / smoothed.max(1.0);
        (fits.ceil() as usize).clamp(1, self.max)
    }
}

/// Matches a worker's reply records to its tasks in flight, oldest first, until stdout ends or
/// the worker breaks the protocol (a reply nobody asked for). The records one read brought are
/// handled as one batch — one lock, one event, one wake-up of the caller — so a worker that
/// answers in bursts costs a wake-up per burst, not per task. Dropped (with `alive`) when the
/// pipe ends.
struct Replies {
    in_flight: InFlight,
    framing: Framing,
    window: Window,
    settle: Settle,
    /// Held for its drop: disconnects `alive` and rings the feeding loop.
    _alive: super::pipes::EndNotice,
}

impl super::pipes::Records for Replies {
    fn records(&mut self, records: super::pipes::Cut) -> bool {
        let wanted = records.len();
        let answered: Vec<(Job, Reply, Attempt)> = {
            let mut flight = lock(&self.in_flight);
            let now = Instant::now();
            let previous = std::mem::replace(&mut flight.last_reply, now);
            let mut answered = Vec::with_capacity(wanted);
            for output in records.outputs() {
                let Some((job, sent)) = flight.jobs.pop_front() else { break };
                // A task's time runs from its send or the previous reply, whichever is later:
                // the first of a read took the time since then, the others none.
                let runtime = if answered.is_empty() { now - sent.max(previous) } else { Duration::ZERO };
                answered.push((job, Reply::Done(output), Attempt { runtime, slot: 0, worker_status: None }));
            }
            answered
        };
        if answered.len() < wanted {
            // A reply nobody asked for: the worker broke the protocol. Its window is not
            // counted down, so no new task is sent to it; ending here closes `alive`, and the
            // slot replaces the worker (see `lost`).
            self.window.broke_protocol.store(true, Ordering::Release);
            self.settle.batch(answered);
            self.settle.protocol_break();
            return false;
        }
        self.window.in_window.fetch_sub(answered.len(), Ordering::Relaxed);
        // The first reply's runtime spans the worker's whole time on this batch.
        if let Some((_, _, first)) = answered.first() {
            let limit = self.window.pace.observe(answered.len(), first.runtime);
            self.window.limit.store(limit, Ordering::Relaxed);
        }
        // The report rings the loop if it waits (it refills the window then), not otherwise.
        self.settle.batch(answered);
        true
    }

    fn ended(&mut self, last: Option<Vec<u8>>) {
        // A last reply without its separator still answers a task.
        if let Some(record) = last {
            self.records(super::pipes::Cut::one(record, self.framing));
        }
    }

    fn garbled(&mut self) {
        // Bytes that are no frame: as a reply nobody asked for, the worker is replaced.
        self.window.broke_protocol.store(true, Ordering::Release);
        self.settle.protocol_break();
    }
}

/// The failure a dead worker's status describes.
pub(super) fn failure_of(status: Option<std::process::ExitStatus>) -> Failure {
    match status.map(|s| (s.code(), s.signal())) {
        Some((Some(code), _)) => Failure::Exit(code),
        Some((None, Some(signal))) => Failure::Signal(signal),
        _ => Failure::Exit(-1),
    }
}

/// A worker was killed because its source took back a task it held: that task ends not run
/// here (its new holder runs it), the others run again, uncharged.
pub(super) fn taken_back(ctx: &SlotContext<'_>, held: VecDeque<Job>, probe: &mut VecDeque<Job>) {
    for job in held.into_iter().rev() {
        if ctx.revoked.as_ref().is_some_and(|revoked| revoked(job.seq)) {
            ctx.settle.one(job, Reply::NotRun, Attempt::never());
        } else {
            probe.push_front(job);
        }
    }
}

/// Handles a worker stopped because its oldest task (`culprit`) ran past the timeout: that
/// task timed out (the engine may retry it, alone); the others never started and run next,
/// one at a time, unreported.
pub(super) fn timed_out(
    ctx: &SlotContext<'_>,
    (mut held, status): (VecDeque<Job>, Option<std::process::ExitStatus>),
    culprit: Option<Seq>,
    probe: &mut VecDeque<Job>,
) {
    let _ = ctx.events.send(Event::Crash);
    // Its reply may have come during the grace after TERM: then no task timed out.
    let guilty = held.front().is_some_and(|job| Some(job.seq) == culprit);
    let culprit = if guilty { held.pop_front() } else { None };
    for job in held.into_iter().rev() {
        probe.push_front(job);
    }
    let Some(culprit) = culprit else { return };
    let attempt = Attempt { runtime: ctx.config.timeout.unwrap_or_default(), slot: 0, worker_status: status };
    ctx.settle.one(culprit, Reply::TimedOut, attempt);
}

/// Handles a worker lost while holding tasks. One that broke the protocol is to blame itself
/// (its extra reply came from a task already answered): the tasks it held — which it may have
/// died on only because we stopped reading — run again, one at a time, uncharged. Otherwise
/// see [`crashed`].
pub(super) fn lost(
    ctx: &SlotContext<'_>,
    broke_protocol: bool,
    finished: (VecDeque<Job>, Option<std::process::ExitStatus>),
    probe: &mut VecDeque<Job>,
) {
    if !broke_protocol {
        return crashed(ctx, finished, probe);
    }
    for job in finished.0.into_iter().rev() {
        probe.push_front(job);
    }
}

/// Handles a worker that died holding tasks: with one, its attempt failed (the engine may
/// retry it, alone); with several, probe them one at a time on the next worker so that only
/// a guilty task fails.
fn crashed(
    ctx: &SlotContext<'_>,
    (held, status): (VecDeque<Job>, Option<std::process::ExitStatus>),
    probe: &mut VecDeque<Job>,
) {
    if held.is_empty() {
        return;
    }
    let _ = ctx.events.send(Event::Crash);
    if held.len() > 1 {
        // Probe first: these go ahead of anything else, one at a time.
        for job in held.into_iter().rev() {
            probe.push_front(job);
        }
        return;
    }
    for job in held {
        let attempt = Attempt { runtime: Duration::ZERO, slot: 0, worker_status: status };
        ctx.settle.one(job, Reply::Failed(failure_of(status)), attempt);
    }
}
