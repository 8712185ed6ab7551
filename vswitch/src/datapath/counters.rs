//! Per-port counters: written by the forwarding threads, read by the control side.
//!
//! Every thread transmits through its own copy of the port, and a port spread over several
//! threads (`options:n_rxq`) is received by each through its own queue: each copy counts in
//! its own slot (one per thread, on cache lines of their own, up to [`SLOTS`] threads; more
//! share slots), so two threads using one port do not move a cache line between their cores
//! per batch.
//! Each update is one atomic (Relaxed) add, so no count is lost; a reader adds the slots up and
//! sees each counter exactly, but not a consistent set of them. (Per-flow counters are
//! `pipeline::FlowStats`, shared, updated once per batch and rule.)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Counter slots per port: threads beyond this many share them (still exact, atomics).
pub const SLOTS: usize = 8;

/// One thread's transmit counters of a port, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct TxCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
}

/// One thread's receive counters of a port, alone on its cache lines.
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
    rx: [RxCounters; SLOTS],
    tx: [TxCounters; SLOTS],
    pub created: Instant,
}

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters {
            rx: Default::default(),
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
        &self.tx[thread % SLOTS]
    }

    /// The receive counters of forwarding thread `thread`'s copy of the port.
    #[inline]
    pub fn rx(&self, thread: usize) -> &RxCounters {
        &self.rx[thread % SLOTS]
    }

    pub fn snapshot(&self) -> PortCountersSnapshot {
        let tx = |f: fn(&TxCounters) -> &AtomicU64| {
            self.tx.iter().map(|t| f(t).load(Relaxed)).sum::<u64>()
        };
        let rx = |f: fn(&RxCounters) -> &AtomicU64| {
            self.rx.iter().map(|r| f(r).load(Relaxed)).sum::<u64>()
        };
        PortCountersSnapshot {
            rx_packets: rx(|r| &r.packets),
            rx_bytes: rx(|r| &r.bytes),
            rx_dropped: rx(|r| &r.dropped),
            rx_errors: rx(|r| &r.errors),
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
    fn thread_slots_add_up() {
        let c = PortCounters::default();
        PortCounters::add(&c.tx(0).packets, 3);
        PortCounters::add(&c.tx(1).packets, 4);
        PortCounters::add(&c.tx(SLOTS + 1).packets, 5); // shares thread 1's slot
        PortCounters::add(&c.tx(1).bytes, 100);
        PortCounters::add(&c.rx(0).packets, 2);
        PortCounters::add(&c.rx(1).packets, 6);
        PortCounters::add(&c.rx(1).errors, 1);
        let s = c.snapshot();
        assert_eq!((s.tx_packets, s.tx_bytes), (12, 100));
        assert_eq!((s.rx_packets, s.rx_errors), (8, 1));
        for (a, b) in [
            (&c.tx(0).packets, &c.tx(1).packets),
            (&c.rx(0).packets, &c.rx(1).packets),
        ] {
            assert_ne!(
                a as *const _ as usize / 64,
                b as *const _ as usize / 64,
                "each thread's slot on a cache line of its own"
            );
        }
    }
}
