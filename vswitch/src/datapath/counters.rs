//! Per-port counters: written by the forwarding threads, read by the control side.
//!
//! A port's receive counters belong to the thread that polls it; every thread transmits
//! through its own copy of the port, and each copy counts in its own transmit slot (one per
//! thread, on a cache line of its own, up to [`TX_SLOTS`] threads; more share slots), so two
//! threads sending out of one port do not move a cache line between their cores per flush.
//! Each update is one atomic (Relaxed) add, so no count is lost; a reader adds the slots up and
//! sees each counter exactly, but not a consistent set of them. (Per-flow counters are
//! `pipeline::FlowStats`, shared, updated once per batch and rule.)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Transmit slots per port: threads beyond this many share them (still exact, atomics).
pub const TX_SLOTS: usize = 8;

/// One thread's transmit counters of a port, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct TxCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
}

/// Receive counters, written by the polling thread only, on cache lines of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct RxCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
}

/// `ofp_port_stats`-shaped counters of one port.
#[derive(Debug)]
pub struct PortCounters {
    pub rx: RxCounters,
    tx: [TxCounters; TX_SLOTS],
    pub created: Instant,
}

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters {
            rx: RxCounters::default(),
            tx: Default::default(),
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

    /// The transmit counters of forwarding thread `thread`'s copy of the port.
    #[inline]
    pub fn tx(&self, thread: usize) -> &TxCounters {
        &self.tx[thread % TX_SLOTS]
    }

    pub fn snapshot(&self) -> PortCountersSnapshot {
        let tx = |f: fn(&TxCounters) -> &AtomicU64| {
            self.tx.iter().map(|t| f(t).load(Relaxed)).sum::<u64>()
        };
        PortCountersSnapshot {
            rx_packets: self.rx.packets.load(Relaxed),
            rx_bytes: self.rx.bytes.load(Relaxed),
            rx_dropped: self.rx.dropped.load(Relaxed),
            rx_errors: self.rx.errors.load(Relaxed),
            tx_packets: tx(|t| &t.packets),
            tx_bytes: tx(|t| &t.bytes),
            tx_dropped: tx(|t| &t.dropped),
            tx_errors: tx(|t| &t.errors),
            duration_secs: self.created.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_slots_add_up() {
        let c = PortCounters::default();
        PortCounters::add(&c.tx(0).packets, 3);
        PortCounters::add(&c.tx(1).packets, 4);
        PortCounters::add(&c.tx(TX_SLOTS + 1).packets, 5); // shares thread 1's slot
        PortCounters::add(&c.tx(1).bytes, 100);
        PortCounters::add(&c.rx.packets, 2);
        let s = c.snapshot();
        assert_eq!((s.tx_packets, s.tx_bytes, s.rx_packets), (12, 100, 2));
        assert_ne!(
            &c.tx(0).packets as *const _ as usize / 64,
            &c.tx(1).packets as *const _ as usize / 64,
            "each thread's slot on a cache line of its own"
        );
    }
}
