//! `ofp_header`, message type numbers, the stream [`Framer`] and [`read_into`], the one read
//! routine of every OpenFlow stream (the daemon's event loop and vswitchctl's client).

use std::io::{ErrorKind, Read};

use super::error::{ErrorCode, OfError, err};

/// OpenFlow 1.3 wire version.
pub const OFP13_VERSION: u8 = 0x04;
/// Size of `ofp_header`.
pub const HEADER_LEN: usize = 8;
/// Largest message the 16-bit length field can describe.
pub const MAX_MSG_LEN: usize = 65535;

/// `ofp_type` values of OpenFlow 1.3.
pub mod msg_type {
    pub const HELLO: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ECHO_REQUEST: u8 = 2;
    pub const ECHO_REPLY: u8 = 3;
    pub const EXPERIMENTER: u8 = 4;
    pub const FEATURES_REQUEST: u8 = 5;
    pub const FEATURES_REPLY: u8 = 6;
    pub const GET_CONFIG_REQUEST: u8 = 7;
    pub const GET_CONFIG_REPLY: u8 = 8;
    pub const SET_CONFIG: u8 = 9;
    pub const PACKET_IN: u8 = 10;
    pub const FLOW_REMOVED: u8 = 11;
    pub const PORT_STATUS: u8 = 12;
    pub const PACKET_OUT: u8 = 13;
    pub const FLOW_MOD: u8 = 14;
    pub const GROUP_MOD: u8 = 15;
    pub const PORT_MOD: u8 = 16;
    pub const TABLE_MOD: u8 = 17;
    pub const MULTIPART_REQUEST: u8 = 18;
    pub const MULTIPART_REPLY: u8 = 19;
    pub const BARRIER_REQUEST: u8 = 20;
    pub const BARRIER_REPLY: u8 = 21;
    pub const QUEUE_GET_CONFIG_REQUEST: u8 = 22;
    pub const QUEUE_GET_CONFIG_REPLY: u8 = 23;
    pub const ROLE_REQUEST: u8 = 24;
    pub const ROLE_REPLY: u8 = 25;
    pub const GET_ASYNC_REQUEST: u8 = 26;
    pub const GET_ASYNC_REPLY: u8 = 27;
    pub const SET_ASYNC: u8 = 28;
    pub const METER_MOD: u8 = 29;
}

/// A parsed `ofp_header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub msg_type: u8,
    pub length: u16,
    pub xid: u32,
}

impl Header {
    /// Parses the first 8 bytes; checks only that they exist and that `length >= 8`.
    pub fn parse(buf: &[u8]) -> Result<Header, OfError> {
        if buf.len() < HEADER_LEN {
            return err(
                ErrorCode::BadRequestBadLen,
                format!(
                    "message of {} bytes is shorter than the 8-byte header",
                    buf.len()
                ),
            );
        }
        let h = Header {
            version: buf[0],
            msg_type: buf[1],
            length: u16::from_be_bytes([buf[2], buf[3]]),
            xid: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        };
        if (h.length as usize) < HEADER_LEN {
            return err(
                ErrorCode::BadRequestBadLen,
                format!("header length field {} is below 8", h.length),
            );
        }
        Ok(h)
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(self.msg_type);
        out.extend_from_slice(&self.length.to_be_bytes());
        out.extend_from_slice(&self.xid.to_be_bytes());
    }
}

/// Errors of the stream splitter: the connection cannot continue after one of these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The peer announced a message shorter than its own header.
    #[error("peer sent a header with length {0} (below the 8-byte minimum); closing")]
    LengthBelowHeader(u16),
}

/// Splits a byte stream into whole OpenFlow messages.
///
/// Feed it whatever `read()` returned; [`Framer::next_message`] yields each complete message
/// (header included) in order. The 16-bit length field caps messages at 65535 bytes, so a
/// length above that cannot be expressed; a length below 8 is rejected.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        // Drop consumed bytes before growing, so the buffer stays bounded by one message.
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > MAX_MSG_LEN {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Reads once from `r` straight into the buffer (at most one maximal message's worth):
    /// [`Fill::Eof`] when the peer closed, [`Fill::WouldBlock`] from a nonblocking stream
    /// with nothing to read. A blocking stream waits for data.
    pub fn read_from<R: Read>(&mut self, r: &mut R) -> std::io::Result<Fill> {
        self.push(&[]);
        let limit = self.buf.len() + MAX_MSG_LEN + 1;
        read_into(r, &mut self.buf, limit)
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, FramingError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([avail[2], avail[3]]);
        if (len as usize) < HEADER_LEN {
            return Err(FramingError::LengthBelowHeader(len));
        }
        let len = len as usize;
        if avail.len() < len {
            return Ok(None);
        }
        let at = self.start;
        self.start += len;
        Ok(Some(&self.buf[at..at + len]))
    }
}

/// How one [`read_into`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// This many bytes were appended.
    Read(usize),
    /// The peer closed its side.
    Eof,
    /// A nonblocking stream has nothing now.
    WouldBlock,
    /// The buffer already holds `limit` bytes: nothing was read (backpressure).
    Full,
}

