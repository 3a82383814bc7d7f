//! The report as pictures: one self-contained HTML file (no network: its data, style and
//! script are inline) with the timeline first — every attempt per slot, or past
//! [`DRAWN_ONE_BY_ONE`] attempts how busy each slot was in each stretch of time, so a run of
//! millions stays a small page — then concurrency over time, the runtime histogram, the
//! failure table and the text summary; and the timeline alone as SVG.
//!
//! The HTML draws to canvases from columns of numbers; hovering a bar (or a cell) names what
//! ran there. Axis ticks fall on round values. When drawing ends the page sets `data-drawn`
//! on `<body>` to the number of attempts drawn, and `data-errors` if a script error happened
//! — what the browser test checks.

use std::fmt::Write as _;
use std::path::Path;

use muster::journal::RecordOutcome;
use serde::Serialize;

use super::{lane_name, Cells, FailedTask, Report, Timeline, DRAWN_ONE_BY_ONE};

/// The attempts as columns (times in milliseconds since the first start).
#[derive(Serialize, Default)]
struct Columns<'r> {
    lane: Vec<usize>,
    start_ms: Vec<u64>,
    runtime_ms: Vec<u64>,
    outcome: Vec<u8>,
    seq: Vec<u64>,
    attempt: Vec<u32>,
    exit: Vec<i32>,
    signal: Vec<i32>,
    input: Vec<&'r str>,
}

/// A timeline drawn as cells: per lane, per column.
#[derive(Serialize)]
struct Grid {
    column_ms: f64,
    /// Percent of the column busy.
    busy: Vec<Vec<u8>>,
    /// Attempts started in the cell.
    attempts: Vec<Vec<u32>>,
    /// The gravest outcome's code, or 255 for none.
    worst: Vec<Vec<u8>>,
}

#[derive(Serialize)]
struct Page<'r> {
    lanes: Vec<String>,
    wall_ms: u64,
    /// Attempts the timeline stands for.
    drawn: usize,
    attempts: Columns<'r>,
    grid: Option<Grid>,
    /// Attempts running on average per column of the wall time.
    concurrency: Vec<f32>,
    histogram: &'r [u64],
    longest_ms: u64,
    /// The first failures (the table shows them), and how many there are.
    failures: &'r [FailedTask],
    failures_total: usize,
}

/// Failures the page carries (a run whose every task failed would otherwise carry them all).
const FAILURES_SHOWN: usize = 1000;

/// Outcome codes in the page, and their names and colours (same order).
const OUTCOMES: [(&str, &str); 6] = [
    ("done", "#3a9d5d"),
    ("retried", "#e0a526"),
    ("failed", "#d64541"),
    ("timed out", "#8e44ad"),
    ("stopped", "#8c8c8c"),
    ("output lost", "#2c3e50"),
];

fn code(outcome: RecordOutcome) -> u8 {
    match outcome {
        RecordOutcome::Done => 0,
        RecordOutcome::Retry => 1,
        RecordOutcome::Failed => 2,
        RecordOutcome::TimedOut => 3,
        RecordOutcome::Stopped => 4,
        RecordOutcome::Lost => 5,
    }
}

fn ms(seconds: f64) -> u64 {
    (seconds * 1000.0).round().max(0.0) as u64
}

/// The cells as the page's grid.
fn grid(cells: &Cells) -> Grid {
    let busy = cells
        .lanes
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| (f64::from(c.busy_s) / cells.column_s * 100.0).round().min(100.0) as u8)
                .collect()
        })
        .collect();
    Grid {
        column_ms: cells.column_s * 1000.0,
        busy,
        attempts: cells.lanes.iter().map(|row| row.iter().map(|c| c.attempts).collect()).collect(),
        worst: cells
            .lanes
            .iter()
            .map(|row| row.iter().map(|c| c.worst.map_or(255, code)).collect())
            .collect(),
    }
}

