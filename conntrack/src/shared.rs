//! What the shards of one connection table share ([`crate::Sharded`]; a lone [`crate::Conntrack`]
//! has the same, used by itself).
//!
//! - **Accounting** (one small mutex, taken once per commit and once per removal, never per
//!   packet): live connections against `max_conns`, live connections per zone against the zone
//!   limits, source limits, and live connections per DNAT binding (frontend → backend), so
//!   `ct-get-limits` and a metrics scrape read counts instead of walking the table.
//! - **The reply index** (only with more than one shard): every NAT binding's reply key, with
//!   the shard that owns its connection. A connection lives in the shard of its address pair
//!   (a symmetric hash, so both directions of an un-NATed connection, and every fragment of a
//!   datagram, land in the same shard); NAT changes the reply's addresses, so a reply packet is
//!   sent on to the owner through this index. It also makes NAT bindings unique across shards.
//!
//! Lock order: one shard at a time; the accounting and reply-index mutexes are leaves (nothing
//! else is locked while one is held).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hashbrown::{HashMap, HashTable};

use crate::CtDrop;
use crate::limits::{self, Limits, ZONES, ZoneLimit};
use crate::tuple::{Addr, Family, Tuple};

/// Connections of one DNAT binding: a frontend (`orig` destination) and the backend it was
/// translated to (the reply's source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnatKey {
    pub zone: u16,
    pub family: Family,
    pub proto: u8,
    pub frontend: Addr,
    pub frontend_port: u16,
    pub backend: Addr,
    pub backend_port: u16,
}

pub(crate) struct Acct {
    pub live: usize,
    /// Live connections per zone (closed TCP ones included: the table still holds them).
    pub zone_live: Box<[u32]>,
    /// Of those, closed TCP connections (TIME_WAIT, reset), which no longer count against
    /// the zone's limit (Linux's `nf_conncount` skips them too).
    pub zone_closed: Box<[u32]>,
    pub limits: Limits,
    /// Touched at every DNAT commit and removal: hashbrown's randomly seeded fast hash
    /// rather than SipHash.
    pub dnat: HashMap<DnatKey, u32>,
}

/// Reply keys of NAT bindings with the shard owning each.
type RouteShard = Mutex<HashTable<(Tuple, u32)>>;

pub(crate) struct Shared {
    pub shards: u32,
    /// ALG expectations, for every shard (a data connection's addresses may hash elsewhere).
    pub expect: crate::alg::expect::Expectations,
    seed: u64,
    acct: Mutex<Acct>,
    routes: Box<[RouteShard]>,
    /// A commit at a limit does not reap other shards while this pauses it: the last such
    /// reaping found nothing expired anywhere.
    reap: Pause,
    /// Likewise for evicting a closed TCP connection of another shard: the last look found
    /// none in any shard.
    evict: Pause,
    /// The same for connections not established (`Conntrack::evict_unestablished`).
    evict_unestablished: Pause,
}

/// Until when (the callers' clock, ns) a search of the other shards that found nothing is
/// not made again.
#[derive(Default)]
struct Pause(AtomicU64);

impl Pause {
    #[inline]
    fn over(&self, now: u64) -> bool {
        now >= self.0.load(Ordering::Relaxed)
    }

    fn start(&self, now: u64) {
        self.0
            .fetch_max(now.saturating_add(IDLE_REAP_INTERVAL_NS), Ordering::Relaxed);
    }
}

