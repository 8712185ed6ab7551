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
/// agree on it). It starts at [`CLOCK_ORIGIN_NS`], not 0, so that memory handed over from a
/// previous process ([`AffinityTable::import`]) can be dated before this process started.
pub fn clock_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    CLOCK_ORIGIN_NS + START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What [`clock_ns`] reads when the process starts: about 39 hours, longer than any affinity
/// timeout (Kubernetes allows at most 86400 s).
pub const CLOCK_ORIGIN_NS: u64 = 1 << 47;

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

    /// Every remembered client as `(client, bucket, age_ns)` at `now` (for a graceful
    /// restart's handover; the timeout is the group's, so expired ones are included and
    /// expire again on the other side).
    pub fn export(&self, now: u64) -> Vec<(u32, u64, u64)> {
        self.lock()
            .iter()
            .map(|(c, r)| (*c, r.bucket, now.saturating_sub(r.last_ns.load(Relaxed))))
            .collect()
    }

    /// Adds exported entries as of `now` (each `age_ns` old); a client already remembered
    /// keeps its entry, and nothing is added beyond the capacity.
    pub fn import(&self, entries: &[(u32, u64, u64)], now: u64) {
        let mut clients = self.lock();
        for &(client, bucket, age) in entries {
            if clients.len() >= self.capacity {
                break;
            }
            clients.entry(client).or_insert_with(|| {
                Arc::new(Remembered {
                    bucket,
                    last_ns: AtomicU64::new(now.saturating_sub(age)),
                })
            });
        }
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
    fn exported_memory_is_imported_with_its_age() {
        let t = AffinityTable::new(2);
        t.remember(1, 50, 1_000, 100).unwrap();
        t.remember(2, 60, 1_040, 100).unwrap();
        let mut saved = t.export(1_050);
        saved.sort_unstable();
        assert_eq!(saved, vec![(1, 50, 50), (2, 60, 10)]);
        let next = AffinityTable::new(2);
        next.import(&saved, 5_000);
        assert_eq!(next.recall(1, 5_049, 100).map(|r| r.bucket), Some(50));
        assert!(next.recall(1, 5_050, 100).is_none(), "its age came along");
        assert_eq!(next.recall(2, 5_089, 100).map(|r| r.bucket), Some(60));
        next.import(&[(3, 70, 0)], 5_000);
        assert_eq!(next.len(), 2, "bounded");
        assert!(clock_ns() >= CLOCK_ORIGIN_NS);
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
