//! MAC learning for the NORMAL action: (VLAN, MAC) → port, with aging and a size cap.
//!
//! Every operation is O(1) (flushing a port is O(its entries)). Entries sit in a slab, each on
//! its port's LRU list (least recently seen first). A full table keeps learning: it evicts the
//! least recently seen entry of the port holding the most entries, as Open vSwitch does, so one
//! port flooding random source MACs only churns its own entries and every other port's MACs
//! stay learned.
//!
//! Shared by forwarding threads read-mostly ([`learn_and_lookup`] on an `RwLock`): a frame
//! from a known source on its known port only stores its time stamp (an atomic) under the read
//! lock; the write lock is taken for a new or moved MAC, and to move a refreshed entry to the
//! end of its port's list at most once a second ([`RELINK_NS`]), so the lists stay in
//! last-seen order to within a second.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashMap;

/// Entries older than this are forgotten (the 802.1D default, as OVS uses).
pub const DEFAULT_AGING_SECS: u64 = 300;
pub const DEFAULT_MAX_ENTRIES: usize = 8192;

const NIL: u32 = u32::MAX;

/// A refreshed entry is moved to the end of its port's list (write lock) when it was last
/// moved longer ago than this; otherwise only its time stamp is stored (read lock).
pub const RELINK_NS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    vlan: u16,
    mac: [u8; 6],
    port: u32,
    /// When it was last linked at the end of its port's list (`seen` may be later).
    last_seen_ns: u64,
    /// Neighbours on the port's LRU list.
    prev: u32,
    next: u32,
}

