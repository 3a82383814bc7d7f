//! The joblog: an append-only, versioned record of every finished attempt, which makes
//! `--resume` exact.
//!
//! The file is tab-separated text that GNU parallel's joblog readers understand: a version
//! line (a `#` comment naming the format and the command), then GNU's header — `Seq Host
//! Starttime JobRuntime Send Receive Exitval Signal Command` — extended with `Outcome Attempt
//! Occurrence Input Slot Check`, then one line per attempt. Version 1 joblogs (no `Slot`) are
//! still read, and a resumed one is continued in its own format.
//!
//! - **Identity by input, not position**: a task is its input bytes plus which occurrence of
//!   that input it is, so a reordered or extended input resumes correctly.
//! - **Torn lines**: `Check` is a CRC-32 of the rest of the line. A last line that is
//!   incomplete or fails its check (the writer was killed mid-write) is ignored, and cut off
//!   before appending; a bad line anywhere else is corruption and refused.
//! - **Bytes**: tabs, newlines, backslashes, control bytes and invalid UTF-8 are escaped
//!   (`\t`, `\n`, `\\`, `\xNN`), so any input survives a round trip.
//!
//! Each record is written with one `write` call, so a crash loses at most the record being
//! written. A run holds an exclusive lock on its joblog (`flock`), so a second run on the same
//! joblog is refused instead of interleaving its records.

mod escape;
mod record;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub use escape::{escape, unescape};
pub use record::{input_hash, input_key, outcome_columns, Exit, InputKey, Record, RecordOutcome};

/// The first line's prefix; the format version follows it.
const MAGIC: &str = "# muster joblog v";
/// The format written by this version.
pub const VERSION: u32 = 2;
/// Column names, GNU parallel's first.
pub const HEADER: &str = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\tOutcome\tAttempt\tOccurrence\tInput\tSlot\tCheck";
/// GNU parallel's joblog columns, for `--joblog-format gnu`.
pub const GNU_HEADER: &str = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";
/// Column names of version 1 (no `Slot`).
const HEADER_V1: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\tOutcome\tAttempt\tOccurrence\tInput\tCheck";

/// Why a joblog could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing failed.
    #[error("joblog {path}: {source}")]
    Io {
        /// The joblog.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file exists but is not a muster joblog.
    #[error(
        "{path} is not a muster joblog (its first line is not '{MAGIC}N'){}",
        if *.overwrite { "; refusing to overwrite it" } else { "" }
    )]
    NotAJoblog {
        /// The file.
        path: PathBuf,
        /// It was to be written anew (a new run's `--joblog`), not read.
        overwrite: bool,
    },
    /// A joblog in GNU parallel's columns: it can be reported on, not resumed from.
    #[error("{path} is in GNU parallel's joblog columns; muster reports on it but resumes only from its own joblogs")]
    GnuColumns {
        /// The file.
        path: PathBuf,
    },
    /// The joblog was written by a newer format.
    #[error("{path} is a version {found} joblog; this muster reads up to version {VERSION}")]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        found: String,
    },
    /// A record other than the last is damaged.
    #[error("{path}:{line}: damaged record ({why}); the joblog is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// Another run holds the joblog.
    #[error("{path} is in use by another muster run; wait for it to end, or use another joblog")]
    InUse {
        /// The joblog.
        path: PathBuf,
    },
    /// The joblog was written for another command.
    #[error("{path} was written for the command '{logged}', not '{current}'; use the same command to resume, or another joblog")]
    CommandChanged {
        /// The file.
        path: PathBuf,
        /// The command in the joblog.
        logged: String,
        /// The command of this run.
        current: String,
    },
}

/// Which tasks a resumed run skips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeMode {
    /// Skip tasks that are done or failed for good (GNU parallel's `--resume`).
    SkipFinished,
    /// Skip only tasks that are done; run failed ones again (`--resume-failed`).
    SkipDone,
}

/// Counts the occurrences of each input (telling repeated inputs apart in the joblog) and,
/// when resuming, says which ones the joblog already settled. It remembers every distinct
/// input's hash, so keep one only when journaling.
#[derive(Debug, Default)]
pub struct InputLedger {
    seen: HashMap<u64, u32>,
    resume: Option<(ResumeMode, Resume)>,
}

impl InputLedger {
    /// A ledger for a run that resumes as `resume` says (`None`: a fresh joblog).
    pub fn new(resume: Option<(ResumeMode, Resume)>) -> InputLedger {
        InputLedger { seen: HashMap::new(), resume }
    }

