//! A connection table shared by forwarding threads: S shards, each a [`Conntrack`] behind a
//! mutex of its own, so threads contend only when they touch the same shard at once
//! (probability ~1/S per lookup) instead of on one lock for the whole table.
//!
//! - A packet goes to the shard of its address pair in its zone (a symmetric hash): both
//!   directions of an un-NATed connection, and every fragment of a datagram, meet in one shard.
//! - A connection lives in the shard of its original-direction addresses. NAT gives its reply
//!   other addresses, usually another shard; the reply key is then also entered in a shared
//!   reply index (see `shared.rs`), and a reply packet that finds nothing in its own shard is
//!   run again in the owner's ([`Conntrack`] says so through its `redirect`).
//! - Limits (`max_conns`, zones, sources) and the per-zone and per-DNAT-binding counts are kept
//!   in one shared accounting, charged at commit and released at removal: exact across shards.
//! - A thread holds at most one shard lock at a time ([`Cursor`]): the last shard used stays
//!   locked until another is needed, the cursor is released or dropped. (The datapath releases
//!   it after each `ct`, so another thread never waits for the rest of a packet's pipeline.)
//! - A packet of an existing connection writes nothing shared but its shard's lock word (the
//!   packet count is the cursor's, added to the table when the cursor is dropped).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use encap::FlowKey;

use crate::shared::{self, Shared};
use crate::snapshot::{Restored, SavedConn};
use crate::tuple::{Addr, Family, Tuple};
use crate::{
    Config, ConnEntry, Conntrack, Counters, CtAction, CtError, CtResult, DnatKey, PacketFacts,
    SourceLimit, ZoneLimit,
};
use encap::flowkey::{CT_NEW, CT_TRK};

/// Most shards (the cursor keeps a 64-bit set of shards with released fragments).
pub const MAX_SHARDS: usize = 64;

/// A shard on a cache line of its own: threads locking neighbouring shards do not share a line.
#[repr(align(128))]
struct Padded(Mutex<Conntrack>);

/// A connection table split in shards; see the module documentation.
pub struct Sharded {
    shards: Box<[Padded]>,
    shared: Arc<Shared>,
    cfg: Config,
    /// `Counter::Packets`, added per batch by the cursors (the shards do not count it). On a
    /// cache line of its own: the fields above are read on every lookup by every thread.
    packets: PaddedCount,
    /// `Counter::InvalidMalformed`: packets the caller found unreadable before any lookup.
    malformed: PaddedCount,
    /// `Counter::InvalidL4Checksum`: packets whose L4 checksum the caller found wrong.
    bad_l4_checksum: PaddedCount,
}

#[derive(Default)]
#[repr(align(128))]
struct PaddedCount(AtomicU64);

/// A thread's view of the table during a batch: the shard it holds locked, if any. While it
/// holds one, the same thread must not call the table's other methods (they lock shards too):
/// [`Cursor::release`] first, or drop the cursor.
#[derive(Default)]
pub struct Cursor<'a> {
    held: Option<(u32, MutexGuard<'a, Conntrack>)>,
    /// Shards where fragments wait to be run again.
    released: u64,
    /// Packets run through this cursor, added to the table's count when it is let go: the
    /// shards, which every thread writes, are not written for the count.
    packets: u64,
    /// Unreadable packets noted through this cursor ([`Sharded::note_malformed`]), added the
    /// same way.
    malformed: u64,
    /// Packets with a wrong L4 checksum ([`Sharded::note_bad_l4_checksum`]), the same way.
    bad_l4_checksum: u64,
    table: Option<&'a Sharded>,
}

impl Drop for Cursor<'_> {
    fn drop(&mut self) {
        self.fold_packets();
    }
}

impl<'a> Cursor<'a> {
    fn get(&mut self, table: &'a Sharded, shard: u32) -> &mut Conntrack {
        if self.held.as_ref().is_none_or(|(i, _)| *i != shard) {
            self.held = None;
            self.held = Some((shard, shared::lock(&table.shards[shard as usize].0)));
        }
        &mut self.held.as_mut().expect("just locked").1
    }

    /// Lets the held shard go.
    pub fn release(&mut self) {
        self.held = None;
    }

