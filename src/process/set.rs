//! N long-running child processes, started together and stopped together.
//!
//! This is the seed's master that starts four "slave" processes running forever and must shut
//! them down properly instead of by Ctrl-C. Each member leads its own process group and sees
//! its slot in `MUSTER_WORKER`. [`ProcessSet::stop`] sends SIGTERM to every group at once, gives
//! them one shared grace period, SIGKILLs the groups still there, and reaps every leader — so
//! stopping N stubborn workers costs one grace period, not N.

use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::group::{GroupChild, Stopped};

/// One process of a [`ProcessSet`].
#[derive(Debug)]
pub struct Member {
    /// Position in the set, counted from 1; also `MUSTER_WORKER` in the child's environment.
    pub slot: usize,
    /// The process.
    pub child: GroupChild,
}

/// Long-running processes stopped as one. Dropping the set stops them without grace.
#[derive(Debug, Default)]
pub struct ProcessSet {
    members: Vec<Member>,
}

impl ProcessSet {
    /// Starts `n` processes; `command(slot)` builds each one (slots count from 1). If one fails
    /// to start, the ones already started are stopped and the error is returned.
    pub fn spawn(n: usize, mut command: impl FnMut(usize) -> Command) -> io::Result<ProcessSet> {
        let mut set = ProcessSet { members: Vec::with_capacity(n) };
        for slot in 1..=n {
            let mut cmd = command(slot);
            cmd.env("MUSTER_WORKER", slot.to_string());
            let child = GroupChild::spawn(&mut cmd)?;
            set.members.push(Member { slot, child });
        }
        Ok(set)
    }

    /// The members, in slot order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The members' pids, in slot order.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.child.id()).collect()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the set has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Stops every member: SIGTERM to all groups, one shared `grace` period, SIGKILL to the
    /// groups still running, and every leader reaped. Returns how each member ended, by slot.
    pub fn stop(mut self, grace: Duration) -> io::Result<Vec<(usize, Stopped)>> {
        self.stop_all(grace)
    }

    fn stop_all(&mut self, grace: Duration) -> io::Result<Vec<(usize, Stopped)>> {
        let mut first_error = None;
        for member in &self.members {
            if let Err(err) = member.child.signal_group(Signal::TERM) {
                first_error.get_or_insert(err);
            }
        }
        let deadline = Instant::now() + grace;
        let mut stopped = Vec::with_capacity(self.members.len());
        for mut member in self.members.drain(..) {
            let left = deadline.saturating_duration_since(Instant::now());
            // TERM was already sent; `terminate` sends it again (harmless) and escalates.
            match member.child.terminate(left) {
                Ok(how) => stopped.push((member.slot, how)),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(stopped),
        }
    }
}

impl Drop for ProcessSet {
    fn drop(&mut self) {
        let _ = self.stop_all(Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_see_their_slot() {
        let set = ProcessSet::spawn(3, |_| {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "test \"$MUSTER_WORKER\" -ge 1 && exit $MUSTER_WORKER"]);
            cmd
        })
        .expect("spawn");
        let mut set = set;
        let codes: Vec<_> = set.members.iter_mut().map(|m| m.child.wait().expect("wait").code()).collect();
        assert_eq!(codes, [Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn stop_costs_one_shared_grace_period() {
        let mut set = ProcessSet::spawn(4, |_| {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"]);
            cmd.stdout(std::process::Stdio::piped());
            cmd
        })
        .expect("spawn");
        for member in &mut set.members {
            // Wait until the shell has installed its trap, or TERM would simply kill it.
            let stdout = member.child.child_mut().stdout.take().expect("piped");
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read");
        }
        let grace = Duration::from_millis(400);
        let started = Instant::now();
        let stopped = set.stop(grace).expect("stop");
        assert_eq!(stopped.len(), 4);
        assert!(stopped.iter().all(|(_, how)| how.killed));
        // Four stubborn members one after another would take 4 × grace.
        assert!(started.elapsed() < grace * 4, "took {:?}", started.elapsed());
    }
}
