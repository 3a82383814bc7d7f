//! The queue from the feeder to the loops: bounded, and when it is full the feeder sleeps until
//! the loops have taken half of it.
//!
//! A plain bounded channel wakes a blocked sender as soon as one place frees: once the loops
//! run behind the input (always, with tiny tasks), the feeder woke, queued one task and slept
//! again for every task taken — a wake-up and a spin of yields per task (27,000 `sched_yield`
//! calls per 100,000 tasks through two C workers). Here it sleeps until the queue is half
//! empty, then fills it again in one go.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Thread;

use crossbeam_channel as cb;

use super::poll::TICK;

/// The feeder's side.
pub(crate) struct Feeder<T> {
    tx: cb::Sender<T>,
    gate: Arc<Gate>,
}

/// The loops' side.
pub(crate) struct Tasks<T> {
    rx: cb::Receiver<T>,
    gate: Arc<Gate>,
}

/// How the loops wake a feeder waiting for room.
struct Gate {
    waiting: AtomicBool,
    feeder: Thread,
    /// The feeder is woken once the queue holds no more than this.
    low: usize,
}

/// A queue of `capacity` places, fed from the calling thread.
pub(crate) fn queue<T>(capacity: usize) -> (Feeder<T>, Tasks<T>) {
    let capacity = capacity.max(1);
    let (tx, rx) = cb::bounded(capacity);
    let gate =
        Arc::new(Gate { waiting: AtomicBool::new(false), feeder: std::thread::current(), low: capacity / 2 });
    (Feeder { tx, gate: Arc::clone(&gate) }, Tasks { rx, gate })
}

impl<T> Feeder<T> {
    /// Queues `item`, waiting while the queue is full; the item back when no loop is left.
    /// Must be called from the thread that made the queue (the one the loops wake).
    pub(crate) fn send(&self, mut item: T) -> Result<(), T> {
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(cb::TrySendError::Disconnected(back)) => return Err(back),
                Err(cb::TrySendError::Full(back)) => item = back,
            }
            self.gate.waiting.store(true, Ordering::SeqCst);
            // Pairs with the fence in `taken`: either a loop sees us waiting, or we see the
            // room it made.
            fence(Ordering::SeqCst);
            if self.tx.len() > self.gate.low {
                // The tick only bounds a wake-up that never comes (no loop takes any more).
                std::thread::park_timeout(TICK);
            }
            self.gate.waiting.store(false, Ordering::SeqCst);
        }
    }
}

impl<T> Tasks<T> {
    pub(crate) fn try_recv(&self) -> Result<T, cb::TryRecvError> {
        let item = self.rx.try_recv()?;
        self.taken();
        Ok(item)
    }

    pub(crate) fn recv(&self) -> Result<T, cb::RecvError> {
        let item = self.rx.recv()?;
        self.taken();
        Ok(item)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Wakes the feeder if it waits and the queue is down to half.
    fn taken(&self) {
        fence(Ordering::SeqCst);
        if self.gate.waiting.load(Ordering::SeqCst)
            && self.rx.len() <= self.gate.low
            && self.gate.waiting.swap(false, Ordering::SeqCst)
        {
            self.gate.feeder.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_full_queue_holds_the_feeder_until_half_is_taken_and_loses_nothing() {
        let (feeder, tasks) = queue::<u32>(8);
        let taker = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(item) = tasks.recv() {
                got.push(item);
                if got.len() % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            got
        });
        let started = Instant::now();
        for item in 0..10_000 {
            assert!(feeder.send(item).is_ok());
        }
        drop(feeder);
        let got = taker.join().expect("taker");
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());
        // A lost wake-up costs a tick each time; ten thousand items through eight places
        // would take minutes of them.
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn the_item_comes_back_when_no_loop_is_left() {
        let (feeder, tasks) = queue::<u32>(1);
        assert!(feeder.send(1).is_ok());
        drop(tasks);
        assert_eq!(feeder.send(2), Err(2));
    }

    #[test]
    fn a_feeder_waiting_on_a_full_queue_sees_the_loops_leave() {
        let (feeder, tasks) = queue::<u32>(1);
        assert!(feeder.send(1).is_ok());
        let leaver = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(tasks);
        });
        assert_eq!(feeder.send(2), Err(2));
        leaver.join().expect("leaver");
    }
}
