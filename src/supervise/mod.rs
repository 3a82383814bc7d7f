//! Supervised long-running workers: N copies of a command kept alive and stopped properly.
//!
//! This is the seed's master that starts worker processes "running forever", with the part the
//! seed left to Ctrl-C done properly. Each worker leads its own process group and sees its slot
//! in `MUSTER_WORKER`. A worker that ends is restarted as its [`Restart`] policy says, after an
//! exponential backoff; one that keeps crashing is given up on after
//! [`SuperviseConfig::max_restarts`] restarts in a row, without touching the others. A run that
//! lasts [`SuperviseConfig::stable`] counts as a success and resets the count.
//!
//! [`Supervisor::stop`] stops every worker at once — SIGTERM to its group, one shared grace
//! period, SIGKILL — and returns only when every one is reaped. Output can be captured line by
//! line and handed to the caller whole ([`Event::Lines`]), so merged output never splits a line.
//! [`control`] serves `status` and `stop` requests over a Unix socket.

pub mod control;
mod slot;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::io;
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::process::watchdog::Watchdog;
use crate::process::Stopped;

/// When a worker that ended on its own is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Whatever its exit status.
    Always,
    /// Only when it failed (non-zero exit or killed by a signal); a clean exit is final.
    OnFailure,
    /// Never: a worker that ends stays ended.
    Never,
}

/// How the workers are run; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct SuperviseConfig {
    /// Number of workers (slots 1..=workers).
    pub workers: usize,
    /// When a worker that ended is started again.
    pub restart: Restart,
    /// The delay before the first restart; it doubles with every restart in a row.
    pub backoff: Duration,
    /// The most the backoff grows to.
    pub backoff_max: Duration,
    /// Restarts in a row after which a crashing worker is given up on.
    pub max_restarts: u32,
    /// A run at least this long resets the count of restarts in a row.
    pub stable: Duration,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub grace: Duration,
    /// Pipe the workers' stdout and stderr and deliver them as [`Event::Lines`]; otherwise the
    /// workers inherit ours.
    pub capture_output: bool,
    /// Tells a watchdog about every worker's process group, so `kill -9` of the supervisor
    /// leaves none behind (see [`crate::process::watchdog`]).
    pub watchdog: Option<Arc<Watchdog>>,
}

impl SuperviseConfig {
    /// `workers` workers restarted on failure: backoff from 100 ms to 30 s, given up on after 5
    /// restarts in a row, stable after 10 s, 10 s grace, output inherited.
    pub fn new(workers: usize) -> SuperviseConfig {
        SuperviseConfig {
            workers,
            restart: Restart::OnFailure,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            max_restarts: 5,
            stable: Duration::from_secs(10),
            grace: Duration::from_secs(10),
            capture_output: false,
            watchdog: None,
        }
    }

    /// The delay before restart number `in_a_row` (counted from 1) of a run of restarts.
    pub fn backoff_for(&self, in_a_row: u32) -> Duration {
        let doublings = in_a_row.saturating_sub(1).min(31);
        self.backoff.saturating_mul(1 << doublings).min(self.backoff_max)
    }
}

/// Which of a worker's output streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Something that happened to a worker, reported as it happens.
#[derive(Debug)]
pub enum Event<'a> {
    /// A worker process started.
    Started {
        /// The worker's slot.
        slot: usize,
        /// Its pid (also its process group id).
        pid: u32,
        /// How many times this slot was restarted before.
        restarts: u32,
    },
    /// A worker could not be started (counted like a crash).
    SpawnFailed {
        /// The worker's slot.
        slot: usize,
        /// Why.
        error: &'a io::Error,
    },
    /// A worker ended on its own.
    Exited {
        /// The worker's slot.
        slot: usize,
        /// Its pid.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
        /// How long it ran.
        uptime: Duration,
    },
    /// A worker will be started again after `delay`.
    Restarting {
        /// The worker's slot.
        slot: usize,
        /// The backoff before the restart.
        delay: Duration,
        /// This restart's number in the current run of restarts in a row.
        in_a_row: u32,
        /// The limit of restarts in a row.
        limit: u32,
    },
    /// A worker kept crashing and will not be started again.
    GaveUp {
        /// The worker's slot.
        slot: usize,
        /// Restarts in a row it had.
        in_a_row: u32,
    },
    /// A worker was stopped by [`Supervisor::stop`].
    Stopped {
        /// The worker's slot.
        slot: usize,
        /// Its pid.
        pid: u32,
        /// How it ended, and whether SIGKILL was needed.
        how: Stopped,
    },
    /// One or more whole lines of a worker's output, each with its newline (one is added to a
    /// last line that lacked it): whatever whole lines arrived together, so a chatty worker
    /// costs one event per read, not per line. Only with [`SuperviseConfig::capture_output`].
    Lines {
        /// The worker's slot.
        slot: usize,
        /// Which stream.
        stream: Stream,
        /// The lines' bytes.
        lines: &'a [u8],
    },
}

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Being started.
    Starting,
    /// Running.
    Running,
    /// Waiting out the backoff before a restart.
    BackingOff,
    /// Ended and, by its restart policy, not to be started again.
    Ended,
    /// Crashed too often in a row; not started again.
    GaveUp,
    /// Being stopped by [`Supervisor::stop`].
    Stopping,
    /// Stopped by [`Supervisor::stop`].
    Stopped,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::BackingOff => "backoff",
            State::Ended => "ended",
            State::GaveUp => "gave up",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
        }
    }
}

