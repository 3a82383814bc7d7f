//! The command line, defined once: clap derive structs whose doc comments are `--help`, and
//! the parsers for muster's own value syntaxes (jobs, durations, halt specs).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use muster::engine::{FailThreshold, Halt, HaltWhen};
use muster::journal::ResumeMode;

const RUN_AFTER_HELP: &str = "\
Examples:
  ls *.jpg | muster run convert {} {.}.png              one task per input line
  muster run -j 8 --joblog run.log gzip -k ::: *.txt    ::: inputs, journaled
  muster run --joblog run.log --resume gzip -k ::: *.txt   after a crash: only what is missing
  muster run -k --tag curl -s {} :::: urls.txt          outputs in input order, tagged
  muster run echo {1}-{2} ::: a b :::+ 1 2              linked inputs: a-1, b-2
  muster run --timeout 30s --retries 2 --halt soon,fail=5 ./job.sh {} < inputs
  muster run --persistent -j 4 python3 worker.py < inputs   long-lived workers, a line each
  muster report run.log --html run.html                 what happened, as a timeline

Exit status:
  0        every task succeeded
  1-100    that many tasks failed (non-zero exit, signal, timeout, could not start)
  101      more than 100 tasks failed
  255      usage error or bad input (unknown flag, unreadable -a file, a joblog that is not one)
  126      the command is not executable
  127      the command was not found
  130/143  stopped by SIGINT/SIGTERM (first signal drains, second stops now)
  141      our standard output was closed by its reader (quietly)";

const UP_EXIT_STATUS_HELP: &str = "\
Exit status:
  0        stopped by `muster stop`, or every worker ended cleanly by itself
  1        every worker ended by itself and at least one failed or was given up on
  255      usage error, or a `muster up` with this --name is already running
  126/127  the command is not executable / not found
  130/143  stopped by SIGINT/SIGTERM (a second signal skips the grace period)
  141      our standard output was closed by its reader (workers stopped first)

