//! Where inputs come from, for every mode: records read from streams (lines or
//! NUL-separated), or values given up front, combined across sources as GNU parallel does.
//!
//! Several sources combine as a cartesian product, the first source varying slowest
//! (`::: a b ::: 1 2` gives `a 1`, `a 2`, `b 1`, `b 2`). The first source is streamed — so
//! stdin with a million lines is never held in memory — and the others are read up front.
//! Records are bytes: no UTF-8 is assumed, empty records are tasks, and a last record without
//! a terminator still counts.

use std::cell::RefCell;
use std::io::{self, BufRead};

use crossbeam_channel as cb;

use crate::shutdown::Shutdown;

/// One task's input: one value per source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// The values, in source order.
    pub values: Vec<Vec<u8>>,
}

impl Input {
    /// The input's identity bytes (values joined by NUL), for the joblog.
    pub fn identity(&self) -> Vec<u8> {
        self.values.join(&0u8)
    }

    /// The values joined by a space, as `--tag` and `{}` show them.
    pub fn display(&self) -> Vec<u8> {
        self.values.join(&b' ')
    }

    /// [`display`](Self::display), consuming the input (no copy for a single value).
    pub fn into_display(mut self) -> Vec<u8> {
        match self.values.len() {
            1 => self.values.pop().unwrap_or_default(),
            _ => self.display(),
        }
    }
}

/// The buffers of inputs whose tasks have settled, kept for the next inputs read on the same
/// thread: a run hands its settled inputs back to the thread that read them (see
/// [`recycle`]), so a stream of a million small records costs a few thousand allocations, not
/// two million (their malloc and free were a tenth of muster's instructions per task through
/// persistent workers). Only small buffers are kept, and only so many.
struct Recycled {
    bytes: Vec<Vec<u8>>,
    rows: Vec<Vec<Vec<u8>>>,
}

/// Most buffers of each kind kept, and the largest record buffer kept.
const RECYCLED_MOST: usize = 4096;
const RECYCLED_LARGEST: usize = 1024;

thread_local! {
    static RECYCLED: RefCell<Recycled> = const { RefCell::new(Recycled { bytes: Vec::new(), rows: Vec::new() }) };
}

/// Keeps the buffers of `inputs` for the next inputs read on this thread.
pub(crate) fn recycle(inputs: impl IntoIterator<Item = Input>) {
    RECYCLED.with_borrow_mut(|recycled| {
        for input in inputs {
            let mut values = input.values;
            for mut value in values.drain(..) {
                if value.capacity() <= RECYCLED_LARGEST && recycled.bytes.len() < RECYCLED_MOST {
                    value.clear();
                    recycled.bytes.push(value);
                }
            }
            if recycled.rows.len() < RECYCLED_MOST {
                recycled.rows.push(values);
            }
        }
    });
}

/// `bytes` in a buffer of a settled input if there is one, else in a new one.
fn record_of(bytes: &[u8]) -> Vec<u8> {
    match RECYCLED.with_borrow_mut(|recycled| recycled.bytes.pop()) {
        Some(mut record) => {
            record.extend_from_slice(bytes);
            record
        }
        None => bytes.to_vec(),
    }
}

/// A row of one value, in a settled input's row if there is one.
fn row_of(value: Vec<u8>) -> Vec<Vec<u8>> {
    let mut row = RECYCLED.with_borrow_mut(|recycled| recycled.rows.pop()).unwrap_or_default();
    row.push(value);
    row
}

/// One source of input values.
pub enum Source {
    /// Values known up front (`::: a b c`).
    Values(Vec<Vec<u8>>),
    /// Records read from a stream (stdin, `-a FILE`); `name` is for messages.
    Stream {
        /// `stdin` or the file name.
        name: String,
        /// The stream.
        reader: Box<dyn BufRead + Send>,
    },
}

/// Splits a stream into records at `separator` (`\n` or NUL), dropping the separator.
pub struct Records<R> {
    reader: R,
    separator: u8,
}