/// One worker's state, as `muster status` shows it.
#[derive(Clone, Debug)]
pub struct WorkerStatus {
    /// The worker's slot.
    pub slot: usize,
    /// Where it is.
    pub state: State,
    /// The pid of its current (or last) process.
    pub pid: Option<u32>,
    /// When its current process started, while it runs.
    pub started: Option<Instant>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// How its last process ended.
    pub last_exit: Option<ExitStatus>,
}

/// Every worker's status, shareable with a control server.
#[derive(Clone, Debug)]
pub struct StatusBoard {
    workers: Arc<Mutex<Vec<WorkerStatus>>>,
}

impl StatusBoard {
    fn new(workers: usize) -> StatusBoard {
        let table = (1..=workers)
            .map(|slot| WorkerStatus {
                slot,
                state: State::Starting,
                pid: None,
                started: None,
                restarts: 0,
                last_exit: None,
            })
            .collect();
        StatusBoard { workers: Arc::new(Mutex::new(table)) }
    }

    /// A copy of every worker's status, by slot.
    pub fn snapshot(&self) -> Vec<WorkerStatus> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn update(&self, slot: usize, change: impl FnOnce(&mut WorkerStatus)) {
        let mut table = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(status) = table.get_mut(slot - 1) {
            change(status);
        }
    }

    /// The table `muster status` prints: slot, state, pid, uptime, restarts, last exit.
    pub fn render(&self) -> String {
        StatusBoard::render_rows(&self.snapshot())
    }

    /// The status table for `workers` (as [`render`](Self::render) prints it).
    pub fn render_rows(workers: &[WorkerStatus]) -> String {
        let mut text = format!(
            "{:<7} {:<9} {:>8} {:>9} {:>8}  {}\n",
            "WORKER", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"
        );
        for worker in workers {
            let pid = worker.pid.map_or("-".to_owned(), |pid| pid.to_string());
            let uptime = worker.started.map_or("-".to_owned(), |at| format_duration(at.elapsed()));
            let last = worker.last_exit.map_or("-".to_owned(), describe_exit);
            let _ = writeln!(
                text,
                "{:<7} {:<9} {:>8} {:>9} {:>8}  {}",
                worker.slot,
                worker.state.label(),
                pid,
                uptime,
                worker.restarts,
                last
            );
        }
        text
    }

    /// The status as a JSON array, one object per worker, for scripts: `worker`, `state`,
    /// `pid`, `uptime_s`, `restarts`, `exit_code`, `exit_signal` (absent values are `null`).
    pub fn render_json_rows(workers: &[WorkerStatus]) -> String {
        use std::os::unix::process::ExitStatusExt;
        let null = |value: Option<String>| value.unwrap_or_else(|| "null".to_owned());
        let rows: Vec<String> = workers
            .iter()
            .map(|w| {
                format!(
                    "{{\"worker\":{},\"state\":\"{}\",\"pid\":{},\"uptime_s\":{},\"restarts\":{},\"exit_code\":{},\"exit_signal\":{}}}",
                    w.slot,
                    w.state.label(),
                    null(w.pid.map(|p| p.to_string())),
                    null(w.started.map(|at| format!("{:.3}", at.elapsed().as_secs_f64()))),
                    w.restarts,
                    null(w.last_exit.and_then(|s| s.code()).map(|c| c.to_string())),
                    null(w.last_exit.and_then(|s| s.signal()).map(|s| s.to_string())),
                )
            })
            .collect();
        format!("[{}]", rows.join(","))
    }
}

