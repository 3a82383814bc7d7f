//! `muster report`: what a run did, read back from its joblog — the answers people otherwise
//! dig out with `awk`: outcomes, failures and why, the slowest tasks, the runtime spread, how
//! busy each slot was, and a timeline picture (see `html`).
//!
//! A task is its input and occurrence (the joblog's identity), so a joblog extended by
//! `--resume` reports each task once, with every attempt it took across the runs. Lanes are
//! `(host, slot)`; a version 1 joblog has no slot column, so its attempts are packed into
//! lanes in start order (the first lane free at each start), which is what its slots did.

mod html;

use std::collections::{BTreeMap, HashMap};
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
    #[serde(serialize_with = "to_ms")]
    pub busy_s: f64,
    #[serde(serialize_with = "to_ms")]
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

/// The timeline: every attempt, or — past what a screen can show — how busy each lane was in
/// each stretch of time.
#[derive(Debug)]
pub enum Timeline {
    Bars(Vec<Bar>),
    Cells(Cells),
}

/// Per lane, per time column: the attempts that ran there, aggregated.
#[derive(Debug)]
pub struct Cells {
    /// The length of a column, in seconds.
    pub column_s: f64,
    /// `lanes[lane][column]`.
    pub lanes: Vec<Vec<Cell>>,
}

/// What ran in one lane during one column.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cell {
    /// Seconds of the column an attempt ran.
    pub busy_s: f32,
    /// Attempts that started in it.
    pub attempts: u32,
    /// The gravest outcome among them.
    pub worst: Option<RecordOutcome>,
}

/// Runtimes in bins from zero to the longest.
#[derive(Debug, Default)]
pub struct Histogram {
    pub longest_ms: u64,
    pub bins: Vec<u64>,
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
    #[serde(serialize_with = "to_ms")]
    pub started: f64,
    /// From the first start to the last end.
    #[serde(serialize_with = "to_ms")]
    pub wall_s: f64,
    /// Every attempt's runtime, summed.
    #[serde(serialize_with = "to_ms")]
    pub task_time_s: f64,
    /// Task time over wall time: how many slots were busy on average.
    #[serde(serialize_with = "to_thousandths")]
    pub speedup: f64,
    pub slots: usize,
    /// Speedup over slots: 1.0 means every slot was busy all the time.
    #[serde(serialize_with = "to_thousandths")]
    pub efficiency: f64,
    pub runtime: Spread,
    pub failures: Vec<FailedTask>,
    pub slowest: Vec<SlowAttempt>,
    pub lanes: Vec<Lane>,
    #[serde(skip)]
    pub timeline: Timeline,
    /// Attempts running on average in each of [`COLUMNS`] stretches of the wall time.
    #[serde(skip)]
    pub concurrency: Vec<f32>,
    #[serde(skip)]
    pub histogram: Histogram,
}

/// How many failures and slow attempts the text summary lists.
const LISTED: usize = 10;
/// Past this many attempts, the timeline is drawn as cells, not attempt by attempt.
pub const DRAWN_ONE_BY_ONE: usize = 20_000;
/// Time columns of the concurrency chart and of a timeline drawn as cells.
const COLUMNS: usize = 1000;
/// Most cells (lanes × columns) of a timeline drawn as cells.
const MOST_CELLS: usize = 400_000;
/// Bins of the runtime histogram.
const BINS: usize = 40;

/// A task seen with an attempt that was not done: what its attempts came to so far. A task
/// whose first record is done needs none: muster never runs a done task again.
struct TaskState {
    /// The record that first named it, for the order of the failure list.
    first: u64,
    records: usize,
    max_attempt: u32,
    done: bool,
    /// Its last record, while it is not done.
    last: Option<Last>,
}

struct Last {
    seq: u64,
    outcome: RecordOutcome,
    error: String,
    runtime: f64,
    input: String,
}

/// A record without a slot (a version 1 joblog's, or one that never reached a slot): placed
/// in a lane packed from start times once all are read.
struct Unslotted {
    host: String,
    start: f64,
    runtime: f64,
}

