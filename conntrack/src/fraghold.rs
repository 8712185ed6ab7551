//! A bounded hold for non-first fragments that arrive before their first fragment.
//!
//! Only the first fragment names the ports, so a later fragment seen first cannot be matched to
//! a connection. Rather than calling it invalid, conntrack copies it here (a fixed pool of
//! fixed-size slots, allocated once) until the first fragment of the same datagram passes
//! conntrack; the datapath then takes it back and runs it again, now finding the ports. What
//! is not released within the timeout is dropped and counted; what does not fit (pool full,
//! frame larger than a slot) is refused, and the caller treats the fragment as before (+inv).
//! This is not reassembly: fragments leave one by one, as they came.
//!
//! Fair shares: in a pool of 8 slots or more, one zone may fill at most half of the slots and
//! one source address within a zone a quarter, so a flood of out-of-order fragments from one
//! pod (or one tenant's zone) cannot take the hold from the others. A fragment over its share
//! is refused like one that does not fit.

use super::frag::FragKey;
use encap::FlowKey;

/// Why a fragment could not be held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HoldRefused {
    Full,
    TooBig,
    /// The fragment's zone, or its source within the zone, holds its share of the pool.
    OverShare,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    /// Waiting for its first fragment.
    Held,
    /// Its first fragment has passed: ready to run again.
    Released,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    state: State,
    key: FragKey,
    /// The datapath's packet metadata (in_port, tunnel fields) to resume with.
    meta: FlowKey,
    len: usize,
    since_ns: u64,
    /// Arrival order, so released fragments leave in the order they came.
    seq: u64,
}

pub(crate) struct FragHold {
    slots: Vec<Slot>,
    /// `slots.len() * slot_bytes` bytes; slot `i` owns `[i * slot_bytes, (i + 1) * slot_bytes)`.
    arena: Vec<u8>,
    slot_bytes: usize,
    timeout_ns: u64,
    held: usize,
    released: usize,
    next_seq: u64,
}

impl FragHold {
    pub fn new(n_slots: usize, slot_bytes: usize, timeout_ns: u64) -> FragHold {
        let empty = Slot {
            state: State::Free,
            key: FragKey::default(),
            meta: FlowKey::default(),
            len: 0,
            since_ns: 0,
            seq: 0,
        };
        FragHold {
            slots: vec![empty; n_slots],
            arena: vec![0; n_slots * slot_bytes],
            slot_bytes,
            timeout_ns,
            held: 0,
            released: 0,
            next_seq: 0,
        }
    }

    /// Slots one zone may fill: half of the pool (no share in a pool smaller than 8).
    fn zone_share(&self) -> usize {
        let n = self.slots.len();
        if n < 8 { usize::MAX } else { n / 2 }
    }

    /// Slots one source address within a zone may fill: a quarter of the pool (no share in a
    /// pool smaller than 8).
    fn source_share(&self) -> usize {
        let n = self.slots.len();
        if n < 8 { usize::MAX } else { n / 4 }
    }

    /// Fragments waiting for their first fragment.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Fragments ready to run again.
    pub fn released(&self) -> usize {
        self.released
    }

    /// Copies `frame` into a free slot until `key`'s first fragment is seen.
    pub fn hold(
        &mut self,
        key: FragKey,
        meta: &FlowKey,
        frame: &[u8],
        now: u64,
    ) -> Result<(), HoldRefused> {
        if frame.len() > self.slot_bytes {
            return Err(HoldRefused::TooBig);
        }
        // One pass: a free slot, and how many this fragment's zone and source already fill.
        let (mut free, mut same_zone, mut same_source) = (None, 0, 0);
        for (i, s) in self.slots.iter().enumerate() {
            if s.state == State::Free {
                free.get_or_insert(i);
            } else if s.key.zone == key.zone {
                same_zone += 1;
                same_source += usize::from(same_source_host(&s.key, &key));
            }
        }
        if same_zone >= self.zone_share() || same_source >= self.source_share() {
            return Err(HoldRefused::OverShare);
        }
        let i = free.ok_or(HoldRefused::Full)?;
        let at = i * self.slot_bytes;
        self.arena[at..at + frame.len()].copy_from_slice(frame);
        self.slots[i] = Slot {
            state: State::Held,
            key,
            meta: *meta,
            len: frame.len(),
            since_ns: now,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.held += 1;
        Ok(())
    }

    /// The first fragment of `key` has been seen: its held fragments may run again. Returns
    /// how many were released.
    pub fn release(&mut self, key: &FragKey) -> usize {
        let mut n = 0;
        for s in self.slots.iter_mut() {
            if s.state == State::Held && s.key == *key {
                s.state = State::Released;
                n += 1;
            }
        }
        self.held -= n;
        self.released += n;
        n
    }

    /// Takes the oldest released fragment: copies its frame into `out` (reusing its capacity)
    /// and returns the metadata it was held with.
    pub fn take_released(&mut self, out: &mut Vec<u8>) -> Option<FlowKey> {
        if self.released == 0 {
            return None;
        }
        let i = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == State::Released)
            .min_by_key(|(_, s)| s.seq)
            .map(|(i, _)| i)?;
        let s = &mut self.slots[i];
        let at = i * self.slot_bytes;
        out.clear();
        out.extend_from_slice(&self.arena[at..at + s.len]);
        s.state = State::Free;
        self.released -= 1;
        Some(s.meta)
    }

