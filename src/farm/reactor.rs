//! The process-per-task executor: a few event loops, each running many tasks at once.
//!
//! `muster run -j N` does not cost N threads. The farm starts one loop per CPU (never more
//! than N); each owns an epoll instance and a share of the N slots, and multiplexes its
//! children's exits (pidfds), their stdout and stderr pipes, the time limits and the shutdown
//! token. A loop takes a task from the shared queue whenever it has a free slot, so work goes
//! to whichever loop has room. `-j 10000` therefore costs file descriptors (three per running
//! task; see [`raise_fd_limit`]), not threads or stacks.
//!
//! One attempt, as the loop sees it: spawn in a new process group through the
//! [`Launcher`] (watchdog included, posix_spawn's fast path kept), read its output as it
//! comes (captured whole, or passed on as complete lines), and when the leader exits, kill the
//! rest of its group and reap it, read the pipes to their end (bounded by [`DRAIN_LIMIT`]: a
//! process that escaped the group with `setsid` could hold them open), and settle it.
//! Stopping is SIGTERM to the group, then SIGKILL after the grace period.
//!
//! When the OS refuses a process (too many processes or open files, no memory), the task
//! waits for a running one to end and tries again, backing off; with nothing running it gives
//! up after [`SPAWN_TRIES`] and fails the task with the reason.
//!
//! What a spawn costs at a high `-j`: the child starts with a copy of muster's descriptor
//! table, which holds three descriptors per running task, and `exec` closes them again. At
//! `-j 10000` that makes each spawn several times dearer than at `-j 2` (10,000 × `sleep 2`:
//! 10.7 s, where xargs, holding no descriptors, takes 9.3 s). Loops start at most
//! [`STARTS_PER_TURN`] tasks between looks at their children, so short tasks are reaped before
//! the table grows. The remedy for long ones is a spawner process that holds no descriptors
//! and passes each task's pipes back over a socket (`SCM_RIGHTS`); not built yet.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel as cb;
use rustix::event::epoll;
use rustix::io::Errno;
use rustix::process::Signal;

use super::capture::{Capture, Stream};
use super::output::{Event, Finished};
use super::{FarmConfig, HaltGate, Observer, OutputMode, Queued};
use crate::input::Input;
use crate::journal::{Record, RecordOutcome};
use crate::process::{Launched, Launcher};
use crate::shutdown::Shutdown;
use crate::task::{Failure, Outcome, Seq};

/// The longest a loop goes without checking time limits and the shutdown token.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// Spawn attempts refused by the OS, with nothing running, before a task fails.
pub(crate) const SPAWN_TRIES: u32 = 8;
/// How long the pipes of an exited task are read before it is settled anyway.
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// How long a task killed by SIGINT/SIGTERM waits to learn whether that signal was meant
/// for muster (a terminal's Ctrl-C reaching a task an instant after its spawn).
const SIGNAL_SETTLE: Duration = Duration::from_millis(200);
/// Tasks started before the loop looks at its children again: each spawn copies muster's
/// descriptor table, so reaping short tasks between spawns keeps that table (and the cost)
/// small.
const STARTS_PER_TURN: usize = 16;
/// Reads per readiness event: enough to drain a burst, few enough to stay fair.
const READS_PER_EVENT: usize = 4;
const WAKE: u64 = u64::MAX;

/// What every attempt of a farm shares.
pub(crate) struct Limits<'a> {
    pub(crate) timeout: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) shutdown: &'a Shutdown,
    /// When draining began, as first noticed by any loop; running tasks get `grace` from it.
    pub(crate) drain_started: &'a OnceLock<Instant>,
    pub(crate) spill_threshold: usize,
    /// The resolved path of `argv[0]`, when known.
    pub(crate) program_path: Option<&'a std::path::Path>,
}

