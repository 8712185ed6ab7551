//! Connection storage: a preallocated slab with a free list, threaded by one doubly-linked
//! expiry list per timeout class.
//!
//! All connections in a class share one timeout, so appending a connection at the tail
//! whenever it is refreshed keeps each list sorted by expiry time; expiry pops heads and never
//! scans. Links are slab indices, so nothing here allocates after construction.

use super::tcp::TcpConn;
use super::timeouts::TimeoutClass;
use super::tuple::Tuple;

pub(crate) const NIL: u32 = u32::MAX;

/// Protocol-specific tracking state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum ProtoState {
    Tcp(TcpConn),
    /// UDP and other protocols: whether the initiator has sent more than one packet.
    Other {
        multiple: bool,
    },
    Icmp,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Conn {
    /// The original-direction tuple, as the first packet arrived.
    pub orig: Tuple,
    /// The reply-direction key: the first packet after NAT, reversed.
    pub reply: Tuple,
    pub mark: u32,
    /// `ct_label`.
    pub label: u128,
    /// `NAT_SRC` / `NAT_DST`.
    pub nat: u8,
    /// The ALG it is a control connection of (`alg::ALG_*`).
    pub alg: u8,
    /// A data connection an ALG announced (`+rel` on every packet).
    pub related: bool,
    pub seen_reply: bool,
    pub proto: ProtoState,
    /// ICMP type/code of the first packet (for the dump), zero otherwise.
    pub icmp_type_code: (u8, u8),
    pub expires: u64,
    pub class: TimeoutClass,
    /// Bumped on every reuse of the slot, so stale `ConnId`s are refused.
    pub generation: u32,
    pub live: bool,
    /// The source limit it was counted against (`limits::NO_SLOT`: none) and that slot's
    /// generation then.
    pub src_slot: u32,
    pub src_generation: u32,
    prev: u32,
    next: u32,
}

impl Conn {
    pub fn new(orig: Tuple, reply: Tuple, proto: ProtoState, class: TimeoutClass) -> Conn {
        Conn {
            orig,
            reply,
            mark: 0,
            label: 0,
            nat: 0,
            alg: 0,
            related: false,
            seen_reply: false,
            proto,
            icmp_type_code: (0, 0),
            expires: 0,
            class,
            generation: 0,
            live: true,
            src_slot: NIL,
            src_generation: 0,
            prev: NIL,
            next: NIL,
        }
    }

    /// The tuple the table indexes it by: the original one, or the reply one.
    #[inline]
    pub fn key(&self, reply: bool) -> &Tuple {
        if reply { &self.reply } else { &self.orig }
    }
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

pub(crate) struct Slab {
    conns: Vec<Conn>,
    free: Vec<u32>,
    lists: [List; TimeoutClass::COUNT],
    live: usize,
}

impl Slab {
    pub fn with_capacity(n: usize) -> Slab {
        Slab {
            conns: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
            lists: [List {
                head: NIL,
                tail: NIL,
            }; TimeoutClass::COUNT],
            live: 0,
        }
    }

    /// Faults in the head of the connection storage (see `prefault`).
    pub fn prefault(&mut self) {
        super::prefault::vec_first_huge_page(&mut self.conns);
    }

    pub fn live(&self) -> usize {
        self.live
    }

    #[inline]
    pub fn get(&self, i: u32) -> &Conn {
        &self.conns[i as usize]
    }

    /// Slots allocated (live or free).
    pub fn slots(&self) -> usize {
        self.conns.len()
    }

    pub fn try_get(&self, i: u32) -> Option<&Conn> {
        self.conns.get(i as usize)
    }

    #[inline]
    pub fn get_mut(&mut self, i: u32) -> &mut Conn {
        &mut self.conns[i as usize]
    }

