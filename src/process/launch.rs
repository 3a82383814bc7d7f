//! The one way muster starts a child: in a new process group, known to the watchdog, stopped
//! by one TERM → grace → KILL escalation, and released from the watchdog when reaped.
//!
//! Every mode (a process per task, persistent workers, supervised workers) starts its children
//! through a [`Launcher`], so the recipe that keeps "no orphans" true is written once: the
//! child carries the watchdog's mark in its environment (so even a child started an instant
//! before muster died is found), its group is registered right after the spawn, and the
//! [`Launched`] guard unregisters it only once the leader is reaped. Dropping the guard kills
//! the group and reaps it.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use super::group::{GroupChild, Stopped};
use super::spawner::{Spawned, Spawner};
use super::watchdog::Watchdog;

/// Starts children for one run; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Launcher {
    watchdog: Option<Arc<Watchdog>>,
}

impl Launcher {
    /// A launcher whose children `watchdog` stops if muster dies (`None`: no watchdog).
    pub fn new(watchdog: Option<Arc<Watchdog>>) -> Launcher {
        Launcher { watchdog }
    }

    /// Starts `command` as the leader of a new process group, marked for and registered with
    /// the watchdog. Keeps `std`'s posix_spawn fast path (no `pre_exec`).
    pub fn spawn(&self, command: &mut Command) -> io::Result<Launched> {
        self.mark(command);
        let child = GroupChild::spawn(command)?;
        Ok(self.watch(child))
    }

    /// As [`spawn`](Self::spawn), through `spawner`: stdout and stderr piped (their read ends
    /// returned), stdin reading `stdin` or the null device.
    pub(crate) fn spawn_through(
        &self,
        spawner: &Spawner,
        mut command: Command,
        stdin: Option<Vec<u8>>,
    ) -> io::Result<(Launched, [OwnedFd; 2])> {
        self.mark(&mut command);
        command.process_group(0);
        let Spawned { child, pipes } = spawner.spawn(command, stdin)?;
        Ok((self.watch(GroupChild::adopt(child)), pipes))
    }

    /// Marks the child so the watchdog finds it even if muster dies before it is registered.
    fn mark(&self, command: &mut Command) {
        if let Some(watchdog) = &self.watchdog {
            let (name, token) = watchdog.marker();
            command.env(name, token);
        }
    }

    fn watch(&self, child: GroupChild) -> Launched {
        if let Some(watchdog) = &self.watchdog {
            watchdog.watch(child.id());
        }
        Launched { child, watchdog: self.watchdog.clone(), released: false }
    }
}

/// A child started by a [`Launcher`]. Dropping it kills its group, reaps it and releases it
/// from the watchdog.
#[derive(Debug)]
pub struct Launched {
    child: GroupChild,
    watchdog: Option<Arc<Watchdog>>,
    released: bool,
}

impl Launched {
    /// The child (pid, pipes, signals, waits).
    pub fn child(&self) -> &GroupChild {
        &self.child
    }

    /// The child, mutably (to take its pipes).
    pub fn child_mut(&mut self) -> &mut GroupChild {
        &mut self.child
    }

    /// The leader's pid, which is also its process group id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills what is left of the group, reaps the leader (waiting for it) and releases the
    /// group from the watchdog.
    pub fn reap(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.reap();
        if status.is_ok() {
            self.release();
        }
        status
    }

    /// Waits for the leader to exit, then reaps as [`reap`](Self::reap) does.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait();
        if status.is_ok() {
            self.release();
        }
        status
    }

    /// The escalation: SIGTERM to the group, up to `grace` for the leader to exit, SIGKILL,
    /// reap.
    pub fn terminate(&mut self, grace: Duration) -> io::Result<Stopped> {
        let stopped = self.child.terminate(grace);
        if stopped.is_ok() {
            self.release();
        }
        stopped
    }

    /// Waits up to `patience` for the leader to exit by itself, then escalates as
    /// [`terminate`](Self::terminate) does with `grace` — each wait cut short once `shutdown`
    /// reaches stop-now, when the group is killed at once. Returns the status, and whether it
    /// exited by itself within `patience`.
    pub fn stop_within(
        &mut self,
        patience: Duration,
        grace: Duration,
        shutdown: &crate::shutdown::Shutdown,
    ) -> io::Result<(ExitStatus, bool)> {
        if self.wait_cut_short(patience, shutdown)? {
            return self.wait().map(|status| (status, true));
        }
        if !shutdown.is_stopping_now() {
            self.child.signal_group(rustix::process::Signal::TERM)?;
            if self.wait_cut_short(grace, shutdown)? {
                return self.wait().map(|status| (status, false));
            }
        }
        self.terminate(Duration::ZERO).map(|stopped| (stopped.status, false))
    }

    /// Waits up to `timeout` for the leader to exit, in short slices so that stop-now ends the
    /// wait; true when it exited.
    fn wait_cut_short(&self, timeout: Duration, shutdown: &crate::shutdown::Shutdown) -> io::Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.child.wait_exit_timeout(left.min(Duration::from_millis(50)))? {
                return Ok(true);
            }
            if left.is_zero() || shutdown.is_stopping_now() {
                return Ok(false);
            }
        }
    }

    fn release(&mut self) {
        if !self.released {
            self.released = true;
            if let Some(watchdog) = &self.watchdog {
                watchdog.unwatch(self.child.id());
            }
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.reap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_launched_child_kills_its_group() {
        let launched = Launcher::default().spawn(Command::new("sleep").arg("1000")).expect("sleep");
        let pgid = launched.id();
        drop(launched);
        assert!(crate::process::live_group_members(pgid).expect("/proc").is_empty());
    }

    #[test]
    fn stop_now_cuts_the_escalation_short() {
        let mut stubborn = Command::new("sh");
        stubborn.args(["-c", "trap '' TERM; while :; do sleep 0.05; done"]);
        let mut launched = Launcher::default().spawn(&mut stubborn).expect("sh");
        let shutdown = crate::shutdown::Shutdown::new();
        let stopper = shutdown.clone();
        let started = std::time::Instant::now();
        let helper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            stopper.stop_now();
        });
        let (status, by_itself) = launched
            .stop_within(Duration::from_secs(60), Duration::from_secs(60), &shutdown)
            .expect("stopped");
        helper.join().expect("helper");
        assert!(!by_itself && status.code().is_none(), "killed: {status:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "not the 2 minutes of patience and grace");
    }

    #[test]
    fn reap_reports_the_exit_status() {
        let mut launched = Launcher::default().spawn(Command::new("sh").args(["-c", "exit 4"])).expect("sh");
        assert_eq!(launched.wait().expect("wait").code(), Some(4));
        assert_eq!(launched.reap().expect("reaped again").code(), Some(4));
    }
}
