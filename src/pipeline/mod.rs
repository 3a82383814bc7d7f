//! Pipelines: a source, then stages of worker threads joined by bounded queues, then a fold
//! or a sink — the seed's producer/consumer, made general and accountable.
//!
//! ```text
//!  source ──queue(cap)──▶ stage 1 (n threads) ──queue(cap)──▶ … ──▶ fold / for_each / sink
//! ```
//!
//! A pipeline is described first and started by its terminal operation ([`Pipeline::fold`],
//! [`Pipeline::for_each`], [`Pipeline::sink`]), which runs it to the end, joins every thread and
//! returns a [`Run`]: the value and a [`Report`] that accounts for every item read.
//!
//! - **Backpressure end to end**: every queue is bounded, so the source reads at most a few
//!   queues' worth ahead of the slowest stage, and memory does not grow with the input.
//! - **Shutdown**: when the [`Shutdown`] token trips (drain), the source stops reading and
//!   everything already read flows to the end. On stop-now, stages stop processing: whatever
//!   is still queued is recorded as not run, so the threads wind down quickly and every read
//!   item is still accounted for — `read == processed + failed + not_run`, always.
//! - **Panics**: a stage or fold that panics on an item fails that item (recorded with its
//!   message) and the pipeline goes on. A panicking source ends the input.
//!
//! Items carry their sequence number (1-based, source order) through every stage; a stage with
//! several threads does not preserve order.

mod report;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel as cb;

pub use report::{Report, Run};

use crate::shutdown::Shutdown;
use crate::task::{panic_message, Seq};

type Item<T> = (Seq, T);

/// What one pipeline thread accounted for; summed into a [`Report`].
#[derive(Default)]
struct Ledger {
    read: u64,
    processed: u64,
    failed: Vec<(Seq, String)>,
    not_run: Vec<Seq>,
    source_panic: Option<String>,
}

impl Ledger {
    fn absorb(&mut self, other: Ledger) {
        self.read += other.read;
        self.processed += other.processed;
        self.failed.extend(other.failed);
        self.not_run.extend(other.not_run);
        self.source_panic = self.source_panic.take().or(other.source_panic);
    }
}

/// Threads started so far, and the token they obey.
struct Launch {
    shutdown: Shutdown,
    threads: Vec<JoinHandle<Ledger>>,
}

impl Launch {
    fn spawn(&mut self, name: &str, body: impl FnOnce() -> Ledger + Send + 'static) -> std::io::Result<()> {
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(body)?;
        self.threads.push(thread);
        Ok(())
    }

    /// Joins every thread and adds up their ledgers.
    fn finish(self, mut total: Ledger) -> Ledger {
        for thread in self.threads {
            match thread.join() {
                Ok(ledger) => total.absorb(ledger),
                // Pipeline threads catch the user's panics; one escaping is a muster bug.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        total
    }
}

type Starter<T> = Box<dyn FnOnce(&mut Launch) -> std::io::Result<cb::Receiver<Item<T>>> + Send>;

/// A described, not yet started pipeline whose items are of type `T` at this point.
pub struct Pipeline<T> {
    shutdown: Shutdown,
    capacity: usize,
    start: Starter<T>,
}

impl<T: Send + 'static> Pipeline<T> {
    /// A pipeline reading `source` on its own thread into a queue of `capacity` items. The
    /// source stops reading when `shutdown` trips.
    pub fn from_iter<I>(source: I, capacity: usize, shutdown: Shutdown) -> Pipeline<T>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        let source = source.into_iter();
        Pipeline {
            shutdown,
            capacity,
            start: Box::new(move |launch| {
                let (tx, rx) = cb::bounded(capacity);
                let shutdown = launch.shutdown.clone();
                launch.spawn("muster-source", move || read_source(source, &tx, &shutdown))?;
                Ok(rx)
            }),
        }
    }