    /// Counts one more occurrence of the input `identity`; returns which occurrence it is and
    /// whether the joblog says it needs no run.
    pub fn admit(&mut self, identity: &[u8]) -> (u32, bool) {
        let hash = input_hash(identity);
        let count = self.seen.entry(hash).or_insert(0);
        *count += 1;
        let occurrence = *count;
        let skip = self.resume.as_ref().is_some_and(|(mode, resume)| {
            let key = InputKey::new(hash, occurrence);
            resume.done.contains(&key) || (*mode == ResumeMode::SkipFinished && resume.failed.contains(&key))
        });
        (occurrence, skip)
    }
}

/// What an existing joblog says about the tasks it saw.
#[derive(Debug, Default)]
pub struct Resume {
    /// Tasks with a successful attempt.
    pub done: HashSet<InputKey>,
    /// Tasks whose last attempt failed for good (retries used up or timed out).
    pub failed: HashSet<InputKey>,
    /// Valid records read.
    pub records: usize,
    /// True when a torn last line was found (and will be cut off).
    pub torn_tail: bool,
}

/// Appends records to a joblog.
#[derive(Debug)]
pub struct JournalWriter {
    file: File,
    path: PathBuf,
    /// The format of the file's records (a resumed version 1 joblog stays version 1); 0 for
    /// GNU parallel's columns.
    version: u32,
}

/// Which columns a joblog has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JoblogFormat {
    /// muster's: GNU parallel's columns and muster's own, with a version line and checksums;
    /// what `--resume` and `muster report` read.
    #[default]
    Muster,
    /// GNU parallel's nine columns only, for tools that read those; no resume from it.
    Gnu,
}

impl JournalWriter {
    /// Starts a new joblog at `path` for `command`, replacing an old joblog there. A file that
    /// exists, is not empty and is not a joblog is refused rather than overwritten.
    pub fn create(path: &Path, command: &str) -> Result<JournalWriter, JournalError> {
        let head = format!("{MAGIC}{VERSION}\tcommand: {}\n{HEADER}\n", escape(command.as_bytes()));
        JournalWriter::start(path, &head, VERSION)
    }

    /// Starts a joblog at `path` in GNU parallel's columns (see [`JoblogFormat::Gnu`]). A file
    /// that is neither empty nor a joblog (muster's or GNU's) is refused rather than overwritten.
    pub fn create_gnu(path: &Path) -> Result<JournalWriter, JournalError> {
        JournalWriter::start(path, &format!("{GNU_HEADER}\n"), 0)
    }

    /// Opens and locks `path`, refuses it unless it is empty or a joblog (GNU's columns only
    /// for `version` 0), and starts it anew with `head`.
    fn start(path: &Path, head: &str, version: u32) -> Result<JournalWriter, JournalError> {
        let io_err = |source| JournalError::Io { path: path.to_owned(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        lock(&file, path)?;
        let mut first = String::new();
        BufReader::new(&file).take(256).read_line(&mut first).map_err(io_err)?;
        let gnu_allowed = version == 0 && first.starts_with("Seq\t");
        if !first.is_empty() && !first.starts_with(MAGIC) && !gnu_allowed {
            return Err(JournalError::NotAJoblog { path: path.to_owned(), overwrite: true });
        }
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        file.write_all(head.as_bytes()).map_err(io_err)?;
        Ok(JournalWriter { file, path: path.to_owned(), version })
    }

    /// Opens the joblog for `command`: a new one, or, with a resume `mode`, the existing one
    /// and what it says (see [`create`](Self::create) and [`resume`](Self::resume)).
    pub fn open(
        path: &Path,
        command: &str,
        mode: Option<ResumeMode>,
    ) -> Result<(JournalWriter, Option<(ResumeMode, Resume)>), JournalError> {
        match mode {
            None => Ok((JournalWriter::create(path, command)?, None)),
            Some(mode) => {
                let (writer, resume) = JournalWriter::resume(path, command)?;
                Ok((writer, Some((mode, resume))))
            }
        }
    }

    /// Opens an existing joblog to resume `command`: reads what it says, checks it was written
    /// for the same command, cuts off a torn last line, and appends from there. A missing or
    /// empty file starts a new joblog.
    pub fn resume(path: &Path, command: &str) -> Result<(JournalWriter, Resume), JournalError> {
        let io_err = |source| JournalError::Io { path: path.to_owned(), source };
        let mut file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Ok((JournalWriter::create(path, command)?, Resume::default()));
            }
            Err(err) => return Err(io_err(err)),
        };
        lock(&file, path)?;
        if file.metadata().map_err(io_err)?.len() == 0 {
            drop(file);
            return Ok((JournalWriter::create(path, command)?, Resume::default()));
        }
        let mut reader = BufReader::new(&file);
        if reader.fill_buf().map_err(io_err)?.starts_with(b"Seq\tHost\t") {
            return Err(JournalError::GnuColumns { path: path.to_owned() });
        }
        let mut resume = Resume::default();
        let head = read(path, reader, |record| resume.note(&record))?;
        let (logged, version, valid_len) = (head.command, head.version, head.valid_len);
        resume.torn_tail = head.torn_tail;
        if logged != command {
            return Err(JournalError::CommandChanged {
                path: path.to_owned(),
                logged,
                current: command.to_owned(),
            });
        }
        file.set_len(valid_len).map_err(io_err)?;
        // The lock makes this the only writer, so writing at the end is appending.
        file.seek(SeekFrom::End(0)).map_err(io_err)?;
        Ok((JournalWriter { file, path: path.to_owned(), version }, resume))
    }

