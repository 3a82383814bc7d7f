//! The distributed mode's commands: `muster submit` (its queue side), `muster worker`,
//! `muster drain` and `muster status --queue`, over [`muster::broker`].

use std::io::{IsTerminal, Write};

use muster::broker::results::{QueueResult, ResultReader};
use muster::broker::{self, status::QueueStatus, submit, worker, BrokerError, Connection, Queue};
use muster::engine::persistent::{Framing, Workers};
use muster::engine::{Inputs, Observer, RunConfig, Summary};
use muster::process::template::Template;
use muster::Shutdown;

use crate::args::{BrokerArgs, ResultsArgs, StatusArgs, WorkerArgs};
use crate::fatal::{usage, Fatal, USAGE_ERROR};

/// `muster submit`'s queue: where tasks go instead of running here.
pub(crate) struct Submission {
    pub(crate) broker: String,
    pub(crate) queue: muster::broker::Queue,
    pub(crate) detach: bool,
    /// Tasks per queue entry, when given (`--pack`).
    pub(crate) pack: Option<usize>,
}

/// A broker failure: Redis unreachable, refused, or unsafe.
fn broker_error(err: impl std::fmt::Display) -> Fatal {
    Fatal { code: USAGE_ERROR, message: err.to_string() }
}

/// `muster submit`, once the flags are an engine configuration: puts the tasks on the queue;
/// without --detach, settles their results here. `None` when detached.
#[allow(clippy::too_many_arguments)]
pub(crate) fn submit(
    submission: Submission,
    mut config: RunConfig,
    inputs: Inputs,
    retries: u32,
    stdout: Box<dyn Write + Send>,
    stderr: Box<dyn Write + Send>,
    shutdown: &Shutdown,
    observer: &dyn Observer,
) -> Result<Option<Summary>, Fatal> {
    config.retries = 0; // retries travel with each task: a failed attempt goes back to the queue
    let Submission { broker, queue, detach, pack } = submission;
    let name = queue.name().to_owned();
    let config = submit::SubmitConfig { broker, queue, run: config, retries, pack };
    if detach {
        let (job, count) = submit::detach(config, inputs).map_err(broker_error)?;
        crate::say(format_args!(
            "muster: {count} task(s) on queue {name} (submission {job}); `muster results --queue {name} --job {job}` prints their results"
        ));
        // The submission's id on stdout, for scripts: ID=$(muster submit --detach ...).
        println!("{job}");
        return Ok(None);
    }
    let io =
        muster::engine::Io { stdout, stderr, shutdown, observer, settlement: &muster::source::NoSettlement };
    submit::submit(config, inputs, io).map(Some).map_err(broker_error)
}

/// `muster worker`.
pub(crate) fn worker(args: WorkerArgs) -> Result<u8, Fatal> {
    let queue = Queue::new(&args.broker.queue).map_err(usage)?;
    let template =
        Template::parse(&args.command, 1).map_err(usage)?.shell_program(crate::setup::shell_for(&args.shell));
    let jobs = crate::setup::resolve_jobs(args.jobs, None, args.persistent);
    let timeout = args.timeout.filter(|t| !t.is_zero());
    let persistent = if args.persistent {
        if template.substitutes() {
            return Err(usage(
                "replacement strings are not used with --persistent: each input goes to a process's stdin",
            ));
        }
        let program = crate::setup::check_program(&args.command[0])?;
        let mut workers = Workers::new(program, args.command[1..].to_vec());
        workers.window = args.window as usize;
        workers.max_tasks_per_worker = args.max_tasks_per_worker;
        if args.framed {
            workers.framing = Framing::LengthPrefixed;
        }
        Some(workers)
    } else {
        None
    };
    let program_path = match template.program() {
        Some(program) if !template.is_shell() && persistent.is_none() => {
            Some(crate::setup::check_program(&program)?)
        }
        _ => None,
    };
    let mut run = RunConfig::new(template);
    run.jobs = jobs;
    run.timeout = timeout;
    run.grace = args.grace;
    run.watchdog = crate::setup::watchdog_command();
    run.program_path = program_path;
    run.persistent = persistent;
    let shutdown = Shutdown::new();
    let _signals = shutdown.watch_signals().map_err(|err| usage(format!("cannot watch signals: {err}")))?;
    announce(&shutdown);
    let config = worker::WorkerConfig {
        broker: args.broker.broker,
        queue,
        run,
        lease: args.lease,
        name: args.name,
        results_ttl: args.results_ttl,
    };
    let summary = worker::run(config, &shutdown).map_err(broker_error)?;
    crate::say(summary.line());
    Ok(match shutdown.signal() {
        Some(signal) => u8::try_from(128 + signal).unwrap_or(130),
        None => 0,
    })
}

