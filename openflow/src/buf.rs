//! Bounds-checked big-endian reading and writing helpers.
//!
//! A [`Reader`] knows which error to raise when its input runs out, so each layer (message,
//! match, action, instruction) reports truncation with its own OpenFlow code.

use super::error::{ErrorCode, OfError};

/// Cursor over a byte slice; every read checks bounds.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    short: ErrorCode,
}

impl<'a> Reader<'a> {
    /// `short` is the error code reported when a read runs past the end.
    pub fn new(buf: &'a [u8], short: ErrorCode) -> Reader<'a> {
        Reader { buf, pos: 0, short }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], OfError> {
        if self.remaining() < n {
            return Err(OfError::new(
                self.short,
                format!("{what}: need {n} bytes, only {} left", self.remaining()),
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn skip(&mut self, n: usize, what: &str) -> Result<(), OfError> {
        self.bytes(n, what).map(|_| ())
    }

    pub fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], OfError> {
        let b = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, OfError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16, OfError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, OfError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, OfError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Reads the rest of the input.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }
}

/// Big-endian appends onto a `Vec<u8>`.
pub trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_zeros(&mut self, n: usize);
    /// Zero-pads so that `len() - start` is a multiple of 8.
    fn pad_to_8_from(&mut self, start: usize);
    /// Writes `v` as a big-endian u16 at `at` (a length placeholder).
    fn patch_u16(&mut self, at: usize, v: u16);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
    fn pad_to_8_from(&mut self, start: usize) {
        let len = self.len() - start;
        self.put_zeros(len.next_multiple_of(8) - len);
    }
    fn patch_u16(&mut self, at: usize, v: u16) {
        self[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// Length of `len` rounded up to 8, as OpenFlow pads TLVs.
pub fn padded8(len: usize) -> usize {
    len.next_multiple_of(8)
}

/// A fixed-size, NUL-padded string field (port names, descriptions), kept as raw bytes so that
/// decode → encode is exact.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedStr<const N: usize>(pub [u8; N]);

impl<const N: usize> FixedStr<N> {
    /// `s` truncated to leave room for a terminating NUL.
    pub fn new(s: &str) -> Self {
        let mut out = [0u8; N];
        let b = s.as_bytes();
        let take = b.len().min(N.saturating_sub(1));
        out[..take].copy_from_slice(&b[..take]);
        FixedStr(out)
    }

    /// The text up to the first NUL (lossy UTF-8).
    pub fn text(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(N);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        FixedStr([0u8; N])
    }
}

impl<const N: usize> core::fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.text())
    }
}