impl<R: BufRead> Records<R> {
    /// Records of `reader`, split at `separator`.
    pub fn new(reader: R, separator: u8) -> Self {
        Records { reader, separator }
    }
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        // Most records lie whole in the reader's buffer: copied out at their size, one
        // allocation each (read_until grows its vector from nothing).
        match self.reader.fill_buf() {
            Ok(buffered) => {
                if let Some(end) = memchr::memchr(self.separator, buffered) {
                    let record = record_of(&buffered[..end]);
                    self.reader.consume(end + 1);
                    return Some(Ok(record));
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Some(Err(err)),
        }
        let mut record = Vec::new();
        match self.reader.read_until(self.separator, &mut record) {
            Ok(0) => None,
            Ok(_) => {
                if record.last() == Some(&self.separator) {
                    record.pop();
                }
                Some(Ok(record))
            }
            Err(err) => Some(Err(err)),
        }
    }
}

/// Rows of the first group, read as they are needed.
type RowStream = Box<dyn Iterator<Item = io::Result<Vec<Vec<u8>>>> + Send>;

/// The combined inputs of all sources, in order. Yields an error (then ends) if reading fails.
///
/// Sources form groups: a source linked to the one before it joins its group, whose values are
/// taken side by side — the first of each, then the second of each, and so on — as GNU
/// parallel does: linked by `:::+`/`::::+` the group ends with its shortest source; linked by
/// `--link` shorter sources wrap around until the longest ends. Groups then combine as a
/// cartesian product.
pub struct Inputs {
    first: RowStream,
    /// The rows of every group after the first.
    rest: Vec<Vec<Vec<Vec<u8>>>>,
    current: Option<Vec<Vec<u8>>>,
    /// Position in each of `rest`, like the wheels of an odometer.
    odometer: Vec<usize>,
    total: Option<u64>,
    failed: bool,
    /// Inputs per task (`-n`/`-N`): their values follow one another in one task's input.
    per_task: usize,
    /// A read error met in the middle of a task's inputs, reported after that short task.
    pending_error: Option<io::Error>,
    /// Splits each value into columns (`--colsep`).
    split: Option<Splitter>,
    /// With several inputs per task, the most bytes of values one task takes.
    max_bytes: Option<usize>,
    /// An input read but left for the next task (it would have passed `max_bytes`).
    held: Option<Input>,
}

/// Splits a value into the columns that take its place (`--colsep`).
pub type Splitter = Box<dyn Fn(&[u8]) -> Vec<Vec<u8>> + Send>;

impl Inputs {
    /// Combines `sources` as a cartesian product, splitting streams at `separator`. Reads
    /// every source but the first to the end now.
    pub fn new(sources: Vec<Source>, separator: u8) -> io::Result<Inputs> {
        let unlinked = vec![Link::None; sources.len()];
        Inputs::linked(sources, &unlinked, separator)
    }

    /// Combines `sources`, where `links[i]` says how source `i` is linked to the one before it
    /// (see the [type docs](Self)). The first group is streamed when it is a single source;
    /// everything else is read now.
    pub fn linked(sources: Vec<Source>, links: &[Link], separator: u8) -> io::Result<Inputs> {
        let mut groups: Vec<(Vec<Source>, bool)> = Vec::new();
        for (index, source) in sources.into_iter().enumerate() {
            let link = links.get(index).copied().unwrap_or(Link::None);
            match groups.last_mut() {
                Some((group, wrap)) if link != Link::None => {
                    group.push(source);
                    *wrap |= link == Link::Wrap;
                }
                _ => groups.push((vec![source], false)),
            }
        }
        let mut groups = groups.into_iter();
        let (first, first_len): (RowStream, Option<usize>) = match groups.next() {
            None => (Box::new(std::iter::empty()), Some(0)),
            Some((mut group, _)) if group.len() == 1 => match group.pop() {
                Some(Source::Values(values)) => {
                    let len = values.len();
                    (Box::new(values.into_iter().map(|v| Ok(vec![v]))), Some(len))
                }
                Some(Source::Stream { reader, .. }) => {
                    (Box::new(Records::new(reader, separator).map(|r| r.map(row_of))), None)
                }
                None => (Box::new(std::iter::empty()), Some(0)),
            },
            Some((group, wrap)) => {
                let rows = read_group(group, wrap, separator)?;
                let len = rows.len();
                (Box::new(rows.into_iter().map(Ok)), Some(len))
            }
        };
        let mut rest = Vec::new();
        for (group, wrap) in groups {
            rest.push(read_group(group, wrap, separator)?);
        }
        let product: usize = rest.iter().map(Vec::len).product();
        let total = first_len.map(|n| (n * product) as u64);
        Ok(Inputs::of_rows(first, rest, total))
    }