/// A port's entries, least recently seen first.
#[derive(Debug, Clone, Copy)]
struct PortList {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for PortList {
    fn default() -> Self {
        PortList {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

pub struct MacTable {
    index: HashMap<(u16, [u8; 6]), u32>,
    slab: Vec<Entry>,
    /// Last seen, per slab slot: stored under the read lock.
    seen: Vec<AtomicU64>,
    free: Vec<u32>,
    ports: HashMap<u32, PortList>,
    max_entries: usize,
    aging_ns: u64,
    evictions: u64,
}

/// What `learn` did, so the caller can count a full table.
#[derive(Debug, PartialEq, Eq)]
pub enum Learned {
    New,
    /// Learned after evicting another entry (the table was full).
    Evicted,
    Refreshed,
    Moved,
    /// Not learned: the table holds no entries at all (a size of 0).
    TableFull,
    NotLearnable,
}

impl MacTable {
    pub fn new(max_entries: usize, aging_secs: u64) -> MacTable {
        MacTable {
            index: HashMap::with_capacity(max_entries),
            slab: Vec::with_capacity(max_entries),
            seen: Vec::with_capacity(max_entries),
            free: Vec::new(),
            ports: HashMap::new(),
            max_entries,
            aging_ns: aging_secs * 1_000_000_000,
            evictions: 0,
        }
    }

    /// The table's own time for the datapath's `now_ns`: one aging time ahead, so that an
    /// entry handed over from the previous process keeps its age even when that age is more
    /// than this process has run (the datapath's clock starts at 0).
    #[inline]
    fn clock(&self, now_ns: u64) -> u64 {
        now_ns.saturating_add(self.aging_ns)
    }

    pub fn learn(&mut self, vlan: u16, mac: [u8; 6], port: u32, now_ns: u64) -> Learned {
        let t = self.clock(now_ns);
        self.learn_at(vlan, mac, port, t)
    }

    fn learn_at(&mut self, vlan: u16, mac: [u8; 6], port: u32, now_ns: u64) -> Learned {
        if mac[0] & 1 != 0 {
            return Learned::NotLearnable; // multicast/broadcast sources are never learned
        }
        if let Some(&i) = self.index.get(&(vlan, mac)) {
            let old_port = self.slab[i as usize].port;
            self.unlink(i);
            let e = &mut self.slab[i as usize];
            e.port = port;
            e.last_seen_ns = now_ns;
            self.seen[i as usize].store(now_ns, Ordering::Relaxed);
            self.link_tail(i);
            return if old_port != port {
                Learned::Moved
            } else {
                Learned::Refreshed
            };
        }
        if self.max_entries == 0 {
            return Learned::TableFull;
        }
        let evicted = self.index.len() >= self.max_entries;
        if evicted {
            self.evict_one();
        }
        let entry = Entry {
            vlan,
            mac,
            port,
            last_seen_ns: now_ns,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = entry;
                self.seen[i as usize].store(now_ns, Ordering::Relaxed);
                i
            }
            None => {
                self.slab.push(entry);
                self.seen.push(AtomicU64::new(now_ns));
                (self.slab.len() - 1) as u32
            }
        };
        self.index.insert((vlan, mac), i);
        self.link_tail(i);
        if evicted {
            Learned::Evicted
        } else {
            Learned::New
        }
    }

    /// Makes room for one entry: the least recently seen entry of the port with the most
    /// entries (a scan of the ports, not of the entries).
    fn evict_one(&mut self) {
        let Some((_, list)) = self
            .ports
            .iter()
            .filter(|(_, l)| l.len > 0)
            .max_by_key(|(p, l)| (l.len, std::cmp::Reverse(**p)))
        else {
            return;
        };
        let victim = list.head;
        self.remove(victim);
        self.evictions += 1;
    }

    fn link_tail(&mut self, i: u32) {
        let port = self.slab[i as usize].port;
        let list = self.ports.entry(port).or_default();
        let old_tail = list.tail;
        list.tail = i;
        if old_tail == NIL {
            list.head = i;
        }
        list.len += 1;
        let e = &mut self.slab[i as usize];
        e.prev = old_tail;
        e.next = NIL;
        if old_tail != NIL {
            self.slab[old_tail as usize].next = i;
        }
    }

    fn unlink(&mut self, i: u32) {
        let Entry {
            port, prev, next, ..
        } = self.slab[i as usize];
        if prev != NIL {
            self.slab[prev as usize].next = next;
        }
        if next != NIL {
            self.slab[next as usize].prev = prev;
        }
        if let Some(list) = self.ports.get_mut(&port) {
            if list.head == i {
                list.head = next;
            }
            if list.tail == i {
                list.tail = prev;
            }
            list.len -= 1;
            if list.len == 0 {
                self.ports.remove(&port);
            }
        }
    }

    fn remove(&mut self, i: u32) {
        self.unlink(i);
        let e = self.slab[i as usize];
        self.index.remove(&(e.vlan, e.mac));
        self.free.push(i);
    }

    pub fn lookup(&self, vlan: u16, mac: [u8; 6], now_ns: u64) -> Option<u32> {
        let now_ns = self.clock(now_ns);
        let i = *self.index.get(&(vlan, mac))? as usize;
        (now_ns.saturating_sub(self.seen_ns(i)) < self.aging_ns).then_some(self.slab[i].port)
    }

    #[inline]
    fn seen_ns(&self, i: usize) -> u64 {
        self.seen[i].load(Ordering::Relaxed)
    }

    /// A frame from `mac` on `port`: if the entry is there with that port and was moved to
    /// its list's end less than [`RELINK_NS`] ago, stores its time stamp and returns true
    /// (no write lock needed); false if `learn` must run.
    #[inline]
    fn refresh_shared(&self, vlan: u16, mac: [u8; 6], port: u32, now_ns: u64) -> bool {
        let now_ns = self.clock(now_ns);
        if mac[0] & 1 != 0 {
            return true; // never learned; nothing to do
        }
        let Some(&i) = self.index.get(&(vlan, mac)) else {
            return false;
        };
        let e = &self.slab[i as usize];
        if e.port != port || now_ns.saturating_sub(e.last_seen_ns) >= RELINK_NS {
            return false;
        }
        self.seen[i as usize].fetch_max(now_ns, Ordering::Relaxed);
        true
    }

    /// Drops aged entries: each port's list is oldest first, so this looks only at what goes
    /// plus one entry per port. Called from the periodic timer.
    pub fn expire(&mut self, now_ns: u64) {
        let now_ns = self.clock(now_ns);
        let heads: Vec<u32> = self.ports.values().map(|l| l.head).collect();
        for mut i in heads {
            while i != NIL {
                let e = self.slab[i as usize];
                let seen = self.seen_ns(i as usize);
                if now_ns.saturating_sub(seen) < self.aging_ns {
                    if seen == e.last_seen_ns {
                        break;
                    }
                    // Seen since it was last moved (under the read lock): move it now, the
                    // entries behind it may be older.
                    self.unlink(i);
                    self.slab[i as usize].last_seen_ns = seen;
                    self.link_tail(i);
                } else {
                    self.remove(i);
                }
                i = e.next;
            }
        }
    }

    /// Forgets everything learned on a port (the port went away).
    pub fn flush_port(&mut self, port: u32) {
        let mut i = self.ports.get(&port).map_or(NIL, |l| l.head);
        while i != NIL {
            let next = self.slab[i as usize].next;
            self.remove(i);
            i = next;
        }
    }

    /// Forgets everything learned (a port's VLAN role changed).
    pub fn flush(&mut self) {
        let ports: Vec<u32> = self.ports.keys().copied().collect();
        for port in ports {
            self.flush_port(port);
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Entries evicted to make room for new ones since the table was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// `(vlan, mac, port, age_ns)` of every entry (what a graceful restart hands over).
    pub fn export(&self, now_ns: u64) -> Vec<(u16, [u8; 6], u32, u64)> {
        let now_ns = self.clock(now_ns);
        self.index
            .values()
            .map(|&i| {
                let e = &self.slab[i as usize];
                let seen = self.seen_ns(i as usize);
                (e.vlan, e.mac, e.port, now_ns.saturating_sub(seen))
            })
            .collect()
    }

    /// Takes back exported entries as of `now_ns` (their ages kept, as far as this clock
    /// allows), oldest first so that each port's list stays in age order; aged-out entries
    /// are left out, and the cap applies as to learned ones.
    pub fn import(&mut self, entries: &[(u16, [u8; 6], u32, u64)], now_ns: u64) {
        let now_ns = self.clock(now_ns);
        let mut sorted: Vec<_> = entries
            .iter()
            .filter(|e| e.3 < self.aging_ns)
            .copied()
            .collect();
        sorted.sort_by_key(|e| std::cmp::Reverse(e.3));
        for (vlan, mac, port, age) in sorted {
            self.learn_at(vlan, mac, port, now_ns - age); // age < aging_ns <= now_ns
        }
    }

    /// `(vlan, mac, port, age_secs)` for `fdb/show`-style dumps.
    pub fn dump(&self, now_ns: u64) -> Vec<(u16, [u8; 6], u32, u64)> {
        let now_ns = self.clock(now_ns);
        let mut v: Vec<_> = self
            .index
            .values()
            .map(|&i| {
                let e = &self.slab[i as usize];
                (
                    e.vlan,
                    e.mac,
                    e.port,
                    now_ns.saturating_sub(self.seen_ns(i as usize)) / 1_000_000_000,
                )
            })
            .collect();
        v.sort_by_key(|&(vlan, mac, port, _)| (port, vlan, mac));
        v
    }
}

/// The NORMAL action's MAC work for one frame, on a table shared by forwarding threads: learns
/// `src` on `in_port` (the write lock only if that changes the table, see the module
/// documentation) and looks up `dst` (`None`: not looked up). Returns what learning did (`None`:
/// only the time stamp was stored) and the port of `dst`.
pub fn learn_and_lookup(
    table: &RwLock<MacTable>,
    vlan: u16,
    src: [u8; 6],
    in_port: u32,
    dst: Option<[u8; 6]>,
    now_ns: u64,
) -> (Option<Learned>, Option<u32>) {
    {
        let t = table.read().unwrap_or_else(|e| e.into_inner());
        if t.refresh_shared(vlan, src, in_port, now_ns) {
            return (None, dst.and_then(|d| t.lookup(vlan, d, now_ns)));
        }
    }
    let mut t = table.write().unwrap_or_else(|e| e.into_inner());
    let learned = t.learn(vlan, src, in_port, now_ns);
    (Some(learned), dst.and_then(|d| t.lookup(vlan, d, now_ns)))
}

/// [`learn_and_lookup`] without the learning, for a frame from no port of the bridge (a
/// packet-out from `CONTROLLER`): the port of `dst`, under the read lock.
pub fn lookup(table: &RwLock<MacTable>, vlan: u16, dst: [u8; 6], now_ns: u64) -> Option<u32> {
    let t = table.read().unwrap_or_else(|e| e.into_inner());
    t.lookup(vlan, dst, now_ns)
}

/// The destinations Open vSwitch's NORMAL never forwards (`eth_addr_is_reserved`, its bridges
/// without `other_config:forward-bpdu`): the IEEE 802.1D range 01:80:c2:00:00:00-0f (STP,
/// pause, LACP, 802.1X, LLDP, ...), Extreme's EDP and EAPS, and Cisco's ISL, CDP/VTP/DTP/PAgP/
/// UDLD, PVST+, UplinkFast and CFM addresses.
pub fn is_reserved(mac: [u8; 6]) -> bool {
    let [a, b, c, d, e, f] = mac;
    let m = u64::from_be_bytes([0, 0, a, b, c, d, e, f]);
    matches!(
        m,
        0x0180_c200_0000..=0x0180_c200_000f
            | 0x00e0_2b00_0000
            | 0x00e0_2b00_0004
            | 0x00e0_2b00_0006
            | 0x0100_0c00_0000
            | 0x0100_0ccc_cccc
            | 0x0100_0ccc_cccd
            | 0x0100_0ccd_cdcd
            | 0x0100_0ccc_ccc0..=0x0100_0ccc_ccc7
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const SEC: u64 = 1_000_000_000;

    #[test]
    fn reserved_destinations_are_open_vswitchs() {
        for last in 0..=0x0f {
            assert!(is_reserved([0x01, 0x80, 0xc2, 0, 0, last]), "{last:#x}");
        }
        assert!(!is_reserved([0x01, 0x80, 0xc2, 0, 0, 0x10]));
        assert!(is_reserved([0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc]));
        assert!(is_reserved([0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcd]));
        assert!(is_reserved([0x01, 0x00, 0x0c, 0xcd, 0xcd, 0xcd]));
        assert!(is_reserved([0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xc7]));
        assert!(is_reserved([0x00, 0xe0, 0x2b, 0, 0, 0x04]));
        assert!(!is_reserved([0xff; 6]));
        assert!(!is_reserved([0x01, 0x00, 0x5e, 0, 0, 1]), "IPv4 multicast");
        assert!(!is_reserved([0x33, 0x33, 0, 0, 0, 1]), "IPv6 multicast");
        assert!(!is_reserved(A));
    }

    #[test]
    fn learns_moves_and_ages() {
        let mut t = MacTable::new(16, 10);
        assert_eq!(t.learn(0, A, 1, 0), Learned::New);
        assert_eq!(t.lookup(0, A, SEC), Some(1));
        assert_eq!(t.lookup(5, A, SEC), None, "VLANs are separate");
        assert_eq!(t.learn(0, A, 2, 2 * SEC), Learned::Moved);
        assert_eq!(t.lookup(0, A, 3 * SEC), Some(2));
        assert_eq!(t.lookup(0, A, 13 * SEC), None, "aged out");
    }

    #[test]
    fn never_learns_multicast_and_caps_size() {
        let mut t = MacTable::new(1, 10);
        assert_eq!(t.learn(0, [0xff; 6], 1, 0), Learned::NotLearnable);
        assert_eq!(t.learn(0, A, 1, 0), Learned::New);
        // Full: B still gets learned, A makes room.
        assert_eq!(t.learn(0, B, 1, 0), Learned::Evicted);
        assert_eq!(t.lookup(0, B, 0), Some(1));
        assert_eq!(t.lookup(0, A, 0), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.evictions(), 1);
        assert_eq!(MacTable::new(0, 10).learn(0, A, 1, 0), Learned::TableFull);
    }

    #[test]
    fn a_full_table_evicts_from_the_port_with_the_most_entries() {
        let mut t = MacTable::new(100, 300);
        let mac = |n: u32| {
            let b = n.to_be_bytes();
            [2, 0, b[0], b[1], b[2], b[3]]
        };
        // Port 2 holds 10 pods; port 1 floods random sources far past the size.
        for n in 0..10 {
            t.learn(0, mac(1_000_000 + n), 2, 0);
        }
        for n in 0..100_000 {
            t.learn(0, mac(n), 1, n as u64);
        }
        assert_eq!(t.len(), 100);
        for n in 0..10 {
            assert_eq!(
                t.lookup(0, mac(1_000_000 + n), 0),
                Some(2),
                "pod {n} evicted"
            );
        }
        // The flooding port keeps its most recent sources, and a new pod is learned at once.
        assert_eq!(t.lookup(0, mac(99_999), 0), Some(1));
        assert_eq!(t.learn(0, mac(2_000_000), 3, 0), Learned::Evicted);
        assert_eq!(t.lookup(0, mac(2_000_000), 0), Some(3));
        // A refreshed entry moves to the back of its port's queue.
        t.learn(0, mac(99_990), 1, 200_000);
        for n in 0..88 {
            t.learn(0, mac(5_000_000 + n), 1, 200_001);
        }
        assert_eq!(t.lookup(0, mac(99_990), 200_001), Some(1));
    }

    #[test]
    fn aging_removes_only_old_entries() {
        let mut t = MacTable::new(16, 10);
        t.learn(0, A, 1, 0);
        t.learn(0, B, 1, 5 * SEC);
        t.expire(12 * SEC);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(0, B, 12 * SEC), Some(1));
    }

    #[test]
    fn flush_port_forgets() {
        let mut t = MacTable::new(16, 10);
        t.learn(0, A, 1, 0);
        t.learn(0, B, 2, 0);
        t.flush_port(1);
        assert_eq!(t.lookup(0, A, 0), None);
        assert_eq!(t.lookup(0, B, 0), Some(2));
        t.learn(5, A, 3, 0);
        t.flush();
        assert_eq!(
            (t.lookup(0, B, 0), t.lookup(5, A, 0), t.len()),
            (None, None, 0)
        );
        assert_eq!(
            t.learn(0, A, 1, 0),
            Learned::New,
            "learns again after a flush"
        );
    }

    /// A new process's clock starts at 0: an entry handed over 200 s old (aging 300 s)
    /// still has only 100 s to live, not 300.
    #[test]
    fn handed_over_entries_keep_their_age_in_a_new_process() {
        let mut old = MacTable::new(16, 300);
        old.learn(0, A, 1, 1_000 * SEC);
        let handed = old.export(1_200 * SEC);
        assert_eq!(handed, vec![(0, A, 1, 200 * SEC)]);
        let mut new = MacTable::new(16, 300);
        new.import(&handed, SEC);
        assert_eq!(new.lookup(0, A, 99 * SEC), Some(1));
        assert_eq!(new.lookup(0, A, 102 * SEC), None);
        assert_eq!(new.export(SEC)[0].3, 200 * SEC);
        new.expire(102 * SEC);
        assert!(new.is_empty());
    }
}