/// "exit 3" or "signal 9 (KILL)".
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => match signal_name(signal) {
            Some(name) => format!("signal {signal} ({name})"),
            None => format!("signal {signal}"),
        },
        (None, None) => "unknown".to_owned(),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        6 => "ABRT",
        9 => "KILL",
        11 => "SEGV",
        13 => "PIPE",
        15 => "TERM",
        _ => return None,
    })
}

/// A duration the way uptimes are read: `850ms`, `12.3s`, `4m05s`, `2h07m`, `3d04h`.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        1..=59 => format!("{:.1}s", duration.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs / 3600 % 24),
    }
}

/// A callback told about every [`Event`]; called from the supervisor's threads.
pub type EventSink = dyn Fn(Event<'_>) + Send + Sync;

/// Asks a [`Supervisor`] to stop, from any thread (a signal watcher, a control server).
#[derive(Clone, Debug)]
pub struct StopHandle {
    /// Closing this end wakes every slot thread: the stop request.
    stop: Arc<Mutex<Option<UnixStream>>>,
    /// Closing this end cuts the grace period short.
    hurry: Arc<Mutex<Option<UnixStream>>>,
}

impl StopHandle {
    /// Starts stopping every worker (SIGTERM, grace, SIGKILL); returns at once.
    pub fn stop(&self) {
        self.stop.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// Stops every worker now: SIGKILL for any still in its grace period.
    pub fn kill_now(&self) {
        self.stop();
        self.hurry.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

/// Running workers; see the [module docs](self). Dropping it stops them like
/// [`stop`](Self::stop).
pub struct Supervisor {
    board: StatusBoard,
    slots: Vec<JoinHandle<()>>,
    handle: StopHandle,
    ended: Receiver<()>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("workers", &self.board.snapshot()).finish()
    }
}

impl Supervisor {
    /// Starts `config.workers` workers; `command(slot)` builds each one (slots count from 1),
    /// and is called again for every restart. `on_event` hears everything that happens.
    /// Workers that fail to start are reported as [`Event::SpawnFailed`] and retried like a
    /// crash; the error returned here is only for the supervisor's own resources.
    pub fn start(
        config: SuperviseConfig,
        command: impl Fn(usize) -> Command + Send + Sync + 'static,
        on_event: impl Fn(Event<'_>) + Send + Sync + 'static,
    ) -> io::Result<Supervisor> {
        let (stop_request, stop_notice) = UnixStream::pair()?;
        let (hurry_request, hurry_notice) = UnixStream::pair()?;
        let handle = StopHandle {
            stop: Arc::new(Mutex::new(Some(stop_request))),
            hurry: Arc::new(Mutex::new(Some(hurry_request))),
        };
        let (ended_tx, ended) = crossbeam_channel::bounded::<()>(0);
        let board = StatusBoard::new(config.workers);
        let shared = Arc::new(slot::Shared {
            config,
            command: Box::new(command),
            on_event: Box::new(on_event),
            board: board.clone(),
            stop_notice,
            hurry_notice,
        });
        let mut slots = Vec::with_capacity(shared.config.workers);
        let mut supervisor = Supervisor { board, slots: Vec::new(), handle, ended };
        for slot in 1..=shared.config.workers {
            let shared = shared.clone();
            let ended_tx = ended_tx.clone();
            // Workers are spawned from their slot's thread, which lives as long as they do:
            // a parent-death signal set by a worker fires when that thread ends, not before.
            let thread = std::thread::Builder::new().name(format!("muster-slot-{slot}")).spawn(move || {
                slot::supervise(&shared, slot);
                drop(ended_tx);
            });
            match thread {
                Ok(handle) => slots.push(handle),
                Err(err) => {
                    supervisor.slots = slots;
                    supervisor.stop();
                    return Err(err);
                }
            }
        }
        supervisor.slots = slots;
        Ok(supervisor)
    }

    /// Every worker's status, shareable with other threads (a control server).
    pub fn board(&self) -> &StatusBoard {
        &self.board
    }

    /// A handle that asks this supervisor to stop, from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.handle.clone()
    }

    /// A channel that disconnects once every worker has ended for good (ended by its restart
    /// policy, or given up on), for `select!` beside a stop request.
    pub fn ended(&self) -> &Receiver<()> {
        &self.ended
    }

    /// Stops every worker — SIGTERM, one shared grace period, SIGKILL — and returns every
    /// worker's final status once all are reaped.
    pub fn stop(mut self) -> Vec<WorkerStatus> {
        self.stop_and_join();
        self.board.snapshot()
    }

    fn stop_and_join(&mut self) {
        self.handle.stop();
        for slot in self.slots.drain(..) {
            // A slot thread panics only through a panicking event callback; the worker was
            // reaped by the slot's guard either way.
            let _ = slot.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
