//! Connection tracking, NAT bindings and the `ct` action's semantics.
//!
//! What it promises (Open vSwitch's `ct(commit, zone=N, nat(...))`, userspace datapath):
//! - Connections are keyed by zone + 5-tuple; each connection is stored once (in a slab) and
//!   indexed twice in one hash table — by its original tuple and by its reply tuple — so a
//!   packet of either direction is found with one lookup.
//! - Only committed connections are remembered. An uncommitted new connection gets
//!   `+trk+new` and leaves no trace.
//! - `ct_state`: `trk` always; `new` until the reply direction has been seen, `est` after;
//!   `rpl` for reply-direction packets; `rel` for ICMP errors about a connection and for the
//!   data connections an ALG announced (`alg`: `ct(commit,alg=ftp|tftp)`); `inv` for
//!   packets conntrack rejects (`CtResult::invalid` says why); `snat`/`dnat` when this packet's
//!   source/destination is rewritten.
//! - NAT is chosen at commit and undone automatically for replies; `CtResult::rewrite` says
//!   what the caller must write into the packet.
//! - The table is bounded (`Config::max_conns`): a new connection that does not fit is refused
//!   (`CtDrop::TableFull`) and counted. Live connections are never evicted early; closed TCP
//!   ones (TIME_WAIT, kept only for late segments) are, oldest first, to make room, as the
//!   kernel's conntrack does (`early_drop`): otherwise a node opening short connections faster
//!   than `max_conns` / 30 s would fill its table with them and refuse every new one. A shard
//!   with none of its own evicts another shard's (`Sharded::evict_elsewhere`).
//! - Below that, zones and source addresses within a zone may have limits of their own
//!   (`set_zone_limit`, `set_source_limits`; `ct-set-limits` in OVS): a commit over its
//!   zone's or its source's limit is refused (`CtDrop::ZoneLimit`, `CtDrop::SourceLimit`).
//!   Closed TCP connections do not count against these (Linux's `nf_conncount`), only
//!   against the table's own limit.
//! - Nothing allocates per packet once built: the slab, the hash table, the fragment store and
//!   the out-of-order fragment hold are sized at construction.
//! - A non-first fragment that arrives before its first fragment is held (a copy, bounded in
//!   count, size and time) when the caller gives the frame (`process_frame`), and handed back
//!   (`take_released_fragment`) once the first fragment has passed.
//!
//! Time is a caller-supplied monotonic `now` in nanoseconds, which keeps tests deterministic.
//! See docs/conntrack.md for the state machine, timeouts and the NAT allocation order.

#![forbid(unsafe_code)]

pub mod alg;
pub mod counters;
pub mod dump;
mod extract;
mod frag;
mod fraghold;
pub mod lb;
pub mod limits;
pub mod nat;
mod prefault;
mod sharded;
mod shared;
mod slab;
pub mod snapshot;
pub mod tcp;
pub mod timeouts;
pub mod tuple;

pub use alg::{Alg, PayloadEdit, TcpFix};
pub use counters::{Counter, Counters};
pub use dump::ConnEntry;
pub use extract::{InnerTuple, InvalidReason, PacketFacts};
pub use limits::{SourceLimit, ZoneLimit};
pub use nat::{NatError, NatRange, NatSpec, PortSelect};
pub use sharded::{Cursor, Sharded};
pub use shared::DnatKey;
pub use tcp::{TcpInvalid, TcpState, WindowScale};
pub use timeouts::{TimeoutClass, Timeouts};
pub use tuple::{Addr, Family, Tuple};

use alg::{ALG_FTP, ALG_TFTP, AlgConn};
use encap::flowkey::{
    CT_DNAT, CT_EST, CT_INV, CT_NEW, CT_REL, CT_RPL, CT_SNAT, CT_TRK, FRAG_ANY, FRAG_LATER, FlowKey,
};
use extract::{Extracted, Kind};
use hashbrown::HashTable;
use nat::{AllocRequest, NAT_DST, NAT_SRC};
use slab::{Conn, ProtoState, Slab};
use std::sync::Arc;
use std::time::Duration;
use tcp::{TcpConn, TcpSegment, TcpVerdict};
use thiserror::Error;
use tuple::{PROTO_TCP, PROTO_UDP};

/// Connections expired opportunistically when a commit finds the table full.
const EXPIRE_ON_FULL: usize = 32;

/// A shard whose oldest connection not established was seen this long ago removes it to make
/// room without looking at the other shards (`Conntrack::has_old_unestablished`): longer than
/// a handshake takes, shorter than a flood's entries live in a table it keeps full.
const LOCAL_EVICT_AGE_NS: u64 = 1_000_000_000;

/// The timeout classes of connections that are not established, which a full table may
/// remove early: a TCP handshake not completed (a spoofed SYN answered by a backend waits in
/// `TcpOpening`), UDP and ICMP heard from the initiator only.
const UNESTABLISHED: [TimeoutClass; 5] = [
    TimeoutClass::TcpFirst,
    TimeoutClass::TcpOpening,
    TimeoutClass::OtherFirst,
    TimeoutClass::OtherMultiple,
    TimeoutClass::IcmpFirst,
];
/// A refresh that moves the expiry by less than this (or 1/16 of the timeout, if smaller) is
/// skipped, so steady traffic does not relink its connection on every packet.
const REFRESH_GRANULARITY_NS: u64 = 1_000_000_000;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CtError {
    #[error("conntrack max_conns must be between 1 and 2^30, got {0}")]
    BadMaxConns(usize),
    #[error("conntrack frag_slots must be at least 1")]
    NoFragSlots,
}

/// Conntrack configuration. `Default` follows OVS's userspace defaults where OVS has one.
#[derive(Clone, Debug)]
pub struct Config {
    /// Table limit; committing beyond it is refused with `CtDrop::TableFull`.
    pub max_conns: usize,
    pub timeouts: Timeouts,
    /// Mark clearly out-of-window TCP segments invalid (OVS `ct-tcp-seq-chk`).
    pub tcp_seq_check: bool,
    /// Let a mid-stream TCP ACK open a connection (Linux `nf_conntrack_tcp_loose`).
    pub tcp_pickup: bool,
    /// Upper bound on candidate bindings probed for one NAT allocation.
    pub nat_max_probes: u32,
    /// Size of the first-fragment store.
    pub frag_slots: usize,
    pub frag_max_age: Duration,
    /// Out-of-order fragments held at most at once (0: none are held, they are invalid).
    pub frag_hold_slots: usize,
    /// Largest frame (Ethernet header included) that can be held.
    pub frag_hold_bytes: usize,
    /// How long a held fragment waits for its first fragment before it is dropped.
    pub frag_hold_timeout: Duration,
    /// Hash key; `None` draws a random one (recommended: flooding attacks).
    pub hash_seed: Option<u64>,
    /// ALG expectations stored at most at once (all shards); an announcement beyond is
    /// dropped and counted (`alg_expectation_table_full`).
    pub max_expectations: usize,
    /// How long an announced data connection may take to start.
    pub expectation_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_conns: 1 << 18,
            timeouts: Timeouts::default(),
            tcp_seq_check: true,
            tcp_pickup: true,
            nat_max_probes: 4096,
            frag_slots: 1024,
            frag_max_age: Duration::from_secs(30),
            frag_hold_slots: 64,
            frag_hold_bytes: 2048,
            frag_hold_timeout: Duration::from_secs(5),
            hash_seed: None,
            max_expectations: 4096,
            expectation_timeout: Duration::from_secs(300),
        }
    }
}

