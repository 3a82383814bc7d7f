//! Many persistent workers fed by a few threads: a slot's life — start, feed, probe, drain,
//! stop, replace — as a state machine that an event loop steps without ever blocking on one
//! worker.
//!
//! A thread per worker would cost `-j 200` 200 feeding threads (it did, until 2026-12-01); one
//! loop per CPU feeds its share of the workers instead. Their stdin is written without blocking (a full pipe waits for epoll to say
//! it has room), a stopping worker's exit is a pidfd in the same poller, and everything else a
//! slot waits for — a reply that frees room in its window, a worker's output ending, a task
//! queued by the feeder — rings the loop's [`Waker`]. What becomes of the tasks a lost worker
//! held (crash probing, timeouts, tasks taken back) is `worker`'s. A loop also wakes every
//! [`TICK`] to look at the shutdown. Measured against the thread per worker it replaced: as
//! fast with one worker per CPU, 3× faster with 40 workers on 2 CPUs.

use std::collections::VecDeque;
use std::io;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;
use rustix::process::Signal;

use super::worker::{lost, refuse_all, taken_back, timed_out, End, Next, SlotContext, Worker};
use super::{Attempt, Event, Job, Reply};
use crate::engine::poll::{Interest, Poller, Waker, TICK};
use crate::task::{Failure, Seq};

/// How long a worker that holds tasks may answer nothing before it is named.
const SILENT_AFTER: Duration = Duration::from_secs(10);

/// Where a slot is in its life.
enum Phase {
    /// Needs a worker.
    Start,
    Feed(Worker),
    /// Running the tasks a crash left one at a time: waiting for the worker to be idle before
    /// sending the next (false) or after sending it (true).
    Probe(Worker, bool),
    /// Input done or time to recycle: waiting for every task in flight to be answered.
    Drain(Worker, End),
    /// Stdin closed: waiting for the worker to exit until the deadline, then TERM, then KILL.
    Exiting(Stopping, Escalation),
    /// The worker is reaped: waiting for the last of its replies and stderr to be read.
    Reaped(Stopping),
    /// Recycled with nothing queued: waiting for a task (a replacement is started for it) or
    /// the end of input.
    AwaitWork,
    /// No worker could be started: every task this slot takes fails with the reason.
    Refuse(Failure),
    Done,
}

/// A worker being stopped, and why.
struct Stopping {
    worker: Worker,
    end: End,
    /// Every task in flight was answered before the stop began.
    idle: bool,
    /// Its status, once reaped.
    status: Option<ExitStatus>,
    /// The task it was stopped for (a timeout).
    culprit: Option<Seq>,
}

/// What happens when the wait for a closed worker to exit runs out.
#[derive(Clone, Copy)]
enum Escalation {
    /// TERM at that time.
    Term(Instant),
    /// KILL at that time (TERM was sent).
    Kill(Instant),
}

/// What a step of a phase leads to.
enum Flow {
    /// Step the next phase at once.
    Again(Phase),
    /// Wait for a wake-up (or the deadline noted in [`Waits`]).
    Wait(Phase),
}

/// What the loop's next sleep waits for, gathered from every slot's step.
struct Waits {
    now: Instant,
    next: Instant,
}

impl Waits {
    fn until(&mut self, deadline: Instant) {
        self.next = self.next.min(deadline);
    }
}

/// True once the other end of `ended` is dropped.
fn gone(ended: &cb::Receiver<()>) -> bool {
    matches!(ended.try_recv(), Err(cb::TryRecvError::Disconnected))
}

/// One slot and its state.
struct Machine<'a> {
    ctx: SlotContext<'a>,
    /// Tasks a crash left, run one at a time.
    probe: VecDeque<Job>,
    /// A task taken that could not be sent yet.
    carried: Option<Job>,
    /// Tasks taken from the queue together, on their way to the worker.
    taken: Vec<Job>,
    phase: Phase,
    token: u64,
}

