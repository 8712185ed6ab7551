//! What a graceful restart hands the next process: the connection table (every zone, NAT
//! bindings, TCP state, marks) and each bridge's MAC table, written at SIGTERM and taken (read
//! and deleted) by the next start before any port forwards.
//!
//! Times are saved as what was left (connections) or how old (MAC entries) at the moment of
//! writing, together with the wall-clock time of writing, so that the time the switch was
//! down counts against them. A handover that cannot be read is discarded with a warning: the
//! configuration still comes back from the state file, only the connections are lost.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conntrack::snapshot::SavedConn;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::format::{decode, read_capped, write_atomic};
use crate::switch::Switch;

pub const HANDOVER_FORMAT: &str = "vswitchd-handover";
pub const HANDOVER_VERSION: u32 = 1;
/// A table of 2^18 connections is about 100 MB of JSON; larger files are refused.
const MAX_HANDOVER_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    pub format: String,
    pub version: u32,
    pub written_by: String,
    /// Nanoseconds since the Unix epoch when the file was written.
    pub written_at_ns: u64,
    pub conntrack: Vec<SavedConn>,
    pub mac_tables: Vec<SavedMacTable>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedMacTable {
    pub bridge: String,
    /// `(vlan, mac, port, age_ns)`.
    pub entries: Vec<(u16, [u8; 6], u32, u64)>,
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Handover {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("handover serializes")
    }

    pub fn decode(path: &str, text: &str) -> Result<Handover, super::FormatError> {
        decode(path, text, HANDOVER_FORMAT, HANDOVER_VERSION)
    }

    /// How long ago it was written (zero if the clock went back).
    pub fn age(&self) -> Duration {
        Duration::from_nanos(wall_ns().saturating_sub(self.written_at_ns))
    }
}

/// Captures the connection and MAC tables of `switch`.
pub fn capture(switch: &Switch) -> Handover {
    let bridges: Vec<(String, usize)> = switch
        .lock()
        .values()
        .map(|b| (b.name.clone(), b.dp_index))
        .collect();
    let (conntrack, mac_tables) = switch.dp.call(move |dp| {
        let now = dp.now_ns();
        let conns = dp.conntrack().snapshot(now);
        let macs = bridges
            .into_iter()
            .map(|(bridge, idx)| SavedMacTable {
                bridge,
                entries: dp.mac_table_export(idx),
            })
            .collect();
        (conns, macs)
    });
    Handover {
        format: HANDOVER_FORMAT.into(),
        version: HANDOVER_VERSION,
        written_by: format!("vswitchd {}", env!("CARGO_PKG_VERSION")),
        written_at_ns: wall_ns(),
        conntrack,
        mac_tables,
    }
}

/// Writes the handover for the next process (at a graceful stop).
pub fn save(switch: &Switch, path: &Path) {
    let h = capture(switch);
    match write_atomic(path, h.encode().as_bytes()) {
        Ok(()) => info!(
            connections = h.conntrack.len(),
            "connection and MAC tables handed over in {}",
            path.display()
        ),
        Err(e) => warn!("cannot write the handover {}: {e}", path.display()),
    }
}

/// Reads and deletes the handover at `path` (a handover is used once); `None` when there is
/// none or it cannot be used (logged).
pub fn take(path: &Path) -> Option<Handover> {
    let text = match read_capped(path, MAX_HANDOVER_BYTES) {
        Ok(t) => t?,
        Err(e) => {
            warn!("handover discarded: {e}");
            let _ = std::fs::remove_file(path);
            return None;
        }
    };
    let _ = std::fs::remove_file(path);
    match Handover::decode(&path.display().to_string(), &text) {
        Ok(h) => Some(h),
        Err(e) => {
            warn!("handover discarded (connections through NAT start over): {e}");
            None
        }
    }
}

/// Loads the handed-over connections, less the time the switch was down.
pub fn restore_conntrack(switch: &Switch, h: &Handover) {
    let down = u64::try_from(h.age().as_nanos()).unwrap_or(u64::MAX);
    let conns = h.conntrack.clone();
    let r = switch.dp.call(move |dp| {
        let now = dp.now_ns();
        dp.conntrack().restore_aged(&conns, now, down)
    });
    info!(
        restored = r.restored,
        skipped = r.skipped,
        down_ms = down / 1_000_000,
        "connections taken over"
    );
}

/// Loads the handed-over MAC tables into the bridges of the same names.
pub fn restore_mac_tables(switch: &Switch, h: &Handover) {
    let down = u64::try_from(h.age().as_nanos()).unwrap_or(u64::MAX);
    for t in &h.mac_tables {
        let Ok(idx) = switch.with_bridge(&t.bridge, |b| Ok(b.dp_index)) else {
            continue;
        };
        let entries: Vec<_> = t
            .entries
            .iter()
            .map(|&(v, m, p, age)| (v, m, p, age.saturating_add(down)))
            .collect();
        switch.dp.call(move |dp| dp.mac_table_import(idx, &entries));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handover_round_trips_and_refuses_other_versions() {
        let h = Handover {
            format: HANDOVER_FORMAT.into(),
            version: HANDOVER_VERSION,
            written_by: "t".into(),
            written_at_ns: 5,
            conntrack: Vec::new(),
            mac_tables: vec![SavedMacTable {
                bridge: "br0".into(),
                entries: vec![(0, [2, 0, 0, 0, 0, 1], 3, 1_000)],
            }],
        };
        assert_eq!(Handover::decode("h", &h.encode()).unwrap(), h);
        let newer = Handover {
            version: HANDOVER_VERSION + 1,
            ..h.clone()
        };
        let e = Handover::decode("h", &newer.encode()).unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        let e = Handover::decode("h", &h.encode()[..20]).unwrap_err();
        assert!(e.to_string().contains("corrupt or truncated"), "{e}");
    }
}
