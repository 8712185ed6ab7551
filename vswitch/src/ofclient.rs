//! The OpenFlow 1.3 client side of `vswitchctl`: the `ovs-ofctl` commands, spoken over a
//! bridge's OpenFlow socket (`<rundir>/<bridge>.mgmt`, `unix:PATH` or `tcp:IP:PORT`).
//!
//! - [`Target`] names the switch; [`Conn`] is one negotiated connection that sends requests
//!   (pipelined, from a writer thread so a switch answering errors never deadlocks us) and
//!   collects replies up to a barrier;
//! - `commands` implements each command, `print` formats replies as `ovs-ofctl -O OpenFlow13`
//!   does, `packet` prints a packet-in's or packet-out's frame as ovs-ofctl does, `errors`
//!   decodes `OFPT_ERROR` the way ovs-ofctl prints it.

pub mod commands;
pub mod errors;
pub mod json;
pub mod packet;
pub mod print;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openflow::{
    Fill, Framer, Header, Hello, Message, MultipartReply, MultipartRequest, decode, encode_into,
    negotiate,
};

pub use commands::{Command, Options, Outcome, run};

/// Errors of the OpenFlow client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error(
        "{target}: cannot connect ({source}); is vswitchd running with this --rundir, and does the bridge exist?"
    )]
    Connect {
        target: String,
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The switch closed the connection before answering.
    #[error("connection closed by the switch")]
    Closed,
    /// The switch sent bytes that are not OpenFlow 1.3.
    #[error("the switch sent a malformed message: {0}")]
    Protocol(String),
    /// The switch answered with OFPT_ERROR; the text is ovs-ofctl's rendering.
    #[error("{0}")]
    Refused(String),
    /// Bad command-line input (flow text, file, arguments).
    #[error("{0}")]
    Usage(String),
    /// Our standard output was closed (the reader of a pipe went away).
    #[error("standard output closed")]
    OutputClosed,
}

/// Where the switch is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Target {
    /// `unix:PATH`, `tcp:IP:PORT`, a socket path, or a bridge name (`<rundir>/<br>.mgmt`).
    pub fn parse(s: &str, rundir: &Path) -> Result<Target, ClientError> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Target::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            let addr = a
                .parse()
                .map_err(|e| ClientError::Usage(format!("{s}: expected tcp:IP:PORT ({e})")))?;
            return Ok(Target::Tcp(addr));
        }
        if s.contains('/') {
            return Ok(Target::Unix(PathBuf::from(s)));
        }
        Ok(Target::Unix(crate::rundir::bridge_socket(rundir, s)))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }
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
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// A received message with its header.
pub struct Received {
    pub header: Header,
    pub msg: Message,
}

/// Bytes buffered by a [`Sender`] before a write.
const SEND_CHUNK: usize = 64 * 1024;

/// What [`Conn::transact_with`] saw.
pub struct Transaction {
    /// Every message the switch sent before the barrier reply (errors, mostly).
    pub replies: Vec<Received>,
    /// What was sent, with xids (to render errors with their request).
    pub sent: Vec<(Message, u32)>,
    /// The producer's own result (a parse error stops it early).
    pub produced: Result<(), ClientError>,
}

/// The writing end of a transaction.
pub struct Sender {
    stream: Stream,
    buf: Vec<u8>,
    next_xid: u32,
    bundle: Option<(u32, u16)>,
    sent: Vec<(Message, u32)>,
}

impl Sender {
    /// Queues one request (inside the bundle, if any).
    pub fn send(&mut self, msg: Message) -> Result<(), ClientError> {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1);
        let (msg, encoded) = match self.bundle {
            Some((bundle_id, flags)) => {
                // Wrapped for encoding and unwrapped again: no copy of the request.
                let add = Message::BundleAdd(openflow::BundleAdd {
                    bundle_id,
                    flags,
                    inner_xid: xid,
                    inner: Box::new(msg),
                });
                let encoded = encode_into(&add, xid, &mut self.buf);
                let msg = match add {
                    Message::BundleAdd(a) => *a.inner,
                    other => other,
                };
                (msg, encoded)
            }
            None => {
                let encoded = encode_into(&msg, xid, &mut self.buf);
                (msg, encoded)
            }
        };
        encoded.map_err(|e| ClientError::Usage(e.detail))?;
        self.sent.push((msg, xid));
        if self.buf.len() >= SEND_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ClientError> {
        self.stream.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// One negotiated OpenFlow 1.3 connection.
pub struct Conn {
    stream: Stream,
    framer: Framer,
    next_xid: u32,
}

/// How long to wait for any reply (a 100k-flow commit takes seconds).
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

impl Conn {
    /// Connects and exchanges HELLO (ours carries xid 1, as ovs-ofctl's does).
    pub fn open(target: &Target) -> Result<Conn, ClientError> {
        let connect_err = |source| ClientError::Connect {
            target: target.to_string(),
            source,
        };
        let stream = match target {
            Target::Unix(p) => Stream::Unix(UnixStream::connect(p).map_err(connect_err)?),
            Target::Tcp(a) => {
                let s =
                    TcpStream::connect_timeout(a, Duration::from_secs(10)).map_err(connect_err)?;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
        };
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let mut conn = Conn {
            stream,
            framer: Framer::new(),
            next_xid: 1,
        };
        let xid = conn.alloc_xid();
        conn.send_now(&Message::Hello(Hello::ours()), xid)?;
        let r = conn.recv()?;
        match &r.msg {
            Message::Hello(h) => {
                negotiate(r.header.version, h).map_err(|_| {
                    ClientError::Protocol(
                        "version negotiation failed (the switch does not speak OpenFlow 1.3)"
                            .into(),
                    )
                })?;
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected HELLO, got message type {}",
                    other.msg_type()
                )));
            }
        }
        Ok(conn)
    }

