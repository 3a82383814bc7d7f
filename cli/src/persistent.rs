//! `muster run --persistent`: inputs streamed through long-lived worker processes (the
//! library's `persistent` module), with results printed one record per input.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use muster::farm::{Inputs, Source};
use muster::persistent::{self, PersistentConfig, Reply};
use muster::process::template::Template;
use muster::process::watchdog::Watchdog;
use muster::{Seq, Shutdown};

use crate::args::RunArgs;
use crate::run::{
    announce_drain, check_program, resolve_jobs, stdout_writer, usage, watchdog_command, Fatal,
};

pub fn run(
    args: &RunArgs,
    template: &Template,
    command: Vec<OsString>,
    sources: Vec<Source>,
    separator: u8,
) -> Result<u8, Fatal> {
    if template.substitutes() {
        return Err(usage(
            "replacement strings are not used with --persistent: each input goes to a worker's stdin",
        ));
    }
    let program = check_program(&command[0])?;
    let inputs = Inputs::new(sources, separator).map_err(|err| usage(format!("reading inputs: {err}")))?;
    let mut config =
        PersistentConfig::new(program, command[1..].to_vec(), resolve_jobs(args.jobs, inputs.known_total()));
    config.window = args.window as usize;
    config.separator = separator;
    config.retries = args.retries;
    config.max_tasks_per_worker = args.max_tasks_per_worker;
    config.grace = args.grace;
    config.watchdog = watchdog_command().and_then(|command| Watchdog::start(command).ok()).map(Arc::new);

    let shutdown = Shutdown::new();
    let _signals = shutdown
        .watch_signals()
        .map_err(|err| Fatal { code: 2, message: format!("cannot watch signals: {err}") })?;
    announce_drain(&shutdown, args.grace);
    escalate_after_grace(&shutdown, args.grace);

    // Inputs are remembered per task only when --tag needs them for the prefix.
    let tags: Arc<Mutex<HashMap<Seq, Vec<u8>>>> = Arc::default();
    let input_error: Arc<Mutex<Option<String>>> = Arc::default();
    let (tag_inputs, errors) = (tags.clone(), input_error.clone());
    let tagging = args.tag;
    let mut seq = 0;
    let records = inputs.map_while(move |input| match input {
        Ok(input) => {
            seq += 1;
            let record = input.display();
            if tagging {
                tag_inputs.lock().unwrap_or_else(PoisonError::into_inner).insert(seq, record.clone());
            }
            Some(record)
        }
        Err(err) => {
            *errors.lock().unwrap_or_else(PoisonError::into_inner) = Some(format!("reading input: {err}"));
            None
        }
    });

    let mut out = stdout_writer().map_err(|err| usage(format!("cannot use stdout: {err}")))?;
    let mut broken_pipe = false;
    let mut held: BTreeMap<Seq, Reply> = BTreeMap::new();
    let mut next = 1;
    let started = Instant::now();
    let mut print = |seq: Seq, reply: Reply, out: &mut dyn Write| {
        let tag = tags.lock().unwrap_or_else(PoisonError::into_inner).remove(&seq);
        match reply {
            Reply::Done(mut record) if !broken_pipe => {
                record.push(separator);
                let written = match &tag {
                    Some(tag) => out.write_all(tag).and_then(|()| out.write_all(b"\t")),
                    None => Ok(()),
                }
                .and_then(|()| out.write_all(&record));
                if let Err(err) = written {
                    if err.kind() == io::ErrorKind::BrokenPipe {
                        broken_pipe = true;
                        shutdown.stop_now();
                    }
                }
            }
            Reply::Failed(failure) => {
                let shown = tag.map(|t| format!(" ({})", String::from_utf8_lossy(&t))).unwrap_or_default();
                eprintln!("muster: task {seq}{shown}: {failure}, every attempt");
            }
            _ => {}
        }
    };
    let keep_order = args.keep_order;
    let summary = persistent::run(
        &config,
        records,
        &shutdown,
        |seq, reply| {
            if !keep_order {
                print(seq, reply, &mut out);
                return;
            }
            held.insert(seq, reply);
            while let Some(reply) = held.remove(&next) {
                print(next, reply, &mut out);
                next += 1;
            }
        },
        |slot, line| eprintln!("worker {slot}: {}", String::from_utf8_lossy(line)),
    );
    for (seq, reply) in std::mem::take(&mut held) {
        print(seq, reply, &mut out);
    }
    let flushed = out.flush();
    broken_pipe |= flushed.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::BrokenPipe);
    if let Some(problem) = input_error.lock().unwrap_or_else(PoisonError::into_inner).take() {
        eprintln!("muster: {problem}");
    }
    if (args.summary || io::stderr().is_terminal()) && !broken_pipe {
        eprintln!(
            "muster: {} tasks: {} done, {} failed, {} not run; wall {:.2}s; {} workers started, {} crashed",
            summary.read,
            summary.done,
            summary.failed,
            summary.not_run,
            started.elapsed().as_secs_f64(),
            summary.workers_started,
            summary.crashes
        );
    }
    if let Some(signal) = shutdown.signal() {
        return Ok(u8::try_from(128 + signal).unwrap_or(130));
    }
    if broken_pipe {
        return Ok(141);
    }
    Ok(match summary.failed {
        n @ 0..=100 => n as u8,
        _ => 101,
    })
}

/// A drain waits for replies in flight; a worker that never answers must not hold it forever.
fn escalate_after_grace(shutdown: &Shutdown, grace: std::time::Duration) {
    let token = shutdown.clone();
    let _ = std::thread::Builder::new().name("muster-grace".into()).spawn(move || {
        token.wait();
        if !token.wait_stop_now_timeout(grace) {
            token.stop_now();
        }
    });
}
