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
/// so a task printing gigabytes does not grow muster's memory.
#[derive(Debug)]
pub(crate) struct Capture {
    memory: Memory,
    spill: Option<File>,
    len: u64,
    threshold: usize,
}

/// What a capture keeps in memory.
#[derive(Debug)]
enum Memory {
    Owned(Vec<u8>),
    Shared(Shared),
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
        Capture { memory: Memory::Owned(Vec::new()), spill: None, len: 0, threshold }
    }

    /// A capture of bytes already in memory (a persistent worker's reply).
    pub(crate) fn holding(bytes: Shared) -> Capture {
        let len = bytes.as_slice().len() as u64;
        Capture { len, memory: Memory::Shared(bytes), spill: None, threshold: usize::MAX }
    }

    fn memory(&self) -> &[u8] {
        match &self.memory {
            Memory::Owned(bytes) => bytes,
            Memory::Shared(shared) => shared.as_slice(),
        }
    }

    /// Appends `data`, spilling to a temp file past the threshold.
    pub(crate) fn push(&mut self, data: &[u8]) -> io::Result<()> {
        self.len += data.len() as u64;
        if self.spill.is_none() && self.memory().len() + data.len() > self.threshold {
            let mut file = tempfile::tempfile()?;
            file.write_all(self.memory())?;
            self.memory = Memory::Owned(Vec::new());
            self.spill = Some(file);
        }
        if let Some(file) = &mut self.spill {
            return file.write_all(data);
        }
        if let Memory::Shared(shared) = &self.memory {
            self.memory = Memory::Owned(shared.as_slice().to_vec());
        }
        if let Memory::Owned(bytes) = &mut self.memory {
            bytes.extend_from_slice(data);
        }
        Ok(())
    }

    /// Frees what was kept (it was written out); the length stays.
    pub(crate) fn release(&mut self) {
        self.memory = Memory::Owned(Vec::new());
        self.spill = None;
    }

    /// Counts `n` bytes passed on without keeping them (line-buffered mode).
    pub(crate) fn count(&mut self, n: usize) {
        self.len += n as u64;
    }

    /// Bytes captured.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Writes the capture to `out`, each line prefixed by `tag` when given.
    pub(crate) fn write_to(&mut self, out: &mut dyn Write, tag: Option<&[u8]>) -> io::Result<()> {
        match &mut self.spill {
            None => write_tagged(out, self.memory(), tag),
            Some(file) => {
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
        assert!(
            capture.spill.is_some() && capture.memory().is_empty(),
            "past the threshold, memory is released"
        );
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
