//! The seed programs' Rust twins do what the seeds show, and what the seeds got wrong is fixed.

mod util;

use std::io::Read;

use rustix::process::Signal;
use util::*;

/// The worker pids announced by `worker_processes`, in slot order (workers start
/// concurrently, so they are announced in any order).
fn announced_pids(lines: &[String]) -> Vec<u32> {
    let mut started: Vec<(usize, u32)> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("master: started worker "))
        .map(|rest| {
            let slot = rest.split(' ').next().and_then(|s| s.parse().ok()).expect("slot in line");
            let pid = rest.split("(pid ").nth(1).and_then(|p| p.strip_suffix(')')).expect("pid in line");
            (slot, pid.parse().expect("numeric pid"))
        })
        .collect();
    started.sort();
    started.into_iter().map(|(_, pid)| pid).collect()
}

/// Reads `worker_processes` output until all 4 workers are announced.
fn read_until_all_started(out: &mut impl std::io::BufRead) -> Vec<String> {
    let mut count = 0;
    read_until(out, |l| {
        count += usize::from(l.starts_with("master: started worker "));
        count == 4
    })
}

#[test]
fn master_worker_sends_each_second_then_quits_cleanly() {
    let output = run_example("master_worker", &["--seconds", "1.5"]);
    assert!(output.status.success());
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[..2].iter().all(|l| l.starts_with("I'm the worker thread, received something at ")));
    assert_eq!(lines[2], "Bye byes!");
    assert_eq!(lines[3], "master: sent 2, worker handled 2");
}

#[test]
fn even_odd_shows_whole_lines_and_end_after_the_joined_tasks() {
    let output = run_example("even_odd", &[]);
    assert!(output.status.success());
    let text = stdout(&output);
    let sections: Vec<&str> = text.split("== ").skip(1).collect();
    assert_eq!(sections.len(), 3, "{text}");
    let expected: Vec<String> =
        (0..20).map(|i| format!("{} :{i}", if i % 2 == 0 { "even" } else { "odd" })).collect();
    for section in &sections {
        let mut lines: Vec<&str> = section.lines().skip(1).collect();
        // Every line is whole: a number line or End, nothing mixed.
        assert_eq!(lines.iter().filter(|l| **l == "End").count(), 1, "{section}");
        lines.retain(|l| *l != "End");
        let mut sorted: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        sorted.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(sorted, want, "{section}");
    }
    // Joined and grouped: End only after both tasks finished.
    for section in &sections[1..] {
        assert_eq!(section.lines().last(), Some("End"), "{section}");
    }
    // Grouped: each task's lines are contiguous.
    let grouped: Vec<&str> = sections[2].lines().skip(1).filter(|l| *l != "End").collect();
    let first = &grouped[0][..3];
    let switches = grouped.windows(2).filter(|w| w[0][..3] != w[1][..3]).count();
    assert_eq!(switches, 1, "grouped output interleaved: {grouped:?} (first {first})");
}

#[test]
fn producer_consumer_sums_like_an_independent_computation() {
    let output = run_example("producer_consumer", &["--count", "200000", "--seed", "42"]);
    assert!(output.status.success());
    let mut rng = fastrand::Rng::with_seed(42);
    let expected: u64 = (0..200_000).map(|_| rng.u64(1..=11)).sum();
    let text = stdout(&output);
    assert!(text.lines().any(|l| l == format!("sum: {expected}")), "{text}");
    assert!(text.lines().any(|l| l == "items: 200000"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("execution time: ")), "{text}");
}

#[test]
fn producer_consumer_defaults_to_ten_numbers_like_the_seed() {
    let text = stdout(&run_example("producer_consumer", &["--seed", "1"]));
    let mut rng = fastrand::Rng::with_seed(1);
    let expected: u64 = (0..10).map(|_| rng.u64(1..=11)).sum();
    assert!(text.contains(&format!("sum: {expected}\nitems: 10\n")), "{text}");
}

#[test]
fn producer_consumer_rejects_bad_flags() {
    let output = run_example("producer_consumer", &["--count", "many"]);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("invalid value 'many' for --count"), "{err}");
}

