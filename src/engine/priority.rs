//! muster's own threads step aside for the work they serve.
//!
//! A thread that wakes for a moment of bookkeeping — a reply reader woken by each write of a
//! persistent worker, the settle stage, the feeder — would by default take the CPU from the
//! worker that just woke it (the scheduler favours the thread that slept), so on a machine
//! with as many busy workers as CPUs every reply cost the worker a preemption: 40–100k context
//! switches per million tasks where the C pipe floor has 7k. Under `SCHED_BATCH` a waking
//! thread does not preempt the one running; it runs when a CPU is free or at the next tick,
//! with its normal share of the CPU. Measured on 2 CPUs through 2 C workers, 1M tasks: the
//! context switches fell from ~47k to ~17k and muster + workers' CPU by a sixth.
//!
//! Only threads that never start a process step aside: a child inherits its parent thread's
//! policy (`SCHED_RESET_ON_FORK` resets only real-time ones), and the tasks and workers must
//! run as the user started muster. The dispatchers, which start them, keep the default.

/// A thread that stepped aside; dropping it gives the thread its default policy back (the
/// feeder runs on the caller's thread).
#[must_use = "the thread steps back in when this is dropped"]
pub(crate) struct SteppedAside {
    changed: bool,
}

/// The calling thread steps aside, if it runs under the default policy (a thread the user put
/// under another is left as it is).
pub(crate) fn step_aside() -> SteppedAside {
    let changed = policy() == Some(libc::SCHED_OTHER) && set_policy(libc::SCHED_BATCH);
    SteppedAside { changed }
}

impl Drop for SteppedAside {
    fn drop(&mut self) {
        if self.changed {
            set_policy(libc::SCHED_OTHER);
        }
    }
}

/// The calling thread's scheduling policy.
#[allow(unsafe_code)]
pub(crate) fn policy() -> Option<libc::c_int> {
    // SAFETY: no pointer is passed; pid 0 is the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) };
    (policy >= 0).then_some(policy)
}

/// Puts the calling thread under `policy` (a non-real-time one: priority 0); true if it took.
#[allow(unsafe_code)]
fn set_policy(policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the calling thread.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

/// Whether this system lets a thread step aside (a sandbox may refuse the call); tested on a
/// thread of its own.
#[cfg(test)]
pub(crate) fn allowed() -> bool {
    let allowed = std::thread::spawn(|| set_policy(libc::SCHED_BATCH)).join().unwrap_or(false);
    if !allowed {
        eprintln!("skipped: this system refuses sched_setscheduler(SCHED_BATCH)");
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_steps_aside_and_back() {
        if !allowed() {
            return;
        }
        std::thread::spawn(|| {
            assert_eq!(policy(), Some(libc::SCHED_OTHER), "a new thread starts under the default");
            let aside = step_aside();
            assert_eq!(policy(), Some(libc::SCHED_BATCH));
            drop(aside);
            assert_eq!(policy(), Some(libc::SCHED_OTHER), "the default is given back");
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn a_thread_under_another_policy_is_left_as_it_is() {
        std::thread::spawn(|| {
            let param = libc::sched_param { sched_priority: 0 };
            #[allow(unsafe_code)]
            // SAFETY: as in `set_policy`.
            let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            assert_eq!(set, 0, "SCHED_IDLE needs no privilege");
            drop(step_aside());
            assert_eq!(policy(), Some(libc::SCHED_IDLE));
        })
        .join()
        .expect("thread");
    }
}
