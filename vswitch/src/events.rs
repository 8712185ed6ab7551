//! Asynchronous OpenFlow events (packet-ins, FLOW_REMOVED, port status, flow-monitor
//! updates) and the hub that fans them out to the connections that asked for them.

use std::sync::{Arc, Mutex};

use flowtable::FlowEntry;
use hashbrown::HashMap;

/// An asynchronous OpenFlow message for the connections that asked for them.
#[derive(Debug, Clone)]
pub enum AsyncEvent {
    PacketIn(crate::datapath::PacketInEvent),
    /// A flow with `send_flow_rem` went away; `reason` is OFPRR_* (0 idle, 1 hard, 2 delete).
    FlowRemoved {
        entry: Box<FlowEntry>,
        reason: u8,
    },
    /// A port was added (`reason` 0) or deleted (1).
    PortStatus {
        reason: u8,
        ofport: u32,
        name: String,
        mac: [u8; 6],
    },
    /// A flow was added, deleted or modified (for flow monitors; only sent while some
    /// connection monitors). `event` is `NXFME_*`.
    FlowUpdate {
        event: u16,
        /// For DELETED: `OFPRR_*` (idle, hard, delete).
        reason: u8,
        entry: Arc<FlowEntry>,
    },
}

/// Fans packet-ins and flow-removed messages out to the OpenFlow connections that asked.
#[derive(Default)]
pub struct PacketInHub {
    /// Bridge datapath index → name.
    names: Mutex<HashMap<usize, String>>,
    subscribers: Mutex<HashMap<String, Vec<crossbeam_channel::Sender<AsyncEvent>>>>,
    /// Connections with flow monitors: publish reports flow changes only while there are some.
    flow_monitors: std::sync::atomic::AtomicUsize,
}

impl PacketInHub {
    /// A connection started (`true`) or stopped monitoring flows.
    pub fn monitoring(&self, on: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if on {
            self.flow_monitors.fetch_add(1, Relaxed);
        } else {
            self.flow_monitors.fetch_sub(1, Relaxed);
        }
    }

    pub fn has_flow_monitors(&self) -> bool {
        self.flow_monitors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    }

    /// Asynchronous messages of bridge `br` from now on, until the receiver is dropped.
    pub fn subscribe(&self, br: &str) -> crossbeam_channel::Receiver<AsyncEvent> {
        let (tx, rx) = crossbeam_channel::bounded(1024);
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(br.to_string())
            .or_default()
            .push(tx);
        rx
    }

    /// Delivers one packet-in; false when nobody took it.
    pub fn dispatch(&self, ev: crate::datapath::PacketInEvent) -> bool {
        let Some(name) = self
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ev.bridge)
            .cloned()
        else {
            return false;
        };
        self.send(&name, AsyncEvent::PacketIn(ev))
    }

    /// Delivers an event to every subscriber of bridge `br`; false when there is none.
    pub fn send(&self, br: &str, ev: AsyncEvent) -> bool {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = subs.get_mut(br) else {
            return false;
        };
        list.retain(|s| {
            !matches!(
                s.try_send(ev.clone()),
                Err(crossbeam_channel::TrySendError::Disconnected(_))
            )
        });
        !list.is_empty()
    }
}

impl PacketInHub {
    /// Names datapath bridge `dp_index` (packet-ins carry the index).
    pub fn bridge_added(&self, dp_index: usize, name: &str) {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dp_index, name.to_string());
    }

    pub fn bridge_removed(&self, dp_index: usize) {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&dp_index);
    }
}
