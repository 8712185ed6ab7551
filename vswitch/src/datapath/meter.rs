//! Meters in the datapath: one token bucket per band, run on every packet of a metered flow
//! without a lock or an allocation (atomics only), with Open vSwitch 3.1's arithmetic
//! (`dp_netdev_run_meter`, `dpif_netdev_meter_set` in `lib/dpif-netdev.c`):
//!
//! - a band's bucket holds 1/1000 packets (`pktps`) or bits (`kbps`); it starts full at
//!   `burst_size * 1000` (a band without a burst size gets one second of its rate);
//! - time counts in whole milliseconds: every packet adds `elapsed_ms * rate` to each bucket,
//!   capped at the burst, and takes 1000 (one packet) or `8 * bytes` out of each band whose
//!   bucket holds that much;
//! - a packet that finds a band short is dropped; the band with the highest rate among those
//!   it exceeded counts it. The meter counts every packet it sees, dropped or not.
//!
//! Open vSwitch takes a mutex per meter and batch; here each band is one compare-and-swap per
//! packet, and the refill clock one `fetch_max`: threads sharing a meter never wait on each
//! other, and the refill is never counted twice.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use flowtable::meter::{Meter, MeterFlags};

/// One band's bucket and counters.
#[derive(Debug)]
struct Band {
    rate: u64,
    /// The bucket's size (burst_size * 1000).
    max: u64,
    bucket: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// A meter as the datapath runs it. Flows hold it through their cached actions; a modified
/// meter is a new entry (fresh buckets and counters, as Open vSwitch's datapath sets it anew),
/// an unchanged one is kept across publishes.
#[derive(Debug)]
pub struct MeterEntry {
    pub meter: Meter,
    pktps: bool,
    /// Longest refill that matters (fills every bucket), in ms.
    max_delta_ms: u64,
    bands_rt: Vec<Band>,
    /// Datapath clock (µs) of the last refill.
    used_us: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    /// When the meter was added (kept across modifications), for `duration`.
    pub created: Instant,
}

/// What `meter-stats` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterCounts {
    pub packets: u64,
    pub bytes: u64,
    /// (packets, bytes) dropped by each band.
    pub bands: Vec<(u64, u64)>,
}

impl MeterEntry {
    /// A fresh entry for `meter` (full buckets, zero counters); `created` as given. Its clock
    /// starts at 0: the first packet's refill is capped at a full bucket, which it has.
    pub fn new(meter: Meter, created: Instant) -> MeterEntry {
        let mut max_delta_ms = 0;
        let bands = meter
            .bands
            .iter()
            .map(|b| {
                let burst = if b.burst_size == 0 {
                    b.rate
                } else {
                    b.burst_size
                };
                let max = u64::from(burst) * 1000;
                let rate = u64::from(b.rate).max(1);
                max_delta_ms = max_delta_ms.max(max / rate);
                Band {
                    rate,
                    max,
                    bucket: AtomicU64::new(max),
                    packets: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                }
            })
            .collect();
        MeterEntry {
            pktps: meter.flags.contains(MeterFlags::PKTPS),
            meter,
            max_delta_ms,
            used_us: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            created,
            bands_rt: bands,
        }
    }

    /// Runs one packet of `len` bytes through the meter at datapath time `now_ns`: `true` to
    /// pass it on, `false` when a band drops it (counted in that band).
    #[inline]
    pub fn admit(&self, now_ns: u64, len: usize) -> bool {
        let now_us = now_ns / 1000;
        let prev_us = self.used_us.fetch_max(now_us, Relaxed);
        // Another thread may have moved the clock past this packet's time: no refill then.
        let delta_ms = (now_us / 1000)
            .saturating_sub(prev_us / 1000)
            .min(self.max_delta_ms);
        self.packets.fetch_add(1, Relaxed);
        self.bytes.fetch_add(len as u64, Relaxed);
        let volume = if self.pktps { 1000 } else { len as u64 * 8 };
        let mut fired: Option<&Band> = None;
        for band in &self.bands_rt {
            let add = delta_ms * band.rate;
            let mut passed = false;
            let _ = band.bucket.fetch_update(Relaxed, Relaxed, |b| {
                let b = b.saturating_add(add).min(band.max);
                passed = b >= volume;
                Some(if passed { b - volume } else { b })
            });
            if !passed && fired.is_none_or(|f| band.rate > f.rate) {
                fired = Some(band);
            }
        }
        match fired {
            None => true,
            Some(band) => {
                band.packets.fetch_add(1, Relaxed);
                band.bytes.fetch_add(len as u64, Relaxed);
                false
            }
        }
    }