/// What the loops of one farm share.
pub(crate) struct Shared<'a> {
    pub(crate) config: &'a FarmConfig,
    pub(crate) limits: Limits<'a>,
    pub(crate) launcher: Launcher,
    pub(crate) halt: &'a HaltGate,
    pub(crate) journaling: bool,
    pub(crate) tasks: cb::Receiver<Queued>,
    pub(crate) observer: &'a dyn Observer,
}

/// Wakes a loop that waits on its children while it could take more tasks. The feeder calls
/// [`wake`](Self::wake) after each task it queues; it costs a write only when the loop said
/// it was hungry.
pub(crate) struct Waker {
    hungry: AtomicBool,
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        let flags = rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK;
        Ok(Waker { hungry: AtomicBool::new(false), fd: rustix::event::eventfd(0, flags)? })
    }

    /// Wakes the loop if it waits for tasks.
    pub(crate) fn wake(&self) {
        // Pairs with the fence in the loop: either it sees the task, or we see it hungry.
        fence(Ordering::SeqCst);
        if self.hungry.swap(false, Ordering::SeqCst) {
            self.ring();
        }
    }

    /// Wakes the loop whatever it waits for (the queue closed).
    pub(crate) fn ring(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }
}

/// Lifts the soft limit on open files towards what `jobs` running tasks need (three
/// descriptors each), never above the hard limit. Only raised when needed, so the tasks of a
/// small run inherit the usual limit.
pub(crate) fn raise_fd_limit(jobs: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let wanted = (jobs as u64).saturating_mul(3).saturating_add(256);
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= wanted {
        return;
    }
    let target = limit.maximum.map_or(wanted, |max| wanted.min(max));
    if target > current {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum });
    }
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
    /// Spawns refused by the OS in a row while nothing else ran.
    refused: u32,
    /// Not to be tried again before this (after a refused spawn).
    not_before: Option<Instant>,
    /// The observer was told it started.
    announced: bool,
}

/// Why an attempt is being stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StopReason {
    TimedOut,
    Shutdown,
}

/// A running attempt.
struct Running {
    task: Task,
    slot: usize,
    argv: Vec<OsString>,
    launched: Launched,
    /// stdout and stderr, while open.
    pipes: [Option<OwnedFd>; 2],
    /// Incomplete last lines, per stream, in line-buffered mode.
    partial: [Vec<u8>; 2],
    captures: [Capture; 2],
    start: SystemTime,
    started: Instant,
    deadline: Option<Instant>,
    stopping: Option<(StopReason, Instant)>,
    /// The leader's status and when it was reaped.
    exit: Option<(io::Result<ExitStatus>, Instant)>,
    /// Why its output could not be fully captured.
    output_error: Option<String>,
}

impl Running {
    fn pipes_open(&self) -> bool {
        self.pipes.iter().any(Option::is_some)
    }
}

/// How an attempt ended.
enum Ending {
    Exited(ExitStatus),
    TimedOut(ExitStatus),
    /// A shutdown stopped it, or it died of the signal that was meant for muster.
    Stopped(ExitStatus),
    StartFailed(io::Error),
}

/// One event loop; see the [module docs](self).
pub(crate) struct EventLoop<'s, 'a> {
    shared: &'s Shared<'a>,
    /// To the output thread; it ends when every loop has.
    events: cb::Sender<Event>,
    waker: &'s Waker,
    epoll: OwnedFd,
    running: Vec<Option<Running>>,
    vacant: Vec<usize>,
    count: usize,
    free_slots: Vec<usize>,
    pending: VecDeque<Task>,
    input_ended: bool,
    buf: Vec<u8>,
    /// Running tasks that may be ready to settle.
    ready: Vec<usize>,
    next_scan: Instant,
    level_seen: crate::shutdown::Level,
}

