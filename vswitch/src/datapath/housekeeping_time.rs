//! When a forwarding thread runs its periodic housekeeping (expiry, kernel drop counters).
//!
//! At idle it should not run in a turn that forwarded frames: a ping's request is sent in that
//! turn, and the reply, which the kernel delivers into the other port's ring during that same
//! send, would wait behind the housekeeping (tens of µs on cold caches) before the next poll
//! picks it up. So an idle thread defers it to a turn that found its ports drained (the next
//! poll does not sleep meanwhile). A busy thread runs it on time: its ports are never drained,
//! and its latency is the queue's anyway.

use std::time::Duration;

/// How often housekeeping runs.
pub const EVERY: Duration = Duration::from_millis(100);
/// Past this, it runs in whatever turn (a stream that never leaves the ports drained).
pub const LATEST: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Housekeeping {
    NotDue,
    Now,
    /// Due, put off to the next turn, which must poll without sleeping.
    Deferred,
}

/// What to do at the end of a turn that received `got` frames, `since` the last housekeeping,
/// with the thread's load level `busy`.
pub fn decide(since: Duration, got: u64, busy: bool) -> Housekeeping {
    if since < EVERY {
        Housekeeping::NotDue
    } else if got == 0 || busy || since >= LATEST {
        Housekeeping::Now
    } else {
        Housekeeping::Deferred
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_turn_with_frames_defers_until_ports_are_drained() {
        let due = EVERY + Duration::from_millis(1);
        assert_eq!(decide(due, 1, false), Housekeeping::Deferred);
        assert_eq!(decide(due, 0, false), Housekeeping::Now);
    }

    #[test]
    fn busy_or_late_runs_on_time_and_early_never() {
        let due = EVERY + Duration::from_millis(1);
        assert_eq!(decide(due, 32, true), Housekeeping::Now);
        assert_eq!(decide(LATEST, 1, false), Housekeeping::Now);
        assert_eq!(decide(EVERY / 2, 0, false), Housekeeping::NotDue);
        assert_eq!(decide(EVERY / 2, 32, true), Housekeeping::NotDue);
    }
}
