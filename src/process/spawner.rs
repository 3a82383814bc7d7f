//! Starting children from a thread whose descriptor table stays small, however many run.
//!
//! A child starts with a copy of its parent thread's descriptor table, and `exec` then closes
//! every close-on-exec entry of it again. With 10,000 tasks running muster's table holds
//! 30,000 descriptors (each task's pipes and pidfd), so every spawn copies and closes them all:
//! measured with perf at `-j 10000`, that was 28% of the run's CPU time. A [`Spawner`] is a
//! thread that gives itself a table of its own when it starts (`unshare(CLONE_FILES)`, while the
//! process holds only a handful of descriptors), spawns there, and passes each child's stdout
//! and stderr back over a Unix socket (`SCM_RIGHTS`). The child is still muster's own (a
//! thread's children are its process's), so it is waited for, signalled and watched like any
//! other; only its pipes travel.
//!
//! The spawner thread touches no descriptor made elsewhere after it unshares: a request
//! carries a `Command` whose stdio it fills in itself (the null device, pipes, or an anonymous
//! file it writes a task's stdin into).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use crossbeam_channel as cb;
use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// A child started by a [`Spawner`], with its stdout and stderr pipes in the caller's table.
#[derive(Debug)]
pub(crate) struct Spawned {
    /// The child; its `stdout` and `stderr` are taken.
    pub(crate) child: Child,
    /// The read ends of its stdout and stderr pipes.
    pub(crate) pipes: [OwnedFd; 2],
}

struct Request {
    command: Command,
    stdin: Option<Vec<u8>>,
}

/// A thread with a small descriptor table of its own that spawns children for its owner.
pub(crate) struct Spawner {
    requests: Option<cb::Sender<Request>>,
    replies: cb::Receiver<io::Result<Child>>,
    socket: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    /// Starts the thread. Its table is a copy of the process's table as it is now, so start
    /// spawners before starting children (a copy of a task's pipe would keep it open).
    pub(crate) fn start() -> io::Result<Spawner> {
        let (ours, theirs) =
            socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
        let (requests, requests_rx) = cb::bounded::<Request>(1);
        let (replies_tx, replies) = cb::bounded(1);
        let (unshared_tx, unshared) = cb::bounded(1);
        let thread = std::thread::Builder::new().name("muster-spawner".into()).spawn(move || {
            let unshared_result = unshare_descriptor_table();
            let failed = unshared_result.is_err();
            let _ = unshared_tx.send(unshared_result);
            if !failed {
                serve(&requests_rx, &replies_tx, &theirs);
            }
        })?;
        let spawner = Spawner { requests: Some(requests), replies, socket: ours, thread: Some(thread) };
        match unshared.recv() {
            Ok(Ok(())) => Ok(spawner),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(io::Error::other("the spawner thread ended at its start")),
        }
    }

    /// False once its thread has ended (it never should while its owner lives).
    pub(crate) fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|thread| !thread.is_finished())
    }

    /// Starts `command` with stdout and stderr piped, and stdin reading `stdin` (or the null
    /// device).
    pub(crate) fn spawn(&self, command: Command, stdin: Option<Vec<u8>>) -> io::Result<Spawned> {
        let gone = || io::Error::other("the spawner thread is gone");
        let requests = self.requests.as_ref().ok_or_else(gone)?;
        requests.send(Request { command, stdin }).map_err(|_| gone())?;
        let mut child = self.replies.recv().map_err(|_| gone())??;
        match receive_pipes(&self.socket) {
            Ok(pipes) => Ok(Spawned { child, pipes }),
            Err(err) => {
                // Started but unreachable: it must not run unseen.
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::KILL,
                );
                let _ = child.kill();
                let _ = child.wait();
                Err(err)
            }
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[allow(unsafe_code)]
fn unshare_descriptor_table() -> io::Result<()> {
    // SAFETY: rustix marks this unsafe because a descriptor made by another thread after the
    // unshare would mean nothing here. This thread only ever uses descriptors it makes itself
    // (see `serve`) and the socket end it was given, which exists in both tables.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FILES) }.map_err(io::Error::from)
}

/// The spawner thread: one request at a time, until its owner is dropped.
fn serve(requests: &cb::Receiver<Request>, replies: &cb::Sender<io::Result<Child>>, socket: &OwnedFd) {
    for Request { mut command, stdin } in requests {
        let reply = spawn_here(&mut command, stdin.as_deref(), socket);
        if replies.send(reply).is_err() {
            return;
        }
    }
}

fn spawn_here(command: &mut Command, stdin: Option<&[u8]>, socket: &OwnedFd) -> io::Result<Child> {
    task_stdio(command, stdin)?;
    let mut child = command.spawn()?;
    let stdout: Option<OwnedFd> = child.stdout.take().map(Into::into);
    let stderr: Option<OwnedFd> = child.stderr.take().map(Into::into);
    let sent = match (&stdout, &stderr) {
        (Some(stdout), Some(stderr)) => send_pipes(socket, [stdout, stderr]),
        _ => Err(io::Error::other("a piped stream was not piped")),
    };
    if let Err(err) = sent {
        let _ = child.kill();
        let _ = child.wait();
        return Err(err);
    }
    Ok(child)
}

fn send_pipes(socket: &OwnedFd, pipes: [&OwnedFd; 2]) -> io::Result<()> {
    let fds = [pipes[0].as_fd(), pipes[1].as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("no room for two descriptors in a control message"));
    }
    sendmsg(socket, &[IoSlice::new(&[1])], &mut control, SendFlags::empty())?;
    Ok(())
}

