//! The queue from the feeder to the loops: bounded, one task added at a time, as many taken
//! at once as a loop has room for; when it is full the feeder sleeps until the loops have
//! taken half of it.
//!
//! It was a bounded channel. A blocked sender woke as soon as one place freed: once the loops
//! ran behind the input (always, with tiny tasks), the feeder woke, queued one task and slept
//! again for every task taken — 27,000 `sched_yield` calls per 100,000 tasks through two C
//! workers — so the feeder learnt to sleep until half the queue was taken. Then each task still
//! cost a read-modify-write on the channel's head, which the loops share, a fence on each side
//! and a look at every loop's hunger: with a million tiny tasks a second, those lines moved
//! between the CPUs per task. Here a loop takes a turn's tasks under one lock, and the feeder
//! looks for hungry loops only when it makes the queue non-empty (a loop that turns hungry
//! later sees what is queued before it sleeps).

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;

use super::poll::{wake_hungry, Waker, TICK};

/// The feeder's side; dropping it closes the queue (the loops end once they have taken all).
pub(crate) struct Feeder<T> {
    queue: Arc<Queue<T>>,
    /// The loops' wakers: rung when a task comes for a loop that waits for one.
    wakers: Vec<Arc<Waker>>,
}

/// The loops' side, shared by them; dropped, the feeder gets its tasks back.
pub(crate) struct Tasks<T> {
    queue: Arc<Queue<T>>,
}

struct Queue<T> {
    state: Mutex<State<T>>,
    /// How many are queued, for looks without the lock (a hungry loop's, the feeder's gate).
    len: AtomicUsize,
    /// The feeder sleeps for room.
    waiting: AtomicBool,
    feeder: Thread,
    capacity: usize,
    /// The feeder is woken once the queue holds no more than this.
    low: usize,
}

struct State<T> {
    items: VecDeque<T>,
    /// The feeder is done: what is queued is all there will be.
    closed: bool,
    /// The loops are gone: nothing queued will be taken.
    abandoned: bool,
}

/// What a loop's take found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// This many, now at the end of the loop's list.
    Some(usize),
    /// Nothing yet.
    Empty,
    /// Nothing, and nothing will come: the feeder is done.
    Ended,
}

/// A queue of `capacity` places, fed from the calling thread, for loops woken by `wakers`.
pub(crate) fn queue<T>(capacity: usize, wakers: Vec<Arc<Waker>>) -> (Feeder<T>, Tasks<T>) {
    let capacity = capacity.max(1);
    let queue = Arc::new(Queue {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity),
            closed: false,
            abandoned: false,
        }),
        len: AtomicUsize::new(0),
        waiting: AtomicBool::new(false),
        feeder: std::thread::current(),
        capacity,
        low: capacity / 2,
    });
    (Feeder { queue: Arc::clone(&queue), wakers }, Tasks { queue })
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Feeder<T> {
    /// Queues `item`, waiting while the queue is full; the item back when no loop is left.
    /// Must be called from the thread that made the queue (the one the loops wake).
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let queue = &*self.queue;
        loop {
            let mut state = queue.lock();
            if state.abandoned {
                return Err(item);
            }
            if state.items.len() < queue.capacity {
                let was_empty = state.items.is_empty();
                state.items.push_back(item);
                queue.len.store(state.items.len(), Ordering::SeqCst);
                drop(state);
                if was_empty {
                    // The fence in here pairs with a loop's `become_hungry`: it sees this
                    // task, or we see it hungry.
                    wake_hungry(&self.wakers);
                }
                return Ok(());
            }
            drop(state);
            queue.waiting.store(true, Ordering::SeqCst);
            // Pairs with the fence in `take`: either a loop sees us waiting, or we see the
            // room it made.
            fence(Ordering::SeqCst);
            if queue.len.load(Ordering::SeqCst) > queue.low {
                // The tick only bounds a wake-up that never comes (no loop takes any more).
                std::thread::park_timeout(TICK);
            }
            queue.waiting.store(false, Ordering::SeqCst);
        }
    }
}

impl<T> Drop for Feeder<T> {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        // Every loop looks again, and finds the queue's end once it is empty.
        self.wakers.iter().for_each(|waker| waker.ring());
    }
}

