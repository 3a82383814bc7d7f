//! `muster run`: turns the flags into a farm configuration and inputs, runs the farm with
//! signals, progress and a summary, and maps what happened to the exit status.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use muster::farm::{self, FarmConfig, Inputs, NoObserver, Observer, OutputMode, Source, Summary};
use muster::input::Link;
use muster::process::template::Template;
use muster::Shutdown;

use crate::args::{Jobs, RunArgs};
use crate::progress::Progress;

/// An error that ends muster before or outside the tasks, with its exit status.
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

/// `muster run`'s exit status for a usage error or bad input: GNU parallel's "other error",
/// apart from 1–101, which count failed tasks.
pub(crate) const USAGE_ERROR: u8 = 255;

pub(crate) fn usage(message: impl std::fmt::Display) -> Fatal {
    Fatal { code: USAGE_ERROR, message: message.to_string() }
}

/// `column` without the spaces and tabs around it.
fn trim_blanks(column: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = column.iter().position(|b| !blank(b)).unwrap_or(column.len());
    let end = column.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    &column[start..end]
}

/// The most bytes of inputs one command line gets with -X/-m: well under Linux's 2 MB
/// argument space, as GNU parallel keeps it.
const LINE_BYTES: usize = 128 * 1024;

/// How many columns `{N}` may name with --colsep.
const COLUMNS_MAX: usize = 10_000;

/// An input group after the command.
struct Group {
    /// `::::` (file names) rather than `:::` (values).
    files: bool,
    /// `:::+` / `::::+`: linked to the source before it.
    linked: bool,
    words: Vec<OsString>,
}

/// Splits `COMMAND ARGS... ::: A B :::+ 1 2 :::: FILE` into the command and its input groups.
fn split_groups(words: Vec<OsString>) -> (Vec<OsString>, Vec<Group>) {
    let mut command = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    for word in words {
        let marker = match word.as_encoded_bytes() {
            b":::" => Some((false, false)),
            b":::+" => Some((false, true)),
            b"::::" => Some((true, false)),
            b"::::+" => Some((true, true)),
            _ => None,
        };
        match (marker, groups.last_mut()) {
            (Some((files, linked)), _) => groups.push(Group { files, linked, words: Vec::new() }),
            (None, Some(group)) => group.words.push(word),
            (None, None) => command.push(word),
        }
    }
    (command, groups)
}

/// Opens an input file (`-` is stdin, which may be used once) as a stream source; it is made
/// interruptible once any header has been read from it.
fn open_source(path: &Path, stdin_used: &mut bool) -> Result<Source, Fatal> {
    let reader: Box<dyn io::BufRead + Send> = if path == Path::new("-") {
        if std::mem::replace(stdin_used, true) {
            return Err(usage("standard input (-) is given as an input source twice"));
        }
        Box::new(BufReader::new(io::stdin()))
    } else {
        let file = File::open(path).map_err(|err| usage(format!("cannot read {}: {err}", path.display())))?;
        Box::new(BufReader::new(file))
    };
    let name = if path == Path::new("-") { "stdin".to_owned() } else { path.display().to_string() };
    Ok(Source::Stream { name, reader })
}

/// `--header :`: takes the first record of each source as the names of its values (split into
/// columns' names by `colsep`). Streams are read only as far as their first record.
fn take_headers(
    sources: &mut [Source],
    separator: u8,
    colsep: Option<&regex::bytes::Regex>,
) -> Result<Vec<Vec<u8>>, Fatal> {
    let mut names = Vec::new();
    for source in sources.iter_mut() {
        let header = match source {
            Source::Values(values) if values.is_empty() => Vec::new(),
            Source::Values(values) => values.remove(0),
            Source::Stream { name, reader } => {
                let mut record = Vec::new();
                reader
                    .read_until(separator, &mut record)
                    .map_err(|err| usage(format!("reading the header of {name}: {err}")))?;
                if record.last() == Some(&separator) {
                    record.pop();
                }
                record
            }
        };
        match colsep {
            Some(colsep) => names.extend(colsep.split(&header).map(|c| trim_blanks(c).to_vec())),
            None => names.push(header),
        }
    }
    Ok(names)
}

