//! One set of scripted outcomes and the joblog columns every executor must record for them
//! (the process executor, persistent workers, the fake): one joblog dialect. Shared by the
//! library's and the CLI's tests (included by path, since they are different packages).
//!
//! Run with `--retries 1` and a time limit, one slot, inputs in this order: `ok` succeeds,
//! `three` exits 3, `slow` runs past the limit (and dies of the TERM that stops it), `sig` is
//! killed by signal 9, `flaky` exits 1 on its first attempt and succeeds on its second.

#![allow(dead_code)]

/// The behaviours, in input order.
pub const BEHAVIOURS: [&str; 5] = ["ok", "three", "slow", "sig", "flaky"];

/// The columns that mean the same whatever ran the task: Seq, Exitval, Signal, Outcome,
/// Attempt, Slot. (Starttime, JobRuntime and Host are when and where; Command is the command
/// line, which names the worker program for persistent runs; Send is the bytes written to the
/// task's stdin, which a spawned task without `--pipe` has none of.)
pub type Columns = (u64, i32, i32, String, u32, u32);

/// What every executor records for [`BEHAVIOURS`], by task and attempt.
pub fn expected() -> Vec<Columns> {
    let rows: [(u64, i32, i32, &str, u32); 9] = [
        (1, 0, 0, "done", 1),
        (2, 3, 0, "retry", 1),
        (2, 3, 0, "failed", 2),
        (3, 0, 15, "retry", 1),
        (3, 0, 15, "timeout", 2),
        (4, 0, 9, "retry", 1),
        (4, 0, 9, "failed", 2),
        (5, 1, 0, "retry", 1),
        (5, 0, 0, "done", 2),
    ];
    rows.iter()
        .map(|&(seq, exitval, signal, outcome, attempt)| (seq, exitval, signal, outcome.into(), attempt, 1))
        .collect()
}

/// The meaningful columns of a muster joblog's records, by task and attempt.
pub fn columns(joblog: &str) -> Vec<Columns> {
    let mut rows: Vec<Columns> = joblog
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with("Seq\t") && !line.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(i64::MIN);
            (
                num(0) as u64,
                num(6) as i32,
                num(7) as i32,
                f.get(9).copied().unwrap_or("").to_owned(),
                num(10) as u32,
                num(13) as u32,
            )
        })
        .collect();
    rows.sort_by_key(|row| (row.0, row.4));
    rows
}