impl<T> Tasks<T> {
    /// Takes up to `most` (at least one) of what is queued, in order, onto the end of `into`.
    pub(crate) fn take(&self, most: usize, into: &mut VecDeque<T>) -> Taken {
        let queue = &*self.queue;
        let mut state = queue.lock();
        let count = most.max(1).min(state.items.len());
        if count == 0 {
            return if state.closed { Taken::Ended } else { Taken::Empty };
        }
        into.extend(state.items.drain(..count));
        let left = state.items.len();
        queue.len.store(left, Ordering::SeqCst);
        drop(state);
        if left <= queue.low {
            // Wakes the feeder if it waits for room (see `send`).
            fence(Ordering::SeqCst);
            if queue.waiting.load(Ordering::SeqCst) && queue.waiting.swap(false, Ordering::SeqCst) {
                queue.feeder.unpark();
            }
        }
        Taken::Some(count)
    }

    /// Nothing is queued now (a hungry loop's last look before it waits).
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.len.load(Ordering::SeqCst) == 0
    }

    /// Nothing is queued now and more may come: a loop with nothing running, about to wait
    /// for tasks (after `become_hungry`), sleeps only then.
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.len.load(Ordering::SeqCst) == 0 && !self.queue.lock().closed
    }
}

impl<T> Drop for Tasks<T> {
    fn drop(&mut self) {
        self.queue.lock().abandoned = true;
        self.queue.feeder.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn waker() -> Arc<Waker> {
        Arc::new(Waker::new().expect("eventfd"))
    }

    #[test]
    fn a_full_queue_holds_the_feeder_until_half_is_taken_and_loses_nothing() {
        let (feeder, tasks) = queue::<u32>(8, vec![waker()]);
        let taker = std::thread::spawn(move || {
            let mut got = VecDeque::new();
            loop {
                match tasks.take(3, &mut got) {
                    Taken::Some(count) => assert!((1..=3).contains(&count), "took {count}"),
                    Taken::Empty => std::thread::yield_now(),
                    Taken::Ended => break,
                }
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
    fn a_loop_takes_what_it_asks_for_in_order_and_then_hears_the_end() {
        let (feeder, tasks) = queue::<u32>(16, vec![waker()]);
        for item in 0..5 {
            assert!(feeder.send(item).is_ok());
        }
        let mut got = VecDeque::new();
        assert_eq!(tasks.take(2, &mut got), Taken::Some(2));
        assert_eq!(tasks.take(0, &mut got), Taken::Some(1), "asking for none takes one");
        assert!(!tasks.is_idle());
        assert_eq!(tasks.take(10, &mut got), Taken::Some(2));
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert!(tasks.is_idle());
        assert_eq!(tasks.take(1, &mut got), Taken::Empty);
        drop(feeder);
        assert!(!tasks.is_idle(), "a closed queue is no reason to sleep");
        assert_eq!(tasks.take(1, &mut got), Taken::Ended);
    }

    #[test]
    fn a_hungry_loop_is_rung_when_the_queue_gets_a_task() {
        let hungry = waker();
        let (feeder, tasks) = queue::<u32>(4, vec![Arc::clone(&hungry)]);
        hungry.become_hungry();
        assert!(tasks.is_idle());
        assert!(feeder.send(1).is_ok());
        let fd = hungry.fd();
        let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        // A deadline, so a lost ring fails the test instead of hanging it.
        let deadline = rustix::event::Timespec { tv_sec: 10, tv_nsec: 0 };
        let ready = rustix::event::poll(&mut fds, Some(&deadline)).expect("poll");
        assert_eq!(ready, 1, "the waker was rung");
    }

    #[test]
    fn the_item_comes_back_when_no_loop_is_left() {
        let (feeder, tasks) = queue::<u32>(1, vec![waker()]);
        assert!(feeder.send(1).is_ok());
        drop(tasks);
        assert_eq!(feeder.send(2), Err(2));
    }

    #[test]
    fn a_feeder_waiting_on_a_full_queue_sees_the_loops_leave() {
        let (feeder, tasks) = queue::<u32>(1, vec![waker()]);
        assert!(feeder.send(1).is_ok());
        let leaver = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(tasks);
        });
        assert_eq!(feeder.send(2), Err(2));
        leaver.join().expect("leaver");
    }
}
