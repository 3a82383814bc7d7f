//! `muster up`, `muster stop`, `muster status`: supervised long-running workers (the library's
//! `supervise` module) with merged, prefixed output and control over a Unix socket.

use std::io::{self, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use muster::process::watchdog::Watchdog;
use muster::supervise::control::{self, ControlError, ControlServer, Endpoint};
use muster::supervise::{
    describe_exit, format_duration, Event, Restart, State, Stream, SuperviseConfig, Supervisor,
};
use muster::Shutdown;

use crate::args::{ColorChoice, ControlArgs, RestartPolicy, UpArgs};
use crate::fatal::Fatal;
use crate::setup::{check_program, watchdog_command};

/// ANSI colours for worker prefixes, cycled by slot.
const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

pub fn up(args: UpArgs) -> Result<u8, Fatal> {
    let program = check_program(&args.command[0]).map_err(|mut fatal| {
        fatal.message = fatal.message.replace("pass --shell", "use: muster up -- sh -c '...'");
        fatal
    })?;
    let endpoint = Endpoint::in_runtime_dir(&args.name).map_err(control_fatal)?;
    let mut server = ControlServer::bind(endpoint).map_err(control_fatal)?;

    let shutdown = Shutdown::new();
    let _signals = shutdown.watch_signals().map_err(|err| Fatal {
        code: crate::fatal::USAGE_ERROR,
        message: format!("cannot watch signals: {err}"),
    })?;
    let workers = args.workers as usize;
    let colour = use_colour(args.color, io::stdout().is_terminal(), std::env::var_os("NO_COLOR"));
    let printer = Arc::new(Printer::new(workers, colour, shutdown.clone()));

    let mut config = SuperviseConfig::new(workers);
    config.restart = match args.restart {
        RestartPolicy::Always => Restart::Always,
        RestartPolicy::OnFailure => Restart::OnFailure,
        RestartPolicy::Never => Restart::Never,
    };
    config.max_restarts = args.max_restarts;
    config.backoff = args.backoff;
    config.backoff_max = args.backoff_max.max(args.backoff);
    config.stable = args.stable;
    config.grace = args.grace;
    config.capture_output = true;
    config.watchdog = watchdog_command().and_then(|command| Watchdog::start(command).ok()).map(Arc::new);

    let argv0 = args.command[0].clone();
    let rest = args.command[1..].to_vec();
    let command = move |_slot: usize| {
        let mut command = std::process::Command::new(&program);
        command.arg0(&argv0).args(&rest);
        command
    };
    let events = printer.clone();
    let supervisor = Supervisor::start(config, command, move |event| events.event(event)).map_err(|err| {
        Fatal { code: crate::fatal::USAGE_ERROR, message: format!("cannot start the supervisor: {err}") }
    })?;

    let by_request = Arc::new(AtomicBool::new(false));
    let (requested, token) = (by_request.clone(), shutdown.clone());
    server
        .serve(supervisor.board().clone(), move || {
            requested.store(true, Ordering::Release);
            token.trip();
        })
        .map_err(|err| Fatal {
            code: crate::fatal::USAGE_ERROR,
            message: format!("cannot serve the control socket: {err}"),
        })?;
    let name_flag = if args.name == "default" { String::new() } else { format!(" --name {}", args.name) };
    printer.note(&format!(
        "{workers} worker{} up; stop with Ctrl-C or `muster stop{name_flag}`, see `muster status{name_flag}`",
        if workers == 1 { "" } else { "s" }
    ));

    crossbeam_channel::select! {
        recv(shutdown.tripped()) -> _ => {}
        recv(supervisor.ended()) -> _ => {}
    }
    let stopping = shutdown.is_tripped();
    if stopping {
        let why = if by_request.load(Ordering::Acquire) {
            "`muster stop`"
        } else if printer.broken() {
            "standard output closed"
        } else {
            "signal"
        };
        printer.note(&format!(
            "stopping ({why}): SIGTERM to every worker, up to {} for them to exit, then SIGKILL{}",
            format_duration(args.grace),
            if why == "signal" { " (signal again to kill now)" } else { "" }
        ));
        // A second signal skips the rest of the grace period.
        let (handle, token) = (supervisor.stop_handle(), shutdown.clone());
        let _ = std::thread::Builder::new().name("muster-hurry".into()).spawn(move || {
            let _ = token.stopping_now().recv();
            handle.kill_now();
        });
    }
    let last = supervisor.stop();
    let table = muster::supervise::StatusBoard::render_rows(&last);
    server.finish(&table);
    printer.note(&format!("all {workers} workers reaped"));

    if let Some(signal) = shutdown.signal() {
        return Ok(u8::try_from(128 + signal).unwrap_or(130));
    }
    if printer.broken() {
        return Ok(141);
    }
    if stopping {
        return Ok(0);
    }
    let clean = last.iter().all(|w| w.state == State::Ended && w.last_exit.is_some_and(|s| s.success()));
    Ok(if clean { 0 } else { 1 })
}

/// `muster stop` and `muster status`.
pub fn control(args: ControlArgs, request: &str) -> Result<u8, Fatal> {
    let endpoint = Endpoint::in_runtime_dir(&args.name).map_err(control_fatal)?;
    let mut out = io::stdout().lock();
    match control::request(&endpoint, request, &mut out) {
        Ok(()) => Ok(0),
        Err(err) => Err(control_fatal(err)),
    }
}

fn control_fatal(err: ControlError) -> Fatal {
    let code = match err {
        ControlError::NotRunning { .. } | ControlError::Interrupted(_) => 1,
        _ => crate::fatal::USAGE_ERROR,
    };
    Fatal { code, message: err.to_string() }
}

/// Colour on a terminal unless `NO_COLOR` is set to something; `--color` decides otherwise.
pub fn use_colour(choice: ColorChoice, terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && no_color.is_none_or(|value| value.is_empty()),
    }
}

