//! `muster._core`: muster's engine inside a Python process. An [`Engine`] runs the one engine
//! (`muster::engine::run_sourced`) on its own thread over persistent workers speaking
//! length-prefixed records; Python hands it records and takes back what became of each, in
//! batches, with the GIL released while it waits. What the records mean (pickled calls and
//! results) is the Python side's business (`muster/_pool.py`, `muster/_worker.py`).
//!
//! The module also serves muster's orphan watchdog (`serve_watchdog`), so that a pool needs
//! no `muster` binary: the watchdog is `python -m muster._watchdog`.

use std::ffi::OsString;
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel as cb;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use muster::engine::persistent::{Framing, Workers};
use muster::engine::{self, Io, NoObserver, RunConfig, Summary};
use muster::input::Input;
use muster::process::template::Template;
use muster::source::{Receipt, Settled, Settlement, Sourced};
use muster::task::{Failure, Outcome};
use muster::Shutdown;

/// How a record ended, as Python reads it (the `kind` of a result tuple).
mod kind {
    /// The worker answered: the payload is its reply.
    pub const DONE: u8 = 0;
    /// Every attempt failed: its worker died (exit code or signal given) or none could start.
    pub const FAILED: u8 = 1;
    /// An attempt ran past the timeout (its worker was stopped).
    pub const TIMED_OUT: u8 = 2;
    /// It never ran: the pool was stopped first.
    pub const NOT_RUN: u8 = 3;
}

/// One record's end: (id, kind, reply, message, exit code, signal).
type Ending = (u64, u8, Option<Vec<u8>>, Option<String>, Option<i32>, Option<i32>);

/// Hands every settled record to Python's side of the results channel.
struct ToPython {
    results: cb::Sender<Ending>,
    /// With a journal: where results are kept for a rerun that skips their tasks.
    store: Option<ResultStore>,
}

/// The receipt of a record: its id, then (with a journal) the key its result is kept under.
const ID_LEN: usize = 8;

/// A journal's results, beside it (`JOURNAL.results`): each done record's reply under its
/// key, appended before the journal says it is done — so a rerun that skips the task still
/// has its result. Entries are `key (16 bytes) | length (u32 LE) | reply`; a torn last entry
/// (the caller killed mid-write) is cut off when the store is opened.
struct ResultStore {
    file: Mutex<std::fs::File>,
    /// What earlier runs kept, by key.
    kept: std::collections::HashMap<[u8; KEY_LEN], Vec<u8>>,
}

const KEY_LEN: usize = 16;

impl ResultStore {
    fn open(path: &std::path::Path) -> std::io::Result<ResultStore> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut kept = std::collections::HashMap::new();
        let mut at = 0;
        while let (Some(key), Some(length)) =
            (bytes.get(at..at + KEY_LEN), bytes.get(at + KEY_LEN..at + KEY_LEN + 4))
        {
            let length = u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize;
            let start = at + KEY_LEN + 4;
            let Some(reply) = bytes.get(start..start + length) else { break };
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(key);
            kept.insert(k, reply.to_vec());
            at = start + length;
        }
        file.set_len(at as u64)?;
        file.seek(SeekFrom::End(0))?;
        Ok(ResultStore { file: Mutex::new(file), kept })
    }

    fn keep(&self, key: &[u8], reply: &[u8]) -> bool {
        use std::io::Write;
        let Ok(length) = u32::try_from(reply.len()) else { return false };
        let mut entry = Vec::with_capacity(KEY_LEN + 4 + reply.len());
        entry.extend_from_slice(key);
        entry.extend_from_slice(&length.to_le_bytes());
        entry.extend_from_slice(reply);
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&entry).is_ok()
    }
}

fn id_of(receipt: &Receipt) -> u64 {
    let mut bytes = [0u8; ID_LEN];
    let n = receipt.len().min(ID_LEN);
    bytes[..n].copy_from_slice(&receipt[..n]);
    u64::from_le_bytes(bytes)
}

