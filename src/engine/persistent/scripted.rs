//! A persistent worker played by a thread, for the policies' tests: it speaks the protocol on
//! real pipes (the loops, readers and outboxes are the ones real workers get), but no process
//! is spawned, and each record's first word says what the worker does with it:
//!
//! | word        | the worker                                                            |
//! |-------------|-----------------------------------------------------------------------|
//! | `ok`        | replies `r:RECORD`                                                    |
//! | `slow:MS`   | replies after MS milliseconds (a signal ends it sooner)               |
//! | `twice`     | replies twice in one write: a protocol break                          |
//! | `crash`     | dies of SIGKILL without a reply (every time it is sent)               |
//! | `flaky:K`   | dies of SIGKILL on its first K sends (counted per record), then `ok`  |
//! | `exit:N`    | exits with status N without a reply                                   |
//! | `hang`      | never replies; SIGTERM or SIGKILL ends the worker                     |
//! | `stubborn`  | never replies and ignores SIGTERM; SIGKILL ends the worker            |
//! | `deaf`      | replies, and ignores the end of its input from then on (TERM ends it)|
//! | `say:TEXT`  | writes TEXT as a line on stderr, then replies                         |
//!
//! At the end of its input a worker exits 0 (unless it went `deaf`). What every worker saw is
//! kept in its [`Script`] for the tests to check.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::Signal;

use super::Framing;

/// What the scripted workers of a run share: how often each record was sent (read by a
/// worker), and how many workers were started.
#[derive(Debug, Default)]
pub(crate) struct Script {
    sends: Mutex<HashMap<Vec<u8>, u32>>,
    started: AtomicU32,
}

impl Script {
    /// How many times a worker received `record`.
    pub(crate) fn sends(&self, record: &str) -> u32 {
        self.lock().get(record.as_bytes()).copied().unwrap_or(0)
    }

