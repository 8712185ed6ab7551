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
    /// Session-affinity memory of select groups (absent in files of earlier builds).
    #[serde(default)]
    pub affinity: Vec<SavedAffinity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedAffinity {
    pub bridge: String,
    pub group_id: u32,
    /// `(client IPv4 address, bucket identity, age_ns)`.
    pub clients: Vec<(u32, u64, u64)>,
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
    let mac_tables = capture_mac_tables(switch);
    capture_with(switch, mac_tables, Forwarding::Running)
}

/// Whether the forwarding threads still run while the connection table is copied: then the
/// copy pauses between chunks so that they get the table's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    Running,
    Stopped,
}

/// The MAC tables, small: copied on the first forwarding thread between two batches (so the
/// forwarding threads must run).
pub fn capture_mac_tables(switch: &Switch) -> Vec<SavedMacTable> {
    let bridges: Vec<(String, usize)> = switch
        .lock()
        .values()
        .map(|b| (b.name.clone(), b.dp_index))
        .collect();
    switch.dp.call(move |dp| {
        bridges
            .into_iter()
            .map(|(bridge, idx)| SavedMacTable {
                bridge,
                entries: dp.mac_table_export(idx),
            })
            .collect()
    })
}

/// A handover of `mac_tables` and the affinity memory and connection table as they are now.
/// Also after the forwarding threads have stopped: a graceful stop copies the connection
/// table then, so that it is exactly what the next process needs (no connection opened and
/// no segment seen after the copy).
pub fn capture_with(
    switch: &Switch,
    mac_tables: Vec<SavedMacTable>,
    forwarding: Forwarding,
) -> Handover {
    let affinity = {
        let now = conntrack::lb::affinity::clock_ns();
        switch
            .lock()
            .values()
            .flat_map(|b| {
                b.affinity_tables()
                    .into_iter()
                    .map(|(group_id, t)| SavedAffinity {
                        bridge: b.name.clone(),
                        group_id,
                        clients: t.export(now),
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|a| !a.clients.is_empty())
            .collect()
    };
    let conntrack = snapshot_conntrack_while(switch, forwarding);
    Handover {
        format: HANDOVER_FORMAT.into(),
        version: HANDOVER_VERSION,
        written_by: format!("vswitchd {}", env!("CARGO_PKG_VERSION")),
        written_at_ns: wall_ns(),
        conntrack,
        mac_tables,
        affinity,
    }
}

/// Slab slots copied per hold of the conntrack lock by [`snapshot_conntrack`]: about
/// 0.1-0.3 ms of copying, the longest a packet that needs conntrack waits for a checkpoint.
pub const SNAPSHOT_CHUNK: usize = 4096;
/// The pause between two chunks of [`snapshot_conntrack`].
const CHUNK_PAUSE: Duration = Duration::from_micros(50);

/// Copies the connection table on the calling thread (never a forwarding thread), taking the
/// table's lock for [`SNAPSHOT_CHUNK`] slots at a time, so forwarding threads go on between
/// chunks and wait at most one chunk for the lock.
pub fn snapshot_conntrack(switch: &Switch) -> Vec<SavedConn> {
    snapshot_conntrack_while(switch, Forwarding::Running)
}

fn snapshot_conntrack_while(switch: &Switch, forwarding: Forwarding) -> Vec<SavedConn> {
    let ct = &switch.dp.ct;
    let mut out = Vec::with_capacity(ct.len());
    // Shard by shard, one shard's lock for one chunk at a time.
    for shard in 0..ct.shard_count() {
        let mut next = Some(0);
        while let Some(from) = next {
            // The datapath's clock (the forwarding threads' `now_ns`).
            let now = u64::try_from(switch.dp.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            next = ct.snapshot_chunk(shard, now, from, SNAPSHOT_CHUNK, &mut out);
            // The lock is not fair: taken again at once, a forwarding thread waiting for it
            // would wait for the whole copy. A pause lets it in.
            if next.is_some() && forwarding == Forwarding::Running {
                std::thread::sleep(CHUNK_PAUSE);
            }
        }
    }
    out
}

/// Writes the handover `h` for the next process (at a graceful stop); false (logged) when it
/// could not be written.
pub fn save(h: &Handover, path: &Path) -> bool {
    match write_atomic(path, h.encode().as_bytes()) {
        Ok(()) => {
            info!(
                connections = h.conntrack.len(),
                "connection and MAC tables handed over in {}",
                path.display()
            );
            true
        }
        Err(e) => {
            warn!(
                "cannot write the handover {}: {e} (the last checkpoint is kept instead)",
                path.display()
            );
            false
        }
    }
}

/// Reads the handover at `path`; `None` when there is none or it cannot be used (logged, and
/// the file deleted). A usable one stays until the start has succeeded ([`used`]): a start
/// that fails (a missing interface, a refused configuration) leaves it to the next try.
pub fn read(path: &Path) -> Option<Handover> {
    let text = match read_capped(path, MAX_HANDOVER_BYTES) {
        Ok(t) => t?,
        Err(e) => {
            warn!("handover discarded: {e}");
            let _ = std::fs::remove_file(path);
            return None;
        }
    };
    match Handover::decode(&path.display().to_string(), &text) {
        Ok(h) => Some(h),
        Err(e) => {
            warn!("handover discarded (connections through NAT start over): {e}");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

/// Deletes the handover once the start that read it has succeeded: it is used once, and
/// from then on the periodic checkpoint is newer.
pub fn used(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!("cannot delete the used handover {}: {e}", path.display());
    }
}

/// Reads the periodic checkpoint at `path` without deleting it (the next checkpoint replaces
/// it); `None` when there is none or it cannot be used (logged).
pub fn read_checkpoint(path: &Path) -> Option<Handover> {
    let text = match read_capped(path, MAX_HANDOVER_BYTES) {
        Ok(t) => t?,
        Err(e) => {
            warn!("connection checkpoint discarded: {e}");
            return None;
        }
    };
    match Handover::decode(&path.display().to_string(), &text) {
        Ok(h) => Some(h),
        Err(e) => {
            warn!("connection checkpoint discarded: {e}");
            None
        }
    }
}

/// Where the connections come from: a graceful stop's handover (exact) or, after a crash,
/// the last periodic checkpoint (seconds old: TCP windows are learned again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Handover,
    Checkpoint,
}

/// Loads the handed-over connections, less the time the switch was down.
pub fn restore_conntrack(switch: &Switch, h: &Handover, source: Source) {
    let down = u64::try_from(h.age().as_nanos()).unwrap_or(u64::MAX);
    let conns = h.conntrack.clone();
    let r = switch.dp.call(move |dp| {
        let now = dp.now_ns();
        match source {
            Source::Handover => dp.conntrack().restore_aged(&conns, now, down),
            Source::Checkpoint => dp.conntrack().restore_checkpoint(&conns, now, down),
        }
    });
    info!(
        restored = r.restored,
        skipped = r.skipped,
        down_ms = down / 1_000_000,
        "connections taken over from the {}",
        match source {
            Source::Handover => "handover",
            Source::Checkpoint => "last checkpoint (after a crash)",
        }
    );
}

/// How often the connection table, MAC tables and affinity memory are checkpointed to the
/// run directory, for a start after a crash.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// The checkpoint thread rests at least this many times as long as its last checkpoint took,
/// so it never takes more than ~1/(1 + this) of a core: a large table (each connection copied
/// and written as JSON) is checkpointed less often instead of taking CPU from forwarding
/// (vswitchd is usually pinned with its forwarding threads).
const CHECKPOINT_REST_FACTOR: u32 = 19;

/// The pause before the next checkpoint, after one that took `took`.
pub fn checkpoint_pause(took: Duration) -> Duration {
    CHECKPOINT_EVERY.max(took.saturating_mul(CHECKPOINT_REST_FACTOR))
}

/// Writes a checkpoint every [`CHECKPOINT_EVERY`] (less often when it takes long, see
/// [`checkpoint_pause`]) until stopped.
pub struct Checkpointer {
    path: std::path::PathBuf,
    /// True once stopped; held while a checkpoint is written, so none is written after.
    stopped: std::sync::Mutex<bool>,
}

impl Checkpointer {
    pub fn start(switch: std::sync::Arc<Switch>, path: &Path) -> std::sync::Arc<Checkpointer> {
        let me = std::sync::Arc::new(Checkpointer {
            path: path.to_path_buf(),
            stopped: std::sync::Mutex::new(false),
        });
        let c = me.clone();
        let _ = std::thread::Builder::new()
            .name("ct-checkpoint".into())
            .spawn(move || {
                let mut pause = CHECKPOINT_EVERY;
                loop {
                    std::thread::sleep(pause);
                    let stopped = c.stopped.lock().unwrap_or_else(|e| e.into_inner());
                    if *stopped {
                        break;
                    }
                    let start = std::time::Instant::now();
                    let mut h = capture(&switch);
                    // Ended TCP connections (time-wait, closed) are left out: after a crash
                    // they would only absorb late segments, and at a high connection rate
                    // they are most of the table (45 s of time-wait each).
                    h.conntrack.retain(|c| !c.tcp_ended());
                    if let Err(e) = write_atomic(&c.path, h.encode().as_bytes()) {
                        tracing::warn!("cannot write the checkpoint {}: {e}", c.path.display());
                    }
                    pause = checkpoint_pause(start.elapsed());
                }
            });
        me
    }

    /// Stops checkpointing (waiting for a write under way); with `remove`, also deletes the
    /// checkpoint (a graceful stop's handover supersedes it).
    pub fn stop(&self, remove: bool) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        *stopped = true;
        if remove {
            self.remove();
        }
    }

    /// Deletes the checkpoint (after [`Checkpointer::stop`], once a handover is written).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Loads the handed-over session-affinity memory into the select groups of the same bridge
/// and id (after the configuration is restored; a group that is gone or has no affinity
/// timeout any more takes nothing).
pub fn restore_affinity(switch: &Switch, h: &Handover) {
    let down = u64::try_from(h.age().as_nanos()).unwrap_or(u64::MAX);
    let now = conntrack::lb::affinity::clock_ns();
    let mut clients = 0;
    let bridges = switch.lock();
    for a in &h.affinity {
        let Some(b) = bridges.get(&a.bridge) else {
            continue;
        };
        if let Some((_, t)) = b
            .affinity_tables()
            .into_iter()
            .find(|(id, _)| *id == a.group_id)
        {
            let aged: Vec<_> = a
                .clients
                .iter()
                .map(|&(c, bucket, age)| (c, bucket, age.saturating_add(down)))
                .collect();
            t.import(&aged, now);
            clients += aged.len();
        }
    }
    if clients > 0 {
        info!(clients, "session affinity taken over");
    }
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
            affinity: vec![SavedAffinity {
                bridge: "br0".into(),
                group_id: 3,
                clients: vec![(0x0a00_0001, 77, 5)],
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

    #[test]
    fn a_slow_checkpoint_rests_longer_so_it_keeps_to_a_twentieth_of_a_core() {
        // Small tables: every 2 s.
        assert_eq!(checkpoint_pause(Duration::from_millis(3)), CHECKPOINT_EVERY);
        assert_eq!(checkpoint_pause(Duration::ZERO), CHECKPOINT_EVERY);
        // A 400 ms checkpoint (a large table): the next one 7.6 s later.
        let took = Duration::from_millis(400);
        let pause = checkpoint_pause(took);
        assert_eq!(pause, Duration::from_millis(7600));
        assert!(took.as_secs_f64() / (took + pause).as_secs_f64() <= 0.05 + 1e-9);
    }
}