    /// Makes the next allocated xid `xid` (to number requests as ovs-ofctl does).
    pub fn set_next_xid(&mut self, xid: u32) {
        self.next_xid = xid;
    }

    pub fn alloc_xid(&mut self) -> u32 {
        let x = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1);
        x
    }

    fn send_now(&mut self, msg: &Message, xid: u32) -> Result<(), ClientError> {
        let mut out = Vec::new();
        encode_into(msg, xid, &mut out).map_err(|e| ClientError::Usage(e.detail))?;
        self.stream.write_all(&out)?;
        Ok(())
    }

    /// The next message from the switch (echo requests are answered on the way).
    pub fn recv(&mut self) -> Result<Received, ClientError> {
        loop {
            match self.framer.next_message() {
                Ok(Some(raw)) => {
                    let (header, msg) =
                        decode(raw).map_err(|e| ClientError::Protocol(e.to_string()))?;
                    if let Message::EchoRequest(data) = msg {
                        self.send_now(&Message::EchoReply(data), header.xid)?;
                        continue;
                    }
                    return Ok(Received { header, msg });
                }
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            match self.framer.read_from(&mut self.stream)? {
                Fill::Eof => return Err(ClientError::Closed),
                // The stream blocks with a read timeout: nothing within it.
                Fill::WouldBlock => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no reply from the switch within {REPLY_TIMEOUT:?}"),
                    )
                    .into());
                }
                Fill::Read(_) | Fill::Full => {}
            }
        }
    }

    /// Runs `produce` on a writer thread, which sends requests through a [`Sender`] (numbered
    /// from this connection's next xid, wrapped in `bundle` when given) and then a barrier,
    /// while this thread collects every reply up to the barrier's. Producing (parsing a file)
    /// thus overlaps with the switch applying what was already sent, and a switch answering
    /// errors never blocks our writes.
    pub fn transact_with<F>(
        &mut self,
        bundle: Option<(u32, u16)>,
        produce: F,
    ) -> Result<Transaction, ClientError>
    where
        F: FnOnce(&mut Sender) -> Result<(), ClientError> + Send + 'static,
    {
        let mut sender = Sender {
            stream: self.stream.try_clone()?,
            buf: Vec::with_capacity(2 * SEND_CHUNK),
            next_xid: self.next_xid,
            bundle,
            sent: Vec::new(),
        };
        let handle = std::thread::spawn(move || {
            let produced = produce(&mut sender);
            let barrier_xid = sender.next_xid;
            sender.next_xid = sender.next_xid.wrapping_add(1);
            let finished = encode_into(&Message::BarrierRequest, barrier_xid, &mut sender.buf)
                .map_err(|e| ClientError::Usage(e.detail))
                .and_then(|()| sender.flush());
            (produced, finished, sender.sent, sender.next_xid)
        });
        let mut replies = Vec::new();
        // Only one barrier is in flight on this connection: its reply ends the transaction.
        let read = loop {
            match self.recv() {
                Ok(r) if matches!(r.msg, Message::BarrierReply) => break Ok(()),
                Ok(r) => replies.push(r),
                Err(e) => break Err(e),
            }
        };
        let (produced, finished, sent, next_xid) = handle
            .join()
            .map_err(|_| ClientError::Protocol("writer thread panicked".into()))?;
        self.next_xid = next_xid;
        finished?;
        read?;
        Ok(Transaction {
            replies,
            sent,
            produced,
        })
    }

    /// One multipart request; all reply parts, in order. An OFPT_ERROR comes back as
    /// [`ClientError::Refused`].
    pub fn multipart(
        &mut self,
        body: MultipartRequest,
    ) -> Result<(u32, Vec<MultipartReply>), ClientError> {
        let xid = self.alloc_xid();
        let req = Message::MultipartRequest { flags: 0, body };
        self.send_now(&req, xid)?;
        let mut parts = Vec::new();
        loop {
            let r = self.recv()?;
            if r.header.xid != xid {
                continue;
            }
            match r.msg {
                Message::MultipartReply { flags, body } => {
                    parts.push(body);
                    if flags & openflow::multipart::MORE == 0 {
                        return Ok((xid, parts));
                    }
                }
                Message::Error(e) => {
                    return Err(ClientError::Refused(errors::format_error(
                        &e,
                        xid,
                        Some(&req),
                    )));
                }
                _ => {}
            }
        }
    }

    /// Sends a message that has no reply.
    pub fn send_one(&mut self, msg: &Message) -> Result<(), ClientError> {
        let xid = self.alloc_xid();
        self.send_now(msg, xid)
    }

    /// A request with exactly one reply of the same xid.
    pub fn request(&mut self, msg: &Message) -> Result<Received, ClientError> {
        let xid = self.alloc_xid();
        self.send_now(msg, xid)?;
        loop {
            let r = self.recv()?;
            if r.header.xid != xid {
                continue;
            }
            if let Message::Error(e) = &r.msg {
                return Err(ClientError::Refused(errors::format_error(
                    e,
                    xid,
                    Some(msg),
                )));
            }
            return Ok(r);
        }
    }
}