#[test]
fn producer_consumer_drains_on_ctrl_c() {
    let (mut child, mut out) =
        spawn_example("producer_consumer", &["--count", "1000000000000", "--seed", "3"]);
    // Interrupt once it handles SIGINT: it must stop reading, finish the queue, and report.
    wait_until_catching(&child, Signal::INT);
    signal(&child, Signal::INT);
    let status = child.wait().expect("wait");
    let mut text = String::new();
    out.read_to_string(&mut text).expect("read");
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("stopped by signal 2"), "{text}");
    let items: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("items: "))
        .and_then(|n| n.parse().ok())
        .expect("items line");
    assert!(
        text.contains(&format!("stopped by signal 2 after {items} of")),
        "everything read was summed: {text}"
    );
}

#[test]
fn worker_processes_stop_leaves_no_process_behind() {
    let (mut child, mut out) = spawn_example("worker_processes", &["--seconds", "1", "--grace", "5000"]);
    let lines = read_until(&mut out, |l| l == "master: all workers stopped");
    assert!(child.wait().expect("wait").success());
    let pids = announced_pids(&lines);
    assert_eq!(pids.len(), 4, "{lines:#?}");
    for slot in 1..=4 {
        assert!(lines.iter().any(|l| l.starts_with(&format!("Worker process {slot} (pid "))), "{lines:#?}");
        // Stopped by SIGTERM: cleanly (exit 0), or by TERM itself if it came before the
        // worker had installed its handler. Never SIGKILL.
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("master: worker {slot} stopped ("))),
            "{lines:#?}"
        );
    }
    assert_groups_gone(&pids);
}

#[test]
fn worker_processes_kills_workers_that_ignore_sigterm() {
    let (mut child, mut out) =
        spawn_example("worker_processes", &["--seconds", "0.5", "--grace", "200", "--stubborn"]);
    let lines = read_until(&mut out, |l| l == "master: all workers stopped");
    assert!(child.wait().expect("wait").success());
    let killed = lines.iter().filter(|l| l.contains("killed after the grace period")).count();
    assert_eq!(killed, 4, "{lines:#?}");
    assert_groups_gone(&announced_pids(&lines));
}

#[test]
fn worker_processes_stops_properly_on_ctrl_c() {
    let (mut child, mut out) = spawn_example("worker_processes", &["--grace", "5000"]);
    let lines = read_until_all_started(&mut out);
    let pids = announced_pids(&lines);
    signal(&child, Signal::INT);
    let rest = read_until(&mut out, |l| l == "master: all workers stopped");
    assert_eq!(child.wait().expect("wait").code(), Some(130));
    assert_eq!(
        rest.iter().filter(|l| l.starts_with("master: worker ") && l.contains(" stopped (")).count(),
        4,
        "{rest:#?}"
    );
    assert_groups_gone(&pids);
}

#[test]
fn worker_processes_leave_nothing_when_the_master_is_killed() {
    let (mut child, mut out) = spawn_example("worker_processes", &[]);
    let lines = read_until_all_started(&mut out);
    let pids = announced_pids(&lines);
    assert_eq!(pids.len(), 4);
    signal(&child, Signal::KILL);
    child.wait().expect("wait");
    assert_groups_gone(&pids);
}

#[test]
fn worker_processes_restarts_a_worker_that_dies() {
    let (mut child, mut out) = spawn_example("worker_processes", &["--grace", "5000"]);
    let lines = read_until_all_started(&mut out);
    let pids = announced_pids(&lines);
    let victim = rustix::process::Pid::from_raw(pids[1] as i32).expect("pid");
    rustix::process::kill_process(victim, Signal::KILL).expect("kill worker 2");
    let restart = read_until(&mut out, |l| l.starts_with("master: started worker 2 "));
    assert!(restart.iter().any(|l| l == "master: worker 2 died (signal 9 (KILL))"), "{restart:#?}");
    assert!(restart.iter().any(|l| l.starts_with("master: restarting worker 2 in ")), "{restart:#?}");
    let replacement = announced_pids(&restart);
    assert_eq!(replacement.len(), 1);
    signal(&child, Signal::INT);
    read_until(&mut out, |l| l == "master: all workers stopped");
    assert_eq!(child.wait().expect("wait").code(), Some(130));
    let mut all = pids;
    all.extend(replacement);
    assert_groups_gone(&all);
}
