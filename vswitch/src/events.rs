//! Asynchronous OpenFlow events (packet-ins, FLOW_REMOVED, port status, flow-monitor
//! updates) and the hub that fans them out to the connections that asked for them.
//!
//! Each subscribed connection has one queue, in event order, with two kinds of events:
//! - FLOW_REMOVED and PORT_STATUS are never dropped (Open vSwitch never drops them either):
//!   a burst of any size is queued, so a DELETE of 100 000 `send_flow_rem` flows yields
//!   100 000 FLOW_REMOVED. FLOW_REMOVED is queued encoded (about 100 bytes), not as a flow.
//! - packet-ins and flow-monitor updates are dropped once [`LOSSY_QUEUED_MAX`] of them wait,
//!   and every drop is counted (`ofserver::counters`: `packet_ins_dropped`,
//!   `monitor_updates_dropped`, per bridge).
//!
//! Memory stays bounded per connection: a connection with [`QUEUED_MAX`] events waiting (a
//! controller that cannot keep up) is cut off: its queue is dropped, the cut is counted
//! (`async_overruns`) and its session closes the connection rather than go on with a hole in
//! its FLOW_REMOVED stream. Sending never blocks: the sender often holds the switch lock, and
//! the session it would wait for may be the one that made the change.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use flowtable::FlowEntry;
use hashbrown::HashMap;

use crate::ofserver::counters::{Lost, async_lost};

/// Packet-ins and flow-monitor updates waiting for one connection beyond which new ones are
/// dropped (and counted).
pub const LOSSY_QUEUED_MAX: usize = 1024;

/// Events of any kind waiting for one connection beyond which it is cut off. A queued
/// FLOW_REMOVED is about 150 bytes with the queue's own slot, so this is some 40 MiB at most.
pub const QUEUED_MAX: usize = 256 * 1024;

/// An asynchronous OpenFlow message for the connections that asked for them.
#[derive(Debug, Clone)]
pub enum AsyncEvent {
    PacketIn(Box<crate::datapath::PacketInEvent>),
    /// A flow with `send_flow_rem` went away: the whole OFPT_FLOW_REMOVED (xid 0), encoded
    /// when it went (its duration is the flow's age then), shared by every subscriber.
    FlowRemoved(Arc<[u8]>),
    /// A port was added (`reason` 0, `OFPPR_ADD`), deleted (1) or changed (2: its `mod-port`
    /// bits, or its interface's link went down or up); `port` as PORT_DESC describes it.
    PortStatus {
        reason: u8,
        port: openflow::switch::Port,
    },
    /// A flow was added, deleted or modified (for flow monitors; only sent while some
    /// connection monitors). `event` is `NXFME_*`.
    FlowUpdate {
        event: u16,
        /// For DELETED: `OFPRR_*` (idle, hard, delete, group_delete).
        reason: u8,
        entry: Arc<FlowEntry>,
    },
}

impl AsyncEvent {
    /// Packet-ins and flow-monitor updates may be dropped (and counted) when a connection
    /// falls behind; FLOW_REMOVED and PORT_STATUS may not.
    pub fn is_lossy(&self) -> bool {
        matches!(
            self,
            AsyncEvent::PacketIn(_) | AsyncEvent::FlowUpdate { .. }
        )
    }
}

/// The OFPT_FLOW_REMOVED (OpenFlow 1.3, xid 0) for flow `e` (with its final counters) that
/// went away now for `reason` (`OFPRR_*`).
pub fn flow_removed_message(e: &FlowEntry, reason: u8) -> Option<Arc<[u8]>> {
    let (duration_sec, duration_nsec) = openflow::convert::duration_ms(e.created.elapsed());
    let msg = openflow::Message::FlowRemoved(openflow::flow::FlowRemoved {
        cookie: e.cookie,
        priority: e.priority,
        reason,
        table_id: e.table_id,
        duration_sec,
        duration_nsec,
        idle_timeout: e.idle_timeout,
        hard_timeout: e.hard_timeout,
        packet_count: e.packets,
        byte_count: e.bytes,
        match_: openflow::oxm::Match::from_flow(&e.match_.value, &e.match_.mask),
    });
    openflow::encode(&msg, 0).ok().map(Arc::from)
}

/// What a subscriber and its hub share.
#[derive(Default)]
struct Shared {
    /// Lossy events in the queue now.
    lossy: AtomicUsize,
    /// The connection fell [`QUEUED_MAX`] events behind and was cut off.
    overrun: AtomicBool,
    /// The subscription was dropped (the connection closed).
    closed: AtomicBool,
    /// NXT_SET_CONTROLLER_ID: packet-ins of `controller(id=N)` go only to connections with
    /// controller id N (0 by default).
    controller_id: AtomicU16,
}

struct Subscriber {
    tx: crossbeam_channel::Sender<AsyncEvent>,
    shared: Arc<Shared>,
}

/// One connection's asynchronous messages (see the module comment), until it is dropped.
pub struct Subscription {
    rx: crossbeam_channel::Receiver<AsyncEvent>,
    shared: Arc<Shared>,
}

