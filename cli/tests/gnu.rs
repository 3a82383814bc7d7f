//! Differential tests against GNU parallel (Debian's `parallel`; `.ci/run` installs it): every
//! input form muster shares with it gives the same output with `-k`, and the same exit status.
//! Without GNU parallel the tests print why they are skipped.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};

use util::*;

/// GNU parallel, if this machine has it (moreutils ships another `parallel`).
fn gnu_parallel() -> Option<&'static str> {
    let out = Command::new("parallel").arg("--version").stdin(Stdio::null()).output().ok()?;
    String::from_utf8_lossy(&out.stdout).contains("GNU parallel").then_some("parallel")
}

/// Runs GNU parallel with `args` in the sandbox, stdin empty.
fn gnu_run(sb: &Sandbox, gnu: &str, args: &[&str]) -> std::process::Output {
    Command::new(gnu)
        .current_dir(sb.dir())
        .arg("--will-cite")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("GNU parallel")
}

/// Runs `muster run -k ARGS` and `parallel -k ARGS` in the same folder with the same stdin;
/// asserts the same stdout and exit status.
fn same(sb: &Sandbox, gnu: &str, args: &[&str], stdin: &[u8]) {
    let mut muster_args = vec!["run", "-k"];
    muster_args.extend_from_slice(args);
    let ours = sb.run(&muster_args, stdin);
    let mut theirs = Command::new(gnu);
    theirs.current_dir(sb.dir()).args(["--will-cite", "-k"]).args(args);
    theirs.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = theirs.spawn().expect("start GNU parallel");
    if let Some(mut input) = child.stdin.take() {
        std::io::Write::write_all(&mut input, stdin).expect("feed GNU parallel");
    }
    let theirs = child.wait_with_output().expect("GNU parallel");
    assert_eq!(
        stdout(&ours),
        String::from_utf8_lossy(&theirs.stdout),
        "stdout of {args:?}; muster's stderr: {}",
        stderr(&ours)
    );
    assert_eq!(ours.status.code(), theirs.status.code(), "exit status of {args:?}");
}

