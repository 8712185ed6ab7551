//! Session affinity (`sessionAffinity: ClientIP`): client address → backend for a while.
//!
//! A fixed-capacity table: lookups refresh nothing (affinity lasts `ttl` from the choice, as
//! with kube-proxy), inserts reuse expired slots and, when the table is full of live entries,
//! refuse rather than evict (the caller then just load-balances normally).

use crate::conntrack::tuple::Addr;
use hashbrown::HashTable;

#[derive(Clone, Copy, Debug)]
struct Slot {
    client: Addr,
    backend: u32,
    expires: u64,
}

pub struct Affinity {
    table: HashTable<Slot>,
    capacity: usize,
    ttl_ns: u64,
    seed: u64,
}

impl Affinity {
    pub fn new(capacity: usize, ttl_ns: u64, seed: u64) -> Affinity {
        Affinity {
            table: HashTable::with_capacity(capacity),
            capacity,
            ttl_ns,
            seed,
        }
    }

    fn hash(&self, a: &Addr) -> u64 {
        crate::lb::hash::five_tuple_hash(&a.0, &[0; 16], 0, 0, 0, self.seed)
    }

    /// The backend remembered for `client`, if its affinity has not expired.
    pub fn get(&self, client: Addr, now: u64) -> Option<u32> {
        self.table
            .find(self.hash(&client), |s| s.client == client)
            .filter(|s| s.expires > now)
            .map(|s| s.backend)
    }

    /// Remembers `client → backend` until `now + ttl`; false if the table is full.
    pub fn set(&mut self, client: Addr, backend: u32, now: u64) -> bool {
        let h = self.hash(&client);
        let expires = now.saturating_add(self.ttl_ns);
        if let Some(s) = self.table.find_mut(h, |s| s.client == client) {
            *s = Slot {
                client,
                backend,
                expires,
            };
            return true;
        }
        if self.table.len() >= self.capacity {
            self.table.retain(|s| s.expires > now);
            if self.table.len() >= self.capacity {
                return false;
            }
        }
        let seed = self.seed;
        self.table.insert_unique(
            h,
            Slot {
                client,
                backend,
                expires,
            },
            |s| crate::lb::hash::five_tuple_hash(&s.client.0, &[0; 16], 0, 0, 0, seed),
        );
        true
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_ttl_and_is_bounded() {
        let mut a = Affinity::new(2, 100, 7);
        assert!(a.set(Addr::v4(1), 5, 0));
        assert!(a.set(Addr::v4(2), 6, 0));
        assert_eq!(a.get(Addr::v4(1), 50), Some(5));
        assert!(!a.set(Addr::v4(3), 7, 50), "full of live entries");
        assert!(a.set(Addr::v4(1), 8, 50), "update in place is always fine");
        assert_eq!(a.get(Addr::v4(1), 60), Some(8));
        assert_eq!(a.get(Addr::v4(2), 100), None, "expired");
        assert!(a.set(Addr::v4(3), 7, 120), "expired entries make room");
        assert_eq!(a.len(), 2);
    }
}
