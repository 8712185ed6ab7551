//! Session affinity (`sessionAffinity: ClientIP`): a select group remembers which bucket each
//! client address got, so that the client's next connections go to the same bucket while it
//! exists, even when other buckets come and go (which would move ~1/N of clients under
//! consistent hashing alone).
//!
//! The slow path consults the table when it translates a new connection ([`AffinityTable::
//! recall`], [`AffinityTable::remember`]); the entry it used travels in the cached actions as
//! an [`AffinityTouch`], which the fast path executes for every later new connection of the
//! client (one atomic store, no lock): as with kube-proxy's `recent` match, the timeout runs
//! from the client's last new connection. The table is bounded; when it is full of live
//! entries a client is simply load-balanced without being remembered.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use hashbrown::HashMap;

/// Clients remembered per group at most.
pub const DEFAULT_CAPACITY: usize = 65536;

/// Nanoseconds on one process-wide monotonic clock (the slow path and the fast path must
/// agree on it).
pub fn clock_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// One client's remembered choice.
#[derive(Debug)]
pub struct Remembered {
    /// The bucket's identity (a hash of its actions, stable across group changes).
    pub bucket: u64,
    last_ns: AtomicU64,
}

impl Remembered {
    fn fresh(&self, now: u64, timeout_ns: u64) -> bool {
        now.saturating_sub(self.last_ns.load(Relaxed)) < timeout_ns
    }
}

/// A cached action: "this client opened a connection now".
#[derive(Debug, Clone)]
pub struct AffinityTouch(pub Arc<Remembered>);

impl AffinityTouch {
    #[inline]
    pub fn touch(&self, now_ns: u64) {
        self.0.last_ns.store(now_ns, Relaxed);
    }
}

/// Cached flows compare equal only when they refresh the same entry (revalidation keeps a
/// megaflow only if the new walk recalls the very same choice).
impl PartialEq for AffinityTouch {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for AffinityTouch {}

/// A group's memory: client IPv4 address → remembered bucket.
#[derive(Debug)]
pub struct AffinityTable {
    clients: Mutex<HashMap<u32, Arc<Remembered>>>,
    capacity: usize,
}

impl Default for AffinityTable {
    fn default() -> Self {
        AffinityTable::new(DEFAULT_CAPACITY)
    }
}

impl AffinityTable {
    pub fn new(capacity: usize) -> AffinityTable {
        AffinityTable {
            clients: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Remembered>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client's remembered choice, if it connected within `timeout_ns`.
    pub fn recall(&self, client: u32, now: u64, timeout_ns: u64) -> Option<Arc<Remembered>> {
        self.lock()
            .get(&client)
            .filter(|r| r.fresh(now, timeout_ns))
            .cloned()
    }

    /// Remembers `client → bucket` from `now` (replacing what was there). `None` when the table
    /// is full of live entries (expired ones are swept first).
    pub fn remember(
        &self,
        client: u32,
        bucket: u64,
        now: u64,
        timeout_ns: u64,
    ) -> Option<Arc<Remembered>> {
        let mut clients = self.lock();
        if clients.len() >= self.capacity && !clients.contains_key(&client) {
            clients.retain(|_, r| r.fresh(now, timeout_ns));
            if clients.len() >= self.capacity {
                return None;
            }
        }
        let r = Arc::new(Remembered {
            bucket,
            last_ns: AtomicU64::new(now),
        });
        clients.insert(client, r.clone());
        Some(r)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_while_touched_and_is_bounded() {
        let t = AffinityTable::new(2);
        let a = t.remember(1, 50, 0, 100).unwrap();
        t.remember(2, 60, 0, 100).unwrap();
        assert_eq!(t.recall(1, 99, 100).map(|r| r.bucket), Some(50));
        assert!(t.recall(1, 100, 100).is_none(), "expired without a touch");
        assert!(t.remember(3, 70, 50, 100).is_none(), "full of live entries");
        AffinityTouch(a).touch(90);
        assert_eq!(
            t.recall(1, 150, 100).map(|r| r.bucket),
            Some(50),
            "touch refreshes"
        );
        // Client 2 expired at 100: its slot is reused.
        assert!(
            t.remember(3, 70, 150, 100).is_some(),
            "an expired entry made room"
        );
        assert_eq!(t.len(), 2);
        assert!(t.recall(2, 150, 100).is_none());
    }

    #[test]
    fn touches_compare_by_entry() {
        let t = AffinityTable::new(4);
        let a = t.remember(1, 5, 0, 10).unwrap();
        let b = t.remember(2, 5, 0, 10).unwrap();
        assert_eq!(AffinityTouch(a.clone()), AffinityTouch(a));
        assert_ne!(
            AffinityTouch(b.clone()),
            AffinityTouch(t.recall(1, 0, 10).unwrap())
        );
        assert_eq!(AffinityTouch(b), AffinityTouch(t.recall(2, 0, 10).unwrap()));
    }
}
