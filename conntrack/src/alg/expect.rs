//! Expectations: data connections an ALG has announced (an FTP `PORT`/`227`, a TFTP request),
//! waiting for their first packet.
//!
//! One table for all shards (the data connection's addresses may hash to another shard than
//! its control connection's), behind a mutex that is a leaf of the lock order. The datapath
//! touches it only when a new connection starts while expectations exist (an atomic count is
//! read first), and when an ALG announces one. It is bounded (`Config::max_expectations`): an
//! announcement that does not fit is dropped and counted; entries expire
//! (`Config::expectation_timeout`), are removed when their control connection is, and when the
//! data connection they announced is committed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashTable;

use crate::shared::lock;
use crate::tuple::{Addr, Tuple};

/// An announced data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expectation {
    /// The data connection's first packet as it arrives, source port 0 (any).
    pub key: Tuple,
    /// The control connection's original-direction tuple (the related connection's
    /// `ct_nw_src` ... fields, as Open vSwitch gives them) and its mark and label.
    pub parent: Tuple,
    pub mark: u32,
    pub label: u128,
    /// The data connection's packet after NAT, when the control connection is NATed: source
    /// and destination addresses and destination port (the source port is kept).
    pub nat_to: (Addr, Addr, u16),
    pub expires: u64,
}

/// Why an expectation was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExpectRefused {
    Full,
}

pub(crate) struct Expectations {
    table: Mutex<HashTable<Expectation>>,
    /// Entries stored, read without the lock on the new-connection path.
    count: AtomicUsize,
    max: usize,
    seed: u64,
}

fn wildcard(t: &Tuple) -> Tuple {
    Tuple { sport: 0, ..*t }
}

impl Expectations {
    pub fn new(max: usize, seed: u64) -> Expectations {
        Expectations {
            table: Mutex::new(HashTable::with_capacity(max.min(1 << 16))),
            count: AtomicUsize::new(0),
            max,
            seed: encap::hash::fmix64(seed ^ 0x510e_527f_ade6_82d1),
        }
    }