    /// Workers started so far.
    pub(crate) fn started(&self) -> u32 {
        self.started.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, u32>> {
        self.sends.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a send of `record`; returns how many there were with this one.
    fn sent(&self, record: &[u8]) -> u32 {
        let mut sends = self.lock();
        let count = sends.entry(record.to_vec()).or_default();
        *count += 1;
        *count
    }
}

/// The muster's ends of a scripted worker's pipes.
pub(super) struct Pipes {
    pub(super) stdin: OwnedFd,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
}

/// What the worker's thread and its handle share.
struct Shared {
    signals: Mutex<Vec<Signal>>,
    /// Readable when a signal is pending (the worker's thread waits on it beside stdin).
    signalled: OwnedFd,
    status: Mutex<Option<ExitStatus>>,
    /// Readable once the worker has exited: what a pidfd is for a process.
    exited: OwnedFd,
}

impl Shared {
    fn status(&self) -> Option<ExitStatus> {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handle of a scripted worker, as a spawned worker's process is handled.
pub(crate) struct ScriptedChild {
    id: u32,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Beyond any pid the kernel hands out (at most 2^22), so no message names a real process.
static NEXT_ID: AtomicU32 = AtomicU32::new(1 << 30);

impl ScriptedChild {
    /// Starts a worker following `script`, reading records framed by `framing`.
    pub(super) fn start(script: &Arc<Script>, framing: Framing) -> io::Result<(ScriptedChild, Pipes)> {
        let (stdin_read, stdin) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (stdout, stdout_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (stderr, stderr_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        rustix::fs::fcntl_setfl(&stdin_read, rustix::fs::OFlags::NONBLOCK)?;
        let flags = EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK;
        let shared = Arc::new(Shared {
            signals: Mutex::default(),
            signalled: rustix::event::eventfd(0, flags)?,
            status: Mutex::default(),
            exited: rustix::event::eventfd(0, flags)?,
        });
        script.started.fetch_add(1, Ordering::Relaxed);
        let played = Played {
            script: Arc::clone(script),
            framing,
            shared: Arc::clone(&shared),
            stdin: stdin_read,
            stdout: Some(stdout_write),
            stderr: Some(stderr_write),
        };
        let thread =
            std::thread::Builder::new().name("scripted-worker".into()).spawn(move || played.run())?;
        let child =
            ScriptedChild { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), shared, thread: Some(thread) };
        Ok((child, Pipes { stdin, stdout, stderr }))
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Delivers `signal` (the worker's script decides what it does with it).
    pub(crate) fn signal(&self, signal: Signal) {
        if self.has_exited() {
            return;
        }
        self.shared.signals.lock().unwrap_or_else(PoisonError::into_inner).push(signal);
        let _ = rustix::io::write(&self.shared.signalled, &1u64.to_ne_bytes());
    }

    pub(crate) fn exit_fd(&self) -> BorrowedFd<'_> {
        self.shared.exited.as_fd()
    }

    pub(crate) fn has_exited(&self) -> bool {
        self.shared.status().is_some()
    }

    /// As a process's `terminate(0)`: TERM, KILL if still there, and its status once gone.
    pub(crate) fn terminate_now(&mut self) -> Option<ExitStatus> {
        if !self.has_exited() {
            self.signal(Signal::TERM);
            self.signal(Signal::KILL);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.status()
    }
}

impl Drop for ScriptedChild {
    fn drop(&mut self) {
        self.terminate_now();
    }
}

/// The worker's side: its thread's state.
struct Played {
    script: Arc<Script>,
    framing: Framing,
    shared: Arc<Shared>,
    stdin: OwnedFd,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// What the worker does next with the record it works on.
enum Work {
    /// Done with it; on to the next.
    Next,
    /// Working on it until then (a signal may end it sooner).
    Until(Instant),
    /// Working on it until a signal ends the worker; `true`: TERM does not.
    Forever { ignores_term: bool },
    /// The worker ends with this status.
    Exit(ExitStatus),
}

fn killed_by(signal: Signal) -> ExitStatus {
    ExitStatus::from_raw(signal.as_raw())
}

fn exited_with(code: i32) -> ExitStatus {
    ExitStatus::from_raw(code << 8)
}

impl Played {
    fn run(mut self) {
        let status = self.play();
        // Its pipes close as a process's do at exit; then its exit is told.
        let Played { shared, stdin, stdout, stderr, .. } = self;
        drop((stdin, stdout, stderr));
        *shared.status.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
        let _ = rustix::io::write(&shared.exited, &1u64.to_ne_bytes());
    }

    /// Plays the script until the worker ends; its exit status.
    fn play(&mut self) -> ExitStatus {
        // Records read and not yet answered, each with how many times it was sent so far.
        let mut records: VecDeque<(Vec<u8>, u32)> = VecDeque::new();
        let mut unread = Vec::new();
        let mut input_ended = false;
        let mut deaf = false;
        // Since when the record in front is worked on (its send, or the reply before).
        let mut working: Option<Instant> = None;
        loop {
            let mut wait: Option<Duration> = None;
            let mut ignores_term = false;
            while let Some((record, sends)) = records.front() {
                let since = *working.get_or_insert_with(Instant::now);
                match self.work(record, since, *sends, &mut deaf) {
                    Work::Next => {
                        records.pop_front();
                        working = None;
                    }
                    Work::Until(at) => {
                        wait = Some(at.saturating_duration_since(Instant::now()));
                        break;
                    }
                    Work::Forever { ignores_term: stubborn } => {
                        ignores_term = stubborn;
                        break;
                    }
                    Work::Exit(status) => return status,
                }
            }
            if input_ended && records.is_empty() && !deaf {
                return exited_with(0);
            }
            let taken =
                std::mem::take(&mut *self.shared.signals.lock().unwrap_or_else(PoisonError::into_inner));
            for signal in taken {
                match signal {
                    Signal::KILL => return killed_by(Signal::KILL),
                    Signal::TERM if !ignores_term => return killed_by(Signal::TERM),
                    _ => {}
                }
            }
            if wait.is_some_and(|left| left.is_zero()) {
                continue;
            }
            let signalled = self.shared.signalled.as_fd();
            let mut fds = [PollFd::new(&self.stdin, PollFlags::IN), PollFd::new(&signalled, PollFlags::IN)];
            let watched = if input_ended { &mut fds[1..] } else { &mut fds[..] };
            let timeout = wait.and_then(|left| rustix::event::Timespec::try_from(left).ok());
            let _ = rustix::event::poll(watched, timeout.as_ref());
            let mut drained = [0u8; 8];
            let _ = rustix::io::read(&self.shared.signalled, &mut drained);
            if !input_ended {
                input_ended = self.read(&mut unread, &mut records);
            }
        }
    }

    /// Reads what stdin has into whole records, counting their sends; true at its end.
    fn read(&self, unread: &mut Vec<u8>, records: &mut VecDeque<(Vec<u8>, u32)>) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match rustix::io::read(&self.stdin, &mut buf) {
                Ok(0) => return true,
                Ok(n) => unread.extend_from_slice(&buf[..n]),
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => {}
                Err(_) => return true,
            }
        }
        let mut whole = Vec::new();
        let taken = self.framing.split(unread, &mut whole).unwrap_or(0);
        records.extend(whole.into_iter().filter_map(|range| {
            let record = unread.get(range)?.to_vec();
            let sends = self.script.sent(&record);
            Some((record, sends))
        }));
        unread.drain(..taken);
        false
    }

    /// What the worker does with `record`, worked on since `since` and sent `sends` times.
    fn work(&mut self, record: &[u8], since: Instant, sends: u32, deaf: &mut bool) -> Work {
        let text = String::from_utf8_lossy(record).into_owned();
        let word = text.split_whitespace().next().unwrap_or("");
        let (verb, arg) = word.split_once(':').unwrap_or((word, ""));
        match verb {
            "slow" => {
                let at = since + Duration::from_millis(arg.parse().unwrap_or(0));
                if Instant::now() < at {
                    return Work::Until(at);
                }
            }
            "twice" => {
                // Both in one write, as one burst: the reader sees the extra reply at once.
                let mut both = self.framed_reply(record);
                both.extend(self.framed_reply(record));
                write_all(self.stdout.as_ref(), &both);
                return Work::Next;
            }
            "crash" => return Work::Exit(killed_by(Signal::KILL)),
            "flaky" if sends <= arg.parse().unwrap_or(0) => return Work::Exit(killed_by(Signal::KILL)),
            "exit" => return Work::Exit(exited_with(arg.parse().unwrap_or(1))),
            "hang" => return Work::Forever { ignores_term: false },
            "stubborn" => return Work::Forever { ignores_term: true },
            "deaf" => *deaf = true,
            "say" => self.say(arg),
            _ => {}
        }
        self.reply(record);
        Work::Next
    }

    fn reply(&self, record: &[u8]) {
        write_all(self.stdout.as_ref(), &self.framed_reply(record));
    }

    fn framed_reply(&self, record: &[u8]) -> Vec<u8> {
        let mut reply = b"r:".to_vec();
        reply.extend_from_slice(record);
        let mut framed = Vec::new();
        self.framing.write(&mut framed, &reply);
        framed
    }

    fn say(&self, text: &str) {
        write_all(self.stderr.as_ref(), format!("{text}\n").as_bytes());
    }
}

/// Writes all of `bytes` (blocking: the pipe's reader always reads); nothing once it is gone.
fn write_all(fd: Option<&OwnedFd>, mut bytes: &[u8]) {
    let Some(fd) = fd else { return };
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(_) => return,
        }
    }
}