/// The slots one thread steps, and what they wait on.
pub(super) struct Loop<'a> {
    poller: Poller,
    machines: Vec<Machine<'a>>,
}

impl<'a> Loop<'a> {
    /// The loop for `slots`, waiting on `waker` besides their workers; `None` when no poller
    /// could be had (the executor then fails the tasks it is given, saying why).
    pub(super) fn new(slots: Vec<SlotContext<'a>>, waker: &Waker) -> Option<Loop<'a>> {
        let poller = match Poller::new(waker.fd()) {
            Ok(poller) => poller,
            Err(err) => {
                let failure = Failure::Start(format!("no event loop to feed the workers: {err}"));
                if let Some(ctx) = slots.first() {
                    refuse_all(&ctx.jobs, &ctx.settle, &failure);
                }
                return None;
            }
        };
        let machines = slots
            .into_iter()
            .enumerate()
            .map(|(index, ctx)| Machine {
                ctx,
                probe: VecDeque::new(),
                carried: None,
                taken: Vec::new(),
                phase: Phase::Start,
                token: index as u64,
            })
            .collect();
        Some(Loop { poller, machines })
    }

    /// Steps every slot, then waits (at most `patience`) for something to happen; true once
    /// every slot has ended.
    pub(super) fn turn(&mut self, waker: &Waker, patience: Duration) -> bool {
        let (all_done, waits) = self.step_all(patience);
        if all_done {
            return true;
        }
        // Which slot's descriptor fired does not matter: every slot is stepped after a wait,
        // with reads that do not block, so a stale event misroutes nothing.
        let timeout = waits.next.saturating_duration_since(Instant::now());
        // Cleared before the next steps, so a ring while they run wakes the next wait.
        if self.poller.wait_woken(Some(timeout)) {
            waker.drain();
        }
        false
    }

    /// Steps every slot once, without waiting (after a wait: a reply that freed room in a
    /// window gets the next task at once, before the caller goes on to other work).
    pub(super) fn step(&mut self) {
        self.step_all(TICK);
    }

    /// Steps every slot as far as it goes; whether all have ended, and what the next wait
    /// (at most `patience`) waits for.
    fn step_all(&mut self, patience: Duration) -> (bool, Waits) {
        let now = Instant::now();
        let mut waits = Waits { now, next: now + TICK.min(patience) };
        let mut all_done = true;
        for machine in &mut self.machines {
            machine.step(&self.poller, &mut waits);
            all_done &= matches!(machine.phase, Phase::Done);
        }
        (all_done, waits)
    }

    /// How many tasks its workers take now: each one's paced window, and as many again
    /// queued behind a window wider than one (tiny tasks: a reply that frees room is answered
    /// with the next record at once, not after a turn of the dispatcher — measured, 1M tasks
    /// through a C worker took 1.4× as long without). A worker paced to one task at a time
    /// (slow tasks, or `--window 1`) gets one: nothing waits behind it that another could run.
    /// A slot between workers takes one; a slot that refuses takes a window (they fail at once).
    pub(super) fn capacity(&self) -> usize {
        let window = |machine: &Machine<'_>| machine.ctx.config.window.max(1);
        let with_queue = |now: usize| if now > 1 { 2 * now } else { now };
        self.machines
            .iter()
            .map(|machine| match &machine.phase {
                Phase::Feed(worker) | Phase::Drain(worker, _) => with_queue(worker.window_now()),
                Phase::Probe(..) => 1,
                Phase::Refuse(_) => window(machine),
                _ => 1,
            })
            .sum()
    }
}

impl Machine<'_> {
    /// Advances the slot as far as it goes without waiting.
    fn step(&mut self, poller: &Poller, waits: &mut Waits) {
        loop {
            let phase = std::mem::replace(&mut self.phase, Phase::Done);
            match self.advance(phase, poller, waits) {
                Flow::Again(next) => self.phase = next,
                Flow::Wait(next) => {
                    self.phase = next;
                    return;
                }
            }
        }
    }