impl<'s, 'a> EventLoop<'s, 'a> {
    /// A loop over `slots` (the `{%}` numbers it hands out).
    pub(crate) fn new(
        shared: &'s Shared<'a>,
        events: cb::Sender<Event>,
        waker: &'s Waker,
        slots: Vec<usize>,
    ) -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(&epoll, &waker.fd, epoll::EventData::new_u64(WAKE), epoll::EventFlags::IN)?;
        let mut free_slots = slots;
        free_slots.reverse();
        Ok(EventLoop {
            shared,
            events,
            waker,
            epoll,
            running: Vec::new(),
            vacant: Vec::new(),
            count: 0,
            free_slots,
            pending: VecDeque::new(),
            input_ended: false,
            buf: vec![0; 64 * 1024],
            ready: Vec::new(),
            next_scan: Instant::now() + TICK,
            level_seen: crate::shutdown::Level::Running,
        })
    }

    fn shutdown(&self) -> &'a Shutdown {
        self.shared.limits.shutdown
    }

    /// Runs until the queue is closed and every task taken has an outcome.
    pub(crate) fn run(mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        loop {
            let more = self.fill();
            if self.count == 0 && self.pending.is_empty() {
                if self.input_ended {
                    return;
                }
                match self.shared.tasks.recv() {
                    Ok(queued) => self.pending.push_back(Task::new(queued, self.shared.config.tag)),
                    Err(_) => self.input_ended = true,
                }
                continue;
            }
            let hungry = !more && !self.input_ended && !self.free_slots.is_empty() && self.pending.is_empty();
            if hungry {
                self.waker.hungry.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if !self.shared.tasks.is_empty() {
                    self.waker.hungry.store(false, Ordering::SeqCst);
                    continue;
                }
            }
            let wait = if more {
                Duration::ZERO
            } else {
                self.next_wake().saturating_duration_since(Instant::now())
            };
            let timeout = rustix::event::Timespec::try_from(wait).ok();
            events.clear();
            match epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut events), timeout.as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                // Only a bug makes epoll_wait fail; do not spin on it.
                Err(_) => std::thread::sleep(TICK),
            }
            if hungry {
                self.waker.hungry.store(false, Ordering::SeqCst);
            }
            for event in &events {
                self.handle(event.data.u64());
            }
            let level = self.shutdown().level();
            if level != self.level_seen || Instant::now() >= self.next_scan {
                self.level_seen = level;
                self.scan();
            }
            self.settle_ready();
        }
    }

    /// When the loop must look again without an event.
    fn next_wake(&self) -> Instant {
        let mut at = self.next_scan;
        if let Some(not_before) = self.pending.front().and_then(|t| t.not_before) {
            at = at.min(not_before);
        }
        at
    }

    /// Starts tasks while there are free slots and tasks to start, at most
    /// [`STARTS_PER_TURN`]; true when it stopped at that limit with more to start.
    fn fill(&mut self) -> bool {
        let draining = self.shutdown().is_tripped() || self.shared.halt.closed();
        if draining {
            // Nothing new starts; what is queued or waiting ends as not run.
            for task in std::mem::take(&mut self.pending) {
                let _ = self.events.send(Event::NotRun(task.seq));
            }
            while let Ok(queued) = self.shared.tasks.try_recv() {
                let _ = self.events.send(Event::NotRun(queued.seq));
            }
            return false;
        }
        let now = Instant::now();
        for _ in 0..STARTS_PER_TURN {
            if self.free_slots.is_empty() {
                return false;
            }
            let task = match self.pending.front() {
                Some(task) if task.not_before.is_some_and(|t| now < t) => return false,
                Some(_) => self.pending.pop_front(),
                None if self.input_ended => return false,
                None => match self.shared.tasks.try_recv() {
                    Ok(queued) => Some(Task::new(queued, self.shared.config.tag)),
                    Err(cb::TryRecvError::Empty) => return false,
                    Err(cb::TryRecvError::Disconnected) => {
                        self.input_ended = true;
                        return false;
                    }
                },
            };
            let Some(task) = task else { return false };
            if !self.start(task) {
                return false;
            }
        }
        !self.free_slots.is_empty()
    }

    /// Starts one attempt; false when the OS refused the process and the task waits.
    fn start(&mut self, mut task: Task) -> bool {
        let Some(slot) = self.free_slots.pop() else {
            self.pending.push_front(task);
            return false;
        };
        let shared = self.shared;
        if !task.announced {
            task.announced = true;
            shared.observer.task_started();
        }
        let argv = shared.config.template.render(&task.input.values, task.seq, slot);
        let start = SystemTime::now();
        let started = Instant::now();
        let spawned = self.spawn(&argv, &task, slot);
        let mut launched = match spawned {
            Ok(launched) => launched,
            Err(err) if refused_for_now(&err) => {
                self.free_slots.push(slot);
                if self.count == 0 {
                    task.refused += 1;
                }
                if task.refused >= SPAWN_TRIES {
                    let why = io::Error::new(err.kind(), format!("{err} (refused {SPAWN_TRIES} times)"));
                    self.settle(
                        task,
                        slot,
                        argv,
                        start,
                        started,
                        Ending::StartFailed(why),
                        None,
                        [None, None],
                    );
                    return true;
                }
                let backoff = Duration::from_millis(10 << task.refused.min(7)).min(Duration::from_secs(1));
                task.not_before = Some(Instant::now() + backoff);
                self.pending.push_front(task);
                return false;
            }
            Err(err) => {
                self.settle(task, slot, argv, start, started, Ending::StartFailed(err), None, [None, None]);
                return true;
            }
        };
        let index = self.vacant.pop().unwrap_or_else(|| {
            self.running.push(None);
            self.running.len() - 1
        });
        let child = launched.child_mut().child_mut();
        let out: Option<OwnedFd> = child.stdout.take().map(Into::into);
        let err: Option<OwnedFd> = child.stderr.take().map(Into::into);
        let mut pipes = [out, err];
        for (kind, pipe) in pipes.iter_mut().enumerate() {
            let registered = pipe.as_ref().is_some_and(|fd| {
                rustix::io::ioctl_fionbio(fd, true).is_ok()
                    && epoll::add(&self.epoll, fd, token(index, kind as u64 + 1), epoll::EventFlags::IN)
                        .is_ok()
            });
            if !registered {
                // Unreadable: dropping it gives the task a broken pipe rather than a hang.
                pipe.take();
            }
        }
        if let Some(exit_fd) = launched.child().exit_fd() {
            // Without it the exit is noticed by the scan, within a tick.
            let _ = epoll::add(&self.epoll, exit_fd, token(index, 0), epoll::EventFlags::IN);
        }
        let threshold = shared.limits.spill_threshold;
        self.running[index] = Some(Running {
            task,
            slot,
            argv,
            launched,
            pipes,
            partial: [Vec::new(), Vec::new()],
            captures: [Capture::new(threshold), Capture::new(threshold)],
            start,
            started,
            deadline: shared.limits.timeout.map(|t| started + t),
            stopping: None,
            exit: None,
            output_error: None,
        });
        self.count += 1;
        if let Some(deadline) = shared.limits.timeout.map(|t| started + t) {
            self.next_scan = self.next_scan.min(deadline);
        }
        true
    }

    fn spawn(&self, argv: &[OsString], task: &Task, slot: usize) -> io::Result<Launched> {
        let Some((program, args)) = argv.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let mut command = match self.shared.limits.program_path {
            Some(path) => {
                let mut command = Command::new(path);
                command.arg0(program);
                command
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .env("MUSTER_TASK", task.seq.to_string())
            .env("MUSTER_ATTEMPT", task.attempt.to_string())
            .env("MUSTER_WORKER", slot.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.shared.launcher.spawn(&mut command)
    }

    /// Handles one readiness event.
    fn handle(&mut self, data: u64) {
        if data == WAKE {
            self.waker.drain();
            return;
        }
        let (index, kind) = ((data >> 2) as usize, data & 3);
        let line_mode = self.shared.config.output == OutputMode::LineBuffer;
        let Some(run) = self.running.get_mut(index).and_then(Option::as_mut) else { return };
        match kind {
            0 => {
                if let Some(fd) = run.launched.child().exit_fd() {
                    let _ = epoll::delete(&self.epoll, fd);
                }
                reap(run);
            }
            _ => {
                let stream = if kind == 1 { Stream::Stdout } else { Stream::Stderr };
                read_pipe(run, stream, &mut self.buf, &self.epoll, line_mode, &self.events);
            }
        }
        self.ready.push(index);
    }

    /// Looks at every running task: time limits, shutdown, exits without a pidfd, and tasks
    /// waiting to settle. Sets when to look again.
    fn scan(&mut self) {
        let now = Instant::now();
        let limits = &self.shared.limits;
        let shutdown = limits.shutdown;
        let drain_deadline =
            shutdown.is_tripped().then(|| *limits.drain_started.get_or_init(Instant::now) + limits.grace);
        let mut next = now + TICK;
        for (index, slot) in self.running.iter_mut().enumerate() {
            let Some(run) = slot else { continue };
            if run.exit.is_some() {
                self.ready.push(index);
                continue;
            }
            if run.launched.child().exit_fd().is_none() && run.launched.child().has_exited().unwrap_or(true) {
                reap(run);
                self.ready.push(index);
                continue;
            }
            match run.stopping {
                None => {
                    let reason = if run.deadline.is_some_and(|d| now >= d) {
                        Some(StopReason::TimedOut)
                    } else if shutdown.is_stopping_now() || drain_deadline.is_some_and(|d| now >= d) {
                        Some(StopReason::Shutdown)
                    } else {
                        None
                    };
                    match reason {
                        Some(reason) => {
                            let _ = run.launched.child().signal_group(Signal::TERM);
                            run.stopping = Some((reason, now + limits.grace));
                            next = next.min(now + limits.grace);
                        }
                        None => {
                            for at in [run.deadline, drain_deadline].into_iter().flatten() {
                                next = next.min(at);
                            }
                        }
                    }
                }
                Some((_, kill_at)) if now >= kill_at => {
                    let _ = run.launched.child().signal_group(Signal::KILL);
                }
                Some((_, kill_at)) => next = next.min(kill_at),
            }
        }
        self.next_scan = next;
    }

    /// Settles the ready tasks whose leader is reaped and whose pipes are read to the end (or
    /// past [`DRAIN_LIMIT`]).
    fn settle_ready(&mut self) {
        let now = Instant::now();
        let mut ready = std::mem::take(&mut self.ready);
        ready.sort_unstable();
        ready.dedup();
        for index in ready.drain(..) {
            let Some(run) = self.running.get(index).and_then(Option::as_ref) else { continue };
            let Some((status, reaped_at)) = &run.exit else { continue };
            if run.pipes_open() && now < *reaped_at + DRAIN_LIMIT {
                self.next_scan = self.next_scan.min(*reaped_at + DRAIN_LIMIT);
                continue;
            }
            // A task killed by SIGINT/SIGTERM may have caught the signal meant for muster
            // (spawned into our group an instant before Ctrl-C); give the signal time to land.
            let signal = status.as_ref().ok().and_then(ExitStatus::signal);
            let shutdown = self.shutdown();
            let ours = signal.is_some_and(|s| s == Signal::INT.as_raw() || s == Signal::TERM.as_raw());
            if ours
                && run.stopping.is_none()
                && shutdown.signal().is_none()
                && now < *reaped_at + SIGNAL_SETTLE
            {
                self.next_scan = self.next_scan.min(*reaped_at + SIGNAL_SETTLE);
                continue;
            }
            self.finish(index);
        }
        self.ready = ready;
    }

    /// Settles a running task whose leader is reaped.
    fn finish(&mut self, index: usize) {
        let Some(mut run) = self.running.get_mut(index).and_then(Option::take) else { return };
        self.vacant.push(index);
        self.count -= 1;
        for pipe in run.pipes.iter_mut() {
            if let Some(fd) = pipe.take() {
                let _ = epoll::delete(&self.epoll, &fd);
            }
        }
        if self.shared.config.output == OutputMode::LineBuffer {
            flush_partial(&mut run, &self.events);
        }
        let (status, _) = run.exit.take().unwrap_or_else(|| (run.launched.reap(), Instant::now()));
        let ending = match (status, run.stopping) {
            (Err(err), _) => Ending::StartFailed(err),
            (Ok(status), Some((StopReason::TimedOut, _))) => Ending::TimedOut(status),
            (Ok(status), Some((StopReason::Shutdown, _))) => Ending::Stopped(status),
            (Ok(status), None) if died_of_our_signal(&status, self.shutdown()) => Ending::Stopped(status),
            (Ok(status), None) => Ending::Exited(status),
        };
        let Running { task, slot, argv, start, started, captures, output_error, .. } = run;
        self.settle(task, slot, argv, start, started, ending, output_error, captures.map(Some));
    }

    /// Records an ended attempt: a retry goes back to the pending queue, a final outcome goes
    /// to the output thread.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        task: Task,
        slot: usize,
        argv: Vec<OsString>,
        start: SystemTime,
        started: Instant,
        ending: Ending,
        output_error: Option<String>,
        captures: [Option<Capture>; 2],
    ) {
        self.free_slots.push(slot);
        let shared = self.shared;
        let shutdown = shared.limits.shutdown;
        let runtime = started.elapsed();
        let (mut outcome, stopped) = classify(&ending, shared.limits.timeout);
        if let (Some(why), false) = (&output_error, stopped) {
            if !matches!(outcome, Outcome::TimedOut(_)) {
                outcome = Outcome::Failed(Failure::Output(why.clone()));
            }
        }
        let retry = !outcome.is_done()
            && !stopped
            && task.attempt <= shared.config.retries
            && !shutdown.is_tripped()
            && !shared.halt.closed();
        let [stdout, stderr] = captures.map(|c| c.unwrap_or_else(|| Capture::new(0)));
        let record = shared.journaling.then(|| Record {
            seq: task.seq,
            host: ":".into(),
            start: start.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            runtime: runtime.as_secs_f64(),
            send: 0,
            receive: stdout.len() + stderr.len(),
            exitval: exit_value(&ending),
            signal: signal_number(&ending),
            command: argv.iter().map(|a| a.as_encoded_bytes()).collect::<Vec<_>>().join(&b' '),
            outcome: match (&outcome, stopped, retry) {
                (Outcome::Done, _, _) => RecordOutcome::Done,
                (_, true, _) => RecordOutcome::Stopped,
                (_, _, true) => RecordOutcome::Retry,
                (Outcome::TimedOut(_), _, _) => RecordOutcome::TimedOut,
                (Outcome::Failed(Failure::Output(_)), _, _) => RecordOutcome::Lost,
                _ => RecordOutcome::Failed,
            },
            attempt: task.attempt,
            occurrence: task.occurrence,
            input: task.input.identity(),
        });
        if retry {
            if let Some(record) = record {
                let _ = self.events.send(Event::Retry(record));
            }
            let mut task = task;
            task.attempt += 1;
            task.refused = 0;
            task.not_before = None;
            self.pending.push_back(task);
            return;
        }
        let program = || argv.first().map_or(String::new(), |p| p.to_string_lossy().into_owned());
        let note = match (&ending, &outcome) {
            (Ending::StartFailed(err), _) => {
                Some(format!("muster: task {}: cannot run '{}': {err}", task.seq, program()))
            }
            (_, Outcome::Failed(failure @ Failure::Output(_))) => Some(format!(
                "muster: task {}: {failure}; not recorded as done (--resume runs it again)",
                task.seq
            )),
            _ => None,
        };
        let finished = Finished {
            seq: task.seq,
            tag: task.tag,
            outcome,
            stopped,
            stdout,
            stderr,
            note,
            runtime,
            record,
        };
        if !stopped {
            shared.halt.record_finished(finished.outcome.is_done(), shutdown);
        }
        let _ = self.events.send(Event::Finished(Box::new(finished)));
    }
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
        }
    }
}

