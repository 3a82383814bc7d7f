//! Child processes that can always be stopped: process groups, TERM → grace → KILL, reaping.
//!
//! Every process muster starts is the leader of its own process group, so a signal reaches the
//! whole tree it spawned (a shell and its pipeline, a tool and its helpers). Stopping is the
//! escalation DESIGN.md names: SIGTERM to the group, a grace period, SIGKILL to the group, then
//! the leader is reaped. The group is killed once more just before reaping even after a clean
//! exit, so background grandchildren do not outlive their task.
//!
//! - [`Launcher`]: the one way muster starts a child (new group, watchdog, escalation).
//! - [`GroupChild`]: one child in its own group, with waits that have deadlines.
//! - [`spawner`]: a thread with a small descriptor table of its own that starts children when
//!   muster's own table is large (`-j 10000`).
//! - [`template`]: replacement strings substituted into argv elements (or quoted for `sh`).
//! - [`watchdog`]: a helper process that stops the task groups if muster itself is killed.
//! - [`live_group_members`]: what of a group is still running, read from `/proc`.
//!
//! Starting keeps `std::process::Command`'s fast posix_spawn path: the group is set with
//! `Command::process_group`, not a `pre_exec` closure.

mod group;
mod launch;
mod scan;
pub(crate) mod spawner;
pub mod template;
pub mod watchdog;

pub use group::{GroupChild, Stopped};
pub use launch::{Launched, Launcher};
pub use scan::{groups_marked, live_group_members};