/// Bytes [`read_into`] asks the kernel for at once.
const READ_CHUNK: usize = 16 * 1024;

/// Appends what one `read` of `r` returns to `buf`, keeping `buf` at most `limit` bytes long;
/// an interrupted read is retried. The one read routine of every OpenFlow stream: the
/// daemon's nonblocking event loop calls it until [`Fill::WouldBlock`], vswitchctl's blocking
/// client (through [`Framer::read_from`]) until a message is complete.
pub fn read_into<R: Read>(r: &mut R, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<Fill> {
    let start = buf.len();
    if start >= limit {
        return Ok(Fill::Full);
    }
    let room = (limit - start).min(READ_CHUNK);
    buf.resize(start + room, 0);
    let got = loop {
        match r.read(&mut buf[start..]) {
            Ok(n) => break Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    match got {
        Ok(0) => {
            buf.truncate(start);
            Ok(Fill::Eof)
        }
        Ok(n) => {
            buf.truncate(start + n);
            Ok(Fill::Read(n))
        }
        Err(e) => {
            buf.truncate(start);
            if e.kind() == ErrorKind::WouldBlock {
                Ok(Fill::WouldBlock)
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Hands out its script one step per read.
    struct Script(Vec<io::Result<Vec<u8>>>);

    impl Read for Script {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            match self.0.remove(0) {
                Ok(mut data) => {
                    if data.len() > out.len() {
                        let rest = data.split_off(out.len());
                        self.0.insert(0, Ok(rest));
                    }
                    out[..data.len()].copy_from_slice(&data);
                    Ok(data.len())
                }
                Err(e) => Err(e),
            }
        }
    }

    fn kind(k: ErrorKind) -> io::Result<Vec<u8>> {
        Err(io::Error::from(k))
    }

    #[test]
    fn read_into_retries_interrupts_and_reports_would_block_eof_and_full() {
        let mut r = Script(vec![
            kind(ErrorKind::Interrupted),
            Ok(vec![1, 2, 3]),
            kind(ErrorKind::WouldBlock),
            Ok(vec![4, 5, 6, 7]),
            kind(ErrorKind::ConnectionReset),
        ]);
        let mut buf = vec![9];
        assert_eq!(read_into(&mut r, &mut buf, 100).unwrap(), Fill::Read(3));
        assert_eq!(read_into(&mut r, &mut buf, 100).unwrap(), Fill::WouldBlock);
        // The limit caps one read; the rest stays in the stream.
        assert_eq!(read_into(&mut r, &mut buf, 6).unwrap(), Fill::Read(2));
        assert_eq!(buf, [9, 1, 2, 3, 4, 5]);
        assert_eq!(read_into(&mut r, &mut buf, 6).unwrap(), Fill::Full);
        assert_eq!(read_into(&mut r, &mut buf, 100).unwrap(), Fill::Read(2));
        assert_eq!(
            read_into(&mut r, &mut buf, 100).unwrap_err().kind(),
            ErrorKind::ConnectionReset
        );
        assert_eq!(read_into(&mut r, &mut buf, 100).unwrap(), Fill::Eof);
        assert_eq!(buf, [9, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn framer_reads_messages_split_across_reads() {
        // An echo request (12 bytes) in three pieces, then a hello (8 bytes) with the next.
        let echo = [4, 2, 0, 12, 0, 0, 0, 7, 0xaa, 0xbb, 0xcc, 0xdd];
        let hello = [4, 0, 0, 8, 0, 0, 0, 8];
        let mut r = Script(vec![
            Ok(echo[..3].to_vec()),
            Ok(echo[3..9].to_vec()),
            Ok([&echo[9..], &hello[..]].concat()),
        ]);
        let mut f = Framer::new();
        let mut got = Vec::new();
        loop {
            while let Some(m) = f.next_message().unwrap() {
                got.push(m.to_vec());
            }
            if f.read_from(&mut r).unwrap() == Fill::Eof {
                break;
            }
        }
        assert_eq!(got, vec![echo.to_vec(), hello.to_vec()]);
        assert_eq!(f.buffered(), 0);
    }
}
