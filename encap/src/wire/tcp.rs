//! TCP header (RFC 9293); options as raw bytes ([`Packet::options`]) and parsed one by one
//! ([`TcpOption::parse`], [`options`]).

use core::net::Ipv4Addr;

use super::{IpProtocol, WireError, be16, be32, put16, put32};
use crate::checksum;

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const OFF_FLAGS: Range<usize> = 12..14;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of the header without options.
pub const MIN_HEADER_LEN: usize = field::URGENT.end;
pub const SRC_PORT_OFFSET: usize = field::SRC_PORT.start;
pub const DST_PORT_OFFSET: usize = field::DST_PORT.start;
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;
pub const OFF_FLAGS_OFFSET: usize = field::OFF_FLAGS.start;

/// TCP flag bits, as in the low 12 bits of the offset/flags word (and `FlowKey::tcp_flags`).
pub mod flags {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    pub const NS: u16 = 0x100;
}

/// A view of a TCP segment.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` when shorter than 20 bytes or than the data offset; `Malformed` when the
    /// data offset is below 5 words.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len() as usize;
        if header_len < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len < header_len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::OFF_FLAGS.start] >> 4) * 4
    }

    /// The 12 flag bits (see [`flags`]).
    pub fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OFF_FLAGS.start) & 0x0fff
    }

    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW.start)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT.start)
    }

    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len() as usize]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len() as usize..]
    }

    /// True when the checksum over the whole buffer (the segment) is right over IPv4.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let seg = self.buffer.as_ref();
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::Tcp.into(), seg.len() as u16);
        checksum::fold(checksum::sum(pseudo, seg)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT.start, value);
    }

    pub fn set_dst_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT.start, value);
    }

    pub fn set_seq_number(&mut self, value: u32) {
        put32(self.buffer.as_mut(), field::SEQ_NUM.start, value);
    }

    pub fn set_ack_number(&mut self, value: u32) {
        put32(self.buffer.as_mut(), field::ACK_NUM.start, value);
    }

    /// Sets the header length in bytes (multiple of 4) and the 12 flag bits.
    pub fn set_header_len_and_flags(&mut self, header_len: u8, flags: u16) {
        let v = (((header_len / 4) as u16) << 12) | (flags & 0x0fff);
        put16(self.buffer.as_mut(), field::OFF_FLAGS.start, v);
    }

    pub fn set_window_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::WINDOW.start, value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    pub fn set_urgent_at(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::URGENT.start, value);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len() as usize;
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..end]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len() as usize;
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes the checksum over the whole buffer (the segment) over IPv4.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::l4_v4(src, dst, IpProtocol::Tcp.into(), self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// The fixed TCP header as plain values (no options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: u16,
    pub window_len: u16,
}

impl TcpRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<TcpRepr, WireError> {
        packet.check_len()?;
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes a 20-byte header; checksum left 0 (fill it once the payload is in place).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len_and_flags(MIN_HEADER_LEN as u8, self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(0);
    }
}

