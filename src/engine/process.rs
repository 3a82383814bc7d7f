//! The process-per-task executor: one epoll instance per event loop, running many tasks at once.
//!
//! `muster run -j N` does not cost N threads. The engine starts one loop per CPU (never more
//! than N), each a [`Dispatcher`](super::dispatch::Dispatcher) over one of these executors. An
//! executor multiplexes its children's exits (pidfds), their stdout and stderr pipes and the
//! loop's [`Waker`] on one epoll instance, so `-j 10000` costs file descriptors (three per
//! running task; see [`raise_fd_limit`]), not threads or stacks.
//!
//! One attempt, as the executor sees it: spawn in a new process group through the
//! [`Launcher`] (watchdog included, posix_spawn's fast path kept), read its output as it
//! comes (captured whole, or passed on as complete lines), and when the leader exits, kill the
//! rest of its group and reap it, read the pipes to their end (bounded by [`DRAIN_LIMIT`]: a
//! process that escaped the group with `setsid` could hold them open), and report it ended.
//! When to stop an attempt, and what its ending means, is the dispatcher's business.
//!
//! What a spawn costs at a high `-j`: the child starts with a copy of its parent thread's
//! descriptor table, which holds three descriptors per running task, and `exec` closes them
//! again. At `-j 10000` that made each spawn several times dearer than at `-j 2` (10,000 ×
//! `sleep 2`: 11.1 s, where xargs, holding no descriptors, took 9.9 s). So once many tasks
//! run ([`SPAWNER_FROM`]) a loop starts its children through a
//! [`Spawner`](crate::process::spawner): a thread with a table of its own, which passes each
//! child's pipes back (7.3 s for the same run).

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel as cb;
use rustix::io::Errno;
use rustix::process::Signal;

use super::capture::{Capture, Stream};
use super::dispatch::{Attempt, Ended, Executor, StopReason, Verdict};
use super::poll::{Interest, Poller, Waker, TICK};
use super::settle::Event;
use crate::process::spawner::{task_stdio, Spawner};
use crate::process::{Launched, Launcher};
use crate::task::Seq;

/// How long the pipes of an exited task are read before it is reported ended anyway.
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// Reads per readiness event: enough to drain a burst, few enough to stay fair.
const READS_PER_EVENT: usize = 4;
/// From this many running tasks on (all loops together), children are started through a
/// [`Spawner`] (when `-j` allows that many): below, the table a child copies is small anyway
/// and the handoff to another thread costs more than it saves. Measured on 2 cores, runs
/// alternating: with `true` at -j2 and -j16 spawning directly is 6% faster, at -j64 they are
/// even; `sleep 0.3` at -j128 even, at -j512 the spawner 3% faster, at -j10000 1.5×.
const SPAWNER_FROM: usize = 64;

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

/// How every attempt of a run is started.
pub(crate) struct ProcessSettings<'a> {
    pub(crate) launcher: &'a Launcher,
    /// The resolved path of `argv[0]`, when known.
    pub(crate) program_path: Option<&'a Path>,
    /// Output kept in memory per task before it spills to a temp file.
    pub(crate) spill_threshold: usize,
    /// Pass complete lines on as they come instead of capturing whole.
    pub(crate) line_mode: bool,
    /// Tasks run at once at most (`-j`).
    pub(crate) jobs: usize,
    /// Tasks running now, in all loops: what muster's descriptor table holds.
    pub(crate) running: AtomicUsize,
}

