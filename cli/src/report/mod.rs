//! `muster report`: what a run did, read back from its joblog — the answers people otherwise
//! dig out with `awk`: outcomes, failures and why, the slowest tasks, the runtime spread, how
//! busy each slot was, and a timeline picture (see `html`).
//!
//! A task is its input and occurrence (the joblog's identity), so a joblog extended by
//! `--resume` reports each task once, with every attempt it took across the runs. Lanes are
//! `(host, slot)`; a version 1 joblog has no slot column, so its attempts are packed into
//! lanes in start order (the first lane free at each start), which is what its slots did.

mod html;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use muster::journal::{Joblog, Record, RecordOutcome};
use serde::Serialize;

pub use html::{write_html, write_svg};

use crate::args::ReportArgs;
use crate::fatal::Fatal;

/// `muster report JOBLOG [--json] [--html FILE] [--svg FILE]`.
pub fn command(args: ReportArgs) -> Result<u8, Fatal> {
    let report =
        Report::read(&args.joblog).map_err(|message| Fatal { code: crate::fatal::USAGE_ERROR, message })?;
    write_pictures(&report, args.html.as_deref(), args.svg.as_deref())?;
    let text = if args.json { report.json() + "\n" } else { report.text() };
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, text.as_bytes());
    Ok(0)
}

/// Writes the HTML and SVG pictures asked for.
pub fn write_pictures(report: &Report, html: Option<&Path>, svg: Option<&Path>) -> Result<(), Fatal> {
    let failed = |path: &Path, err: std::io::Error| Fatal {
        code: crate::fatal::USAGE_ERROR,
        message: format!("cannot write {}: {err}", path.display()),
    };
    if let Some(path) = html {
        write_html(report, path).map_err(|err| failed(path, err))?;
    }
    if let Some(path) = svg {
        write_svg(report, path).map_err(|err| failed(path, err))?;
    }
    Ok(())
}

/// What a task finally came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Final {
    Done,
    Failed,
    TimedOut,
    /// Its output could not be captured or written.
    Lost,
    /// Its last attempt was stopped (or cut off) by a shutdown; a resume runs it again.
    Unfinished,
}

/// Counts of tasks by what they finally came to.
#[derive(Debug, Default, Serialize)]
pub struct Outcomes {
    pub done: usize,
    pub failed: usize,
    pub timed_out: usize,
    pub lost: usize,
    pub unfinished: usize,
}

/// Runtime spread over every attempt, in seconds.
#[derive(Debug, Default, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// A task that did not succeed, with its last error.
#[derive(Debug, Serialize)]
pub struct FailedTask {
    pub seq: u64,
    pub input: String,
    pub outcome: Final,
    /// `exit 3`, `signal 9`, `timed out`, `output lost`, `could not start`.
    pub error: String,
    pub attempts: usize,
    pub runtime_s: f64,
}

/// One of the slowest attempts.
#[derive(Debug, Serialize)]
pub struct SlowAttempt {
    pub seq: u64,
    pub input: String,
    pub attempt: u32,
    pub runtime_s: f64,
}

/// One lane of the timeline: a slot on a host.
#[derive(Debug, Serialize)]
pub struct Lane {
    pub host: String,
    pub slot: u32,
    /// Packed from start times (a joblog without a slot column).
    pub inferred: bool,
    pub attempts: usize,
    pub busy_s: f64,
    pub idle_s: f64,
}

/// One attempt as the timeline draws it.
#[derive(Debug)]
pub struct Bar {
    /// Index into [`Report::lanes`].
    pub lane: usize,
    /// Seconds since the run's first start.
    pub start: f64,
    pub runtime: f64,
    pub outcome: RecordOutcome,
    pub seq: u64,
    pub attempt: u32,
    pub exitval: i32,
    pub signal: i32,
    pub input: String,
}

/// Everything `muster report` says about a joblog.
#[derive(Debug, Serialize)]
pub struct Report {
    pub joblog: String,
    pub command: String,
    pub version: u32,
    /// A torn last line (a writer killed mid-write) was left out.
    pub torn_tail: bool,
    pub tasks: usize,
    pub attempts: usize,
    pub retries: usize,
    pub outcomes: Outcomes,
    /// Seconds since the Unix epoch of the first start.
    pub started: f64,
    /// From the first start to the last end.
    pub wall_s: f64,
    /// Every attempt's runtime, summed.
    pub task_time_s: f64,
    /// Task time over wall time: how many slots were busy on average.
    pub speedup: f64,
    pub slots: usize,
    /// Speedup over slots: 1.0 means every slot was busy all the time.
    pub efficiency: f64,
    pub runtime: Spread,
    pub failures: Vec<FailedTask>,
    pub slowest: Vec<SlowAttempt>,
    pub lanes: Vec<Lane>,
    #[serde(skip)]
    pub bars: Vec<Bar>,
}

