//! The bounds of the control plane's sockets (vswitchd flags; docs/operations.md, "Limits that
//! protect the node").

use std::time::Duration;

/// Connections open at once on the management socket (`--mgmt-max-conns`).
pub const MGMT_MAX_CONNS: usize = 256;
/// Connections open at once on each OpenFlow socket (`--of-max-conns`).
pub const OF_MAX_CONNS: usize = 256;
/// Longest management request line (`--mgmt-max-request-bytes`): a 64 MiB node file, JSON-escaped.
pub const MGMT_MAX_REQUEST: usize = 128 << 20;
/// Seconds a client may stay silent (`--ctl-idle-timeout`).
pub const IDLE_TIMEOUT_SECS: u64 = 30;
/// Threads that run commands and OpenFlow requests (`--ctl-workers`).
pub const WORKERS: usize = 4;
/// Unprocessed OpenFlow input buffered per connection; beyond it the socket is not read until
/// the session catches up (an OpenFlow message is at most 64 KiB).
pub const OF_INPUT_MAX: usize = 1 << 20;
/// Unsent output per connection beyond which no further request of that client is run.
pub const OUTPUT_HIGH: usize = 4 << 20;

#[derive(Clone, Debug)]
pub struct Limits {
    pub mgmt_max_conns: usize,
    pub of_max_conns: usize,
    pub mgmt_max_request: usize,
    /// A management client must send its whole request this soon after connecting; an
    /// OpenFlow peer silent this long is probed with an echo request, and closed if it stays
    /// silent as long again or leaves a message unfinished this long; a peer that reads none of
    /// its replies for this long is closed.
    pub idle_timeout: Duration,
    pub workers: usize,
}

impl Limits {
    /// Bytes all management connections may buffer together: two maximal requests.
    pub fn mgmt_budget(&self) -> usize {
        self.mgmt_max_request.saturating_mul(2)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            mgmt_max_conns: MGMT_MAX_CONNS,
            of_max_conns: OF_MAX_CONNS,
            mgmt_max_request: MGMT_MAX_REQUEST,
            idle_timeout: Duration::from_secs(IDLE_TIMEOUT_SECS),
            workers: WORKERS,
        }
    }
}