#[test]
fn every_input_form_matches_gnu_parallel() {
    let Some(gnu) = gnu_parallel() else {
        println!("skipped: GNU parallel is not installed (.ci/run installs Debian's package)");
        return;
    };
    let sb = Sandbox::new();
    sb.write("f1", "1\n2\n3\n");
    sb.write("f2", "x\ny\n");
    sb.write("people.csv", "name,age\nann, 31\nbob,42\n");
    // GNU parallel composes a shell command line, muster runs argv directly: a script keeps
    // the comparison about exit statuses.
    sb.write("code.sh", "exit $1\n");
    let cases: &[&[&str]] = &[
        &["echo", ":::", "a", "b", ":::", "1", "2"],
        &["echo", ":::", "a", "b", "c", ":::+", "1", "2"],
        &["--link", "echo", ":::", "a", "b", "c", ":::", "1", "2"],
        &["echo", "::::", "f1", "f2"],
        &["echo", ":::", "a", "::::", "f1"],
        &["echo", "::::", "f1", ":::", "a", "b"],
        &["echo", ":::", "a", "b", "::::+", "f1"],
        &["echo", ":::", "a", "b", "::::+", "f1", "f2"],
        &["echo", "::::", "f2", "::::+", "f1", "f2"],
        &["--link", "echo", ":::", "a", "b", "::::+", "f1"],
        &["echo", ":::", "a", "b", "c", "d", ":::+", "1", "2", ":::", "x", "y"],
        &["-a", "f1", "-a", "f2", "echo"],
        &["--link", "-a", "f1", "-a", "f2", "echo", ":::", "a", "b"],
        &["-a", "f1", "echo", ":::+", "p", "q"],
        &["echo", "{2}-{1}", ":::", "a", "b", ":::", "1", "2"],
        &["echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", ":::", "dir/b.c", "d.e/f", "plain"],
        &["false", ":::", "1", "2", "3"],
        &["sh", "code.sh", ":::", "0", "4", "0", "7"],
        &["-N", "2", "echo", "{2}-{1}", ":::", "a", "b", "c", "d", "e"],
        &["-n", "2", "echo", ":::", "a", "b", "c", "d", "e"],
        &["-n", "3", "echo", "::::", "f1"],
        &["--tagstring", "t{#}/{}", "echo", "out", ":::", "a", "b"],
        &["--tag", "echo", "out", ":::", "a", "b", ":::", "1"],
        &["--colsep", ",", "echo", "{2}-{1}", "::::", "people.csv"],
        &["--colsep", ", *", "echo", "::::", "people.csv"],
        &["--header", ":", "--colsep", ",", "echo", "{name} is {age}", "::::", "people.csv"],
        &["--header", ":", "echo", "{x}/{y}", ":::", "x", "1", "2", ":::", "y", "a", "b"],
        &["-j", "1", "-m", "echo", "pre-{}-post", ":::", "a", "b"],
        &["-j", "1", "-X", "echo", "pre-{}-post", ":::", "a", "b"],
        &["-j", "1", "-X", "echo", "{#}:{}", ":::", "a", "b", "c"],
        &["-j", "3", "-X", "echo", ":::", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
        &["-j", "2", "-m", "echo", ":::", "a", "b", "c"],
    ];
    for args in cases {
        same(&sb, gnu, args, b"");
    }
    same(&sb, gnu, &["-a", "-", "echo"], b"s1\ns2\n");
    same(&sb, gnu, &["echo", "::::", "-"], b"s1\ns2\n");
    same(&sb, gnu, &["echo", ":::", "a", "b", "::::", "-"], b"s1\ns2\n");
    same(&sb, gnu, &["echo"], b"one\ntwo words\n\nlast");
    same(&sb, gnu, &["-0", "echo"], b"nul one\0nul\ttwo\0");
    same(&sb, gnu, &["--colsep", "\t", "echo", "{2}{1}"], b"a\tb\nc\td\n");
    same(&sb, gnu, &["--header", ":", "--colsep", "\t", "echo", "{k}={v}"], b"k\tv\none\t1\n");
}

#[test]
fn common_gnu_flags_are_taken_as_gnu_parallel_takes_them() {
    let Some(gnu) = gnu_parallel() else {
        println!("skipped: GNU parallel is not installed (.ci/run installs Debian's package)");
        return;
    };
    let sb = Sandbox::new();
    // -I: another replacement string; -d: another delimiter; -P / --max-procs: -j.
    same(&sb, gnu, &["-I", "XX", "echo", "XX-XX.bak", ":::", "a", "b"], b"");
    same(&sb, gnu, &["-d", ",", "echo"], b"a,b,c");
    same(&sb, gnu, &["-d", ",", "echo"], b"a,b,c,");
    same(&sb, gnu, &["-d", "\\t", "echo", "[{}]"], b"x\ty z\t");
    same(&sb, gnu, &["-P", "1", "echo", ":::", "1", "2"], b"");
    same(&sb, gnu, &["--max-procs", "2", "echo", ":::", "1", "2"], b"");
    // {%}: the first -j tasks get slots 1, 2, … whichever loop starts them (tasks that last:
    // GNU reuses a slot as soon as it reaps a task, which a quick one makes a race).
    sb.write("slot.sh", "sleep 0.3; echo $1 $2\n");
    same(&sb, gnu, &["-j4", "sh", "slot.sh", "{#}", "{%}", ":::", "a", "b", "c", "d"], b"");
    same(&sb, gnu, &["-j1", "echo", "{%}", ":::", "a", "b", "c"], b"");
}

#[test]
fn no_two_running_tasks_share_a_slot_number_and_numbers_stay_within_jobs() {
    let sb = Sandbox::new();
    // A task holds its slot's folder while it runs: a second holder's mkdir fails.
    let out = sb.run(
        &[
            "run",
            "-j3",
            "--shell",
            "mkdir held-{%} && sleep 0.05 && rmdir held-{%} && echo {%}",
            ":::",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "7",
            "8",
            "9",
            "10",
            "11",
            "12",
        ],
        b"",
    );
    assert_code(&out, 0);
    let mut numbers: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers, ["1", "2", "3"], "{}", stdout(&out));
}

