//! One client connection as the event loop sees it: its socket, what it sent that no job has
//! taken yet, what it has not read yet, and the clocks its timeouts run on.

use std::io::{ErrorKind, Read, Write};

use openflow::Fill;
use std::time::Instant;

use mio::event::Source;
use mio::{Interest, Registry, Token};

use super::MgmtHandler;
use crate::ofserver::session::Session;

/// A nonblocking unix or TCP stream.
pub(super) enum Stream {
    Unix(mio::net::UnixStream),
    Tcp(mio::net::TcpStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.register(r, t, i),
            Stream::Tcp(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.reregister(r, t, i),
            Stream::Tcp(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.deregister(r),
            Stream::Tcp(s) => s.deregister(r),
        }
    }
}

pub(super) enum Kind {
    Mgmt {
        handler: MgmtHandler,
        /// The request line has been handed to a worker: nothing more is read.
        requested: bool,
        /// How far `inbuf` has been searched for the newline.
        scanned: usize,
    },
    Of {
        /// `None` while a worker holds it.
        session: Option<Box<Session>>,
        /// The session has something to do even when the peer is quiet.
        wants_tick: bool,
        /// Since when a message has been left unfinished.
        partial_since: Option<Instant>,
        /// When the echo request probing a silent peer went out.
        probe_sent: Option<Instant>,
    },
}

pub(super) struct Conn {
    pub stream: Stream,
    pub listener: Token,
    pub kind: Kind,
    pub inbuf: Vec<u8>,
    pub out: Vec<u8>,
    pub out_pos: usize,
    /// A worker runs a job for this connection.
    pub busy: bool,
    /// Close once the output is sent and no job runs.
    pub closing: bool,
    /// The peer sent EOF.
    pub eof: bool,
    pub accepted: Instant,
    pub last_read: Instant,
    pub last_write: Instant,
}

/// What a read pass ended with.
pub(super) enum ReadEnd {
    /// Nothing more now (WouldBlock, EOF, or the buffer limit).
    Paused,
    /// The connection failed.
    Broken,
}

impl Conn {
    pub fn new(stream: Stream, listener: Token, kind: Kind, now: Instant) -> Conn {
        Conn {
            stream,
            listener,
            kind,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            busy: false,
            closing: false,
            eof: false,
            accepted: now,
            last_read: now,
            last_write: now,
        }
    }

    pub fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Reads until the socket is drained or `inbuf` holds `limit` bytes (the rest stays in the
    /// kernel: backpressure).
    /// The read routine is OpenFlow's own ([`openflow::read_into`], also under vswitchctl's
    /// client), for management lines as well.
    pub fn read_into_buffer(&mut self, limit: usize, now: Instant) -> ReadEnd {
        while !self.eof {
            match openflow::read_into(&mut self.stream, &mut self.inbuf, limit) {
                Ok(Fill::Read(_)) => self.last_read = now,
                Ok(Fill::Eof) => self.eof = true,
                Ok(Fill::WouldBlock | Fill::Full) => break,
                Err(_) => return ReadEnd::Broken,
            }
        }
        ReadEnd::Paused
    }

    /// Writes what the socket takes; `false` when the connection failed.
    pub fn flush(&mut self, now: Instant) -> bool {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out_pos += n;
                    self.last_write = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.out.clear();
        self.out_pos = 0;
        true
    }

    /// Queues output, keeping the buffer's allocation when it is empty.
    pub fn queue(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            self.last_write = Instant::now();
        }
        self.out.extend_from_slice(bytes);
    }
}
