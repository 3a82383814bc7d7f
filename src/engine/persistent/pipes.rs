//! Workers' stdout and stderr on a few threads: each [`PipeReader`] is an epoll loop that reads
//! whatever its workers wrote, cuts it into records and hands them to the pipe's [`Records`]
//! handler — replies to the worker's window (see `worker`), stderr lines to the caller with the
//! worker's slot — so many workers cost a thread per CPU for their output rather than two
//! each. A handler is dropped when its pipe ends (or it asks to stop reading), which is how
//! its worker learns of it.

use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crossbeam_channel as cb;
use rustix::io::Errno;

use super::framing::Framing;
use super::Event;
use crate::engine::capture::Shared;
use crate::engine::poll::{Interest, Poller, Waker};

/// What is done with the records of one pipe. Called on the loop's thread: it must not block.
pub(crate) trait Records: Send {
    /// Complete records read together. False: read no more of this pipe.
    fn records(&mut self, records: Cut) -> bool;
    /// The pipe ended; `last` is its final record if it had no separator.
    fn ended(&mut self, last: Option<Vec<u8>>);
    /// The pipe holds something that is no record (a length prefix past any frame's): it is
    /// read no more.
    fn garbled(&mut self) {}
}

/// A handle on the loop; the loop ends once every handle is dropped and every pipe it reads
/// has ended.
pub(crate) struct PipeReader {
    register: cb::Sender<Pipe>,
    wake: Arc<OwnedFd>,
}

/// Records read together: one buffer holding them (copied once from the read), and where
/// each one is in it.
pub(crate) struct Cut {
    bytes: Arc<[u8]>,
    records: Vec<Range<usize>>,
    framing: Framing,
}

impl Cut {
    /// `record` alone (the unterminated last line of a pipe), as if read with its separator.
    pub(crate) fn one(record: Vec<u8>, framing: Framing) -> Cut {
        let len = record.len();
        let records = std::iter::once(0..len).collect();
        Cut { bytes: framing.output(record).into(), records, framing }
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Each record's bytes (framing removed).
    pub(crate) fn records(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.records.iter().filter_map(|range| self.bytes.get(range.clone()))
    }

    /// Each record as a task's output (a line with its separator; a frame as it is), sharing
    /// the buffer: one allocation per read, not per reply.
    pub(crate) fn outputs(self) -> impl Iterator<Item = Shared> {
        let Cut { bytes, records, framing } = self;
        records.into_iter().map(move |range| Shared::new(Arc::clone(&bytes), framing.output_of(range)))
    }
}

/// A pipe being read.
struct Pipe {
    fd: OwnedFd,
    framing: Framing,
    /// The start of a record whose end has not come yet.
    partial: Vec<u8>,
    handler: Box<dyn Records>,
}

/// Held by a pipe's handler: when the handler is dropped (the pipe ended), the receiver made
/// with it disconnects, and then the loop feeding the worker is rung.
pub(crate) struct EndNotice {
    ended: Option<cb::Sender<()>>,
    ring: Arc<Waker>,
}

impl EndNotice {
    pub(crate) fn new(ring: Arc<Waker>) -> (EndNotice, cb::Receiver<()>) {
        let (ended, receiver) = cb::bounded(0);
        (EndNotice { ended: Some(ended), ring }, receiver)
    }

    /// Wakes the loop feeding the worker.
    pub(crate) fn ring(&self) {
        self.ring.ring();
    }
}

impl Drop for EndNotice {
    fn drop(&mut self) {
        // Disconnected first, so the woken loop sees the end.
        self.ended.take();
        self.ring();
    }
}

/// A worker's stderr lines, passed on with its slot.
struct StderrLines {
    slot: usize,
    events: cb::Sender<Event>,
    _ended: EndNotice,
}

impl Records for StderrLines {
    fn records(&mut self, lines: Cut) -> bool {
        for line in lines.records() {
            let _ = self.events.send(Event::Stderr(self.slot, line.to_vec()));
        }
        true
    }

    fn ended(&mut self, last: Option<Vec<u8>>) {
        if let Some(line) = last {
            let _ = self.events.send(Event::Stderr(self.slot, line));
        }
    }
}

impl PipeReader {
    /// Starts the loop on a thread of its own.
    pub(crate) fn start() -> io::Result<PipeReader> {
        let flags = rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK;
        let wake = Arc::new(rustix::event::eventfd(0, flags)?);
        let poller = Poller::new(wake.as_fd())?;
        let (register, registrations) = cb::unbounded();
        let thread_wake = Arc::clone(&wake);
        std::thread::Builder::new().name("muster-pipes".into()).spawn(move || {
            let _aside = crate::engine::priority::step_aside();
            serve(&poller, &thread_wake, &registrations)
        })?;
        Ok(PipeReader { register, wake })
    }

