//! A task's captured output: in memory up to a threshold, then in an anonymous temp file, so
//! a task printing gigabytes does not grow muster's memory; printed whole (optionally tagged)
//! when the task ends.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::ops::Range;
use std::sync::Arc;

/// Which output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Output captured from a task: in memory up to a threshold, then in an anonymous temp file,
/// so a task printing gigabytes does not grow muster's memory. A capture either keeps what it
/// is given ([`push`](Self::push)) or only counts it ([`count`](Self::count)), never both.
#[derive(Debug)]
pub(crate) struct Capture(Kept);

/// Where a capture's bytes are. Small, as every finished task carries two captures through
/// the engine by value.
#[derive(Debug)]
enum Kept {
    /// In memory, until they would pass `threshold` bytes.
    Memory { bytes: Vec<u8>, threshold: usize },
    /// Where they were read (a persistent worker's reply).
    Shared(Shared),
    /// Past the threshold: in a temp file, this long.
    Spilled { file: File, len: u64 },
    /// Not kept, only counted: passed on as lines (line-buffered mode), or released once
    /// written.
    Counted(u64),
}

/// Bytes of a buffer shared with others read along with them: a persistent worker's replies
/// read together share one buffer (one allocation per read, not per reply).
#[derive(Debug)]
pub(crate) struct Shared {
    bytes: Arc<[u8]>,
    range: Range<usize>,
}

impl Shared {
    /// The bytes of `bytes` in `range` (which must be within it).
    pub(crate) fn new(bytes: Arc<[u8]>, range: Range<usize>) -> Shared {
        debug_assert!(range.end <= bytes.len());
        Shared { bytes, range }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.bytes.get(self.range.clone()).unwrap_or_default()
    }
}

impl Capture {
    pub(crate) fn new(threshold: usize) -> Capture {
        Capture(Kept::Memory { bytes: Vec::new(), threshold })
    }

    /// A capture of bytes already in memory (a persistent worker's reply).
    pub(crate) fn holding(bytes: Shared) -> Capture {
        Capture(Kept::Shared(bytes))
    }

    /// Appends `data`, spilling to a temp file past the threshold.
    pub(crate) fn push(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Kept::Memory { bytes, threshold } if bytes.len() + data.len() > *threshold => {
                let mut file = tempfile::tempfile()?;
                file.write_all(bytes)?;
                file.write_all(data)?;
                let len = (bytes.len() + data.len()) as u64;
                self.0 = Kept::Spilled { file, len };
                Ok(())
            }
            Kept::Memory { bytes, .. } => {
                bytes.extend_from_slice(data);
                Ok(())
            }
            Kept::Spilled { file, len } => {
                *len += data.len() as u64;
                file.write_all(data)
            }
            Kept::Counted(len) => {
                *len += data.len() as u64;
                Ok(())
            }
            Kept::Shared(shared) => {
                // Added to: kept as its own bytes from now on.
                let bytes = shared.as_slice().to_vec();
                self.0 = Kept::Memory { bytes, threshold: usize::MAX };
                self.push(data)
            }
        }
    }

    /// Frees what was kept (it was written out); the length stays.
    pub(crate) fn release(&mut self) {
        self.0 = Kept::Counted(self.len());
    }

    /// Counts `n` bytes passed on without keeping them (line-buffered mode).
    pub(crate) fn count(&mut self, n: usize) {
        self.0 = Kept::Counted(self.len() + n as u64);
    }

    /// Bytes captured.
    pub(crate) fn len(&self) -> u64 {
        match &self.0 {
            Kept::Memory { bytes, .. } => bytes.len() as u64,
            Kept::Shared(shared) => shared.as_slice().len() as u64,
            Kept::Spilled { len, .. } | Kept::Counted(len) => *len,
        }
    }

    /// Writes the capture to `out`, each line prefixed by `tag` when given.
    pub(crate) fn write_to(&mut self, out: &mut dyn Write, tag: Option<&[u8]>) -> io::Result<()> {
        match &mut self.0 {
            Kept::Memory { bytes, .. } => write_tagged(out, bytes, tag),
            Kept::Shared(shared) => write_tagged(out, shared.as_slice(), tag),
            Kept::Counted(_) => Ok(()),
            Kept::Spilled { file, .. } => {
                file.rewind()?;
                let mut reader = io::BufReader::new(file);
                match tag {
                    None => io::copy(&mut reader, out).map(drop),
                    Some(tag) => {
                        let mut line = Vec::new();
                        while io::BufRead::read_until(&mut reader, b'\n', &mut line)? > 0 {
                            write_tagged(out, &line, Some(tag))?;
                            line.clear();
                        }
                        Ok(())
                    }
                }
            }
        }
    }
}

/// Writes `data`, prefixing every line with `tag`.
pub(crate) fn write_tagged(out: &mut dyn Write, data: &[u8], tag: Option<&[u8]>) -> io::Result<()> {
    let Some(tag) = tag else { return out.write_all(data) };
    for line in data.split_inclusive(|&b| b == b'\n') {
        out.write_all(tag)?;
        out.write_all(line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_output_spills_to_a_file_and_comes_back_whole() {
        let mut capture = Capture::new(1024);
        let chunk: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        for _ in 0..10 {
            capture.push(&chunk).expect("push");
        }
        assert!(matches!(capture.0, Kept::Spilled { .. }), "past the threshold, memory is released");
        assert_eq!(capture.len(), 7000);
        let mut out = Vec::new();
        capture.write_to(&mut out, None).expect("write");
        assert_eq!(out, chunk.repeat(10));
    }

    #[test]
    fn tags_prefix_every_line_in_memory_and_spilled() {
        for threshold in [1 << 20, 4] {
            let mut capture = Capture::new(threshold);
            capture.push(b"one\ntwo\nthree").expect("push");
            let mut out = Vec::new();
            capture.write_to(&mut out, Some(b"in\t")).expect("write");
            assert_eq!(out, b"in\tone\nin\ttwo\nin\tthree", "threshold {threshold}");
        }
    }
}