    fn advance(&mut self, phase: Phase, poller: &Poller, waits: &mut Waits) -> Flow {
        match phase {
            Phase::Start => {
                let flow = self.start(poller);
                // A spawn takes a while: what is sent next is sent from now on.
                waits.now = Instant::now();
                flow
            }
            Phase::Feed(worker) => self.feed(worker, poller, waits),
            Phase::Probe(worker, sent) => self.probe(worker, sent, poller, waits),
            Phase::Drain(mut worker, end) => match self.idle(&mut worker, waits) {
                None => Flow::Wait(Phase::Drain(worker, end)),
                Some(result) => {
                    let stop_now = self.ctx.shutdown.is_stopping_now();
                    match result {
                        _ if stop_now => Flow::Again(kill(worker, End::StopNow, poller)),
                        Ok(()) => Flow::Again(self.close(worker, end, true, poller)),
                        Err(End::TimedOut) => Flow::Again(self.stop_overdue(worker, poller)),
                        Err(why @ (End::StopNow | End::Revoked)) => Flow::Again(kill(worker, why, poller)),
                        Err(_) => Flow::Again(self.close(worker, end, false, poller)),
                    }
                }
            },
            Phase::Exiting(stopping, escalation) => self.exiting(stopping, escalation, poller, waits),
            Phase::Reaped(stopping) => self.reaped(stopping),
            Phase::AwaitWork => match self.ctx.jobs.next_now() {
                Next::Job(job) => {
                    self.carried = Some(job);
                    Flow::Again(Phase::Start)
                }
                Next::NotYet => Flow::Wait(Phase::AwaitWork),
                Next::Ended => Flow::Wait(Phase::Done),
            },
            Phase::Refuse(failure) => loop {
                match self.ctx.jobs.next_now() {
                    Next::Job(job) => {
                        self.ctx.settle.one(job, Reply::Failed(failure.clone()), Attempt::never())
                    }
                    Next::NotYet => {
                        break Flow::Wait(Phase::Refuse(failure));
                    }
                    Next::Ended => break Flow::Wait(Phase::Done),
                }
            },
            Phase::Done => Flow::Wait(Phase::Done),
        }
    }

    fn start(&mut self, poller: &Poller) -> Flow {
        match Worker::start(&self.ctx) {
            Ok(worker) => {
                if let Some(outbox) = &worker.outbox {
                    let _ = poller.watch(&outbox.fd, self.token, Interest::WritableAgain);
                }
                Flow::Again(Phase::Feed(worker))
            }
            Err(err) => {
                let failure = Failure::Start(format!("{}: {err}", self.ctx.config.program.display()));
                for job in self.probe.drain(..).chain(self.carried.take()) {
                    self.ctx.settle.one(job, Reply::Failed(failure.clone()), Attempt::never());
                }
                Flow::Again(Phase::Refuse(failure))
            }
        }
    }

    /// Names a worker that holds tasks and has answered nothing for [`SILENT_AFTER`] (or the
    /// time limit, if shorter): the commonest mistake is a worker that does not flush its
    /// replies, and without a word the run just waits.
    fn name_if_silent(&self, worker: &mut Worker, waits: &mut Waits) {
        if worker.named_silent {
            return;
        }
        let Some(since) = worker.working_since() else { return };
        let patience = self.ctx.config.timeout.map_or(SILENT_AFTER, |limit| limit.min(SILENT_AFTER));
        if waits.now < since + patience {
            waits.until(since + patience);
            return;
        }
        worker.named_silent = true;
        let _ = self.ctx.events.send(Event::Notice(format!(
            "muster: worker {} (pid {}) holds {} task(s) and has answered nothing for {:.1}s: does it \
             flush its output after each reply? (Python: print(..., flush=True), or python3 -u)",
            self.ctx.slot,
            worker.child.id(),
            worker.held(),
            waits.now.saturating_duration_since(since).as_secs_f64(),
        )));
    }

