//! One attempt at one task: spawn the command in its own process group, capture its output
//! while it runs, enforce the time limit and shutdown, and reap it.
//!
//! The attempt's thread polls the child's stdout, stderr and exit descriptor (a pidfd) at
//! once, so a child that floods one pipe while muster waits on the other never deadlocks. It
//! wakes at least every [`TICK`] to check the time limit and the shutdown token. Stopping is
//! always SIGTERM to the group, then SIGKILL after the grace period. Once the leader exits,
//! the rest of its group is killed (background grandchildren do not outlive their task), which
//! also closes the pipes so the last output can be read to the end.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;

use crate::process::watchdog::Watchdog;
use crate::process::GroupChild;
use crate::shutdown::Shutdown;

/// The longest a running attempt goes without checking its time limit and the shutdown token.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// Which output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Output captured from a task: in memory up to a threshold, then in an anonymous temp file,
/// so a task printing gigabytes does not grow muster's memory.
#[derive(Debug)]
pub(crate) struct Capture {
    memory: Vec<u8>,
    spill: Option<File>,
    len: u64,
    threshold: usize,
}

impl Capture {
    pub(crate) fn new(threshold: usize) -> Capture {
        Capture { memory: Vec::new(), spill: None, len: 0, threshold }
    }

    fn push(&mut self, data: &[u8]) -> io::Result<()> {
        self.len += data.len() as u64;
        if self.spill.is_none() && self.memory.len() + data.len() > self.threshold {
            let mut file = tempfile::tempfile()?;
            file.write_all(&self.memory)?;
            self.memory = Vec::new();
            self.spill = Some(file);
        }
        match &mut self.spill {
            Some(file) => file.write_all(data),
            None => {
                self.memory.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// Bytes captured.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Writes the capture to `out`, each line prefixed by `tag` when given.
    pub(crate) fn write_to(&mut self, out: &mut dyn Write, tag: Option<&[u8]>) -> io::Result<()> {
        match &mut self.spill {
            None => write_tagged(out, &self.memory, tag),
            Some(file) => {
                file.rewind()?;
                let mut reader = io::BufReader::new(file);
                match tag {
                    None => io::copy(&mut reader, out).map(drop),
                    Some(tag) => {
                        let mut line = Vec::new();
                        while io::BufRead::read_until(&mut reader, b'\n', &mut line)? > 0 {
                            write_tagged(out, &line, Some(tag))?;
                            line.clear();
                        }
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Writes `data`, prefixing every line with `tag`.
pub(crate) fn write_tagged(out: &mut dyn Write, data: &[u8], tag: Option<&[u8]>) -> io::Result<()> {
    let Some(tag) = tag else { return out.write_all(data) };
    for line in data.split_inclusive(|&b| b == b'\n') {
        out.write_all(tag)?;
        out.write_all(line)?;
    }
    Ok(())
}

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// It exited or was killed on its own account.
    Exited(ExitStatus),
    /// It ran past the time limit and was stopped.
    TimedOut(ExitStatus),
    /// A shutdown stopped it before it finished.
    Stopped(ExitStatus),
    /// It could not be started.
    StartFailed(io::Error),
}

/// A finished attempt.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) start: SystemTime,
    pub(crate) runtime: Duration,
    pub(crate) ending: Ending,
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
}

/// What every attempt of a farm shares.
pub(crate) struct Limits<'a> {
    pub(crate) timeout: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) shutdown: &'a Shutdown,
    /// When draining began, as first noticed by any attempt; running tasks get `grace` from it.
    pub(crate) drain_started: &'a OnceLock<Instant>,
    pub(crate) watchdog: Option<&'a Watchdog>,
    pub(crate) spill_threshold: usize,
    /// The resolved path of `argv[0]`, when known.
    pub(crate) program_path: Option<&'a std::path::Path>,
}

/// Why an attempt is being stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StopReason {
    TimedOut,
    Shutdown,
}

/// Runs one attempt of `argv` with extra environment `env`. With `on_line`, complete lines are
/// handed over as they arrive (line-buffered mode) instead of being captured.
pub(crate) fn run_attempt(
    argv: &[OsString],
    env: &[(&str, String)],
    limits: &Limits<'_>,
    mut on_line: Option<&mut dyn FnMut(Stream, Vec<u8>)>,
) -> Attempt {
    let start = SystemTime::now();
    let started = Instant::now();
    let mut stdout = Capture::new(limits.spill_threshold);
    let mut stderr = Capture::new(limits.spill_threshold);
    let finish =
        |ending, stdout, stderr| Attempt { start, runtime: started.elapsed(), ending, stdout, stderr };

    let Some((program, args)) = argv.split_first() else {
        let err = io::Error::new(io::ErrorKind::InvalidInput, "empty command");
        return finish(Ending::StartFailed(err), stdout, stderr);
    };
    let mut command = match limits.program_path {
        Some(path) => {
            let mut command = Command::new(path);
            command.arg0(program);
            command
        }
        None => Command::new(program),
    };
    command.args(args).envs(env.iter().map(|(k, v)| (*k, v))).stdin(Stdio::null());
    if let Some(watchdog) = limits.watchdog {
        let (name, token) = watchdog.marker();
        command.env(name, token);
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match GroupChild::spawn(&mut command) {
        Ok(child) => child,
        Err(err) => return finish(Ending::StartFailed(err), stdout, stderr),
    };
    let pgid = child.id();
    if let Some(watchdog) = limits.watchdog {
        watchdog.watch(pgid);
    }

    let mut pipes = Pipes {
        out: child.child_mut().stdout.take(),
        err: child.child_mut().stderr.take(),
        partial: [Vec::new(), Vec::new()],
        buf: vec![0; 64 * 1024],
    };
    let deadline = limits.timeout.map(|t| started + t);
    let mut stopping: Option<(StopReason, Instant)> = None;
    let mut io_error = None;

    loop {
        let now = Instant::now();
        match stopping {
            None => {
                let reason = if deadline.is_some_and(|d| now >= d) {
                    Some(StopReason::TimedOut)
                } else if limits.shutdown.is_stopping_now()
                    || (limits.shutdown.is_tripped()
                        && now >= *limits.drain_started.get_or_init(Instant::now) + limits.grace)
                {
                    Some(StopReason::Shutdown)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let _ = child.signal_group(Signal::TERM);
                    stopping = Some((reason, now + limits.grace));
                }
            }
            Some((_, kill_at)) if now >= kill_at => {
                let _ = child.signal_group(Signal::KILL);
            }
            Some(_) => {}
        }
        match child.has_exited() {
            Ok(false) => {}
            Ok(true) | Err(_) => break,
        }
        let mut wake = TICK;
        if let Some(d) = deadline.filter(|_| stopping.is_none()) {
            wake = wake.min(d.saturating_duration_since(now));
        }
        if let Err(err) = pipes.poll_once(child.exit_fd(), wake, &mut stdout, &mut stderr, &mut on_line) {
            io_error.get_or_insert(err);
        }
    }

    // Killing the rest of the group closes the pipes' last writers, so reading to the end
    // cannot hang — unless a process escaped the group with setsid, hence the time bound.
    let status = child.reap();
    if let Some(watchdog) = limits.watchdog {
        watchdog.unwatch(pgid);
    }
    let drain_deadline = Instant::now() + Duration::from_secs(1);
    while pipes.open() && Instant::now() < drain_deadline {
        let left = drain_deadline.saturating_duration_since(Instant::now());
        if let Err(err) = pipes.poll_once(None, left, &mut stdout, &mut stderr, &mut on_line) {
            io_error.get_or_insert(err);
            break;
        }
    }
    pipes.flush_partial(&mut on_line);

    let ending = match (status, stopping) {
        (Err(err), _) => Ending::StartFailed(err),
        (Ok(status), Some((StopReason::TimedOut, _))) => Ending::TimedOut(status),
        (Ok(status), Some((StopReason::Shutdown, _))) => Ending::Stopped(status),
        (Ok(status), None) => Ending::Exited(status),
    };
    if let Some(err) = io_error {
        let _ = stderr.push(format!("muster: reading the task's output failed: {err}\n").as_bytes());
    }
    finish(ending, stdout, stderr)
}

/// The child's output pipes while they are open.
struct Pipes {
    out: Option<ChildStdout>,
    err: Option<ChildStderr>,
    /// Incomplete last lines, per stream, in line-buffered mode.
    partial: [Vec<u8>; 2],
    buf: Vec<u8>,
}

impl Pipes {
    fn open(&self) -> bool {
        self.out.is_some() || self.err.is_some()
    }

    /// Waits up to `wait` for output or the child's exit, and reads what is ready.
    fn poll_once(
        &mut self,
        exit_fd: Option<BorrowedFd<'_>>,
        wait: Duration,
        stdout: &mut Capture,
        stderr: &mut Capture,
        on_line: &mut Option<&mut dyn FnMut(Stream, Vec<u8>)>,
    ) -> io::Result<()> {
        let (out_ready, err_ready) = {
            let events = PollFlags::IN | PollFlags::HUP | PollFlags::ERR;
            let mut streams = Vec::with_capacity(3);
            let mut fds = Vec::with_capacity(3);
            if let Some(out) = &self.out {
                streams.push(Some(Stream::Stdout));
                fds.push(PollFd::new(out, events));
            }
            if let Some(err) = &self.err {
                streams.push(Some(Stream::Stderr));
                fds.push(PollFd::new(err, events));
            }
            if let Some(fd) = exit_fd {
                streams.push(None);
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            }
            if fds.is_empty() {
                std::thread::sleep(wait);
                return Ok(());
            }
            let timeout = rustix::event::Timespec::try_from(wait).ok();
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
            let ready = |stream| {
                streams.iter().zip(&fds).any(|(s, fd)| *s == Some(stream) && !fd.revents().is_empty())
            };
            (ready(Stream::Stdout), ready(Stream::Stderr))
        };
        if out_ready {
            self.read_one(Stream::Stdout, stdout, on_line)?;
        }
        if err_ready {
            self.read_one(Stream::Stderr, stderr, on_line)?;
        }
        Ok(())
    }

    fn read_one(
        &mut self,
        stream: Stream,
        capture: &mut Capture,
        on_line: &mut Option<&mut dyn FnMut(Stream, Vec<u8>)>,
    ) -> io::Result<()> {
        let n = match stream {
            Stream::Stdout => self.out.as_mut().map(|p| p.read(&mut self.buf)),
            Stream::Stderr => self.err.as_mut().map(|p| p.read(&mut self.buf)),
        };
        let n = match n {
            None => return Ok(()),
            Some(Ok(n)) => n,
            Some(Err(err)) if err.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Some(Err(err)) => return Err(err),
        };
        if n == 0 {
            match stream {
                Stream::Stdout => self.out = None,
                Stream::Stderr => self.err = None,
            }
            return Ok(());
        }
        let data = &self.buf[..n];
        match on_line {
            None => capture.push(data),
            Some(emit) => {
                capture.len += n as u64;
                let partial = &mut self.partial[stream as usize];
                partial.extend_from_slice(data);
                if let Some(last_newline) = partial.iter().rposition(|&b| b == b'\n') {
                    let rest = partial.split_off(last_newline + 1);
                    let complete = std::mem::replace(partial, rest);
                    emit(stream, complete);
                }
                Ok(())
            }
        }
    }

    /// Hands over incomplete last lines, ended with a newline so they never join another
    /// task's output.
    fn flush_partial(&mut self, on_line: &mut Option<&mut dyn FnMut(Stream, Vec<u8>)>) {
        if let Some(emit) = on_line {
            for (index, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
                let mut rest = std::mem::take(&mut self.partial[index]);
                if !rest.is_empty() {
                    rest.push(b'\n');
                    emit(stream, rest);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_output_spills_to_a_file_and_comes_back_whole() {
        let mut capture = Capture::new(1024);
        let chunk: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        for _ in 0..10 {
            capture.push(&chunk).expect("push");
        }
        assert!(
            capture.spill.is_some() && capture.memory.is_empty(),
            "past the threshold, memory is released"
        );
        assert_eq!(capture.len(), 7000);
        let mut out = Vec::new();
        capture.write_to(&mut out, None).expect("write");
        assert_eq!(out, chunk.repeat(10));
    }

    #[test]
    fn tags_prefix_every_line_in_memory_and_spilled() {
        for threshold in [1 << 20, 4] {
            let mut capture = Capture::new(threshold);
            capture.push(b"one\ntwo\nthree").expect("push");
            let mut out = Vec::new();
            capture.write_to(&mut out, Some(b"in\t")).expect("write");
            assert_eq!(out, b"in\tone\nin\ttwo\nin\tthree", "threshold {threshold}");
        }
    }
}