/// Writes the HTML report of `report` to `path`.
pub fn write_html(report: &Report, path: &Path) -> std::io::Result<()> {
    let (attempts, grid) = match &report.timeline {
        Timeline::Bars(bars) => (
            Columns {
                lane: bars.iter().map(|b| b.lane).collect(),
                start_ms: bars.iter().map(|b| ms(b.start)).collect(),
                runtime_ms: bars.iter().map(|b| ms(b.runtime)).collect(),
                outcome: bars.iter().map(|b| code(b.outcome)).collect(),
                seq: bars.iter().map(|b| b.seq).collect(),
                attempt: bars.iter().map(|b| b.attempt).collect(),
                exit: bars.iter().map(|b| b.exitval).collect(),
                signal: bars.iter().map(|b| b.signal).collect(),
                input: bars.iter().map(|b| b.input.as_str()).collect(),
            },
            None,
        ),
        Timeline::Cells(cells) => (Columns::default(), Some(grid(cells))),
    };
    let page = Page {
        lanes: report.lanes.iter().map(lane_name).collect(),
        wall_ms: ms(report.wall_s),
        drawn: report.attempts,
        attempts,
        grid,
        concurrency: report.concurrency.iter().map(|v| (v * 100.0).round() / 100.0).collect(),
        histogram: &report.histogram.bins,
        longest_ms: report.histogram.longest_ms,
        failures: &report.failures[..report.failures.len().min(FAILURES_SHOWN)],
        failures_total: report.failures.len(),
    };
    let data = serde_json::to_string(&page).map_err(std::io::Error::other)?;
    // Inside <script>, "</" could end the element early; "<\/" means the same in JSON.
    let data = data.replace("</", "<\\/");
    let legend: String = OUTCOMES
        .iter()
        .map(|(name, colour)| format!("<span><i style=\"background:{colour}\"></i>{name}</span>"))
        .collect();
    let colours: Vec<&str> = OUTCOMES.iter().map(|(_, colour)| *colour).collect();
    let names: Vec<&str> = OUTCOMES.iter().map(|(name, _)| *name).collect();
    let o = &report.outcomes;
    let headline = format!(
        "{} tasks: {} done, {} failed, {} timed out · wall {} · speedup {:.2} on {} slot(s)",
        report.tasks,
        o.done,
        o.failed + o.lost,
        o.timed_out,
        super::seconds(report.wall_s),
        report.speedup,
        report.slots
    );
    let timeline_title = match &report.timeline {
        Timeline::Bars(_) => "Timeline: every attempt, per slot".to_owned(),
        Timeline::Cells(cells) => format!(
            "Timeline: {} attempts, more than can be drawn one by one ({DRAWN_ONE_BY_ONE}): how busy each slot was, per {}",
            report.attempts,
            super::seconds(cells.column_s)
        ),
    };
    let html = TEMPLATE
        .replace("{{TITLE}}", &escape_html(&format!("muster report: {}", report.command)))
        .replace("{{HEADLINE}}", &escape_html(&headline))
        .replace("{{TIMELINE}}", &escape_html(&timeline_title))
        .replace("{{SUMMARY}}", &escape_html(&report.text()))
        .replace("{{LEGEND}}", &legend)
        .replace("{{COLOURS}}", &serde_json::to_string(&colours).map_err(std::io::Error::other)?)
        .replace("{{NAMES}}", &serde_json::to_string(&names).map_err(std::io::Error::other)?)
        .replace("{{DATA}}", &data);
    std::fs::write(path, html)
}

/// Ticks on round values (1, 2 or 5 times a power of ten) from 0 to `span`, about `count`.
pub(crate) fn round_ticks(span: f64, count: u32) -> Vec<f64> {
    if span <= 0.0 || !span.is_finite() {
        return vec![0.0];
    }
    let raw = span / f64::from(count.max(1));
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = match raw / magnitude {
        f if f <= 1.0 => 1.0,
        f if f <= 2.0 => 2.0,
        f if f <= 5.0 => 5.0,
        _ => 10.0,
    } * magnitude;
    (0..).map(|i| f64::from(i) * step).take_while(|t| *t <= span * (1.0 + 1e-9)).collect()
}

/// A tick's label, in seconds once the axis reaches one (else milliseconds), with as many
/// decimals as its step needs: `0 s`, `0.5 s`, `1 s`, not `0.00 s`, `0.69 s`.
pub(crate) fn tick_label(seconds: f64, step: f64, span: f64) -> String {
    let decimals = |unit: f64| (-((step / unit).log10() + 1e-9).floor()).clamp(0.0, 3.0) as usize;
    if span < 1.0 {
        format!("{:.*} ms", decimals(0.001), seconds * 1000.0)
    } else {
        format!("{:.*} s", decimals(1.0), seconds)
    }
}

