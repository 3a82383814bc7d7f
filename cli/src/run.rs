//! `muster run`: turns the flags into an engine configuration and inputs, runs the engine with
//! signals, progress and a summary, and maps what happened to the exit status.

use std::io::{self, IsTerminal, Write};

use muster::engine::persistent::{Framing, Workers};
use muster::engine::{self, NoObserver, Observer, OutputMode, RunConfig};
use muster::process::template::Template;
use muster::Shutdown;

use crate::args::{RunArgs, TimeLimit};
use crate::broker::Submission;
use crate::fatal::{usage, Fatal};
use crate::inputs;
use crate::outcome::{exit_code, tell_outcome};
use crate::progress::Progress;
use crate::setup::{
    announce_drain, check_program, resolve_jobs, shell_for, stderr_writer, stdout_writer, watchdog_command,
};

/// Tasks of one submission on the queue at once, unless -j says otherwise.
const SUBMIT_IN_FLIGHT: usize = 1000;

/// `muster submit`: a run whose tasks go to a queue.
pub fn submit(args: crate::args::SubmitArgs) -> Result<u8, Fatal> {
    let crate::args::SubmitArgs { broker, detach, pack, run } = args;
    let queue = muster::broker::Queue::new(&broker.queue).map_err(usage)?;
    // Flags about running a command belong to the workers (hidden from submit's help too).
    let run_only = [
        (run.shell.is_some(), "--shell"),
        (run.replace.is_some(), "-I"),
        (run.timeout.is_some(), "--timeout"),
        (run.halt.is_some(), "--halt"),
        (run.persistent, "--persistent"),
        (run.window != crate::args::DEFAULT_WINDOW, "--window"),
        (run.max_tasks_per_worker.is_some(), "--max-tasks-per-worker"),
        (run.framed, "--framed"),
        (run.dry_run, "--dry-run"),
        (run.report.is_some(), "--report"),
    ];
    if let Some((_, flag)) = run_only.iter().find(|(given, _)| *given) {
        return Err(usage(format!(
            "{flag} is not a submit flag: the workers run the tasks, so it belongs to them \
             (muster worker --queue {} [--timeout DUR] [--shell] COMMAND...)",
            queue.name()
        )));
    }
    let pack = pack.map(usize::from);
    run_tasks(run, Some(Submission { broker: broker.broker, queue, detach, pack }))
}

pub fn run(mut args: RunArgs) -> Result<u8, Fatal> {
    let Some(report) = args.report.take() else { return run_tasks(args, None) };
    if args.joblog_format == crate::args::JoblogFormatArg::Gnu {
        return Err(usage("--report reads muster's joblog columns, not --joblog-format gnu"));
    }
    // The report is drawn from the joblog; without one, a temporary one serves.
    let mut temporary = None;
    if args.joblog.is_none() {
        let dir =
            tempfile::tempdir().map_err(|err| usage(format!("cannot make a joblog for --report: {err}")))?;
        args.joblog = Some(dir.path().join("joblog"));
        temporary = Some(dir);
    }
    let joblog = args.joblog.clone();
    let code = run_tasks(args, None)?;
    // Written after an interrupt too: the joblog holds what ran.
    if let Some(joblog) = joblog {
        match crate::report::Report::read(&joblog) {
            Ok(summary) => crate::report::write_pictures(&summary, Some(&report), None)?,
            Err(err) => crate::say(format_args!("muster: no report: {err}")),
        }
    }
    drop(temporary);
    Ok(code)
}

