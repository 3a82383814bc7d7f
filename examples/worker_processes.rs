//! The seed's master that starts 4 worker processes running forever — stopped properly.
//!
//! The seed starts `multiprocessing.Process` workers that print the time every second and
//! leaves stopping them to Ctrl-C. Here the master supervises the workers (this same program,
//! re-run with `--worker`) with the library's [`Supervisor`]: each runs in its own process
//! group, one that crashes is restarted after a backoff, and on `--seconds N`, Ctrl-C or
//! SIGTERM all are stopped: SIGTERM, a shared grace period, SIGKILL for any that ignore it,
//! and every one reaped. Workers also get a parent-death signal, so even `kill -9` of the
//! master leaves none behind. (`muster up -n 4 -- CMD` is the same machinery as a command.)
//!
//! Options: `--workers N` (default 4), `--seconds S` (default: until Ctrl-C), `--grace MS`
//! (default 2000), `--stubborn` (workers ignore SIGTERM, to show the escalation to SIGKILL).
//!
//! Run: `cargo run --example worker_processes -- --seconds 3`

mod common;

use std::process::Command;
use std::time::Duration;

use muster::supervise::{describe_exit, Event, SuperviseConfig, Supervisor};
use muster::Shutdown;

fn fail(msg: &str) -> ! {
    eprintln!("worker_processes: {msg}");
    std::process::exit(1);
}

fn main() {
    let options = common::Options::parse(&["workers", "seconds", "grace", "worker", "parent"], &["stubborn"]);
    match options.optional::<usize>("worker") {
        Some(slot) => worker(slot, options.value("parent", 0), options.flag("stubborn")),
        None => master(&options),
    }
}

fn master(options: &common::Options) {
    let workers: usize = options.value("workers", 4);
    let grace = Duration::from_millis(options.value("grace", 2000));
    let seconds: Option<f64> = options.optional("seconds");
    let stubborn = options.flag("stubborn");
    let exe = std::env::current_exe().unwrap_or_else(|err| fail(&format!("cannot find myself: {err}")));

    println!("Entered main...");
    let shutdown = Shutdown::new();
    let _signals =
        shutdown.watch_signals().unwrap_or_else(|err| fail(&format!("cannot watch signals: {err}")));
    let mut config = SuperviseConfig::new(workers);
    config.grace = grace;
    let master_pid = std::process::id().to_string();
    let command = move |slot: usize| {
        let mut cmd = Command::new(&exe);
        cmd.args(["--worker", &slot.to_string(), "--parent", &master_pid]);
        if stubborn {
            cmd.arg("--stubborn");
        }
        cmd
    };
    let supervisor = Supervisor::start(config, command, report)
        .unwrap_or_else(|err| fail(&format!("cannot start workers: {err}")));

    match seconds.map(Duration::try_from_secs_f64) {
        Some(Ok(limit)) => {
            shutdown.wait_timeout(limit);
        }
        Some(Err(_)) => fail("--seconds must be a non-negative number"),
        None => shutdown.wait(),
    }

    println!("master: stopping {workers} workers (grace {} ms)", grace.as_millis());
    supervisor.stop();
    println!("master: all workers stopped");
    if let Some(signal) = shutdown.signal() {
        std::process::exit(128 + signal);
    }
}

/// The master's log of what happens to its workers.
fn report(event: Event<'_>) {
    match event {
        Event::Started { slot, pid, .. } => println!("master: started worker {slot} (pid {pid})"),
        Event::SpawnFailed { slot, error } => println!("master: worker {slot} could not start: {error}"),
        Event::Exited { slot, status, .. } => {
            println!("master: worker {slot} died ({})", describe_exit(status))
        }
        Event::Restarting { slot, delay, .. } => {
            println!("master: restarting worker {slot} in {} ms", delay.as_millis())
        }
        Event::GaveUp { slot, .. } => println!("master: worker {slot} keeps crashing; giving up on it"),
        Event::Stopped { slot, how, .. } => {
            let verdict = if how.killed { "killed after the grace period" } else { "stopped" };
            println!("master: worker {slot} {verdict} ({})", how.status);
        }
        Event::Lines { .. } => {} // output is not captured: workers print straight to stdout
    }
}

fn worker(slot: usize, parent: u32, stubborn: bool) {
    // Die with the master, even if it is killed with SIGKILL. The parent may have died before
    // this line ran, so check it after asking.
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)).is_err()
        || rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get() as u32) != Some(parent)
    {
        std::process::exit(1);
    }
    let shutdown = Shutdown::new();
    let _guard = if stubborn {
        // Catching SIGTERM into a flag nobody reads: the worker ignores it.
        let ignored = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGTERM, ignored).map(|_| None)
    } else {
        shutdown.watch_signals().map(Some)
    }
    .unwrap_or_else(|err| fail(&format!("worker {slot}: cannot handle signals: {err}")));

    let pid = std::process::id();
    loop {
        println!(
            "Worker process {slot} (pid {pid}), calculation done on... current time: {}",
            common::clock()
        );
        if shutdown.wait_timeout(Duration::from_secs(1)) {
            break;
        }
    }
    println!("Worker process {slot} (pid {pid}): asked to stop, bye");
}
