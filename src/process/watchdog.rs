//! The orphan watchdog: a tiny helper process that kills muster's task groups if muster dies.
//!
//! Process groups let muster stop a task's whole tree, but only while muster is alive to do
//! it. If muster is killed with SIGKILL, nothing runs in it any more; so a helper, started
//! once, learns each task's process group over a pipe (`+PGID` when started, `-PGID` when
//! reaped). The pipe is also the death notice: when it reaches end-of-file — muster exited,
//! or was killed — the helper terminates every group still listed (TERM, a moment, KILL) and
//! exits. On a normal exit the list is empty and the helper just leaves.
//!
//! This keeps tasks on `posix_spawn`'s fast path: no `pre_exec` closure is needed to set a
//! parent-death signal in every task. The helper ignores SIGINT, SIGTERM and SIGHUP (a
//! terminal's Ctrl-C or hang-up reaches the whole foreground group) so it can always clean up,
//! and it runs in its own process group so a signal to muster's group does not reach it.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// The environment variable that marks every process muster starts under a watchdog. Its
/// value is the watchdog's token, so the helper can also find tasks that were started but
/// not yet registered when muster died (the instant between spawn and `+PGID`).
pub const MARKER_VAR: &str = "MUSTER_WATCHDOG";

/// How long the helper sleeps between reads of its pipe.
const NAP: Duration = Duration::from_millis(50);
/// How long after its first look the watchdog looks again for marked groups (a task caught
/// in its exec shows no environment for an instant).
const EXEC_SETTLE: Duration = Duration::from_millis(100);

/// A running watchdog; see the [module docs](self).
pub struct Watchdog {
    pipe: Mutex<Option<ChildStdin>>,
    child: Child,
    token: String,
    /// Groups watched and not yet released.
    watched: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog").field("pid", &self.child.id()).finish()
    }
}

impl Watchdog {
    /// Starts `command`, which must run [`serve`] on its standard input (the muster binary
    /// does this for a hidden subcommand).
    /// The helper is told its token in [`MARKER_VAR`].
    pub fn start(mut command: Command) -> io::Result<Watchdog> {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let token = format!("{}-{}", std::process::id(), since_epoch.as_nanos());
        command.env(MARKER_VAR, &token);
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::null()).process_group(0).spawn()?;
        let pipe = child.stdin.take();
        Ok(Watchdog { pipe: Mutex::new(pipe), child, token, watched: Default::default() })
    }

    /// The environment variable and value to give every watched process (see [`MARKER_VAR`]).
    pub fn marker(&self) -> (&'static str, &str) {
        (MARKER_VAR, &self.token)
    }

    fn send(&self, line: &str) {
        let mut pipe = self.pipe.lock().unwrap_or_else(PoisonError::into_inner);
        // If the helper is gone we cannot do better than the process groups alone.
        if let Some(stdin) = pipe.as_mut() {
            if stdin.write_all(line.as_bytes()).is_err() {
                pipe.take();
            }
        }
    }

    /// Adds a process group to kill if muster dies.
    pub fn watch(&self, pgid: u32) {
        self.watched.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.send(&format!("+{pgid}\n"));
    }

    /// Removes a process group (it has been reaped).
    pub fn unwatch(&self, pgid: u32) {
        self.send(&format!("-{pgid}\n"));
        self.watched.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.pipe.lock().unwrap_or_else(PoisonError::into_inner).take();
        // With nothing left to guard, the helper would only finish its nap (up to 50 ms on
        // every exit of muster): end it now. Otherwise let it stop what is still listed.
        if self.watched.load(std::sync::atomic::Ordering::Acquire) == 0 {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The helper's side: reads `+PGID`/`-PGID` lines until end-of-file, then stops every group
/// still listed, and every group whose processes carry `token` in [`MARKER_VAR`]. Returns the
/// groups it had to stop. Reads in batches, napping in between, so it costs muster no context
/// switch per task.
pub fn serve(input: impl Read, token: Option<&str>) -> Vec<u32> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        // Catching into an unused flag means ignoring; failure only loses that protection.
        let _ = signal_hook::flag::register(
            signal,
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
    }
    let mut groups = HashSet::new();
    let mut input = input;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        let complete = pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in pending[..complete].split(|&b| b == b'\n') {
            let Some(pgid) =
                std::str::from_utf8(line.get(1..).unwrap_or_default()).ok().and_then(|n| n.parse().ok())
            else {
                continue;
            };
            match line.first() {
                Some(b'+') => groups.insert(pgid),
                Some(b'-') => groups.remove(&pgid),
                _ => false,
            };
        }
        pending.drain(..complete);
        // Reading in batches: waking per message would cost muster a context switch per task.
        // The pipe buffers what arrives meanwhile; end-of-file is noticed within one nap.
        std::thread::sleep(NAP);
    }
    if let Some(token) = token {
        // Our own group carries the mark too (we were started with it): leave it out.
        let own = rustix::process::getpgrp().as_raw_nonzero().get() as u32;
        // A task spawned an instant before muster died may still be in its exec, when its
        // environment reads empty: look twice, a moment apart.
        for look in 0..2 {
            if look > 0 {
                std::thread::sleep(EXEC_SETTLE);
            }
            let marked = super::groups_marked(MARKER_VAR, token).unwrap_or_default();
            groups.extend(marked.into_iter().filter(|&g| g != own));
        }
    }
    let mut orphans: Vec<u32> = groups.into_iter().collect();
    orphans.sort_unstable();
    stop_groups(&orphans, Duration::from_secs(2));
    orphans
}

/// SIGTERM to each group, up to `grace` for them to go, then SIGKILL to what is left.
pub fn stop_groups(pgids: &[u32], grace: Duration) {
    let signal_all = |signal| {
        for &pgid in pgids {
            if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process_group(pid, signal);
            }
        }
    };
    signal_all(Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        let alive = pgids.iter().any(|&g| super::live_group_members(g).map_or(true, |m| !m.is_empty()));
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    signal_all(Signal::KILL);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::GroupChild;

    #[test]
    fn at_end_of_input_it_stops_the_groups_still_listed() {
        let watched = GroupChild::spawn(Command::new("sleep").arg("1000")).expect("sleep");
        let released = GroupChild::spawn(Command::new("sleep").arg("1000")).expect("sleep");
        let (a, b) = (watched.id(), released.id());
        let script = format!("+{a}\n+{b}\n-{b}\n");
        let orphans = serve(script.as_bytes(), None);
        assert_eq!(orphans, vec![a]);
        assert!(super::super::live_group_members(a).expect("/proc").is_empty());
        assert!(
            !super::super::live_group_members(b).expect("/proc").is_empty(),
            "unlisted groups are left alone"
        );
        drop((watched, released));
    }

    #[test]
    fn it_also_stops_marked_groups_that_were_never_listed() {
        let token = format!("test-{}", std::process::id());
        let mut unlisted = Command::new("sleep");
        unlisted.arg("1000").env(MARKER_VAR, &token);
        let unlisted = GroupChild::spawn(&mut unlisted).expect("sleep");
        let pgid = unlisted.id();
        let orphans = serve(&b""[..], Some(&token));
        assert_eq!(orphans, vec![pgid]);
        assert!(super::super::live_group_members(pgid).expect("/proc").is_empty());
        drop(unlisted);
    }
}