    fn fold_packets(&mut self) {
        if let Some(t) = self.table {
            t.add_packets(std::mem::take(&mut self.packets));
            for (n, total) in [
                (&mut self.malformed, &t.malformed),
                (&mut self.bad_l4_checksum, &t.bad_l4_checksum),
            ] {
                let n = std::mem::take(n);
                if n != 0 {
                    total.0.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    }

    /// The packets counted so far, no longer added by this cursor: the caller adds them
    /// ([`Sharded::add_packets`]), e.g. once for several batches.
    pub fn take_packets(&mut self) -> u64 {
        std::mem::take(&mut self.packets)
    }

    /// Whether a shard is locked by this cursor.
    pub fn holds_lock(&self) -> bool {
        self.held.is_some()
    }

    /// Whether fragments conntrack held are ready to run again.
    #[inline]
    pub fn has_released_fragments(&self) -> bool {
        self.released != 0
    }
}

impl Sharded {
    /// A table of `shards` shards (1 to [`MAX_SHARDS`]) with `cfg`'s limits for the whole.
    pub fn new(cfg: Config, shards: usize) -> Result<Sharded, CtError> {
        let n = shards.clamp(1, MAX_SHARDS);
        if cfg.max_conns == 0 || cfg.max_conns > 1 << 30 {
            return Err(CtError::BadMaxConns(cfg.max_conns));
        }
        let seed = cfg.hash_seed.unwrap_or_else(crate::random_seed);
        let shared = Arc::new(Shared::new(n as u32, seed, cfg.max_expectations));
        // Each shard is sized for twice its share (plus some): the shared accounting bounds the
        // total, and a shard that gets more than that grows.
        let cap = if n == 1 {
            cfg.max_conns
        } else {
            (cfg.max_conns / n * 2 + 64).min(cfg.max_conns)
        };
        let shards = (0..n as u32)
            .map(|i| {
                Conntrack::new_shard(cfg.clone(), seed, shared.clone(), i, Some(cap))
                    .map(|c| Padded(Mutex::new(c)))
            })
            .collect::<Result<Box<[_]>, _>>()?;
        Ok(Sharded {
            shards,
            shared,
            cfg,
            packets: PaddedCount::default(),
            malformed: PaddedCount::default(),
            bad_l4_checksum: PaddedCount::default(),
        })
    }

    /// Faults in the table's memory now (`Conntrack::prefault`), before the first packet, when
    /// it is one shard (one forwarding thread, the default). Many shards are each small: their
    /// hash tables stay below a huge page, and the first huge page of every slab would make
    /// 2 MiB resident per shard (32 MiB at 16) to spare each shard's first connection one
    /// page's zeroing.
    pub fn prefault(&self) {
        if self.shards.len() == 1 {
            self.lock(0).prefault();
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counts a packet whose headers the caller could not read, so conntrack marks it invalid
    /// without a lookup (`Counter::InvalidMalformed`); added when `cur` is let go, as the
    /// packets it ran are.
    pub fn note_malformed<'a>(&'a self, cur: &mut Cursor<'a>) {
        cur.table = Some(self);
        cur.malformed += 1;
    }

    /// Counts a packet whose TCP, UDP, ICMP or ICMPv6 checksum the caller found wrong, so conntrack
    /// marks it invalid without a lookup (`Counter::InvalidL4Checksum`); added as
    /// [`Sharded::note_malformed`]'s are.
    pub fn note_bad_l4_checksum<'a>(&'a self, cur: &mut Cursor<'a>) {
        cur.table = Some(self);
        cur.bad_l4_checksum += 1;
    }

    /// Adds packets run through `ct` to `Counter::Packets` (see [`Cursor::take_packets`]).
    pub fn add_packets(&self, n: u64) {
        if n != 0 {
            self.packets.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard a packet with this tuple is looked up in first (its addresses' in its zone),
    /// where a connection with it as original tuple lives.
    pub fn home_shard(&self, t: &Tuple) -> usize {
        self.shared.home_of(t) as usize
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Conntrack> {
        shared::lock(&self.shards[i].0)
    }

    /// The shard a packet is looked up in first: its addresses' (an ICMP error: those of the
    /// header it carries).
    fn dispatch(&self, key: &FlowKey, facts: &PacketFacts, zone: u16) -> u32 {
        if self.shards.len() == 1 {
            return 0;
        }
        let (src, dst) = match (crate::extract::error_inner(key, facts), key.eth_type) {
            (Some(inner), _) => (inner.src, inner.dst),
            (None, 0x86dd) => (Addr(key.ipv6_src), Addr(key.ipv6_dst)),
            (None, _) => (Addr::v4(key.nw_src), Addr::v4(key.nw_dst)),
        };
        self.shared.home(zone, &src, &dst)
    }

    /// Runs the `ct` action on one packet (see [`Conntrack::process_frame`]; `frame` `None`
    /// is [`Conntrack::process`]), locking through `cur`.
    #[allow(clippy::too_many_arguments)]
    pub fn process_frame<'a>(
        &'a self,
        cur: &mut Cursor<'a>,
        key: &FlowKey,
        facts: &PacketFacts,
        act: &CtAction<'_>,
        now: u64,
        frame: Option<(&[u8], &FlowKey)>,
    ) -> CtResult {
        let mut shard = self.dispatch(key, facts, act.zone);
        let mut reaped = false;
        let mut evicted = false;
        let mut exclude = None;
        cur.table = Some(self);
        cur.packets += 1;
        // A reply goes on to its owner, which may send a reopened connection back to its home:
        // three hops at most; plus one run again after reaping the other shards for room, one
        // after evicting a closed connection in another shard, and one after a NAT reply key
        // found in use in its home shard.
        // The shard's own fields are written only when set (its cache lines stay clean for the
        // other threads).
        for _ in 0..7 {
            let ct = cur.get(self, shard);
            if reaped {
                ct.reaped = true;
            }
            if evicted {
                ct.evicted_elsewhere = true;
            }
            if exclude.is_some() {
                ct.exclude = exclude;
            }
            // A NAT allocation here also asks the home shard of each candidate reply key,
            // when it is free to look at; when it is not, the check after the commit decides.
            let owner = shard;
            let peek = |t: &Tuple| {
                let h = self.shared.home_of(t);
                if h == owner {
                    return false;
                }
                match self.shards[h as usize].0.try_lock() {
                    Ok(g) => g.key_live(t, now),
                    Err(TryLockError::Poisoned(e)) => e.into_inner().key_live(t, now),
                    Err(TryLockError::WouldBlock) => false,
                }
            };
            let res = ct.process_inner(key, facts, act, now, frame, true, Some(&peek));
            if reaped {
                ct.reaped = false;
            }
            if evicted {
                ct.evicted_elsewhere = false;
            }
            if exclude.is_some() {
                ct.exclude = None;
            }
            let released = ct.has_released_fragments();
            let redirect = if ct.redirect.is_some() {
                ct.redirect.take()
            } else {
                None
            };
            let needs_room = ct.needs_room;
            if needs_room {
                ct.needs_room = false;
            }
            let needs_eviction = ct.needs_eviction;
            if needs_eviction {
                ct.needs_eviction = false;
            }
            let verify = if ct.verify.is_some() {
                ct.verify.take()
            } else {
                None
            };
            if released {
                cur.released |= 1 << shard;
            }
            if needs_room {
                self.reap_others(cur, shard, now);
                reaped = true;
                continue;
            }
            if needs_eviction {
                self.evict_elsewhere(cur, shard, now);
                evicted = true;
                continue;
            }
            if let Some(v) = verify {
                if self.verify_reply(cur, &v, now) {
                    return res;
                }
                if exclude.is_some() {
                    // A second clash in a row: refused, as a clash in one table is.
                    let ct = cur.get(self, v.owner);
                    ct.counters.bump(crate::Counter::DropTupleClash);
                    return CtResult {
                        ct_state: CT_TRK | CT_NEW,
                        ct_zone: res.ct_zone,
                        orig: res.orig,
                        drop: Some(crate::CtDrop::TupleClash),
                        ..CtResult::default()
                    };
                }
                exclude = Some(v.reply);
                shard = v.owner;
                continue;
            }
            match redirect {
                Some(next) => shard = next,
                None => return res,
            }
        }
        let ct = cur.get(self, shard);
        ct.redirect = None;
        ct.invalid(act.zone, crate::InvalidReason::IcmpErrorUnrelated)
    }

    /// After a NAT commit: whether its reply key is free in the key's home shard. The key was
    /// claimed in the reply index before this look, and a connection is created in that shard
    /// only after asking the index, under the shard's lock: so either this look sees the other
    /// connection's key or the other connection saw the claim. When the key is taken, the
    /// commit is undone (the packet then runs again with that key excluded).
    fn verify_reply<'a>(&'a self, cur: &mut Cursor<'a>, v: &crate::Verify, now: u64) -> bool {
        if !cur.get(self, v.home).key_in_use(&v.reply, now) {
            return true;
        }
        cur.get(self, v.owner).undo_commit(v.conn);
        false
    }

    /// Reaps expired connections in the shards other than `home` (a commit there found the
    /// table at a limit and `home` had nothing expired), one shard locked at a time, starting
    /// after `home` and stopping after the first shard that had any.
    fn reap_others<'a>(&'a self, cur: &mut Cursor<'a>, home: u32, now: u64) {
        let n = self.shards.len() as u32;
        for k in 1..n {
            let i = (home + k) % n;
            if cur.get(self, i).expire(now, crate::EXPIRE_ON_FULL) > 0 {
                return;
            }
        }
        self.shared.reaped_nothing(now);
    }

    /// Makes room for a commit in `home`, which found the table full and no closed TCP
    /// connection of its own, one shard locked at a time: evicts the oldest closed TCP
    /// connection of the first shard after `home` that has one; with none anywhere, and no old
    /// enough connection not established in `home`, the oldest such connection of all shards
    /// (a real client's handshake in progress in `home` keeps its place while a flood's older
    /// entries fill another shard). Each search that finds nothing pauses itself
    /// (`Shared::evicted_nothing`), so a flood into a table full of established connections
    /// costs one sweep per interval, not per packet.
    fn evict_elsewhere<'a>(&'a self, cur: &mut Cursor<'a>, home: u32, now: u64) {
        let n = self.shards.len() as u32;
        if self.shared.may_evict(now) {
            for k in 1..n {
                if cur.get(self, (home + k) % n).evict_closed() {
                    return;
                }
            }
            self.shared.evicted_nothing(now);
        }
        // `home` removes its own old one on the packet's next run.
        if cur.get(self, home).has_old_unestablished(now)
            || !self.shared.may_evict_unestablished(now)
        {
            return;
        }
        let oldest = (0..n)
            .filter_map(|i| Some((cur.get(self, i).oldest_unestablished()?.0, i)))
            .min();
        match oldest {
            // Gone if another thread removed it meanwhile: the packet's next run then removes
            // its own shard's oldest, or is refused.
            Some((_, i)) => {
                cur.get(self, i).evict_unestablished();
            }
            None => self.shared.evicted_no_unestablished(now),
        }
    }

    /// Takes a held fragment whose first fragment has passed (see
    /// [`Conntrack::take_released_fragment`]).
    pub fn take_released_fragment<'a>(
        &'a self,
        cur: &mut Cursor<'a>,
        out: &mut Vec<u8>,
    ) -> Option<FlowKey> {
        while cur.released != 0 {
            let shard = cur.released.trailing_zeros();
            let ct = cur.get(self, shard);
            let meta = ct.take_released_fragment(out);
            let more = ct.has_released_fragments();
            if !more {
                cur.released &= !(1 << shard);
            }
            if meta.is_some() {
                return meta;
            }
        }
        None
    }

    /// Fragments waiting in the shards' holds for their first fragment.
    pub fn held_fragments(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).held_fragments())
            .sum()
    }