/// Writes the timeline alone, as SVG, to `path`.
pub fn write_svg(report: &Report, path: &Path) -> std::io::Result<()> {
    const WIDTH: f64 = 1200.0;
    const LEFT: f64 = 90.0;
    const RIGHT: f64 = 34.0;
    let lanes = report.lanes.len().max(1);
    let lane_height = (600.0 / lanes as f64).clamp(2.0, 18.0);
    let plot_width = WIDTH - LEFT - RIGHT;
    let height = lanes as f64 * lane_height + 30.0;
    let wall = report.wall_s.max(1e-3);
    let mut svg = String::with_capacity(1 << 16);
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    if lane_height >= 10.0 {
        for (index, lane) in report.lanes.iter().enumerate() {
            let y = index as f64 * lane_height + lane_height * 0.75;
            let _ = writeln!(svg, "<text x=\"4\" y=\"{y:.1}\">{}</text>", escape_html(&lane_name(lane)));
        }
    }
    let h = (lane_height - if lane_height > 4.0 { 1.0 } else { 0.0 }).max(1.0);
    match &report.timeline {
        Timeline::Bars(bars) => svg_bars(&mut svg, bars, wall, plot_width, LEFT, lane_height, h),
        Timeline::Cells(cells) => svg_cells(&mut svg, cells, wall, plot_width, LEFT, lane_height, h),
    }
    let axis_y = lanes as f64 * lane_height + 18.0;
    let ticks = round_ticks(wall, 6);
    let step = ticks.get(1).copied().unwrap_or(wall);
    for t in ticks {
        let x = LEFT + t / wall * plot_width;
        let _ = writeln!(
            svg,
            "<text x=\"{x:.1}\" y=\"{axis_y:.1}\" text-anchor=\"middle\">{}</text>",
            tick_label(t, step, wall)
        );
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg)
}

/// Bars in start order per lane; touching bars of one outcome narrower than a pixel merge
/// into one rect, so a run of many short attempts stays a small file.
fn svg_bars(
    svg: &mut String,
    bars: &[super::Bar],
    wall: f64,
    plot_width: f64,
    left: f64,
    lane_height: f64,
    h: f64,
) {
    let mut order: Vec<usize> = (0..bars.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&bars[a], &bars[b]);
        a.lane.cmp(&b.lane).then(a.start.total_cmp(&b.start))
    });
    let mut merged: Option<(usize, u8, f64, f64, usize)> = None; // lane, outcome, x0, x1, count
    let flush = |svg: &mut String, run: (usize, u8, f64, f64, usize)| {
        let (lane, outcome, x0, x1, count) = run;
        let (name, colour) = OUTCOMES[usize::from(outcome)];
        let y = lane as f64 * lane_height;
        let _ = writeln!(
            svg,
            "<rect x=\"{x0:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{h:.2}\" fill=\"{colour}\">\
             <title>{count} attempts ({name})</title></rect>",
            (x1 - x0).max(0.5)
        );
    };
    for &index in &order {
        let bar = &bars[index];
        let x = left + bar.start / wall * plot_width;
        let w = bar.runtime / wall * plot_width;
        let outcome = code(bar.outcome);
        if w < 1.0 {
            match &mut merged {
                Some((lane, code, _, x1, count))
                    if *lane == bar.lane && *code == outcome && x <= *x1 + 1.0 =>
                {
                    *x1 = x1.max(x + w);
                    *count += 1;
                    continue;
                }
                _ => {
                    if let Some(run) = merged.take() {
                        flush(svg, run);
                    }
                    merged = Some((bar.lane, outcome, x, x + w, 1));
                    continue;
                }
            }
        }
        if let Some(run) = merged.take() {
            flush(svg, run);
        }
        let (name, colour) = OUTCOMES[usize::from(outcome)];
        let y = bar.lane as f64 * lane_height;
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{h:.2}\" fill=\"{colour}\">\
             <title>task {} attempt {}: {} ({name}, {:.3} s)</title></rect>",
            bar.seq,
            bar.attempt,
            escape_html(&bar.input),
            bar.runtime
        );
    }
    if let Some(run) = merged.take() {
        flush(svg, run);
    }
}