fn token(index: usize, kind: u64) -> epoll::EventData {
    epoll::EventData::new_u64(((index as u64) << 2) | kind)
}

/// Errors that mean "not now" rather than "never": the OS is out of processes, descriptors
/// or memory for the moment.
fn refused_for_now(err: &io::Error) -> bool {
    let codes = [Errno::AGAIN, Errno::MFILE, Errno::NFILE, Errno::NOMEM].map(Errno::raw_os_error);
    err.raw_os_error().is_some_and(|code| codes.contains(&code))
}

/// Kills what is left of the task's group and reaps the leader.
fn reap(run: &mut Running) {
    if run.exit.is_none() {
        run.exit = Some((run.launched.reap(), Instant::now()));
    }
}

/// Reads what `stream` has ready: into its capture, or as complete lines to the output
/// thread. Closes the pipe at its end.
fn read_pipe(
    run: &mut Running,
    stream: Stream,
    buf: &mut [u8],
    epoll_fd: &OwnedFd,
    line_mode: bool,
    events: &cb::Sender<Event>,
) {
    let index = stream as usize;
    for _ in 0..READS_PER_EVENT {
        let Some(fd) = run.pipes[index].as_ref() else { return };
        let n = match rustix::io::read(fd, &mut *buf) {
            Ok(0) => {
                close(run, index, epoll_fd);
                return;
            }
            Ok(n) => n,
            Err(Errno::AGAIN) => return,
            Err(Errno::INTR) => continue,
            Err(errno) => {
                run.output_error.get_or_insert_with(|| format!("reading its output failed: {errno}"));
                close(run, index, epoll_fd);
                return;
            }
        };
        let data = &buf[..n];
        if !line_mode {
            if let Err(err) = run.captures[index].push(data) {
                // Keep reading (and dropping) so the task is not blocked on a full pipe.
                run.output_error.get_or_insert_with(|| format!("its output could not be captured: {err}"));
            }
            continue;
        }
        run.captures[index].count(n);
        let partial = &mut run.partial[index];
        partial.extend_from_slice(data);
        if let Some(last_newline) = partial.iter().rposition(|&b| b == b'\n') {
            let rest = partial.split_off(last_newline + 1);
            let line = std::mem::replace(partial, rest);
            let _ = events.send(Event::Line { seq: run.task.seq, stream, tag: run.task.tag.clone(), line });
        }
    }
}

