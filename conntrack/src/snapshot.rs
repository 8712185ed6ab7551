//! A portable copy of the connection table, for handing it to the next process at a graceful
//! restart: every live connection with both keys, its NAT binding, TCP tracking state, mark
//! and timeout class, and the time it has left (not an absolute time: the next process has
//! its own clock).

use serde::{Deserialize, Serialize};

use crate::slab::{Conn, NIL, ProtoState};
use crate::{Conntrack, TimeoutClass, Tuple};

/// One connection as saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedConn {
    orig: Tuple,
    reply: Tuple,
    mark: u32,
    nat: u8,
    seen_reply: bool,
    proto: ProtoState,
    icmp_type_code: (u8, u8),
    class: TimeoutClass,
    /// Nanoseconds before it would have expired.
    remaining_ns: u64,
    /// `ct_label`'s high and low halves (JSON numbers stop at 64 bits); absent in files from
    /// before labels, which had none.
    #[serde(default)]
    label_hi: u64,
    #[serde(default)]
    label_lo: u64,
}

impl SavedConn {
    /// The original-direction key.
    pub fn orig(&self) -> &Tuple {
        &self.orig
    }

    /// The reply-direction key (NAT applied).
    pub fn reply(&self) -> &Tuple {
        &self.reply
    }

    /// A TCP connection that has ended (both FINs seen, or reset): it only waits out its
    /// timeout to absorb late segments.
    pub fn tcp_ended(&self) -> bool {
        matches!(
            self.class,
            TimeoutClass::TcpFinWait | TimeoutClass::TcpClosed
        )
    }
}

/// What [`Conntrack::restore`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub restored: usize,
    /// Refused: the table was full, a key was taken, or the entry did not hold together.
    pub skipped: usize,
}

impl Conntrack {
    /// Every live, unexpired connection at `now`.
    pub fn snapshot(&self, now: u64) -> Vec<SavedConn> {
        let mut out = Vec::with_capacity(self.len());
        let mut next = Some(0);
        while let Some(from) = next {
            next = self.snapshot_chunk(now, from, usize::MAX, &mut out);
        }
        out
    }

    /// Appends to `out` the live, unexpired connections of slab slots `from..from + slots`;
    /// returns the slot to go on from, `None` at the end of the table. A caller can take the
    /// table's lock for one chunk at a time, so that packets wait for one chunk, never for the
    /// whole walk: a connection added or moved between two chunks may then be missed, and
    /// the copy is not one instant's (fine for a checkpoint, which is seconds old anyway).
    pub fn snapshot_chunk(
        &self,
        now: u64,
        from: usize,
        slots: usize,
        out: &mut Vec<SavedConn>,
    ) -> Option<usize> {
        let end = from.saturating_add(slots).min(self.slab.slots());
        out.extend(
            (from..end)
                .filter_map(|i| self.slab.try_get(i as u32))
                .filter(|c| c.live && c.expires > now)
                .map(|c| SavedConn {
                    orig: c.orig,
                    reply: c.reply,
                    mark: c.mark,
                    nat: c.nat,
                    seen_reply: c.seen_reply,
                    proto: c.proto,
                    icmp_type_code: c.icmp_type_code,
                    class: c.class,
                    remaining_ns: c.expires - now,
                    label_hi: (c.label >> 64) as u64,
                    label_lo: c.label as u64,
                }),
        );
        (end < self.slab.slots()).then_some(end)
    }

    /// Adds saved connections as of `now`. Each keeps what it had left of its timeout (never
    /// more than its class's timeout here); one that does not fit or clashes is skipped.
    pub fn restore(&mut self, saved: &[SavedConn], now: u64) -> Restored {
        self.restore_aged(saved, now, 0)
    }

    /// [`restore`](Self::restore), each connection `elapsed_ns` older than saved (the time
    /// the table spent on disk); those whose time ran out are skipped.
    pub fn restore_aged(&mut self, saved: &[SavedConn], now: u64, elapsed_ns: u64) -> Restored {
        self.restore_inner(saved, now, elapsed_ns, false)
    }

    /// [`restore_aged`](Self::restore_aged) for a periodic checkpoint read after a crash: the
    /// peers may have sent much since it was taken, so TCP sequence windows are learned
    /// again from each side's next segment (states, NAT bindings and marks are kept).
    pub fn restore_checkpoint(
        &mut self,
        saved: &[SavedConn],
        now: u64,
        elapsed_ns: u64,
    ) -> Restored {
        self.restore_inner(saved, now, elapsed_ns, true)
    }

    fn restore_inner(
        &mut self,
        saved: &[SavedConn],
        now: u64,
        elapsed_ns: u64,
        relearn: bool,
    ) -> Restored {
        let mut r = Restored::default();
        let seed = self.seed;
        // What each has left here: its time saved, less the time on disk, never more than its
        // class's timeout.
        let timeouts = self.timeouts_ns;
        let left = |s: &SavedConn| {
            s.remaining_ns
                .saturating_sub(elapsed_ns)
                .min(timeouts[s.class as usize])
        };
        // Longest-lived first, each linked at its place by expiry: the expiry lists must stay
        // sorted (`expire` stops at the first head not yet due), whatever the snapshot's
        // order; and a table that cannot take them all keeps those with the most time left.
        let mut order: Vec<u32> = (0..saved.len() as u32).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(left(&saved[i as usize])));
        let mut cursor = [NIL; TimeoutClass::COUNT];
        for s in order.iter().map(|&i| &saved[i as usize]) {
            let coherent = s.orig.zone == s.reply.zone
                && s.orig.family == s.reply.family
                && s.orig.proto == s.reply.proto
                && s.remaining_ns > elapsed_ns;
            // A closed TCP connection does not count against its zone's limit.
            let closed = s.class == TimeoutClass::TcpClosed;
            let orig_hash = s.orig.hash(seed);
            let reply_hash = s.reply.hash(seed);
            if !coherent
                || self.find(orig_hash, &s.orig).is_some()
                || self.find(reply_hash, &s.reply).is_some()
                || !self
                    .shared
                    .charge_restored(s.orig.zone, self.cfg.max_conns, closed)
            {
                r.skipped += 1;
                continue;
            }
            let routed = s.nat != 0 && s.reply != s.orig.reversed();
            if self.shared.shards > 1 && routed && self.shared.claim(&s.reply, self.shard).is_err()
            {
                self.shared
                    .uncharge(s.orig.zone, crate::limits::NO_SLOT, 0, None, closed);
                r.skipped += 1;
                continue;
            }
            let mut proto = s.proto;
            if let (true, ProtoState::Tcp(t)) = (relearn, &mut proto) {
                t.relearn_windows();
            }
            let mut conn = Conn::new(s.orig, s.reply, proto, s.class);
            conn.mark = s.mark;
            conn.nat = s.nat;
            conn.seen_reply = s.seen_reply;
            conn.icmp_type_code = s.icmp_type_code;
            conn.label = (u128::from(s.label_hi) << 64) | u128::from(s.label_lo);
            conn.closed = closed;
            if let Some(k) = crate::dnat_key(&conn) {
                self.shared.add_dnat(k);
            }
            let idx = self
                .slab
                .insert_by_expiry(conn, now.saturating_add(left(s)), &mut cursor);
            self.insert_key(orig_hash, idx, false);
            if s.reply != s.orig {
                self.insert_key(reply_hash, idx, true);
            }
            r.restored += 1;
        }
        r
    }
}
