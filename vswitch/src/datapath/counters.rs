//! Per-port counters: written by the forwarding threads, read by the control side.
//!
//! One counter can have several writers: a port's receive counters belong to the thread that
//! polls it, but every thread transmits through its own copy of the port. Each update is one
//! atomic (Relaxed) add, so no count is lost; a reader sees each counter exactly, but not a
//! consistent set of them. (Per-flow counters are `pipeline::FlowStats`, likewise shared.)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// `ofp_port_stats`-shaped counters of one port.
#[derive(Debug)]
pub struct PortCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub rx_dropped: AtomicU64,
    pub rx_errors: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_dropped: AtomicU64,
    pub tx_errors: AtomicU64,
    pub created: Instant,
}

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters {
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            rx_dropped: AtomicU64::new(0),
            rx_errors: AtomicU64::new(0),
            tx_packets: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            tx_dropped: AtomicU64::new(0),
            tx_errors: AtomicU64::new(0),
            created: Instant::now(),
        }
    }
}

/// A plain copy of [`PortCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PortCountersSnapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub rx_errors: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub tx_errors: u64,
    pub duration_secs: f64,
}

impl PortCounters {
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> PortCountersSnapshot {
        PortCountersSnapshot {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            rx_dropped: self.rx_dropped.load(Relaxed),
            rx_errors: self.rx_errors.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            tx_dropped: self.tx_dropped.load(Relaxed),
            tx_errors: self.tx_errors.load(Relaxed),
            duration_secs: self.created.elapsed().as_secs_f64(),
        }
    }
}
