//! How `muster run`'s input flags and groups become the engine's inputs: `::: / :::: / :::+ /
//! ::::+` groups after the command, `-a` files, stdin, `--link`, `--header`, then the shaping
//! into tasks: `--pipe` chunks, `-n`/`-N`, `-X`/`-m` and `--colsep` columns.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, IsTerminal};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use muster::engine::{Inputs, Source};
use muster::input::Link;
use muster::Shutdown;

use crate::args::RunArgs;
use crate::fatal::{usage, Fatal};
use crate::setup::resolve_jobs;

/// `column` without the spaces and tabs around it.
fn trim_blanks(column: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = column.iter().position(|b| !blank(b)).unwrap_or(column.len());
    let end = column.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    &column[start..end]
}

/// The most bytes of inputs one command line gets with -X/-m: well under Linux's 2 MB
/// argument space, as GNU parallel keeps it.
const LINE_BYTES: usize = 128 * 1024;

/// How many columns `{N}` may name with --colsep.
pub(crate) const COLUMNS_MAX: usize = 10_000;

/// An input group after the command.
pub(crate) struct Group {
    /// `::::` (file names) rather than `:::` (values).
    files: bool,
    /// `:::+` / `::::+`: linked to the source before it.
    linked: bool,
    words: Vec<OsString>,
}

/// Splits `COMMAND ARGS... ::: A B :::+ 1 2 :::: FILE` into the command and its input groups.
pub(crate) fn split_groups(words: Vec<OsString>) -> (Vec<OsString>, Vec<Group>) {
    let mut command = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    for word in words {
        let marker = match word.as_encoded_bytes() {
            b":::" => Some((false, false)),
            b":::+" => Some((false, true)),
            b"::::" => Some((true, false)),
            b"::::+" => Some((true, true)),
            _ => None,
        };
        match (marker, groups.last_mut()) {
            (Some((files, linked)), _) => groups.push(Group { files, linked, words: Vec::new() }),
            (None, Some(group)) => group.words.push(word),
            (None, None) => command.push(word),
        }
    }
    (command, groups)
}

/// Opens an input file (`-` is stdin, which may be used once) as a stream source; it is made
/// interruptible once any header has been read from it.
fn open_source(path: &Path, stdin_used: &mut bool) -> Result<Source, Fatal> {
    let reader: Box<dyn io::BufRead + Send> = if path == Path::new("-") {
        if std::mem::replace(stdin_used, true) {
            return Err(usage("standard input (-) is given as an input source twice"));
        }
        Box::new(BufReader::new(io::stdin()))
    } else {
        let file = File::open(path).map_err(|err| usage(format!("cannot read {}: {err}", path.display())))?;
        // A directory opens, and fails only on the first read: name it now.
        if file.metadata().is_ok_and(|meta| meta.is_dir()) {
            return Err(usage(format!(
                "cannot read {}: it is a directory (inputs come from files)",
                path.display()
            )));
        }
        Box::new(BufReader::new(file))
    };
    let name = if path == Path::new("-") { "stdin".to_owned() } else { path.display().to_string() };
    Ok(Source::Stream { name, reader })
}

/// `--header :`: takes the first record of each source as the names of its values (split into
/// columns' names by `colsep`). Streams are read only as far as their first record.
fn take_headers(
    sources: &mut [Source],
    separator: u8,
    colsep: Option<&regex::bytes::Regex>,
) -> Result<Vec<Vec<u8>>, Fatal> {
    let mut names = Vec::new();
    for source in sources.iter_mut() {
        let header = match source {
            Source::Values(values) if values.is_empty() => Vec::new(),
            Source::Values(values) => values.remove(0),
            Source::Stream { name, reader } => {
                let mut record = Vec::new();
                reader
                    .read_until(separator, &mut record)
                    .map_err(|err| usage(format!("reading the header of {name}: {err}")))?;
                if record.last() == Some(&separator) {
                    record.pop();
                }
                record
            }
        };
        match colsep {
            Some(colsep) => names.extend(colsep.split(&header).map(|c| trim_blanks(c).to_vec())),
            None => names.push(header),
        }
    }
    Ok(names)
}

/// A run's input sources as its flags describe them, before they are shaped into tasks.
pub(crate) struct Sources {
    /// Streams are already interruptible (read on threads of their own).
    pub(crate) sources: Vec<Source>,
    /// Per source: how it is linked to the one before it.
    pub(crate) links: Vec<Link>,
    /// `--header :` names, in value order.
    pub(crate) names: Vec<Vec<u8>>,
    /// `--colsep`.
    pub(crate) colsep: Option<regex::bytes::Regex>,
    /// No source was given, so stdin is read.
    pub(crate) implicit_stdin: bool,
}