    /// Sets the capacity of the queues that stages added after this call feed.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Adds a stage of `workers` threads (at least 1) applying `f` to every item.
    pub fn stage<U, F>(self, workers: usize, f: F) -> Pipeline<U>
    where
        U: Send + 'static,
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        let Pipeline { shutdown, capacity, start } = self;
        let f = Arc::new(f);
        Pipeline {
            shutdown,
            capacity,
            start: Box::new(move |launch| {
                let input = start(launch)?;
                let (tx, rx) = cb::bounded(capacity);
                for _ in 0..workers.max(1) {
                    let (input, tx, f) = (input.clone(), tx.clone(), f.clone());
                    let shutdown = launch.shutdown.clone();
                    launch.spawn("muster-stage", move || run_stage(&input, &tx, &*f, &shutdown))?;
                }
                Ok(rx)
            }),
        }
    }

    /// Runs the pipeline, folding its items on `workers` threads (at least 1): each thread
    /// starts from `identity()` and applies `fold`; the partial results are combined with
    /// `reduce` once every thread is done.
    pub fn fold<A, Id, Fo, Re>(
        self,
        workers: usize,
        identity: Id,
        fold: Fo,
        reduce: Re,
    ) -> std::io::Result<Run<A>>
    where
        A: Send + 'static,
        Id: Fn() -> A + Send + Sync + 'static,
        Fo: Fn(&mut A, T) + Send + Sync + 'static,
        Re: Fn(A, A) -> A,
    {
        self.fold_seq(workers, identity, move |acc, _, item| fold(acc, item), reduce)
    }

    /// Runs the pipeline, calling `f` with each item's sequence number and value from `workers`
    /// threads (at least 1).
    pub fn for_each<F>(self, workers: usize, f: F) -> std::io::Result<Run<()>>
    where
        F: Fn(Seq, T) + Send + Sync + 'static,
    {
        self.fold_seq(workers, || (), move |_, seq, item| f(seq, item), |_, _| ())
    }

    /// [`fold`](Self::fold), with each item's sequence number passed to the fold operation.
    fn fold_seq<A, Id, Fo, Re>(
        self,
        workers: usize,
        identity: Id,
        fold: Fo,
        reduce: Re,
    ) -> std::io::Result<Run<A>>
    where
        A: Send + 'static,
        Id: Fn() -> A + Send + Sync + 'static,
        Fo: Fn(&mut A, Seq, T) + Send + Sync + 'static,
        Re: Fn(A, A) -> A,
    {
        let (partials_tx, partials) = cb::unbounded();
        let identity = Arc::new(identity);
        let fold = Arc::new(fold);
        let report = self.run(|launch, input| {
            for _ in 0..workers.max(1) {
                let (input, shutdown) = (input.clone(), launch.shutdown.clone());
                let (identity, fold, partials_tx) = (identity.clone(), fold.clone(), partials_tx.clone());
                launch.spawn("muster-fold", move || {
                    let mut acc = identity();
                    let ledger = consume_seq(&input, &shutdown, &mut |seq, item| fold(&mut acc, seq, item));
                    // The receiver is read only after every fold thread has been joined.
                    let _ = partials_tx.send(acc);
                    ledger
                })?;
            }
            Ok(Ledger::default())
        })?;
        drop(partials_tx);
        let value = partials.try_iter().reduce(reduce).unwrap_or_else(|| identity());
        Ok(Run { value, report })
    }

    /// Runs the pipeline, calling `f` with each item's sequence number and value on the
    /// caller's thread, in arrival order.
    pub fn sink<F>(self, mut f: F) -> std::io::Result<Run<()>>
    where
        F: FnMut(Seq, T),
    {
        let report = self.run(|launch, input| Ok(consume_seq(input, &launch.shutdown, &mut f)))?;
        Ok(Run { value: (), report })
    }

    /// Starts the source and stages, lets `finish` attach the last consumer, then waits for
    /// every thread. If a thread cannot be started, stops the pipeline now and reports why.
    fn run<F>(self, finish: F) -> std::io::Result<Report>
    where
        F: FnOnce(&mut Launch, &cb::Receiver<Item<T>>) -> std::io::Result<Ledger>,
    {
        let started = Instant::now();
        let mut launch = Launch { shutdown: self.shutdown.clone(), threads: Vec::new() };
        let attached = (self.start)(&mut launch).and_then(|input| finish(&mut launch, &input));
        match attached {
            Ok(local) => {
                let ledger = launch.finish(local);
                Ok(Report::new(ledger, self.shutdown.level(), started.elapsed()))
            }
            Err(err) => {
                self.shutdown.stop_now();
                launch.finish(Ledger::default());
                Err(err)
            }
        }
    }
}

fn read_source<T>(
    mut source: impl Iterator<Item = T>,
    tx: &cb::Sender<Item<T>>,
    shutdown: &Shutdown,
) -> Ledger {
    let mut ledger = Ledger::default();
    while !shutdown.is_tripped() {
        match catch_unwind(AssertUnwindSafe(|| source.next())) {
            Ok(Some(item)) => {
                ledger.read += 1;
                if let Err(cb::SendError((seq, _))) = tx.send((ledger.read, item)) {
                    ledger.not_run.push(seq);
                    break;
                }
            }
            Ok(None) => break,
            Err(payload) => {
                ledger.source_panic = Some(panic_message(payload.as_ref()));
                break;
            }
        }
    }
    ledger
}

fn run_stage<T, U>(
    input: &cb::Receiver<Item<T>>,
    output: &cb::Sender<Item<U>>,
    f: &dyn Fn(T) -> U,
    shutdown: &Shutdown,
) -> Ledger {
    let mut ledger = Ledger::default();
    for (seq, item) in input.iter() {
        if shutdown.is_stopping_now() {
            ledger.not_run.push(seq);
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| f(item))) {
            Ok(out) => {
                if output.send((seq, out)).is_err() {
                    ledger.not_run.push(seq);
                }
            }
            Err(payload) => ledger.failed.push((seq, panic_message(payload.as_ref()))),
        }
    }
    ledger
}

/// The last consumer's loop: every item is processed, failed (panic), or not run (stop-now).
fn consume_seq<T>(input: &cb::Receiver<Item<T>>, shutdown: &Shutdown, f: &mut dyn FnMut(Seq, T)) -> Ledger {
    let mut ledger = Ledger::default();
    for (seq, item) in input.iter() {
        if shutdown.is_stopping_now() {
            ledger.not_run.push(seq);
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| f(seq, item))) {
            Ok(()) => ledger.processed += 1,
            Err(payload) => ledger.failed.push((seq, panic_message(payload.as_ref()))),
        }
    }
    ledger
}

#[cfg(test)]
mod tests;
