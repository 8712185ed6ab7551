//! `sample(probability=P,collector_set_id=C,...)` in the datapath: each packet is sampled
//! with probability P/65535 (a per-thread xorshift generator: no lock, no shared state) and
//! counted for its collector set. Counts gather per thread over a batch and are added to the
//! bridge's shared counters once per batch (`vswitchctl dump-samples`,
//! `vswitch_sampled_packets_total`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Collector sets a bridge counts apart; more share the `other` counter.
const SLOTS: usize = 256;

/// One collector set's count: `id` is the collector set id + 1 (0: free slot).
#[derive(Default)]
struct Slot {
    id: AtomicU64,
    packets: AtomicU64,
}

/// Sampled packets per collector set id, shared by every thread's copy of a bridge. A set is
/// given a slot the first time it is counted (a compare-and-swap on a free slot), so adding
/// never locks.
pub struct SampleCounters {
    slots: Box<[Slot]>,
    /// Packets of collector sets beyond [`SLOTS`] distinct ones.
    other: AtomicU64,
}

impl Default for SampleCounters {
    fn default() -> Self {
        SampleCounters {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            other: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for SampleCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.snapshot()).finish()
    }
}

impl SampleCounters {
    /// Adds `n` sampled packets to collector set `id`.
    pub fn add(&self, id: u32, n: u64) {
        let want = u64::from(id) + 1;
        let start = (id as usize).wrapping_mul(0x9e37_79b9) % SLOTS;
        for i in 0..SLOTS {
            let slot = &self.slots[(start + i) % SLOTS];
            let cur = slot.id.load(Relaxed);
            let mine = cur == want
                || (cur == 0
                    && match slot.id.compare_exchange(0, want, Relaxed, Relaxed) {
                        Ok(_) => true,
                        Err(other) => other == want,
                    });
            if mine {
                slot.packets.fetch_add(n, Relaxed);
                return;
            }
        }
        self.other.fetch_add(n, Relaxed);
    }

    /// (collector set id, packets), by id; sets never sampled are absent.
    pub fn snapshot(&self) -> Vec<(u32, u64)> {
        let mut v: Vec<(u32, u64)> = self
            .slots
            .iter()
            .filter_map(|s| {
                let id = s.id.load(Relaxed);
                (id != 0).then(|| ((id - 1) as u32, s.packets.load(Relaxed)))
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Packets of collector sets that found no slot of their own.
    pub fn other(&self) -> u64 {
        self.other.load(Relaxed)
    }

    /// `dump-samples` text: one `collector_set_id=C packets=N` line per set.
    pub fn format(&self) -> String {
        let mut out = String::new();
        for (id, n) in self.snapshot() {
            out.push_str(&format!("collector_set_id={id} packets={n}\n"));
        }
        let other = self.other();
        if other != 0 {
            out.push_str(&format!("other collector sets: packets={other}\n"));
        }
        out
    }
}

/// Distinct collector sets a thread tallies within one batch before it adds them early.
const TALLY: usize = 8;

/// One forwarding thread's sampling state: its random generator and the counts of the batch
/// being processed.
pub struct SampleTally {
    rng: u64,
    counts: Vec<(u32, u64)>,
}

impl Default for SampleTally {
    fn default() -> Self {
        // Any non-zero seed; threads differ by their stack address and the clock.
        let local = 0u8;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        SampleTally {
            rng: (t ^ (&local as *const u8 as u64).rotate_left(32)) | 1,
            counts: Vec::with_capacity(TALLY),
        }
    }
}

impl SampleTally {
    /// Whether this packet is sampled: as Open vSwitch's datapath, the 16-bit probability is
    /// scaled to 32 bits (`P << 16 | P`) and compared with a random 32-bit number, so 65535
    /// samples every packet.
    #[inline]
    pub fn sampled(&mut self, probability: u16) -> bool {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32;
        let p = (u32::from(probability) << 16) | u32::from(probability);
        r <= p
    }

    /// Counts one sampled packet for collector set `id` (added to `shared` at the end of the
    /// batch, or now when the batch already tallies [`TALLY`] other sets).
    #[inline]
    pub fn count(&mut self, id: u32, shared: &SampleCounters) {
        if let Some(c) = self.counts.iter_mut().find(|c| c.0 == id) {
            c.1 += 1;
            return;
        }
        if self.counts.len() == TALLY {
            self.flush(shared);
        }
        self.counts.push((id, 1));
    }

    /// Adds the batch's counts to the bridge's counters.
    pub fn flush(&mut self, shared: &SampleCounters) {
        for (id, n) in self.counts.drain(..) {
            shared.add(id, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_collector_set_and_overflow() {
        let c = SampleCounters::default();
        c.add(7, 2);
        c.add(7, 3);
        c.add(0, 1);
        c.add(u32::MAX, 4);
        assert_eq!(c.snapshot(), vec![(0, 1), (7, 5), (u32::MAX, 4)]);
        for id in 0..(SLOTS as u32 + 10) {
            c.add(1000 + id, 1);
        }
        assert_eq!(c.snapshot().len(), SLOTS);
        assert_eq!(c.other(), 13, "3 sets had slots, 13 did not");
        assert!(c.format().contains("collector_set_id=7 packets=5\n"));
    }

    #[test]
    fn probability_is_honoured() {
        let mut t = SampleTally::default();
        assert!((0..10_000).all(|_| t.sampled(65535)));
        let half = (0..100_000).filter(|_| t.sampled(32768)).count();
        assert!((45_000..55_000).contains(&half), "{half} of 100000 at 1/2");
        let few = (0..100_000).filter(|_| t.sampled(655)).count();
        assert!((500..1_500).contains(&few), "{few} of 100000 at 1/100");
    }

    #[test]
    fn tally_adds_once_per_flush_and_early_when_full() {
        let shared = SampleCounters::default();
        let mut t = SampleTally::default();
        for _ in 0..5 {
            t.count(1, &shared);
        }
        assert!(
            shared.snapshot().is_empty(),
            "nothing added before the flush"
        );
        for id in 10..20 {
            t.count(id, &shared);
        }
        assert!(!shared.snapshot().is_empty(), "a full tally adds early");
        t.flush(&shared);
        let total: u64 = shared.snapshot().iter().map(|x| x.1).sum();
        assert_eq!(total, 15);
        assert!(shared.snapshot().contains(&(1, 5)));
    }
}