#[test]
fn gnu_flags_muster_refuses_get_only_musters_hint() {
    let sb = Sandbox::new();
    for (flag, hint) in
        [("-v", "--dry-run"), ("-L", "-n N"), ("--max-lines", "-n N"), ("--bar", "--progress")]
    {
        let out = sb.run(&["run", flag, "echo", ":::", "a"], b"");
        assert_code(&out, 255);
        let text = stderr(&out);
        assert!(text.contains("is GNU parallel's") && text.contains(hint), "{flag}: {text}");
        assert!(
            !text.contains("similar argument") && !text.contains("tip:"),
            "{flag}: clap's guess too: {text}"
        );
        assert_eq!(text.lines().count(), 1, "{flag}: one line: {text}");
    }
    let out = sb.run(&["run", "-d", "ab", "echo", ":::", "a"], b"");
    assert_code(&out, 255);
    assert!(stderr(&out).contains("delimiter is one byte"), "{}", stderr(&out));
}

#[test]
fn gnu_syntax_muster_does_not_take_is_an_error_or_a_warning_naming_the_fix() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "echo", "{= s/a/b/ =}", ":::", "a"], b"");
    assert_code(&out, 255);
    assert!(
        stderr(&out).contains("'{= ... =}' (a Perl expression in GNU parallel) is not supported"),
        "{}",
        stderr(&out)
    );
    // As GNU's docs write it, unquoted: the shell makes three words of it.
    let out = sb.run(&["run", "echo", "{=", "s/a/b/", "=}", ":::", "abc"], b"");
    assert_code(&out, 255);
    assert!(stderr(&out).contains("a Perl expression in GNU parallel"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "nothing ran: {}", stdout(&out));

    // -a after the command belongs to the command (as in GNU parallel); muster says so when
    // that leaves it reading an empty stdin.
    sb.write("f", "1\n");
    let out = sb.run(&["run", "echo", "-a", "f"], b"");
    assert_code(&out, 0);
    assert!(stderr(&out).contains("'-a' after the command is passed to the command"), "{}", stderr(&out));
    let out = sb.run(&["run", "-k", "echo", "-a", "x"], b"in\n");
    assert_eq!(stdout(&out), "-a x in\n", "with input read, the words stay the command's");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    let out = sb.run(&["run", "-a", "-", "echo", "::::", "-"], b"");
    assert_code(&out, 255);
    assert!(stderr(&out).contains("standard input (-) is given as an input source twice"));
    let out = sb.run(&["run", "echo", "::::"], b"");
    assert_code(&out, 255);
    assert!(stderr(&out).contains("'::::' must be followed by at least one file name"));
}

#[test]
fn failures_are_named_as_they_end_and_listed_in_the_summary() {
    let sb = Sandbox::new();
    sb.write("task.sh", "case $1 in t) sleep 5;; k) kill -9 $$;; *) exit $1;; esac\n");
    let out =
        sb.run(&["run", "--summary", "--timeout", "300ms", "sh", "task.sh", ":::", "0", "3", "t", "k"], b"");
    assert_code(&out, 3);
    let err = stderr(&out);
    for named in [
        "task 2 (3): exited with status 3",
        "task 3 (t): timed out after 300ms",
        "task 4 (k): killed by signal 9",
    ] {
        assert!(err.contains(&format!("muster: {named}\n")), "{named:?} as it ended:\n{err}");
        let listed = err.lines().find(|l| l.starts_with("muster: failed: ")).unwrap_or_default();
        assert!(listed.contains(named), "{named:?} in the summary's list:\n{err}");
    }
    assert!(!err.contains("task 1 (0)"), "a task that succeeded is not named:\n{err}");
}