/// Option kinds (RFC 9293 section 3.2, RFC 7323, RFC 2018).
pub mod option_kind {
    pub const END_OF_LIST: u8 = 0;
    pub const NO_OPERATION: u8 = 1;
    pub const MAX_SEGMENT_SIZE: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// Kind 0: no option follows (the rest of the option space is padding).
    EndOfList,
    /// Kind 1: padding between options.
    NoOperation,
    /// Kind 2, length 4.
    MaxSegmentSize(u16),
    /// Kind 3, length 3: the shift count as sent (RFC 7323 caps its use at 14; not capped here).
    WindowScale(u8),
    /// Kind 4, length 2.
    SackPermitted,
    /// Kind 5: the SACK blocks, raw (pairs of 32-bit sequence numbers).
    Sack(&'a [u8]),
    /// Kind 8, length 10: TSval, TSecr.
    Timestamp { tsval: u32, tsecr: u32 },
    /// Any other kind, or a known kind with a length other than its own: the data bytes.
    Unknown { kind: u8, data: &'a [u8] },
}

impl<'a> TcpOption<'a> {
    /// Parses the option at the start of `buffer`; returns the bytes after it and the option.
    /// `Truncated`: the buffer ends inside the option (or before its length byte);
    /// `Malformed`: a length below 2.
    pub fn parse(buffer: &'a [u8]) -> Result<(&'a [u8], TcpOption<'a>), WireError> {
        let (&kind, rest) = buffer.split_first().ok_or(WireError::Truncated)?;
        match kind {
            option_kind::END_OF_LIST => return Ok((rest, TcpOption::EndOfList)),
            option_kind::NO_OPERATION => return Ok((rest, TcpOption::NoOperation)),
            _ => {}
        }
        let &len = rest.first().ok_or(WireError::Truncated)?;
        let len = len as usize;
        if len < 2 {
            return Err(WireError::Malformed);
        }
        if buffer.len() < len {
            return Err(WireError::Truncated);
        }
        let data = &buffer[2..len];
        let opt = match (kind, data.len()) {
            (option_kind::MAX_SEGMENT_SIZE, 2) => TcpOption::MaxSegmentSize(be16(data, 0)),
            (option_kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
            (option_kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (option_kind::SACK, _) => TcpOption::Sack(data),
            (option_kind::TIMESTAMP, 8) => TcpOption::Timestamp {
                tsval: be32(data, 0),
                tsecr: be32(data, 4),
            },
            _ => TcpOption::Unknown { kind, data },
        };
        Ok((&buffer[len..], opt))
    }

    /// Bytes the option takes on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack(d) | TcpOption::Unknown { data: d, .. } => 2 + d.len(),
            TcpOption::Timestamp { .. } => 10,
        }
    }

    /// Writes the option at the start of `buffer` and returns the bytes after it.
    /// Panics when `buffer` is shorter than [`TcpOption::buffer_len`] (construction, not the
    /// receive path).
    pub fn emit<'b>(&self, buffer: &'b mut [u8]) -> &'b mut [u8] {
        let len = self.buffer_len();
        let (head, rest) = buffer.split_at_mut(len);
        let mut tlv = |kind: u8, data: &[u8]| {
            head[0] = kind;
            head[1] = len as u8;
            head[2..].copy_from_slice(data);
        };
        match *self {
            TcpOption::EndOfList => head[0] = option_kind::END_OF_LIST,
            TcpOption::NoOperation => head[0] = option_kind::NO_OPERATION,
            TcpOption::MaxSegmentSize(mss) => {
                tlv(option_kind::MAX_SEGMENT_SIZE, &mss.to_be_bytes())
            }
            TcpOption::WindowScale(s) => tlv(option_kind::WINDOW_SCALE, &[s]),
            TcpOption::SackPermitted => tlv(option_kind::SACK_PERMITTED, &[]),
            TcpOption::Sack(d) => tlv(option_kind::SACK, d),
            TcpOption::Timestamp { tsval, tsecr } => {
                let mut d = [0u8; 8];
                d[..4].copy_from_slice(&tsval.to_be_bytes());
                d[4..].copy_from_slice(&tsecr.to_be_bytes());
                tlv(option_kind::TIMESTAMP, &d)
            }
            TcpOption::Unknown { kind, data } => tlv(kind, data),
        }
        rest
    }
}

/// Iterates over the options in `buffer` (a header's [`Packet::options`]). Stops after
/// `EndOfList` or the first error (which it yields), never panics, allocates nothing.
pub fn options(buffer: &[u8]) -> TcpOptions<'_> {
    TcpOptions { rest: buffer }
}

