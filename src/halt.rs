//! `--halt`: stop early once enough tasks failed — every mode applies it the same way.
//!
//! The [`HaltGate`] is consulted before each task starts and told as soon as each task ends,
//! by the thread that settles it, so no task starts after the threshold is reached.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::shutdown::Shutdown;

/// When `--halt` acts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HaltWhen {
    /// Stop running tasks at once.
    Now,
    /// Start no more tasks; let running ones finish.
    Soon,
}

/// How many failures trigger `--halt`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FailThreshold {
    /// This many failed tasks.
    Count(u64),
    /// This percentage of the tasks (of the known total, or of those finished so far).
    Percent(f64),
}

/// `--halt now|soon,fail=N|P%`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Halt {
    /// When to act.
    pub when: HaltWhen,
    /// On how many failures.
    pub threshold: FailThreshold,
}

/// Applies `--halt` as tasks finish. The slots consult it before starting each task, and
/// record into it as soon as a task ends, so no task starts after the threshold is reached.
pub struct HaltGate {
    halt: Option<Halt>,
    known_total: Option<u64>,
    finished: AtomicU64,
    failures: AtomicU64,
    /// `--halt soon` reached: start no more (without the drain's grace clock).
    soon: AtomicBool,
    reached: AtomicBool,
}

impl HaltGate {
    /// A gate for `halt` (`None`: never halts); `known_total` is the denominator of a
    /// percentage when the number of tasks is known.
    pub fn new(halt: Option<Halt>, known_total: Option<u64>) -> HaltGate {
        HaltGate {
            halt,
            known_total,
            finished: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            soon: AtomicBool::new(false),
            reached: AtomicBool::new(false),
        }
    }

    /// True once no new task may start.
    pub fn closed(&self) -> bool {
        self.soon.load(Ordering::SeqCst)
    }

    /// True once the threshold was reached.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::SeqCst)
    }

    /// Counts a finished task that succeeded (`done`) or failed, and halts if due.
    pub fn record_finished(&self, done: bool, shutdown: &Shutdown) {
        let Some(halt) = self.halt else { return };
        let finished = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let failures = if done {
            self.failures.load(Ordering::SeqCst)
        } else {
            self.failures.fetch_add(1, Ordering::SeqCst) + 1
        };
        let reached = match halt.threshold {
            FailThreshold::Count(n) => failures >= n,
            FailThreshold::Percent(p) => {
                // A percentage needs a denominator: the total when known, else what finished.
                let base = self.known_total.unwrap_or(finished).max(1);
                failures > 0 && failures as f64 * 100.0 / base as f64 >= p
            }
        };
        if reached && !self.reached.swap(true, Ordering::SeqCst) {
            match halt.when {
                HaltWhen::Now => {
                    self.soon.store(true, Ordering::SeqCst);
                    shutdown.stop_now();
                }
                HaltWhen::Soon => self.soon.store(true, Ordering::SeqCst),
            }
        }
    }
}
