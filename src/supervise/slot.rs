//! One slot's life: start the worker, wait for it to end or for a stop request, restart it
//! after a backoff or give up, and stop it (TERM, grace, KILL) when asked.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rustix::event::{PollFd, PollFlags, Timespec};

use rustix::process::Signal;

use super::{Event, EventSink, Restart, State, Stream, SuperviseConfig};
use crate::process::{GroupChild, Launched, Launcher, Stopped};

/// How long a stopped worker's output readers get to deliver what is left in the pipes (they
/// only outlast it when a descendant escaped the process group and holds the pipe open).
const READERS_LINGER: Duration = Duration::from_secs(1);

/// What the slot threads share.
pub(super) struct Shared {
    pub(super) config: SuperviseConfig,
    pub(super) command: Box<dyn Fn(usize) -> Command + Send + Sync>,
    pub(super) on_event: Box<EventSink>,
    pub(super) board: super::StatusBoard,
    /// Readable (end of file) once the supervisor asked to stop.
    pub(super) stop_notice: UnixStream,
    /// Readable once the supervisor asked to cut the grace period short.
    pub(super) hurry_notice: UnixStream,
}

/// Why waiting ended.
enum Woken {
    Exited,
    Notified,
    TimedOut,
}

/// Runs slot `slot` until it ends for good or a stop is requested.
pub(super) fn supervise(shared: &Arc<Shared>, slot: usize) {
    let config = &shared.config;
    let mut in_a_row = 0u32;
    let mut restarts = 0u32;
    loop {
        let ran = match run_once(shared, slot, restarts) {
            Some(ran) => ran,
            None => return, // stopped
        };
        let failed = !ran.status.is_some_and(|status| status.success());
        let final_state = match config.restart {
            Restart::Never => Some(State::Ended),
            Restart::OnFailure if !failed => Some(State::Ended),
            _ => None,
        };
        if let Some(state) = final_state {
            shared.board.update(slot, |w| w.state = state);
            return;
        }
        if ran.uptime >= config.stable {
            in_a_row = 0;
        }
        if in_a_row >= config.max_restarts {
            shared.board.update(slot, |w| w.state = State::GaveUp);
            (shared.on_event)(Event::GaveUp { slot, in_a_row });
            return;
        }
        in_a_row += 1;
        restarts += 1;
        let delay = config.backoff_for(in_a_row);
        shared.board.update(slot, |w| w.state = State::BackingOff);
        (shared.on_event)(Event::Restarting { slot, delay, in_a_row, limit: config.max_restarts });
        if let Woken::Notified = wait(&shared.stop_notice, None, Some(delay)) {
            shared.board.update(slot, |w| w.state = State::Stopped);
            return;
        }
    }
}

/// How one run of the worker ended on its own.
struct Ran {
    /// `None` when it could not be started.
    status: Option<ExitStatus>,
    uptime: Duration,
}