    /// Live connections (including expired ones not yet reaped).
    pub fn len(&self) -> usize {
        self.shared.acct().live
    }

    /// ALG expectations waiting for their data connection (expired ones not yet swept
    /// included).
    pub fn expectations(&self) -> usize {
        self.shared.expect.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shards' counters, added up.
    pub fn counters(&self) -> Counters {
        let mut sum = Counters::default();
        for i in 0..self.shards.len() {
            sum.merge(self.lock(i).counters());
        }
        sum.add(
            crate::Counter::Packets,
            self.packets.0.load(Ordering::Relaxed),
        );
        sum.add(
            crate::Counter::InvalidMalformed,
            self.malformed.0.load(Ordering::Relaxed),
        );
        sum.add(
            crate::Counter::InvalidL4Checksum,
            self.bad_l4_checksum.0.load(Ordering::Relaxed),
        );
        sum
    }

    /// Reaps at most `budget` expired connections, shard by shard (one lock each).
    pub fn expire(&self, now: u64, budget: usize) -> usize {
        let per = budget.div_ceil(self.shards.len()).max(1);
        (0..self.shards.len())
            .map(|i| self.lock(i).expire(now, per))
            .sum()
    }

    /// Deletes every connection (of `zone` if given); returns how many.
    pub fn flush(&self, zone: Option<u16>) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).flush(zone))
            .sum()
    }

    /// See [`Conntrack::flush_marked`].
    pub fn flush_marked(&self, zone: u16, mask: u32) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).flush_marked(zone, mask))
            .sum()
    }

    /// See [`Conntrack::flush_addresses`].
    pub fn flush_addresses(&self, addrs: &[Addr]) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).flush_addresses(addrs))
            .sum()
    }

    /// All live connections, shard by shard.
    pub fn dump(&self, now: u64) -> Vec<ConnEntry> {
        let mut v = Vec::with_capacity(self.len());
        for i in 0..self.shards.len() {
            v.extend(self.lock(i).dump(now));
        }
        v
    }

    /// The connection a tuple belongs to (either direction), with whether it is the reply key.
    pub fn lookup(&self, t: &Tuple, now: u64) -> Option<(ConnEntry, bool)> {
        let home = self.shared.home_of(t);
        if let Some(found) = self.lock(home as usize).lookup(t, now) {
            return Some(found);
        }
        let owner = self.shared.route(t)?;
        self.lock(owner as usize).lookup(t, now)
    }

    /// Every live, unexpired connection (see [`Conntrack::snapshot`]).
    pub fn snapshot(&self, now: u64) -> Vec<SavedConn> {
        let mut v = Vec::new();
        for i in 0..self.shards.len() {
            v.extend(self.lock(i).snapshot(now));
        }
        v
    }

    /// [`Conntrack::snapshot_chunk`] on shard `shard` (locked for that chunk only).
    pub fn snapshot_chunk(
        &self,
        shard: usize,
        now: u64,
        from: usize,
        slots: usize,
        out: &mut Vec<SavedConn>,
    ) -> Option<usize> {
        self.lock(shard).snapshot_chunk(now, from, slots, out)
    }

    fn restore_with(
        &self,
        saved: &[SavedConn],
        f: impl Fn(&mut Conntrack, &[SavedConn]) -> Restored,
    ) -> Restored {
        let mut by_shard: Vec<Vec<SavedConn>> = vec![Vec::new(); self.shards.len()];
        for s in saved {
            by_shard[self.shared.home_of(s.orig()) as usize].push(*s);
        }
        let mut r = Restored::default();
        for (i, part) in by_shard.iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            let p = f(&mut self.lock(i), part);
            r.restored += p.restored;
            r.skipped += p.skipped;
        }
        r
    }

    /// See [`Conntrack::restore`].
    pub fn restore(&self, saved: &[SavedConn], now: u64) -> Restored {
        self.restore_with(saved, |ct, part| ct.restore(part, now))
    }

    /// See [`Conntrack::restore_aged`].
    pub fn restore_aged(&self, saved: &[SavedConn], now: u64, elapsed_ns: u64) -> Restored {
        self.restore_with(saved, |ct, part| ct.restore_aged(part, now, elapsed_ns))
    }

    /// See [`Conntrack::restore_checkpoint`].
    pub fn restore_checkpoint(&self, saved: &[SavedConn], now: u64, elapsed_ns: u64) -> Restored {
        self.restore_with(saved, |ct, part| {
            ct.restore_checkpoint(part, now, elapsed_ns)
        })
    }

    pub fn set_default_zone_limit(&self, limit: u32) {
        self.shared.acct().limits.set_default(limit);
    }

    pub fn set_zone_limit(&self, zone: u16, limit: u32) {
        self.shared.acct().limits.set_zone(zone, limit);
    }

    pub fn del_zone_limit(&self, zone: u16) -> bool {
        self.shared.acct().limits.del_zone(zone)
    }

    pub fn default_zone_limit(&self) -> u32 {
        self.shared.acct().limits.default_limit()
    }

    pub fn zone_limit(&self, zone: u16) -> ZoneLimit {
        self.shared.zone_limit(zone)
    }

    pub fn zone_limits(&self) -> Vec<ZoneLimit> {
        self.shared.zone_limits()
    }

    /// See [`Conntrack::set_source_limits`]; the live connections of new sources are counted
    /// shard by shard.
    pub fn set_source_limits(&self, wanted: &[(u16, Family, Addr, u32)]) {
        let new = self.shared.acct().limits.replace_sources(wanted);
        for i in 0..self.shards.len() {
            self.lock(i).charge_new_sources(&new);
        }
    }

    pub fn source_limits(&self) -> Vec<SourceLimit> {
        self.shared.acct().limits.sources()
    }

    /// Live connections per zone (zones with any), from the running counts: no table walk.
    pub fn zone_counts(&self) -> Vec<(u16, u32)> {
        self.shared.zone_counts()
    }

    /// Live connections per DNAT binding, from the running counts: no table walk.
    pub fn dnat_counts(&self) -> Vec<(DnatKey, u32)> {
        self.shared.dnat_counts()
    }
}