#[test]
fn a_halt_says_so_and_usage_errors_never_look_like_failure_counts() {
    let sb = Sandbox::new();
    sb.write("task.sh", "exit $1\n");
    let out =
        sb.run(&["run", "-j", "1", "--halt", "soon,fail=1", "sh", "task.sh", ":::", "2", "0", "0"], b"");
    assert_code(&out, 1);
    assert!(
        // How many of the rest were read (and so counted as not started) is the feeder's race.
        stderr(&out).contains("muster: halted (--halt): 1 task(s) failed; "),
        "{}",
        stderr(&out)
    );
    let two_failed = sb.run(&["run", "sh", "task.sh", ":::", "1", "1"], b"");
    assert_code(&two_failed, 2);
    assert_code(&sb.run(&["run", "--no-such-flag", "echo"], b""), 255);
    assert_code(&sb.run(&["run", "-a", "missing", "echo"], b""), 255);
}

#[test]
fn progress_counts_what_a_resume_skips_toward_the_total() {
    let sb = Sandbox::new();
    let first = sb.run(&["run", "--joblog", "log", "true", ":::", "a", "b"], b"");
    assert_code(&first, 0);
    for persistent in [&[][..], &["--persistent"][..]] {
        let mut args = vec!["run", "--progress", "--joblog", "log", "--resume"];
        args.extend_from_slice(persistent);
        let program = if persistent.is_empty() { "true" } else { "cat" };
        if !persistent.is_empty() {
            // A persistent run's joblog names its command differently: start it afresh.
            std::fs::remove_file(sb.path("log")).expect("remove log");
            assert_code(&sb.run(&["run", "--persistent", "--joblog", "log", "cat", ":::", "a", "b"], b""), 0);
        }
        args.extend_from_slice(&[program, ":::", "a", "b", "c"]);
        let out = sb.run(&args, b"");
        assert_code(&out, 0);
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("muster: 3/3 done, 0 failed"), "{persistent:?}: {err}");
    }
}

#[test]
fn progress_off_a_terminal_is_a_status_line() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--progress", "-j", "2", "true", ":::", "a", "b", "c"], b"");
    assert_code(&out, 0);
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("muster: 3/3 done, 0 failed, 0 running, "), "{err}");
    let rate = last.split(", ").nth(3).unwrap_or_default();
    assert!(
        rate.ends_with("/s") && rate.split('.').nth(1).is_some_and(|d| d.len() == 3),
        "one decimal: {rate}"
    );
}