    /// Drops held fragments whose first fragment did not come within the timeout; returns how
    /// many.
    pub fn expire(&mut self, now: u64) -> usize {
        if self.held == 0 {
            return 0;
        }
        let mut n = 0;
        for s in self.slots.iter_mut() {
            if s.state == State::Held && now.saturating_sub(s.since_ns) > self.timeout_ns {
                s.state = State::Free;
                n += 1;
            }
        }
        self.held -= n;
        n
    }
}

/// Whether two fragments come from one source for the hold's shares: the same IPv4 address,
/// or the same IPv6 /64 (a host picks any address of its prefix, so a whole address would let
/// one pod take the hold with many of them).
fn same_source_host(a: &FragKey, b: &FragKey) -> bool {
    a.family == b.family
        && match a.family {
            crate::tuple::Family::V6 => a.src.0[..8] == b.src.0[..8],
            _ => a.src == b.src,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::{Addr, Family};

    fn key(id: u32) -> FragKey {
        FragKey {
            src: Addr::v4(1),
            dst: Addr::v4(2),
            id,
            zone: 0,
            proto: 17,
            family: Family::V4,
        }
    }

    fn meta(in_port: u32) -> FlowKey {
        FlowKey {
            in_port,
            ..FlowKey::default()
        }
    }

    #[test]
    fn held_fragments_leave_in_arrival_order_once_released() {
        let mut h = FragHold::new(4, 64, 1_000);
        h.hold(key(7), &meta(1), &[1; 10], 0).unwrap();
        h.hold(key(8), &meta(2), &[2; 20], 0).unwrap();
        h.hold(key(7), &meta(3), &[3; 30], 0).unwrap();
        let mut out = Vec::new();
        assert_eq!(h.take_released(&mut out), None, "nothing released yet");
        assert_eq!(h.release(&key(7)), 2);
        assert_eq!((h.held(), h.released()), (1, 2));
        assert_eq!(h.take_released(&mut out).unwrap().in_port, 1);
        assert_eq!(out, vec![1; 10]);
        assert_eq!(h.take_released(&mut out).unwrap().in_port, 3);
        assert_eq!(out, vec![3; 30]);
        assert_eq!(h.take_released(&mut out), None);
        assert_eq!(h.held(), 1, "the other datagram still waits");
    }

    #[test]
    fn bounded_in_slots_and_size_and_time() {
        let mut h = FragHold::new(2, 64, 1_000);
        assert_eq!(
            h.hold(key(1), &meta(1), &[0; 65], 0),
            Err(HoldRefused::TooBig)
        );
        h.hold(key(1), &meta(1), &[0; 64], 0).unwrap();
        h.hold(key(2), &meta(1), &[0; 64], 500).unwrap();
        assert_eq!(
            h.hold(key(3), &meta(1), &[0; 8], 600),
            Err(HoldRefused::Full)
        );
        assert_eq!(
            h.expire(1_200),
            1,
            "only the first is older than the timeout"
        );
        h.hold(key(3), &meta(1), &[0; 8], 1_200).unwrap();
        assert_eq!(h.release(&key(1)), 0, "expired fragments are gone");
        assert_eq!((h.held(), h.released()), (2, 0));
    }

    fn from(src: u32, zone: u16, id: u32) -> FragKey {
        FragKey {
            src: Addr::v4(src),
            zone,
            ..key(id)
        }
    }

    #[test]
    fn one_source_or_zone_cannot_take_the_pool() {
        let mut h = FragHold::new(16, 64, 1_000);
        // Source 1 of zone 0: a quarter of 16 slots.
        for id in 0..4 {
            h.hold(from(1, 0, id), &meta(1), &[0; 8], 0).unwrap();
        }
        assert_eq!(
            h.hold(from(1, 0, 99), &meta(1), &[0; 8], 0),
            Err(HoldRefused::OverShare)
        );
        // Another source of the same zone still gets its quarter, then zone 0 is at half.
        for id in 0..4 {
            h.hold(from(2, 0, id), &meta(1), &[0; 8], 0).unwrap();
        }
        assert_eq!(
            h.hold(from(3, 0, 0), &meta(1), &[0; 8], 0),
            Err(HoldRefused::OverShare),
            "zone 0 fills half of the pool"
        );
        // Another zone (even with the same source address) still has its half.
        for id in 0..4 {
            h.hold(from(1, 7, id), &meta(1), &[0; 8], 0).unwrap();
            h.hold(from(2, 7, id), &meta(1), &[0; 8], 0).unwrap();
        }
        assert_eq!(h.held(), 16);
        // A released fragment gives its share back.
        assert_eq!(h.release(&from(1, 0, 0)), 1);
        let mut out = Vec::new();
        assert!(h.take_released(&mut out).is_some());
        h.hold(from(1, 0, 98), &meta(1), &[0; 8], 0).unwrap();
    }

    /// IPv6 sources share by /64: one host's many addresses are one source.
    #[test]
    fn ipv6_sources_of_one_prefix_share_one_quarter() {
        let v6 = |prefix: u8, host: u8, id: u32| {
            let mut a = [0u8; 16];
            a[0] = 0xfd;
            a[7] = prefix;
            a[15] = host;
            FragKey {
                src: Addr(a),
                family: Family::V6,
                ..key(id)
            }
        };
        let mut h = FragHold::new(16, 64, 1_000);
        for i in 0..4u8 {
            h.hold(v6(1, i, u32::from(i)), &meta(1), &[0; 8], 0)
                .unwrap();
        }
        assert_eq!(
            h.hold(v6(1, 9, 9), &meta(1), &[0; 8], 0),
            Err(HoldRefused::OverShare),
            "a fifth address of the same /64"
        );
        h.hold(v6(2, 0, 9), &meta(1), &[0; 8], 0).unwrap();
    }
}
