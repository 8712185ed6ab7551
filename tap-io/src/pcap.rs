//! `PcapPort`: wraps any port and writes every frame it receives or sends to a pcap file.

use std::io::{self, Write};
use std::os::fd::RawFd;
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapPacket, PcapWriter};
use thiserror::Error;

use crate::buf::Batch;
use crate::port::{Port, PortStats, TxReport};

/// Errors of the pcap wrapper.
#[derive(Debug, Error)]
pub enum PcapError {
    /// The pcap header could not be written.
    #[error("cannot start pcap output: {0}")]
    Start(#[from] pcap_file::PcapError),
}

/// Which frames a [`PcapPort`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    Rx,
    Tx,
    Both,
}

/// A port that records its traffic. Write errors stop the capture (counted in
/// [`PcapPort::write_errors`]) but never the traffic.
pub struct PcapPort<P: Port, W: Write> {
    inner: P,
    writer: Option<PcapWriter<W>>,
    capture: Capture,
    write_errors: u64,
}

impl<P: Port, W: Write> PcapPort<P, W> {
    /// Wraps `inner`, writing a pcap header to `out` now.
    pub fn new(inner: P, out: W, capture: Capture) -> Result<Self, PcapError> {
        Ok(Self {
            inner,
            writer: Some(PcapWriter::new(out)?),
            capture,
            write_errors: 0,
        })
    }

    /// The wrapped port.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The wrapped port, mutably.
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    /// Frames that could not be written.
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }

    /// Unwraps into the port and the output (flushed).
    pub fn into_parts(self) -> (P, Option<W>) {
        let w = self.writer.map(|w| {
            let mut w = w.into_writer();
            let _ = w.flush();
            w
        });
        (self.inner, w)
    }

    fn record(&mut self, batch: &Batch, from: usize) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        for p in &batch.packets()[from..] {
            let orig = (p.meta.wire_len as usize).max(p.len()) as u32;
            if w.write_packet(&PcapPacket::new(ts, orig, p.data()))
                .is_err()
            {
                self.write_errors += 1;
                self.writer = None;
                return;
            }
        }
    }
}

impl<P: Port, W: Write> Port for PcapPort<P, W> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn rx_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let before = batch.len();
        let n = self.inner.rx_batch(batch)?;
        if self.capture != Capture::Tx {
            self.record(batch, before);
        }
        Ok(n)
    }

    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport {
        if self.capture != Capture::Rx {
            self.record(batch, 0);
        }
        self.inner.tx_batch(batch)
    }

    fn fd(&self) -> Option<RawFd> {
        self.inner.fd()
    }

    fn stats(&self) -> PortStats {
        self.inner.stats()
    }

    fn refresh_stats(&mut self) {
        self.inner.refresh_stats()
    }

    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemPort;
    use pcap_file::pcap::PcapReader;

    #[test]
    fn records_received_and_sent_frames_readably() {
        let inner = MemPort::new("m", 16);
        inner.inject(&[0xab; 60]);
        let mut p = PcapPort::new(inner, Vec::new(), Capture::Both).unwrap();
        let mut b = Batch::new(4, 128, 2048);
        assert_eq!(p.rx_batch(&mut b).unwrap(), 1);
        b.push_copy(&[0xcd; 80]);
        assert_eq!(p.tx_batch(&mut b).sent, 2);
        let (inner, out) = p.into_parts();
        assert_eq!(inner.take_sent().len(), 2);
        let mut r = PcapReader::new(std::io::Cursor::new(out.unwrap())).unwrap();
        let mut lens = Vec::new();
        while let Some(pkt) = r.next_packet() {
            let pkt = pkt.unwrap();
            lens.push((pkt.data.len(), pkt.data[0]));
        }
        assert_eq!(lens, vec![(60, 0xab), (60, 0xab), (80, 0xcd)]);
    }
}
