//! OpenFlow session counters per bridge, for metrics: sessions open now, sessions opened,
//! OFPT_ERROR replies sent, and the asynchronous messages lost to connections that fell
//! behind (see `crate::events`). Process-wide, like the sockets they count.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One bridge's session counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounts {
    pub open: u64,
    pub opened: u64,
    pub errors_sent: u64,
    /// Packet-ins dropped because a connection had `events::LOSSY_QUEUED_MAX` waiting.
    pub packet_ins_dropped: u64,
    /// Flow-monitor updates dropped for the same reason.
    pub monitor_updates_dropped: u64,
    /// Connections cut off because `events::QUEUED_MAX` messages waited for them (they
    /// would otherwise have lost a FLOW_REMOVED or PORT_STATUS).
    pub async_overruns: u64,
}

/// What an asynchronous message lost to a slow connection was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    PacketIn,
    MonitorUpdate,
    /// The connection itself (see [`SessionCounts::async_overruns`]).
    Overrun,
}

/// Counts one asynchronous message lost to a connection of `bridge`.
pub fn async_lost(bridge: &str, what: Lost) {
    update(bridge, |c| match what {
        Lost::PacketIn => c.packet_ins_dropped += 1,
        Lost::MonitorUpdate => c.monitor_updates_dropped += 1,
        Lost::Overrun => c.async_overruns += 1,
    });
}

static COUNTS: Mutex<BTreeMap<String, SessionCounts>> = Mutex::new(BTreeMap::new());

fn update(bridge: &str, f: impl FnOnce(&mut SessionCounts)) {
    let mut m = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    match m.get_mut(bridge) {
        Some(c) => f(c),
        None => f(m.entry(bridge.to_string()).or_default()),
    }
}

/// Counts a session from its start to its end (drop).
pub struct OpenSession {
    bridge: String,
}

impl OpenSession {
    pub fn start(bridge: &str) -> OpenSession {
        update(bridge, |c| {
            c.open += 1;
            c.opened += 1;
        });
        OpenSession {
            bridge: bridge.to_string(),
        }
    }

    /// One OFPT_ERROR reply sent on this session.
    pub fn error_sent(&self) {
        update(&self.bridge, |c| c.errors_sent += 1);
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        update(&self.bridge, |c| c.open = c.open.saturating_sub(1));
    }
}

/// Every bridge's counters (bridges that ever had a session).
pub fn snapshot() -> BTreeMap<String, SessionCounts> {
    COUNTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
