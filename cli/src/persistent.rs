//! `muster run --persistent`: inputs streamed through long-lived worker processes. The library
//! runs and settles them (`muster::engine::persistent::run_local`, on the engine's settle stage); this
//! maps flags onto it and reports as `muster run` does.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::sync::Arc;

use muster::engine::persistent::{self, LocalRun, PersistentConfig};
use muster::engine::{Inputs, NoObserver, Observer, Source};
use muster::input::Link;
use muster::process::template::Template;
use muster::process::watchdog::Watchdog;
use muster::Shutdown;

use crate::args::RunArgs;
use crate::fatal::{usage, Fatal, USAGE_ERROR};
use crate::outcome::{exit_code, tell_outcome};
use crate::progress::Progress;
use crate::setup::{
    announce_drain, check_program, resolve_jobs, stderr_writer, stdout_writer, watchdog_command,
};

pub fn run(
    args: &RunArgs,
    template: &Template,
    command: Vec<OsString>,
    sources: Vec<Source>,
    links: &[Link],
    separator: u8,
    shutdown: &Shutdown,
) -> Result<u8, Fatal> {
    if template.substitutes() {
        return Err(usage(
            "replacement strings are not used with --persistent: each input goes to a worker's stdin",
        ));
    }
    let program = check_program(&command[0])?;
    let inputs =
        Inputs::linked(sources, links, separator).map_err(|err| usage(format!("reading inputs: {err}")))?;
    let known_total = inputs.known_total();
    let mut config =
        PersistentConfig::new(program, command[1..].to_vec(), resolve_jobs(args.jobs, known_total, true));
    config.window = args.window as usize;
    config.separator = separator;
    config.retries = args.retries;
    config.max_tasks_per_worker = args.max_tasks_per_worker;
    config.grace = args.grace;
    config.watchdog = watchdog_command().and_then(|command| Watchdog::start(command).ok()).map(Arc::new);
    config.timeout = args.timeout.filter(|limit| !limit.is_zero());
    config.halt = args.halt;
    config.known_total = known_total;
    let run = LocalRun {
        keep_order: args.keep_order,
        tag: args.tag,
        joblog: args.joblog.clone(),
        resume: args.resume_mode(),
    };

    announce_drain(shutdown, args.grace);
    let interactive = io::stderr().is_terminal();
    let progress = (args.progress || (interactive && !args.no_progress))
        .then(|| Progress::new(known_total, interactive));
    let stdout = stdout_writer().map_err(|err| usage(format!("cannot use stdout: {err}")))?;
    let stderr = stderr_writer().map_err(|err| usage(format!("cannot use stderr: {err}")))?;
    let (stdout, stderr, observer): (Box<dyn Write + Send>, Box<dyn Write + Send>, &dyn Observer) =
        match &progress {
            Some(bar) => (Box::new(bar.writer(stdout)), Box::new(bar.writer(stderr)), bar),
            None => (Box::new(stdout), Box::new(stderr), &NoObserver),
        };
    let io =
        muster::engine::Io { stdout, stderr, shutdown, observer, settlement: &muster::source::NoSettlement };
    let sourced = inputs.map(|input| input.map(muster::source::Sourced::local));
    let result = persistent::run_local(&config, &run, sourced, io);
    if let Some(bar) = &progress {
        bar.finish();
    }
    let (summary, workers) = result.map_err(|err| Fatal { code: USAGE_ERROR, message: err.to_string() })?;
    if workers.protocol_breaks > 0 {
        crate::say(format_args!(
            "muster: {} worker(s) sent a reply with no task waiting for it and were replaced \
             (the protocol is exactly one reply per input, in order)",
            workers.protocol_breaks
        ));
    }
    let summary_wanted = args.summary || (interactive && !args.no_summary);
    tell_outcome(&summary, config.workers, summary_wanted, None);
    if summary_wanted && !summary.broken_pipe {
        crate::say(format_args!(
            "muster: {} workers started, {} crashed",
            workers.workers_started, workers.crashes
        ));
    }
    Ok(exit_code(&summary, shutdown.signal()))
}