    /// Inputs from `first`'s rows combined with every row of each of `rest`.
    fn of_rows(first: RowStream, rest: Vec<Vec<Vec<Vec<u8>>>>, total: Option<u64>) -> Inputs {
        let odometer = vec![0; rest.len()];
        Inputs {
            first,
            rest,
            current: None,
            odometer,
            total,
            failed: false,
            per_task: 1,
            pending_error: None,
            split: None,
            max_bytes: None,
            held: None,
        }
    }

    /// The chunks of `reader` (see [`Blocks`]) as inputs, one per task (`--pipe`).
    pub fn blocks(reader: Box<dyn BufRead + Send>, size: usize, separator: u8) -> Inputs {
        let rows = Blocks::new(reader, size, separator).map(|block| block.map(|input| input.values));
        Inputs::of_rows(Box::new(rows), Vec::new(), None)
    }

    /// Chunks of `reader` of `records` records each, however long (`--pipe -N`, as GNU
    /// parallel cuts them); the last may have fewer.
    pub fn records(reader: Box<dyn BufRead + Send>, records: usize, separator: u8) -> Inputs {
        let rows = Blocks::new(reader, usize::MAX, separator)
            .records(records)
            .map(|block| block.map(|input| input.values));
        Inputs::of_rows(Box::new(rows), Vec::new(), None)
    }

    /// Splits every value into columns with `split`, each column taking its own place
    /// (`{1}`, `{2}`… with one source).
    pub fn split_values(mut self, split: Splitter) -> Inputs {
        self.split = Some(split);
        self
    }

    /// Puts up to `n` inputs in each task, and fewer when their values would pass `max_bytes`
    /// (`-X`, `-m`: as many as fit on a command line). The number of tasks is then not known
    /// ahead.
    pub fn per_task_bounded(mut self, n: usize, max_bytes: usize) -> Inputs {
        self.per_task = n.max(1);
        self.max_bytes = Some(max_bytes);
        self.total = None;
        self
    }

    /// Puts `n` inputs in each task (GNU parallel's `-n`/`-N`): a task's values are those of
    /// its inputs one after another (so `{1}`..`{n}` with one source); the last task may have
    /// fewer.
    pub fn per_task(mut self, n: usize) -> Inputs {
        self.per_task = n.max(1);
        self.total = self.total.map(|total| total.div_ceil(self.per_task as u64));
        self
    }

    /// The number of inputs, when it is known without reading ahead.
    pub fn known_total(&self) -> Option<u64> {
        self.total
    }

    /// Advances the odometer; true when it wrapped around (a new first row is needed).
    fn turn(&mut self) -> bool {
        for (wheel, rows) in self.odometer.iter_mut().zip(&self.rest).rev() {
            *wheel += 1;
            if *wheel < rows.len() {
                return false;
            }
            *wheel = 0;
        }
        true
    }
}

/// Chunks of a stream for `--pipe`: about `size` bytes each, cut after the last separator
/// that fits (a record longer than `size` makes a chunk of its own), so records are never
/// split. Each chunk is one task's input, and goes to its stdin.
pub struct Blocks<R> {
    reader: R,
    size: usize,
    separator: u8,
    /// Bytes read past the last chunk's end.
    carry: Vec<u8>,
    done: bool,
    /// Records per chunk instead of a size.
    records: Option<usize>,
}

impl<R: BufRead> Blocks<R> {
    /// Chunks of `reader` of at most `size` bytes (at least 1), ending with `separator`.
    pub fn new(reader: R, size: usize, separator: u8) -> Self {
        Blocks { reader, size: size.max(1), separator, carry: Vec::new(), done: false, records: None }
    }

    /// Chunks of `count` records (at least 1) each, whatever their size.
    pub fn records(mut self, count: usize) -> Self {
        self.records = Some(count.max(1));
        self
    }