`muster stop` and `muster status` exit 0 when answered, 1 when no `muster up` with that
name is running, 255 on other errors (as every subcommand's usage and I/O errors).";

/// Run work in parallel, shut it down cleanly, lose nothing.
#[derive(Debug, Parser)]
#[command(name = "muster", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run COMMAND once per input, in parallel.
    ///
    /// Inputs come from `::: a b c` groups (several groups combine as a cartesian product),
    /// `:::: FILE` or -a FILE (one per line, or NUL-separated with -0), or standard input;
    /// `:::+`/`::::+` link a group to the one before it (side by side), --link links them all.
    /// Replacement strings: {} {.} {/} {//} {/.} {#} (sequence) {%} (slot) {1} {2}...;
    /// with none, the input is appended as the last argument. No shell is involved unless
    /// --shell is given.
    #[command(after_help = RUN_AFTER_HELP)]
    Run(Box<RunArgs>),
    /// Start N copies of COMMAND and keep them running until stopped.
    ///
    /// Each worker leads its own process group and sees its index in MUSTER_WORKER. Output is
    /// merged line by line, each line prefixed with its worker (coloured on a terminal). A
    /// worker that ends is restarted as --restart says, with exponential backoff; one that
    /// keeps crashing is given up on. SIGINT/SIGTERM or `muster stop` stops every worker:
    /// SIGTERM, --grace, SIGKILL; muster exits once all are reaped.
    #[command(after_help = UP_EXIT_STATUS_HELP)]
    Up(UpArgs),
    /// Stop a running `muster up` and wait until every worker is reaped.
    Stop(ControlArgs),
    /// Summarise a run from its joblog: outcomes, failed tasks and why, the slowest attempts,
    /// the runtime spread, idle time per slot; --html draws a timeline of every attempt.
    ///
    /// Example: muster run --joblog log sleep ::: 1 2 3 && muster report log --html run.html
    Report(ReportArgs),
    /// Show each worker of a running `muster up` (state, pid, uptime, restarts, last exit);
    /// with --queue, a broker queue: pending, running per worker, done, failed, dead-lettered.
    Status(StatusArgs),
    /// Put tasks on a Redis queue for `muster worker`s on any machines, and (unless
    /// --detach) print their results as `muster run` would, with the same joblog and exit
    /// status.
    ///
    /// Inputs are given as for `run` (::: groups, :::: files, -a, stdin), with no command:
    /// the queue carries inputs only, and each worker runs the command it was started with.
    ///
    /// Example: muster submit --broker redis://db:6379 --queue thumbs ::: *.jpg
    #[command(
        mut_arg("command", |arg| {
            arg.required(false).value_name("INPUTS").help(
                "Input groups: `::: VALUES...`, `:::: FILES...`, and `:::+` / `::::+` to link a group to \
                 the one before it (or -a FILE, or stdin); no command: each worker runs its own",
            )
        }),
        mut_arg("jobs", |arg| {
            arg.help("Tasks on the queue at once, sent and not yet answered: N, +N, -N or N% of the CPUs (default: one per CPU)")
        }),
        mut_arg("shell", |arg| arg.hide(true)),
        mut_arg("replace", |arg| arg.hide(true)),
        mut_arg("timeout", |arg| arg.hide(true)),
        mut_arg("halt", |arg| arg.hide(true)),
        mut_arg("persistent", |arg| arg.hide(true)),
        mut_arg("window", |arg| arg.hide(true)),
        mut_arg("max_tasks_per_worker", |arg| arg.hide(true)),
        mut_arg("framed", |arg| arg.hide(true)),
        mut_arg("dry_run", |arg| arg.hide(true)),
        mut_arg("report", |arg| arg.hide(true)),
    )]
    Submit(Box<SubmitArgs>),
    /// Run tasks from a Redis queue with COMMAND, N at a time, until drained or stopped.
    ///
    /// Each task's input is substituted into COMMAND as with `run` ({} {.} {#}...; appended
    /// when none is given). The first SIGINT/SIGTERM (or `muster drain`) finishes the tasks
    /// held and reads no more; a second stops them, and the queue gives them to other
    /// workers. A task whose worker dies is taken over by another after the lease.
    ///
    /// Example: muster worker --broker redis://db:6379 --queue thumbs -j 8 convert {} {.}.png
    Worker(WorkerArgs),
    /// Ask every worker of a queue to finish the tasks it holds and stop.
    Drain(BrokerArgs),
    /// Print the results of detached submissions (`submit --detach`) and remove them.
    ///
    /// Each result's stdout goes to stdout and its stderr to stderr, in the order they were
    /// recorded; a failed task is named on stderr. The exit status is the number of failed
    /// tasks (at most 101), as for `run`. A result printed is removed from the queue, so each
    /// is printed once.
    ///
    /// Example: muster results --queue thumbs --wait
    Results(ResultsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    ///
    /// Example: muster completions bash > ~/.local/share/bash-completion/completions/muster
    Completions(CompletionsArgs),
    /// Print a manual page (roff) to stdout: muster's, or a subcommand's (muster-run(1), ...).
    ///
    /// Example: muster man > ~/.local/share/man/man1/muster.1; muster man run > .../muster-run.1
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print (run, up, stop, status, report, submit, worker,
    /// drain, results, completions, man); none for muster's own page.
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
}

/// `--window`'s default.
pub const DEFAULT_WINDOW: u32 = 256;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Tasks to run at once: N; +N or -N more or fewer than the CPUs; N% of the CPUs; 0 for as
    /// many as the inputs (when their number is not known: what the open-file limit allows, at
    /// most 10,000; with --persistent at most 1,024 workers). Default: one per CPU.
    #[arg(short = 'j', long = "jobs", visible_alias = "max-procs", short_alias = 'P', value_name = "N", value_parser = parse_jobs, allow_hyphen_values = true, help_heading = "Running")]
    pub jobs: Option<Jobs>,

    /// Use STRING instead of {} in the command (GNU's and xargs' -I): `-I X mv X X.bak`.
    #[arg(short = 'I', value_name = "STRING", value_parser = clap::builder::NonEmptyStringValueParser::new(), help_heading = "Input")]
    pub replace: Option<String>,

    /// Inputs end with DELIM instead of a newline: one byte, written as itself or as \n, \t,
    /// \0, \\ or \xHH (GNU's -d; -0 is -d '\0').
    #[arg(short = 'd', long = "delimiter", value_name = "DELIM", value_parser = parse_delimiter, conflicts_with = "null", help_heading = "Input")]
    pub delimiter: Option<u8>,

    /// Read inputs from FILE, one per line (repeatable: files combine like ::: groups); - is stdin.
    #[arg(short = 'a', long = "arg-file", value_name = "FILE", help_heading = "Input")]
    pub arg_files: Vec<PathBuf>,

    /// Split stdin into chunks of about --block bytes, cut at record ends, and give each task
    /// one chunk on its stdin (the command line gets no input).
    #[arg(long, help_heading = "Input")]
    pub pipe: bool,

    /// With --pipe: chunk size, e.g. 1M (the default), 500k, 2G (k, M, G are powers of 1000).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1M", requires = "pipe", help_heading = "Input")]
    pub block: usize,

    /// Put as many inputs in each task as fit on a command line, spread evenly over the jobs
    /// when their number is known; each word holding a replacement string is repeated per input.
    #[arg(short = 'X', conflicts_with_all = ["many", "max_args", "max_replace_args", "pipe"], help_heading = "Input")]
    pub context: bool,

    /// Like -X, but a word that is just {} becomes one argument per input, and other words get
    /// the inputs joined by spaces.
    #[arg(short = 'm', conflicts_with_all = ["max_args", "max_replace_args", "pipe"], help_heading = "Input")]
    pub many: bool,

    /// Put up to N inputs in each task, appended to the command (GNU's -n).
    #[arg(short = 'n', long = "max-args", value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "max_replace_args", help_heading = "Input")]
    pub max_args: Option<u32>,

    /// Put N inputs in each task, as {1}..{N} (GNU's -N).
    #[arg(short = 'N', long = "max-replace-args", value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Input")]
    pub max_replace_args: Option<u32>,

    /// Split each input into columns at REGEX (e.g. '\t', ',', ' +'): {1}, {2}... are columns.
    #[arg(long, value_name = "REGEX", help_heading = "Input")]
    pub colsep: Option<String>,

    /// The first record of each input source names its values (or, with --colsep, its
    /// columns): {NAME} in the command. Only ':' (one header line) is supported.
    #[arg(long, value_name = ":", help_heading = "Input")]
    pub header: Option<String>,

    /// Take the input sources side by side instead of every combination (a shorter one wraps).
    #[arg(long, help_heading = "Input")]
    pub link: bool,

    /// Inputs are separated by NUL bytes instead of newlines.
    #[arg(short = '0', long = "null", help_heading = "Input")]
    pub null: bool,

    /// Run the command line through a shell: $SHELL when it is a POSIX shell (bash, dash, zsh,
    /// ksh…), else sh; --shell=PATH to choose. Substituted inputs are quoted safely.
    #[arg(long, value_name = "PATH", num_args = 0..=1, require_equals = true, help_heading = "Running")]
    pub shell: Option<Option<PathBuf>>,

    /// Print outputs in input order (holding back at most a bounded window of tasks).
    #[arg(short = 'k', long = "keep-order", help_heading = "Output")]
    pub keep_order: bool,

    /// Print each task's output whole when it ends (the default).
    #[arg(long, conflicts_with = "line_buffer", help_heading = "Output")]
    pub group: bool,

    /// Pass output on line by line as it comes; lines are never split or mixed.
    #[arg(long = "line-buffer", help_heading = "Output")]
    pub line_buffer: bool,

    /// Keep each task's output in files instead of printing it: a folder in GNU parallel's
    /// layout (DIR/1/VALUE/stdout, stderr, seq), or one PATH.csv / PATH.json with a row each.
    #[arg(long, value_name = "DIR", conflicts_with = "line_buffer", help_heading = "Output")]
    pub results: Option<PathBuf>,

    /// Prefix every output line with STR and a tab; replacement strings work in it ({#}, {%},
    /// {}, {1}...).
    #[arg(long, value_name = "STR", help_heading = "Output")]
    pub tagstring: Option<OsString>,

    /// Prefix every output line with the task's input and a tab.
    #[arg(long, help_heading = "Output")]
    pub tag: bool,

    /// Journal every finished attempt to FILE (GNU parallel's joblog columns, plus muster's).
    #[arg(long, value_name = "FILE", help_heading = "Journal")]
    pub joblog: Option<PathBuf>,

    /// The joblog's columns: muster (GNU parallel's and muster's, resumable, what `muster
    /// report` reads) or gnu (GNU parallel's nine, for tools that read those).
    #[arg(long = "joblog-format", value_enum, value_name = "FORMAT", default_value_t = JoblogFormatArg::Muster, requires = "joblog", help_heading = "Journal")]
    pub joblog_format: JoblogFormatArg,

    /// Skip tasks the joblog shows as done or failed; run the rest.
    #[arg(long, requires = "joblog", conflicts_with = "resume_failed", help_heading = "Journal")]
    pub resume: bool,

    /// Skip tasks the joblog shows as done; run failed ones again.
    #[arg(long = "resume-failed", requires = "joblog", help_heading = "Journal")]
    pub resume_failed: bool,

    /// Run a failing task up to N more times.
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Failures")]
    pub retries: u32,

    /// Stop a task (its whole process group) after DUR (e.g. 30s, 500ms, 2m; 0: no limit), or
    /// after N% of the median run time of the tasks done so far (e.g. 300%, as GNU parallel).
    #[arg(long, value_name = "DUR|N%", value_parser = parse_time_limit, help_heading = "Failures")]
    pub timeout: Option<TimeLimit>,

    /// Stop early on failures: now|soon[,fail=N|P%] (now: stop running tasks; soon: start no more).
    #[arg(long, value_name = "SPEC", value_parser = parse_halt, help_heading = "Failures")]
    pub halt: Option<Halt>,

    /// Wait at least DUR between starting two tasks (e.g. to spare a rate-limited service).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Running")]
    pub delay: Option<Duration>,

    /// Time tasks get after a stop request, and again between SIGTERM and SIGKILL.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "10s", help_heading = "Shutdown")]
    pub grace: Duration,

    /// Show progress on stderr: a bar on a terminal (the default there), else a status line
    /// every 2 seconds and one at the end.
    #[arg(long, conflicts_with = "no_progress", help_heading = "Output")]
    pub progress: bool,

    /// Never show a progress bar.
    #[arg(long = "no-progress", help_heading = "Output")]
    pub no_progress: bool,

    /// Keep -j long-lived worker processes and stream inputs through them: one input record per
    /// line on a worker's stdin, one result line back on its stdout. (Each result is one
    /// record, so --group and --line-buffer print the same.)
    #[arg(long, conflicts_with_all = ["shell", "dry_run"], help_heading = "Persistent workers")]
    pub persistent: bool,

    /// With --persistent: most tasks in flight per worker (fewer when tasks are slow).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WINDOW, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Persistent workers")]
    pub window: u32,

    /// With --persistent: replace a worker after N tasks (for leaky workers).
    #[arg(
        long = "max-tasks-per-worker",
        value_name = "N",
        requires = "persistent",
        help_heading = "Persistent workers"
    )]
    pub max_tasks_per_worker: Option<u64>,

    /// With --persistent: binary records both ways, each its length (4 bytes, little-endian)
    /// then its bytes, instead of lines (a record may then hold any byte).
    #[arg(long, requires = "persistent", conflicts_with = "null", help_heading = "Persistent workers")]
    pub framed: bool,

    /// Print the commands that would run, and run nothing.
    #[arg(long = "dry-run", help_heading = "Running")]
    pub dry_run: bool,

    /// Print a summary at the end (the default on a terminal): counts, wall and task time,
    /// speedup, and the first failed tasks.
    #[arg(long, conflicts_with = "no_summary", help_heading = "Output")]
    pub summary: bool,

    /// No summary at the end, even on a terminal.
    #[arg(long = "no-summary", help_heading = "Output")]
    pub no_summary: bool,

    /// When the run ends (also after Ctrl-C), write its HTML report (as `muster report
    /// --html`) to FILE. Without --joblog a temporary joblog is kept for it.
    #[arg(long, value_name = "FILE", help_heading = "Journal")]
    pub report: Option<PathBuf>,

    /// GNU parallel's citation notice; muster has none (accepted so scripts keep working).
    #[arg(long = "will-cite", hide = true)]
    pub will_cite: bool,

    /// The command and its arguments, then optionally input groups: `::: VALUES...`,
    /// `:::: FILES...`, and `:::+` / `::::+` to link a group to the one before it.
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of workers.
    #[arg(short = 'n', long = "workers", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: u32,

    /// When a worker that ended is started again.
    #[arg(long, value_enum, default_value_t = RestartPolicy::OnFailure)]
    pub restart: RestartPolicy,

    /// Restarts in a row after which a crashing worker is given up on.
    #[arg(long = "max-restarts", value_name = "N", default_value_t = 5)]
    pub max_restarts: u32,

    /// Delay before the first restart; it doubles with each restart in a row.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "100ms")]
    pub backoff: Duration,

    /// The longest the backoff grows.
    #[arg(long = "backoff-max", value_name = "DUR", value_parser = parse_duration, default_value = "30s")]
    pub backoff_max: Duration,

    /// A worker that ran this long has its count of restarts in a row reset.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "10s")]
    pub stable: Duration,

    /// Time between SIGTERM and SIGKILL when stopping.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "10s")]
    pub grace: Duration,

    /// Name of this group of workers, for `muster stop` / `muster status` (several can run).
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub name: String,

    /// Colour the worker prefixes: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// The command and its arguments.
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartPolicy {
    /// Whatever the exit status.
    Always,
    /// Only after a non-zero exit or death by a signal.
    OnFailure,
    /// Never.
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `--joblog-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum JoblogFormatArg {
    Muster,
    Gnu,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The joblog of a `muster run` (with or without --persistent).
    #[arg(value_name = "JOBLOG")]
    pub joblog: PathBuf,

    /// Print the summary as one JSON document instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also write a self-contained HTML report (timeline, concurrency, histogram, failures).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Also write the timeline alone as SVG.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub control: ControlArgs,

    /// A broker queue's status instead of a `muster up`'s.
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,

    /// The Redis server of --queue (or from MUSTER_BROKER, which keeps a password out of `ps`).
    #[arg(long, value_name = "URL", env = "MUSTER_BROKER", hide_env_values = true, default_value = DEFAULT_BROKER)]
    pub broker: String,

    /// Print a JSON array (worker, state, pid, uptime_s, restarts, exit_code, exit_signal).
    #[arg(long)]
    pub json: bool,
}

/// Where the queue is when --broker is not given.
pub const DEFAULT_BROKER: &str = "redis://127.0.0.1:6379";

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// The Redis server: redis://[user:password@]host[:port][/db], or rediss://… for TLS. Also
    /// taken from MUSTER_BROKER, which keeps a password out of the command line (`ps`).
    #[arg(long, value_name = "URL", env = "MUSTER_BROKER", hide_env_values = true, default_value = DEFAULT_BROKER)]
    pub broker: String,

    /// The queue's name (letters, digits, _ - . :).
    #[arg(long, value_name = "NAME")]
    pub queue: String,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// Only this submission's results (the id `submit --detach` printed); others are left.
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,

    /// Keep printing results until no task of the queue is left unfinished.
    #[arg(long)]
    pub wait: bool,

    /// One JSON object per line per result (job, seq, input, outcome, worker, attempt, exit,
    /// signal, runtime, stdout, stderr, error) instead of the tasks' output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// Put the tasks on the queue and return at once (results stay on the queue).
    #[arg(long)]
    pub detach: bool,

    /// Up to N tasks travel as one queue entry (1-256). By default quick tasks are packed once
    /// their first results show them quick (about 20 ms of work an entry), and a --detach
    /// submission, which sees no results, sends one task an entry: say N when tasks are
    /// known to be quick. A pack goes to one worker, which holds what it cannot start yet.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub pack: Option<u16>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// Tasks to run at once (as for `run`; default one per CPU).
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = parse_jobs, allow_hyphen_values = true)]
    pub jobs: Option<Jobs>,

    /// How long a task stays this worker's without a heartbeat; after it, another worker
    /// takes it over. Heartbeats come every third of it; each renews every task held (two
    /// Redis commands a task), so a longer lease costs Redis less.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "10s")]
    pub lease: Duration,

    /// Results nobody has read for this long are dropped from the queue (those of a submitter
    /// killed before it read them, or of a detached submission never fetched).
    #[arg(long = "results-ttl", value_name = "DUR", value_parser = parse_duration, default_value = "24h")]
    pub results_ttl: Duration,

    /// Time limit per attempt (a task over it fails, and may be retried elsewhere).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// On a second signal (stop now): time between SIGTERM and SIGKILL.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "10s")]
    pub grace: Duration,

    /// Run COMMAND through a shell (inputs are quoted); optionally which shell.
    #[arg(long, value_name = "SHELL", num_args = 0..=1, require_equals = true)]
    pub shell: Option<Option<PathBuf>>,

    /// This worker's name in `muster status` (default: host-pid-random, unique). A name is held
    /// while its worker is alive: a second live worker of the same name is refused.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Keep -j long-lived worker processes and stream the queue's inputs through them: one
    /// record per line on a process's stdin, one result line back on its stdout.
    #[arg(long, conflicts_with = "shell")]
    pub persistent: bool,

    /// With --persistent: most tasks in flight per process (the worker holds -j × this many).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), requires = "persistent")]
    pub window: u32,

    /// With --persistent: replace a process after N tasks (for leaky workers).
    #[arg(long = "max-tasks-per-worker", value_name = "N", requires = "persistent")]
    pub max_tasks_per_worker: Option<u64>,

    /// With --persistent: binary records both ways, each its length (4 bytes, little-endian)
    /// then its bytes, instead of lines (what `python -m muster._worker MODULE:FUNCTION`
    /// speaks, for a Python pool's tasks).
    #[arg(long, requires = "persistent")]
    pub framed: bool,

    /// The command each task runs, with replacement strings.
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Which `muster up` (its --name).
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub name: String,
}

impl RunArgs {
    /// What `--resume` / `--resume-failed` ask to skip.
    pub fn resume_mode(&self) -> Option<ResumeMode> {
        match (self.resume, self.resume_failed) {
            (true, _) => Some(ResumeMode::SkipFinished),
            (_, true) => Some(ResumeMode::SkipDone),
            _ => None,
        }
    }
}

/// A `-j` value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jobs {
    /// Exactly this many.
    Count(usize),
    /// This percentage of the CPUs.
    PercentOfCpus(f64),
    /// The CPUs plus (or minus) this many (`-j +2`, `-j -1`), at least 1.
    RelativeToCpus(i64),
    /// As many as inputs allow (`-j 0`).
    AsManyAsInputs,
}

pub fn parse_jobs(text: &str) -> Result<Jobs, String> {
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.parse::<f64>() {
            Ok(p) if p > 0.0 && p.is_finite() => Ok(Jobs::PercentOfCpus(p)),
            _ => Err(format!("'{text}' is not a positive percentage")),
        };
    }
    if text.starts_with(['+', '-']) {
        return text
            .parse::<i64>()
            .map(Jobs::RelativeToCpus)
            .map_err(|_| format!("'{text}' is not a number of jobs (N, +N, -N, N%, or 0)"));
    }
    match text.parse::<usize>() {
        Ok(0) => Ok(Jobs::AsManyAsInputs),
        Ok(n) => Ok(Jobs::Count(n)),
        Err(_) => Err(format!("'{text}' is not a number of jobs (N, +N, -N, N%, or 0)")),
    }
}

/// A one-byte input delimiter, as GNU parallel's -d writes it: the byte itself or a C escape.
pub fn parse_delimiter(text: &str) -> Result<u8, String> {
    let byte = match text {
        "\\n" => Some(b'\n'),
        "\\t" => Some(b'\t'),
        "\\r" => Some(b'\r'),
        "\\0" => Some(0),
        "\\\\" => Some(b'\\'),
        _ => match text.strip_prefix("\\x") {
            Some(hex) => u8::from_str_radix(hex, 16).ok(),
            None => match text.as_bytes() {
                [one] => Some(*one),
                _ => None,
            },
        },
    };
    byte.ok_or_else(|| {
        format!("'{text}': muster's delimiter is one byte (a character, or \\n, \\t, \\0, \\\\, \\xHH)")
    })
}

/// `--block`: bytes, with an optional k, M, G or T (powers of 1000, as GNU parallel has them).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: f64 = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "m" | "M" => 1e6,
        "g" | "G" => 1e9,
        "t" | "T" => 1e12,
        _ => return Err(format!("'{text}': unknown unit '{unit}' (use k, M, G or T)")),
    };
    match number.parse::<f64>() {
        Ok(value) if value * scale >= 1.0 && (value * scale).is_finite() => Ok((value * scale) as usize),
        _ => Err(format!("'{text}' is not a size (e.g. 1M, 500k)")),
    }
}

/// Parses `1.5`, `10s`, `250ms`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.starts_with('-') {
        return Err(format!("'{text}': a duration cannot be negative (0 means none)"));
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("'{text}': unknown unit '{unit}' (use ms, s, m or h)")),
    };
    let value: f64 =
        number.parse().map_err(|_| format!("'{text}' is not a duration (e.g. 30s, 500ms, 2m)"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("'{text}' is not a valid duration"))
}

/// `--timeout`: a fixed limit, or a multiple of the median run time of the tasks done.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeLimit {
    Fixed(Duration),
    /// 2.0 for `200%`.
    OfMedian(f64),
}

/// Parses a duration, or `N%` (N over 100) of the median run time.
pub fn parse_time_limit(text: &str) -> Result<TimeLimit, String> {
    let Some(percent) = text.strip_suffix('%') else {
        return parse_duration(text).map(TimeLimit::Fixed);
    };
    match percent.parse::<f64>() {
        Ok(percent) if percent > 100.0 && percent.is_finite() => Ok(TimeLimit::OfMedian(percent / 100.0)),
        Ok(_) => Err(format!(
            "'{text}': a limit in % of the median run time must be over 100% (at or under it, half the tasks would be stopped)"
        )),
        Err(_) => Err(format!("'{text}' is not a percentage (e.g. 300%)")),
    }
}

/// Parses `now|soon[,fail=N|P%]`.
pub fn parse_halt(text: &str) -> Result<Halt, String> {
    let (when, rest) = text.split_once(',').unwrap_or((text, "fail=1"));
    let when = match when {
        "now" => HaltWhen::Now,
        "soon" => HaltWhen::Soon,
        _ => return Err(format!("'{text}': --halt starts with 'now' or 'soon'")),
    };
    let Some(value) = rest.strip_prefix("fail=") else {
        return Err(format!("'{text}': expected fail=N or fail=P% after the comma"));
    };
    let threshold = match value.strip_suffix('%') {
        Some(percent) => match percent.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => FailThreshold::Percent(p),
            _ => return Err(format!("'{text}': the percentage must be in (0, 100]")),
        },
        None => match value.parse::<u64>() {
            Ok(n) if n >= 1 => FailThreshold::Count(n),
            _ => return Err(format!("'{text}': fail= needs a count of at least 1")),
        },
    };
    Ok(Halt { when, threshold })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_values() {
        assert_eq!(parse_jobs("4"), Ok(Jobs::Count(4)));
        assert_eq!(parse_jobs("0"), Ok(Jobs::AsManyAsInputs));
        assert_eq!(parse_jobs("50%"), Ok(Jobs::PercentOfCpus(50.0)));
        assert_eq!(parse_jobs("+0"), Ok(Jobs::RelativeToCpus(0)), "+0 is the CPUs, not unlimited");
        assert_eq!(parse_jobs("-1"), Ok(Jobs::RelativeToCpus(-1)));
        assert!(parse_jobs("+x").is_err());
        assert!(parse_jobs("0%").is_err());
        assert!(parse_jobs("many").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1M"), Ok(1_000_000));
        assert_eq!(parse_size("100k"), Ok(100_000));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1Q").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400").is_err());
    }

    #[test]
    fn halt_specs() {
        assert_eq!(
            parse_halt("now,fail=3"),
            Ok(Halt { when: HaltWhen::Now, threshold: FailThreshold::Count(3) })
        );
        assert_eq!(
            parse_halt("soon,fail=20%"),
            Ok(Halt { when: HaltWhen::Soon, threshold: FailThreshold::Percent(20.0) })
        );
        assert_eq!(parse_halt("soon"), Ok(Halt { when: HaltWhen::Soon, threshold: FailThreshold::Count(1) }));
        assert!(parse_halt("later,fail=1").is_err());
        assert!(parse_halt("now,fail=0").is_err());
        assert!(parse_halt("now,done=1").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