/// Tells the worker's operator what the first signal did.
fn announce(shutdown: &Shutdown) {
    let token = shutdown.clone();
    let _ = std::thread::Builder::new().name("muster-announce".into()).spawn(move || {
        token.wait();
        if token.signal().is_some() && !token.is_stopping_now() {
            crate::say(
                "muster: worker stopping: finishing the tasks it holds, reading no more (signal again to stop now; \
                 what it holds then goes back to the queue)",
            );
        }
    });
}

/// `muster drain`.
pub(crate) fn drain(args: BrokerArgs) -> Result<u8, Fatal> {
    let queue = Queue::new(&args.queue).map_err(usage)?;
    Connection::no_durability_warning();
    let mut link = Connection::connect(&args.broker).map_err(broker_error)?;
    let workers = broker::status::drain(&mut link, &queue).map_err(broker_error)?;
    crate::say(format_args!(
        "muster: drain asked of queue {}: {workers} worker(s) finish what they hold and stop",
        queue.name()
    ));
    Ok(0)
}

/// `muster results`.
pub(crate) fn results(args: ResultsArgs) -> Result<u8, Fatal> {
    let queue = Queue::new(&args.broker.queue).map_err(usage)?;
    Connection::no_durability_warning();
    let mut link = Connection::connect(&args.broker.broker).map_err(broker_error)?;
    let shutdown = Shutdown::new();
    let _signals = shutdown.watch_signals().map_err(|err| usage(format!("cannot watch signals: {err}")))?;
    let mut reader = ResultReader::new(queue.clone(), args.job.clone());
    if let Some(job) = &args.job {
        if reader.submitted(&mut link, job, &shutdown).map_err(broker_error)?.is_none() {
            return Err(usage(format!("queue {} has no detached submission {job}", queue.name())));
        }
    }
    let mut printer = ResultPrinter { json: args.json, named_job: args.job.is_none(), failed: 0 };
    let block = args.wait.then_some(std::time::Duration::from_millis(500));
    let mut broken_pipe = false;
    while !shutdown.is_tripped() && !broken_pipe {
        let batch = match reader.next_batch(&mut link, block, &shutdown) {
            Ok(batch) => batch,
            Err(BrokerError::Stopped(_)) => break,
            Err(err) => return Err(broker_error(err)),
        };
        let batch = if batch.is_empty() {
            if !args.wait {
                break;
            }
            match reader.unfinished(&mut link, &shutdown) {
                Ok(0) => {}
                Ok(_) | Err(BrokerError::Stopped(_)) => continue,
                Err(err) => return Err(broker_error(err)),
            }
            // Nothing left to run: one last look for results recorded since the read.
            match reader.next_batch(&mut link, None, &shutdown) {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => batch,
                Err(BrokerError::Stopped(_)) => break,
                Err(err) => return Err(broker_error(err)),
            }
        } else {
            batch
        };
        let mut handed_over = Vec::with_capacity(batch.len());
        for result in &batch {
            match printer.print(result) {
                Ok(()) => handed_over.push(result.id.as_str()),
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
                    broken_pipe = true;
                    break;
                }
                Err(err) => return Err(usage(format!("writing results: {err}"))),
            }
        }
        // Removed only once written: a result is never lost to a failed write.
        match reader.remove(&mut link, &handed_over, &shutdown) {
            Ok(()) | Err(BrokerError::Stopped(_)) => {}
            Err(err) => return Err(broker_error(err)),
        }
    }
    if let Some(signal) = shutdown.signal() {
        return Ok(u8::try_from(128 + signal).unwrap_or(130));
    }
    if broken_pipe {
        return Ok(141);
    }
    Ok(match printer.failed {
        n @ 0..=100 => n as u8,
        _ => 101,
    })
}