fn receive_pipes(socket: &OwnedFd) -> io::Result<[OwnedFd; 2]> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    loop {
        match recvmsg(socket, &mut [IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
    let mut fds = control.drain().flat_map(|message| match message {
        RecvAncillaryMessage::ScmRights(fds) => fds.collect::<Vec<_>>(),
        _ => Vec::new(),
    });
    match (fds.next(), fds.next()) {
        (Some(stdout), Some(stderr)) => Ok([stdout, stderr]),
        // The kernel drops descriptors that do not fit the receiver's table: as when pipe2
        // fails for want of descriptors, a start to try again later.
        _ => Err(rustix::io::Errno::MFILE.into()),
    }
}

/// A task's stdio: stdin reads `stdin` (or the null device), stdout and stderr are piped.
pub(crate) fn task_stdio(command: &mut Command, stdin: Option<&[u8]>) -> io::Result<()> {
    command
        .stdin(match stdin {
            Some(data) => Stdio::from(stdin_file(data)?),
            None => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(())
}

/// An anonymous file holding `data`, positioned at its start, for a task's stdin (`--pipe`):
/// the task reads at its own pace and muster never blocks on a pipe to it.
fn stdin_file(data: &[u8]) -> io::Result<std::fs::File> {
    use std::io::{Seek, Write};
    let mut file =
        std::fs::File::from(rustix::fs::memfd_create("muster-stdin", rustix::fs::MemfdFlags::CLOEXEC)?);
    file.write_all(data)?;
    file.rewind()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/thread-self/fd").map_or(0, Iterator::count)
    }

    #[test]
    fn a_child_gets_its_stdin_and_its_pipes_come_back() {
        let spawner = Spawner::start().expect("spawner");
        let mut command = Command::new("sh");
        command.args(["-c", "cat; echo oops >&2; exit 3"]);
        let Spawned { mut child, pipes } = spawner.spawn(command, Some(b"hello\n".to_vec())).expect("spawn");
        let [stdout, stderr] = pipes;
        let mut out = String::new();
        std::fs::File::from(stdout).read_to_string(&mut out).expect("stdout");
        let mut err = String::new();
        std::fs::File::from(stderr).read_to_string(&mut err).expect("stderr");
        assert_eq!((out.as_str(), err.as_str()), ("hello\n", "oops\n"));
        assert_eq!(child.wait().expect("a child of this process").code(), Some(3));
    }

    #[test]
    fn a_child_does_not_inherit_the_descriptors_opened_after_the_spawner_started() {
        let spawner = Spawner::start().expect("spawner");
        // Held open here while the child runs: a child spawned from this thread would see
        // these pipes (close-on-exec aside, its table would be this size).
        let held: Vec<_> = (0..200).map(|_| rustix::pipe::pipe().expect("pipe")).collect();
        let mut command = Command::new("sh");
        command.args(["-c", "ls /proc/self/fd | wc -l"]);
        let Spawned { mut child, pipes } = spawner.spawn(command, None).expect("spawn");
        let [stdout, _stderr] = pipes;
        let mut out = String::new();
        std::fs::File::from(stdout).read_to_string(&mut out).expect("stdout");
        assert!(child.wait().expect("wait").success());
        assert!(open_descriptors() > 400, "the pipes are open in the caller's table");
        let seen: usize = out.trim().parse().expect("a count");
        assert!(seen < 10, "the child's table held {seen} descriptors");
        drop(held);
    }

    #[test]
    fn a_command_that_cannot_start_is_an_error_and_the_spawner_goes_on() {
        let spawner = Spawner::start().expect("spawner");
        let missing = spawner.spawn(Command::new("/nonexistent/program"), None);
        assert_eq!(missing.expect_err("no such program").kind(), io::ErrorKind::NotFound);
        let mut next = spawner.spawn(Command::new("true"), None).expect("spawn");
        assert!(next.child.wait().expect("wait").success());
    }
}
