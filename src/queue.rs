//! Bounded, closable multi-producer multi-consumer queues over crossbeam-channel.
//!
//! [`bounded`] gives a [`Sender`] and a [`Receiver`]; both can be cloned and shared across
//! threads. The capacity is the backpressure: a sender blocks while the queue is full, so a fast
//! producer never reads far ahead of its consumers and memory stays flat.
//!
//! Closing is ownership: the queue is closed for receivers once every `Sender` is dropped (or
//! consumed by [`Sender::close`]); they then drain what is left and get `None` — the seed's
//! `'quit'` message, without a magic value. Likewise, once every `Receiver` is gone, senders get
//! their item back in [`SendError::Closed`]. Every error that fails to deliver an item hands
//! that item back, so shutting down never loses one silently.
//!
//! The `_until` variants also give up when a [`Shutdown`] token trips, waking a thread that is
//! blocked on a full or empty queue. They cost nothing extra while the queue is neither full nor
//! empty: the token is only selected on when the operation would otherwise block.
//!
//! This is a thin layer: the plain operations are crossbeam-channel's, whose lock-free array
//! queue spins briefly before parking (a cross-CPU wake-up costs ~50 µs on small VMs).

use std::fmt;
use std::time::Duration;

use crossbeam_channel as cb;

use crate::shutdown::Shutdown;

/// Creates a queue that holds at most `capacity` items. A capacity of 0 makes every send
/// wait for a receiver (a rendezvous).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = cb::bounded(capacity);
    (Sender { inner: tx }, Receiver { inner: rx })
}

/// Why an item could not be sent; the item is handed back.
#[derive(PartialEq, Eq, thiserror::Error)]
pub enum SendError<T> {
    /// Every receiver is gone; nobody will ever take the item.
    #[error("queue closed: every receiver is gone")]
    Closed(T),
    /// The shutdown token tripped before there was room for the item.
    #[error("shutdown before the item could be queued")]
    Shutdown(T),
}

impl<T> SendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(item) | SendError::Shutdown(item) => item,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::Shutdown(_) => f.write_str("Shutdown(..)"),
        }
    }
}

/// Why [`Sender::try_send`] did not queue an item; the item is handed back.
#[derive(PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<T> {
    /// The queue is full right now.
    #[error("queue full")]
    Full(T),
    /// Every receiver is gone.
    #[error("queue closed: every receiver is gone")]
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(item) | TrySendError::Closed(item) => item,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Why no item was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// Every sender is gone and the queue is empty: no item will ever come.
    #[error("queue closed and empty")]
    Closed,
    /// The queue is empty right now (from `try_recv`), or the wait timed out.
    #[error("queue empty")]
    Empty,
    /// The shutdown token tripped while waiting.
    #[error("shutdown while waiting for an item")]
    Shutdown,
}

/// The sending half of a queue. Clone it for more producers.
pub struct Sender<T> {
    inner: cb::Sender<T>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender { inner: self.inner.clone() }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("len", &self.len()).finish()
    }
}

impl<T> Sender<T> {
    /// Queues `item`, blocking while the queue is full.
    ///
    /// Fails with [`SendError::Closed`], handing the item back, when every receiver is gone,
    /// including while blocked.
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.inner.send(item).map_err(|cb::SendError(item)| SendError::Closed(item))
    }

    /// Queues `item` if there is room right now.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.inner.try_send(item).map_err(|err| match err {
            cb::TrySendError::Full(item) => TrySendError::Full(item),
            cb::TrySendError::Disconnected(item) => TrySendError::Closed(item),
        })
    }

    /// Like [`send`](Self::send), but gives the item back in [`SendError::Shutdown`] if
    /// `shutdown` has tripped or trips while this call waits for room.
    pub fn send_until(&self, item: T, shutdown: &Shutdown) -> Result<(), SendError<T>> {
        if shutdown.is_tripped() {
            return Err(SendError::Shutdown(item));
        }
        let item = match self.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(item)) => return Err(SendError::Closed(item)),
            Err(TrySendError::Full(item)) => item,
        };
        let mut select = cb::Select::new();
        let send_index = select.send(&self.inner);
        select.recv(shutdown.tripped());
        let operation = select.select();
        if operation.index() == send_index {
            operation.send(&self.inner, item).map_err(|cb::SendError(item)| SendError::Closed(item))
        } else {
            // Complete the selected receive; it reports disconnection (the token tripped).
            let _ = operation.recv(shutdown.tripped());
            Err(SendError::Shutdown(item))
        }
    }

    /// Closes this handle. The queue closes for receivers once every sender is closed or
    /// dropped; items already queued are still delivered.
    pub fn close(self) {}

    /// Number of items queued right now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when no item is queued right now.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The most items the queue holds.
    pub fn capacity(&self) -> usize {
        self.inner.capacity().unwrap_or(usize::MAX)
    }
}

/// The receiving half of a queue. Clone it for more consumers; each item goes to exactly one.
pub struct Receiver<T> {
    inner: cb::Receiver<T>,
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver { inner: self.inner.clone() }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("len", &self.len()).finish()
    }
}

impl<T> Receiver<T> {
    /// Takes the next item, blocking while the queue is empty. `None` means the queue is
    /// closed and drained: no item will ever come (the seed's `'quit'`).
    pub fn recv(&self) -> Option<T> {
        self.inner.recv().ok()
    }