/// A running process.
struct Running {
    /// Tells its events from those of an earlier task in the same slot (see [`token`]).
    generation: u32,
    seq: Seq,
    tag: Option<Vec<u8>>,
    launched: Launched,
    /// stdout and stderr, while open.
    pipes: [Option<OwnedFd>; 2],
    /// Incomplete last lines, per stream, in line-buffered mode.
    partial: [Vec<u8>; 2],
    captures: [Capture; 2],
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

/// Runs each attempt as a process; see the [module docs](self).
pub(crate) struct ProcessExecutor<'s, 'a> {
    settings: &'s ProcessSettings<'a>,
    /// Lines for the output thread (line-buffered mode).
    events: cb::Sender<Event>,
    waker: Arc<Waker>,
    poller: Poller,
    /// The tokens of the last wait's events.
    tokens: Vec<u64>,
    /// By slot position.
    running: Vec<Option<Running>>,
    buf: Vec<u8>,
    /// Running tasks that may have ended.
    ready: Vec<usize>,
    /// When to look at every child again (exits without a pidfd, pipes past the drain limit).
    next_check: Instant,
    /// Starts the children when this loop runs many at once; see [`SPAWNER_FROM`].
    spawner: Option<Spawner>,
    /// The last attempt's generation.
    generation: u32,
}

impl<'s, 'a> ProcessExecutor<'s, 'a> {
    /// An executor for `slots` slot positions, woken by `waker`.
    pub(crate) fn new(
        settings: &'s ProcessSettings<'a>,
        events: cb::Sender<Event>,
        waker: Arc<Waker>,
        slots: usize,
    ) -> io::Result<Self> {
        let poller = Poller::new(waker.fd())?;
        Ok(ProcessExecutor {
            settings,
            events,
            waker,
            poller,
            tokens: Vec::with_capacity(256),
            running: (0..slots).map(|_| None).collect(),
            buf: vec![0; 64 * 1024],
            ready: Vec::new(),
            next_check: Instant::now() + TICK,
            // Where a thread may not have a table of its own (a seccomp filter, say), spawning
            // directly still works, only slower at a high -j.
            spawner: if settings.jobs >= SPAWNER_FROM { Spawner::start().ok() } else { None },
            generation: 0,
        })
    }

