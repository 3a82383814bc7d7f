//! `muster run`: turns the flags into a farm configuration and inputs, runs the farm with
//! signals, progress and a summary, and maps what happened to the exit status.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use muster::farm::{self, FarmConfig, NoObserver, Observer, OutputMode, Summary};
use muster::process::template::Template;
use muster::Shutdown;

use crate::args::{Jobs, RunArgs};
use crate::inputs;
use crate::progress::Progress;

/// An error that ends muster before or outside the tasks, with its exit status.
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

/// Tasks of one submission on the queue at once, unless -j says otherwise.
const SUBMIT_IN_FLIGHT: usize = 1000;

/// `muster run`'s exit status for a usage error or bad input: GNU parallel's "other error",
/// apart from 1–101, which count failed tasks.
pub(crate) const USAGE_ERROR: u8 = 255;

pub(crate) fn usage(message: impl std::fmt::Display) -> Fatal {
    Fatal { code: USAGE_ERROR, message: message.to_string() }
}

/// The shell `--shell` asks for: the one named, or $SHELL when it is a POSIX shell, else sh.
pub(crate) fn shell_for(flag: &Option<Option<PathBuf>>) -> Option<OsString> {
    const POSIX: [&str; 8] = ["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash"];
    match flag {
        None => None,
        Some(Some(path)) => Some(path.clone().into_os_string()),
        Some(None) => {
            let from_env = std::env::var_os("SHELL").filter(|shell| {
                Path::new(shell).file_name().and_then(OsStr::to_str).is_some_and(|name| POSIX.contains(&name))
            });
            Some(from_env.unwrap_or_else(|| "sh".into()))
        }
    }
}