impl Settlement for ToPython {
    fn settled(&self, receipt: &Receipt, how: Settled<'_>) {
        let id = id_of(receipt);
        let ending = match how {
            Settled::Finished(done) => {
                let message = done.note.map(|note| note.headline());
                match done.outcome {
                    Outcome::Done => (id, kind::DONE, Some(done.stdout.to_vec()), None, None, None),
                    Outcome::Failed(failure) => {
                        let (code, signal) = match failure {
                            Failure::Exit(code) => (Some(*code), None),
                            Failure::Signal(signal) => (None, Some(*signal)),
                            _ => (None, None),
                        };
                        let message = message.unwrap_or_else(|| failure.to_string());
                        (id, kind::FAILED, None, Some(message), code, signal)
                    }
                    Outcome::TimedOut(after) => {
                        let message = message.unwrap_or_else(|| format!("timed out after {after:?}"));
                        (id, kind::TIMED_OUT, None, Some(message), None, None)
                    }
                    Outcome::NotRun => (id, kind::NOT_RUN, None, None, None, None),
                }
            }
            Settled::Skipped => {
                let kept = self.store.as_ref().and_then(|store| {
                    let key: [u8; KEY_LEN] = receipt.get(ID_LEN..)?.try_into().ok()?;
                    store.kept.get(&key)
                });
                match kept {
                    Some(reply) => (id, kind::DONE, Some(reply.clone()), None, None, None),
                    None => {
                        let why = "the journal says this task is done, but its result was not kept (JOURNAL.results)";
                        (id, kind::FAILED, None, Some(why.into()), None, None)
                    }
                }
            }
            Settled::NotRun | Settled::Stopped => (id, kind::NOT_RUN, None, None, None, None),
        };
        let _ = self.results.send(ending);
    }

    fn keep(&self, receipt: &Receipt, stdout: &[u8]) -> bool {
        match (&self.store, receipt.get(ID_LEN..)) {
            (Some(store), Some(key)) if key.len() == KEY_LEN => store.keep(key, stdout),
            _ => true,
        }
    }

    fn carries_output(&self) -> bool {
        true
    }
}

/// A run of the engine over persistent workers, fed records from Python.
#[pyclass(module = "muster._core")]
struct Engine {
    /// Records on their way to the engine's feeder; `None` once closed (no more records).
    records: Mutex<Option<cb::Sender<Sourced>>>,
    results: cb::Receiver<Ending>,
    shutdown: Shutdown,
    run: Mutex<Option<JoinHandle<Result<Summary, String>>>>,
    /// What the run ended with, once joined.
    summary: Mutex<Option<Result<Summary, String>>>,
    next_id: Mutex<u64>,
}

fn seconds(value: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!("{what} must be a non-negative number of seconds, not {s}"))
            })
        })
        .transpose()
}

