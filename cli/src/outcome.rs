//! What muster says once a run is over — input or write trouble, a halt, the summary line with
//! the first failed tasks — and the exit status it ends with. Spawned and persistent runs
//! report alike.

use muster::engine::Summary;

use crate::fatal::USAGE_ERROR;

/// What muster says on stderr once the run is over: input or write trouble, a halt, the
/// summary with the first failed tasks, and a hint when an empty stdin is explained by an
/// option written after the command.
pub(crate) fn tell_outcome(summary: &Summary, jobs: usize, summary_wanted: bool, misplaced: Option<String>) {
    if let Some(problem) = summary.input_error.as_ref().or(summary.write_error.as_ref()) {
        crate::say(format_args!("muster: {problem}"));
    }
    let at_least = if summary.input_left { "at least " } else { "" };
    if summary.halted {
        crate::say(format_args!(
            "muster: halted (--halt): {} task(s) failed; {at_least}{} not started",
            summary.failures(),
            summary.not_run + summary.unread
        ));
    }
    if summary.protocol_breaks > 0 {
        crate::say(format_args!(
            "muster: {} worker(s) sent a reply with no task waiting for it and were replaced \
             (the protocol is exactly one reply per input, in order)",
            summary.protocol_breaks
        ));
    }
    if summary_wanted && !summary.broken_pipe {
        crate::say(describe(summary, jobs));
        if summary.workers_started > 0 {
            crate::say(format_args!(
                "muster: {} workers started, {} crashed",
                summary.workers_started, summary.worker_crashes
            ));
        }
        if !summary.failed_tasks.is_empty() {
            let more = summary.failures().saturating_sub(summary.failed_tasks.len() as u64);
            let more = if more > 0 { format!("; and {more} more") } else { String::new() };
            let named: Vec<String> = summary.failed_tasks.iter().map(|note| note.headline()).collect();
            crate::say(format_args!("muster: failed: {}{more}", named.join("; ")));
        }
    }
    if let (Some(option), 0) = (misplaced, summary.read) {
        crate::say(format_args!(
            "muster: no input was read from stdin; '{option}' after the command is passed to the command — put muster's options before the command"
        ));
    }
}

pub(crate) fn exit_code(summary: &Summary, signal: Option<i32>) -> u8 {
    if let Some(signal) = signal {
        return u8::try_from(128 + signal).unwrap_or(130);
    }
    if summary.broken_pipe {
        return 141;
    }
    // A persistent worker that broke the protocol failed, though its tasks ran again.
    match summary.failures() + summary.protocol_breaks {
        0 if summary.input_error.is_some() || summary.write_error.is_some() => USAGE_ERROR,
        n @ 0..=100 => n as u8,
        _ => 101,
    }
}

/// The one-line summary: counts, times, speedup and efficiency.
fn describe(summary: &Summary, jobs: usize) -> String {
    let mut parts = vec![format!("{} done", summary.done), format!("{} failed", summary.failed)];
    for (count, what) in [
        (summary.timed_out, "timed out"),
        (summary.stopped, "stopped"),
        (summary.not_run + summary.unread, "not run"),
        (summary.skipped, "skipped (already done)"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {what}"));
        }
    }
    let wall = summary.wall.as_secs_f64();
    let busy = summary.task_time.as_secs_f64();
    let speedup = if wall > 0.0 { busy / wall } else { 0.0 };
    // Slots that never had a task do not count against efficiency.
    let used = jobs.min(usize::try_from(summary.read).unwrap_or(usize::MAX)).max(1);
    let efficiency = speedup / used as f64 * 100.0;
    // Inputs a halt or a stop left unread are tasks too (not run); from a stream, more may
    // have followed.
    let at_least = if summary.input_left { "at least " } else { "" };
    format!(
        "muster: {at_least}{} tasks: {}; wall {wall:.2}s, task time {busy:.2}s, speedup {speedup:.2}x on {jobs} jobs ({efficiency:.0}% efficiency)",
        summary.read + summary.unread,
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_count_failures() {
        let mut summary = Summary::default();
        assert_eq!(exit_code(&summary, None), 0);
        summary.failed = 3;
        assert_eq!(exit_code(&summary, None), 3);
        summary.failed = 100;
        assert_eq!(exit_code(&summary, None), 100);
        summary.timed_out = 1;
        assert_eq!(exit_code(&summary, None), 101);
        assert_eq!(exit_code(&summary, Some(15)), 143);
        assert_eq!(exit_code(&summary, Some(2)), 130);
    }
}