    /// Entries stored (expired ones not yet removed included).
    #[inline]
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Stores `e`, replacing an entry with the same key (a repeated announcement refreshes
    /// it): whether it is new, or why it was refused; and how many expired entries were
    /// removed to make room (only when full).
    pub fn insert(&self, e: Expectation, now: u64) -> (Result<bool, ExpectRefused>, usize) {
        let seed = self.seed;
        let mut t = lock(&self.table);
        let h = e.key.hash(seed);
        if let Some(old) = t.find_mut(h, |x| x.key == e.key) {
            *old = e;
            return (Ok(false), 0);
        }
        let mut expired = 0;
        if t.len() >= self.max {
            let before = t.len();
            t.retain(|x| x.expires > now);
            expired = before - t.len();
            self.count.store(t.len(), Ordering::Relaxed);
            if t.len() >= self.max {
                return (Err(ExpectRefused::Full), expired);
            }
        }
        t.insert_unique(h, e, |x| x.key.hash(seed));
        self.count.store(t.len(), Ordering::Relaxed);
        (Ok(true), expired)
    }

    /// The live expectation a new connection's first packet `t` matches (any source port).
    /// An expired match is removed (reported as `Err(())`).
    pub fn find(&self, t: &Tuple, now: u64) -> Result<Option<Expectation>, ()> {
        if self.len() == 0 {
            return Ok(None);
        }
        let key = wildcard(t);
        let mut table = lock(&self.table);
        let Ok(entry) = table.find_entry(key.hash(self.seed), |x| x.key == key) else {
            return Ok(None);
        };
        if entry.get().expires > now {
            return Ok(Some(*entry.get()));
        }
        entry.remove();
        self.count.store(table.len(), Ordering::Relaxed);
        Err(())
    }

    /// Removes the expectation `key` (its data connection was committed).
    pub fn remove(&self, key: &Tuple) -> bool {
        let mut table = lock(&self.table);
        let removed = table
            .find_entry(key.hash(self.seed), |x| x.key == *key)
            .map(|e| e.remove())
            .is_ok();
        self.count.store(table.len(), Ordering::Relaxed);
        removed
    }

    /// Removes every expectation of the control connection `parent`; returns how many.
    pub fn remove_parent(&self, parent: &Tuple) -> usize {
        if self.len() == 0 {
            return 0;
        }
        let mut table = lock(&self.table);
        let before = table.len();
        table.retain(|x| x.parent != *parent);
        self.count.store(table.len(), Ordering::Relaxed);
        before - table.len()
    }

    /// Removes expired entries (`zone`: only that zone's, for a flush); returns how many.
    pub fn purge(&self, now: u64, flush_zone: Option<Option<u16>>) -> usize {
        if self.len() == 0 {
            return 0;
        }
        let mut table = lock(&self.table);
        let before = table.len();
        table.retain(|x| match flush_zone {
            Some(None) => false,
            Some(Some(z)) => x.key.zone != z,
            None => x.expires > now,
        });
        self.count.store(table.len(), Ordering::Relaxed);
        before - table.len()
    }

    /// Drops the expectations with one of `addrs` at either end or as their NAT target (the
    /// pods that went: an expected data connection must not reach the next pod given the
    /// address); returns how many.
    pub fn purge_addresses(&self, addrs: &[Addr]) -> usize {
        if self.len() == 0 || addrs.is_empty() {
            return 0;
        }
        let mut table = lock(&self.table);
        let before = table.len();
        table.retain(|x| {
            ![x.key.src, x.key.dst, x.nat_to.0, x.nat_to.1]
                .iter()
                .any(|a| addrs.contains(a))
        });
        self.count.store(table.len(), Ordering::Relaxed);
        before - table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::{Family, PROTO_TCP};

    fn exp(dport: u16, zone: u16, expires: u64) -> Expectation {
        let key = Tuple {
            src: Addr::v4(1),
            dst: Addr::v4(2),
            sport: 0,
            dport,
            zone,
            proto: PROTO_TCP,
            family: Family::V4,
        };
        Expectation {
            key,
            parent: Tuple {
                sport: 40000,
                dport: 21,
                ..key.reversed()
            },
            mark: 0,
            label: 0,
            nat_to: (key.src, key.dst, key.dport),
            expires,
        }
    }

    #[test]
    fn matches_any_source_port_in_its_zone_only() {
        let x = Expectations::new(8, 1);
        assert_eq!(x.insert(exp(5000, 3, 100), 0), (Ok(true), 0));
        let pkt = Tuple {
            sport: 20,
            ..exp(5000, 3, 0).key
        };
        assert!(x.find(&pkt, 10).unwrap().is_some());
        assert!(x.find(&Tuple { zone: 4, ..pkt }, 10).unwrap().is_none());
        assert!(x.find(&Tuple { dport: 5001, ..pkt }, 10).unwrap().is_none());
        assert_eq!(x.find(&pkt, 100), Err(()), "expired at its deadline");
        assert_eq!(x.len(), 0);
    }

    #[test]
    fn purged_by_address() {
        let x = Expectations::new(8, 1);
        assert_eq!(x.insert(exp(5000, 3, 100), 0), (Ok(true), 0));
        assert_eq!(x.purge_addresses(&[Addr::v4(9)]), 0);
        assert_eq!(x.purge_addresses(&[Addr::v4(2)]), 1);
        assert_eq!(x.len(), 0);
    }

    #[test]
    fn bounded_reaps_expired_then_refuses() {
        let x = Expectations::new(2, 1);
        x.insert(exp(1, 0, 50), 0).0.unwrap();
        x.insert(exp(2, 0, 500), 0).0.unwrap();
        assert_eq!(
            x.insert(exp(2, 0, 600), 0),
            (Ok(false), 0),
            "same key refreshes"
        );
        assert_eq!(x.insert(exp(3, 0, 500), 10), (Err(ExpectRefused::Full), 0));
        assert_eq!(
            x.insert(exp(3, 0, 500), 60),
            (Ok(true), 1),
            "the expired one made room"
        );
        assert_eq!(x.len(), 2);
    }

    #[test]
    fn removal_by_parent_key_and_flush() {
        let x = Expectations::new(8, 1);
        x.insert(exp(1, 0, 50), 0).0.unwrap();
        x.insert(exp(2, 5, 50), 0).0.unwrap();
        assert_eq!(x.remove_parent(&exp(1, 0, 0).parent), 1);
        assert_eq!(x.purge(0, Some(Some(5))), 1);
        assert_eq!(x.len(), 0);
        assert!(!x.remove(&exp(1, 0, 0).key));
    }
}