    /// Feeds the worker until it must wait, or the worker's feeding ends.
    fn feed(&mut self, mut worker: Worker, poller: &Poller, waits: &mut Waits) -> Flow {
        self.name_if_silent(&mut worker, waits);
        let (framing, timeout, revoked) =
            (self.ctx.config.framing, self.ctx.config.timeout, self.ctx.revoked.clone());
        loop {
            if self.ctx.shutdown.is_stopping_now() {
                return self.fed(worker, End::StopNow, poller);
            }
            let until_overdue = worker.until_overdue(timeout);
            if until_overdue.is_zero() {
                return self.fed(worker, End::TimedOut, poller);
            }
            if worker.holds_revoked(revoked.as_ref(), waits.now) {
                return self.fed(worker, End::Revoked, poller);
            }
            waits.until(waits.now + Worker::wait_bound(until_overdue, revoked.as_ref()));
            if self.ctx.config.max_tasks_per_worker.is_some_and(|max| worker.sent >= max) {
                return self.fed(worker, End::Recycle, poller);
            }
            if !self.probe.is_empty() {
                return Flow::Again(Phase::Probe(worker, false));
            }
            // When the window is full, a reply that frees half of it rings the loop.
            if worker.window_full() {
                if flush(&mut worker).is_err() || gone(&worker.alive) {
                    return self.fed(worker, End::Died, poller);
                }
                return Flow::Wait(Phase::Feed(worker));
            }
            if let Some(job) = self.carried.take() {
                // Taken before this worker was started: it goes first, on its own.
                self.taken.push(job);
            } else if self.ctx.shutdown.is_tripped() {
                // Draining: start nothing new; what is still queued is answered not run.
                return self.fed(worker, End::InputDone, poller);
            } else {
                // As many as the window has room for, in one take and one send: a task that
                // must run alone ends the take (it waits for the others to be answered).
                let room = worker.room();
                let room = match self.ctx.config.max_tasks_per_worker {
                    Some(max) => {
                        room.min(usize::try_from(max.saturating_sub(worker.sent)).unwrap_or(usize::MAX))
                    }
                    None => room,
                };
                match self.ctx.jobs.take(room.max(1), &mut self.taken) {
                    Next::Ended => return self.fed(worker, End::InputDone, poller),
                    Next::NotYet => {
                        if flush(&mut worker).is_err() || gone(&worker.alive) {
                            return self.fed(worker, End::Died, poller);
                        }
                        return Flow::Wait(Phase::Feed(worker));
                    }
                    Next::Job(_) => {}
                }
            }
            if self.taken.last().is_some_and(|job| job.alone) {
                self.probe.extend(self.taken.pop());
            }
            worker.queue(self.taken.drain(..), framing, waits.now);
            if flush(&mut worker).is_err() {
                return self.fed(worker, End::Died, poller);
            }
        }
    }

    /// Feeding ended: drain what is in flight, or stop the worker at once.
    fn fed(&mut self, worker: Worker, end: End, poller: &Poller) -> Flow {
        match end {
            End::InputDone | End::Recycle => Flow::Again(Phase::Drain(worker, end)),
            End::TimedOut => Flow::Again(self.stop_overdue(worker, poller)),
            other => Flow::Again(kill(worker, other, poller)),
        }
    }

    fn probe(&mut self, mut worker: Worker, sent: bool, poller: &Poller, waits: &mut Waits) -> Flow {
        match self.idle(&mut worker, waits) {
            None => Flow::Wait(Phase::Probe(worker, sent)),
            Some(Err(end)) => self.fed(worker, end, poller),
            Some(Ok(())) if sent => Flow::Again(Phase::Feed(worker)),
            Some(Ok(())) => {
                let Some(job) = self.probe.pop_front() else { return Flow::Again(Phase::Feed(worker)) };
                // The suspect runs alone, outside the window.
                worker.queue(std::iter::once(job), self.ctx.config.framing, waits.now);
                if flush(&mut worker).is_err() {
                    return self.fed(worker, End::Died, poller);
                }
                Flow::Again(Phase::Probe(worker, true))
            }
        }
    }

