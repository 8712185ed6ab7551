//! MAC learning for the NORMAL action: (VLAN, MAC) → port, with aging and a size cap.

use hashbrown::HashMap;

/// Entries older than this are forgotten (the 802.1D default, as OVS uses).
pub const DEFAULT_AGING_SECS: u64 = 300;
pub const DEFAULT_MAX_ENTRIES: usize = 8192;

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: u32,
    last_seen_ns: u64,
}

pub struct MacTable {
    entries: HashMap<(u16, [u8; 6]), Entry>,
    max_entries: usize,
    aging_ns: u64,
}

/// What `learn` did, so the caller can count a full table.
#[derive(Debug, PartialEq, Eq)]
pub enum Learned {
    New,
    Refreshed,
    Moved,
    TableFull,
    NotLearnable,
}

impl MacTable {
    pub fn new(max_entries: usize, aging_secs: u64) -> MacTable {
        MacTable {
            entries: HashMap::with_capacity(max_entries),
            max_entries,
            aging_ns: aging_secs * 1_000_000_000,
        }
    }

    pub fn learn(&mut self, vlan: u16, mac: [u8; 6], port: u32, now_ns: u64) -> Learned {
        if mac[0] & 1 != 0 {
            return Learned::NotLearnable; // multicast/broadcast sources are never learned
        }
        let len = self.entries.len();
        if let Some(e) = self.entries.get_mut(&(vlan, mac)) {
            let moved = e.port != port;
            *e = Entry {
                port,
                last_seen_ns: now_ns,
            };
            return if moved {
                Learned::Moved
            } else {
                Learned::Refreshed
            };
        }
        if len >= self.max_entries {
            self.expire(now_ns);
            if self.entries.len() >= self.max_entries {
                return Learned::TableFull;
            }
        }
        self.entries.insert(
            (vlan, mac),
            Entry {
                port,
                last_seen_ns: now_ns,
            },
        );
        Learned::New
    }

    pub fn lookup(&self, vlan: u16, mac: [u8; 6], now_ns: u64) -> Option<u32> {
        let e = self.entries.get(&(vlan, mac))?;
        (now_ns.saturating_sub(e.last_seen_ns) < self.aging_ns).then_some(e.port)
    }

    /// Drops aged entries; called rarely (when full, and from the periodic timer).
    pub fn expire(&mut self, now_ns: u64) {
        let aging = self.aging_ns;
        self.entries
            .retain(|_, e| now_ns.saturating_sub(e.last_seen_ns) < aging);
    }

    /// Forgets everything learned on a port (the port went away).
    pub fn flush_port(&mut self, port: u32) {
        self.entries.retain(|_, e| e.port != port);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(vlan, mac, port, age_secs)` for `fdb/show`-style dumps.
    pub fn dump(&self, now_ns: u64) -> Vec<(u16, [u8; 6], u32, u64)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|(&(vlan, mac), e)| {
                (
                    vlan,
                    mac,
                    e.port,
                    now_ns.saturating_sub(e.last_seen_ns) / 1_000_000_000,
                )
            })
            .collect();
        v.sort_by_key(|&(vlan, mac, port, _)| (port, vlan, mac));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const SEC: u64 = 1_000_000_000;

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
        assert_eq!(t.learn(0, B, 1, 0), Learned::TableFull);
        assert_eq!(t.lookup(0, B, 0), None);
        // Once A ages out, B fits.
        assert_eq!(t.learn(0, B, 1, 11 * SEC), Learned::New);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn flush_port_forgets() {
        let mut t = MacTable::new(16, 10);
        t.learn(0, A, 1, 0);
        t.learn(0, B, 2, 0);
        t.flush_port(1);
        assert_eq!(t.lookup(0, A, 0), None);
        assert_eq!(t.lookup(0, B, 0), Some(2));
    }
}