/// A lane by host and slot.
type LaneKey = (String, u32);

/// What one reading of a joblog adds up, record by record, keeping nothing per attempt.
struct Tally {
    records: u64,
    started: f64,
    ended: f64,
    task_time: f64,
    /// Tasks whose first record was done, and the retries their Attempt column counts.
    done_at_once: usize,
    done_at_once_retries: usize,
    tasks: HashMap<muster::journal::InputKey, TaskState>,
    /// Runtimes in milliseconds (three significant digits past 10 s), counted.
    runtimes: BTreeMap<u64, u64>,
    shortest: f64,
    longest: f64,
    slowest: Vec<(f64, u64, SlowAttempt)>,
    lanes: HashMap<(String, u32), (usize, f64)>,
    unslotted: Vec<Unslotted>,
    /// Every attempt as read, while there are few enough to draw one by one.
    bars: Option<Vec<(Option<LaneKey>, Bar)>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            records: 0,
            started: f64::INFINITY,
            ended: f64::NEG_INFINITY,
            task_time: 0.0,
            done_at_once: 0,
            done_at_once_retries: 0,
            tasks: HashMap::new(),
            runtimes: BTreeMap::new(),
            shortest: f64::INFINITY,
            longest: 0.0,
            slowest: Vec::with_capacity(LISTED + 1),
            lanes: HashMap::new(),
            unslotted: Vec::new(),
            bars: Some(Vec::new()),
        }
    }

    fn add(&mut self, record: Record) {
        let ordinal = self.records;
        self.records += 1;
        self.started = self.started.min(record.start);
        self.ended = self.ended.max(record.start + record.runtime);
        self.task_time += record.runtime;
        *self.runtimes.entry(runtime_key(record.runtime)).or_insert(0) += 1;
        self.shortest = self.shortest.min(record.runtime);
        self.longest = self.longest.max(record.runtime);
        if self.slowest.len() < LISTED || self.slowest.last().is_some_and(|(r, ..)| record.runtime > *r) {
            let slow = SlowAttempt {
                seq: record.seq,
                input: display(&record.input),
                attempt: record.attempt,
                runtime_s: round_ms(record.runtime),
            };
            self.slowest.push((record.runtime, ordinal, slow));
            // Longest first; of equal ones, the first written.
            self.slowest.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            self.slowest.truncate(LISTED);
        }
        let key = record.key();
        match self.tasks.get_mut(&key) {
            None if record.outcome == RecordOutcome::Done => {
                self.done_at_once += 1;
                self.done_at_once_retries += record.attempt.saturating_sub(1) as usize;
            }
            state => {
                let state = match state {
                    Some(state) => state,
                    None => self.tasks.entry(key).or_insert(TaskState {
                        first: ordinal,
                        records: 0,
                        max_attempt: 0,
                        done: false,
                        last: None,
                    }),
                };
                state.records += 1;
                state.max_attempt = state.max_attempt.max(record.attempt);
                state.done |= record.outcome == RecordOutcome::Done;
                state.last = (!state.done).then(|| Last {
                    seq: record.seq,
                    outcome: record.outcome,
                    error: error_of(&record),
                    runtime: record.runtime,
                    input: display(&record.input),
                });
            }
        }
        let lane = (record.slot > 0).then(|| (record.host.clone(), record.slot));
        match &lane {
            Some(lane) => {
                let tally = self.lanes.entry(lane.clone()).or_insert((0, 0.0));
                tally.0 += 1;
                tally.1 += record.runtime;
            }
            None => self.unslotted.push(Unslotted {
                host: record.host.clone(),
                start: record.start,
                runtime: record.runtime,
            }),
        }
        if let Some(bars) = &mut self.bars {
            if bars.len() >= DRAWN_ONE_BY_ONE {
                // Too many to draw one by one: a second reading draws cells instead.
                self.bars = None;
            } else {
                bars.push((
                    lane,
                    Bar {
                        lane: 0,
                        start: record.start,
                        runtime: record.runtime,
                        outcome: record.outcome,
                        seq: record.seq,
                        attempt: record.attempt,
                        exitval: record.exitval,
                        signal: record.signal,
                        input: display(&record.input),
                    },
                ));
            }
        }
    }
}

