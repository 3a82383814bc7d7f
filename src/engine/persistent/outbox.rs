//! A persistent worker's stdin, written without blocking: records wait in a buffer for as
//! long as the pipe is full, so one worker that stops reading never stalls the loop that
//! feeds it and others.

use std::io;
use std::os::fd::OwnedFd;

use rustix::io::Errno;

use super::framing::Framing;

/// A worker's stdin, written without blocking: what the pipe cannot take yet waits here.
pub(super) struct Outbox {
    /// The pipe (the loop registers it with epoll to hear when a full one has room).
    pub(super) fd: OwnedFd,
    buf: Vec<u8>,
    /// How much of `buf` is written.
    written: usize,
}

impl Outbox {
    pub(super) fn new(fd: OwnedFd) -> Outbox {
        let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK);
        Outbox { fd, buf: Vec::new(), written: 0 }
    }

    pub(super) fn push(&mut self, record: &[u8], framing: Framing) {
        framing.write(&mut self.buf, record);
    }

    /// Writes what the pipe takes: true once everything is written, false when the pipe is
    /// full (epoll tells when it has room); an error when the worker's end is gone.
    pub(super) fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.buf.len() {
            match rustix::io::write(&self.fd, &self.buf[self.written..]) {
                Ok(n) => self.written += n,
                Err(Errno::AGAIN) => {
                    if self.written >= self.buf.len() / 2 {
                        self.buf.drain(..self.written);
                        self.written = 0;
                    }
                    return Ok(false);
                }
                Err(Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        self.buf.clear();
        self.written = 0;
        Ok(true)
    }
}