/// How many failures and slow attempts the text summary lists.
const LISTED: usize = 10;

impl Report {
    /// Reads and summarises the joblog at `path`.
    pub fn read(path: &Path) -> Result<Report, String> {
        let joblog = Joblog::read(path).map_err(|err| err.to_string())?;
        Ok(Report::from_joblog(path.display().to_string(), joblog))
    }

    /// Summarises `joblog` (read from `name`).
    pub fn from_joblog(name: String, joblog: Joblog) -> Report {
        let records = &joblog.records;
        let started = records.iter().map(|r| r.start).fold(f64::INFINITY, f64::min);
        let started = if started.is_finite() { started } else { 0.0 };
        let ended = records.iter().map(|r| r.start + r.runtime).fold(started, f64::max);
        let wall_s = ended - started;
        let task_time_s: f64 = records.iter().map(|r| r.runtime).fold(0.0, |sum, r| sum + r);

        // Tasks by identity, in order of first appearance.
        let mut order: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut by_task: HashMap<(Vec<u8>, u32), Vec<&Record>> = HashMap::new();
        for record in records {
            let key = (record.input.clone(), record.occurrence);
            let attempts = by_task.entry(key.clone()).or_default();
            if attempts.is_empty() {
                order.push(key);
            }
            attempts.push(record);
        }
        let mut outcomes = Outcomes::default();
        let mut failures = Vec::new();
        for key in &order {
            let attempts = &by_task[key];
            let Some(last) = attempts.last() else { continue };
            let outcome = final_of(attempts);
            match outcome {
                Final::Done => outcomes.done += 1,
                Final::Failed => outcomes.failed += 1,
                Final::TimedOut => outcomes.timed_out += 1,
                Final::Lost => outcomes.lost += 1,
                Final::Unfinished => outcomes.unfinished += 1,
            }
            if matches!(outcome, Final::Failed | Final::TimedOut | Final::Lost) {
                failures.push(FailedTask {
                    seq: last.seq,
                    input: display(&last.input),
                    outcome,
                    error: error_of(last),
                    attempts: attempts.len(),
                    runtime_s: last.runtime,
                });
            }
        }

        let mut runtimes: Vec<f64> = records.iter().map(|r| r.runtime).collect();
        runtimes.sort_by(f64::total_cmp);
        let runtime = spread(&runtimes);

        let mut slowest: Vec<&Record> = records.iter().collect();
        slowest.sort_by(|a, b| b.runtime.total_cmp(&a.runtime));
        let slowest = slowest
            .into_iter()
            .take(LISTED)
            .map(|r| SlowAttempt {
                seq: r.seq,
                input: display(&r.input),
                attempt: r.attempt,
                runtime_s: r.runtime,
            })
            .collect();

        // From the Attempt column, so a queue's joblog (one record per task, its attempt the
        // broker's delivery) counts its attempts and retries as a local run's does.
        let retries: usize = by_task
            .values()
            .map(|attempts| attempts.iter().map(|r| r.attempt).max().unwrap_or(1).saturating_sub(1) as usize)
            .sum();
        let (lanes, bars) = lay_out(records, started, wall_s);
        let slots = lanes.len();
        let speedup = if wall_s > 0.0 { task_time_s / wall_s } else { 0.0 };
        let efficiency = if slots > 0 { speedup / slots as f64 } else { 0.0 };
        Report {
            joblog: name,
            command: joblog.command,
            version: joblog.version,
            torn_tail: joblog.torn_tail,
            tasks: order.len(),
            attempts: order.len() + retries,
            // From the Attempt column, so a queue's joblog (one record per task, its attempt
            // the broker's delivery) counts its retries as a local run's does.
            retries: by_task
                .values()
                .map(|attempts| {
                    attempts.iter().map(|r| r.attempt).max().unwrap_or(1).saturating_sub(1) as usize
                })
                .sum(),
            outcomes,
            started,
            wall_s,
            task_time_s,
            speedup,
            slots,
            efficiency,
            runtime,
            failures,
            slowest,
            lanes,
            bars,
        }
    }