/// Finds `program` the way a shell would, and checks it can be executed. Returns its path,
/// so tasks skip the `PATH` search (one failed `execve` per `PATH` entry before it, per task).
pub(crate) fn check_program(program: &OsStr) -> Result<PathBuf, Fatal> {
    let shown = program.to_string_lossy();
    let hint = if shown.contains(' ') { " (to run a shell command line, pass --shell)" } else { "" };
    let not_found = || Fatal { code: 127, message: format!("command not found: {shown}{hint}") };
    let executable = |path: &Path| {
        std::fs::metadata(path).ok().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.as_encoded_bytes().contains(&b'/') {
        return match executable(Path::new(program)) {
            None => Err(not_found()),
            Some(false) => Err(Fatal { code: 126, message: format!("not executable: {shown}") }),
            Some(true) => Ok(PathBuf::from(program)),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut found_unexecutable = false;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        match executable(&candidate) {
            Some(true) => return Ok(candidate),
            Some(false) => found_unexecutable = true,
            None => {}
        }
    }
    if found_unexecutable {
        Err(Fatal { code: 126, message: format!("not executable: {shown}") })
    } else {
        Err(not_found())
    }
}

pub(crate) fn resolve_jobs(jobs: Option<Jobs>, known_total: Option<u64>, persistent: bool) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    match jobs {
        None => cpus,
        Some(Jobs::Count(n)) => n,
        Some(Jobs::PercentOfCpus(p)) => ((cpus as f64 * p / 100.0).round() as usize).max(1),
        Some(Jobs::RelativeToCpus(n)) => usize::try_from(cpus as i64 + n).unwrap_or(0).max(1),
        // Persistent workers each cost threads; a task farm's slots cost descriptors only.
        Some(Jobs::AsManyAsInputs) if persistent => known_total.map_or(256, |n| n as usize).clamp(1, 1024),
        Some(Jobs::AsManyAsInputs) => match known_total {
            Some(n) => (n as usize).max(1),
            None => farm::jobs_the_fd_limit_allows().min(10_000),
        },
    }
}

pub(crate) fn stdout_writer() -> io::Result<BufWriter<File>> {
    // Our own buffered handle on fd 1: whole outputs go out in few write calls.
    let fd = io::stdout().as_fd().try_clone_to_owned()?;
    Ok(BufWriter::with_capacity(64 * 1024, File::from(fd)))
}

pub(crate) fn stderr_writer() -> io::Result<File> {
    Ok(File::from(io::stderr().as_fd().try_clone_to_owned()?))
}

/// `muster submit`'s queue: where tasks go instead of running here.
pub(crate) struct Submission {
    pub(crate) broker: String,
    pub(crate) queue: muster::broker::Queue,
    pub(crate) detach: bool,
}

/// `muster submit`: a run whose tasks go to a queue.
pub fn submit(args: crate::args::SubmitArgs) -> Result<u8, Fatal> {
    let crate::args::SubmitArgs { broker, detach, run } = args;
    let queue = muster::broker::Queue::new(&broker.queue).map_err(usage)?;
    if run.persistent || run.dry_run || run.report.is_some() {
        return Err(usage(
            "--persistent, --dry-run and --report are not available with submit (the workers run the tasks)",
        ));
    }
    if run.timeout.is_some() || run.halt.is_some() {
        return Err(usage(
            "--timeout and --halt belong to the workers (muster worker --timeout), not to submit",
        ));
    }
    run_tasks(run, Some(Submission { broker: broker.broker, queue, detach }))
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
    let separator = if args.null { 0 } else { b'\n' };
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
        return crate::persistent::run(&args, &template, command, sources, &links, separator, &shutdown);
    }
    let mut program_path = None;
    if !args.dry_run && submission.is_none() {
        if let Some(program) = template.program() {
            program_path = Some(check_program(&program)?);
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

    let mut config = FarmConfig::new(template);
    config.jobs = match (&submission, args.jobs) {
        // On a queue, -j is how many of this submission's tasks wait there at once.
        (Some(_), None) => SUBMIT_IN_FLIGHT,
        (_, jobs) => resolve_jobs(jobs, known_total, false),
    };
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
    config.timeout = args.timeout.filter(|limit| !limit.is_zero());
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

    announce_drain(&shutdown, args.grace);
    let interactive = io::stderr().is_terminal();
    let show_progress = !args.dry_run && (args.progress || (interactive && !args.no_progress));
    let progress = show_progress.then(|| Progress::new(known_total, interactive));
    let stdout = stdout_writer().map_err(|err| usage(format!("cannot use stdout: {err}")))?;
    let stderr = stderr_writer().map_err(|err| usage(format!("cannot use stderr: {err}")))?;
    let (stdout, stderr, observer): (Box<dyn Write + Send>, Box<dyn Write + Send>, &dyn Observer) =
        match &progress {
            Some(bar) => (Box::new(bar.writer(stdout)), Box::new(bar.writer(stderr)), bar),
            None => (Box::new(stdout), Box::new(stderr), &NoObserver),
        };

    let result = match submission {
        None => farm::run(config, inputs, stdout, stderr, &shutdown, observer).map(Some).map_err(usage),
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

/// What muster says on stderr once the run is over: input or write trouble, a halt, the
/// summary with the first failed tasks, and a hint when an empty stdin is explained by an
/// option written after the command.
pub(crate) fn tell_outcome(summary: &Summary, jobs: usize, summary_wanted: bool, misplaced: Option<String>) {
    if let Some(problem) = summary.input_error.as_ref().or(summary.write_error.as_ref()) {
        crate::say(format_args!("muster: {problem}"));
    }
    if summary.halted {
        crate::say(format_args!(
            "muster: halted (--halt): {} task(s) failed; {} not started",
            summary.failures(),
            summary.not_run
        ));
    }
    if summary_wanted && !summary.broken_pipe {
        crate::say(describe(summary, jobs));
        if !summary.failed_tasks.is_empty() {
            let more = summary.failures().saturating_sub(summary.failed_tasks.len() as u64);
            let more = if more > 0 { format!("; and {more} more") } else { String::new() };
            crate::say(format_args!("muster: failed: {}{more}", summary.failed_tasks.join("; ")));
        }
    }
    if let (Some(option), 0) = (misplaced, summary.read) {
        crate::say(format_args!(
            "muster: no input was read from stdin; '{option}' after the command is passed to the command — put muster's options before the command"
        ));
    }
}

/// Tells the user, once, what the first signal did and how to stop now.
pub(crate) fn announce_drain(shutdown: &Shutdown, grace: std::time::Duration) {
    let token = shutdown.clone();
    // Detached: it waits for a trip that may never come, and ends with the process.
    let _ = std::thread::Builder::new().name("muster-announce".into()).spawn(move || {
        token.wait();
        if token.signal().is_some() && !token.is_stopping_now() {
            crate::say(format_args!(
                "muster: stopping: starting no new tasks; running ones get {}s to finish (signal again to stop now)",
                grace.as_secs_f64()
            ));
        }
    });
}

/// `muster __watchdog` from this very binary, when it can be found.
pub(crate) fn watchdog_command() -> Option<std::process::Command> {
    let exe: PathBuf = std::env::current_exe().ok()?;
    let mut command = std::process::Command::new(exe);
    command.arg("__watchdog");
    Some(command)
}

pub(crate) fn exit_code(summary: &Summary, signal: Option<i32>) -> u8 {
    if let Some(signal) = signal {
        return u8::try_from(128 + signal).unwrap_or(130);
    }
    if summary.broken_pipe {
        return 141;
    }
    match summary.failures() {
        0 if summary.input_error.is_some() || summary.write_error.is_some() => USAGE_ERROR,
        n @ 0..=100 => n as u8,
        _ => 101,
    }
}

/// The one-line summary: counts, times, speedup and efficiency.
fn describe(summary: &Summary, jobs: usize) -> String {
    let mut parts = vec![format!("{} done", summary.done), format!("{} failed", summary.failed)];
    for (count, what) in [
        (summary.timed_out, "timed out"),
        (summary.stopped, "stopped"),
        (summary.not_run, "not run"),
        (summary.skipped, "skipped (already done)"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {what}"));
        }
    }
    let wall = summary.wall.as_secs_f64();
    let busy = summary.task_time.as_secs_f64();
    let speedup = if wall > 0.0 { busy / wall } else { 0.0 };
    // Slots that never had a task do not count against efficiency.
    let used = jobs.min(usize::try_from(summary.read).unwrap_or(usize::MAX)).max(1);
    let efficiency = speedup / used as f64 * 100.0;
    format!(
        "muster: {} tasks: {}; wall {wall:.2}s, task time {busy:.2}s, speedup {speedup:.2}x on {jobs} jobs ({efficiency:.0}% efficiency)",
        summary.read,
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_count_failures() {
        let mut summary = Summary::default();
        assert_eq!(exit_code(&summary, None), 0);
        summary.failed = 3;
        assert_eq!(exit_code(&summary, None), 3);
        summary.failed = 100;
        assert_eq!(exit_code(&summary, None), 100);
        summary.timed_out = 1;
        assert_eq!(exit_code(&summary, None), 101);
        assert_eq!(exit_code(&summary, Some(15)), 143);
        assert_eq!(exit_code(&summary, Some(2)), 130);
    }

    #[test]
    fn program_lookup() {
        assert!(check_program(OsStr::new("sh")).is_ok());
        assert_eq!(check_program(OsStr::new("no-such-program-xyz")).map_err(|f| f.code), Err(127));
        assert_eq!(check_program(OsStr::new("/etc/passwd")).map_err(|f| f.code), Err(126));
        let spaced = check_program(OsStr::new("echo hi")).expect_err("not a program");
        assert!(spaced.message.contains("--shell"), "{}", spaced.message);
    }
}
