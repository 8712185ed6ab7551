//! Repeated warnings, rate-limited: a site that may fail over and over (a port's receive
//! errors, a failing poll) logs at most one line per interval, and that line says how many
//! were suppressed since the previous one.

use std::time::{Duration, Instant};

/// One warning site's limiter (not shared: each port or loop keeps its own).
#[derive(Debug, Clone)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged at `now` (`n`: lines suppressed since the last
    /// one logged), else `None`, and the occurrence is counted.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The interval warning sites use: one line per site every 10 seconds.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit::new(WARN_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_suppressed_count() {
        let mut r = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(r.allow(t0), Some(0));
        for s in 1..=4 {
            assert_eq!(r.allow(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(r.allow(t0 + Duration::from_secs(10)), Some(4));
        assert_eq!(r.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(25)), Some(1));
    }
}
