//! Finding the live processes of a process group by reading `/proc` (Linux).
//!
//! Signalling a group with signal 0 cannot tell a live process from a zombie waiting for its
//! (new) parent to reap it, so "is anything of this group still running?" needs `/proc`. It
//! answers the no-orphans question in tests, and lets a later run find leftovers of a group it
//! recorded before it was killed.

use std::io;

/// The pids of the processes in group `pgid` that are still running (zombies excluded).
pub fn live_group_members(pgid: u32) -> io::Result<Vec<u32>> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        // The process may exit between listing and reading; that is simply not a member.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some((state, group)) = parse_stat(&stat) {
            if group == pgid && state != 'Z' && state != 'X' {
                members.push(pid);
            }
        }
    }
    Ok(members)
}

/// The process groups of running processes whose environment holds `name=value` — how the
/// watchdog finds tasks that were started but not yet registered when muster died. A process
/// in the middle of its `exec` shows an empty environment for an instant and is not found.
pub fn groups_marked(name: &str, value: &str) -> io::Result<Vec<u32>> {
    let entry_bytes = format!("{name}={value}").into_bytes();
    let mut groups = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        if entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()).is_none() {
            continue;
        }
        // Other users' processes are unreadable, and processes come and go: skip those.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if !environ.split(|&b| b == 0).any(|var| var == entry_bytes.as_slice()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some((state, group)) = parse_stat(&stat) {
            if state != 'Z' && state != 'X' && !groups.contains(&group) {
                groups.push(group);
            }
        }
    }
    Ok(groups)
}

/// Reads the state and process group from a `/proc/PID/stat` line. The command name is in
/// parentheses and may itself contain spaces and parentheses, so parse after the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn parses_names_with_spaces_and_parentheses() {
        assert_eq!(parse_stat("42 (a (weird) name) S 1 42 42 0 -1"), Some(('S', 42)));
        assert_eq!(parse_stat("7 (z) Z 1 9 9"), Some(('Z', 9)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_groups_by_a_mark_in_their_environment() {
        let mut marked = std::process::Command::new("sleep");
        marked.arg("1000").env("MUSTER_TEST_MARK", "scan-42").process_group(0);
        let mut child = marked.spawn().expect("sleep");
        let pgid = child.id();
        // spawn returns while the child's exec is still setting up its new stack, when its
        // environment reads empty for an instant: wait for it, with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            let found = groups_marked("MUSTER_TEST_MARK", "scan-42").expect("/proc readable");
            if !found.is_empty() || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        let other = groups_marked("MUSTER_TEST_MARK", "scan-4").expect("/proc readable");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, vec![pgid]);
        assert!(other.is_empty(), "only the exact value matches: {other:?}");
    }

    #[test]
    fn finds_our_own_group() {
        let own = rustix::process::getpgrp().as_raw_nonzero().get() as u32;
        let me = std::process::id();
        assert!(live_group_members(own).expect("/proc readable").contains(&me));
    }
}