/// Starts the worker once and waits for it. `None` when a stop request ended it.
fn run_once(shared: &Arc<Shared>, slot: usize, restarts: u32) -> Option<Ran> {
    let config = &shared.config;
    if stop_requested(shared) {
        shared.board.update(slot, |w| w.state = State::Stopped);
        return None;
    }
    shared.board.update(slot, |w| {
        w.state = State::Starting;
        w.restarts = restarts;
    });
    let mut command = (shared.command)(slot);
    command.env("MUSTER_WORKER", slot.to_string());
    if config.capture_output {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = match Launcher::new(config.watchdog.clone()).spawn(&mut command) {
        Ok(child) => child,
        Err(error) => {
            (shared.on_event)(Event::SpawnFailed { slot, error: &error });
            return Some(Ran { status: None, uptime: Duration::ZERO });
        }
    };
    let pid = child.id();
    let started = Instant::now();
    let readers = Readers::start(shared, slot, child.child_mut());
    shared.board.update(slot, |w| {
        w.state = State::Running;
        w.pid = Some(pid);
        w.started = Some(started);
    });
    (shared.on_event)(Event::Started { slot, pid, restarts });

    let woken = wait(&shared.stop_notice, Some(child.child()), None);
    let stopping = matches!(woken, Woken::Notified);
    if stopping {
        shared.board.update(slot, |w| w.state = State::Stopping);
    }
    let outcome = if stopping {
        terminate(shared, &mut child)
    } else {
        child.wait().map(|status| Stopped { status, killed: false })
    };
    readers.finish(READERS_LINGER);
    let uptime = started.elapsed();
    let status = match outcome {
        Ok(how) if stopping => {
            shared.board.update(slot, |w| {
                w.state = State::Stopped;
                w.started = None;
                w.last_exit = Some(how.status);
            });
            (shared.on_event)(Event::Stopped { slot, pid, how });
            return None;
        }
        Ok(how) => Some(how.status),
        // Reaping failed: the process is beyond our reach; count it as a failed run.
        Err(_) => None,
    };
    shared.board.update(slot, |w| {
        w.started = None;
        w.last_exit = status;
    });
    if let Some(status) = status {
        (shared.on_event)(Event::Exited { slot, pid, status, uptime });
    }
    if stop_requested(shared) {
        shared.board.update(slot, |w| w.state = State::Stopped);
        return None;
    }
    Some(Ran { status, uptime })
}

fn stop_requested(shared: &Shared) -> bool {
    let mut fds = [PollFd::new(&shared.stop_notice, PollFlags::IN)];
    matches!(rustix::event::poll(&mut fds, Some(&Timespec::default())), Ok(n) if n > 0)
}

/// SIGTERM to the group, the grace period (cut short by a hurry request), SIGKILL, reap.
fn terminate(shared: &Shared, child: &mut Launched) -> io::Result<Stopped> {
    child.child().signal_group(Signal::TERM)?;
    let killed =
        !matches!(wait(&shared.hurry_notice, Some(child.child()), Some(shared.config.grace)), Woken::Exited);
    let status = child.reap()?;
    Ok(Stopped { status, killed })
}

/// Waits until `child` exits, `notice` becomes readable, or `timeout` passes (None: forever).
fn wait(notice: &UnixStream, child: Option<&GroupChild>, timeout: Option<Duration>) -> Woken {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(child) = child {
            if child.has_exited().unwrap_or(true) {
                return Woken::Exited;
            }
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Woken::TimedOut;
        }
        // Without a pidfd (old kernels) the child is polled every few milliseconds.
        let exit_fd = child.and_then(GroupChild::exit_fd);
        let nap = match (child.is_some() && exit_fd.is_none(), left) {
            (true, Some(l)) => Some(l.min(Duration::from_millis(5))),
            (true, None) => Some(Duration::from_millis(5)),
            (false, l) => l,
        };
        let mut fds = vec![PollFd::new(notice, PollFlags::IN)];
        if let Some(fd) = exit_fd {
            fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
        }
        let timeout = nap.and_then(|n| Timespec::try_from(n).ok());
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            // poll itself failing leaves nothing to wait on: treat it as the notice.
            Err(_) => return Woken::Notified,
        }
        if !fds[0].revents().is_empty() {
            return Woken::Notified;
        }
    }
}

/// The threads reading a worker's stdout and stderr line by line.
struct Readers {
    /// Disconnects when every reader has finished.
    done: Receiver<()>,
}

impl Readers {
    fn start(shared: &Arc<Shared>, slot: usize, child: &mut GroupChild) -> Readers {
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let pipes: [(Option<Box<dyn Read + Send>>, Stream); 2] = [
            (child.child_mut().stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), Stream::Stdout),
            (child.child_mut().stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>), Stream::Stderr),
        ];
        for (pipe, stream) in pipes {
            let Some(pipe) = pipe else { continue };
            let done_tx = done_tx.clone();
            // A reader may outlive its slot (a descendant that escaped the group keeps the
            // pipe open), so it holds the shared state rather than borrowing it.
            let shared = shared.clone();
            let spawned = std::thread::Builder::new().name(format!("muster-out-{slot}")).spawn(move || {
                forward_lines(pipe, slot, stream, &*shared.on_event);
                drop(done_tx);
            });
            // Without a reader thread the pipe is dropped and the worker sees EPIPE: loud, not
            // stuck.
            let _ = spawned;
        }
        Readers { done }
    }

    fn finish(self, linger: Duration) {
        let deadline = Instant::now() + linger;
        loop {
            match self.done.recv_deadline(deadline) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) => return,
            }
        }
    }
}

fn forward_lines(pipe: Box<dyn Read + Send>, slot: usize, stream: Stream, on_event: &EventSink) {
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut lines = Vec::new();
    loop {
        lines.clear();
        // The first line may block; more are taken only while whole ones are buffered.
        loop {
            match reader.read_until(b'\n', &mut lines) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            if lines.last() != Some(&b'\n') {
                lines.push(b'\n');
                break;
            }
            if !reader.buffer().contains(&b'\n') || lines.len() >= 64 * 1024 {
                break;
            }
        }
        if lines.is_empty() {
            return;
        }
        on_event(Event::Lines { slot, stream, lines: &lines });
    }
}
