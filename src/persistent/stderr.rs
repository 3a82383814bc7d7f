//! Every worker's stderr on one thread: an epoll loop reads whatever any worker wrote, cuts it
//! into lines and passes each on with the worker's slot, so many workers cost one thread for
//! their stderr rather than one each. Each worker's pipe comes with a token that is dropped
//! when its stderr ends, so a slot replacing a worker knows every line was passed on first.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crossbeam_channel as cb;
use rustix::event::epoll;
use rustix::io::Errno;

use super::Event;

/// The loop's wake-up, marking registrations to take and, once the last handle is gone, the end.
const WAKE: u64 = u64::MAX;

/// A handle on the stderr loop; the loop ends once every handle is dropped and every pipe it
/// reads has ended.
pub(crate) struct StderrLines {
    register: cb::Sender<Registration>,
    wake: Arc<OwnedFd>,
}

struct Registration {
    slot: usize,
    pipe: OwnedFd,
    /// Dropped when the pipe ends.
    done: cb::Sender<()>,
}

/// A pipe being read.
struct Pipe {
    slot: usize,
    fd: OwnedFd,
    /// The start of a line whose end has not come yet.
    partial: Vec<u8>,
    _done: cb::Sender<()>,
}

impl StderrLines {
    /// Starts the loop on a thread of its own; lines go to `events`.
    pub(crate) fn start(events: cb::Sender<Event>) -> io::Result<StderrLines> {
        let flags = rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK;
        let wake = Arc::new(rustix::event::eventfd(0, flags)?);
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(&epoll, wake.as_fd(), epoll::EventData::new_u64(WAKE), epoll::EventFlags::IN)?;
        let (register, registrations) = cb::unbounded();
        let thread_wake = Arc::clone(&wake);
        std::thread::Builder::new()
            .name("muster-stderr".into())
            .spawn(move || serve(&epoll, &thread_wake, &registrations, &events))?;
        Ok(StderrLines { register, wake })
    }

    /// Reads `stderr` of the worker in `slot` until it ends. The receiver disconnects then.
    pub(crate) fn watch(&self, slot: usize, stderr: impl Into<OwnedFd>) -> cb::Receiver<()> {
        let (done, ended) = cb::bounded(0);
        let pipe = stderr.into();
        let _ = rustix::fs::fcntl_setfl(&pipe, rustix::fs::OFlags::NONBLOCK);
        if self.register.send(Registration { slot, pipe, done }).is_ok() {
            ring(&self.wake);
        }
        ended
    }
}

impl Drop for StderrLines {
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

fn serve(
    epoll: &OwnedFd,
    wake: &OwnedFd,
    registrations: &cb::Receiver<Registration>,
    events: &cb::Sender<Event>,
) {
    let mut pipes: Vec<Option<Pipe>> = Vec::new();
    let mut open = 0usize;
    let mut handles_gone = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if handles_gone && open == 0 {
            return;
        }
        let mut ready: Vec<epoll::Event> = Vec::with_capacity(64);
        match epoll::wait(epoll, rustix::buffer::spare_capacity(&mut ready), None) {
            Ok(_) | Err(Errno::INTR) => {}
            // Only a bug makes epoll_wait fail; do not spin on it.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
        for event in &ready {
            let token = event.data.u64();
            if token != WAKE {
                let index = token as usize;
                if !read(pipes.get_mut(index).and_then(Option::as_mut), &mut buf, events) {
                    if let Some(pipe) = pipes.get_mut(index).and_then(Option::take) {
                        let _ = epoll::delete(epoll, &pipe.fd);
                        open -= 1;
                    }
                }
                continue;
            }
            let mut drained = [0u8; 8];
            let _ = rustix::io::read(wake, &mut drained);
            loop {
                match registrations.try_recv() {
                    Ok(Registration { slot, pipe, done }) => {
                        let index = pipes.iter().position(Option::is_none).unwrap_or(pipes.len());
                        let data = epoll::EventData::new_u64(index as u64);
                        if epoll::add(epoll, &pipe, data, epoll::EventFlags::IN).is_err() {
                            continue; // dropping `done` tells the slot there is nothing to wait for
                        }
                        let entry = Some(Pipe { slot, fd: pipe, partial: Vec::new(), _done: done });
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
}

/// Reads what the pipe has ready and passes on its complete lines; false at its end (the last,
/// unfinished line is passed on then).
fn read(pipe: Option<&mut Pipe>, buf: &mut [u8], events: &cb::Sender<Event>) -> bool {
    let Some(pipe) = pipe else { return true };
    loop {
        let n = match rustix::io::read(&pipe.fd, &mut *buf) {
            Ok(0) | Err(Errno::PIPE) => 0,
            Ok(n) => n,
            Err(Errno::AGAIN) => return true,
            Err(Errno::INTR) => continue,
            Err(_) => 0,
        };
        if n == 0 {
            let last = std::mem::take(&mut pipe.partial);
            if !last.is_empty() {
                let _ = events.send(Event::Stderr(pipe.slot, last));
            }
            return false;
        }
        pipe.partial.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(end) = pipe.partial[start..].iter().position(|&b| b == b'\n') {
            let line = pipe.partial[start..start + end].to_vec();
            let _ = events.send(Event::Stderr(pipe.slot, line));
            start += end + 1;
        }
        pipe.partial.drain(..start);
    }
}