    /// The summary as text, for a terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let o = &self.outcomes;
        match self.version {
            0 => {
                let _ = writeln!(
                    out,
                    "joblog {} (GNU parallel's columns: inputs shown as commands)",
                    self.joblog
                );
            }
            version => {
                let _ = writeln!(out, "joblog {} (version {version}): {}", self.joblog, self.command);
            }
        }
        if self.torn_tail {
            let _ = writeln!(out, "  (its last line was torn by a crash and is left out)");
        }
        let _ = writeln!(
            out,
            "tasks: {} — {} done, {} failed, {} timed out, {} output lost, {} unfinished",
            self.tasks, o.done, o.failed, o.timed_out, o.lost, o.unfinished
        );
        let _ = writeln!(out, "attempts: {} ({} retries)", self.attempts, self.retries);
        let _ = writeln!(
            out,
            "wall {}, task time {}: speedup {:.2} on {} slot(s), efficiency {:.0}%",
            seconds(self.wall_s),
            seconds(self.task_time_s),
            self.speedup,
            self.slots,
            self.efficiency * 100.0
        );
        let r = &self.runtime;
        let _ = writeln!(
            out,
            "runtime per attempt: min {}, median {}, p90 {}, p99 {}, max {}",
            seconds(r.min),
            seconds(r.median),
            seconds(r.p90),
            seconds(r.p99),
            seconds(r.max)
        );
        if !self.failures.is_empty() {
            let _ = writeln!(out, "failed tasks ({}):", self.failures.len());
            for failed in self.failures.iter().take(LISTED) {
                let _ = writeln!(
                    out,
                    "  task {:<6} {}, after {} attempt(s)  {}",
                    failed.seq,
                    failed.error,
                    failed.attempts,
                    shorten(&failed.input)
                );
            }
            if self.failures.len() > LISTED {
                let _ =
                    writeln!(out, "  … and {} more (--json lists them all)", self.failures.len() - LISTED);
            }
        }
        if !self.slowest.is_empty() {
            let _ = writeln!(out, "slowest attempts:");
            for slow in &self.slowest {
                let _ = writeln!(
                    out,
                    "  {:>9}  task {:<6} attempt {}  {}",
                    seconds(slow.runtime_s),
                    slow.seq,
                    slow.attempt,
                    shorten(&slow.input)
                );
            }
        }
        if !self.lanes.is_empty() {
            let inferred =
                if self.lanes.iter().any(|l| l.inferred) { " (slots inferred from start times)" } else { "" };
            let _ = writeln!(out, "idle per slot{inferred}:");
            for lane in &self.lanes {
                let share = if self.wall_s > 0.0 { lane.idle_s / self.wall_s * 100.0 } else { 0.0 };
                let _ = writeln!(
                    out,
                    "  {:<12} {:>9} idle ({share:.0}%), {} attempts",
                    lane_name(lane),
                    seconds(lane.idle_s),
                    lane.attempts
                );
            }
        }
        out
    }

    /// The summary as one JSON document.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
    }
}

/// A lane's name: `slot 3`, or `host:3` for another host.
pub(crate) fn lane_name(lane: &Lane) -> String {
    if lane.host == ":" {
        format!("slot {}", lane.slot)
    } else {
        format!("{}:{}", lane.host, lane.slot)
    }
}

/// What a task's attempts came to: done if any attempt succeeded, else its last attempt.
fn final_of(attempts: &[&Record]) -> Final {
    if attempts.iter().any(|r| r.outcome == RecordOutcome::Done) {
        return Final::Done;
    }
    match attempts.last().map(|r| r.outcome) {
        Some(RecordOutcome::Failed) => Final::Failed,
        Some(RecordOutcome::TimedOut) => Final::TimedOut,
        Some(RecordOutcome::Lost) => Final::Lost,
        _ => Final::Unfinished,
    }
}

/// Why an attempt failed, in a few words.
pub(crate) fn error_of(record: &Record) -> String {
    match record.outcome {
        RecordOutcome::TimedOut => "timed out".into(),
        RecordOutcome::Lost => "output lost".into(),
        RecordOutcome::Stopped => "stopped".into(),
        RecordOutcome::Done => "done".into(),
        RecordOutcome::Failed | RecordOutcome::Retry if record.exitval == -1 && record.signal == 0 => {
            "could not start".into()
        }
        RecordOutcome::Failed | RecordOutcome::Retry if record.signal != 0 => {
            format!("signal {}", record.signal)
        }
        RecordOutcome::Failed | RecordOutcome::Retry => format!("exit {}", record.exitval),
    }
}