    /// Whether every task in flight is answered (`None`: not yet, wait), or why waiting ended.
    fn idle(&self, worker: &mut Worker, waits: &mut Waits) -> Option<Result<(), End>> {
        self.name_if_silent(worker, waits);
        let (timeout, revoked) = (self.ctx.config.timeout, self.ctx.revoked.as_ref());
        if !worker.is_idle() && flush(worker).is_err() {
            return Some(Err(End::Died));
        }
        if worker.is_idle() {
            return Some(Ok(()));
        }
        let until_overdue = worker.until_overdue(timeout);
        if until_overdue.is_zero() {
            return Some(Err(End::TimedOut));
        }
        if worker.holds_revoked(revoked, waits.now) {
            return Some(Err(End::Revoked));
        }
        if gone(&worker.alive) {
            return Some(if worker.is_idle() { Ok(()) } else { Err(End::Died) });
        }
        if self.ctx.shutdown.is_stopping_now() {
            return Some(Err(End::StopNow));
        }
        waits.until(waits.now + Worker::wait_bound(until_overdue, revoked));
        None
    }

    /// Closes the worker's stdin (the quit) and gives it `grace` to exit.
    fn close(&self, mut worker: Worker, end: End, idle: bool, poller: &Poller) -> Phase {
        close_stdin(&mut worker, poller);
        if let Some(exit) = worker.child.exit_fd() {
            let _ = poller.watch(exit, self.token, Interest::ReadableOnce);
        }
        let escalation = Escalation::Term(Instant::now() + self.ctx.config.grace);
        Phase::Exiting(Stopping { worker, end, idle, status: None, culprit: None }, escalation)
    }

    /// Stops a worker whose oldest task ran past the timeout as a spawned task is stopped:
    /// TERM to its group, KILL after `grace` (at once on stop-now). The task is remembered by
    /// number, so a reply that still comes in the grace charges nobody.
    fn stop_overdue(&self, mut worker: Worker, poller: &Poller) -> Phase {
        let culprit = worker.oldest();
        close_stdin(&mut worker, poller);
        if let Some(exit) = worker.child.exit_fd() {
            let _ = poller.watch(exit, self.token, Interest::ReadableOnce);
        }
        worker.child.signal_group(Signal::TERM);
        let escalation = Escalation::Kill(Instant::now() + self.ctx.config.grace);
        Phase::Exiting(
            Stopping { worker, end: End::TimedOut, idle: false, status: None, culprit },
            escalation,
        )
    }

    /// The escalation after stdin closed: exit within `grace`, or TERM; within `grace` again,
    /// or KILL — at once on stop-now.
    fn exiting(
        &self,
        mut stopping: Stopping,
        escalation: Escalation,
        poller: &Poller,
        waits: &mut Waits,
    ) -> Flow {
        let child = &stopping.worker.child;
        let exited = child.has_exited();
        let now = waits.now;
        let kill_now =
            matches!(escalation, Escalation::Kill(at) if now >= at) || self.ctx.shutdown.is_stopping_now();
        if exited || kill_now {
            if let Some(exit) = child.exit_fd() {
                poller.forget(exit);
            }
            stopping.status = stopping.worker.child.terminate_now();
            return Flow::Again(Phase::Reaped(stopping));
        }
        let escalation = match escalation {
            Escalation::Term(at) if now >= at => {
                child.signal_group(Signal::TERM);
                Escalation::Kill(now + self.ctx.config.grace)
            }
            waiting => waiting,
        };
        let (Escalation::Term(at) | Escalation::Kill(at)) = escalation;
        waits.until(at);
        Flow::Wait(Phase::Exiting(stopping, escalation))
    }

