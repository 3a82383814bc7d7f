//! `muster report`: the text and JSON summaries against a joblog with known content, old
//! joblogs, and the HTML report opened in a real headless Chromium.

mod util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use muster::journal::{JournalWriter, Record, RecordOutcome};
use util::*;

#[allow(clippy::too_many_arguments)]
fn record(
    seq: u64,
    input: &str,
    slot: u32,
    start: f64,
    runtime: f64,
    outcome: RecordOutcome,
    exitval: i32,
    attempt: u32,
) -> Record {
    Record {
        seq,
        host: ":".into(),
        start,
        runtime,
        send: 0,
        receive: 0,
        exitval,
        signal: if outcome == RecordOutcome::TimedOut { 15 } else { 0 },
        command: format!("work {input}").into_bytes(),
        outcome,
        attempt,
        occurrence: 1,
        input: input.as_bytes().to_vec(),
        slot,
    }
}

/// Two slots over three seconds: a done, b timed out, c failed after a retry, d done, and a
/// torn last line for e (a writer killed mid-write).
fn known_joblog(path: &Path) {
    use RecordOutcome::*;
    let mut writer = JournalWriter::create(path, "work").expect("joblog");
    for r in [
        record(1, "a", 1, 100.0, 1.0, Done, 0, 1),
        record(2, "b", 2, 100.0, 2.0, TimedOut, 0, 1),
        record(3, "c", 1, 101.0, 0.5, Retry, 2, 1),
        record(3, "c", 1, 101.5, 0.5, Failed, 2, 2),
        record(4, "d", 2, 102.0, 1.0, Done, 0, 1),
    ] {
        writer.write(&r).expect("write");
    }
    drop(writer);
    let torn = record(5, "e", 1, 102.0, 0.1, Done, 0, 1).to_line();
    let mut bytes = std::fs::read(path).expect("read");
    bytes.extend_from_slice(&torn.as_bytes()[..torn.len() / 2]);
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn the_json_summary_matches_a_joblog_with_known_content() {
    let sb = Sandbox::new();
    known_joblog(&sb.path("log"));
    let out = sb.run(&["report", "log", "--json"], b"");
    assert_code(&out, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    let number =
        |pointer: &str| json.pointer(pointer).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
    let close = |pointer: &str, want: f64| {
        let got = number(pointer);
        assert!((got - want).abs() < 1e-6, "{pointer}: {got}, expected {want}");
    };
    assert_eq!(json["torn_tail"], true);
    close("/tasks", 4.0);
    close("/attempts", 5.0);
    close("/retries", 1.0);
    close("/outcomes/done", 2.0);
    close("/outcomes/failed", 1.0);
    close("/outcomes/timed_out", 1.0);
    close("/wall_s", 3.0);
    close("/task_time_s", 5.0);
    close("/slots", 2.0);
    // Ratios to the thousandth, times to the millisecond.
    let thousandth = |pointer: &str, want: f64| {
        let got = number(pointer);
        assert!((got - want).abs() < 5e-4 + 1e-9, "{pointer}: {got}, expected {want}");
    };
    thousandth("/speedup", 5.0 / 3.0);
    thousandth("/efficiency", 5.0 / 6.0);
    close("/runtime/min", 0.5);
    close("/runtime/median", 1.0);
    close("/runtime/p90", 2.0);
    close("/runtime/max", 2.0);
    close("/lanes/0/idle_s", 1.0);
    close("/lanes/1/idle_s", 0.0);
    let failures = json["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 2);
    assert_eq!(
        (failures[0]["input"].as_str(), failures[0]["error"].as_str()),
        (Some("b"), Some("timed out"))
    );
    assert_eq!((failures[1]["input"].as_str(), failures[1]["error"].as_str()), (Some("c"), Some("exit 2")));
    assert_eq!(failures[1]["attempts"], 2);
    assert_eq!(json["slowest"][0]["input"], "b");
}

#[test]
fn retries_come_from_the_attempt_column_whatever_wrote_the_joblog() {
    // A queue's joblog holds one record per task, its attempt the broker's delivery: task b
    // ran three times (two retries) and c twice, with no retry records written here.
    use RecordOutcome::*;
    let sb = Sandbox::new();
    let mut writer = JournalWriter::create(&sb.path("log"), "muster-queue:q").expect("joblog");
    for r in [
        record(1, "a", 1, 100.0, 1.0, Done, 0, 1),
        record(2, "b", 2, 100.0, 1.0, Done, 0, 3),
        record(3, "c", 1, 101.0, 1.0, Failed, 2, 2),
    ] {
        writer.write(&r).expect("write");
    }
    drop(writer);
    let out = sb.run(&["report", "log", "--json"], b"");
    assert_code(&out, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert_eq!(json["retries"], 3, "{json}");
    assert_eq!(json["attempts"], 6, "{json}");
}

#[test]
fn the_text_summary_names_failures_and_idle_slots() {
    let sb = Sandbox::new();
    known_joblog(&sb.path("log"));
    let out = sb.run(&["report", "log"], b"");
    assert_code(&out, 0);
    let text = stdout(&out);
    for expected in [
        "tasks: 4 — 2 done, 1 failed, 1 timed out, 0 output lost, 0 unfinished",
        "attempts: 5 (1 retries)",
        "speedup 1.67 on 2 slot(s), efficiency 83%",
        "task 3      exit 2, after 2 attempt(s)  c",
        "task 2      timed out, after 1 attempt(s)  b",
        "slot 1          1.00 s idle (33%)",
        "torn",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn a_version_1_joblog_reports_with_slots_inferred() {
    let sb = Sandbox::new();
    let header = "# muster joblog v1\tcommand: work\n\
        Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\tOutcome\tAttempt\tOccurrence\tInput\tCheck\n";
    let lines: String = [
        record(1, "a", 0, 10.0, 2.0, RecordOutcome::Done, 0, 1),
        record(2, "b", 0, 10.0, 1.0, RecordOutcome::Done, 0, 1),
        record(3, "c", 0, 11.0, 1.0, RecordOutcome::Done, 0, 1),
    ]
    .iter()
    .map(|r| r.to_line_in(1))
    .collect();
    sb.write("old", format!("{header}{lines}"));
    let out = sb.run(&["report", "old", "--json"], b"");
    assert_code(&out, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(json["version"], 1);
    assert_eq!(json["slots"], 2, "c followed b in the second slot");
    assert_eq!(json["lanes"][0]["inferred"], true);
    assert!(stdout(&sb.run(&["report", "old"], b"")).contains("slots inferred from start times"));
}

#[test]
fn a_file_that_is_not_a_joblog_is_a_usage_error() {
    let sb = Sandbox::new();
    sb.write("notes", "hello\n");
    let out = sb.run(&["report", "notes"], b"");
    assert_code(&out, 255);
    // A report only reads: it does not speak of overwriting.
    assert!(!stderr(&out).contains("overwrite"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a muster joblog") || stderr(&out).contains("joblog"),
        "{}",
        stderr(&out)
    );
    assert_code(&sb.run(&["report", "missing"], b""), 255);
}

/// Chromium, if this machine has it.
fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|path| Path::new(path).exists())
}

/// Opens `page` in headless Chromium and returns the DOM after its scripts ran.
fn render(browser: &str, sb: &Sandbox, page: &Path, screenshot: &Path) -> String {
    let profile = sb.path("chromium-profile");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1400",
    ];
    let run = |extra: &str| {
        Command::new(browser)
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("run chromium")
    };
    let shot = run(&format!("--screenshot={}", screenshot.display()));
    assert!(shot.status.success(), "chromium: {}", String::from_utf8_lossy(&shot.stderr));
    let dom = run("--dump-dom");
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

#[test]
fn the_html_report_draws_every_attempt_in_a_real_browser() {
    let Some(browser) = chromium() else {
        println!("skipped: Debian's chromium is not installed (.ci/run installs it)");
        return;
    };
    let sb = Sandbox::new();
    sb.write("task.sh", "#!/bin/sh\nsleep 0.0$(( $1 % 4 ))\n[ \"$1\" -ne 5 ] && [ \"$1\" -ne 9 ]\n");
    let mut inputs: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    inputs.push("</script><b>x".into());
    let mut args = vec![
        "run",
        "-j",
        "4",
        "--retries",
        "1",
        "--joblog",
        "log",
        "--report",
        "run.html",
        "sh",
        "task.sh",
        ":::",
    ];
    args.extend(inputs.iter().map(String::as_str));
    let out = sb.run(&args, b"");
    assert_code(&out, 3);
    let records = joblog_records(&sb.read("log")).len();
    assert_eq!(records, 31 + 3, "30 tasks and a strange input, 3 of them retried");
    let dom = render(browser, &sb, &sb.path("run.html"), &sb.path("shot.png"));
    assert!(!dom.contains(" data-errors=\""), "script errors: {dom}");
    assert!(
        dom.contains(&format!("data-drawn=\"{records}\"")),
        "every attempt drawn:\n{}",
        &dom[dom.len().saturating_sub(400)..]
    );
    assert!(
        dom.contains("&lt;/script&gt;&lt;b&gt;x") && !dom.contains("<b>x</b>"),
        "inputs are shown as text"
    );
    let png = std::fs::metadata(sb.path("shot.png")).expect("a screenshot").len();
    assert!(png > 10_000, "screenshot of {png} bytes");
}

#[test]
fn a_joblog_of_many_attempts_makes_a_small_page_timeline_first_and_times_to_the_millisecond() {
    use RecordOutcome::*;
    let sb = Sandbox::new();
    let path = sb.path("log");
    let mut writer = JournalWriter::create(&path, "work").expect("joblog");
    // 100,000 tasks on 4 slots, 0.1 s and 0.2 s each (sums no float adds up exactly); every
    // 1,000th fails once, then succeeds; task 50,000 times out.
    let mut clock = [1_000.0f64; 4];
    let mut records = 0;
    for seq in 1..=100_000u64 {
        let slot = (seq % 4) as usize;
        let runtime = if seq % 2 == 0 { 0.1 } else { 0.2 };
        let input = seq.to_string();
        let mut attempt = |outcome, exit, attempt| {
            let r = record(seq, &input, slot as u32 + 1, clock[slot], runtime, outcome, exit, attempt);
            clock[slot] += runtime;
            writer.write(&r).expect("write");
            records += 1;
        };
        match seq {
            50_000 => attempt(TimedOut, 0, 1),
            _ if seq % 1000 == 0 => {
                attempt(Retry, 1, 1);
                attempt(Done, 0, 2);
            }
            _ => attempt(Done, 0, 1),
        }
    }
    drop(writer);

    let out = sb.run(&["report", "log", "--json", "--html", "page.html", "--svg", "page.svg"], b"");
    assert_code(&out, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert_eq!((json["tasks"].as_u64(), json["attempts"].as_u64()), (Some(100_000), Some(records)));
    assert_eq!((json["retries"].as_u64(), json["outcomes"]["timed_out"].as_u64()), (Some(99), Some(1)));
    for pointer in
        ["/started", "/wall_s", "/task_time_s", "/lanes/0/busy_s", "/lanes/0/idle_s", "/runtime/median"]
    {
        let value = json.pointer(pointer).and_then(serde_json::Value::as_f64).expect(pointer);
        assert_eq!(value, (value * 1000.0).round() / 1000.0, "{pointer} to the millisecond: {value}");
    }
    assert_eq!(json["runtime"]["median"].as_f64(), Some(0.1), "50,099 of 0.1 s, 50,000 of 0.2 s");

    // Aggregated past what a screen shows: the page stays small whatever the attempts.
    let html = sb.read("page.html");
    assert!(html.len() < 1_000_000, "a page of {} bytes for 100,000 attempts", html.len());
    assert!(std::fs::metadata(sb.path("page.svg")).expect("svg").len() < 2_000_000);
    let at = |what: &str| html.find(what).unwrap_or_else(|| panic!("{what} missing"));
    assert!(at("id=\"gantt\"") < at("id=\"summary\""), "the timeline comes before the text summary");
    assert!(html.contains("more than can be drawn one by one"), "the page says it aggregates");

    let Some(browser) = chromium() else {
        println!("skipped the browser part: Debian's chromium is not installed (.ci/run installs it)");
        return;
    };
    let dom = render(browser, &sb, &sb.path("page.html"), &sb.path("shot.png"));
    assert!(!dom.contains(" data-errors=\""), "script errors: {}", &dom[dom.len().saturating_sub(400)..]);
    assert!(
        dom.contains(&format!("data-drawn=\"{records}\"")),
        "every attempt accounted for:\n{}",
        &dom[dom.len().saturating_sub(400)..]
    );
}

#[test]
fn run_writes_its_report_after_an_interrupt_too() {
    let sb = Sandbox::new();
    let args = [
        "run", "-j", "2", "--grace", "100ms", "--joblog", "log", "--report", "run.html", "sleep", ":::", "0",
        "30", "30",
    ];
    let mut child = sb.spawn(&args);
    // Interrupted once the first task is journaled (the second is running by then).
    assert!(
        wait_for(Duration::from_secs(10), || joblog_records(&sb.read("log")).len() == 1),
        "first task done"
    );
    signal(&child, rustix::process::Signal::INT);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let html = sb.read("run.html");
    assert!(html.contains("muster report") && html.contains("\"seq\""), "a report of what ran");
    let records = joblog_records(&sb.read("log"));
    assert!(records.len() >= 2, "the stopped tasks are journaled too: {records:?}");
}

#[test]
fn the_svg_timeline_has_a_bar_per_attempt() {
    let sb = Sandbox::new();
    known_joblog(&sb.path("log"));
    let out = sb.run(&["report", "log", "--svg", "t.svg", "--html", "t.html"], b"");
    assert_code(&out, 0);
    let svg = sb.read("t.svg");
    assert!(svg.starts_with("<svg "), "{svg}");
    assert_eq!(svg.matches("<title>task ").count(), 5, "{svg}");
    assert!(svg.contains("<title>task 3 attempt 2: c (failed, 0.500 s)</title>"), "{svg}");
    assert!(sb.read("t.html").contains("<canvas id=\"gantt\">"));
}

#[test]
fn a_persistent_run_reports_one_lane_per_worker() {
    let sb = Sandbox::new();
    let out =
        sb.run(&["run", "--persistent", "-j", "2", "--joblog", "log", "cat", ":::", "a", "b", "c", "d"], b"");
    assert_code(&out, 0);
    let out = sb.run(&["report", "log", "--json"], b"");
    assert_code(&out, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!((json["tasks"].as_u64(), json["outcomes"]["done"].as_u64()), (Some(4), Some(4)));
    let lanes = json["lanes"].as_array().expect("lanes");
    assert!(!lanes.is_empty() && lanes.len() <= 2, "{lanes:?}");
    assert!(lanes
        .iter()
        .all(|l| l["inferred"] == false && l["slot"].as_u64().is_some_and(|s| (1..=2).contains(&s))));
}

#[test]
fn a_gnu_parallel_joblog_is_reported_on_but_not_resumed() {
    let sb = Sandbox::new();
    sb.write("code.sh", "exit $1\n");
    let out = sb.run(
        &[
            "run",
            "-j",
            "2",
            "--joblog",
            "log",
            "--joblog-format",
            "gnu",
            "sh",
            "code.sh",
            ":::",
            "0",
            "3",
            "0",
        ],
        b"",
    );
    assert_code(&out, 1);
    let report = sb.run(&["report", "log", "--json"], b"");
    assert_code(&report, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&report)).expect("JSON");
    assert_eq!(json["version"], 0);
    assert_eq!((json["tasks"].as_u64(), json["outcomes"]["done"].as_u64()), (Some(3), Some(2)));
    assert_eq!(json["failures"][0]["input"], "sh code.sh 3", "the command stands in for the input");
    assert_eq!(json["lanes"][0]["inferred"], true);
    assert!(stdout(&sb.run(&["report", "log"], b"")).contains("GNU parallel's columns"));
    let resume = sb.run(&["run", "--joblog", "log", "--resume", "sh", "code.sh", ":::", "0"], b"");
    assert_code(&resume, 255);
    assert!(stderr(&resume).contains("resumes only from its own joblogs"), "{}", stderr(&resume));
}