/// Opens the sources `args` and `groups` name, reads `--header`s, and makes streams
/// interruptible by `shutdown`.
pub(crate) fn sources(
    args: &RunArgs,
    groups: Vec<Group>,
    separator: u8,
    shutdown: &Shutdown,
) -> Result<Sources, Fatal> {
    let mut sources = Vec::new();
    // Per source: linked to the one before it.
    let mut links = Vec::new();
    let mut stdin_used = false;
    let link = if args.link { Link::Wrap } else { Link::None };
    for path in &args.arg_files {
        sources.push(open_source(path, &mut stdin_used)?);
        links.push(link);
    }
    for (number, mut group) in groups.into_iter().enumerate() {
        // As in GNU parallel, `:::+` links to a group after the command, never to -a files.
        group.linked &= number > 0;
        if group.files {
            if group.words.is_empty() {
                return Err(usage("'::::' must be followed by at least one file name"));
            }
            // `::::+ F G` links every file of the group, as GNU parallel does.
            for word in &group.words {
                sources.push(open_source(Path::new(word), &mut stdin_used)?);
                links.push(if group.linked && !args.link { Link::Shortest } else { link });
            }
        } else {
            sources.push(Source::Values(group.words.into_iter().map(OsStringExt::into_vec).collect()));
            links.push(if group.linked && !args.link { Link::Shortest } else { link });
        }
    }
    let implicit_stdin = sources.is_empty();
    if implicit_stdin {
        if io::stdin().is_terminal() {
            // Else a run given no `:::` waits on a blank screen (GNU parallel says so too).
            crate::say("muster: reading inputs from the terminal, one per line (Ctrl-D to end them)");
        }
        let stdin = Source::Stream { name: "stdin".into(), reader: Box::new(BufReader::new(io::stdin())) };
        sources.push(stdin);
        links.push(Link::None);
    }
    let colsep = match &args.colsep {
        Some(pattern) => Some(
            regex::bytes::Regex::new(pattern).map_err(|err| usage(format!("--colsep {pattern:?}: {err}")))?,
        ),
        None => None,
    };
    let names = match args.header.as_deref() {
        None => Vec::new(),
        Some(":") => take_headers(&mut sources, separator, colsep.as_ref())?,
        Some(other) => {
            return Err(usage(format!(
                "--header {other:?}: only ':' (the first record names the values) is supported"
            )))
        }
    };
    // Streams are read on threads of their own from here on, so Ctrl-C never waits on them.
    let sources = sources.into_iter().map(|source| source.interruptible(shutdown)).collect();
    Ok(Sources { sources, links, names, colsep, implicit_stdin })
}

/// What shapes the sources into tasks besides the flags.
pub(crate) struct Shaping {
    /// Inputs per task (`-n`/`-N`).
    pub(crate) per_task: usize,
    /// The command's own length, which -X/-m lines must leave room for.
    pub(crate) command_bytes: usize,
    pub(crate) separator: u8,
}

/// The tasks: chunks of stdin (`--pipe`), or the sources combined, several per task
/// (`-n`/`-N`, `-X`/`-m`) and split into columns (`--colsep`).
pub(crate) fn tasks(
    args: &RunArgs,
    sources: Vec<Source>,
    links: &[Link],
    colsep: Option<regex::bytes::Regex>,
    shaping: &Shaping,
) -> Result<Inputs, Fatal> {
    let Shaping { per_task, command_bytes, separator } = *shaping;
    let mut inputs = if args.pipe {
        // --pipe: stdin (or the one file given) in chunks, each a task's stdin.
        let mut sources = sources;
        match (sources.pop(), sources.is_empty()) {
            // -n/-N: that many records per chunk, as GNU parallel cuts them (--block unused).
            (Some(Source::Stream { reader, .. }), true) => match args.max_args.or(args.max_replace_args) {
                Some(records) => Inputs::records(reader, records as usize, separator),
                None => Inputs::blocks(reader, args.block, separator),
            },
            _ => return Err(usage("--pipe reads one stream: stdin, or one -a/:::: file")),
        }
    } else {
        Inputs::linked(sources, links, separator)
            .map_err(|err| usage(format!("reading inputs: {err}")))?
            .per_task(per_task)
    };
    if args.context || args.many {
        // As GNU parallel does: known inputs spread evenly over the jobs, each command line
        // kept well under the kernel's limit.
        let jobs = resolve_jobs(args.jobs, inputs.known_total(), false).max(1) as u64;
        let per_line = inputs.known_total().map_or(usize::MAX, |total| total.div_ceil(jobs).max(1) as usize);
        inputs = inputs.per_task_bounded(per_line, LINE_BYTES.saturating_sub(command_bytes).max(1));
    }
    if let Some(colsep) = colsep {
        // As GNU parallel does with --colsep, columns lose the blanks around them.
        inputs = inputs.split_values(Box::new(move |value| {
            colsep.split(value).map(|c| trim_blanks(c).to_vec()).collect()
        }));
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_command_and_groups() {
        let words =
            ["echo", "{1}", ":::", "a", "b", ":::+", "1", "::::", "f", "::::+", "g"].map(OsString::from);
        let (command, groups) = split_groups(words.to_vec());
        assert_eq!(command, ["echo", "{1}"]);
        let shape: Vec<(bool, bool, Vec<OsString>)> =
            groups.into_iter().map(|g| (g.files, g.linked, g.words)).collect();
        assert_eq!(
            shape,
            [
                (false, false, vec!["a".into(), "b".into()]),
                (false, true, vec!["1".into()]),
                (true, false, vec!["f".into()]),
                (true, true, vec!["g".into()])
            ]
        );
    }
}
