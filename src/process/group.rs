//! One child process leading its own process group.
//!
//! The leader is never reaped until the very end, after a final SIGKILL to its group: while it
//! is an unreaped zombie its pid (which is the group id) cannot be reused, so signalling the
//! group can never hit an unrelated process. Waiting uses a pidfd where the kernel has them
//! (Linux 5.3+) and short polls otherwise.

use std::io;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

/// How a [`GroupChild`] ended when it was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// The leader's exit status.
    pub status: ExitStatus,
    /// True when the grace period ran out and SIGKILL was needed.
    pub killed: bool,
}

/// A child process that leads its own process group. Dropping it kills the group and reaps
/// the leader, so it never outlives its owner.
pub struct GroupChild {
    child: Child,
    pid: Pid,
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
}

impl std::fmt::Debug for GroupChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupChild").field("pid", &self.id()).field("status", &self.status).finish()
    }
}

impl GroupChild {
    /// Starts `command` as the leader of a new process group.
    pub fn spawn(command: &mut Command) -> io::Result<GroupChild> {
        Ok(GroupChild::adopt(command.process_group(0).spawn()?))
    }

    /// Takes charge of `child`, which was started as the leader of a new process group (by a
    /// [`Spawner`](super::spawner::Spawner)); its pidfd is opened here, in the caller's table.
    pub(crate) fn adopt(child: Child) -> GroupChild {
        let pid = Pid::from_child(&child);
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok();
        GroupChild { child, pid, pidfd, status: None }
    }

    /// The leader's pid, which is also the process group id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The underlying child, for its stdin/stdout/stderr pipes. Do not wait on it directly.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` to every process in the group. A group that is already gone is not an
    /// error.
    pub fn signal_group(&self, signal: Signal) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        match rustix::process::kill_process_group(self.pid, signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// True once the leader has exited (it may not be reaped yet).
    pub fn has_exited(&self) -> io::Result<bool> {
        if self.status.is_some() {
            return Ok(true);
        }
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
        loop {
            match rustix::process::waitid(WaitId::Pid(self.pid), options) {
                Ok(found) => return Ok(found.is_some()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(errno.into()),
            }
        }
    }

    /// Waits until the leader has exited or `timeout` passes; returns whether it exited.
    /// Does not reap it.
    pub fn wait_exit_timeout(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.has_exited()? {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            match &self.pidfd {
                Some(pidfd) => {
                    // A pidfd becomes readable when the process exits.
                    let mut fds = [rustix::event::PollFd::new(pidfd, rustix::event::PollFlags::IN)];
                    let timeout = rustix::event::Timespec::try_from(left).ok();
                    match rustix::event::poll(&mut fds, timeout.as_ref()) {
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(errno) => return Err(errno.into()),
                    }
                }
                None => std::thread::sleep(left.min(Duration::from_millis(5))),
            }
        }
    }

    /// Waits for the leader to exit, then kills what is left of its group and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
        loop {
            match rustix::process::waitid(WaitId::Pid(self.pid), options) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(errno.into()),
            }
        }
        self.reap()
    }

    /// Like [`wait`](Self::wait), giving up after `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        if self.wait_exit_timeout(timeout)? {
            self.reap().map(Some)
        } else {
            Ok(None)
        }
    }

    /// A descriptor that becomes readable when the leader exits (a pidfd), where the kernel
    /// offers one; for `poll` beside the child's pipes.
    pub fn exit_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// Kills whatever is left of the group and reaps the leader, waiting for it to exit.
    pub fn reap(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        self.signal_group(Signal::KILL)?;
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// Stops the group: SIGTERM, up to `grace` for the leader to exit, then SIGKILL, and reaps.
    pub fn terminate(&mut self, grace: Duration) -> io::Result<Stopped> {
        if let Some(status) = self.status {
            return Ok(Stopped { status, killed: false });
        }
        self.signal_group(Signal::TERM)?;
        let exited = grace.is_zero() && self.has_exited()? || self.wait_exit_timeout(grace)?;
        let status = self.reap()?;
        Ok(Stopped { status, killed: !exited })
    }

    /// The exit status, once reaped.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        let _ = self.reap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn group_alive(pgid: u32) -> bool {
        // The killed grandchildren are reparented and may linger as zombies for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let live = crate::process::live_group_members(pgid).expect("/proc readable");
            if live.is_empty() || Instant::now() > deadline {
                return !live.is_empty();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn wait_returns_the_exit_status() {
        let mut child = GroupChild::spawn(Command::new("sh").args(["-c", "exit 3"])).expect("sh");
        assert_eq!(child.wait().expect("wait").code(), Some(3));
    }

    #[test]
    fn terminate_stops_a_cooperative_child_with_term() {
        let mut child = GroupChild::spawn(Command::new("sleep").arg("1000")).expect("sleep");
        let stopped = child.terminate(Duration::from_secs(10)).expect("terminate");
        assert_eq!(stopped.status.signal(), Some(15));
        assert!(!stopped.killed);
    }

    #[test]
    fn terminate_kills_a_child_that_ignores_term_and_its_grandchildren() {
        // The shell ignores TERM, and so does the background sleep it leaves behind.
        let script = "trap '' TERM; sleep 1000 & echo ready; wait";
        let mut child =
            GroupChild::spawn(Command::new("sh").args(["-c", script]).stdout(std::process::Stdio::piped()))
                .expect("sh");
        let mut ready = String::new();
        let stdout = child.child_mut().stdout.take().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready).expect("read");
        let pgid = child.id();
        let stopped = child.terminate(Duration::from_millis(100)).expect("terminate");
        assert!(stopped.killed);
        assert_eq!(stopped.status.signal(), Some(9));
        assert!(!group_alive(pgid), "no process of the group is left");
    }

    #[test]
    fn wait_timeout_gives_up_on_a_running_child() {
        let mut child = GroupChild::spawn(Command::new("sleep").arg("1000")).expect("sleep");
        assert_eq!(child.wait_timeout(Duration::from_millis(20)).expect("wait"), None);
    }

    #[test]
    fn dropping_kills_the_group() {
        let child = GroupChild::spawn(Command::new("sleep").arg("1000")).expect("sleep");
        let pgid = child.id();
        drop(child);
        assert!(!group_alive(pgid));
    }

    #[test]
    fn background_grandchildren_die_with_a_clean_exit() {
        let mut child =
            GroupChild::spawn(Command::new("sh").args(["-c", "sleep 1000 & exit 0"])).expect("sh");
        let pgid = child.id();
        assert_eq!(child.wait().expect("wait").code(), Some(0));
        assert!(!group_alive(pgid));
    }
}