    /// Appends one record with a single write.
    pub fn write(&mut self, record: &Record) -> Result<(), JournalError> {
        let line = if self.version == 0 { record.to_gnu_line() } else { record.to_line_in(self.version) };
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| JournalError::Io { path: self.path.clone(), source })
    }

    /// The joblog's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Holds the joblog for this run: the kernel drops the lock when the file is closed or the
/// process dies (even by `kill -9`), so a crashed run never leaves it locked.
fn lock(file: &File, path: &Path) -> Result<(), JournalError> {
    match crate::lockfile::lock_exclusive(file) {
        Ok(true) => Ok(()),
        Ok(false) => Err(JournalError::InUse { path: path.to_owned() }),
        Err(source) => Err(JournalError::Io { path: path.to_owned(), source }),
    }
}

/// A whole joblog, as read back (for reports).
#[derive(Debug)]
pub struct Joblog {
    /// The command it was written for.
    pub command: String,
    /// Its format version.
    pub version: u32,
    /// Every complete record, in the order written.
    pub records: Vec<Record>,
    /// The last line was torn (a writer killed mid-write) and was left out.
    pub torn_tail: bool,
}

/// What a joblog says of itself, besides its records.
#[derive(Debug)]
pub struct JoblogHead {
    /// The command it was written for.
    pub command: String,
    /// Its format version (0: GNU parallel's nine columns).
    pub version: u32,
    /// The last line was torn (a writer killed mid-write) and was left out.
    pub torn_tail: bool,
}

impl Joblog {
    /// Reads the joblog at `path` without locking it (a running muster may still be writing).
    pub fn read(path: &Path) -> Result<Joblog, JournalError> {
        let mut records = Vec::new();
        let head = Joblog::read_each(path, |record| records.push(record))?;
        Ok(Joblog { command: head.command, version: head.version, records, torn_tail: head.torn_tail })
    }

    /// Reads the joblog at `path` record by record, in the order written, without keeping
    /// them: what a reader of a joblog of millions of records needs (`muster report`).
    pub fn read_each(path: &Path, on_record: impl FnMut(Record)) -> Result<JoblogHead, JournalError> {
        let file = File::open(path).map_err(|source| JournalError::Io { path: path.to_owned(), source })?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        if reader
            .fill_buf()
            .map_err(|source| JournalError::Io { path: path.to_owned(), source })?
            .starts_with(b"Seq\tHost\t")
        {
            return read_gnu(path, reader, on_record);
        }
        let head = read(path, reader, on_record)?;
        Ok(JoblogHead { command: head.command, version: head.version, torn_tail: head.torn_tail })
    }
}

impl Resume {
    /// What the records of `joblog` say about its tasks (read without taking the lock, for a
    /// dry run); a joblog written for another command is refused as a resume would be.
    pub fn of(path: &Path, joblog: &Joblog, command: &str) -> Result<Resume, JournalError> {
        if joblog.command != command {
            return Err(JournalError::CommandChanged {
                path: path.to_owned(),
                logged: joblog.command.clone(),
                current: command.to_owned(),
            });
        }
        let mut resume = Resume::default();
        for record in &joblog.records {
            resume.note(record);
        }
        resume.torn_tail = joblog.torn_tail;
        Ok(resume)
    }

    /// Takes what one record says about its task into account.
    fn note(&mut self, record: &Record) {
        self.records += 1;
        let key = record.key();
        match record.outcome {
            RecordOutcome::Done => {
                self.failed.remove(&key);
                self.done.insert(key);
            }
            RecordOutcome::Failed | RecordOutcome::TimedOut => {
                if !self.done.contains(&key) {
                    self.failed.insert(key);
                }
            }
            RecordOutcome::Retry | RecordOutcome::Stopped | RecordOutcome::Lost => {}
        }
    }
}