    /// The counters so far.
    pub fn counts(&self) -> MeterCounts {
        MeterCounts {
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            bands: self
                .bands_rt
                .iter()
                .map(|b| (b.packets.load(Relaxed), b.bytes.load(Relaxed)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtable::meter::MeterBand;

    fn meter(flags: u16, bands: Vec<MeterBand>) -> MeterEntry {
        MeterEntry::new(
            Meter {
                id: 1,
                flags: MeterFlags(flags),
                bands,
            },
            Instant::now(),
        )
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn pktps_burst_then_rate() {
        // 100 packets/s, burst 10: ten pass at once, then one every 10 ms.
        let m = meter(
            MeterFlags::PKTPS | MeterFlags::BURST,
            vec![MeterBand::drop(100, 10)],
        );
        let passed = (0..50).filter(|_| m.admit(0, 60)).count();
        assert_eq!(passed, 10);
        // 25 ms later: 2.5 packets of credit, two pass.
        let passed = (0..10).filter(|_| m.admit(25 * MS, 60)).count();
        assert_eq!(passed, 2);
        let c = m.counts();
        assert_eq!(c.packets, 60);
        assert_eq!(c.bytes, 3600);
        assert_eq!(c.bands, vec![(48, 48 * 60)]);
        // The half packet left stays: 5 ms more make a whole one.
        assert!(m.admit(30 * MS, 60));
        assert!(!m.admit(30 * MS, 60));
    }

    #[test]
    fn kbps_counts_bits_and_caps_the_refill() {
        // 8 kbps without burst: one second (8000 bits = 1000 bytes) of credit.
        let m = meter(MeterFlags::KBPS, vec![MeterBand::drop(8, 0)]);
        assert!(m.admit(0, 1000));
        assert!(!m.admit(0, 1));
        // A long pause refills at most the bucket.
        assert!(m.admit(3600 * 1000 * MS, 1000));
        assert!(!m.admit(3600 * 1000 * MS, 1));
        // 125 ms at 8 kbps = 1000 bits = 125 bytes.
        let t = 3600 * 1000 * MS + 125 * MS;
        assert!(m.admit(t, 125));
        assert!(!m.admit(t, 1));
    }

    #[test]
    fn highest_rate_band_exceeded_counts_the_drop() {
        let m = meter(
            MeterFlags::PKTPS | MeterFlags::BURST,
            vec![MeterBand::drop(10, 1), MeterBand::drop(20, 2)],
        );
        assert!(m.admit(0, 10));
        // Band 0 is empty, band 1 still has one: dropped by band 0.
        assert!(!m.admit(0, 10));
        // Both empty now: the faster band counts it.
        assert!(!m.admit(0, 10));
        assert_eq!(m.counts().bands, vec![(1, 10), (1, 10)]);
    }

    #[test]
    fn clock_going_back_refills_nothing() {
        let m = meter(
            MeterFlags::PKTPS | MeterFlags::BURST,
            vec![MeterBand::drop(1000, 1)],
        );
        assert!(m.admit(10 * MS, 1));
        assert!(!m.admit(5 * MS, 1));
        assert!(!m.admit(10 * MS, 1));
        assert!(m.admit(11 * MS, 1));
    }
}