    /// Once its last reply and stderr line are read, what became of the tasks it held.
    fn reaped(&mut self, mut stopping: Stopping) -> Flow {
        let worker = &mut stopping.worker;
        if !gone(&worker.alive) || worker.stderr_ended.as_ref().is_some_and(|ended| !gone(ended)) {
            return Flow::Wait(Phase::Reaped(stopping));
        }
        // Its pipes' own readers, if it had any, have handed over their last record: they end.
        for thread in worker.threads.drain(..) {
            let _ = thread.join();
        }
        let held = worker.take_held();
        let broke_protocol = worker.broke_protocol.load(Ordering::Acquire);
        let pid = worker.child.id();
        let Stopping { end, idle, status, culprit, .. } = stopping;
        let ctx = &self.ctx;
        match end {
            End::StopNow => {
                let rest = held
                    .into_iter()
                    .chain(self.probe.drain(..))
                    .chain(self.carried.take())
                    .chain(ctx.jobs.queued_now());
                for job in rest {
                    ctx.settle.one(job, Reply::NotRun, Attempt::never());
                }
                return Flow::Wait(Phase::Done);
            }
            End::InputDone | End::Recycle if idle && held.is_empty() => {
                if self.probe.is_empty() {
                    return match end {
                        End::InputDone => Flow::Wait(Phase::Done),
                        _ => Flow::Again(Phase::AwaitWork),
                    };
                }
            }
            End::InputDone | End::Recycle | End::Died => {
                let _ = ctx.events.send(Event::Notice(lost_notice(
                    ctx.slot,
                    pid,
                    status,
                    held.len(),
                    broke_protocol,
                )));
                lost(ctx, broke_protocol, (held, status), &mut self.probe)
            }
            End::TimedOut => timed_out(ctx, (held, status), culprit, &mut self.probe),
            End::Revoked => taken_back(ctx, held, &mut self.probe),
        }
        Flow::Again(Phase::Start)
    }
}

/// What muster says of a worker lost while it should have gone on: which one, how it ended,
/// and what becomes of the tasks it held.
fn lost_notice(
    slot: usize,
    pid: u32,
    status: Option<ExitStatus>,
    held: usize,
    broke_protocol: bool,
) -> String {
    let how = if broke_protocol {
        "broke the protocol (one reply record per input, in order: it sent a reply with no task waiting for it, or bytes that are no record) and was replaced".to_owned()
    } else {
        match super::worker::failure_of(status) {
            Failure::Signal(signal) => format!("was killed by signal {signal}"),
            Failure::Exit(code) => format!("exited with status {code}"),
            other => format!("ended ({other})"),
        }
    };
    let tasks = match (held, broke_protocol) {
        (0, _) => "; it held no task".to_owned(),
        (1, false) => "; it held 1 task, which failed this attempt".to_owned(),
        (n, false) => format!(
            "; the {n} tasks it held run again one at a time, uncharged, to find the one that killed it"
        ),
        (n, true) => format!("; the {n} tasks it held run again, uncharged"),
    };
    format!("muster: worker {slot} (pid {pid}) {how}{tasks}")
}

/// Stops the worker at once (KILL) and reaps it.
fn kill(mut worker: Worker, end: End, poller: &Poller) -> Phase {
    close_stdin(&mut worker, poller);
    worker.child.signal_group(Signal::KILL);
    let status = worker.child.terminate_now();
    Phase::Reaped(Stopping { worker, end, idle: false, status, culprit: None })
}

fn close_stdin(worker: &mut Worker, poller: &Poller) {
    if let Some(outbox) = worker.outbox.take() {
        poller.forget(&outbox.fd);
    }
}

/// Writes what the worker's outbox holds, as far as its pipe takes it.
fn flush(worker: &mut Worker) -> io::Result<bool> {
    match worker.outbox.as_mut() {
        Some(outbox) => outbox.flush(),
        None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
    }
}