    /// The next chunk of whole records.
    fn next_records(&mut self, count: usize) -> Option<io::Result<Input>> {
        let mut block = Vec::new();
        for _ in 0..count {
            match self.reader.read_until(self.separator, &mut block) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(_) => {}
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
        (!block.is_empty()).then_some(Ok(Input { values: vec![block] }))
    }
}

impl<R: BufRead> Iterator for Blocks<R> {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(count) = self.records {
            return if self.done { None } else { self.next_records(count) };
        }
        let mut block = std::mem::take(&mut self.carry);
        while !self.done && block.len() < self.size {
            let buffer = match self.reader.fill_buf() {
                Ok(buffer) => buffer,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            };
            if buffer.is_empty() {
                self.done = true;
                break;
            }
            let take = buffer.len().min(self.size - block.len());
            block.extend_from_slice(&buffer[..take]);
            self.reader.consume(take);
        }
        if block.is_empty() {
            return None;
        }
        if !self.done {
            // Cut after the last separator; with none, read on to the end of the record.
            match block.iter().rposition(|&b| b == self.separator) {
                Some(last) => self.carry = block.split_off(last + 1),
                None => {
                    if let Err(err) = self.reader.read_until(self.separator, &mut block) {
                        self.done = true;
                        return Some(Err(err));
                    }
                }
            }
        }
        Some(Ok(Input { values: vec![block] }))
    }
}

/// How a source is linked to the one before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Not linked: a new group, combined with the others as a product.
    None,
    /// Side by side, ending with the shortest (`:::+`, `::::+`).
    Shortest,
    /// Side by side, shorter ones wrapping until the longest ends (`--link`).
    Wrap,
}

/// Reads every source of a group and takes their values side by side: as many rows as the
/// shortest has, or with `wrap` as the longest, shorter ones wrapping around. A group with an
/// empty source has no rows.
fn read_group(group: Vec<Source>, wrap: bool, separator: u8) -> io::Result<Vec<Vec<Vec<u8>>>> {
    let mut columns = Vec::with_capacity(group.len());
    for source in group {
        columns.push(match source {
            Source::Values(values) => values,
            Source::Stream { name, reader } => Records::new(reader, separator)
                .collect::<io::Result<Vec<_>>>()
                .map_err(|err| io::Error::new(err.kind(), format!("{name}: {err}")))?,
        });
    }
    if columns.iter().any(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let lengths = columns.iter().map(Vec::len);
    let rows = if wrap { lengths.max() } else { lengths.min() }.unwrap_or(0);
    Ok((0..rows)
        .map(|row| columns.iter().map(|column| column[row % column.len()].clone()).collect())
        .collect())
}

impl Iterator for Inputs {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.per_task == 1 {
            return self.next_one();
        }
        if let Some(err) = self.pending_error.take() {
            return Some(Err(err));
        }
        let mut values = Vec::new();
        let mut bytes = 0;
        for _ in 0..self.per_task {
            let next = match self.held.take() {
                Some(input) => Some(Ok(input)),
                None => self.next_one(),
            };
            match next {
                Some(Ok(input)) => {
                    let size: usize = input.values.iter().map(|v| v.len() + 1).sum();
                    if self.max_bytes.is_some_and(|max| !values.is_empty() && bytes + size > max) {
                        self.held = Some(input);
                        break;
                    }
                    bytes += size;
                    values.extend(input.values);
                }
                Some(Err(err)) if values.is_empty() => return Some(Err(err)),
                // The inputs read so far make a last, short task; the error comes next.
                Some(Err(err)) => {
                    self.pending_error = Some(err);
                    break;
                }
                None => break,
            }
        }
        (!values.is_empty()).then_some(Ok(Input { values }))
    }
}

