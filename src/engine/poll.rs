//! The wake-up side of the engine's event loops: what every loop (process executor, persistent
//! workers' feeding loops, the remote executor) waits on besides its own descriptors, and how
//! long it may wait.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::time::Duration;

/// The longest a loop goes without checking time limits and the shutdown token.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// Wakes a loop that waits on its attempts while it could take more tasks. The feeder calls
/// [`wake`](Self::wake) after each task it queues; it costs a write only when the loop said
/// it was hungry. Executors wait on [`fd`](Self::fd) along with their own events.
pub(crate) struct Waker {
    hungry: AtomicBool,
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        let flags = rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK;
        Ok(Waker { hungry: AtomicBool::new(false), fd: rustix::event::eventfd(0, flags)? })
    }

    /// Wakes the loop if it waits for tasks.
    pub(crate) fn wake(&self) {
        // Pairs with the fence in the loop: either it sees the task, or we see it hungry.
        fence(Ordering::SeqCst);
        if self.hungry.swap(false, Ordering::SeqCst) {
            self.ring();
        }
    }

    /// Says the loop is about to wait for tasks; look at the queue once more after this (a
    /// task queued meanwhile either is seen then, or wakes the loop).
    pub(crate) fn become_hungry(&self) {
        self.hungry.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// The loop no longer waits for tasks.
    pub(crate) fn sated(&self) {
        self.hungry.store(false, Ordering::SeqCst);
    }

    /// Wakes the loop whatever it waits for (the queue closed).
    pub(crate) fn ring(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Readable while a wake is pending.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Clears a pending wake.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }
}

/// Rings a loop's [`Waker`] only while the loop listens: a reporter (a persistent worker's
/// reply reader) rings after each report, but a loop busy with earlier reports is not woken
/// again for each one (an eventfd write and an epoll wake-up per batch of replies).
pub(crate) struct Bell {
    listening: AtomicBool,
    waker: std::sync::Arc<Waker>,
}

impl Bell {
    pub(crate) fn new(waker: std::sync::Arc<Waker>) -> Bell {
        Bell { listening: AtomicBool::new(false), waker }
    }

    /// Rings, if the loop listens. Call after making the report visible.
    pub(crate) fn ring(&self) {
        // Pairs with the fence in `listen`: either the loop sees the report, or we see it
        // listening.
        fence(Ordering::SeqCst);
        if self.listening.swap(false, Ordering::SeqCst) {
            self.waker.ring();
        }
    }

    /// The loop is about to wait: look for reports once more after this (one made meanwhile
    /// is either seen then, or rings).
    pub(crate) fn listen(&self) {
        self.listening.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// The loop is busy again.
    pub(crate) fn deaf(&self) {
        self.listening.store(false, Ordering::SeqCst);
    }
}