/// Writes results as `muster results` shows them.
struct ResultPrinter {
    json: bool,
    /// Name the submission in messages (results of several are shown together).
    named_job: bool,
    failed: u64,
}

impl ResultPrinter {
    fn print(&mut self, result: &QueueResult) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            let doc = serde_json::json!({
                "job": result.job,
                "seq": result.seq,
                "input": text(&result.input),
                "outcome": result.outcome,
                "worker": result.worker,
                "attempt": result.attempt,
                "exit": result.exit,
                "signal": result.signal,
                "runtime": result.runtime,
                "stdout": text(&result.stdout),
                "stderr": text(&result.stderr),
                "error": result.error,
            });
            writeln!(out, "{doc}")?;
        } else {
            out.write_all(&result.stdout)?;
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&result.stderr);
            if !result.is_done() {
                let of =
                    if self.named_job { format!(" of submission {}", result.job) } else { String::new() };
                let on =
                    if result.worker.is_empty() { String::new() } else { format!(" on {}", result.worker) };
                let _ = writeln!(
                    err,
                    "muster: task {} ({}){of}{on}: {}",
                    result.seq,
                    String::from_utf8_lossy(&result.input),
                    result.error
                );
            }
        }
        out.flush()?;
        if !result.is_done() {
            self.failed += 1;
        }
        Ok(())
    }
}

/// `muster status --queue`.
pub(crate) fn status(args: StatusArgs, queue: &str) -> Result<u8, Fatal> {
    let queue = Queue::new(queue).map_err(usage)?;
    Connection::no_durability_warning();
    let mut link = Connection::connect(&args.broker).map_err(broker_error)?;
    let status = broker::status::status(&mut link, &queue).map_err(broker_error)?;
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        write_json(&mut out, queue.name(), &status)
    } else {
        write_text(&mut out, queue.name(), &status)
    };
    let _ = written.and_then(|()| out.flush());
    Ok(0)
}

fn write_text(out: &mut dyn Write, name: &str, s: &QueueStatus) -> std::io::Result<()> {
    writeln!(out, "queue {name}")?;
    writeln!(out, "  pending        {}", s.pending)?;
    writeln!(out, "  running        {}", s.running_total())?;
    writeln!(out, "  done           {}", s.done)?;
    writeln!(out, "  failed         {}", s.failed)?;
    writeln!(out, "  retried        {}", s.retried)?;
    writeln!(out, "  dead-lettered  {}", s.dead_lettered)?;
    writeln!(out, "  late results   {} rejected", s.rejected)?;
    writeln!(out, "  workers alive  {}", s.workers.iter().filter(|w| w.alive()).count())?;
    for worker in &s.workers {
        let heard = worker.heard_ago.as_secs_f64();
        if worker.alive() {
            writeln!(
                out,
                "    {}  running {} of {}, heard from {heard:.1} s ago",
                worker.name, worker.running, worker.slots
            )?;
        } else {
            writeln!(
                out,
                "    {}  silent for {heard:.0} s (lease {} s): killed, frozen or cut off; what it held returns to the queue",
                worker.name,
                worker.lease.as_secs()
            )?;
        }
    }
    if !std::io::stdout().is_terminal() {
        out.flush()?;
    }
    Ok(())
}

fn write_json(out: &mut dyn Write, name: &str, s: &QueueStatus) -> std::io::Result<()> {
    let workers: Vec<serde_json::Value> = s
        .workers
        .iter()
        .map(|w| {
            serde_json::json!({
                "name": w.name,
                "slots": w.slots,
                "running": w.running,
                "alive": w.alive(),
                "heard_ms_ago": w.heard_ago.as_millis() as u64,
                "lease_ms": w.lease.as_millis() as u64,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "queue": name,
        "pending": s.pending,
        "running": s.running_total(),
        "done": s.done,
        "failed": s.failed,
        "retried": s.retried,
        "dead_lettered": s.dead_lettered,
        "rejected": s.rejected,
        "results_waiting": s.results_waiting,
        "workers": workers,
    });
    writeln!(out, "{doc}")
}