impl Inputs {
    /// The next single input.
    fn next_one(&mut self) -> Option<io::Result<Input>> {
        if self.failed || self.rest.iter().any(Vec::is_empty) {
            return None;
        }
        let mut values = if self.rest.is_empty() {
            // One source: each row is an input of its own, with nothing to combine it with
            // later (a copy of it per input was two allocations of a 1M-task run's six).
            match self.first.next()? {
                Ok(row) => row,
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
        } else {
            if self.current.is_none() || self.turn() {
                match self.first.next()? {
                    Ok(row) => self.current = Some(row),
                    Err(err) => {
                        self.failed = true;
                        return Some(Err(err));
                    }
                }
            }
            self.current.clone()?
        };
        for (wheel, rows) in self.odometer.iter().zip(&self.rest) {
            values.extend(rows[*wheel].iter().cloned());
        }
        if let Some(split) = &self.split {
            values = values.iter().flat_map(|value| split(value)).collect();
        }
        Some(Ok(Input { values }))
    }
}

impl Source {
    /// This source, made to end when `shutdown` trips even while a read blocks (a terminal, a
    /// stalled pipe): a stream is then read on a thread of its own (see [`Interruptible`]).
    /// Values known up front are returned as they are.
    pub fn interruptible(self, shutdown: &Shutdown) -> Source {
        match self {
            Source::Stream { name, reader } => {
                Source::Stream { name, reader: Box::new(Interruptible::new(reader, shutdown.clone())) }
            }
            values => values,
        }
    }
}

/// A stream read on a thread of its own, in chunks of whatever each `read` returns (up to
/// 64 KiB), at most [`Interruptible::CHUNKS_AHEAD`] chunks ahead. Reading from it ends (as at
/// end of file) as soon as the [`Shutdown`] trips, so a blocked read never holds up Ctrl-C;
/// the thread is then left to end with its read (or the process). Records are split where
/// they are consumed, so a fast stream costs one hand-off per chunk, not per record.
pub struct Interruptible {
    chunks: cb::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    consumed: usize,
    ended: bool,
    shutdown: Shutdown,
}

impl Interruptible {
    /// Chunks read ahead of the consumer, at most.
    pub const CHUNKS_AHEAD: usize = 4;

    /// Reads `reader` on a new thread until `shutdown` trips or it ends.
    pub fn new(mut reader: Box<dyn BufRead + Send>, shutdown: Shutdown) -> Interruptible {
        let (tx, chunks) = cb::bounded(Self::CHUNKS_AHEAD);
        let spawned = std::thread::Builder::new().name("muster-input".into()).spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let chunk = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => Ok(buf[..n].to_vec()),
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => Err(err),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).is_err() || failed {
                    break;
                }
            }
        });
        let chunks = match spawned {
            Ok(_) => chunks,
            Err(err) => {
                // Without the thread, report it as a read error: nothing is run blind.
                let (tx, rx) = cb::bounded(1);
                let _ =
                    tx.send(Err(io::Error::new(err.kind(), format!("cannot start the input reader: {err}"))));
                rx
            }
        };
        Interruptible { chunks, chunk: Vec::new(), consumed: 0, ended: false, shutdown }
    }
}

impl io::Read for Interruptible {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Interruptible {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.shutdown.is_tripped() {
            self.ended = true;
        }
        while self.consumed == self.chunk.len() && !self.ended {
            cb::select! {
                recv(self.chunks) -> chunk => match chunk {
                    Ok(Ok(chunk)) => {
                        self.chunk = chunk;
                        self.consumed = 0;
                    }
                    Ok(Err(err)) => return Err(err),
                    Err(_) => self.ended = true,
                },
                recv(self.shutdown.tripped()) -> _ => self.ended = true,
            }
        }
        if self.ended && self.consumed == self.chunk.len() {
            return Ok(&[]);
        }
        Ok(&self.chunk[self.consumed..])
    }

