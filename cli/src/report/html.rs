//! The report as pictures: one self-contained HTML file (no network: its data, style and
//! script are inline) with the timeline of every attempt per slot, concurrency over time, the
//! runtime histogram and the failure table; and the timeline alone as SVG.
//!
//! The HTML draws to canvases from columns of numbers, so 100,000 attempts stay a few MB
//! and draw in well under a second; hovering a bar names its task. When drawing ends the page
//! sets `data-drawn` on `<body>` to the number of attempts drawn, and `data-errors` if a script
//! error happened — what the browser test checks.

use std::fmt::Write as _;
use std::path::Path;

use muster::journal::RecordOutcome;
use serde::Serialize;

use super::{lane_name, Report};

/// The attempts as columns (times in milliseconds since the first start).
#[derive(Serialize)]
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

#[derive(Serialize)]
struct Page<'r> {
    summary: &'r Report,
    lanes: Vec<String>,
    wall_ms: u64,
    attempts: Columns<'r>,
}

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

/// Writes the HTML report of `report` to `path`.
pub fn write_html(report: &Report, path: &Path) -> std::io::Result<()> {
    let bars = &report.bars;
    let page = Page {
        summary: report,
        lanes: report.lanes.iter().map(lane_name).collect(),
        wall_ms: ms(report.wall_s),
        attempts: Columns {
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
    let html = TEMPLATE
        .replace("{{TITLE}}", &escape_html(&format!("muster report: {}", report.command)))
        .replace("{{SUMMARY}}", &escape_html(&report.text()))
        .replace("{{LEGEND}}", &legend)
        .replace("{{COLOURS}}", &serde_json::to_string(&colours).map_err(std::io::Error::other)?)
        .replace("{{NAMES}}", &serde_json::to_string(&names).map_err(std::io::Error::other)?)
        .replace("{{DATA}}", &data);
    std::fs::write(path, html)
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
    let mut svg = String::with_capacity(256 + report.bars.len() * 120);
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
    // Bars in start order per lane; touching bars of one outcome narrower than a pixel merge
    // into one rect, so a run of 100,000 short attempts stays a small file.
    let mut order: Vec<usize> = (0..report.bars.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&report.bars[a], &report.bars[b]);
        a.lane.cmp(&b.lane).then(a.start.total_cmp(&b.start))
    });
    let h = (lane_height - if lane_height > 4.0 { 1.0 } else { 0.0 }).max(1.0);
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
        let bar = &report.bars[index];
        let x = LEFT + bar.start / wall * plot_width;
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
                        flush(&mut svg, run);
                    }
                    merged = Some((bar.lane, outcome, x, x + w, 1));
                    continue;
                }
            }
        }
        if let Some(run) = merged.take() {
            flush(&mut svg, run);
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
        flush(&mut svg, run);
    }
    let axis_y = lanes as f64 * lane_height + 18.0;
    for tick in 0..=5 {
        let t = wall * f64::from(tick) / 5.0;
        let x = LEFT + plot_width * f64::from(tick) / 5.0;
        let _ = writeln!(svg, "<text x=\"{x:.1}\" y=\"{axis_y:.1}\" text-anchor=\"middle\">{t:.2} s</text>");
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg)
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
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 22px 0 6px; }
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
<pre id="summary">{{SUMMARY}}</pre>
<h2>Timeline: every attempt, per slot</h2>
<div class="legend">{{LEGEND}}</div>
<canvas id="gantt"></canvas>
<h2>Tasks running over time</h2>
<canvas id="concurrency" height="140"></canvas>
<h2>Runtime per attempt</h2>
<canvas id="histogram" height="160"></canvas>
<h2>Failed tasks</h2>
<div id="failures"></div>
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
  function seconds(ms) { return ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(2) + ' s'; }
  function axis(c, y, span) {
    c.ctx.fillStyle = '#555'; c.ctx.textAlign = 'center';
    for (var t = 0; t <= 5; t++) c.ctx.fillText(seconds(Math.round(span * t / 5)), LEFT + c.plot * t / 5, y);
    c.ctx.textAlign = 'left';
  }

  // Timeline.
  var laneHeight = Math.max(1, Math.min(18, Math.floor(600 / lanes)));
  var g = setup(document.getElementById('gantt'), lanes * laneHeight + 24);
  var scale = g.plot / wall, drawn = 0, byLane = [];
  for (var l = 0; l < lanes; l++) byLane.push([]);
  if (laneHeight >= 10) {
    g.ctx.fillStyle = '#333';
    for (var l2 = 0; l2 < lanes; l2++) g.ctx.fillText(page.lanes[l2], 4, l2 * laneHeight + laneHeight * 0.75);
  }
  var gap = laneHeight > 4 ? 1 : 0;
  for (var i = 0; i < n; i++) {
    g.ctx.fillStyle = COLOURS[a.outcome[i]];
    g.ctx.fillRect(LEFT + a.start_ms[i] * scale, a.lane[i] * laneHeight,
      Math.max(1, a.runtime_ms[i] * scale), laneHeight - gap);
    byLane[a.lane[i]].push(i);
    drawn++;
  }
  axis(g, lanes * laneHeight + 16, wall);

  // Hover: the bar under the pointer (bars of a lane are in start order).
  var tip = document.getElementById('tip'), gantt = document.getElementById('gantt');
  gantt.addEventListener('mousemove', function (e) {
    var box = gantt.getBoundingClientRect(), x = e.clientX - box.left, y = e.clientY - box.top;
    var lane = Math.floor(y / laneHeight), t = (x - LEFT) / scale, slack = 2 / scale, hit = -1;
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
    tip.style.display = 'block'; tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
  });
  gantt.addEventListener('mouseleave', function () { tip.style.display = 'none'; });

  // Concurrency: +1 at each start, -1 at each end. Times are kept to the millisecond, so an
  // attempt is taken to end no later than the next one in its slot starts.
  var events = [];
  byLane.forEach(function (list) {
    for (var k = 0; k < list.length; k++) {
      var j = list[k], end = a.start_ms[j] + a.runtime_ms[j];
      if (k + 1 < list.length) end = Math.min(end, a.start_ms[list[k + 1]]);
      events.push([a.start_ms[j], 1]); events.push([Math.max(a.start_ms[j], end), -1]);
    }
  });
  events.sort(function (p, q) { return p[0] - q[0] || p[1] - q[1]; });
  var c = setup(document.getElementById('concurrency'), 140), peak = 1, level = 0;
  for (var e3 = 0; e3 < events.length; e3++) { level += events[e3][1]; peak = Math.max(peak, level); }
  var plotH = 110, cy = function (v) { return 8 + plotH - v / peak * (plotH - 8); };
  c.ctx.strokeStyle = '#3a6ea5'; c.ctx.beginPath(); c.ctx.moveTo(LEFT, cy(0)); level = 0;
  for (var e4 = 0; e4 < events.length; e4++) {
    var x4 = LEFT + events[e4][0] * scale * c.plot / g.plot;
    c.ctx.lineTo(x4, cy(level)); level += events[e4][1]; c.ctx.lineTo(x4, cy(level));
  }
  c.ctx.stroke(); c.ctx.fillStyle = '#333'; c.ctx.fillText('peak ' + peak, 4, 16);
  axis(c, 134, wall);

  // Histogram of runtimes: 40 bins from 0 to the longest.
  var h = setup(document.getElementById('histogram'), 160), bins = new Array(40).fill(0), longest = 1;
  for (var r = 0; r < n; r++) longest = Math.max(longest, a.runtime_ms[r]);
  for (var r2 = 0; r2 < n; r2++) bins[Math.min(39, Math.floor(a.runtime_ms[r2] / longest * 40))]++;
  var tallest = Math.max.apply(null, bins.concat([1])), bw = h.plot / 40;
  h.ctx.fillStyle = '#3a6ea5';
  for (var b = 0; b < 40; b++) {
    var bh = bins[b] / tallest * 124;
    h.ctx.fillRect(LEFT + b * bw, 130 - bh, Math.max(1, bw - 1), bh);
  }
  h.ctx.fillStyle = '#333'; h.ctx.fillText(tallest + ' attempts', 4, 16);
  axis(h, 152, longest);

  // Failure table.
  var failures = page.summary.failures, box = document.getElementById('failures');
  if (!failures.length) { box.textContent = 'None.'; } else {
    var table = document.createElement('table'), head = table.insertRow();
    ['task', 'input', 'error', 'attempts', 'last runtime'].forEach(function (t) {
      var th = document.createElement('th'); th.textContent = t; head.appendChild(th); });
    failures.slice(0, 1000).forEach(function (f) {
      var row = table.insertRow();
      [f.seq, f.input, f.error, f.attempts, seconds(Math.round(f.runtime_s * 1000))].forEach(function (v) {
        row.insertCell().textContent = v; });
    });
    box.appendChild(table);
    if (failures.length > 1000) box.appendChild(document.createTextNode('… and ' + (failures.length - 1000) + ' more'));
  }
  document.body.setAttribute('data-draw-ms', String(Math.round(performance.now() - began)));
  document.body.setAttribute('data-drawn', String(drawn));
})();
</script>
</body></html>
"##;
