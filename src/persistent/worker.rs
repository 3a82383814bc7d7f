//! One persistent worker slot: starts a worker process, feeds it a window of tasks, reads its
//! replies on a separate thread (so a full stdout pipe never blocks our writes), forwards its
//! stderr, and replaces it when it dies, is recycled, or breaks the protocol.
//!
//! Who wakes whom: the slot thread writes; the reader thread pops the oldest in-flight task for
//! each reply record and releases one permit of the window; when stdout ends (the worker died
//! or closed it) the reader drops `alive`, which wakes the slot in its `select!`.

use std::collections::VecDeque;
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel as cb;
use rustix::process::Signal;

use super::{Event, Job, PersistentConfig, Reply};
use crate::farm::input::Records;
use crate::process::GroupChild;
use crate::shutdown::Shutdown;
use crate::task::Failure;

pub(crate) struct SlotContext<'a> {
    pub(crate) slot: usize,
    pub(crate) config: &'a PersistentConfig,
    pub(crate) shutdown: &'a Shutdown,
    pub(crate) jobs: cb::Receiver<Job>,
    pub(crate) events: cb::Sender<Event>,
}

type InFlight = Arc<Mutex<VecDeque<Job>>>;

fn lock(in_flight: &InFlight) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
    in_flight.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running worker process and its helper threads.
struct Worker {
    child: GroupChild,
    stdin: Option<BufWriter<ChildStdin>>,
    in_flight: InFlight,
    /// Holds one token per task in flight; capacity is the window.
    permits: cb::Sender<()>,
    /// Disconnects when the reader thread ends (stdout closed: the worker died or misbehaved).
    alive: cb::Receiver<()>,
    /// Signalled by the reader when half the window has been answered.
    space: cb::Receiver<()>,
    threads: Vec<JoinHandle<()>>,
    sent: u64,
    watchdog: Option<std::sync::Arc<crate::process::watchdog::Watchdog>>,
}

/// Why feeding a worker stopped.
enum End {
    /// No more input: every task read has been handed out.
    InputDone,
    /// Time to recycle this worker.
    Recycle,
    /// The worker died or broke the protocol.
    Died,
    /// Stop now.
    StopNow,
}

impl Worker {
    fn start(ctx: &SlotContext<'_>) -> std::io::Result<Worker> {
        let mut command = Command::new(&ctx.config.program);
        command.args(&ctx.config.args).env("MUSTER_WORKER", ctx.slot.to_string());
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = GroupChild::spawn(&mut command)?;
        if let Some(watchdog) = &ctx.config.watchdog {
            watchdog.watch(child.id());
        }
        let stdin = child.child_mut().stdin.take().map(|s| BufWriter::with_capacity(64 * 1024, s));
        let stdout = child.child_mut().stdout.take();
        let stderr = child.child_mut().stderr.take();
        let in_flight: InFlight = Arc::new(Mutex::new(VecDeque::new()));
        let (permits, permits_rx) = cb::bounded::<()>(ctx.config.window.max(1));
        let (alive_tx, alive) = cb::bounded::<()>(0);
        let (space_tx, space) = cb::bounded::<()>(1);
        let half_window = ctx.config.window.max(1) / 2;
        let mut threads = Vec::new();
        if let Some(stdout) = stdout {
            let (in_flight, events, separator) =
                (in_flight.clone(), ctx.events.clone(), ctx.config.separator);
            threads.push(std::thread::spawn(move || {
                for record in Records::new(BufReader::with_capacity(64 * 1024, stdout), separator) {
                    let Ok(record) = record else { break };
                    let Some(job) = lock(&in_flight).pop_front() else {
                        // A reply nobody asked for: the worker broke the protocol.
                        break;
                    };
                    let _ = permits_rx.try_recv();
                    if permits_rx.len() <= half_window {
                        let _ = space_tx.try_send(());
                    }
                    let _ = events.send(Event::Reply(job.seq, Reply::Done(record)));
                }
                drop(alive_tx);
            }));
        }
        if let Some(stderr) = stderr {
            let (events, slot) = (ctx.events.clone(), ctx.slot);
            threads.push(std::thread::spawn(move || {
                for line in Records::new(BufReader::new(stderr), b'\n') {
                    let Ok(line) = line else { break };
                    let _ = events.send(Event::Stderr(slot, line));
                }
            }));
        }
        let _ = ctx.events.send(Event::WorkerStarted);
        let watchdog = ctx.config.watchdog.clone();
        Ok(Worker { child, stdin, in_flight, permits, alive, space, threads, sent: 0, watchdog })
    }