impl Report {
    /// Reads and summarises the joblog at `path`, one record at a time: memory holds what is
    /// drawn and listed and the tasks that were not done at their first attempt, not every
    /// attempt (a joblog of millions reads in a few seconds and little memory).
    pub fn read(path: &Path) -> Result<Report, String> {
        let mut tally = Tally::new();
        let head = Joblog::read_each(path, |record| tally.add(record)).map_err(|err| err.to_string())?;
        let started = if tally.started.is_finite() { tally.started } else { 0.0 };
        let wall_s = if tally.ended.is_finite() { (tally.ended - started).max(0.0) } else { 0.0 };

        // Lanes: the slots seen, and lanes packed for records without one.
        let mut lanes: Vec<Lane> = tally
            .lanes
            .iter()
            .map(|((host, slot), (attempts, busy))| Lane {
                host: host.clone(),
                slot: *slot,
                inferred: false,
                attempts: *attempts,
                busy_s: *busy,
                idle_s: 0.0,
            })
            .collect();
        let unslotted_lanes = pack(&tally.unslotted, &mut lanes);
        let mut order: Vec<usize> = (0..lanes.len()).collect();
        order.sort_by(|&a, &b| (&lanes[a].host, lanes[a].slot).cmp(&(&lanes[b].host, lanes[b].slot)));
        let mut place = vec![0; lanes.len()];
        for (new, &old) in order.iter().enumerate() {
            place[old] = new;
        }
        let mut taken: Vec<Option<Lane>> = lanes.into_iter().map(Some).collect();
        let mut lanes: Vec<Lane> = order.iter().filter_map(|&old| taken[old].take()).collect();
        for lane in &mut lanes {
            lane.idle_s = (wall_s - lane.busy_s).max(0.0);
        }
        let slotted: HashMap<(String, u32), usize> = lanes
            .iter()
            .enumerate()
            .filter(|(_, lane)| !lane.inferred)
            .map(|(index, lane)| ((lane.host.clone(), lane.slot), index))
            .collect();
        let mut unslotted = unslotted_lanes.into_iter().map(|old| place[old]);
        let mut lane_of = |lane: &Option<(String, u32)>| match lane {
            Some(key) => slotted.get(key).copied().unwrap_or(0),
            None => unslotted.next().unwrap_or(0),
        };

        // Concurrency, and the timeline: the bars kept, or cells from a second reading.
        let column_s = if wall_s > 0.0 { wall_s / COLUMNS as f64 } else { 1e-3 };
        let mut concurrency = vec![0f32; COLUMNS];
        let timeline = match tally.bars.take() {
            Some(kept) => {
                let mut bars: Vec<Bar> = kept
                    .into_iter()
                    .map(|(lane, mut bar)| {
                        bar.lane = lane_of(&lane);
                        bar.start -= started;
                        spread_over(&mut concurrency, bar.start, bar.runtime, column_s);
                        bar
                    })
                    .collect();
                bars.sort_by(|a, b| a.start.total_cmp(&b.start));
                Timeline::Bars(bars)
            }
            None => {
                let columns = COLUMNS.min(MOST_CELLS / lanes.len().max(1)).max(1);
                let cell_s = if wall_s > 0.0 { wall_s / columns as f64 } else { 1e-3 };
                let mut cells = vec![vec![Cell::default(); columns]; lanes.len().max(1)];
                Joblog::read_each(path, |record| {
                    let lane = (record.slot > 0).then(|| (record.host.clone(), record.slot));
                    let row = &mut cells[lane_of(&lane)];
                    let start = record.start - started;
                    spread_over(&mut concurrency, start, record.runtime, column_s);
                    let first = ((start / cell_s).max(0.0) as usize).min(columns - 1);
                    let cell = &mut row[first];
                    cell.attempts += 1;
                    if cell.worst.is_none_or(|worst| gravity(record.outcome) > gravity(worst)) {
                        cell.worst = Some(record.outcome);
                    }
                    for (column, seconds) in overlaps(columns, start, record.runtime, cell_s) {
                        row[column].busy_s += seconds as f32;
                    }
                })
                .map_err(|err| err.to_string())?;
                Timeline::Cells(Cells { column_s: cell_s, lanes: cells })
            }
        };

        // Times are kept to the millisecond: an attempt may seem to start before the one before
        // it in its slot ended. No more run at once than there are slots.
        let most = lanes.len().max(1) as f32;
        concurrency.iter_mut().for_each(|running| *running = running.min(most));
        let mut failures: Vec<(u64, FailedTask)> = Vec::new();
        let mut outcomes = Outcomes { done: tally.done_at_once, ..Outcomes::default() };
        let mut retries = tally.done_at_once_retries;
        for state in tally.tasks.into_values() {
            retries += state.max_attempt.saturating_sub(1) as usize;
            let outcome = match (&state.last, state.done) {
                (_, true) | (None, _) => Final::Done,
                (Some(last), false) => match last.outcome {
                    RecordOutcome::Failed => Final::Failed,
                    RecordOutcome::TimedOut => Final::TimedOut,
                    RecordOutcome::Lost => Final::Lost,
                    _ => Final::Unfinished,
                },
            };
            match outcome {
                Final::Done => outcomes.done += 1,
                Final::Failed => outcomes.failed += 1,
                Final::TimedOut => outcomes.timed_out += 1,
                Final::Lost => outcomes.lost += 1,
                Final::Unfinished => outcomes.unfinished += 1,
            }
            if let (Some(last), Final::Failed | Final::TimedOut | Final::Lost) = (state.last, outcome) {
                let failed = FailedTask {
                    seq: last.seq,
                    input: last.input,
                    outcome,
                    error: last.error,
                    attempts: state.records,
                    runtime_s: round_ms(last.runtime),
                };
                failures.push((state.first, failed));
            }
        }
        failures.sort_by_key(|(first, _)| *first);
        let tasks =
            outcomes.done + outcomes.failed + outcomes.timed_out + outcomes.lost + outcomes.unfinished;
        let slots = lanes.len();
        let speedup = if wall_s > 0.0 { tally.task_time / wall_s } else { 0.0 };
        let efficiency = if slots > 0 { speedup / slots as f64 } else { 0.0 };
        let histogram = histogram(&tally.runtimes);
        let runtime = spread(&tally.runtimes, tally.records, tally.shortest, tally.longest);
        Ok(Report {
            joblog: path.display().to_string(),
            command: head.command,
            version: head.version,
            torn_tail: head.torn_tail,
            tasks,
            attempts: tasks + retries,
            // From the Attempt column, so a queue's joblog (one record per task, its attempt
            // the broker's delivery) counts its retries as a local run's does.
            retries,
            outcomes,
            started,
            wall_s,
            task_time_s: tally.task_time,
            speedup,
            slots,
            efficiency,
            runtime,
            failures: failures.into_iter().map(|(_, failed)| failed).collect(),
            slowest: tally.slowest.into_iter().map(|(.., slow)| slow).collect(),
            lanes,
            timeline,
            concurrency,
            histogram,
        })
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

/// Lanes for records without a slot, packed per host in start order (the first lane free at
/// each start, which is what their slots did); appended to `lanes`. Returns each record's
/// lane, in the records' order.
fn pack(records: &[Unslotted], lanes: &mut Vec<Lane>) -> Vec<usize> {
    let mut by_start: Vec<usize> = (0..records.len()).collect();
    by_start.sort_by(|&a, &b| records[a].start.total_cmp(&records[b].start));
    // Per host: (lane index, busy until).
    let mut packed: HashMap<&str, Vec<(usize, f64)>> = HashMap::new();
    let mut lane_of = vec![0; records.len()];
    for index in by_start {
        let record = &records[index];
        let host_lanes = packed.entry(record.host.as_str()).or_default();
        // Times are kept to the millisecond: an attempt starting within one of another's
        // end may have followed it in the same slot.
        let lane = match host_lanes.iter_mut().find(|(_, until)| *until <= record.start + 0.001) {
            Some((lane, until)) => {
                *until = record.start + record.runtime;
                *lane
            }
            None => {
                let slot = u32::try_from(host_lanes.len() + 1).unwrap_or(u32::MAX);
                lanes.push(Lane {
                    host: record.host.clone(),
                    slot,
                    inferred: true,
                    attempts: 0,
                    busy_s: 0.0,
                    idle_s: 0.0,
                });
                host_lanes.push((lanes.len() - 1, record.start + record.runtime));
                lanes.len() - 1
            }
        };
        lanes[lane].attempts += 1;
        lanes[lane].busy_s += record.runtime;
        lane_of[index] = lane;
    }
    lane_of
}

/// Adds to each column of `columns` the share of it that `[start, start + runtime]` covers.
fn spread_over(columns: &mut [f32], start: f64, runtime: f64, column_s: f64) {
    for (column, seconds) in overlaps(columns.len(), start, runtime, column_s) {
        columns[column] += (seconds / column_s) as f32;
    }
}

/// The columns (of `count`, each `column_s` long, the last taking what lies past it) that
/// `[start, start + runtime]` touches, with the seconds it spends in each.
fn overlaps(count: usize, start: f64, runtime: f64, column_s: f64) -> impl Iterator<Item = (usize, f64)> {
    let last_column = count.saturating_sub(1);
    let end = start + runtime;
    let first = ((start / column_s).max(0.0) as usize).min(last_column);
    let last = ((end / column_s).max(0.0) as usize).min(last_column);
    (first..=last).filter(move |_| count > 0).map(move |column| {
        let from = start.max(column as f64 * column_s);
        let to = if column == last_column { end } else { end.min((column + 1) as f64 * column_s) };
        (column, (to - from).max(0.0))
    })
}

/// How grave an outcome is, for a cell that holds several.
fn gravity(outcome: RecordOutcome) -> u8 {
    match outcome {
        RecordOutcome::Done => 0,
        RecordOutcome::Stopped => 1,
        RecordOutcome::Retry => 2,
        RecordOutcome::Lost => 3,
        RecordOutcome::TimedOut => 4,
        RecordOutcome::Failed => 5,
    }
}

/// A runtime as a histogram key: milliseconds (the joblog's precision), to three significant
/// digits past ten seconds, so the number of keys stays small whatever the run.
fn runtime_key(runtime: f64) -> u64 {
    let ms = (runtime * 1000.0).round().max(0.0) as u64;
    if ms < 10_000 {
        return ms;
    }
    let scale = 10u64.pow(ms.ilog10() - 2);
    (ms + scale / 2) / scale * scale
}

/// Nearest-rank percentiles of the counted runtimes.
fn spread(runtimes: &BTreeMap<u64, u64>, count: u64, shortest: f64, longest: f64) -> Spread {
    if count == 0 {
        return Spread::default();
    }
    let rank = |p: f64| {
        let wanted = ((p * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (&ms, &n) in runtimes {
            seen += n;
            if seen >= wanted {
                return ms as f64 / 1000.0;
            }
        }
        longest
    };
    Spread {
        min: round_ms(shortest),
        median: rank(0.5),
        p90: rank(0.9),
        p99: rank(0.99),
        max: round_ms(longest),
    }
}

/// Runtimes in [`BINS`] bins from zero to the longest.
fn histogram(runtimes: &BTreeMap<u64, u64>) -> Histogram {
    let longest_ms = runtimes.keys().next_back().copied().unwrap_or(0).max(1);
    let mut bins = vec![0; BINS];
    for (&ms, &n) in runtimes {
        let bin = ((ms as f64 / longest_ms as f64 * BINS as f64) as usize).min(BINS - 1);
        bins[bin] += n;
    }
    Histogram { longest_ms, bins }
}

/// Seconds to the millisecond, as the joblog keeps them.
fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn to_ms<S: serde::Serializer>(seconds: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(round_ms(*seconds))
}

fn to_thousandths<S: serde::Serializer>(ratio: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((ratio * 1000.0).round() / 1000.0)
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
