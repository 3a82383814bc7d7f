//! The `muster` binary: parse flags, hand a config to the library, map the result to an exit
//! status. Everything else lives in the `muster` library crate.

mod args;
mod broker;
mod fatal;
mod gnu;
mod inputs;
mod manual;
mod outcome;
mod progress;
mod report;
mod run;
mod setup;
mod up;

use std::process::ExitCode;

use clap::Parser;

/// Writes one line to stderr. Unlike `eprintln!` it never panics: a closed or full stderr
/// (`2>&1 | head -1`) costs the message, not the run.
pub(crate) fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn main() -> ExitCode {
    // The orphan watchdog (see muster::process::watchdog) is this binary started as
    // `muster __watchdog`: not a subcommand of the interface (nor of its completions).
    if std::env::args_os().nth(1).is_some_and(|word| word == setup::WATCHDOG_WORD) {
        let token = std::env::var(muster::process::watchdog::MARKER_VAR).ok();
        muster::process::watchdog::serve(std::io::stdin().lock(), token.as_deref());
        return ExitCode::SUCCESS;
    }
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let gnu_fix = match err.get(clap::error::ContextKind::InvalidArg) {
                Some(clap::error::ContextValue::String(flag)) => gnu::instead_of(flag).map(|fix| (flag, fix)),
                _ => None,
            };
            match gnu_fix {
                // Only muster's own hint: clap's guesses ("a similar argument exists") mislead here.
                Some((flag, fix)) => {
                    say(format_args!("muster: {flag} is GNU parallel's, not muster's; {fix}"))
                }
                None => {
                    let _ = err.print();
                }
            }
            // --help and --version are not errors; everything else is a usage error: 255 for
            // every subcommand (1-101 count failed tasks, as in GNU parallel).
            return if err.use_stderr() { ExitCode::from(fatal::USAGE_ERROR) } else { ExitCode::SUCCESS };
        }
    };
    let result = match cli.command {
        args::Command::Run(run_args) => run::run(*run_args),
        args::Command::Up(up_args) => up::up(up_args),
        args::Command::Stop(control_args) => up::control(control_args, "stop"),
        args::Command::Report(report_args) => report::command(report_args),
        args::Command::Completions(completions) => {
            let mut command = <args::Cli as clap::CommandFactory>::command();
            clap_complete::generate(completions.shell, &mut command, "muster", &mut std::io::stdout());
            Ok(0)
        }
        args::Command::Man(man) => manual::command(man.subcommand.as_deref()),
        args::Command::Status(status) => match status.queue.clone() {
            Some(queue) => broker::status(status, &queue),
            None => up::control(status.control, if status.json { "status json" } else { "status" }),
        },
        args::Command::Submit(submit_args) => run::submit(*submit_args),
        args::Command::Worker(worker_args) => broker::worker(worker_args),
        args::Command::Drain(drain_args) => broker::drain(drain_args),
        args::Command::Results(results_args) => broker::results(results_args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(fatal) => {
            say(format_args!("muster: {}", fatal.message));
            ExitCode::from(fatal.code)
        }
    }
}
