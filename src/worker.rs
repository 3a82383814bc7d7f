//! A single worker thread fed through a bounded queue: the seed's master/slave thread.
//!
//! The master creates a [`Worker`] with a closure that receives the worker's inbox, sends it
//! items with [`Worker::send`], and finally calls [`Worker::join`]. Closing the inbox is the
//! seed's `'quit'` message: the inbox's iterator ends once the master's sender is gone and the
//! queued items are consumed, the closure returns, and `join` hands back what it returned — or
//! the panic that ended it, as an error rather than a crash of the master.
//!
//! Dropping a `Worker` without joining it closes the inbox and waits for the thread, so a
//! worker never outlives its master silently.

use std::thread::JoinHandle;

use crate::queue::{self, Receiver, SendError, Sender};
use crate::task::panic_message;

/// A worker thread panicked; the panic's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("worker thread panicked: {0}")]
pub struct WorkerPanicked(pub String);

/// One thread consuming a bounded inbox. See the [module docs](self).
pub struct Worker<T, R> {
    inbox: Option<Sender<T>>,
    thread: Option<JoinHandle<R>>,
}

impl<T: Send + 'static, R: Send + 'static> Worker<T, R> {
    /// Starts a thread running `body` over a new inbox that holds at most `capacity` items.
    pub fn spawn<F>(capacity: usize, body: F) -> std::io::Result<Worker<T, R>>
    where
        F: FnOnce(Receiver<T>) -> R + Send + 'static,
    {
        Worker::spawn_named("muster-worker", capacity, body)
    }

    /// Like [`spawn`](Self::spawn), with a thread name for debuggers and panic messages.
    pub fn spawn_named<F>(name: &str, capacity: usize, body: F) -> std::io::Result<Worker<T, R>>
    where
        F: FnOnce(Receiver<T>) -> R + Send + 'static,
    {
        let (inbox, receiver) = queue::bounded(capacity);
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || body(receiver))?;
        Ok(Worker { inbox: Some(inbox), thread: Some(thread) })
    }
}

impl<T, R> Worker<T, R> {
    /// Sends `item` to the worker, blocking while its inbox is full. If the worker has already
    /// stopped reading (returned or panicked), the item comes back in [`SendError::Closed`].
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        match &self.inbox {
            Some(inbox) => inbox.send(item),
            None => Err(SendError::Closed(item)),
        }
    }

    /// Another handle on the inbox, for more producers. The inbox closes only when every
    /// handle is dropped, so `join` waits for these too.
    pub fn sender(&self) -> Option<Sender<T>> {
        self.inbox.clone()
    }

    /// Closes the inbox (the quit message), waits for the thread, and returns its result.
    pub fn join(mut self) -> Result<R, WorkerPanicked> {
        self.finish()
    }

    fn finish(&mut self) -> Result<R, WorkerPanicked> {
        self.inbox.take();
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|payload| WorkerPanicked(panic_message(payload.as_ref()))),
            None => Err(WorkerPanicked("worker already joined".into())),
        }
    }
}

impl<T, R> Drop for Worker<T, R> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_returns_what_the_worker_produced() {
        let worker = Worker::spawn(2, |inbox: Receiver<u32>| inbox.iter().sum::<u32>()).expect("spawn");
        for i in 1..=10 {
            worker.send(i).expect("worker reading");
        }
        assert_eq!(worker.join(), Ok(55));
    }

    #[test]
    fn closing_the_inbox_is_the_quit() {
        let worker = Worker::spawn(1, |inbox: Receiver<&str>| {
            let mut seen = Vec::new();
            while let Some(msg) = inbox.recv() {
                seen.push(msg);
            }
            seen.push("bye");
            seen
        })
        .expect("spawn");
        worker.send("a").expect("worker reading");
        assert_eq!(worker.join(), Ok(vec!["a", "bye"]));
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let worker =
            Worker::spawn(1, |_inbox: Receiver<()>| -> () { panic!("worker broke") }).expect("spawn");
        assert_eq!(worker.join(), Err(WorkerPanicked("worker broke".into())));
    }

    #[test]
    fn send_to_a_finished_worker_hands_the_item_back() {
        let worker = Worker::spawn(0, |_inbox: Receiver<u8>| ()).expect("spawn");
        // A rendezvous send waits for a reader; the body drops the inbox unread instead.
        assert_eq!(worker.send(7), Err(SendError::Closed(7)));
    }

    #[test]
    fn dropping_waits_for_the_worker() {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let worker = Worker::spawn(4, move |inbox: Receiver<u8>| {
            for _ in inbox.iter() {}
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        })
        .expect("spawn");
        worker.send(1).expect("worker reading");
        drop(worker);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
