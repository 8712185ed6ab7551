//! Packet capture on one port (`vswitchctl capture`): a bounded copy of what the port receives
//! and sends, taken only while a capture runs (the fast path pays one `Option` check otherwise).

use std::time::{SystemTime, UNIX_EPOCH};

/// Frames larger than this are cut (like tcpdump's snap length).
pub const SNAPLEN: usize = 65535;

/// One captured frame: wall-clock time, original length, the (possibly cut) bytes.
#[derive(Debug, Clone)]
pub struct Captured {
    pub time: std::time::Duration,
    pub wire_len: u32,
    pub data: Vec<u8>,
}

/// A running capture: stops taking frames when `remaining` reaches zero.
#[derive(Debug)]
pub struct CaptureTap {
    remaining: usize,
    pub frames: Vec<Captured>,
}

impl CaptureTap {
    pub fn new(count: usize) -> CaptureTap {
        CaptureTap {
            remaining: count,
            frames: Vec::with_capacity(count.min(4096)),
        }
    }

    /// Frames asked for when the capture started.
    pub fn wanted(&self) -> usize {
        self.remaining + self.frames.len()
    }

    pub fn is_full(&self) -> bool {
        self.remaining == 0
    }

    #[inline]
    pub fn take(&mut self, frame: &[u8]) {
        if self.remaining == 0 {
            return;
        }
        self.remaining -= 1;
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.frames.push(Captured {
            time,
            wire_len: frame.len() as u32,
            data: frame[..frame.len().min(SNAPLEN)].to_vec(),
        });
    }
}

/// Writes frames as a pcap file (Ethernet link type).
pub fn write_pcap(path: &std::path::Path, frames: &[Captured]) -> Result<(), String> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let header = PcapHeader {
        datalink: pcap_file::DataLink::ETHERNET,
        snaplen: SNAPLEN as u32,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).map_err(|e| e.to_string())?;
    for f in frames {
        w.write_packet(&PcapPacket::new(f.time, f.wire_len, &f.data))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