/// Lanes (by host and slot, packed where the slot is unknown) and the bars drawn in them.
fn lay_out(records: &[Record], started: f64, wall_s: f64) -> (Vec<Lane>, Vec<Bar>) {
    let mut lanes: Vec<Lane> = Vec::new();
    let mut index: HashMap<(String, u32), usize> = HashMap::new();
    // Lanes packed for records without a slot, per host: (lane index, busy until).
    let mut packed: HashMap<String, Vec<(usize, f64)>> = HashMap::new();
    let mut by_start: Vec<&Record> = records.iter().collect();
    by_start.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut bars = Vec::with_capacity(records.len());
    for record in by_start {
        let lane = if record.slot > 0 {
            *index.entry((record.host.clone(), record.slot)).or_insert_with(|| {
                lanes.push(new_lane(&record.host, record.slot, false));
                lanes.len() - 1
            })
        } else {
            let host_lanes = packed.entry(record.host.clone()).or_default();
            // Times are kept to the millisecond: an attempt starting within one of another's
            // end may have followed it in the same slot.
            let free = host_lanes.iter_mut().find(|(_, until)| *until <= record.start + 0.001);
            match free {
                Some((lane, until)) => {
                    *until = record.start + record.runtime;
                    *lane
                }
                None => {
                    let slot = u32::try_from(host_lanes.len() + 1).unwrap_or(u32::MAX);
                    lanes.push(new_lane(&record.host, slot, true));
                    host_lanes.push((lanes.len() - 1, record.start + record.runtime));
                    lanes.len() - 1
                }
            }
        };
        lanes[lane].attempts += 1;
        lanes[lane].busy_s += record.runtime;
        bars.push(Bar {
            lane,
            start: record.start - started,
            runtime: record.runtime,
            outcome: record.outcome,
            seq: record.seq,
            attempt: record.attempt,
            exitval: record.exitval,
            signal: record.signal,
            input: display(&record.input),
        });
    }
    // Lanes in host, then slot order; bars follow their lanes' new places.
    let mut order: Vec<usize> = (0..lanes.len()).collect();
    order.sort_by(|&a, &b| (&lanes[a].host, lanes[a].slot).cmp(&(&lanes[b].host, lanes[b].slot)));
    let mut place = vec![0; lanes.len()];
    for (new, &old) in order.iter().enumerate() {
        place[old] = new;
    }
    for bar in &mut bars {
        bar.lane = place[bar.lane];
    }
    let mut slots: Vec<Option<Lane>> = lanes.into_iter().map(Some).collect();
    let mut lanes: Vec<Lane> = order.iter().filter_map(|&old| slots[old].take()).collect();
    for lane in &mut lanes {
        lane.idle_s = (wall_s - lane.busy_s).max(0.0);
    }
    (lanes, bars)
}

fn new_lane(host: &str, slot: u32, inferred: bool) -> Lane {
    Lane { host: host.to_owned(), slot, inferred, attempts: 0, busy_s: 0.0, idle_s: 0.0 }
}

/// Nearest-rank percentiles of sorted `values`.
fn spread(sorted: &[f64]) -> Spread {
    let Some(&max) = sorted.last() else { return Spread::default() };
    let rank = |p: f64| {
        let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index]
    };
    Spread { min: sorted[0], median: rank(0.5), p90: rank(0.9), p99: rank(0.99), max }
}

/// An input as text: sources joined by NUL are shown joined by a space, each escaped as the
/// joblog escapes a field (control bytes and bytes that are not UTF-8 — a binary record's, such
/// as a Python pool's pickles — never reach a terminal raw).
fn display(input: &[u8]) -> String {
    input.split(|&b| b == 0).map(muster::journal::escape).collect::<Vec<_>>().join(" ")
}

fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    let cut: String = text.chars().take(MAX - 1).collect();
    format!("{cut}…")
}

/// A duration for people: `850 ms`, `2.41 s`, `3 m 05 s`.
fn seconds(s: f64) -> String {
    // An empty sum is -0.0; nobody wants to read "-0 ms".
    let s = if s == 0.0 { 0.0 } else { s };
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.2} s")
    } else {
        let whole = s.round() as u64;
        format!("{} m {:02} s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod display_tests {
    #[test]
    fn inputs_show_sources_spaced_and_binary_escaped() {
        assert_eq!(super::display(b"a\0b c"), "a b c");
        assert_eq!(super::display(b"C\x01\x80\n\t\xff\xc3\xa9"), "C\\x01\\x80\\n\\t\\xff\u{e9}");
    }
}