/// The shell `--shell` asks for: the one named, or $SHELL when it is a POSIX shell, else sh.
fn shell_for(flag: &Option<Option<PathBuf>>) -> Option<OsString> {
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

fn stderr_writer() -> io::Result<File> {
    Ok(File::from(io::stderr().as_fd().try_clone_to_owned()?))
}

pub fn run(mut args: RunArgs) -> Result<u8, Fatal> {
    let Some(report) = args.report.take() else { return run_tasks(args) };
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
    let code = run_tasks(args)?;
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

fn run_tasks(mut args: RunArgs) -> Result<u8, Fatal> {
    let (command, groups) = split_groups(std::mem::take(&mut args.command));
    if command.is_empty() {
        return Err(usage("no command given before ':::'"));
    }
    let separator = if args.null { 0 } else { b'\n' };
    // Signals are watched before any input is read, and streams are read so that a blocked
    // read (a terminal, a stalled pipe) never holds up Ctrl-C.
    let shutdown = Shutdown::new();
    let _signals = shutdown.watch_signals().map_err(|err| usage(format!("cannot watch signals: {err}")))?;
    let mut sources = Vec::new();
    // Per source: linked to the one before it.
    let mut links = Vec::new();
    let mut stdin_used = false;
    let link = if args.link { Link::Wrap } else { Link::None };
    for path in &args.arg_files {
        sources.push(open_source(path, &mut stdin_used)?);
        links.push(link);
    }
    for (number, mut group) in groups.into_iter().enumerate() {
        // As in GNU parallel, `:::+` links to a group after the command, never to -a files.
        group.linked &= number > 0;
        if group.files {
            if group.words.is_empty() {
                return Err(usage("'::::' must be followed by at least one file name"));
            }
            // `::::+ F G` links every file of the group, as GNU parallel does.
            for word in &group.words {
                sources.push(open_source(Path::new(word), &mut stdin_used)?);
                links.push(if group.linked && !args.link { Link::Shortest } else { link });
            }
        } else {
            sources.push(Source::Values(group.words.into_iter().map(OsStringExt::into_vec).collect()));
            links.push(if group.linked && !args.link { Link::Shortest } else { link });
        }
    }
    let implicit_stdin = sources.is_empty();
    if implicit_stdin {
        let stdin = Source::Stream { name: "stdin".into(), reader: Box::new(BufReader::new(io::stdin())) };
        sources.push(stdin);
        links.push(Link::None);
    }
    let colsep = match &args.colsep {
        Some(pattern) => Some(
            regex::bytes::Regex::new(pattern).map_err(|err| usage(format!("--colsep {pattern:?}: {err}")))?,
        ),
        None => None,
    };
    let names = match args.header.as_deref() {
        None => Vec::new(),
        Some(":") => take_headers(&mut sources, separator, colsep.as_ref())?,
        Some(other) => {
            return Err(usage(format!(
                "--header {other:?}: only ':' (the first record names the values) is supported"
            )))
        }
    };
    // Streams are read on threads of their own from here on, so Ctrl-C never waits on them.
    let sources: Vec<Source> = sources.into_iter().map(|source| source.interruptible(&shutdown)).collect();
    let per_task = args.max_args.or(args.max_replace_args).map_or(1, |n| n as usize);
    if per_task > 1 && sources.len() > 1 {
        return Err(usage("-n/-N take one input source (as GNU parallel does)"));
    }
    // With --colsep the number of columns is only known as records come: {N} past the last
    // column is empty.
    let sources_count = sources.len();
    let values_per_task =
        if colsep.is_some() || args.context || args.many { COLUMNS_MAX } else { sources.len() * per_task };
    let template = Template::parse_named(&command, values_per_task, &names)
        .map_err(usage)?
        .shell_program(shell_for(&args.shell));
    if args.persistent {
        let gnu_joblog = args.joblog_format == crate::args::JoblogFormatArg::Gnu;
        let shaped = colsep.is_some()
            || !names.is_empty()
            || args.results.is_some()
            || args.pipe
            || args.context
            || args.many;
        if per_task > 1 || args.tagstring.is_some() || args.delay.is_some() || gnu_joblog || shaped {
            return Err(usage(
                "-n, -N, -X, -m, --pipe, --colsep, --header, --results, --tagstring, --delay and --joblog-format gnu are not available with --persistent",
            ));
        }
        return crate::persistent::run(&args, &template, command, sources, &links, separator, &shutdown);
    }
    let mut program_path = None;
    if !args.dry_run {
        if let Some(program) = template.program() {
            program_path = Some(check_program(&program)?);
        }
    }
    let mut inputs = if args.pipe {
        // --pipe: stdin (or the one file given) in chunks, each a task's stdin.
        let mut sources = sources;
        match (sources.pop(), sources.is_empty()) {
            (Some(Source::Stream { reader, .. }), true) => Inputs::blocks(reader, args.block, separator),
            _ => return Err(usage("--pipe reads one stream: stdin, or one -a/:::: file")),
        }
    } else {
        Inputs::linked(sources, &links, separator)
            .map_err(|err| usage(format!("reading inputs: {err}")))?
            .per_task(per_task)
    };
    if args.context || args.many {
        // As GNU parallel does: known inputs spread evenly over the jobs, each command line
        // kept well under the kernel's limit.
        let jobs = resolve_jobs(args.jobs, inputs.known_total(), false).max(1) as u64;
        let per_line = inputs.known_total().map_or(usize::MAX, |total| total.div_ceil(jobs).max(1) as usize);
        let command_bytes: usize = command.iter().map(|w| w.len() + 1).sum();
        inputs = inputs.per_task_bounded(per_line, LINE_BYTES.saturating_sub(command_bytes).max(1));
    }
    if let Some(colsep) = colsep {
        // As GNU parallel does with --colsep, columns lose the blanks around them.
        inputs = inputs.split_values(Box::new(move |value| {
            colsep.split(value).map(|c| trim_blanks(c).to_vec()).collect()
        }));
    }
    let known_total = inputs.known_total();
    // GNU parallel's options after the command belong to the command; say so if it explains
    // an empty run.
    let misplaced = implicit_stdin
        .then(|| command.iter().skip(1).find(|w| *w == "-a" || *w == "--arg-file" || *w == "--link"))
        .flatten()
        .map(|w| w.to_string_lossy().into_owned());

    let mut config = FarmConfig::new(template);
    config.jobs = resolve_jobs(args.jobs, known_total, false);
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
    config.watchdog = watchdog_command();
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

    let result = farm::run(config, inputs, stdout, stderr, &shutdown, observer);
    if let Some(bar) = &progress {
        bar.finish();
    }
    let summary = result.map_err(usage)?;
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
    if (args.summary || (interactive && !args.no_summary)) && !args.dry_run && !summary.broken_pipe {
        crate::say(describe(&summary, jobs));
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
    Ok(exit_code(&summary, shutdown.signal()))
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

fn exit_code(summary: &Summary, signal: Option<i32>) -> u8 {
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
    fn splits_command_and_groups() {
        let words =
            ["echo", "{1}", ":::", "a", "b", ":::+", "1", "::::", "f", "::::+", "g"].map(OsString::from);
        let (command, groups) = split_groups(words.to_vec());
        assert_eq!(command, ["echo", "{1}"]);
        let shape: Vec<(bool, bool, Vec<OsString>)> =
            groups.into_iter().map(|g| (g.files, g.linked, g.words)).collect();
        assert_eq!(
            shape,
            [
                (false, false, vec!["a".into(), "b".into()]),
                (false, true, vec!["1".into()]),
                (true, false, vec!["f".into()]),
                (true, true, vec!["g".into()])
            ]
        );
    }

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