    /// Stores `conn` (expiring at `expires` in its class's list) and returns its index.
    /// The caller bounds the number of live connections, so pushes stay within capacity.
    pub fn insert(&mut self, mut conn: Conn, expires: u64) -> u32 {
        let i = match self.free.pop() {
            Some(i) => {
                conn.generation = self.conns[i as usize].generation.wrapping_add(1);
                self.conns[i as usize] = conn;
                i
            }
            None => {
                self.conns.push(conn);
                (self.conns.len() - 1) as u32
            }
        };
        self.live += 1;
        self.conns[i as usize].expires = expires;
        self.link_tail(i);
        i
    }

    /// Frees slot `i`; its links are removed, its contents stay until reuse.
    pub fn remove(&mut self, i: u32) {
        self.unlink(i);
        let c = &mut self.conns[i as usize];
        if c.live {
            c.live = false;
            self.live -= 1;
            self.free.push(i);
        }
    }

    /// Moves connection `i` to the tail of `class`'s list with a new expiry time.
    #[inline]
    pub fn refresh(&mut self, i: u32, class: TimeoutClass, expires: u64) {
        self.unlink(i);
        let c = &mut self.conns[i as usize];
        c.class = class;
        c.expires = expires;
        self.link_tail(i);
    }

    /// The oldest connection of `class`, if any.
    #[inline]
    pub fn head(&self, class: TimeoutClass) -> Option<u32> {
        let h = self.lists[class as usize].head;
        (h != NIL).then_some(h)
    }

    /// Indices of all live connections.
    pub fn live_indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.live)
            .map(|(i, _)| i as u32)
    }

    fn link_tail(&mut self, i: u32) {
        let class = self.conns[i as usize].class as usize;
        let tail = self.lists[class].tail;
        {
            let c = &mut self.conns[i as usize];
            c.prev = tail;
            c.next = NIL;
        }
        if tail == NIL {
            self.lists[class].head = i;
        } else {
            self.conns[tail as usize].next = i;
        }
        self.lists[class].tail = i;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, class) = {
            let c = &self.conns[i as usize];
            (c.prev, c.next, c.class as usize)
        };
        let list = &mut self.lists[class];
        if list.head != i && prev == NIL {
            return; // not linked
        }
        if prev == NIL {
            list.head = next;
        } else {
            self.conns[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[class].tail = prev;
        } else {
            self.conns[next as usize].prev = prev;
        }
        let c = &mut self.conns[i as usize];
        c.prev = NIL;
        c.next = NIL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::{Addr, Family};

    fn conn(n: u32) -> Conn {
        let t = Tuple {
            src: Addr::v4(n),
            dst: Addr::v4(1),
            sport: 1,
            dport: 2,
            zone: 0,
            proto: 17,
            family: Family::V4,
        };
        Conn::new(
            t,
            t.reversed(),
            ProtoState::Other { multiple: false },
            TimeoutClass::OtherFirst,
        )
    }

    #[test]
    fn lists_stay_in_refresh_order_and_slots_are_reused() {
        let mut s = Slab::with_capacity(4);
        let a = s.insert(conn(1), 10);
        let b = s.insert(conn(2), 20);
        let c = s.insert(conn(3), 30);
        assert_eq!(s.head(TimeoutClass::OtherFirst), Some(a));
        s.refresh(a, TimeoutClass::OtherFirst, 40);
        assert_eq!(s.head(TimeoutClass::OtherFirst), Some(b));
        s.refresh(b, TimeoutClass::OtherBidir, 50);
        assert_eq!(s.head(TimeoutClass::OtherFirst), Some(c));
        assert_eq!(s.head(TimeoutClass::OtherBidir), Some(b));
        s.remove(c);
        assert_eq!(s.head(TimeoutClass::OtherFirst), Some(a));
        assert_eq!(s.live(), 2);
        let gen_before = s.get(c).generation;
        let d = s.insert(conn(4), 60);
        assert_eq!(d, c, "freed slot reused");
        assert_ne!(s.get(d).generation, gen_before);
        s.remove(a);
        s.remove(d);
        assert_eq!(s.head(TimeoutClass::OtherFirst), None);
        s.remove(a); // double remove is harmless
        assert_eq!(s.live(), 1);
    }
}
