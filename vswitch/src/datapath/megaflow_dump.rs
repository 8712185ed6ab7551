//! A read-only snapshot of a bridge's megaflow caches, every forwarding thread's, for
//! `vswitchctl dump-megaflows`. Nothing here runs on the packet path.

use encap::FlowKey;

use super::actions::DpAction;
use super::{Datapath, DatapathHandle};

/// One megaflow of one thread's cache.
#[derive(Debug, Clone)]
pub struct MegaflowSnapshot {
    /// The forwarding thread whose cache holds it.
    pub thread: usize,
    /// The key, already masked.
    pub key: FlowKey,
    /// Which bits of a packet's key the entry looks at.
    pub mask: FlowKey,
    pub packets: u64,
    pub bytes: u64,
    /// Datapath clock (ns since [`DatapathHandle::start`]) of the last batch that used it; 0 never.
    pub used_ns: u64,
    pub actions: Vec<DpAction>,
}

impl DatapathHandle {
    /// The megaflows of bridge `bridge` (its datapath index) on every thread, thread 0 first.
    pub fn dump_megaflows(&self, bridge: usize) -> Vec<MegaflowSnapshot> {
        self.each(move |t, dp| dp.megaflow_snapshot(t, bridge))
            .into_iter()
            .flatten()
            .collect()
    }
}

impl Datapath {
    fn megaflow_snapshot(&self, thread: usize, bridge: usize) -> Vec<MegaflowSnapshot> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(b) = self.bridges.get(bridge).and_then(|b| b.as_ref()) else {
            return Vec::new();
        };
        b.megaflows
            .entries()
            .map(|(mask, key, flow)| MegaflowSnapshot {
                thread,
                key: *key,
                mask: *mask,
                packets: flow.stats.packets.load(Relaxed),
                bytes: flow.stats.bytes.load(Relaxed),
                used_ns: flow.stats.used_ns.load(Relaxed),
                actions: flow.actions.clone(),
            })
            .collect()
    }
}