impl Subscription {
    /// The next waiting event, if any.
    pub fn try_recv(&self) -> Option<AsyncEvent> {
        let ev = self.rx.try_recv().ok()?;
        if ev.is_lossy() {
            self.shared.lossy.fetch_sub(1, Relaxed);
        }
        Some(ev)
    }

    /// The connection fell too far behind and was cut off: nothing more will come, and what
    /// did come has a hole; the session closes the connection.
    pub fn overrun(&self) -> bool {
        self.shared.overrun.load(Relaxed)
    }

    /// NXT_SET_CONTROLLER_ID: from now on, packet-ins of `controller(id=id)` only.
    pub fn set_controller_id(&self, id: u16) {
        self.shared.controller_id.store(id, Relaxed);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.closed.store(true, Relaxed);
    }
}

/// Fans packet-ins and flow-removed messages out to the OpenFlow connections that asked.
pub struct PacketInHub {
    /// Bridge datapath index → name.
    names: Mutex<HashMap<usize, String>>,
    subscribers: Mutex<HashMap<String, Vec<Subscriber>>>,
    /// Connections with flow monitors: publish reports flow changes only while there are some.
    flow_monitors: AtomicUsize,
    /// Packet-ins and monitor updates dropped are also logged, at most once per interval.
    drop_log: Mutex<crate::ratelimit::RateLimit>,
}

impl Default for PacketInHub {
    fn default() -> Self {
        PacketInHub {
            names: Mutex::default(),
            subscribers: Mutex::default(),
            flow_monitors: AtomicUsize::new(0),
            drop_log: Mutex::new(crate::ratelimit::RateLimit::new(
                std::time::Duration::from_secs(10),
            )),
        }
    }
}

impl PacketInHub {
    /// A connection started (`true`) or stopped monitoring flows.
    pub fn monitoring(&self, on: bool) {
        if on {
            self.flow_monitors.fetch_add(1, Relaxed);
        } else {
            self.flow_monitors.fetch_sub(1, Relaxed);
        }
    }

    pub fn has_flow_monitors(&self) -> bool {
        self.flow_monitors.load(Relaxed) > 0
    }

    /// Asynchronous messages of bridge `br` from now on, until the subscription is dropped.
    /// Subscriptions dropped since the bridge's last event are forgotten here too (a bridge
    /// without events would keep them forever).
    pub fn subscribe(&self, br: &str) -> Subscription {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::default());
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        for list in subs.values_mut() {
            list.retain(|s| !s.shared.closed.load(Relaxed));
        }
        subs.retain(|_, list| !list.is_empty());
        subs.entry(br.to_string()).or_default().push(Subscriber {
            tx,
            shared: shared.clone(),
        });
        Subscription { rx, shared }
    }

    /// Connections subscribed to bridge `br` (closed ones not yet forgotten included).
    pub fn subscribers(&self, br: &str) -> usize {
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(br)
            .map_or(0, Vec::len)
    }

    /// Whether some connection listens to bridge `br` (callers skip building events then).
    pub fn has_subscribers(&self, br: &str) -> bool {
        self.subscribers(br) > 0
    }

    /// Delivers one packet-in to the connections of its bridge whose controller id is the
    /// action's; false when there is none.
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
        let id = ev.action.controller_id;
        self.deliver(&name, AsyncEvent::PacketIn(Box::new(ev)), |s| {
            s.controller_id.load(Relaxed) == id
        })
    }

    /// Delivers an event to every subscriber of bridge `br`; false when there is none.
    pub fn send(&self, br: &str, ev: AsyncEvent) -> bool {
        self.deliver(br, ev, |_| true)
    }

    fn deliver(&self, br: &str, ev: AsyncEvent, wants: impl Fn(&Shared) -> bool) -> bool {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = subs.get_mut(br) else {
            return false;
        };
        let lossy = ev.is_lossy();
        let mut delivered = false;
        list.retain(|s| {
            if s.shared.closed.load(Relaxed) {
                return false;
            }
            if !wants(&s.shared) {
                return true;
            }
            delivered = true;
            if s.tx.len() >= QUEUED_MAX {
                // Dropping the sender ends the subscription; the session sees `overrun`.
                s.shared.overrun.store(true, Relaxed);
                async_lost(br, Lost::Overrun);
                tracing::warn!(
                    bridge = br,
                    "an OpenFlow connection fell {QUEUED_MAX} asynchronous messages behind: \
                     closing it"
                );
                return false;
            }
            if lossy {
                if s.shared.lossy.load(Relaxed) >= LOSSY_QUEUED_MAX {
                    let what = match ev {
                        AsyncEvent::PacketIn(_) => Lost::PacketIn,
                        _ => Lost::MonitorUpdate,
                    };
                    async_lost(br, what);
                    let allowed = self
                        .drop_log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .allow(std::time::Instant::now());
                    if let Some(suppressed) = allowed {
                        tracing::warn!(
                            bridge = br,
                            suppressed,
                            "an OpenFlow connection has {LOSSY_QUEUED_MAX} packet-ins and \
                             flow-monitor updates waiting: dropping more (counted as \
                             packet_ins_dropped / monitor_updates_dropped)"
                        );
                    }
                    return true;
                }
                s.shared.lossy.fetch_add(1, Relaxed);
            }
            s.tx.send(ev.clone()).is_ok()
        });
        delivered
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