    /// Takes an item if one is queued right now.
    pub fn try_recv(&self) -> Result<T, RecvError> {
        self.inner.try_recv().map_err(|err| match err {
            cb::TryRecvError::Empty => RecvError::Empty,
            cb::TryRecvError::Disconnected => RecvError::Closed,
        })
    }

    /// Takes the next item, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvError> {
        self.inner.recv_timeout(timeout).map_err(|err| match err {
            cb::RecvTimeoutError::Timeout => RecvError::Empty,
            cb::RecvTimeoutError::Disconnected => RecvError::Closed,
        })
    }

    /// Like [`recv`](Self::recv), but returns [`RecvError::Shutdown`] if `shutdown` trips while
    /// this call waits. Items already queued are still handed out after a trip, so a consumer
    /// that drains can call this until it gets an error.
    pub fn recv_until(&self, shutdown: &Shutdown) -> Result<T, RecvError> {
        match self.try_recv() {
            Err(RecvError::Empty) => {}
            other => return other,
        }
        if shutdown.is_tripped() {
            return Err(RecvError::Shutdown);
        }
        cb::select! {
            recv(self.inner) -> item => item.map_err(|_| RecvError::Closed),
            recv(shutdown.tripped()) -> _ => self.try_recv().map_err(|err| match err {
                RecvError::Empty => RecvError::Shutdown,
                other => other,
            }),
        }
    }

    /// An iterator over the items queued right now; it never blocks.
    pub fn drain(&self) -> impl Iterator<Item = T> + '_ {
        self.inner.try_iter()
    }

    /// A blocking iterator that ends when the queue is closed and drained.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.inner.iter()
    }

    /// Number of items queued right now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when no item is queued right now.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The underlying crossbeam receiver, for use in `crossbeam_channel::select!`.
    pub fn as_crossbeam(&self) -> &cb::Receiver<T> {
        &self.inner
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = cb::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.inner.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn smoke() {
        let (tx, rx) = bounded(2);
        tx.send(1).expect("room");
        tx.send(2).expect("room");
        assert_eq!((rx.recv(), rx.recv()), (Some(1), Some(2)));
    }

    #[test]
    fn capacity_gives_backpressure() {
        let (tx, rx) = bounded(2);
        tx.try_send(1).expect("room");
        tx.try_send(2).expect("room");
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(tx.capacity(), 2);
        assert_eq!(rx.recv(), Some(1));
        tx.try_send(3).expect("room again");
    }

    #[test]
    fn closing_delivers_the_rest_then_none() {
        let (tx, rx) = bounded(4);
        tx.send("a").expect("room");
        tx.send("b").expect("room");
        tx.close();
        assert_eq!(rx.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(rx.recv(), None);
        assert_eq!(rx.try_recv(), Err(RecvError::Closed));
    }

    #[test]
    fn closing_wakes_every_blocked_receiver() {
        let (tx, rx) = bounded::<u8>(1);
        let receivers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || rx.recv())
            })
            .collect();
        drop(tx);
        for receiver in receivers {
            assert_eq!(receiver.join().expect("receiver returns"), None);
        }
    }

    #[test]
    fn dropping_receivers_wakes_blocked_sender_with_its_item() {
        let (tx, rx) = bounded(1);
        tx.send(1).expect("room");
        let sender = thread::spawn(move || tx.send(2));
        // The sender is blocked (queue full) or about to be; dropping rx must free it either way.
        drop(rx);
        assert_eq!(sender.join().expect("sender returns"), Err(SendError::Closed(2)));
    }

    #[test]
    fn shutdown_wakes_blocked_sender_with_its_item() {
        let (tx, _rx) = bounded(1);
        tx.send(1).expect("room");
        let token = Shutdown::new();
        let watcher = token.clone();
        let sender = thread::spawn(move || tx.send_until(2, &watcher));
        token.trip();
        assert_eq!(sender.join().expect("sender returns"), Err(SendError::Shutdown(2)));
    }

    #[test]
    fn shutdown_wakes_blocked_receiver() {
        let (_tx, rx) = bounded::<u8>(1);
        let token = Shutdown::new();
        let watcher = token.clone();
        let receiver = thread::spawn(move || rx.recv_until(&watcher));
        token.trip();
        assert_eq!(receiver.join().expect("receiver returns"), Err(RecvError::Shutdown));
    }

    #[test]
    fn recv_until_still_drains_after_shutdown() {
        let (tx, rx) = bounded(2);
        tx.send(1).expect("room");
        let token = Shutdown::new();
        token.trip();
        assert_eq!(rx.recv_until(&token), Ok(1));
        assert_eq!(rx.recv_until(&token), Err(RecvError::Shutdown));
    }

    #[test]
    fn mpmc_delivers_each_item_exactly_once() {
        let (tx, rx) = bounded(3);
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for i in 0..1000 {
                        tx.send(p * 1000 + i).expect("receivers alive");
                    }
                })
            })
            .collect();
        drop(tx);
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || rx.iter().collect::<Vec<u64>>())
            })
            .collect();
        for producer in producers {
            producer.join().expect("producer returns");
        }
        let mut all: Vec<u64> =
            consumers.into_iter().flat_map(|c| c.join().expect("consumer returns")).collect();
        all.sort_unstable();
        assert_eq!(all, (0..3000).collect::<Vec<_>>());
    }

    #[test]
    fn rendezvous_with_capacity_zero() {
        let (tx, rx) = bounded(0);
        assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
        let receiver = thread::spawn(move || rx.recv());
        tx.send(5).expect("receiver waits");
        assert_eq!(receiver.join().expect("receiver returns"), Some(5));
    }
}