/// Cells: the gravest outcome's colour, as opaque as the slot was busy (at most 100,000
/// rects: neighbouring columns merge when lanes are many).
fn svg_cells(
    svg: &mut String,
    cells: &Cells,
    wall: f64,
    plot_width: f64,
    left: f64,
    lane_height: f64,
    h: f64,
) {
    let columns = cells.lanes.first().map_or(0, Vec::len);
    let merge = (cells.lanes.len() * columns).div_ceil(100_000).max(1);
    let column_w = cells.column_s / wall * plot_width;
    for (lane, row) in cells.lanes.iter().enumerate() {
        for (group, chunk) in row.chunks(merge).enumerate() {
            let attempts: u32 = chunk.iter().map(|c| c.attempts).sum();
            let busy: f64 = chunk.iter().map(|c| f64::from(c.busy_s)).sum::<f64>()
                / (cells.column_s * chunk.len() as f64);
            let worst = chunk.iter().filter_map(|c| c.worst).max_by_key(|&w| super::gravity(w));
            if attempts == 0 && busy <= 0.0 {
                continue;
            }
            let (name, colour) = OUTCOMES[usize::from(worst.map_or(0, code))];
            let x = left + (group * merge) as f64 * column_w;
            let y = lane as f64 * lane_height;
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{h:.2}\" fill=\"{colour}\" \
                 fill-opacity=\"{:.2}\"><title>{attempts} attempts, {:.0}% busy (worst: {name})</title></rect>",
                column_w * chunk.len() as f64,
                busy.clamp(0.15, 1.0),
                busy.min(1.0) * 100.0
            );
        }
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<script>
window.addEventListener('error', function (e) {
  document.documentElement.setAttribute('data-errors',
    (document.documentElement.getAttribute('data-errors') || '') + e.message + ';');
});
</script>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 20px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 22px 0 6px; }
.headline { color: #444; margin: 0 0 10px; }
pre { background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 12px; }
canvas { display: block; width: 100%; border: 1px solid #ddd; }
.legend span { margin-right: 14px; white-space: nowrap; }
.legend i { display: inline-block; width: 11px; height: 11px; margin-right: 4px; vertical-align: -1px; }
#tip { position: fixed; pointer-events: none; background: #222; color: #fff; padding: 4px 7px;
  border-radius: 3px; font-size: 12px; display: none; white-space: pre; z-index: 2; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border-bottom: 1px solid #e4e4e4; padding: 3px 10px; text-align: left; }
</style></head>
<body>
<h1>{{TITLE}}</h1>
<p class="headline">{{HEADLINE}}</p>
<h2>{{TIMELINE}}</h2>
<div class="legend">{{LEGEND}}</div>
<canvas id="gantt"></canvas>
<h2>Tasks running over time</h2>
<canvas id="concurrency" height="140"></canvas>
<h2>Runtime per attempt</h2>
<canvas id="histogram" height="160"></canvas>
<h2>Failed tasks</h2>
<div id="failures"></div>
<h2>Summary</h2>
<pre id="summary">{{SUMMARY}}</pre>
<div id="tip"></div>
<script id="data" type="application/json">{{DATA}}</script>
<script>
(function () {
  var COLOURS = {{COLOURS}}, NAMES = {{NAMES}};
  var page = JSON.parse(document.getElementById('data').textContent);
  var a = page.attempts, n = a.start_ms.length, lanes = Math.max(1, page.lanes.length);
  var wall = Math.max(1, page.wall_ms), dpr = window.devicePixelRatio || 1;
  var LEFT = 90, RIGHT = 34, began = performance.now();

  function setup(canvas, cssHeight) {
    var width = canvas.clientWidth || 1000;
    canvas.style.height = cssHeight + 'px';
    canvas.width = Math.round(width * dpr); canvas.height = Math.round(cssHeight * dpr);
    var ctx = canvas.getContext('2d'); ctx.scale(dpr, dpr);
    ctx.font = '11px sans-serif'; ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, width, cssHeight);
    return { ctx: ctx, width: width, plot: width - LEFT - RIGHT };
  }
  function seconds(ms) { return ms < 1000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(2) + ' s'; }
  // Ticks on round values: 1, 2 or 5 times a power of ten, labelled with the decimals they need.
  function ticks(span, count) {
    var raw = span / count, mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / mag;
    var step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag, out = [];
    for (var i = 0; i * step <= span * (1 + 1e-9); i++) out.push(i * step);
    return { at: out, step: step };
  }
  // In seconds once the axis reaches one, else in milliseconds.
  function label(ms, step, span) {
    var decimals = function (unit) { return Math.max(0, Math.min(3, -Math.floor(Math.log10(step / unit) + 1e-9))); };
    if (span < 1000) return ms.toFixed(decimals(1)) + ' ms';
    return (ms / 1000).toFixed(decimals(1000)) + ' s';
  }
  function axis(c, y, span) {
    var t = ticks(span, Math.max(2, Math.min(10, Math.floor(c.plot / 110))));
    c.ctx.fillStyle = '#555'; c.ctx.textAlign = 'center';
    t.at.forEach(function (v) {
      c.ctx.fillText(label(v, t.step, span), LEFT + c.plot * v / span, y);
    });
    c.ctx.textAlign = 'left';
  }

  // Timeline: bars, or cells when there were too many attempts to draw one by one.
  var laneHeight = Math.max(1, Math.min(18, Math.floor(600 / lanes)));
  var g = setup(document.getElementById('gantt'), lanes * laneHeight + 24);
  var scale = g.plot / wall, byLane = [];
  for (var l = 0; l < lanes; l++) byLane.push([]);
  if (laneHeight >= 10) {
    g.ctx.fillStyle = '#333';
    for (var l2 = 0; l2 < lanes; l2++) g.ctx.fillText(page.lanes[l2], 4, l2 * laneHeight + laneHeight * 0.75);
  }
  var gap = laneHeight > 4 ? 1 : 0, grid = page.grid;
  if (grid) {
    var cw = grid.column_ms * scale;
    for (var gl = 0; gl < grid.busy.length; gl++) {
      for (var gc = 0; gc < grid.busy[gl].length; gc++) {
        if (!grid.attempts[gl][gc] && !grid.busy[gl][gc]) continue;
        var worst = grid.worst[gl][gc];
        g.ctx.globalAlpha = Math.max(0.15, grid.busy[gl][gc] / 100);
        g.ctx.fillStyle = COLOURS[worst === 255 ? 0 : worst];
        g.ctx.fillRect(LEFT + gc * cw, gl * laneHeight, Math.max(1, cw), laneHeight - gap);
      }
    }
    g.ctx.globalAlpha = 1;
  } else {
    for (var i = 0; i < n; i++) {
      g.ctx.fillStyle = COLOURS[a.outcome[i]];
      g.ctx.fillRect(LEFT + a.start_ms[i] * scale, a.lane[i] * laneHeight,
        Math.max(1, a.runtime_ms[i] * scale), laneHeight - gap);
      byLane[a.lane[i]].push(i);
    }
  }
  axis(g, lanes * laneHeight + 16, wall);

  // Hover: the bar (or cell) under the pointer (bars of a lane are in start order).
  var tip = document.getElementById('tip'), gantt = document.getElementById('gantt');
  gantt.addEventListener('mousemove', function (e) {
    var box = gantt.getBoundingClientRect(), x = e.clientX - box.left, y = e.clientY - box.top;
    var lane = Math.floor(y / laneHeight), t = (x - LEFT) / scale, slack = 2 / scale, hit = -1;
    if (grid) {
      var column = Math.floor(t / grid.column_ms), row = grid.busy[lane];
      if (!row || column < 0 || column >= row.length) { tip.style.display = 'none'; return; }
      var w = grid.worst[lane][column];
      tip.textContent = page.lanes[lane] + ', ' + seconds(column * grid.column_ms) + ' to ' +
        seconds((column + 1) * grid.column_ms) + '\n' + grid.attempts[lane][column] + ' attempts started, ' +
        row[column] + '% busy' + (w === 255 ? '' : ', gravest: ' + NAMES[w]);
    } else {
      var list = byLane[lane] || [];
      var lo = 0, hi = list.length - 1;
      while (lo <= hi) { var mid = (lo + hi) >> 1; if (a.start_ms[list[mid]] <= t + slack) lo = mid + 1; else hi = mid - 1; }
      for (var k = hi; k >= 0 && k > hi - 50; k--) {
        var j = list[k];
        if (a.start_ms[j] + a.runtime_ms[j] + slack >= t) { hit = j; break; }
      }
      if (hit < 0) { tip.style.display = 'none'; return; }
      var how = a.signal[hit] ? 'signal ' + a.signal[hit] : 'exit ' + a.exit[hit];
      tip.textContent = 'task ' + a.seq[hit] + ' (attempt ' + a.attempt[hit] + ', ' + page.lanes[lane] + ')\n' +
        a.input[hit] + '\n' + NAMES[a.outcome[hit]] + ', ' + how + ', ' + seconds(a.runtime_ms[hit]);
    }
    tip.style.display = 'block'; tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
  });
  gantt.addEventListener('mouseleave', function () { tip.style.display = 'none'; });

  // Concurrency: attempts running on average in each stretch of the wall time.
  var series = page.concurrency, c = setup(document.getElementById('concurrency'), 140);
  var peak = Math.max.apply(null, series.concat([1]));
  var plotH = 110, cy = function (v) { return 8 + plotH - v / peak * (plotH - 8); };
  var step = c.plot / Math.max(1, series.length);
  c.ctx.fillStyle = '#3a6ea5'; c.ctx.beginPath(); c.ctx.moveTo(LEFT, cy(0));
  for (var s = 0; s < series.length; s++) {
    c.ctx.lineTo(LEFT + s * step, cy(series[s])); c.ctx.lineTo(LEFT + (s + 1) * step, cy(series[s]));
  }
  c.ctx.lineTo(LEFT + series.length * step, cy(0)); c.ctx.closePath(); c.ctx.fill();
  c.ctx.fillStyle = '#333'; c.ctx.textAlign = 'right';
  c.ctx.fillText('peak ' + (Math.round(peak * 10) / 10) + ' running', c.width - 6, 16); c.ctx.textAlign = 'left';
  axis(c, 134, wall);

  // Histogram of runtimes: bins from 0 to the longest.
  var h = setup(document.getElementById('histogram'), 160), bins = page.histogram;
  var tallest = Math.max.apply(null, bins.concat([1])), bw = h.plot / bins.length;
  h.ctx.fillStyle = '#3a6ea5';
  for (var b = 0; b < bins.length; b++) {
    var bh = bins[b] / tallest * 124;
    h.ctx.fillRect(LEFT + b * bw, 130 - bh, Math.max(1, bw - 1), bh);
  }
  h.ctx.fillStyle = '#333'; h.ctx.textAlign = 'right';
  h.ctx.fillText('tallest bin: ' + tallest + ' attempts', h.width - 6, 16); h.ctx.textAlign = 'left';
  axis(h, 152, Math.max(1, page.longest_ms));

  // Failure table.
  var failures = page.failures, box = document.getElementById('failures');
  if (!failures.length) { box.textContent = 'None.'; } else {
    var table = document.createElement('table'), head = table.insertRow();
    ['task', 'input', 'error', 'attempts', 'last runtime'].forEach(function (t) {
      var th = document.createElement('th'); th.textContent = t; head.appendChild(th); });
    failures.forEach(function (f) {
      var row = table.insertRow();
      [f.seq, f.input, f.error, f.attempts, seconds(Math.round(f.runtime_s * 1000))].forEach(function (v) {
        row.insertCell().textContent = v; });
    });
    box.appendChild(table);
    if (page.failures_total > failures.length) {
      box.appendChild(document.createTextNode('… and ' + (page.failures_total - failures.length) +
        ' more (muster report --json lists them all)'));
    }
  }
  document.body.setAttribute('data-draw-ms', String(Math.round(performance.now() - began)));
  document.body.setAttribute('data-drawn', String(grid ? page.drawn : n));
})();
</script>
</body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fall_on_round_values_with_the_decimals_they_need() {
        assert_eq!(round_ticks(3.451, 6), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(round_ticks(3.451, 9), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
        assert_eq!(round_ticks(8.278, 5), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(round_ticks(0.0, 5), [0.0]);
        let labels: Vec<String> = round_ticks(3.451, 9).iter().map(|&t| tick_label(t, 0.5, 3.451)).collect();
        assert_eq!(labels, ["0.0 s", "0.5 s", "1.0 s", "1.5 s", "2.0 s", "2.5 s", "3.0 s"]);
        assert_eq!(tick_label(40.0, 20.0, 100.0), "40 s");
        assert_eq!(tick_label(0.25, 0.05, 0.3), "250 ms");
    }
}