    /// Reads `pipe` until it ends, handing its records to `handler`.
    pub(crate) fn read(&self, pipe: impl Into<OwnedFd>, framing: Framing, handler: Box<dyn Records>) {
        let fd = pipe.into();
        let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK);
        let pipe = Pipe { fd, framing, partial: Vec::new(), handler };
        if self.register.send(pipe).is_ok() {
            ring(&self.wake);
        }
    }
}

/// A handler passing on the stderr lines of the worker in `slot` as [`Event::Stderr`], and a
/// receiver that disconnects once the last line was passed on (the handler dropped; `ring`
/// is rung then).
pub(crate) fn stderr_lines(
    slot: usize,
    events: cb::Sender<Event>,
    ring: Arc<Waker>,
) -> (Box<dyn Records>, cb::Receiver<()>) {
    let (notice, ended) = EndNotice::new(ring);
    (Box::new(StderrLines { slot, events, _ended: notice }), ended)
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        // The loop learns that no registration can come any more.
        let (closed, _) = cb::unbounded();
        drop(std::mem::replace(&mut self.register, closed));
        ring(&self.wake);
    }
}

fn ring(wake: &OwnedFd) {
    let _ = rustix::io::write(wake, &1u64.to_ne_bytes());
}

fn serve(poller: &Poller, wake: &OwnedFd, registrations: &cb::Receiver<Pipe>) {
    let mut pipes: Vec<Option<Pipe>> = Vec::new();
    let mut open = 0usize;
    let mut handles_gone = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut ready: Vec<u64> = Vec::with_capacity(64);
    loop {
        if handles_gone && open == 0 {
            return;
        }
        let woken = poller.wait(None, &mut ready);
        for &token in &ready {
            let index = token as usize;
            if !read(pipes.get_mut(index).and_then(Option::as_mut), &mut buf) {
                if let Some(pipe) = pipes.get_mut(index).and_then(Option::take) {
                    poller.forget(&pipe.fd);
                    open -= 1;
                }
            }
        }
        if !woken {
            continue;
        }
        let mut drained = [0u8; 8];
        let _ = rustix::io::read(wake, &mut drained);
        loop {
            match registrations.try_recv() {
                Ok(mut pipe) => {
                    let index = pipes.iter().position(Option::is_none).unwrap_or(pipes.len());
                    if poller.watch(&pipe.fd, index as u64, Interest::Readable).is_err() {
                        // Unreadable: as good as ended (dropping the handler says so).
                        pipe.handler.ended(None);
                        continue;
                    }
                    let entry = Some(pipe);
                    match pipes.get_mut(index) {
                        Some(free) => *free = entry,
                        None => pipes.push(entry),
                    }
                    open += 1;
                }
                Err(cb::TryRecvError::Empty) => break,
                Err(cb::TryRecvError::Disconnected) => {
                    handles_gone = true;
                    break;
                }
            }
        }
    }
}

/// Hands `pipe`'s records to `handler` on `reader`'s thread, or, without one, on a thread of
/// its own (returned, to be joined).
pub(crate) fn read_on(
    reader: Option<&PipeReader>,
    pipe: impl Into<OwnedFd>,
    framing: Framing,
    handler: Box<dyn Records>,
) -> Option<std::thread::JoinHandle<()>> {
    match reader {
        Some(reader) => {
            reader.read(pipe, framing, handler);
            None
        }
        None => {
            let mut pipe = Pipe { fd: pipe.into(), framing, partial: Vec::new(), handler };
            // A blocking read never says "nothing yet": it returns at the pipe's end.
            std::thread::Builder::new()
                .spawn(move || {
                    let _aside = crate::engine::priority::step_aside();
                    let mut buf = vec![0u8; 64 * 1024];
                    while read(Some(&mut pipe), &mut buf) {}
                })
                .ok()
        }
    }
}

