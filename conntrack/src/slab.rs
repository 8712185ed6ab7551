//! Connection storage: a preallocated slab with a free list, threaded by one doubly-linked
//! expiry list per timeout class.
//!
//! All connections in a class share one timeout, so appending a connection at the tail
//! whenever it is refreshed keeps each list sorted by expiry time; expiry pops heads and never
//! scans. Restored connections, whose time left is anything up to the timeout, are linked at
//! their place instead (`insert_by_expiry`). Links are slab indices, so nothing here
//! allocates after construction.

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
    /// A closed TCP connection (it reached `TimeoutClass::TcpClosed`): it no longer counts
    /// against its zone's and source's limits (`Shared::closed`), for good.
    pub closed: bool,
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
            closed: false,
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
    pub fn insert(&mut self, conn: Conn, expires: u64) -> u32 {
        let i = self.alloc(conn, expires);
        self.link_tail(i);
        i
    }

    /// [`insert`](Self::insert) for a connection whose expiry need not be the latest of its
    /// class (a restored one): linked at its place by expiry, after the last connection that
    /// expires no later, so the list stays sorted. `cursor` (one per class, `NIL` at first)
    /// holds where the previous such insertion of each class went; with connections inserted
    /// in descending expiry order, each walk starts there and the walks of a whole run add
    /// up to one pass over the list.
    pub fn insert_by_expiry(
        &mut self,
        conn: Conn,
        expires: u64,
        cursor: &mut [u32; TimeoutClass::COUNT],
    ) -> u32 {
        let class = conn.class as usize;
        let i = self.alloc(conn, expires);
        let mut p = match cursor[class] {
            NIL => self.lists[class].tail,
            c if self.conns[c as usize].expires >= expires => self.conns[c as usize].prev,
            // Not descending after all: still right, from the tail.
            _ => self.lists[class].tail,
        };
        while p != NIL && self.conns[p as usize].expires > expires {
            p = self.conns[p as usize].prev;
        }
        self.link_after(i, p);
        cursor[class] = i;
        i
    }

    fn alloc(&mut self, mut conn: Conn, expires: u64) -> u32 {
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

    /// Links `i` into its class's list right after `prev` (`NIL`: at the head).
    fn link_after(&mut self, i: u32, prev: u32) {
        let class = self.conns[i as usize].class as usize;
        let next = if prev == NIL {
            self.lists[class].head
        } else {
            self.conns[prev as usize].next
        };
        {
            let c = &mut self.conns[i as usize];
            c.prev = prev;
            c.next = next;
        }
        if prev == NIL {
            self.lists[class].head = i;
        } else {
            self.conns[prev as usize].next = i;
        }
        if next == NIL {
            self.lists[class].tail = i;
        } else {
            self.conns[next as usize].prev = i;
        }
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

    /// The expiries of `class`'s list, head to tail.
    fn expiries(s: &Slab, class: TimeoutClass) -> Vec<u64> {
        let mut v = Vec::new();
        let mut i = s.lists[class as usize].head;
        while i != NIL {
            v.push(s.get(i).expires);
            i = s.get(i).next;
        }
        v
    }

    #[test]
    fn insertion_by_expiry_keeps_each_list_sorted_in_any_order() {
        let class = TimeoutClass::OtherFirst;
        let mut s = Slab::with_capacity(32);
        s.insert(conn(100), 50);
        s.insert(conn(101), 70);
        let mut cursor = [NIL; TimeoutClass::COUNT];
        // Descending (as restore inserts), then out of order.
        for (n, e) in [
            (1, 90),
            (2, 60),
            (3, 60),
            (4, 10),
            (5, 80),
            (6, 5),
            (7, 100),
        ] {
            s.insert_by_expiry(conn(n), e, &mut cursor);
        }
        assert_eq!(expiries(&s, class), [5, 10, 50, 60, 60, 70, 80, 90, 100]);
        let tail = s.lists[class as usize].tail;
        assert_eq!(s.get(tail).expires, 100);
        assert_eq!(s.get(tail).next, NIL);
        // Still a proper list: a refresh moves one to the tail, removal unlinks.
        let h = s.head(class).unwrap();
        s.refresh(h, class, 200);
        s.remove(tail);
        assert_eq!(expiries(&s, class), [10, 50, 60, 60, 70, 80, 90, 200]);
    }
}