/// The `ct(...)` action's arguments.
#[derive(Clone, Copy, Debug, Default)]
pub struct CtAction<'a> {
    pub zone: u16,
    pub commit: bool,
    /// `nat` present: apply (and, with a range on commit, create) the NAT binding.
    pub nat: Option<&'a NatSpec>,
    /// `exec(set_field:VALUE/MASK->ct_mark)`: applied when committing.
    pub mark: Option<(u32, u32)>,
    /// `exec(set_field:VALUE/MASK->ct_label)`: applied when committing.
    pub label: Option<(u128, u128)>,
    /// `force`: a committing packet in the reply direction replaces the connection.
    pub force: bool,
    /// `alg=ftp|tftp`: a connection committed with it is an ALG control connection.
    pub alg: Option<Alg>,
}

/// A handle on a stored connection; stale handles (the slot was reused) are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub index: u32,
    pub generation: u32,
}

/// Why conntrack refuses a packet outright (the caller must drop it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtDrop {
    TableFull,
    NatExhausted,
    /// The new connection's reply tuple is already another connection's key.
    TupleClash,
    /// Its zone holds as many connections as its limit allows.
    ZoneLimit,
    /// Its source address holds as many connections in the zone as its limit allows.
    SourceLimit,
}

/// What to write into the packet. Addresses are the new IP header values; ports the new L4
/// ports (for ICMP echo, `sport` == `dport` == the new echo id). For an ICMP error the
/// addresses are the outer header's, the ports are 0 and `inner` holds the embedded header's
/// new addresses and ports. For a non-first fragment, write the addresses only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub inner: Option<Tuple>,
}

/// The outcome of `process`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtResult {
    /// `CT_*` bits of `encap::flowkey`.
    pub ct_state: u8,
    pub ct_mark: u32,
    pub ct_label: u128,
    pub ct_zone: u16,
    /// The original-direction tuple of the packet's connection (`ct_nw_src`, ... `ct_tp_dst`),
    /// with the ICMP type and code of its first packet: the stored connection's, or for a new
    /// uncommitted packet its own; `None` for an invalid packet.
    pub orig: Option<(Tuple, (u8, u8))>,
    pub conn: Option<ConnId>,
    pub rewrite: Option<Rewrite>,
    pub drop: Option<CtDrop>,
    pub invalid: Option<InvalidReason>,
    /// The packet was a fragment ahead of its first fragment and conntrack kept a copy
    /// (`process_frame` only): the caller must not forward it now; it comes back through
    /// `take_released_fragment`.
    pub held: bool,
    /// An FTP control packet under NAT: sequence numbers to shift and the announced address
    /// to rewrite (see [`TcpFix`]).
    pub tcp_fix: Option<TcpFix>,
}

/// A NAT binding committed in shard `owner` whose reply key is homed in shard `home`.
#[derive(Clone, Copy, Debug)]
struct Verify {
    home: u32,
    owner: u32,
    reply: Tuple,
    conn: ConnId,
}

/// A key of the table: connection `conn`'s original tuple, or its reply tuple when `reply`.
/// The tuple itself is read from the slab (`Conn::key`): 8 bytes a bucket instead of 48, so
/// the table of a default-sized conntrack is 8 MiB instead of 48 (fewer pages first touched
/// as it fills, more of it in cache), and a hit loads the connection it needs next anyway.
#[derive(Clone, Copy, Debug)]
struct Entry {
    conn: u32,
    reply: bool,
}

/// A connection table, or one shard of a [`Sharded`] one. It does no locking of its own; the
/// accounting it shares with the other shards (limits, counts, the NAT reply index) does.
pub struct Conntrack {
    cfg: Config,
    timeouts_ns: [u64; TimeoutClass::COUNT],
    seed: u64,
    table: HashTable<Entry>,
    slab: Slab,
    frags: frag::FragTracker,
    hold: fraghold::FragHold,
    shared: Arc<shared::Shared>,
    /// This table's index among the shards (0 alone).
    shard: u32,
    /// Set when the packet just processed belongs to another shard (its connection lives there,
    /// or a new one must be created there): the caller runs it again in that shard.
    redirect: Option<u32>,
    /// Set when a commit found the table at a limit and this shard had nothing expired to
    /// reap: the caller reaps the other shards (`Sharded::reap_others`) and runs the packet
    /// again here with `reaped` set.
    needs_room: bool,
    /// The other shards were just reaped for this packet: a limit now refuses for good.
    reaped: bool,
    /// Set when a commit found the table full and this shard had no closed TCP connection to
    /// evict: the caller evicts one in another shard (`Sharded::evict_elsewhere`) and runs the
    /// packet again here with `evicted_elsewhere` set.
    needs_eviction: bool,
    /// Another shard was just asked for a closed connection to evict for this packet.
    evicted_elsewhere: bool,
    /// Set when a NAT binding just committed here has its reply key homed in another shard:
    /// the caller checks that shard's own keys (`Sharded::verify_reply`).
    verify: Option<Verify>,
    /// A reply key the NAT allocation must not choose (it clashed with a key of its home
    /// shard on the previous run of this packet).
    exclude: Option<Tuple>,
    counters: Counters,
    rng: u64,
    expire_cursor: usize,
    /// ALG state of the connections that have some (related ones, FTP ones under NAT), by
    /// slab index.
    alg_conns: hashbrown::HashMap<u32, AlgConn>,
    /// When `expire` next sweeps the expectations.
    next_expect_sweep: u64,
}

impl Conntrack {
    /// Faults in the memory the first connections would write (the hash table, the slab's
    /// head) now, off the packet path; see `prefault`. For a long-lived table, after `new`.
    pub fn prefault(&mut self) {
        prefault::hash_table(
            &mut self.table,
            Entry {
                conn: 0,
                reply: false,
            },
        );
        self.slab.prefault();
    }

    pub fn new(cfg: Config) -> Result<Conntrack, CtError> {
        let seed = cfg.hash_seed.unwrap_or_else(random_seed);
        let shared = Arc::new(shared::Shared::new(1, seed, cfg.max_expectations));
        Self::new_shard(cfg, seed, shared, 0, None)
    }

