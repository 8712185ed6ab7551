//! OpenFlow session counters per bridge, for metrics: sessions open now, sessions opened, and
//! OFPT_ERROR replies sent. Process-wide, like the sockets they count.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One bridge's session counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounts {
    pub open: u64,
    pub opened: u64,
    pub errors_sent: u64,
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