/// Reads a joblog in GNU parallel's nine columns (version 0 here): each row is a finished
/// attempt, done when it exited 0; the command line stands in for the input (GNU's joblog has
/// no input column) and slots are unknown. A last line without its newline is left out.
fn read_gnu(
    path: &Path,
    reader: impl BufRead,
    mut on_record: impl FnMut(Record),
) -> Result<JoblogHead, JournalError> {
    let mut seen: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut torn_tail = false;
    for (number, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|source| JournalError::Io { path: path.to_owned(), source })?;
        if number == 0 || line.is_empty() {
            continue;
        }
        let fields: Vec<&[u8]> = line.splitn(9, |&b| b == b'\t').collect();
        let parse = |index: usize| {
            std::str::from_utf8(fields.get(index).copied().unwrap_or_default()).ok().map(str::trim)
        };
        let numbers = (
            parse(0).and_then(|f| f.parse::<u64>().ok()),
            parse(2).and_then(|f| f.parse::<f64>().ok()),
            parse(3).and_then(|f| f.parse::<f64>().ok()),
            parse(6).and_then(|f| f.parse::<i32>().ok()),
            parse(7).and_then(|f| f.parse::<i32>().ok()),
        );
        let (Some(seq), Some(start), Some(runtime), Some(exitval), Some(signal)) = numbers else {
            torn_tail = true;
            continue;
        };
        let command = fields.get(8).copied().unwrap_or_default().to_vec();
        let occurrence = seen.entry(command.clone()).or_insert(0);
        *occurrence += 1;
        on_record(Record {
            seq,
            host: parse(1).unwrap_or(":").to_owned(),
            start,
            runtime,
            send: parse(4).and_then(|f| f.parse().ok()).unwrap_or(0),
            receive: parse(5).and_then(|f| f.parse().ok()).unwrap_or(0),
            exitval,
            signal,
            outcome: if exitval == 0 && signal == 0 { RecordOutcome::Done } else { RecordOutcome::Failed },
            attempt: 1,
            occurrence: *occurrence,
            input: command.clone(),
            command,
            slot: 0,
        });
    }
    Ok(JoblogHead { command: "(GNU parallel joblog)".into(), version: 0, torn_tail })
}

/// What reading a joblog found besides its records.
struct Head {
    command: String,
    version: u32,
    /// The length of its valid prefix (everything but a torn last line).
    valid_len: u64,
    torn_tail: bool,
}

/// Reads a joblog, handing each complete record to `on_record`.
fn read(
    path: &Path,
    mut reader: impl BufRead,
    mut on_record: impl FnMut(Record),
) -> Result<Head, JournalError> {
    let io_err = |source| JournalError::Io { path: path.to_owned(), source };
    let mut line = Vec::new();
    let mut valid_len = 0u64;

    reader.read_until(b'\n', &mut line).map_err(io_err)?;
    let first = String::from_utf8_lossy(&line).into_owned();
    let Some(rest) = first.strip_prefix(MAGIC) else {
        return Err(JournalError::NotAJoblog { path: path.to_owned(), overwrite: false });
    };
    let (version, command) =
        rest.trim_end_matches('\n').split_once("\tcommand: ").unwrap_or((rest.trim_end(), ""));
    let version = match version.parse::<u32>() {
        Ok(number @ 1..=VERSION) => number,
        _ => return Err(JournalError::UnknownVersion { path: path.to_owned(), found: version.to_owned() }),
    };
    let command = String::from_utf8_lossy(&unescape(command.as_bytes())).into_owned();
    valid_len += line.len() as u64;

    line.clear();
    reader.read_until(b'\n', &mut line).map_err(io_err)?;
    let header = if version == 1 { HEADER_V1 } else { HEADER };
    if line.strip_suffix(b"\n") != Some(header.as_bytes()) {
        return Err(JournalError::NotAJoblog { path: path.to_owned(), overwrite: false });
    }
    valid_len += line.len() as u64;

    let mut pending_error: Option<JournalError> = None;
    let mut number = 2;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_err)?;
        if n == 0 {
            break;
        }
        number += 1;
        // A damaged line is only acceptable as the very last one (a torn write).
        if let Some(err) = pending_error.take() {
            return Err(err);
        }
        let parsed = match line.strip_suffix(b"\n") {
            Some(complete) => Record::parse(complete),
            None => Err("incomplete last line".to_owned()),
        };
        match parsed {
            Ok(record) => {
                valid_len += line.len() as u64;
                on_record(record);
            }
            Err(why) => {
                pending_error = Some(JournalError::Corrupt { path: path.to_owned(), line: number, why });
            }
        }
    }
    Ok(Head { command, version, valid_len, torn_tail: pending_error.is_some() })
}

#[cfg(test)]
mod tests;