fn run_tasks(mut args: RunArgs, submission: Option<Submission>) -> Result<u8, Fatal> {
    let (command, groups) = inputs::split_groups(std::mem::take(&mut args.command));
    match &submission {
        None if command.is_empty() => return Err(usage("no command given before ':::'")),
        Some(submission) if !command.is_empty() => {
            return Err(usage(format!(
                "submit takes inputs only (::: VALUES, :::: FILES, -a FILE or stdin), not a command: \
                 the queue carries data, and each worker runs its own command \
                 (muster worker --queue {} COMMAND...)",
                submission.queue.name()
            )))
        }
        _ => {}
    }
    let separator = if args.null { 0 } else { args.delimiter.unwrap_or(b'\n') };
    // -I STRING: the command's STRING is what {} is elsewhere.
    let command = match &args.replace {
        Some(string) => command.into_iter().map(|word| replace_in_word(word, string)).collect(),
        None => command,
    };
    // Signals are watched before any input is read, and streams are read so that a blocked
    // read (a terminal, a stalled pipe) never holds up Ctrl-C.
    let shutdown = Shutdown::new();
    let _signals = shutdown.watch_signals().map_err(|err| usage(format!("cannot watch signals: {err}")))?;
    let inputs::Sources { sources, links, names, colsep: splitter, implicit_stdin } =
        inputs::sources(&args, groups, separator, &shutdown)?;
    let colsep = splitter.is_some();
    let per_task = args.max_args.or(args.max_replace_args).map_or(1, |n| n as usize);
    if per_task > 1 && sources.len() > 1 {
        return Err(usage("-n/-N take one input source (as GNU parallel does)"));
    }
    // With --colsep the number of columns is only known as records come: {N} past the last
    // column is empty.
    let sources_count = sources.len();
    let values_per_task =
        if colsep || args.context || args.many { inputs::COLUMNS_MAX } else { sources.len() * per_task };
    let template = match &submission {
        // The workers hold the command; the joblog names the queue instead.
        Some(submission) => {
            Template::parse(&[format!("muster-queue:{}", submission.queue.name()).into()], values_per_task)
                .map_err(usage)?
        }
        None => Template::parse_named(&command, values_per_task, &names)
            .map_err(usage)?
            .shell_program(shell_for(&args.shell)),
    };
    if args.persistent {
        let gnu_joblog = args.joblog_format == crate::args::JoblogFormatArg::Gnu;
        let shaped =
            colsep || !names.is_empty() || args.results.is_some() || args.pipe || args.context || args.many;
        if per_task > 1 || args.tagstring.is_some() || args.delay.is_some() || gnu_joblog || shaped {
            return Err(usage(
                "-n, -N, -X, -m, --pipe, --colsep, --header, --results, --tagstring, --delay and --joblog-format gnu are not available with --persistent",
            ));
        }
        if matches!(args.timeout, Some(TimeLimit::OfMedian(_))) {
            return Err(usage("--timeout N% is not available with --persistent (a --timeout DUR is)"));
        }
        if template.substitutes() {
            return Err(usage(
                "replacement strings are not used with --persistent: each input goes to a worker's stdin",
            ));
        }
        if args.dry_run {
            return Err(usage(
                "--dry-run prints command lines; with --persistent every input goes to one command's stdin",
            ));
        }
    }
    // Persistent workers: the command is the worker program, started once per worker.
    let workers = match args.persistent {
        true => {
            let mut workers = Workers::new(check_program(&command[0])?, command[1..].to_vec());
            workers.window = args.window as usize;
            workers.framing =
                if args.framed { Framing::LengthPrefixed } else { Framing::Separated(separator) };
            workers.max_tasks_per_worker = args.max_tasks_per_worker;
            Some(workers)
        }
        false => None,
    };
    let mut program_path = None;
    if !args.dry_run && submission.is_none() && workers.is_none() {
        match template.program() {
            Some(program) => program_path = Some(check_program(&program)?),
            // A command word with replacement strings and spaces is no program: a shell line
            // written as GNU parallel takes it (`'echo {} | tr a-z A-Z'`). Every task would fail
            // to start; stop before the first, as for a missing command.
            None if !template.is_shell() && command[0].to_string_lossy().contains([' ', '\t']) => {
                return Err(Fatal {
                    code: 127,
                    message: format!(
                        "command not found: '{}' (it looks like a shell command line: pass --shell, as in muster run --shell '{}' ...)",
                        command[0].to_string_lossy(),
                        command[0].to_string_lossy()
                    ),
                });
            }
            None => {}
        }
    }
    let command_bytes: usize = command.iter().map(|w| w.len() + 1).sum();
    let shaping = inputs::Shaping { per_task, command_bytes, separator };
    let inputs = inputs::tasks(&args, sources, &links, splitter, &shaping)?;
    let known_total = inputs.known_total();
    // GNU parallel's options after the command belong to the command; say so if it explains
    // an empty run.
    let misplaced = implicit_stdin
        .then(|| command.iter().skip(1).find(|w| *w == "-a" || *w == "--arg-file" || *w == "--link"))
        .flatten()
        .map(|w| w.to_string_lossy().into_owned());

    let mut config = RunConfig::new(template);
    config.jobs = match (&submission, args.jobs) {
        // On a queue, -j is how many of this submission's tasks wait there at once.
        (Some(_), None) => SUBMIT_IN_FLIGHT,
        (_, jobs) => resolve_jobs(jobs, known_total, workers.is_some()),
    };
    config.persistent = workers;
    config.output = if args.line_buffer { OutputMode::LineBuffer } else { OutputMode::Group };
    config.tag = args.tag || args.tagstring.is_some();
    if let Some(tagstring) = &args.tagstring {
        config.tagstring = Some(
            Template::parse_named(std::slice::from_ref(tagstring), values_per_task, &names).map_err(usage)?,
        );
    }
    config.delay = args.delay.filter(|delay| !delay.is_zero());
    config.results = args.results.clone();
    config.pipe = args.pipe;
    config.many = (args.context || args.many).then_some((sources_count, args.context));
    config.keep_order = args.keep_order;
    config.retries = args.retries;
    // As with GNU parallel, a limit of 0 is no limit.
    match args.timeout {
        Some(TimeLimit::Fixed(limit)) => config.timeout = Some(limit).filter(|limit| !limit.is_zero()),
        Some(TimeLimit::OfMedian(fraction)) => config.timeout_of_median = Some(fraction),
        None => {}
    }
    config.grace = args.grace;
    config.halt = args.halt;
    config.resume = args.resume_mode();
    if args.joblog_format == crate::args::JoblogFormatArg::Gnu {
        if config.resume.is_some() {
            return Err(usage(
                "--resume reads muster's joblog columns; a --joblog-format gnu joblog cannot be resumed",
            ));
        }
        config.joblog_format = muster::journal::JoblogFormat::Gnu;
    }
    config.joblog = args.joblog;
    config.dry_run = args.dry_run;
    config.watchdog = if submission.is_some() { None } else { watchdog_command() };
    config.program_path = program_path;
    let jobs = config.jobs;

    let interactive = io::stderr().is_terminal();
    let show_progress = !args.dry_run && (args.progress || (interactive && !args.no_progress));
    let progress = show_progress.then(|| {
        let progress = Progress::new(known_total, interactive);
        if submission.is_some() {
            progress.for_queue()
        } else {
            progress
        }
    });
    announce_drain(&shutdown, args.grace, progress.as_ref().map(Progress::bar));
    let stdout = stdout_writer().map_err(|err| usage(format!("cannot use stdout: {err}")))?;
    let stderr = stderr_writer().map_err(|err| usage(format!("cannot use stderr: {err}")))?;
    let (stdout, stderr, observer): (Box<dyn Write + Send>, Box<dyn Write + Send>, &dyn Observer) =
        match &progress {
            Some(bar) => (Box::new(bar.writer(stdout)), Box::new(bar.writer(stderr)), bar),
            None => (Box::new(stdout), Box::new(stderr), &NoObserver),
        };

    let result = match submission {
        None => engine::run(config, inputs, stdout, stderr, &shutdown, observer).map(Some).map_err(usage),
        Some(submission) => crate::broker::submit(
            submission,
            config,
            inputs,
            args.retries,
            stdout,
            stderr,
            &shutdown,
            observer,
        ),
    };
    if let Some(bar) = &progress {
        bar.finish();
    }
    let Some(summary) = result? else { return Ok(0) };
    let summary_wanted = (args.summary || (interactive && !args.no_summary)) && !args.dry_run;
    tell_outcome(&summary, jobs, summary_wanted, misplaced);
    Ok(exit_code(&summary, shutdown.signal()))
}

/// `word` with every `string` in it made `{}` (for -I).
fn replace_in_word(word: std::ffi::OsString, string: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let (bytes, from) = (word.as_bytes(), string.as_bytes());
    if from.is_empty() || !bytes.windows(from.len()).any(|w| w == from) {
        return word;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at..].starts_with(from) {
            out.extend_from_slice(b"{}");
            at += from.len();
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}