    /// One shard of a table: `capacity` sizes its slab and hash table (the shared accounting
    /// bounds the total).
    fn new_shard(
        cfg: Config,
        seed: u64,
        shared: Arc<shared::Shared>,
        shard: u32,
        capacity: Option<usize>,
    ) -> Result<Conntrack, CtError> {
        if cfg.max_conns == 0 || cfg.max_conns > 1 << 30 {
            return Err(CtError::BadMaxConns(cfg.max_conns));
        }
        if cfg.frag_slots == 0 {
            return Err(CtError::NoFragSlots);
        }
        let cap = capacity.unwrap_or(cfg.max_conns);
        let frag_age = u64::try_from(cfg.frag_max_age.as_nanos()).unwrap_or(u64::MAX);
        Ok(Conntrack {
            timeouts_ns: cfg.timeouts.to_nanos(),
            seed,
            table: HashTable::with_capacity(cap * 2),
            slab: Slab::with_capacity(cap),
            frags: frag::FragTracker::new(cfg.frag_slots, frag_age, seed ^ 0x5bd1_e995),
            hold: fraghold::FragHold::new(
                cfg.frag_hold_slots,
                cfg.frag_hold_bytes,
                u64::try_from(cfg.frag_hold_timeout.as_nanos()).unwrap_or(u64::MAX),
            ),
            shared,
            shard,
            redirect: None,
            needs_room: false,
            reaped: false,
            needs_eviction: false,
            evicted_elsewhere: false,
            verify: None,
            exclude: None,
            counters: Counters::default(),
            rng: encap::hash::fmix64(seed ^ 0xa076_1d64_78bd_642f ^ u64::from(shard)) | 1,
            expire_cursor: 0,
            alg_conns: hashbrown::HashMap::new(),
            next_expect_sweep: 0,
            cfg,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Live (committed, not yet reaped) connections.
    pub fn len(&self) -> usize {
        self.slab.live()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// ALG expectations waiting for their data connection (shared by all shards; expired
    /// ones not yet swept included).
    pub fn expectations(&self) -> usize {
        self.shared.expect.len()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Runs the `ct` action on one packet.
    pub fn process(
        &mut self,
        key: &FlowKey,
        facts: &PacketFacts,
        act: &CtAction<'_>,
        now: u64,
    ) -> CtResult {
        self.process_inner(key, facts, act, now, None, false, None)
    }

    /// [`process`](Self::process) with the packet's bytes at hand: a non-first fragment whose
    /// first fragment has not passed yet is copied into the fragment hold instead of being
    /// marked invalid (`CtResult::held`; the caller must consume the packet). `meta` is what
    /// the caller needs to run it again (its in_port, tunnel fields); it is returned by
    /// [`take_released_fragment`](Self::take_released_fragment) once the first fragment has
    /// passed. A fragment the hold cannot take (full, frame too large) is invalid, as before.
    /// An IPv6 fragment's datagram is named by its addresses and `facts.ip_id`, which must be
    /// its Fragment header's identification (with 0 for all, the datagrams between two hosts
    /// would be one).
    pub fn process_frame(
        &mut self,
        key: &FlowKey,
        facts: &PacketFacts,
        act: &CtAction<'_>,
        now: u64,
        frame: &[u8],
        meta: &FlowKey,
    ) -> CtResult {
        self.process_inner(key, facts, act, now, Some((frame, meta)), false, None)
    }

    /// Whether held fragments are ready to run again (cheap: check it after each packet).
    #[inline]
    pub fn has_released_fragments(&self) -> bool {
        self.hold.released() > 0
    }

    /// Fragments waiting in the hold for their first fragment.
    pub fn held_fragments(&self) -> usize {
        self.hold.held()
    }

    /// Takes the oldest held fragment whose first fragment has now passed: its frame is copied
    /// into `out` (capacity reused) and the `meta` it was held with is returned.
    pub fn take_released_fragment(&mut self, out: &mut Vec<u8>) -> Option<FlowKey> {
        self.hold.take_released(out)
    }

    /// `peek` (sharded tables): whether a key is in use in another shard, when that shard can
    /// be looked at without waiting (see `Sharded::process_frame`).
    #[allow(clippy::too_many_arguments)]
    fn process_inner(
        &mut self,
        key: &FlowKey,
        facts: &PacketFacts,
        act: &CtAction<'_>,
        now: u64,
        frame: Option<(&[u8], &FlowKey)>,
        again: bool,
        peek: Option<&dyn Fn(&Tuple) -> bool>,
    ) -> CtResult {
        if !again {
            self.counters.bump(Counter::Packets);
        }
        let extracted = extract::extract(key, facts, act.zone, &mut self.frags, now);
        if key.nw_frag & (FRAG_ANY | FRAG_LATER) == FRAG_ANY
            && self.hold.held() > 0
            && extracted.is_ok()
        {
            // A first fragment: whatever of its datagram waits in the hold may go.
            let n = self.hold.release(&frag_key(key, facts, act.zone));
            self.counters.add(Counter::FragReleased, n as u64);
        }
        match extracted {
            Err(r) => match frame {
                // IPv4 and IPv6: a caller giving the frame gives an IPv6 fragment's Fragment
                // header identification in `facts.ip_id` too (the datapath does), which
                // tells apart the datagrams between two hosts in the hold.
                Some((bytes, meta))
                    if r == InvalidReason::FragmentUnknown
                        && matches!(key.eth_type, 0x0800 | 0x86dd) =>
                {
                    self.hold_fragment(key, facts, act.zone, bytes, meta, now)
                }
                _ => self.invalid(act.zone, r),
            },
            Ok(Extracted::IcmpError {
                inner,
                outer_src,
                outer_dst,
            }) => self.related(inner, outer_src, outer_dst, act, now),
            Ok(Extracted::Conn {
                tuple,
                kind,
                later_frag,
            }) => {
                let seg = extract::tcp_segment(key, facts);
                let icmp = (key.icmp_type, key.icmp_code);
                let payload = match (frame, facts.payload_offset as usize) {
                    (Some((bytes, _)), off) if off > 0 && !later_frag => bytes
                        .get(off..off.saturating_add(facts.l4_payload_len as usize))
                        .unwrap_or(&[]),
                    _ => &[],
                };
                self.track(tuple, kind, later_frag, &seg, icmp, act, now, peek, payload)
            }
        }
    }

    fn hold_fragment(
        &mut self,
        key: &FlowKey,
        facts: &PacketFacts,
        zone: u16,
        frame: &[u8],
        meta: &FlowKey,
        now: u64,
    ) -> CtResult {
        let fk = frag_key(key, facts, zone);
        let mut held = self.hold.hold(fk, meta, frame, now);
        if held == Err(fraghold::HoldRefused::Full) {
            let n = self.hold.expire(now);
            self.counters.add(Counter::FragHoldExpired, n as u64);
            held = self.hold.hold(fk, meta, frame, now);
        }
        match held {
            Ok(()) => {
                self.counters.bump(Counter::FragHeld);
                CtResult {
                    ct_state: CT_TRK,
                    ct_zone: zone,
                    held: true,
                    ..CtResult::default()
                }
            }
            Err(why) => {
                self.counters.bump(match why {
                    fraghold::HoldRefused::Full => Counter::FragHoldFull,
                    fraghold::HoldRefused::TooBig => Counter::FragHoldTooBig,
                    fraghold::HoldRefused::OverShare => Counter::FragHoldOverShare,
                });
                self.invalid(zone, InvalidReason::FragmentUnknown)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn track(
        &mut self,
        tuple: Tuple,
        kind: Kind,
        later_frag: bool,
        seg: &TcpSegment,
        icmp: (u8, u8),
        act: &CtAction<'_>,
        now: u64,
        peek: Option<&dyn Fn(&Tuple) -> bool>,
        payload: &[u8],
    ) -> CtResult {
        let mut res = self.track_conn(tuple, kind, later_frag, seg, icmp, act, now, peek);
        if let Some(id) = res.conn
            && res.ct_state & CT_INV == 0
            && self.slab.get(id.index).alg != 0
        {
            let reply = res.ct_state & CT_RPL != 0;
            self.alg_packet(&mut res, id.index, reply, seg, payload, act, now);
        }
        res
    }

    #[allow(clippy::too_many_arguments)]
    fn track_conn(
        &mut self,
        tuple: Tuple,
        kind: Kind,
        later_frag: bool,
        seg: &TcpSegment,
        icmp: (u8, u8),
        act: &CtAction<'_>,
        now: u64,
        peek: Option<&dyn Fn(&Tuple) -> bool>,
    ) -> CtResult {
        let hash = tuple.hash(self.seed);
        if let Some((idx, reply)) = self.find(hash, &tuple) {
            let c = self.slab.get(idx);
            if c.expires <= now {
                self.delete(idx);
                self.counters.bump(Counter::Expired);
            } else if act.force && act.commit && reply {
                self.delete(idx);
            } else if matches!(kind, Kind::IcmpEcho { request } if request == reply) {
                // The echo identifier is the key, the type is not: an echo request the way
                // the replies go (or a reply the way the requests went) is no packet of this
                // connection. Established, it would pass as the peer's reply (un-NATed, by
                // the `+est` rules).
                return self.invalid(act.zone, InvalidReason::IcmpEchoWrongDirection);
            } else {
                match self.existing(idx, reply, later_frag, seg, act, now) {
                    Some(r) => return r,
                    None => {
                        self.delete(idx);
                        self.counters.bump(Counter::Reopened);
                    }
                }
            }
        } else if let Some(o) = self.elsewhere(&tuple) {
            // The reply key of a NAT binding another shard owns.
            return self.redirect_to(o);
        }
        if self.shared.shards > 1 {
            let home = self.shared.home_of(&tuple);
            if home != self.shard {
                // A reply key's packet that starts a connection of its own: it lives in the
                // shard of its own addresses.
                return self.redirect_to(home);
            }
        }
        self.new_conn(tuple, hash, kind, later_frag, seg, icmp, act, now, peek)
    }

    /// A packet of a stored connection; `None` means "TCP reopen: start a new connection".
    fn existing(
        &mut self,
        idx: u32,
        reply: bool,
        later_frag: bool,
        seg: &TcpSegment,
        act: &CtAction<'_>,
        now: u64,
    ) -> Option<CtResult> {
        let seq_check = self.cfg.tcp_seq_check;
        let c = self.slab.get_mut(idx);
        // An FTP control connection whose payload NAT resized: the tracker sees each side's
        // acknowledgments in the numbering of the sequence numbers it saw from the other.
        let mut seg = *seg;
        let mut tcp_fix = None;
        if c.alg == ALG_FTP
            && act.nat.is_some()
            && let Some(st) = self.alg_conns.get(&idx)
        {
            let (mine, theirs) = (st.skew[reply as usize], st.skew[!reply as usize]);
            if mine != 0 || theirs != 0 {
                seg.ack = seg.ack.wrapping_sub(theirs as u32);
                tcp_fix = Some(TcpFix {
                    seq_delta: mine,
                    ack_delta: theirs.wrapping_neg(),
                    edit: None,
                });
            }
        }
        let verdict = match &mut c.proto {
            ProtoState::Tcp(t) if !later_frag => t.update(reply, &seg, seq_check),
            ProtoState::Other { multiple } => {
                // Stores only on a change: the connection's cache line stays clean (shared
                // with readers on other cores) for the packets that follow.
                if !reply && !*multiple {
                    *multiple = true;
                }
                TcpVerdict::Valid
            }
            _ => TcpVerdict::Valid,
        };
        match verdict {
            TcpVerdict::Reopen => return None,
            TcpVerdict::Invalid(r) => return Some(self.invalid(act.zone, InvalidReason::Tcp(r))),
            TcpVerdict::Valid => {}
        }
        if reply && !c.seen_reply {
            c.seen_reply = true;
        }
        // A related connection keeps its control connection's mark and label (Open vSwitch).
        if act.commit && !c.related {
            if let Some((value, mask)) = act.mark {
                c.mark = (c.mark & !mask) | (value & mask);
            }
            if let Some((value, mask)) = act.label {
                c.label = (c.label & !mask) | (value & mask);
            }
        }
        let class = class_of(c);
        let timeout = self.timeouts_ns[class as usize];
        let expires = now.saturating_add(timeout);
        if class == TimeoutClass::TcpClosed && !c.closed {
            // Closed: it no longer holds a place against its zone's and source's limits
            // (Linux's `nf_conncount` skips closed connections). Once per connection.
            c.closed = true;
            let (zone, slot, generation) = (c.orig.zone, c.src_slot, c.src_generation);
            c.src_slot = limits::NO_SLOT;
            self.shared.closed(zone, slot, generation);
        }
        if class != c.class
            || expires.saturating_sub(c.expires) >= REFRESH_GRANULARITY_NS.min(timeout / 16)
        {
            self.slab.refresh(idx, class, expires);
        }
        let c = self.slab.get(idx);
        let mut state = CT_TRK | if c.seen_reply { CT_EST } else { CT_NEW };
        if reply {
            state |= CT_RPL;
        }
        let mut orig = (c.orig, c.icmp_type_code);
        if c.related {
            state |= CT_REL;
            if let Some(p) = self.alg_conns.get(&idx).and_then(|s| s.parent) {
                orig = (p, (0, 0));
            }
        }
        let mut rewrite = None;
        if act.nat.is_some() && c.nat != 0 {
            let (wire, bits) = nat_view(c, reply);
            state |= bits;
            rewrite = Some(Rewrite {
                src: wire.src,
                dst: wire.dst,
                sport: wire.sport,
                dport: wire.dport,
                inner: None,
            });
        }
        Some(CtResult {
            ct_state: state,
            ct_mark: c.mark,
            ct_label: c.label,
            orig: Some(orig),
            ct_zone: act.zone,
            conn: Some(ConnId {
                index: idx,
                generation: c.generation,
            }),
            rewrite,
            drop: None,
            invalid: None,
            held: false,
            tcp_fix,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn new_conn(
        &mut self,
        tuple: Tuple,
        hash: u64,
        kind: Kind,
        later_frag: bool,
        seg: &TcpSegment,
        icmp: (u8, u8),
        act: &CtAction<'_>,
        now: u64,
        peek: Option<&dyn Fn(&Tuple) -> bool>,
    ) -> CtResult {
        if later_frag {
            return self.invalid(act.zone, InvalidReason::FragmentUnknown);
        }
        let proto = match kind {
            Kind::Tcp => match TcpConn::new(seg, self.cfg.tcp_pickup) {
                Ok(t) => ProtoState::Tcp(t),
                Err(r) => return self.invalid(act.zone, InvalidReason::Tcp(r)),
            },
            Kind::IcmpEcho { request: false } => {
                return self.invalid(act.zone, InvalidReason::IcmpReplyWithoutRequest);
            }
            Kind::IcmpEcho { request: true } => ProtoState::Icmp,
            Kind::Other => ProtoState::Other { multiple: false },
        };
        let mut res = CtResult {
            ct_state: CT_TRK | CT_NEW,
            ct_zone: act.zone,
            orig: Some((tuple, if tuple.is_icmp() { icmp } else { (0, 0) })),
            ..CtResult::default()
        };
        // A data connection an ALG announced: related to its control connection, whose
        // original tuple, mark and label it reports (Open vSwitch).
        let expected = match self.shared.expect.find(&tuple, now) {
            Ok(x) => x,
            Err(()) => {
                self.counters.bump(Counter::AlgExpectRemoved);
                None
            }
        };
        if let Some(x) = &expected {
            res.ct_state |= CT_REL;
            res.orig = Some((x.parent, (0, 0)));
            res.ct_mark = x.mark;
            res.ct_label = x.label;
        }
        if !act.commit {
            return res;
        }
        // Zone, source and table limits, checked and counted at once (one short lock of the
        // shared accounting). At a limit, reap what has expired and look again.
        let mut charged = self.shared.charge(&tuple, self.cfg.max_conns);
        if charged.is_err() {
            self.expire(now, EXPIRE_ON_FULL);
            charged = self.shared.charge(&tuple, self.cfg.max_conns);
            // Expired connections of other shards count too: without reaping them, a shard
            // with none of its own would refuse while the table is full of dead entries
            // (until the periodic expiry came by). Asked of the caller, which locks one shard
            // at a time; at most once per packet, and rate-limited while there is nothing to
            // reap anywhere (`Shared::may_reap`).
            if charged.is_err()
                && self.shared.shards > 1
                && !self.reaped
                && self.shared.may_reap(now)
            {
                self.needs_room = true;
                return CtResult::default();
            }
        }
        if matches!(charged, Err(CtDrop::TableFull)) {
            if self.evict_closed() {
                charged = self.shared.charge(&tuple, self.cfg.max_conns);
            } else if self.shared.shards > 1
                && !self.evicted_elsewhere
                && (self.shared.may_evict(now)
                    || (self.shared.may_evict_unestablished(now)
                        && !self.has_old_unestablished(now)))
            {
                // The table is full but not of this shard's closed connections (one busy
                // client's TIME_WAITs all live in its own shard): another shard's will do; or,
                // with none anywhere, the oldest connection not established of all shards,
                // unless this one has an old one itself.
                self.needs_eviction = true;
                return CtResult::default();
            } else if self.evict_unestablished() {
                // No closed connection anywhere: a flood of handshakes that never complete
                // (SYNs from spoofed sources) must not lock every new connection out.
                charged = self.shared.charge(&tuple, self.cfg.max_conns);
            }
        }
        let (src_slot, src_generation) = match charged {
            Ok(c) => c,
            Err(d) => {
                self.counters.bump(match d {
                    CtDrop::ZoneLimit => Counter::DropZoneLimit,
                    CtDrop::SourceLimit => Counter::DropSourceLimit,
                    _ => Counter::DropTableFull,
                });
                res.drop = Some(d);
                return res;
            }
        };
        let uncharge = |s: &Self| {
            s.shared
                .uncharge(tuple.zone, src_slot, src_generation, None, false)
        };

        let (wire, nat_flags) = match act.nat.filter(|s| s.has_range() || expected.is_some()) {
            None => (tuple, 0),
            // Translated like its control connection, whatever the action's own range.
            Some(_) if expected.is_some() => expected
                .as_ref()
                .and_then(|x| alg::related_wire(&tuple, x))
                .unwrap_or((tuple, 0)),
            Some(spec) => {
                let req = AllocRequest {
                    spec,
                    orig: tuple,
                    tuple_hash: hash,
                    src_hash: Tuple {
                        dst: Addr::default(),
                        sport: 0,
                        dport: 0,
                        ..tuple
                    }
                    .hash(self.seed),
                    random: self.next_random(),
                    has_ports: has_ports(&tuple),
                    max_probes: self.cfg.nat_max_probes,
                };
                let (table, slab, seed) = (&self.table, &self.slab, self.seed);
                let (shared, shard, exclude) = (&self.shared, self.shard, self.exclude);
                // Keys of expired-but-unreaped connections count as free: the clash check
                // below reaps such a connection before its key is reused. Another shard's
                // NAT binding counts as in use, and so does a key found in use in its home
                // shard on this packet's previous run.
                let in_use = |t: &Tuple| {
                    table
                        .find(t.hash(seed), |e| slab.get(e.conn).key(e.reply) == t)
                        .is_some_and(|e| slab.get(e.conn).expires > now)
                        || shared.route(t).is_some_and(|o| o != shard)
                        || exclude == Some(*t)
                        || peek.is_some_and(|p| p(t))
                };
                match nat::allocate(&req, in_use) {
                    Ok(w) => w,
                    Err(_) => {
                        uncharge(self);
                        self.counters.bump(Counter::DropNatExhausted);
                        res.drop = Some(CtDrop::NatExhausted);
                        return res;
                    }
                }
            }
        };
        let reply = wire.reversed();
        let reply_hash = reply.hash(self.seed);
        if reply != tuple
            && let Some((other, _)) = self.find(reply_hash, &reply)
        {
            if self.slab.get(other).expires <= now {
                self.delete(other);
                self.counters.bump(Counter::Expired);
            } else {
                uncharge(self);
                self.counters.bump(Counter::DropTupleClash);
                res.drop = Some(CtDrop::TupleClash);
                return res;
            }
        }
        if self.shared.shards > 1 && reply != tuple {
            // Another shard's NAT binding with this reply key (or, for a binding of ours, a
            // race for it): refused like a clash in this shard.
            let clash = if nat_flags != 0 && reply != tuple.reversed() {
                self.shared.claim(&reply, self.shard).is_err()
            } else {
                self.shared.route(&reply).is_some_and(|o| o != self.shard)
            };
            if clash {
                uncharge(self);
                self.counters.bump(Counter::DropTupleClash);
                res.drop = Some(CtDrop::TupleClash);
                return res;
            }
        }

        let mut conn = Conn::new(tuple, reply, proto, TimeoutClass::OtherFirst);
        conn.nat = nat_flags;
        if tuple.is_icmp() {
            conn.icmp_type_code = icmp;
        }
        if let Some((value, mask)) = act.mark {
            conn.mark = value & mask;
        }
        if let Some((value, mask)) = act.label {
            conn.label = value & mask;
        }
        if let Some(a) = act.alg.filter(|a| a.proto() == tuple.proto) {
            conn.alg = a.code();
        }
        if let Some(x) = &expected {
            conn.related = true;
            conn.mark = x.mark;
            conn.label = x.label;
            self.shared.expect.remove(&x.key);
            self.counters.bump(Counter::AlgRelated);
        }
        conn.src_slot = src_slot;
        conn.src_generation = src_generation;
        conn.class = class_of(&conn);
        if let Some(k) = dnat_key(&conn) {
            self.shared.add_dnat(k);
        }
        let expires = now.saturating_add(self.timeouts_ns[conn.class as usize]);
        let idx = self.slab.insert(conn, expires);
        if let Some(x) = &expected {
            self.alg_conns.insert(
                idx,
                AlgConn {
                    parent: Some(x.parent),
                    ..AlgConn::default()
                },
            );
        }
        self.insert_key(hash, idx, false);
        if reply != tuple {
            self.insert_key(reply_hash, idx, true);
        }
        self.counters.bump(Counter::Committed);

        let c = self.slab.get(idx);
        res.ct_mark = c.mark;
        res.ct_label = c.label;
        res.conn = Some(ConnId {
            index: idx,
            generation: c.generation,
        });
        if act.nat.is_some() && nat_flags != 0 {
            let (wire, bits) = nat_view(c, false);
            res.ct_state |= bits;
            res.rewrite = Some(Rewrite {
                src: wire.src,
                dst: wire.dst,
                sport: wire.sport,
                dport: wire.dport,
                inner: None,
            });
        }
        if nat_flags != 0 && self.shared.shards > 1 && reply != tuple.reversed() {
            // The reply key is claimed in the reply index (so no connection created from now
            // on can take it), but its home shard may already hold it as a key of its own
            // (an un-NATed connection): the caller looks there next.
            let home = self.shared.home_of(&reply);
            if home != self.shard {
                self.verify = Some(Verify {
                    home,
                    owner: self.shard,
                    reply,
                    conn: res.conn.expect("just committed"),
                });
            }
        }
        res
    }

    /// Whether `t` is a key of a live connection of this shard (read only).
    fn key_live(&self, t: &Tuple, now: u64) -> bool {
        self.find(t.hash(self.seed), t)
            .is_some_and(|(idx, _)| self.slab.get(idx).expires > now)
    }

    /// Whether `t` is a key of a live connection of this shard (one that has expired is
    /// reaped on the way).
    fn key_in_use(&mut self, t: &Tuple, now: u64) -> bool {
        match self.find(t.hash(self.seed), t) {
            Some((idx, _)) if self.slab.get(idx).expires <= now => {
                self.delete(idx);
                self.counters.bump(Counter::Expired);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Takes back a commit whose NAT reply key turned out to be in use in its home shard.
    fn undo_commit(&mut self, id: ConnId) {
        if let Some(idx) = self.live_conn(id) {
            self.delete(idx);
            self.counters.sub(Counter::Committed, 1);
        }
    }

    /// An ICMP error: `+rel` when the embedded header belongs to a connection.
    fn related(
        &mut self,
        inner: Tuple,
        outer_src: Addr,
        outer_dst: Addr,
        act: &CtAction<'_>,
        now: u64,
    ) -> CtResult {
        // The embedded packet went the other way: its reversal is this error's direction.
        let look = inner.reversed();
        let found = self
            .find(look.hash(self.seed), &look)
            .filter(|&(idx, _)| self.slab.get(idx).expires > now);
        let Some((idx, reply)) = found else {
            if let Some(o) = self.elsewhere(&look) {
                return self.redirect_to(o);
            }
            return self.invalid(act.zone, InvalidReason::IcmpErrorUnrelated);
        };
        self.counters.bump(Counter::Related);
        let c = self.slab.get(idx);
        let mut state = CT_TRK | CT_REL;
        if reply {
            state |= CT_RPL;
        }
        let mut rewrite = None;
        if act.nat.is_some() && c.nat != 0 {
            let (wire, bits) = nat_view(c, reply);
            state |= bits;
            rewrite = Some(Rewrite {
                src: if bits & CT_SNAT != 0 {
                    wire.src
                } else {
                    outer_src
                },
                dst: if bits & CT_DNAT != 0 {
                    wire.dst
                } else {
                    outer_dst
                },
                sport: 0,
                dport: 0,
                inner: Some(wire.reversed()),
            });
        }
        CtResult {
            ct_state: state,
            ct_mark: c.mark,
            ct_label: c.label,
            orig: Some((c.orig, c.icmp_type_code)),
            ct_zone: act.zone,
            conn: Some(ConnId {
                index: idx,
                generation: c.generation,
            }),
            rewrite,
            drop: None,
            invalid: None,
            held: false,
            tcp_fix: None,
        }
    }

    /// ALG work on a packet of a control connection, once it is tracked: a TFTP request
    /// announces the server's answer; an FTP control packet may announce a data connection in
    /// its payload (rewritten under NAT, see [`TcpFix`]).
    #[allow(clippy::too_many_arguments)]
    fn alg_packet(
        &mut self,
        res: &mut CtResult,
        idx: u32,
        reply: bool,
        seg: &TcpSegment,
        payload: &[u8],
        act: &CtAction<'_>,
        now: u64,
    ) {
        let c = *self.slab.get(idx);
        let timeout = u64::try_from(self.cfg.expectation_timeout.as_nanos()).unwrap_or(u64::MAX);
        let expires = now.saturating_add(timeout);
        match c.alg {
            ALG_TFTP if !reply => {
                let e = alg::tftp_expectation(&c.orig, &c.reply, c.mark, c.label, expires);
                self.add_expectation(e, now);
            }
            ALG_FTP if !payload.is_empty() => {
                let announced = match alg::ftp::parse(payload, c.orig.family) {
                    alg::ftp::FtpMsg::Other => return,
                    alg::ftp::FtpMsg::Invalid => None,
                    alg::ftp::FtpMsg::Endpoint(e) => Some(e),
                };
                let nat = act.nat.is_some() && c.nat != 0;
                let out = announced.and_then(|e| {
                    alg::ftp_expectation(
                        &e, &c.orig, &c.reply, reply, nat, c.mark, c.label, expires,
                    )
                });
                let Some(out) = out else {
                    // Open vSwitch marks it invalid too, keeping the other bits.
                    res.ct_state |= CT_INV;
                    self.counters.bump(Counter::AlgFtpInvalid);
                    return;
                };
                self.add_expectation(out.expectation, now);
                let Some(edit) = out.edit else {
                    return;
                };
                let dir = usize::from(reply);
                let st = self.alg_conns.entry(idx).or_default();
                let seq_delta = match st.last_edit[dir] {
                    Some((seq, d)) if seq == seg.seq => st.skew[dir].wrapping_sub(d),
                    _ => {
                        let before = st.skew[dir];
                        st.skew[dir] = before.wrapping_add(edit.delta());
                        st.last_edit[dir] = Some((seg.seq, edit.delta()));
                        before
                    }
                };
                res.tcp_fix = Some(TcpFix {
                    seq_delta,
                    ack_delta: st.skew[1 - dir].wrapping_neg(),
                    edit: Some(edit),
                });
            }
            _ => {}
        }
    }

    fn add_expectation(&mut self, e: alg::expect::Expectation, now: u64) {
        let (stored, expired) = self.shared.expect.insert(e, now);
        self.counters.add(Counter::AlgExpectRemoved, expired as u64);
        match stored {
            Ok(true) => self.counters.bump(Counter::AlgExpected),
            Ok(false) => {}
            Err(alg::expect::ExpectRefused::Full) => self.counters.bump(Counter::AlgExpectFull),
        }
    }

    fn invalid(&mut self, zone: u16, reason: InvalidReason) -> CtResult {
        self.counters.bump(match reason {
            InvalidReason::NotIp => Counter::InvalidNotIp,
            InvalidReason::IcmpType => Counter::InvalidIcmpType,
            InvalidReason::IcmpErrorUnrelated => Counter::InvalidIcmpUnrelated,
            InvalidReason::IcmpReplyWithoutRequest => Counter::InvalidIcmpReplyNoConn,
            InvalidReason::IcmpEchoWrongDirection => Counter::InvalidIcmpEchoDirection,
            InvalidReason::Tcp(TcpInvalid::BadFlags) => Counter::InvalidTcpFlags,
            InvalidReason::Tcp(TcpInvalid::NotNew) => Counter::InvalidTcpNotNew,
            InvalidReason::Tcp(TcpInvalid::OutOfWindow) => Counter::InvalidTcpWindow,
            InvalidReason::FragmentUnknown => Counter::InvalidFragment,
        });
        CtResult {
            ct_state: CT_TRK | CT_INV,
            ct_zone: zone,
            invalid: Some(reason),
            ..CtResult::default()
        }
    }

    #[inline]
    fn find(&self, hash: u64, t: &Tuple) -> Option<(u32, bool)> {
        let slab = &self.slab;
        self.table
            .find(hash, |e| slab.get(e.conn).key(e.reply) == t)
            .map(|e| (e.conn, e.reply))
    }

    /// Indexes connection `idx` (already in the slab) by its original tuple, or by its reply
    /// tuple when `reply`; `hash` is that tuple's.
    fn insert_key(&mut self, hash: u64, idx: u32, reply: bool) {
        let (slab, seed) = (&self.slab, self.seed);
        self.table
            .insert_unique(hash, Entry { conn: idx, reply }, |e| {
                slab.get(e.conn).key(e.reply).hash(seed)
            });
    }

    /// Makes room in a full table: removes the oldest closed TCP connection of this shard
    /// (TIME_WAIT, whose only use left is to recognise late segments). False when there is none.
    pub(crate) fn evict_closed(&mut self) -> bool {
        let Some(oldest) = self.slab.head(TimeoutClass::TcpClosed) else {
            return false;
        };
        self.delete(oldest);
        self.counters.bump(Counter::ClosedEvicted);
        true
    }

    /// Makes room in a full table with no closed TCP connection left: removes this shard's
    /// oldest connection that is not established (a TCP handshake not completed, UDP or ICMP
    /// heard from the initiator only), as the kernel's `early_drop` removes connections not
    /// yet assured. Established connections are never removed. False when there is none.
    pub(crate) fn evict_unestablished(&mut self) -> bool {
        let Some((_, idx)) = self.oldest_unestablished() else {
            return false;
        };
        self.delete(idx);
        self.counters.bump(Counter::UnestablishedEvicted);
        true
    }

    /// This shard's connection not established that was seen last the longest ago: when
    /// (the callers' clock) and its index.
    pub(crate) fn oldest_unestablished(&self) -> Option<(u64, u32)> {
        UNESTABLISHED
            .iter()
            .filter_map(|&class| {
                let idx = self.slab.head(class)?;
                // A class's list is sorted by expiry and all share its timeout: the head was
                // seen last the longest ago.
                let expires = self.slab.get(idx).expires;
                Some((
                    expires.saturating_sub(self.timeouts_ns[class as usize]),
                    idx,
                ))
            })
            .min()
    }

    /// Whether this shard may make room from its own connections not established without
    /// asking the other shards: its oldest was seen at least [`LOCAL_EVICT_AGE_NS`] ago. A
    /// younger one may be a real client's handshake in progress while a flood's older entries
    /// sit in another shard (a flood from one address lives in one shard).
    pub(crate) fn has_old_unestablished(&self, now: u64) -> bool {
        self.oldest_unestablished()
            .is_some_and(|(seen, _)| now.saturating_sub(seen) >= LOCAL_EVICT_AGE_NS)
    }

    /// Removes connection `idx` and both its keys.
    fn delete(&mut self, idx: u32) {
        let c = *self.slab.get(idx);
        if !c.live {
            return;
        }
        for (key, reply) in [(c.orig, false), (c.reply, true)] {
            if let Ok(e) = self
                .table
                .find_entry(key.hash(self.seed), |e| e.conn == idx && e.reply == reply)
            {
                e.remove();
            }
        }
        self.shared.uncharge(
            c.orig.zone,
            c.src_slot,
            c.src_generation,
            dnat_key(&c),
            c.closed,
        );
        if c.alg != 0 {
            let n = self.shared.expect.remove_parent(&c.orig);
            self.counters.add(Counter::AlgExpectRemoved, n as u64);
        }
        if c.alg != 0 || c.related {
            self.alg_conns.remove(&idx);
        }
        if c.nat != 0 && c.reply != c.orig.reversed() {
            self.shared.unroute(&c.reply, self.shard);
        }
        self.slab.remove(idx);
    }

    /// The shard owning the NAT binding whose reply key is `t`, when not this one.
    #[inline]
    fn elsewhere(&self, t: &Tuple) -> Option<u32> {
        if self.shared.shards <= 1 {
            return None;
        }
        self.shared.route(t).filter(|&o| o != self.shard)
    }

    fn redirect_to(&mut self, shard: u32) -> CtResult {
        self.redirect = Some(shard);
        CtResult::default()
    }

    /// Sets the limit of zones without one of their own (0: unlimited, the initial value).
    pub fn set_default_zone_limit(&mut self, limit: u32) {
        self.shared.acct().limits.set_default(limit);
    }

    /// Sets `zone`'s own limit (0: unlimited, whatever the default).
    pub fn set_zone_limit(&mut self, zone: u16, limit: u32) {
        self.shared.acct().limits.set_zone(zone, limit);
    }

    /// Removes `zone`'s own limit: the default applies again. False if it had none.
    pub fn del_zone_limit(&mut self, zone: u16) -> bool {
        self.shared.acct().limits.del_zone(zone)
    }

    /// The default zone limit (0: unlimited).
    pub fn default_zone_limit(&self) -> u32 {
        self.shared.acct().limits.default_limit()
    }

    /// The limit in force and the live connections of `zone`.
    pub fn zone_limit(&self, zone: u16) -> ZoneLimit {
        self.shared.zone_limit(zone)
    }

    /// The zones with a limit of their own, ascending, with their counts.
    pub fn zone_limits(&self) -> Vec<ZoneLimit> {
        self.shared.zone_limits()
    }

    /// Live connections per zone, for the zones that have any (counted at commit and removal,
    /// never by walking the table).
    pub fn zone_counts(&self) -> Vec<(u16, u32)> {
        self.shared.zone_counts()
    }

    /// Live connections per DNAT binding (frontend and backend), counted at commit and removal.
    pub fn dnat_counts(&self) -> Vec<(DnatKey, u32)> {
        self.shared.dnat_counts()
    }

    /// Replaces every source limit with `wanted`: (zone, family, source address, limit; 0
    /// counts without refusing). A source kept keeps its count; a new one counts the live
    /// connections it already has (one walk of the table, only when sources are added).
    pub fn set_source_limits(&mut self, wanted: &[(u16, Family, Addr, u32)]) {
        let new = self.shared.acct().limits.replace_sources(wanted);
        self.charge_new_sources(&new);
    }

    /// Counts this table's live connections against the source slots `new` (just added).
    fn charge_new_sources(&mut self, new: &[u32]) {
        if new.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let mut a = shared.acct();
        let keys: std::collections::HashMap<_, u32> =
            new.iter().map(|&i| (a.limits.slot_key(i), i)).collect();
        let live: Vec<u32> = self.slab.live_indices().collect();
        for idx in live {
            let c = self.slab.get(idx);
            if c.closed || a.limits.attached(c.src_slot, c.src_generation) {
                continue;
            }
            if let Some(&i) = keys.get(&(c.orig.zone, c.orig.family, c.orig.src)) {
                let generation = a.limits.charge(i);
                let c = self.slab.get_mut(idx);
                c.src_slot = i;
                c.src_generation = generation;
            }
        }
    }

    /// Every source limit with its count, by zone then address.
    pub fn source_limits(&self) -> Vec<SourceLimit> {
        self.shared.acct().limits.sources()
    }

    /// Reaps at most `budget` expired connections (oldest first in each timeout class) and
    /// returns how many. Call it regularly from the datapath loop with a small budget.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let mut n = 0;
        for k in 0..TimeoutClass::COUNT {
            let class = TimeoutClass::ALL[(self.expire_cursor + k) % TimeoutClass::COUNT];
            while n < budget {
                match self.slab.head(class) {
                    Some(h) if self.slab.get(h).expires <= now => {
                        self.delete(h);
                        n += 1;
                    }
                    _ => break,
                }
            }
            if n >= budget {
                self.expire_cursor = (self.expire_cursor + k + 1) % TimeoutClass::COUNT;
                break;
            }
        }
        self.counters.add(Counter::Expired, n as u64);
        if now >= self.next_expect_sweep {
            self.next_expect_sweep = now.saturating_add(REFRESH_GRANULARITY_NS);
            let gone = self.shared.expect.purge(now, None);
            self.counters.add(Counter::AlgExpectRemoved, gone as u64);
        }
        let dropped = self.hold.expire(now);
        self.counters.add(Counter::FragHoldExpired, dropped as u64);
        n
    }

    /// Deletes every connection (of `zone` if given); returns how many (`dpctl/flush-conntrack`).
    pub fn flush(&mut self, zone: Option<u16>) -> usize {
        let victims: Vec<u32> = self
            .slab
            .live_indices()
            .filter(|&i| zone.is_none_or(|z| self.slab.get(i).orig.zone == z))
            .collect();
        for &i in &victims {
            self.delete(i);
        }
        let gone = self.shared.expect.purge(0, Some(zone));
        self.counters.add(Counter::AlgExpectRemoved, gone as u64);
        self.counters.add(Counter::Flushed, victims.len() as u64);
        victims.len()
    }

    /// Deletes every connection of `zone` whose mark has a bit of `mask`; returns how many.
    pub fn flush_marked(&mut self, zone: u16, mask: u32) -> usize {
        let victims: Vec<u32> = self
            .slab
            .live_indices()
            .filter(|&i| {
                let c = self.slab.get(i);
                c.orig.zone == zone && c.mark & mask != 0
            })
            .collect();
        for &i in &victims {
            self.delete(i);
        }
        self.counters.add(Counter::Flushed, victims.len() as u64);
        victims.len()
    }

    /// Deletes every connection with one of `addrs` at one end, in either direction (pods
    /// that went: as client, as a Service's backend, as a NAT target), in one pass over the
    /// table; returns how many.
    pub fn flush_addresses(&mut self, addrs: &[Addr]) -> usize {
        if addrs.is_empty() {
            return 0;
        }
        let victims: Vec<u32> = self
            .slab
            .live_indices()
            .filter(|&i| {
                let c = self.slab.get(i);
                [c.orig.src, c.orig.dst, c.reply.src, c.reply.dst]
                    .iter()
                    .any(|a| addrs.contains(a))
            })
            .collect();
        for &i in &victims {
            self.delete(i);
        }
        let gone = self.shared.expect.purge_addresses(addrs);
        self.counters.add(Counter::AlgExpectRemoved, gone as u64);
        self.counters.add(Counter::Flushed, victims.len() as u64);
        victims.len()
    }

    /// `exec(set_field:VALUE/MASK->ct_mark)` on a stored connection; false if the handle is stale.
    pub fn set_mark(&mut self, id: ConnId, value: u32, mask: u32) -> bool {
        match self.live_conn(id) {
            Some(idx) => {
                let c = self.slab.get_mut(idx);
                c.mark = (c.mark & !mask) | (value & mask);
                true
            }
            None => false,
        }
    }

    /// The connection a tuple belongs to (either direction), with whether it is the reply key.
    pub fn lookup(&self, t: &Tuple, now: u64) -> Option<(ConnEntry, bool)> {
        let (idx, reply) = self.find(t.hash(self.seed), t)?;
        Some((self.entry(idx, now), reply))
    }

    /// Snapshot of one connection by handle.
    pub fn get(&self, id: ConnId, now: u64) -> Option<ConnEntry> {
        self.live_conn(id).map(|i| self.entry(i, now))
    }

    /// All live connections (including expired ones not yet reaped), in slab order.
    pub fn dump(&self, now: u64) -> impl Iterator<Item = ConnEntry> + '_ {
        self.slab.live_indices().map(move |i| self.entry(i, now))
    }

    fn live_conn(&self, id: ConnId) -> Option<u32> {
        let c = self.slab.try_get(id.index)?;
        (c.live && c.generation == id.generation).then_some(id.index)
    }

    fn entry(&self, idx: u32, now: u64) -> ConnEntry {
        let c = self.slab.get(idx);
        ConnEntry {
            id: ConnId {
                index: idx,
                generation: c.generation,
            },
            orig: c.orig,
            reply: c.reply,
            zone: c.orig.zone,
            mark: c.mark,
            label: c.label,
            nat: c.nat,
            tcp_state: match c.proto {
                ProtoState::Tcp(t) => Some(t.display_state()),
                _ => None,
            },
            icmp_type_code: c.orig.is_icmp().then_some(c.icmp_type_code),
            expires_in_ns: c.expires.saturating_sub(now),
            seen_reply: c.seen_reply,
            helper: match c.alg {
                ALG_FTP => Some(Alg::Ftp),
                ALG_TFTP => Some(Alg::Tftp),
                _ => None,
            },
            related: c.related,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: NAT port randomisation only, not security.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The datagram a fragment belongs to (before any NAT of this zone, as the caller looks up).
fn frag_key(key: &FlowKey, facts: &PacketFacts, zone: u16) -> frag::FragKey {
    let (family, src, dst) = if key.eth_type == 0x86dd {
        (Family::V6, Addr(key.ipv6_src), Addr(key.ipv6_dst))
    } else {
        (Family::V4, Addr::v4(key.nw_src), Addr::v4(key.nw_dst))
    };
    frag::FragKey {
        src,
        dst,
        id: facts.ip_id,
        zone,
        proto: key.nw_proto,
        family,
    }
}

/// The packet as it leaves in direction `reply`, and the `CT_SNAT`/`CT_DNAT` bits it earns.
fn nat_view(c: &Conn, reply: bool) -> (Tuple, u8) {
    let (wire, src_nat, dst_nat) = if reply {
        (c.orig.reversed(), NAT_DST, NAT_SRC)
    } else {
        (c.reply.reversed(), NAT_SRC, NAT_DST)
    };
    let mut bits = 0;
    if c.nat & src_nat != 0 {
        bits |= CT_SNAT;
    }
    if c.nat & dst_nat != 0 {
        bits |= CT_DNAT;
    }
    (wire, bits)
}

/// The DNAT binding a connection counts against, if it has one.
fn dnat_key(c: &Conn) -> Option<DnatKey> {
    (c.nat & NAT_DST != 0).then_some(DnatKey {
        zone: c.orig.zone,
        family: c.orig.family,
        proto: c.orig.proto,
        frontend: c.orig.dst,
        frontend_port: c.orig.dport,
        backend: c.reply.src,
        backend_port: c.reply.sport,
    })
}

fn class_of(c: &Conn) -> TimeoutClass {
    match c.proto {
        ProtoState::Tcp(t) => t.timeout_class(),
        ProtoState::Icmp if c.seen_reply => TimeoutClass::IcmpReply,
        ProtoState::Icmp => TimeoutClass::IcmpFirst,
        ProtoState::Other { .. } if c.seen_reply => TimeoutClass::OtherBidir,
        ProtoState::Other { multiple: true } => TimeoutClass::OtherMultiple,
        ProtoState::Other { multiple: false } => TimeoutClass::OtherFirst,
    }
}

fn has_ports(t: &Tuple) -> bool {
    matches!(t.proto, PROTO_TCP | PROTO_UDP | 132) || t.is_icmp()
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x6a09_e667_f3bc_c908);
    h.finish()
}