    /// Starts the attempt; returns it with the read ends of its stdout and stderr pipes.
    fn spawn(&self, attempt: &Attempt<'_>) -> io::Result<(Launched, [Option<OwnedFd>; 2])> {
        let Some((program, args)) = attempt.argv.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        if attempt.argv.iter().any(|word| word.as_encoded_bytes().contains(&0)) {
            // What the OS would say is "nul byte found in provided data"; say what to do.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "its input holds a NUL byte, which no command line can carry (NUL-separated input: -0)",
            ));
        }
        let mut command = match self.settings.program_path {
            Some(path) => {
                let mut command = Command::new(path);
                command.arg0(program);
                command
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .env("MUSTER_TASK", attempt.seq.to_string())
            .env("MUSTER_ATTEMPT", attempt.attempt.to_string())
            .env("MUSTER_WORKER", attempt.slot.to_string());
        if let Some(spawner) = self.spawner.as_ref().filter(|spawner| {
            spawner.is_alive() && self.settings.running.load(Ordering::Relaxed) >= SPAWNER_FROM
        }) {
            let stdin = attempt.stdin.map(<[u8]>::to_vec);
            let (launched, [out, err]) = self.settings.launcher.spawn_through(spawner, command, stdin)?;
            return Ok((launched, [Some(out), Some(err)]));
        }
        task_stdio(&mut command, attempt.stdin)?;
        let mut launched = self.settings.launcher.spawn(&mut command)?;
        let child = launched.child_mut().child_mut();
        let pipes = [child.stdout.take().map(Into::into), child.stderr.take().map(Into::into)];
        Ok((launched, pipes))
    }

    /// Handles one readiness event.
    fn handle(&mut self, data: u64) {
        let (generation, index, kind) = ((data >> 32) as u32, ((data & INDEX_BITS) >> 2) as usize, data & 3);
        let line_mode = self.settings.line_mode;
        let Some(run) = self.running.get_mut(index).and_then(Option::as_mut) else { return };
        if run.generation != generation {
            // An earlier task's descriptor, still registered for an instant: a child being
            // spawned held a copy of it when it was closed.
            return;
        }
        match kind {
            // The pidfd is registered for one event: it stays readable once the leader exits.
            0 => reap(run),
            _ => {
                let stream = if kind == 1 { Stream::Stdout } else { Stream::Stderr };
                read_pipe(run, stream, &mut self.buf, line_mode, &self.events);
            }
        }
        self.ready.push(index);
    }

    /// Looks at every child: exits without a pidfd, and exited ones whose pipes are still open.
    fn check_all(&mut self, now: Instant) {
        for (index, slot) in self.running.iter_mut().enumerate() {
            let Some(run) = slot else { continue };
            if run.exit.is_none()
                && run.launched.child().exit_fd().is_none()
                && run.launched.child().has_exited().unwrap_or(true)
            {
                reap(run);
            }
            if run.exit.is_some() {
                self.ready.push(index);
            }
        }
        self.next_check = now + TICK;
    }

    /// Reports the ready children whose leader is reaped and whose pipes are read to the end
    /// (or past [`DRAIN_LIMIT`]).
    fn collect(&mut self, now: Instant, ended: &mut Vec<Ended>) {
        let mut ready = std::mem::take(&mut self.ready);
        ready.sort_unstable();
        ready.dedup();
        for index in ready.drain(..) {
            let Some(run) = self.running.get(index).and_then(Option::as_ref) else { continue };
            let Some((_, reaped_at)) = &run.exit else { continue };
            if run.pipes_open() && now < *reaped_at + DRAIN_LIMIT {
                self.next_check = self.next_check.min(*reaped_at + DRAIN_LIMIT);
                continue;
            }
            let Some(mut run) = self.running[index].take() else { continue };
            self.settings.running.fetch_sub(1, Ordering::Relaxed);
            // Closing them ends their registration (no epoll_ctl needed: see `token`).
            run.pipes = [None, None];
            if self.settings.line_mode {
                flush_partial(&mut run, &self.events);
            }
            let (status, reaped_at) = run.exit.take().unwrap_or_else(|| (run.launched.reap(), now));
            let verdict = match status {
                Ok(status) => Verdict::Exited(status),
                Err(err) => Verdict::NotStarted(err),
            };
            ended.push(Ended {
                id: index,
                verdict,
                reaped_at,
                captures: run.captures,
                output_error: run.output_error,
                charged: true,
                input: None,
            });
        }
        self.ready = ready;
    }
}

impl Executor for ProcessExecutor<'_, '_> {
    fn start(&mut self, id: usize, attempt: &mut Attempt<'_>) -> io::Result<()> {
        let (launched, mut pipes) = self.spawn(attempt)?;
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        for (kind, pipe) in pipes.iter_mut().enumerate() {
            let registered = pipe.as_ref().is_some_and(|fd| {
                let data = token(id, kind as u64 + 1, generation);
                rustix::io::ioctl_fionbio(fd, true).is_ok()
                    && self.poller.watch(fd, data, Interest::Readable).is_ok()
            });
            if !registered {
                // Unreadable: dropping it gives the task a broken pipe rather than a hang.
                pipe.take();
            }
        }
        if let Some(exit_fd) = launched.child().exit_fd() {
            // Without it the exit is noticed by the periodic check, within a tick.
            let _ = self.poller.watch(exit_fd, token(id, 0, generation), Interest::ReadableOnce);
        }
        let threshold = self.settings.spill_threshold;
        let run = Running {
            generation,
            seq: attempt.seq,
            tag: attempt.tag.map(<[u8]>::to_vec),
            launched,
            pipes,
            partial: [Vec::new(), Vec::new()],
            captures: [Capture::new(threshold), Capture::new(threshold)],
            exit: None,
            output_error: None,
        };
        match self.running.get_mut(id) {
            Some(slot) => {
                if slot.is_none() {
                    self.settings.running.fetch_add(1, Ordering::Relaxed);
                }
                *slot = Some(run);
            }
            None => return Err(io::Error::new(io::ErrorKind::InvalidInput, "no such slot")),
        }
        Ok(())
    }

    fn stop(&mut self, id: usize, _why: StopReason, force: bool) {
        if let Some(run) = self.running.get(id).and_then(Option::as_ref) {
            if run.exit.is_none() {
                let _ = run.launched.child().signal_group(if force { Signal::KILL } else { Signal::TERM });
            }
        }
    }

