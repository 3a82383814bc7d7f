//! GNU parallel's flags that `muster run` does not take, each with what to do instead: a GNU
//! parallel user's habit gets an answer, never a bare "unexpected argument".

/// `(flag, what to do instead)`.
const NOT_TAKEN: &[(&[&str], &str)] = &[
    (&["--pipepart", "--round-robin", "--block-size"], "--pipe --block SIZE gives each task a chunk of stdin; a file can be its stdin: muster run --pipe ... < big.txt"),
    (&["-S", "--sshlogin", "--sshloginfile", "--slf", "--transfer", "--return", "--cleanup", "--trc", "--basefile", "--onall", "--nonall"], "running tasks on other machines is not supported yet"),
    (&["--xargs"], "-m puts as many inputs in each task as fit on a command line (-X repeats the words around {})"),
    (&["--res", "--files"], "muster's --results keeps each task's output in files (GNU's layout, or .csv/.json)"),
    (&["-u", "--ungroup"], "--line-buffer passes output on as it comes, in whole lines"),
    (&["--bar", "--eta"], "--progress shows done, failed, running, the rate and the ETA"),
    (&["--retry-failed"], "--joblog FILE --resume-failed runs the failed tasks again"),
    (&["--semaphore", "--sem", "--fg", "--bg"], "semaphore mode is not supported"),
    (&["--load", "--memfree", "--noswap"], "muster does not throttle on load; choose -j"),
    (&["--nice"], "run the command under nice: muster run nice -n 10 COMMAND"),
    (&["--env"], "tasks inherit muster's whole environment; there is nothing to pass"),
    (&["-q", "--quote"], "muster runs the command's words as they are (no shell) unless --shell, which quotes inputs itself"),
    (&["--shuf"], "shuffle the inputs first: shuf inputs.txt | muster run ..."),
    (&["-v", "--verbose"], "--dry-run prints each task's command without running it; --joblog records each one's command as it ran"),
    (&["-L", "--max-lines", "-l"], "-n N puts N inputs (lines) in each task"),
    (&["--plus", "--rpl"], "extra replacement strings are not supported; muster has {} {.} {/} {//} {/.} {#} {%} {N} and {NAME} with --header"),
];

/// What to do instead of GNU parallel's `flag` (as written, `--res=dir` included), if muster
/// knows it.
pub fn instead_of(flag: &str) -> Option<&'static str> {
    let name = flag.split('=').next().unwrap_or(flag);
    NOT_TAKEN.iter().find(|(flags, _)| flags.contains(&name)).map(|(_, fix)| *fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_gnu_flags_with_and_without_values() {
        assert!(instead_of("--pipepart").is_some_and(|fix| fix.contains("--pipe")));
        assert!(instead_of("--res=out").is_some());
        assert!(instead_of("--frobnicate").is_none());
    }
}