fn close(run: &mut Running, index: usize, epoll_fd: &OwnedFd) {
    if let Some(fd) = run.pipes[index].take() {
        let _ = epoll::delete(epoll_fd, fd.as_fd());
    }
}

/// Hands over incomplete last lines, ended with a newline so they never join another task's
/// output.
fn flush_partial(run: &mut Running, events: &cb::Sender<Event>) {
    for (index, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
        let mut line = std::mem::take(&mut run.partial[index]);
        if !line.is_empty() {
            line.push(b'\n');
            let _ = events.send(Event::Line { seq: run.task.seq, stream, tag: run.task.tag.clone(), line });
        }
    }
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
        Ending::TimedOut(_) => (Outcome::TimedOut(timeout.unwrap_or_default()), false),
        Ending::Stopped(status) => (from_status(status), !status.success()),
        Ending::StartFailed(err) => (Outcome::Failed(Failure::Start(err.to_string())), false),
    }
}

fn exit_value(ending: &Ending) -> i32 {
    match ending {
        Ending::Exited(s) | Ending::TimedOut(s) | Ending::Stopped(s) => s.code().unwrap_or(0),
        Ending::StartFailed(_) => -1,
    }
}

fn signal_number(ending: &Ending) -> i32 {
    match ending {
        Ending::Exited(s) | Ending::TimedOut(s) | Ending::Stopped(s) => s.signal().unwrap_or(0),
        Ending::StartFailed(_) => 0,
    }
}