    fn wait(&mut self, timeout: Duration, ended: &mut Vec<Ended>) {
        let now = Instant::now();
        let wait = timeout.min(self.next_check.saturating_duration_since(now));
        let mut tokens = std::mem::take(&mut self.tokens);
        if self.poller.wait(Some(wait), &mut tokens) {
            self.waker.drain();
        }
        for &token in &tokens {
            self.handle(token);
        }
        self.tokens = tokens;
        let now = Instant::now();
        if now >= self.next_check {
            self.check_all(now);
        }
        self.collect(now, ended);
    }
}

/// The slot index's bits in a token (below them, the kind: exit, stdout, stderr).
const INDEX_BITS: u64 = 0xFFFF_FFFF;

/// An event's token: the attempt's generation, its slot and what fired. A descriptor is not
/// taken out of the epoll set before it is closed (three `epoll_ctl` calls a task saved):
/// closing ends its registration, unless a child being spawned at that instant holds a copy,
/// whose events then carry an old generation and are ignored.
fn token(index: usize, kind: u64, generation: u32) -> u64 {
    (u64::from(generation) << 32) | (((index as u64) << 2) & INDEX_BITS) | kind
}

/// Kills what is left of the task's group and reaps the leader.
fn reap(run: &mut Running) {
    if run.exit.is_none() {
        run.exit = Some((run.launched.reap(), Instant::now()));
    }
}

/// Reads what `stream` has ready: into its capture, or as complete lines to the output
/// thread. Closes the pipe at its end.
fn read_pipe(run: &mut Running, stream: Stream, buf: &mut [u8], line_mode: bool, events: &cb::Sender<Event>) {
    let index = stream as usize;
    for _ in 0..READS_PER_EVENT {
        let Some(fd) = run.pipes[index].as_ref() else { return };
        let n = match rustix::io::read(fd, &mut *buf) {
            Ok(0) => {
                close(run, index);
                return;
            }
            Ok(n) => n,
            Err(Errno::AGAIN) => return,
            Err(Errno::INTR) => continue,
            Err(errno) => {
                run.output_error.get_or_insert_with(|| format!("reading its output failed: {errno}"));
                close(run, index);
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
            let _ = events.send(Event::Line { seq: run.seq, stream, tag: run.tag.clone(), line });
        }
    }
}

/// Closes the pipe, which ends its registration (see [`token`]).
fn close(run: &mut Running, index: usize) {
    run.pipes[index] = None;
}

/// Hands over incomplete last lines, ended with a newline so they never join another task's
/// output.
fn flush_partial(run: &mut Running, events: &cb::Sender<Event>) {
    for (index, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
        let mut line = std::mem::take(&mut run.partial[index]);
        if !line.is_empty() {
            line.push(b'\n');
            let _ = events.send(Event::Line { seq: run.seq, stream, tag: run.tag.clone(), line });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn settings(launcher: &Launcher) -> ProcessSettings<'_> {
        ProcessSettings {
            launcher,
            program_path: None,
            spill_threshold: 1 << 20,
            line_mode: false,
            jobs: 1,
            running: AtomicUsize::new(0),
        }
    }

    fn attempt(argv: &[OsString]) -> Attempt<'_> {
        Attempt { seq: 1, attempt: 1, slot: 1, argv, values: &[], tag: None, stdin: None, lent: None }
    }

    /// Waits (up to 10 s) for the attempt in slot 0 to end.
    fn ended(executor: &mut ProcessExecutor<'_, '_>) -> Ended {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ended = Vec::new();
        while ended.is_empty() && Instant::now() < deadline {
            executor.wait(Duration::from_millis(50), &mut ended);
        }
        ended.pop().expect("the attempt ended")
    }

    #[test]
    fn a_stale_event_never_touches_the_next_task_in_its_slot() {
        let launcher = Launcher::default();
        let settings = settings(&launcher);
        let (events, _events_rx) = cb::unbounded();
        let waker = Arc::new(Waker::new().expect("waker"));
        let mut executor = ProcessExecutor::new(&settings, events, waker, 1).expect("executor");
        let quick = [OsString::from("true")];
        executor.start(0, &mut attempt(&quick)).expect("start");
        let first = ended(&mut executor);
        assert!(matches!(first.verdict, Verdict::Exited(status) if status.success()));
        let stale = executor.generation;
        let slow = [OsString::from("sleep"), OsString::from("30")];
        executor.start(0, &mut attempt(&slow)).expect("start");
        // The first task's exit, as a descriptor copy still registered would report it: it
        // must not reap (kill) the task now in the slot.
        executor.handle(token(0, 0, stale));
        let run = executor.running[0].as_ref().expect("the second task runs");
        assert!(run.exit.is_none(), "the second task was reaped by the first one's event");
        executor.stop(0, StopReason::Shutdown, true);
        let second = ended(&mut executor);
        let killed = matches!(second.verdict, Verdict::Exited(status) if status.code().is_none());
        assert!(killed, "killed by the test, not before");
    }
}