/// Reads what the pipe has ready and hands over its complete records, all that one read
/// brought as one batch; false at its end (the unfinished last record is handed over then), or
/// when the handler wants no more.
fn read(pipe: Option<&mut Pipe>, buf: &mut [u8]) -> bool {
    let Some(pipe) = pipe else { return true };
    loop {
        let n = match rustix::io::read(&pipe.fd, &mut *buf) {
            Ok(n) => n,
            Err(Errno::AGAIN) => return true,
            Err(Errno::INTR) => continue,
            Err(_) => 0,
        };
        if n == 0 {
            let last = std::mem::take(&mut pipe.partial);
            pipe.handler.ended(pipe.framing.last(last));
            return false;
        }
        let mut records = Vec::new();
        // Split where the bytes are: the read buffer itself unless a record's start waits in
        // `partial` (then the read joins it); the records are copied out once, together.
        let framing = pipe.framing;
        let end_of =
            |records: &[Range<usize>]| records.last().map_or(0, |r| framing.output_of(r.clone()).end);
        let (split, bytes): (_, Arc<[u8]>) = if pipe.partial.is_empty() {
            let split = framing.split(&buf[..n], &mut records);
            let used = split.unwrap_or_else(|_| end_of(&records));
            if split.is_ok() {
                pipe.partial.extend_from_slice(&buf[used..n]);
            }
            (split, buf[..used].into())
        } else {
            pipe.partial.extend_from_slice(&buf[..n]);
            let split = framing.split(&pipe.partial, &mut records);
            let used = split.unwrap_or_else(|_| end_of(&records));
            let bytes = pipe.partial[..used].into();
            pipe.partial.drain(..used);
            (split, bytes)
        };
        let cut = (!records.is_empty()).then_some(Cut { bytes, records, framing });
        if split.is_err() {
            // The records before the garbage still answer their tasks.
            if cut.is_none_or(|cut| pipe.handler.records(cut)) {
                pipe.handler.garbled();
            }
            return false;
        }
        if let Some(cut) = cut {
            if !pipe.handler.records(cut) {
                return false;
            }
        }
        if n < buf.len() {
            // Drained, most likely: epoll says so again if more came (it is level-triggered),
            // so no read is spent to hear "nothing yet".
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What a handler was given.
    #[derive(Default)]
    struct Seen {
        records: Vec<Vec<u8>>,
        ended: Option<Option<Vec<u8>>>,
    }

    struct Recorder(Arc<Mutex<Seen>>);

    impl Records for Recorder {
        fn records(&mut self, records: Cut) -> bool {
            self.0.lock().expect("seen").records.extend(records.records().map(<[u8]>::to_vec));
            true
        }

        fn ended(&mut self, last: Option<Vec<u8>>) {
            self.0.lock().expect("seen").ended = Some(last);
        }
    }

    /// The loop's whole answer to an event is a non-blocking read of the pipe now at the
    /// event's index. An event meant for the pipe that had the index before (stale: it ended,
    /// and a new pipe took its place) therefore finds nothing to read: it hands over no record
    /// and ends nothing, and the new pipe's records and end come as they are written.
    #[test]
    fn a_stale_event_for_a_reused_index_reads_nothing_and_ends_nothing() {
        let (reading, writing) = rustix::pipe::pipe().expect("pipe");
        rustix::fs::fcntl_setfl(&reading, rustix::fs::OFlags::NONBLOCK).expect("non-blocking");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let handler = Box::new(Recorder(Arc::clone(&seen)));
        let mut pipe = Pipe { fd: reading, framing: Framing::Separated(b'\n'), partial: Vec::new(), handler };
        let mut buf = vec![0u8; 64];
        let nothing_yet = |seen: &Arc<Mutex<Seen>>| {
            let seen = seen.lock().expect("seen");
            (seen.records.len(), seen.ended.is_some())
        };

        assert!(read(Some(&mut pipe), &mut buf), "a stale event: the pipe reads on");
        assert_eq!(nothing_yet(&seen), (0, false), "nothing handed over, nothing ended");

        rustix::io::write(&writing, b"one\ntw").expect("write");
        assert!(read(Some(&mut pipe), &mut buf));
        assert!(read(Some(&mut pipe), &mut buf), "another stale event");
        assert_eq!(seen.lock().expect("seen").records, [b"one".to_vec()], "each record once");

        drop(writing);
        assert!(!read(Some(&mut pipe), &mut buf), "the real end");
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.ended, Some(Some(b"tw".to_vec())), "its unfinished last record, once");
        // An index with no pipe at all (its pipe gone, none registered yet): nothing happens.
        assert!(read(None, &mut buf));
    }
}