#[test]
fn on_a_terminal_the_summary_is_shown_unless_no_summary() {
    let sb = Sandbox::new();
    let muster = env!("CARGO_BIN_EXE_muster");
    let on_terminal = |flags: &str| {
        // `script` gives the run a terminal for its stderr.
        let line = format!("{muster} run --no-progress {flags} true ::: a b");
        let out = Command::new("script").args(["-qec", &line, "/dev/null"]).current_dir(sb.dir()).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Ok(shown) = on_terminal("") else {
        println!("skipped: `script` (util-linux) is not available to give muster a terminal");
        return;
    };
    assert!(shown.contains("muster: 2 tasks: 2 done, 0 failed"), "{shown}");
    let hidden = on_terminal("--no-summary").expect("script ran before");
    assert!(!hidden.contains("muster: 2 tasks"), "{hidden}");
}

#[test]
fn help_is_grouped_wrapped_and_has_examples_and_completions_and_a_man_page_exist() {
    let sb = Sandbox::new();
    let help = sb.run(&["run", "--help"], b"");
    assert_code(&help, 0);
    let text = stdout(&help);
    for heading in
        ["Input:", "Output:", "Failures:", "Journal:", "Shutdown:", "Persistent workers:", "Examples:"]
    {
        assert!(text.lines().any(|l| l == heading), "heading {heading:?} in:\n{text}");
    }
    let widest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest <= 100, "help wrapped (widest line {widest} columns)");
    for shell in ["bash", "zsh", "fish"] {
        let out = sb.run(&["completions", shell], b"");
        assert_code(&out, 0);
        assert!(stdout(&out).contains("--joblog") && stdout(&out).contains("muster"), "{shell} completions");
    }
    assert_code(&sb.run(&["completions", "tcsh"], b""), 255);
    let man = sb.run(&["man"], b"");
    assert_code(&man, 0);
    assert!(stdout(&man).starts_with(".ie") || stdout(&man).contains(".TH muster"), "roff");
    assert!(stdout(&man).contains("muster\\-run"), "the man page lists the subcommands");
    assert!(
        stdout(&man).contains("\\-\\-joblog") && stdout(&man).contains("MUSTER RUN"),
        "and run's options"
    );
    assert!(!stdout(&man).contains("muster \\- muster:"), "NAME says it once");
    assert!(stdout(&man).contains("SEE ALSO") && stdout(&man).contains("muster\\-worker\\fR(1)"));
    // Every page the main one names exists.
    for sub in [
        "run",
        "up",
        "stop",
        "report",
        "status",
        "submit",
        "worker",
        "drain",
        "results",
        "completions",
        "man",
    ] {
        let page = sb.run(&["man", sub], b"");
        assert_code(&page, 0);
        let text = stdout(&page);
        assert!(text.contains(&format!(".TH muster-{sub} 1")) && text.contains("muster(1)"), "{sub}: {text}");
    }
    assert_code(&sb.run(&["man", "nope"], b""), 255);
    // The watchdog is the binary's, not the interface's: no completion offers it.
    for shell in ["bash", "zsh", "fish"] {
        let out = sb.run(&["completions", shell], b"");
        assert!(!stdout(&out).contains("__watchdog"), "{shell} completions offer __watchdog");
    }
}

#[test]
fn keep_order_with_line_buffer_streams_the_oldest_task_and_holds_the_rest() {
    let sb = Sandbox::new();
    sb.write("task.sh", "echo $1 start; sleep 0.$1; echo $1 end\n");
    let out = sb.run(&["run", "-k", "--line-buffer", "-j", "3", "sh", "task.sh", ":::", "3", "1", "2"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "3 start\n3 end\n1 start\n1 end\n2 start\n2 end\n");
    if let Some(gnu) = gnu_parallel() {
        same(&sb, gnu, &["--line-buffer", "-j", "3", "sh", "task.sh", ":::", "3", "1", "2"], b"");
    }
}

#[test]
fn a_timeout_of_zero_is_no_limit() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--timeout", "0", "--joblog", "log", "sleep", ":::", "0.2"], b"");
    assert_code(&out, 0);
    let records = joblog_records(&sb.read("log"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0][9], "done");
}

#[test]
fn a_timeout_in_percent_stops_a_task_far_past_the_median_run_time() {
    let sb = Sandbox::new();
    // Eight quick tasks, then one that would hang for a minute: 300% of the median stops it.
    let mut args = vec!["run", "-j1", "--timeout", "300%", "--joblog", "log", "sleep", ":::"];
    args.extend(["0.1"; 8]);
    args.push("60");
    let out = sb.run(&args, b"");
    assert_code(&out, 1);
    assert!(stderr(&out).contains("task 9 (60): timed out after"), "{}", stderr(&out));
    let records = joblog_records(&sb.read("log"));
    let outcomes: Vec<&str> = records.iter().map(|r| r[9].as_str()).collect();
    assert_eq!(outcomes, [&["done"; 8][..], &["timeout"]].concat(), "{records:?}");

    for (limit, says) in [("100%", "must be over 100%"), ("x%", "not a percentage")] {
        let out = sb.run(&["run", "--timeout", limit, "true", ":::", "a"], b"");
        assert_code(&out, 255);
        assert!(stderr(&out).contains(says), "{limit}: {}", stderr(&out));
    }
    let out = sb.run(&["run", "--persistent", "--timeout", "200%", "cat"], b"a\n");
    assert_code(&out, 255);
    assert!(stderr(&out).contains("--timeout N% is not available with --persistent"), "{}", stderr(&out));
}