/// After a reaping of every shard that found nothing expired, commits at a limit wait this
/// long before reaping other shards again (a flood of new connections into a table full of
/// live ones costs one sweep per interval, not one per packet; the periodic expiry goes on).
pub(crate) const IDLE_REAP_INTERVAL_NS: u64 = 1_000_000;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(shards: u32, seed: u64, max_expectations: usize) -> Shared {
        let routes = if shards > 1 { shards } else { 0 };
        Shared {
            shards,
            expect: crate::alg::expect::Expectations::new(max_expectations, seed),
            seed: encap::hash::fmix64(seed ^ 0x3c6e_f372_fe94_f82b),
            acct: Mutex::new(Acct {
                live: 0,
                zone_live: vec![0; ZONES].into_boxed_slice(),
                zone_closed: vec![0; ZONES].into_boxed_slice(),
                limits: Limits::default(),
                dnat: HashMap::new(),
            }),
            routes: (0..routes).map(|_| Mutex::new(HashTable::new())).collect(),
            reap: Pause::default(),
            evict: Pause::default(),
            evict_unestablished: Pause::default(),
        }
    }

    /// Whether a commit at a limit may reap the other shards now.
    #[inline]
    pub fn may_reap(&self, now: u64) -> bool {
        self.reap.over(now)
    }

    /// A reaping of the other shards at `now` found nothing expired.
    pub fn reaped_nothing(&self, now: u64) {
        self.reap.start(now);
    }

    /// Whether a commit into a full table may look for a closed connection to evict in the
    /// other shards now.
    #[inline]
    pub fn may_evict(&self, now: u64) -> bool {
        self.evict.over(now)
    }

    /// A look at `now` found no closed connection in any other shard.
    pub fn evicted_nothing(&self, now: u64) {
        self.evict.start(now);
    }

    /// Whether a commit into a full table, with no closed connection and none that is not
    /// established in its own shard, may look for one not established in the other shards now.
    #[inline]
    pub fn may_evict_unestablished(&self, now: u64) -> bool {
        self.evict_unestablished.over(now)
    }

    /// A look at `now` found no connection that is not established in any other shard.
    pub fn evicted_no_unestablished(&self, now: u64) {
        self.evict_unestablished.start(now);
    }

    pub fn acct(&self) -> MutexGuard<'_, Acct> {
        lock(&self.acct)
    }

    /// The shard of a packet or connection between `a` and `b` in `zone` (either order).
    #[inline]
    pub fn home(&self, zone: u16, a: &Addr, b: &Addr) -> u32 {
        if self.shards <= 1 {
            return 0;
        }
        let h = |x: &Addr| {
            let mut lo = [0u8; 8];
            let mut hi = [0u8; 8];
            lo.copy_from_slice(&x.0[..8]);
            hi.copy_from_slice(&x.0[8..]);
            encap::hash::fmix64(u64::from_ne_bytes(lo) ^ self.seed)
                ^ encap::hash::fmix64(u64::from_ne_bytes(hi).wrapping_add(self.seed))
        };
        let sym = h(a).wrapping_add(h(b)) ^ u64::from(zone);
        let h = encap::hash::fmix64(sym);
        (((h >> 32) * u64::from(self.shards)) >> 32) as u32
    }

    #[inline]
    pub fn home_of(&self, t: &Tuple) -> u32 {
        self.home(t.zone, &t.src, &t.dst)
    }

    fn route_shard(&self, t: &Tuple) -> (&RouteShard, u64) {
        let h = t.hash(self.seed);
        let i = (((h >> 32) * self.routes.len() as u64) >> 32) as usize;
        (&self.routes[i], h)
    }

    /// The shard owning the connection whose NAT reply key is `t`.
    pub fn route(&self, t: &Tuple) -> Option<u32> {
        if self.routes.is_empty() {
            return None;
        }
        let (m, h) = self.route_shard(t);
        lock(m).find(h, |e| e.0 == *t).map(|e| e.1)
    }

    /// Records `t` as the reply key of a connection of `owner`; the owner already there if
    /// another connection has it.
    pub fn claim(&self, t: &Tuple, owner: u32) -> Result<(), u32> {
        if self.routes.is_empty() {
            return Ok(());
        }
        let (m, h) = self.route_shard(t);
        let seed = self.seed;
        let mut g = lock(m);
        if let Some(e) = g.find(h, |e| e.0 == *t) {
            return Err(e.1);
        }
        g.insert_unique(h, (*t, owner), |e| e.0.hash(seed));
        Ok(())
    }

    pub fn unroute(&self, t: &Tuple, owner: u32) {
        if self.routes.is_empty() {
            return;
        }
        let (m, h) = self.route_shard(t);
        if let Ok(e) = lock(m).find_entry(h, |e| e.0 == *t && e.1 == owner) {
            e.remove();
        }
    }

    /// Counts a new connection of `t` if its zone, its source and the table have room:
    /// the source slot and generation it is counted against.
    pub fn charge(&self, t: &Tuple, max: usize) -> Result<(u32, u32), CtDrop> {
        let mut a = self.acct();
        let z = t.zone as usize;
        let limit = a.limits.zone(t.zone);
        if limit != 0 && a.zone_live[z].saturating_sub(a.zone_closed[z]) >= limit {
            return Err(CtDrop::ZoneLimit);
        }
        let slot = if a.limits.has_sources() {
            match a.limits.source(t.zone, t.family, &t.src) {
                Some((_, true)) => return Err(CtDrop::SourceLimit),
                Some((i, false)) => Some(i),
                None => None,
            }
        } else {
            None
        };
        if a.live >= max {
            return Err(CtDrop::TableFull);
        }
        a.live += 1;
        a.zone_live[z] += 1;
        Ok(match slot {
            Some(i) => (i, a.limits.charge(i)),
            None => (limits::NO_SLOT, 0),
        })
    }

    /// Counts a restored connection (only the table's own limit applies); a `closed` one
    /// (closed TCP) does not count against its zone's limit.
    pub fn charge_restored(&self, zone: u16, max: usize, closed: bool) -> bool {
        let mut a = self.acct();
        if a.live >= max {
            return false;
        }
        a.live += 1;
        a.zone_live[zone as usize] += 1;
        if closed {
            a.zone_closed[zone as usize] += 1;
        }
        true
    }

    /// A TCP connection counted by `charge` has closed: it stays in the table (and in its
    /// zone's count of live connections) but no longer holds a place against its zone's and
    /// its source's limits. Once per connection.
    pub fn closed(&self, zone: u16, slot: u32, generation: u32) {
        let mut a = self.acct();
        a.zone_closed[zone as usize] += 1;
        if slot != limits::NO_SLOT {
            a.limits.release(slot, generation);
        }
    }

    /// A connection counted by `charge` ended (or was never stored); `closed` if `closed`
    /// was called for it.
    pub fn uncharge(
        &self,
        zone: u16,
        slot: u32,
        generation: u32,
        dnat: Option<DnatKey>,
        closed: bool,
    ) {
        let mut a = self.acct();
        a.live = a.live.saturating_sub(1);
        let z = &mut a.zone_live[zone as usize];
        *z = z.saturating_sub(1);
        if closed {
            let z = &mut a.zone_closed[zone as usize];
            *z = z.saturating_sub(1);
        }
        if slot != limits::NO_SLOT {
            a.limits.release(slot, generation);
        }
        if let Some(k) = dnat
            && let Some(n) = a.dnat.get_mut(&k)
        {
            *n -= 1;
            if *n == 0 {
                a.dnat.remove(&k);
            }
        }
    }

    pub fn add_dnat(&self, k: DnatKey) {
        *self.acct().dnat.entry(k).or_default() += 1;
    }

    pub fn zone_limit(&self, zone: u16) -> ZoneLimit {
        let a = self.acct();
        ZoneLimit {
            zone,
            limit: a.limits.zone(zone),
            count: a.zone_live[zone as usize].saturating_sub(a.zone_closed[zone as usize]),
        }
    }

    pub fn zone_limits(&self) -> Vec<ZoneLimit> {
        let a = self.acct();
        a.limits
            .own()
            .map(|(zone, limit)| ZoneLimit {
                zone,
                limit,
                count: a.zone_live[zone as usize].saturating_sub(a.zone_closed[zone as usize]),
            })
            .collect()
    }

    pub fn zone_counts(&self) -> Vec<(u16, u32)> {
        let a = self.acct();
        a.zone_live
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != 0)
            .map(|(z, n)| (z as u16, *n))
            .collect()
    }

    pub fn dnat_counts(&self) -> Vec<(DnatKey, u32)> {
        let a = self.acct();
        let mut v: Vec<_> = a.dnat.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort_unstable();
        v
    }
}