#[pymethods]
impl Engine {
    /// Starts `workers` copies of `program args...`, fed length-prefixed records.
    #[new]
    #[pyo3(signature = (program, args, workers, *, window=64, retries=0, timeout=None, grace=2.0, max_tasks_per_worker=None, watchdog=None, env=None, journal=None, broker=None, queue=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        program: String,
        args: Vec<String>,
        workers: usize,
        window: usize,
        retries: u32,
        timeout: Option<f64>,
        grace: f64,
        max_tasks_per_worker: Option<u64>,
        watchdog: Option<Vec<String>>,
        env: Option<Vec<(String, String)>>,
        journal: Option<std::path::PathBuf>,
        broker: Option<String>,
        queue: Option<String>,
    ) -> PyResult<Engine> {
        if workers == 0 {
            return Err(PyValueError::new_err("a pool needs at least one worker"));
        }
        let template = Template::parse(&[OsString::from(&program)], 1)
            .map_err(|e| PyValueError::new_err(format!("worker program {program:?}: {e}")))?;
        let mut config = RunConfig::new(template);
        config.jobs = workers;
        config.retries = retries;
        config.timeout = seconds(timeout, "timeout")?;
        config.grace = seconds(Some(grace), "grace")?.unwrap_or_default();
        if let Some(watchdog) = watchdog.filter(|w| !w.is_empty()) {
            let mut command = std::process::Command::new(&watchdog[0]);
            command.args(&watchdog[1..]);
            config.watchdog = Some(command);
        }
        // With a broker, tasks go to a queue's workers elsewhere: `workers` is how many of
        // them wait on the queue at once, retries travel with each task.
        let submission = match (broker, queue) {
            (Some(broker), Some(queue)) => {
                let queue =
                    muster::broker::Queue::new(&queue).map_err(|e| PyValueError::new_err(e.to_string()))?;
                Some((broker, queue))
            }
            (None, None) => None,
            _ => return Err(PyValueError::new_err("a broker needs a queue, and a queue a broker")),
        };
        if let Some((_, queue)) = &submission {
            config.template = Template::parse(&[format!("muster-queue:{}", queue.name()).into()], 1)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            config.retries = 0;
            config.watchdog = None;
        }
        let mut feeding = Workers::new(program, args.into_iter().map(OsString::from).collect());
        feeding.window = window.max(1);
        feeding.framing = Framing::LengthPrefixed;
        feeding.max_tasks_per_worker = max_tasks_per_worker;
        feeding.env = env.unwrap_or_default().into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        if submission.is_none() {
            config.persistent = Some(feeding);
        }
        let store = match &journal {
            Some(path) => {
                // A journal that exists is resumed: what it says is done is skipped.
                if path.exists() {
                    config.resume = Some(muster::journal::ResumeMode::SkipDone);
                }
                config.joblog = Some(path.clone());
                let mut results = path.clone().into_os_string();
                results.push(".results");
                let results = std::path::PathBuf::from(results);
                Some(ResultStore::open(&results).map_err(|e| {
                    PyRuntimeError::new_err(format!(
                        "cannot open the journal's results {}: {e}",
                        results.display()
                    ))
                })?)
            }
            None => None,
        };

        let (records, incoming) = cb::unbounded::<Sourced>();
        let (to_python, results) = cb::unbounded::<Ending>();
        let shutdown = Shutdown::new();
        let run_shutdown = shutdown.clone();
        let run = std::thread::Builder::new()
            .name("muster-engine".into())
            .spawn(move || {
                let settlement = ToPython { results: to_python, store };
                let io = Io {
                    stdout: Box::new(std::io::sink()),
                    stderr: Box::new(std::io::stderr()),
                    shutdown: &run_shutdown,
                    observer: &NoObserver,
                    settlement: &settlement,
                };
                match submission {
                    None => engine::run_sourced(config, incoming.into_iter().map(Ok), None, io)
                        .map_err(|e| e.to_string()),
                    Some((broker, queue)) => {
                        let submit = muster::broker::submit::SubmitConfig {
                            broker,
                            queue,
                            run: config,
                            retries,
                            pack: None,
                        };
                        muster::broker::submit::submit_sourced(submit, incoming.into_iter().map(Ok), None, io)
                            .map_err(|e| e.to_string())
                    }
                }
            })
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the engine's thread: {e}")))?;
        Ok(Engine {
            records: Mutex::new(Some(records)),
            results,
            shutdown,
            run: Mutex::new(Some(run)),
            summary: Mutex::new(None),
            next_id: Mutex::new(0),
        })
    }

    /// Queues records; returns the id of the first (the others follow it in order). With a
    /// journal, each record has a key (16 bytes) its result is kept under.
    #[pyo3(signature = (records, keys=None))]
    fn submit(&self, records: Vec<Vec<u8>>, keys: Option<Vec<Vec<u8>>>) -> PyResult<u64> {
        if keys
            .as_ref()
            .is_some_and(|keys| keys.len() != records.len() || keys.iter().any(|k| k.len() != KEY_LEN))
        {
            return Err(PyValueError::new_err("one 16-byte key per record"));
        }
        let mut keys = keys.map(Vec::into_iter);
        let sender = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(sender) = sender.as_ref() else {
            return Err(PyValueError::new_err("the pool is closed: it takes no more tasks"));
        };
        let mut next_id = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
        let first = *next_id;
        for record in records {
            let mut receipt = next_id.to_le_bytes().to_vec();
            if let Some(key) = keys.as_mut().and_then(Iterator::next) {
                receipt.extend_from_slice(&key);
            }
            let receipt: Receipt = receipt.into();
            *next_id += 1;
            let sourced = Sourced { input: Input { values: vec![record] }, receipt: Some(receipt) };
            if sender.send(sourced).is_err() {
                return Err(PyRuntimeError::new_err("the pool's engine has stopped"));
            }
        }
        Ok(first)
    }

    /// The records that ended since the last call, waiting up to `timeout` seconds for the
    /// first (the GIL released meanwhile); `None` once the run is over and every ending was
    /// taken.
    fn results<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Option<Vec<PyEnding<'py>>>> {
        let wait = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::from_secs(3600));
        // Released only to wait: giving the GIL up when results are there already costs a
        // switch interval (5 ms) to get it back from a busy caller.
        let first = match self.results.try_recv() {
            Ok(first) => Ok(first),
            Err(cb::TryRecvError::Disconnected) => Err(cb::RecvTimeoutError::Disconnected),
            Err(cb::TryRecvError::Empty) => py.detach(|| self.results.recv_timeout(wait)),
        };
        let first = match first {
            Ok(first) => first,
            Err(cb::RecvTimeoutError::Timeout) => return Ok(Some(Vec::new())),
            Err(cb::RecvTimeoutError::Disconnected) => return Ok(None),
        };
        let mut out = Vec::with_capacity(1 + self.results.len());
        for (id, kind, reply, message, code, signal) in std::iter::once(first).chain(self.results.try_iter())
        {
            let reply = reply.map(|bytes| PyBytes::new(py, &bytes));
            out.push((id, kind, reply, message, code, signal));
        }
        Ok(Some(out))
    }

    /// No more records: the workers finish what they were given, then quit.
    fn close(&self) {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// Stops at once: running records end not run, workers are killed.
    fn terminate(&self) {
        self.shutdown.stop_now();
        self.close();
    }

    /// Waits up to `timeout` seconds (for ever without one) for the run to end; true when it
    /// has. Raises if the engine could not run.
    #[pyo3(signature = (timeout=None))]
    fn join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline =
            seconds(timeout.map(|s| s.max(0.0)), "timeout")?.map(|wait| std::time::Instant::now() + wait);
        loop {
            let finished = {
                let run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
                run.as_ref().is_none_or(JoinHandle::is_finished)
            };
            if finished {
                break;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
            py.detach(|| std::thread::sleep(Duration::from_millis(2)));
            py.check_signals()?;
        }
        let handle = self.run.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut summary = self.summary.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = handle {
            *summary = Some(match handle.join() {
                Ok(result) => result,
                Err(_) => Err("the engine's thread panicked".into()),
            });
        }
        match summary.as_ref() {
            Some(Err(why)) => Err(PyRuntimeError::new_err(why.clone())),
            _ => Ok(true),
        }
    }

    /// What the run did, once joined: a dict of counts (None before).
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, pyo3::types::PyDict>>> {
        let summary = self.summary.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(Ok(summary)) = summary.as_ref() else { return Ok(None) };
        let dict = pyo3::types::PyDict::new(py);
        dict.set_item("done", summary.done)?;
        dict.set_item("failed", summary.failed)?;
        dict.set_item("timed_out", summary.timed_out)?;
        dict.set_item("not_run", summary.not_run)?;
        dict.set_item("workers_started", summary.workers_started)?;
        dict.set_item("worker_crashes", summary.worker_crashes)?;
        dict.set_item("protocol_breaks", summary.protocol_breaks)?;
        Ok(Some(dict))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // A pool dropped without closing: stop its workers rather than leave them running.
        self.shutdown.stop_now();
        self.records.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = self.run.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = handle.join();
        }
    }
}

type PyEnding<'py> = (u64, u8, Option<Bound<'py, PyBytes>>, Option<String>, Option<i32>, Option<i32>);

/// Serves muster's orphan watchdog on stdin until it ends (see `muster::process::watchdog`).
#[pyfunction]
fn serve_watchdog(py: Python<'_>) {
    let token = std::env::var(muster::process::watchdog::MARKER_VAR).ok();
    py.detach(|| muster::process::watchdog::serve(std::io::stdin().lock(), token.as_deref()));
}

#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Engine>()?;
    module.add_function(wrap_pyfunction!(serve_watchdog, module)?)?;
    module.add("DONE", kind::DONE)?;
    module.add("FAILED", kind::FAILED)?;
    module.add("TIMED_OUT", kind::TIMED_OUT)?;
    module.add("NOT_RUN", kind::NOT_RUN)?;
    Ok(())
}