#[test]
fn a_dry_run_with_resume_shows_only_what_the_resume_would_run() {
    let sb = Sandbox::new();
    sb.write("task.sh", "exit $1\n");
    let out = sb.run(&["run", "--joblog", "log", "sh", "task.sh", ":::", "0", "1", "0"], b"");
    assert_code(&out, 1);
    let before = sb.read("log");
    let dry = sb.run(
        &[
            "run",
            "--dry-run",
            "--joblog",
            "log",
            "--resume-failed",
            "sh",
            "task.sh",
            ":::",
            "0",
            "1",
            "0",
            "5",
        ],
        b"",
    );
    assert_code(&dry, 0);
    assert_eq!(stdout(&dry), "sh task.sh 1\nsh task.sh 5\n", "the failed task and the new one");
    assert_eq!(sb.read("log"), before, "a dry run leaves the joblog alone");
    let other = sb.run(&["run", "--dry-run", "--joblog", "log", "--resume", "echo", ":::", "0"], b"");
    assert_code(&other, 255);
    assert!(stderr(&other).contains("was written for the command"), "{}", stderr(&other));
}

#[test]
fn shell_is_a_posix_shell_from_shell_or_the_one_named_and_quotes_only_what_needs_it() {
    let sb = Sandbox::new();
    let with_shell = |shell: &str, args: &[&str]| {
        sb.muster(args).env("SHELL", shell).stdin(Stdio::null()).output().expect("muster runs")
    };
    let script = "echo $(( {} * 2 )); [ -n \"$BASH_VERSION\" ] && echo bash || echo not-bash";
    if Path::new("/bin/bash").exists() {
        let out = with_shell("/bin/bash", &["run", "--shell", script, ":::", "21"]);
        assert_eq!(stdout(&out), "42\nbash\n", "$SHELL is bash: {}", stderr(&out));
    }
    let out = with_shell("/usr/bin/fish", &["run", "--shell", script, ":::", "21"]);
    assert_eq!(stdout(&out), "42\nnot-bash\n", "fish is not POSIX: sh instead");
    let out = with_shell("/bin/bash", &["run", "--shell=/bin/sh", script, ":::", "21"]);
    assert_eq!(stdout(&out), "42\nnot-bash\n", "--shell=PATH wins");
    let hostile = "a b; echo INJECTED $(id) 'q'";
    let out = with_shell("/bin/sh", &["run", "--shell", "printf '%s\\n' {}", ":::", hostile]);
    assert_eq!(stdout(&out), format!("{hostile}\n"), "a value with shell syntax is still one word");
}

#[test]
fn delay_spaces_out_the_starts() {
    let sb = Sandbox::new();
    let out =
        sb.run(&["run", "-j", "3", "--delay", "200ms", "--joblog", "log", "true", ":::", "a", "b", "c"], b"");
    assert_code(&out, 0);
    let mut starts: Vec<f64> =
        joblog_records(&sb.read("log")).iter().map(|r| r[2].parse().expect("Starttime")).collect();
    starts.sort_by(f64::total_cmp);
    assert_eq!(starts.len(), 3);
    for pair in starts.windows(2) {
        // Start times are kept to the millisecond.
        assert!(pair[1] - pair[0] >= 0.199, "starts {starts:?} closer than the delay");
    }
}