/// The iterator of [`options`].
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((_, TcpOption::EndOfList)) => {
                self.rest = &[];
                Some(Ok(TcpOption::EndOfList))
            }
            Ok((rest, opt)) => {
                self.rest = rest;
                Some(Ok(opt))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SEGMENT_BYTES: [u8; 20] = [
        0x30, 0x39, // source port 12345
        0x00, 0x50, // destination port 80
        0x00, 0x00, 0x00, 0x01, // sequence number 1
        0x00, 0x00, 0x00, 0x00, // acknowledgment number 0
        0x50, 0x02, // data offset 5 words, flags SYN
        0xff, 0xff, // window 65535
        0x6b, 0x56, // checksum (pseudo-header 10.0.0.1 -> 10.0.0.2)
        0x00, 0x00, // urgent pointer
    ];
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn repr() -> TcpRepr {
        TcpRepr {
            src_port: 12345,
            dst_port: 80,
            seq_number: 1,
            ack_number: 0,
            flags: flags::SYN,
            window_len: 0xffff,
        }
    }

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&SEGMENT_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 12345);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 1);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.flags(), flags::SYN);
        assert_eq!(p.checksum(), 0x6b56);
        assert!(p.options().is_empty());
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum_v4(SRC, DST));
        assert_eq!(TcpRepr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0u8; 20];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        repr().emit(&mut p);
        p.fill_checksum_v4(SRC, DST);
        assert_eq!(bytes, SEGMENT_BYTES);
    }

    #[test]
    fn options_and_bad_offsets() {
        let mut with_opts = [0u8; 24];
        with_opts[..20].copy_from_slice(&SEGMENT_BYTES);
        with_opts[12] = 0x60; // 6 words
        with_opts[20..].copy_from_slice(&[0x02, 0x04, 0x05, 0xb4]); // MSS 1460
        let p = Packet::new_checked(&with_opts[..]).unwrap();
        assert_eq!(p.options(), &[0x02, 0x04, 0x05, 0xb4]);
        assert_eq!(
            Packet::new_checked(&with_opts[..23]).unwrap_err(),
            WireError::Truncated
        );
        let mut low = SEGMENT_BYTES;
        low[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&low[..]).unwrap_err(),
            WireError::Malformed
        );
        assert_eq!(
            Packet::new_checked(&SEGMENT_BYTES[..19]).unwrap_err(),
            WireError::Truncated
        );
    }

    /// A SYN's options as Linux sends them: MSS 1460, SACK permitted, timestamps, NOP,
    /// window scale 7.
    static SYN_OPTIONS: [u8; 20] = [
        0x02, 0x04, 0x05, 0xb4, // MSS, len 4, 1460
        0x04, 0x02, // SACK permitted, len 2
        0x08, 0x0a, // timestamp, len 10
        0x00, 0x01, 0x02, 0x03, //   TSval 0x00010203
        0x00, 0x00, 0x00, 0x00, //   TSecr 0
        0x01, // NOP
        0x03, 0x03, 0x07, // window scale, len 3, shift 7
    ];

    fn syn_options() -> [TcpOption<'static>; 5] {
        [
            TcpOption::MaxSegmentSize(1460),
            TcpOption::SackPermitted,
            TcpOption::Timestamp {
                tsval: 0x0001_0203,
                tsecr: 0,
            },
            TcpOption::NoOperation,
            TcpOption::WindowScale(7),
        ]
    }

    #[test]
    fn test_deconstruct_options() {
        let got: Vec<_> = options(&SYN_OPTIONS).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, syn_options());
    }

    #[test]
    fn test_construct_options() {
        let mut bytes = [0xffu8; 20];
        let mut rest = &mut bytes[..];
        for o in syn_options() {
            rest = o.emit(rest);
        }
        assert!(rest.is_empty());
        assert_eq!(bytes, SYN_OPTIONS);
    }

    #[test]
    fn options_end_of_list_unknown_and_faults() {
        // EOL stops the walk: what follows is padding.
        let eol = [0x01, 0x00, 0x03, 0x03, 0x07];
        let got: Vec<_> = options(&eol).collect();
        assert_eq!(got, [Ok(TcpOption::NoOperation), Ok(TcpOption::EndOfList)]);
        // Unknown kind 30 with 2 data bytes; MSS with a wrong length is Unknown too.
        let odd = [30, 4, 0xaa, 0xbb, 0x02, 0x03, 0x05];
        let got: Vec<_> = options(&odd).collect();
        assert_eq!(
            got,
            [
                Ok(TcpOption::Unknown {
                    kind: 30,
                    data: &[0xaa, 0xbb]
                }),
                Ok(TcpOption::Unknown {
                    kind: 2,
                    data: &[0x05]
                })
            ]
        );
        // Length below 2, length past the end, no length byte.
        assert_eq!(
            options(&[0x03, 0x01, 0x07]).collect::<Vec<_>>(),
            [Err(WireError::Malformed)]
        );
        assert_eq!(
            options(&[0x03, 0x03]).collect::<Vec<_>>(),
            [Err(WireError::Truncated)]
        );
        assert_eq!(
            options(&[0x01, 0x02]).collect::<Vec<_>>(),
            [Ok(TcpOption::NoOperation), Err(WireError::Truncated)]
        );
        // Every prefix of the SYN options parses without a panic.
        for n in 0..SYN_OPTIONS.len() {
            let _ = options(&SYN_OPTIONS[..n]).count();
        }
    }
}
