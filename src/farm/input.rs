//! Where a task farm's inputs come from: records read from streams (lines or NUL-separated),
//! or values given up front, combined across sources as GNU parallel does.
//!
//! Several sources combine as a cartesian product, the first source varying slowest
//! (`::: a b ::: 1 2` gives `a 1`, `a 2`, `b 1`, `b 2`). The first source is streamed — so
//! stdin with a million lines is never held in memory — and the others are read up front.
//! Records are bytes: no UTF-8 is assumed, empty records are tasks, and a last record without
//! a terminator still counts.

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

type ValueStream = Box<dyn Iterator<Item = io::Result<Vec<u8>>> + Send>;

/// The combined inputs of all sources, in order. Yields an error (then ends) if reading fails.
pub struct Inputs {
    first: ValueStream,
    rest: Vec<Vec<Vec<u8>>>,
    current: Option<Vec<u8>>,
    /// Position in each of `rest`, like the wheels of an odometer.
    odometer: Vec<usize>,
    total: Option<u64>,
    failed: bool,
    /// The first source is a stream, whose reads can block for as long as it likes.
    streamed: bool,
}

impl Inputs {
    /// Combines `sources`, splitting streams at `separator`. Reads every source but the first
    /// to the end now.
    pub fn new(sources: Vec<Source>, separator: u8) -> io::Result<Inputs> {
        let mut sources = sources.into_iter();
        let streamed = matches!(sources.as_slice().first(), Some(Source::Stream { .. }));
        let (first, first_len): (ValueStream, Option<usize>) = match sources.next() {
            None => (Box::new(std::iter::empty()), Some(0)),
            Some(Source::Values(values)) => {
                let len = values.len();
                (Box::new(values.into_iter().map(Ok)), Some(len))
            }
            Some(Source::Stream { reader, .. }) => (Box::new(Records::new(reader, separator)), None),
        };
        let mut rest = Vec::new();
        for source in sources {
            rest.push(match source {
                Source::Values(values) => values,
                Source::Stream { name, reader } => Records::new(reader, separator)
                    .collect::<io::Result<Vec<_>>>()
                    .map_err(|err| io::Error::new(err.kind(), format!("{name}: {err}")))?,
            });
        }
        let product: usize = rest.iter().map(Vec::len).product();
        let total = first_len.map(|n| (n * product) as u64);
        let odometer = vec![0; rest.len()];
        Ok(Inputs { first, rest, current: None, odometer, total, failed: false, streamed })
    }

    /// The number of inputs, when it is known without reading ahead.
    pub fn known_total(&self) -> Option<u64> {
        self.total
    }

    /// Advances the odometer; true when it wrapped around (a new first value is needed).
    fn turn(&mut self) -> bool {
        for (wheel, values) in self.odometer.iter_mut().zip(&self.rest).rev() {
            *wheel += 1;
            if *wheel < values.len() {
                return false;
            }
            *wheel = 0;
        }
        true
    }
}

impl Iterator for Inputs {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.iter().any(Vec::is_empty) {
            return None;
        }
        if self.current.is_none() || self.turn() {
            match self.first.next()? {
                Ok(value) => self.current = Some(value),
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
        }
        let mut values = Vec::with_capacity(1 + self.rest.len());
        values.push(self.current.clone()?);
        for (wheel, source) in self.odometer.iter().zip(&self.rest) {
            values.push(source[*wheel].clone());
        }
        Some(Ok(Input { values }))
    }
}

/// Inputs read on a thread of their own, so that a read that blocks (a terminal, a stalled
/// pipe) never holds up a shutdown: iterating a `Feed` ends as soon as the [`Shutdown`] trips.
/// The thread reads at most [`Feed::AHEAD`] records ahead of the consumer. If the run ends
/// while it is blocked in a read, it is left behind and ends with that read (or the process).
/// Inputs known up front (`:::`) cannot block and are read in place.
pub struct Feed {
    source: FeedSource,
    shutdown: Shutdown,
}

enum FeedSource {
    InPlace(Inputs),
    Thread(cb::Receiver<io::Result<Input>>),
    Ended,
}

impl Feed {
    /// Records read ahead, at most.
    pub const AHEAD: usize = 64;

    /// Feeds `inputs` until they end or `shutdown` trips.
    pub fn new(inputs: Inputs, shutdown: Shutdown) -> Feed {
        if !inputs.streamed {
            return Feed { source: FeedSource::InPlace(inputs), shutdown };
        }
        let (tx, rx) = cb::bounded(Feed::AHEAD);
        let spawned = std::thread::Builder::new().name("muster-input".into()).spawn(move || {
            for input in inputs {
                if tx.send(input).is_err() {
                    break;
                }
            }
        });
        let source = match spawned {
            Ok(_) => FeedSource::Thread(rx),
            Err(err) => {
                // Without the thread, report the failure as a read error: nothing is run blind.
                let (tx, rx) = cb::bounded(1);
                let _ =
                    tx.send(Err(io::Error::new(err.kind(), format!("cannot start the input reader: {err}"))));
                FeedSource::Thread(rx)
            }
        };
        Feed { source, shutdown }
    }
}

impl Iterator for Feed {
    type Item = io::Result<Input>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.shutdown.is_tripped() {
            self.source = FeedSource::Ended;
        }
        let next = match &mut self.source {
            FeedSource::Ended => None,
            FeedSource::InPlace(inputs) => inputs.next(),
            FeedSource::Thread(rx) => cb::select! {
                recv(rx) -> input => input.ok(),
                recv(self.shutdown.tripped()) -> _ => None,
            },
        };
        if next.is_none() {
            // Dropping the receiver lets a reader that is not blocked end at its next send.
            self.source = FeedSource::Ended;
        }
        next
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

    #[test]
    fn a_feed_ends_when_shutdown_trips_even_while_its_read_blocks() {
        // A pipe whose writer stays open: the read blocks forever.
        let (reader, _writer) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        let source = Source::Stream { name: "pipe".into(), reader: Box::new(io::BufReader::new(reader)) };
        let shutdown = Shutdown::new();
        let mut feed = Feed::new(Inputs::new(vec![source], b'\n').expect("ok"), shutdown.clone());
        let tripper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            shutdown.trip();
        });
        assert!(feed.next().is_none(), "the blocked read does not hold the feed");
        tripper.join().expect("tripper");
    }

    #[test]
    fn a_feed_passes_every_record_through() {
        let feed = Feed::new(Inputs::new(vec![stream(b"a\nb\nc\n")], b'\n').expect("ok"), Shutdown::new());
        let got: Vec<_> = feed.map(|i| i.expect("ok").values).collect();
        assert_eq!(got, [vec![b"a".to_vec()], vec![b"b".to_vec()], vec![b"c".to_vec()]]);
    }

    #[test]
    fn invalid_utf8_passes_through() {
        let mut inputs = Inputs::new(vec![stream(b"\xff\xfe\n")], b'\n').expect("ok");
        assert_eq!(inputs.next().map(|i| i.expect("ok").values), Some(vec![vec![0xff, 0xfe]]));
    }
}