/// Writes worker lines and muster's notes, each line with one write so none is split.
struct Printer {
    stdout: Mutex<io::Stdout>,
    stderr: Mutex<io::Stderr>,
    prefixes: Vec<String>,
    broken: AtomicBool,
    shutdown: Shutdown,
}

impl Printer {
    fn new(workers: usize, colour: bool, shutdown: Shutdown) -> Printer {
        let width = workers.to_string().len();
        let prefixes = (1..=workers)
            .map(|slot| {
                let plain = format!("w{slot:<width$} |");
                match colour {
                    true => format!("\x1b[{}m{plain}\x1b[0m ", COLOURS[(slot - 1) % COLOURS.len()]),
                    false => format!("{plain} "),
                }
            })
            .collect();
        Printer {
            stdout: Mutex::new(io::stdout()),
            stderr: Mutex::new(io::stderr()),
            prefixes,
            broken: AtomicBool::new(false),
            shutdown,
        }
    }

    fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Writes whole `lines`, each with the worker's prefix, in one write.
    fn lines(&self, slot: usize, stream: Stream, lines: &[u8]) {
        let prefix = self.prefixes.get(slot - 1).map_or("", String::as_str);
        let count = lines.iter().filter(|&&b| b == b'\n').count();
        let mut whole = Vec::with_capacity(lines.len() + count * prefix.len());
        for line in lines.split_inclusive(|&b| b == b'\n') {
            whole.extend_from_slice(prefix.as_bytes());
            whole.extend_from_slice(line);
        }
        match stream {
            Stream::Stdout => {
                let written = self.stdout.lock().unwrap_or_else(PoisonError::into_inner).write_all(&whole);
                if written.is_err() && !self.broken.swap(true, Ordering::AcqRel) {
                    // Nobody reads us any more: stop the workers properly rather than run blind.
                    self.shutdown.trip();
                }
            }
            Stream::Stderr => {
                let _ = self.stderr.lock().unwrap_or_else(PoisonError::into_inner).write_all(&whole);
            }
        }
    }

    fn note(&self, text: &str) {
        let _ = writeln!(self.stderr.lock().unwrap_or_else(PoisonError::into_inner), "muster: {text}");
    }

    fn event(&self, event: Event<'_>) {
        match event {
            Event::Lines { slot, stream, lines } => self.lines(slot, stream, lines),
            Event::Started { slot, pid, restarts: 0 } => self.note(&format!("w{slot} started (pid {pid})")),
            Event::Started { slot, pid, restarts } => {
                self.note(&format!("w{slot} restarted (pid {pid}, restart {restarts})"))
            }
            Event::SpawnFailed { slot, error } => self.note(&format!("w{slot} could not start: {error}")),
            Event::Exited { slot, pid, status, uptime } => self.note(&format!(
                "w{slot} (pid {pid}) ended: {} after {}",
                describe_exit(status),
                format_duration(uptime)
            )),
            Event::Restarting { slot, delay, in_a_row, limit } => self.note(&format!(
                "w{slot} restarting in {} ({in_a_row} of {limit} restarts in a row)",
                format_duration(delay)
            )),
            Event::GaveUp { slot, in_a_row } => self.note(&format!(
                "w{slot} gave up after {in_a_row} restarts in a row; the other workers keep running"
            )),
            Event::Stopped { slot, pid, how } => self.note(&format!(
                "w{slot} (pid {pid}) {}: {}",
                if how.killed { "killed after the grace period" } else { "stopped" },
                describe_exit(how.status)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_the_terminal_and_no_color() {
        assert!(use_colour(ColorChoice::Auto, true, None));
        assert!(!use_colour(ColorChoice::Auto, false, None));
        assert!(!use_colour(ColorChoice::Auto, true, Some("1".into())));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(use_colour(ColorChoice::Auto, true, Some("".into())));
        assert!(use_colour(ColorChoice::Always, false, Some("1".into())));
        assert!(!use_colour(ColorChoice::Never, true, None));
    }

    #[test]
    fn prefixes_are_aligned_and_coloured_only_when_asked() {
        let plain = Printer::new(12, false, Shutdown::new());
        assert_eq!(plain.prefixes[0], "w1  | ");
        assert_eq!(plain.prefixes[11], "w12 | ");
        let coloured = Printer::new(2, true, Shutdown::new());
        assert_eq!(coloured.prefixes[1], "\x1b[33mw2 |\x1b[0m ");
    }
}