    fn consume(&mut self, amount: usize) {
        self.consumed = (self.consumed + amount).min(self.chunk.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(items: &[&str]) -> Source {
        Source::Values(items.iter().map(|s| s.as_bytes().to_vec()).collect())
    }

    fn stream(text: &'static [u8]) -> Source {
        Source::Stream { name: "test".into(), reader: Box::new(text) }
    }

    fn collect(inputs: Inputs) -> Vec<Vec<String>> {
        inputs
            .map(|i| i.expect("ok").values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect())
            .collect()
    }

    /// Settled inputs' buffers are read into again: what comes out is the new record alone,
    /// never a byte of the old one, and a large buffer is not kept.
    #[test]
    fn recycled_buffers_hold_only_the_records_read_into_them() {
        recycle([
            Input { values: vec![b"an old, longer value".to_vec(), b"x".to_vec()] },
            Input { values: vec![vec![b'z'; RECYCLED_LARGEST + 1]] },
        ]);
        let reader = Box::new(
            &b"ab

last"[..],
        ) as Box<dyn BufRead + Send>;
        let inputs = Inputs::linked(vec![Source::Stream { name: "test".into(), reader }], &[], b'\n');
        let values: Vec<Vec<Vec<u8>>> =
            inputs.expect("inputs").map(|input| input.expect("read").values).collect();
        assert_eq!(values, [vec![b"ab".to_vec()], vec![Vec::new()], vec![b"last".to_vec()]]);
        let kept = RECYCLED.with_borrow(|recycled| recycled.bytes.iter().map(Vec::capacity).max());
        assert!(kept.is_none_or(|largest| largest <= RECYCLED_LARGEST), "a large buffer was kept");
    }

    #[test]
    fn records_split_lines_keeping_empty_ones_and_an_unterminated_last() {
        let records: Vec<_> = Records::new(&b"a\n\nc"[..], b'\n').map(|r| r.expect("ok")).collect();
        assert_eq!(records, [b"a".to_vec(), vec![], b"c".to_vec()]);
    }

    #[test]
    fn records_split_on_nul_and_keep_newlines() {
        let records: Vec<_> = Records::new(&b"a\nb\0c\0"[..], 0).map(|r| r.expect("ok")).collect();
        assert_eq!(records, [b"a\nb".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn empty_stream_has_no_records() {
        assert_eq!(Records::new(&b""[..], b'\n').count(), 0);
    }

    #[test]
    fn sources_combine_first_slowest() {
        let inputs = Inputs::new(vec![values(&["a", "b"]), values(&["1", "2", "3"])], b'\n').expect("ok");
        assert_eq!(inputs.known_total(), Some(6));
        assert_eq!(
            collect(inputs),
            [["a", "1"], ["a", "2"], ["a", "3"], ["b", "1"], ["b", "2"], ["b", "3"]]
                .map(|p| p.map(String::from))
        );
    }

    #[test]
    fn a_streamed_first_source_has_no_known_total() {
        let inputs = Inputs::new(vec![stream(b"x\ny\n"), values(&["1"])], b'\n').expect("ok");
        assert_eq!(inputs.known_total(), None);
        assert_eq!(collect(inputs), [["x", "1"], ["y", "1"]].map(|p| p.map(String::from)));
    }

    #[test]
    fn an_empty_source_means_no_tasks() {
        assert_eq!(Inputs::new(vec![values(&["a"]), values(&[])], b'\n').expect("ok").count(), 0);
    }

    fn all(inputs: Inputs) -> Vec<String> {
        inputs.map(|i| String::from_utf8_lossy(&i.expect("input").display()).into_owned()).collect()
    }

    #[test]
    fn blocks_end_at_a_record_end_and_lose_nothing() {
        let data: Vec<u8> = (1..=1000).flat_map(|i| format!("{i}\n").into_bytes()).collect();
        let blocks: Vec<Vec<u8>> =
            Blocks::new(&data[..], 100, b'\n').map(|b| b.expect("block").values.concat()).collect();
        assert!(blocks.iter().all(|b| b.len() <= 100 && b.ends_with(b"\n")), "{blocks:?}");
        assert_eq!(blocks.concat(), data, "every byte, in order");
        let long: Vec<Vec<u8>> =
            Blocks::new(&b"short\nthis record is longer than the block\nend"[..], 8, b'\n')
                .map(|b| b.expect("block").values.concat())
                .collect();
        assert_eq!(long, [&b"short\n"[..], b"this record is longer than the block\n", b"end"]);
    }

    #[test]
    fn record_chunks_hold_that_many_records_whatever_their_size() {
        let chunks = |data: &'static [u8], n| -> Vec<Vec<u8>> {
            Blocks::new(data, usize::MAX, b'\n')
                .records(n)
                .map(|b| b.expect("chunk").values.concat())
                .collect()
        };
        assert_eq!(chunks(b"1\n2\n3\n4\n5\n", 2), [&b"1\n2\n"[..], b"3\n4\n", b"5\n"]);
        assert_eq!(chunks(b"a\nb\nc", 2), [&b"a\nb\n"[..], b"c"], "an unterminated last record");
        assert_eq!(chunks(b"a\nb\n", 2), [&b"a\nb\n"[..]], "no empty chunk after the last");
        assert!(chunks(b"", 3).is_empty());
    }

    #[test]
    fn several_inputs_per_task() {
        let inputs = Inputs::new(vec![values(&["a", "b", "c", "d", "e"])], b'\n').expect("ok").per_task(2);
        assert_eq!(inputs.known_total(), Some(3));
        assert_eq!(all(inputs), ["a b", "c d", "e"], "the last task is short");
        let inputs = Inputs::new(vec![stream(b"1\n2\n3\n")], b'\n').expect("ok").per_task(2);
        let values: Vec<Vec<Vec<u8>>> = inputs.map(|i| i.expect("input").values).collect();
        assert_eq!(values, [vec![b"1".to_vec(), b"2".to_vec()], vec![b"3".to_vec()]]);
    }

    #[test]
    fn linked_sources_go_side_by_side() {
        use Link::{None, Shortest, Wrap};
        let wrapped =
            Inputs::linked(vec![values(&["a", "b", "c"]), values(&["1", "2"])], &[None, Wrap], b'\n');
        assert_eq!(all(wrapped.expect("ok")), ["a 1", "b 2", "c 1"], "--link wraps");
        let shortest =
            Inputs::linked(vec![values(&["a", "b", "c"]), values(&["1", "2"])], &[None, Shortest], b'\n');
        assert_eq!(all(shortest.expect("ok")), ["a 1", "b 2"], ":::+ ends with the shortest");
        let sources = vec![values(&["a", "b"]), values(&["1", "2"]), values(&["x", "y"])];
        let mixed = Inputs::linked(sources, &[None, Shortest, None], b'\n').expect("ok");
        assert_eq!(mixed.known_total(), Some(4));
        assert_eq!(all(mixed), ["a 1 x", "a 1 y", "b 2 x", "b 2 y"], "a linked pair, then a product");
        let sources = vec![values(&["p", "q"]), stream(b"a\nb\nc\n"), values(&["1", "2"])];
        let later = Inputs::linked(sources, &[None, None, Wrap], b'\n').expect("ok");
        assert_eq!(all(later), ["p a 1", "p b 2", "p c 1", "q a 1", "q b 2", "q c 1"]);
        let empty = Inputs::linked(vec![values(&["a"]), values(&[])], &[None, Wrap], b'\n').expect("ok");
        assert_eq!(empty.count(), 0);
    }

    #[test]
    fn an_interruptible_stream_ends_when_shutdown_trips_even_while_its_read_blocks() {
        // A socket whose writer stays open: the read blocks forever.
        let (reader, _writer) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        let source = Source::Stream { name: "pipe".into(), reader: Box::new(io::BufReader::new(reader)) };
        let shutdown = Shutdown::new();
        let source = source.interruptible(&shutdown);
        let mut feed = Inputs::new(vec![source], b'\n').expect("ok");
        let tripper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            shutdown.trip();
        });
        assert!(feed.next().is_none(), "the blocked read does not hold the feed");
        tripper.join().expect("tripper");
    }

    #[test]
    fn an_interruptible_stream_passes_every_record_through() {
        let source = stream(b"a\nb\nc").interruptible(&Shutdown::new());
        let feed = Inputs::new(vec![source], b'\n').expect("ok");
        let got: Vec<_> = feed.map(|i| i.expect("ok").values).collect();
        assert_eq!(
            got,
            [vec![b"a".to_vec()], vec![b"b".to_vec()], vec![b"c".to_vec()]],
            "the last one unterminated"
        );
    }

    #[test]
    fn invalid_utf8_passes_through() {
        let mut inputs = Inputs::new(vec![stream(b"\xff\xfe\n")], b'\n').expect("ok");
        assert_eq!(inputs.next().map(|i| i.expect("ok").values), Some(vec![vec![0xff, 0xfe]]));
    }
}