#[test]
fn a_gnu_format_joblog_is_one_gnu_parallel_resumes_from() {
    let sb = Sandbox::new();
    sb.write("code.sh", "exit $1\n");
    let out = sb.run(
        &["run", "--joblog", "log", "--joblog-format", "gnu", "sh", "code.sh", ":::", "0", "3", "0"],
        b"",
    );
    assert_code(&out, 1);
    let log = sb.read("log");
    let mut lines = log.lines();
    assert_eq!(
        lines.next(),
        Some("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.len() == 9), "{rows:?}");
    let resume = sb.run(&["run", "--joblog", "log", "--joblog-format", "gnu", "--resume", "true"], b"");
    assert_code(&resume, 255);
    let Some(gnu) = gnu_parallel() else {
        println!("skipped the GNU parallel half: GNU parallel is not installed");
        return;
    };
    let theirs =
        gnu_run(&sb, gnu, &["--joblog", "log", "--resume-failed", "sh", "code.sh", ":::", "0", "3", "0"]);
    assert_eq!(theirs.status.code(), Some(1), "GNU parallel re-ran the one failed task");
    let rerun: Vec<String> = sb.read("log").lines().skip(4).map(str::to_owned).collect();
    assert_eq!(rerun.len(), 1, "only task 2 again: {rerun:?}");
    assert!(rerun[0].starts_with("2\t"), "{rerun:?}");
}

#[test]
fn bad_colsep_or_header_is_a_usage_error() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--colsep", "(", "echo", ":::", "a"], b"");
    assert_code(&out, 255);
    assert!(stderr(&out).contains("--colsep \"(\""), "{}", stderr(&out));
    let out = sb.run(&["run", "--header", "2", "echo", ":::", "a"], b"");
    assert_code(&out, 255);
    assert!(stderr(&out).contains("only ':'"), "{}", stderr(&out));
}

#[test]
fn gnu_flags_muster_does_not_take_name_what_to_do_instead() {
    let sb = Sandbox::new();
    for (flag, fix) in [
        ("--pipepart", "--pipe --block"),
        ("--xargs", "-m puts"),
        ("--bar", "--progress"),
        ("--res=out", "--results"),
    ] {
        let out = sb.run(&["run", flag, "echo", ":::", "a"], b"");
        assert_code(&out, 255);
        assert!(
            stderr(&out).contains("is GNU parallel's, not muster's;") && stderr(&out).contains(fix),
            "{flag}: {}",
            stderr(&out)
        );
    }
    let out = sb.run(&["run", "--frobnicate", "echo"], b"");
    assert!(!stderr(&out).contains("GNU parallel's"), "unknown flags get clap's message only");
    let cited = sb.run(&["run", "--will-cite", "echo", ":::", "a"], b"");
    assert_code(&cited, 0);
    assert_eq!(stdout(&cited), "a\n", "--will-cite is accepted so GNU scripts keep working");
}

/// Every file under `dir`, relative, with its contents.
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).expect("read folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).expect("inside").to_string_lossy().into_owned();
                files.push((name, std::fs::read_to_string(&path).expect("read file")));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn results_keep_each_tasks_output_in_gnu_parallels_layouts() {
    let sb = Sandbox::new();
    sb.write("task.sh", "echo out $1; echo err $2 >&2\n");
    let out = sb.run(&["run", "--results", "res", "sh", "task.sh", ":::", "a/b", "c", ":::", "1"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "", "with --results nothing is printed");
    let files = tree(&sb.path("res"));
    let expect = |name: &str, text: &str| {
        assert!(files.contains(&(name.to_owned(), text.to_owned())), "{name}: {text:?} in {files:?}")
    };
    expect("1/a\\_b/2/1/stdout", "out a/b\n");
    expect("1/a\\_b/2/1/stderr", "err 1\n");
    expect("1/c/2/1/stdout", "out c\n");
    assert_eq!(files.len(), 6, "stdout, stderr and seq per task");
    let out = sb.run(&["run", "-k", "--results", "res.csv", "echo", ":::", "a", "b c"], b"");
    assert_code(&out, 0);
    let csv = sb.read("res.csv");
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("Seq,Host,Starttime,JobRuntime,Send,Receive,Exitval,Signal,Command,V1,Stdout,Stderr")
    );
    assert!(csv.contains(",\"b c\",\"b c\n\","), "{csv}");
    let Some(gnu) = gnu_parallel() else {
        println!("skipped the comparison: GNU parallel is not installed");
        return;
    };
    let theirs = gnu_run(&sb, gnu, &["--results", "gnu-res", "sh", "task.sh", ":::", "a/b", "c", ":::", "1"]);
    assert!(theirs.status.success());
    let mut ours: Vec<(String, String)> =
        files.into_iter().filter(|(name, _)| !name.ends_with("seq")).collect();
    let mut gnus: Vec<(String, String)> =
        tree(&sb.path("gnu-res")).into_iter().filter(|(name, _)| !name.ends_with("seq")).collect();
    ours.sort();
    gnus.sort();
    assert_eq!(ours, gnus, "the same folders and outputs as GNU parallel");
}

#[test]
fn pipe_gives_each_task_a_chunk_of_stdin_cut_at_record_ends() {
    let sb = Sandbox::new();
    let data: String = (1..=20_000).map(|i| format!("{i}\n")).collect();
    let out = sb.run(&["run", "--pipe", "--block", "10k", "-k", "cat"], data.as_bytes());
    assert_code(&out, 0);
    assert_eq!(stdout(&out), data, "every byte once, in order");
    let counts = sb.run(&["run", "--pipe", "--block", "10k", "-k", "wc", "-c"], data.as_bytes());
    let sizes: Vec<usize> = stdout(&counts).lines().map(|l| l.trim().parse().expect("a count")).collect();
    assert!(sizes.iter().all(|&n| n <= 10_000), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), data.len());
    // Chunks are identified by content: a resume skips the ones done.
    let args = ["run", "--pipe", "--block", "10k", "--joblog", "log", "--resume", "wc", "-l"];
    assert_code(&sb.run(&args, data.as_bytes()), 0);
    let again = sb.run(&args, data.as_bytes());
    assert_code(&again, 0);
    assert_eq!(stdout(&again), "", "every chunk was done");
    if let Some(gnu) = gnu_parallel() {
        same(&sb, gnu, &["--pipe", "--block", "10k", "wc", "-c"], data.as_bytes());
        same(&sb, gnu, &["--pipe", "--block", "3", "cat"], b"one\ntwo\nthree\nlonger line\n");
        // -N / -n: that many records a chunk, whatever --block says.
        same(&sb, gnu, &["--pipe", "-N", "3", "wc", "-l"], b"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n");
        same(&sb, gnu, &["--pipe", "-n", "2", "--block", "1", "wc", "-l"], b"1\n2\n3\n4\n5\n");
    }
    let chunks = sb.run(&["run", "-k", "--pipe", "-N", "1000", "wc", "-l"], data.as_bytes());
    assert_eq!(stdout(&chunks), "1000\n".repeat(20), "20,000 records in chunks of 1,000");
}

#[test]
fn many_inputs_per_line_stay_under_the_command_line_limit() {
    let sb = Sandbox::new();
    let data: String = (1..=60_000).map(|i| format!("{i:08}\n")).collect();
    let out = sb.run(&["run", "-k", "-m", "echo"], data.as_bytes());
    assert_code(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 1, "540 kB of inputs do not fit one line");
    assert!(lines.iter().all(|l| l.len() <= 128 * 1024), "each line under the limit");
    let words: Vec<&str> = lines.iter().flat_map(|l| l.split(' ')).collect();
    assert_eq!(words.len(), 60_000, "every input once");
    assert_eq!(words.last(), Some(&"00060000"));
}