    fn is_idle(&self) -> bool {
        lock(&self.in_flight).is_empty()
    }

    /// Sends one task; false if the worker can no longer be written to.
    fn send(&mut self, job: Job, separator: u8, flush: bool) -> bool {
        let Some(stdin) = self.stdin.as_mut() else { return false };
        let mut record = job.input.clone();
        record.push(separator);
        lock(&self.in_flight).push_back(job);
        self.sent += 1;
        stdin.write_all(&record).is_ok() && (!flush || stdin.flush().is_ok())
    }

    fn flush(&mut self) -> bool {
        self.stdin.as_mut().is_some_and(|s| s.flush().is_ok())
    }

    /// Flushes what is buffered, then waits until every task in flight is answered; false if
    /// the worker died first.
    fn wait_idle(&mut self, shutdown: &Shutdown) -> bool {
        if !self.is_idle() && !self.flush() {
            return false;
        }
        while !self.is_idle() {
            cb::select! {
                recv(self.alive) -> _ => return self.is_idle(),
                recv(shutdown.stopping_now()) -> _ => return false,
                default(Duration::from_millis(1)) => {}
            }
        }
        true
    }

    /// Ends the worker: EOF on stdin (the quit), `grace` to exit, then TERM, `grace`, KILL.
    /// Returns the tasks it still held (only if it had to be stopped mid-task).
    fn finish(mut self, grace: Duration) -> (VecDeque<Job>, Option<std::process::ExitStatus>) {
        self.stdin.take();
        let exited = self.child.wait_exit_timeout(grace).unwrap_or(false);
        let status =
            if exited { self.child.wait().ok() } else { self.child.terminate(grace).ok().map(|s| s.status) };
        if let Some(watchdog) = &self.watchdog {
            watchdog.unwatch(self.child.id());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let held = std::mem::take(&mut *lock(&self.in_flight));
        (held, status)
    }

    fn kill(self) -> (VecDeque<Job>, Option<std::process::ExitStatus>) {
        let _ = self.child.signal_group(Signal::KILL);
        self.finish(Duration::ZERO)
    }
}

/// The failure a dead worker's status describes.
fn failure_of(status: Option<std::process::ExitStatus>) -> Failure {
    match status.map(|s| (s.code(), s.signal())) {
        Some((Some(code), _)) => Failure::Exit(code),
        Some((None, Some(signal))) => Failure::Signal(signal),
        _ => Failure::Exit(-1),
    }
}

/// A slot's whole life: workers started, fed, replaced, and finally stopped.
pub(crate) fn run_slot(ctx: SlotContext<'_>) {
    let mut probe: VecDeque<Job> = VecDeque::new();
    // A task taken to learn whether a replacement worker is needed at all.
    let mut carried: Option<Job> = None;
    loop {
        let worker = match Worker::start(&ctx) {
            Ok(worker) => worker,
            Err(err) => {
                // Without a worker, every task this slot takes fails with the reason.
                let failure = Failure::Start(format!("{}: {err}", ctx.config.program.display()));
                for job in probe.drain(..).chain(carried.take()).chain(ctx.jobs.iter()) {
                    let _ = ctx.events.send(Event::Reply(job.seq, Reply::Failed(failure.clone())));
                }
                return;
            }
        };
        let (mut end, mut worker) = feed(&ctx, worker, &mut probe, &mut carried);
        let mut idle = true;
        if matches!(end, End::InputDone | End::Recycle) {
            idle = worker.wait_idle(ctx.shutdown);
            if ctx.shutdown.is_stopping_now() {
                end = End::StopNow;
            }
        }
        match end {
            End::StopNow => {
                let (held, _) = worker.kill();
                let rest =
                    held.into_iter().chain(probe.drain(..)).chain(carried.take()).chain(ctx.jobs.iter());
                for job in rest {
                    let _ = ctx.events.send(Event::Reply(job.seq, Reply::NotRun));
                }
                return;
            }
            End::InputDone | End::Recycle => {
                let finished = worker.finish(ctx.config.grace);
                if !idle || !finished.0.is_empty() {
                    crashed(&ctx, finished, &mut probe);
                    continue;
                }
                if probe.is_empty() {
                    match end {
                        End::InputDone => return,
                        // Recycled: start a replacement only if there is work for it.
                        _ => match ctx.jobs.recv() {
                            Ok(job) => carried = Some(job),
                            Err(_) => return,
                        },
                    }
                }
            }
            End::Died => {
                worker.stdin.take();
                let finished = worker.kill();
                crashed(&ctx, finished, &mut probe);
            }
        }
    }
}

/// Handles a worker that died holding tasks: with one, charge it; with several, probe them one
/// at a time on the next worker so that only a guilty task is charged.
fn crashed(
    ctx: &SlotContext<'_>,
    (held, status): (VecDeque<Job>, Option<std::process::ExitStatus>),
    probe: &mut VecDeque<Job>,
) {
    if held.is_empty() {
        return;
    }
    let _ = ctx.events.send(Event::Crash);
    if held.len() > 1 {
        // Probe first: these go ahead of anything else, one at a time.
        for job in held.into_iter().rev() {
            probe.push_front(job);
        }
        return;
    }
    for mut job in held {
        job.charged += 1;
        if job.charged > ctx.config.retries || ctx.shutdown.is_tripped() {
            let _ = ctx.events.send(Event::Reply(job.seq, Reply::Failed(failure_of(status))));
        } else {
            // Retried alone, so a second crash is charged to it again.
            probe.push_back(job);
        }
    }
}

/// Feeds `worker` until input ends, it must be recycled, it dies, or stop-now.
fn feed(
    ctx: &SlotContext<'_>,
    mut worker: Worker,
    probe: &mut VecDeque<Job>,
    carried: &mut Option<Job>,
) -> (End, Worker) {
    let separator = ctx.config.separator;
    loop {
        if ctx.shutdown.is_stopping_now() {
            return (End::StopNow, worker);
        }
        if ctx.config.max_tasks_per_worker.is_some_and(|max| worker.sent >= max) {
            return (End::Recycle, worker);
        }
        if let Some(job) = probe.pop_front() {
            // Probing: the suspect runs alone.
            if !worker.wait_idle(ctx.shutdown) {
                probe.push_front(job);
                let end = if ctx.shutdown.is_stopping_now() { End::StopNow } else { End::Died };
                return (end, worker);
            }
            if !worker.send(job, separator, true) || !worker.wait_idle(ctx.shutdown) {
                let end = if ctx.shutdown.is_stopping_now() { End::StopNow } else { End::Died };
                return (end, worker);
            }
            continue;
        }
        // At most `window` tasks in flight. When the window is full, refill only once half of
        // it is answered, so the worker gets a batch per wake-up instead of one task.
        if worker.permits.is_full() {
            cb::select! {
                recv(worker.space) -> _ => {}
                recv(worker.alive) -> _ => return (End::Died, worker),
                recv(ctx.shutdown.stopping_now()) -> _ => return (End::StopNow, worker),
            }
            continue;
        }
        match worker.permits.try_send(()) {
            Ok(()) => {}
            Err(cb::TrySendError::Full(())) => continue,
            // The reader holds the other end; it is gone with the worker's stdout.
            Err(cb::TrySendError::Disconnected(())) => return (End::Died, worker),
        }
        let job = if let Some(job) = carried.take() {
            Some(job)
        } else {
            cb::select! {
                recv(ctx.jobs) -> job => job.ok(),
                recv(worker.alive) -> _ => return (End::Died, worker),
                recv(ctx.shutdown.stopping_now()) -> _ => return (End::StopNow, worker),
            }
        };
        // Input is exhausted (the unused permit dies with the worker).
        let Some(job) = job else { return (End::InputDone, worker) };
        // Flush when nothing else is waiting, so a lone task is not held in our buffer.
        let more_waiting = !ctx.jobs.is_empty() && !worker.permits.is_full();
        if !worker.send(job, separator, !more_waiting) {
            return (End::Died, worker);
        }
        if !more_waiting && !worker.flush() {
            return (End::Died, worker);
        }
    }
}
