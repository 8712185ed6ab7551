//! Repeated warnings, rate-limited: a site that may fail over and over (a port's receive
//! errors, a failing poll) logs at most one line per interval, and that line says how many
//! were suppressed since the previous one. And [`TokenBucket`], for packets the switch itself
//! generates on the fast path (ICMP errors), which must not follow a flood one for one.

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

/// A token bucket on the datapath clock (nanoseconds, e.g. a batch's `now_ns`): `burst`
/// tokens at most, refilled at `per_sec`. Owned by one thread (no atomics, no lock) and never
/// allocating; the caller passes the time it already has, so no clock is read per packet.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Nanoseconds per token.
    every_ns: u64,
    burst: u64,
    tokens: u64,
    /// Clock up to which refills have been credited.
    credited_ns: u64,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `per_sec` (at least 1) per second.
    pub const fn new(per_sec: u64, burst: u64) -> TokenBucket {
        TokenBucket {
            // At least 1 ns per token: a rate above 1e9/s would make it 0 (a division by 0).
            every_ns: match 1_000_000_000 / if per_sec == 0 { 1 } else { per_sec } {
                0 => 1,
                ns => ns,
            },
            burst,
            tokens: burst,
            credited_ns: 0,
        }
    }

    /// Takes a token at `now_ns` if there is one. Time going backwards (another thread's
    /// clock reading) refills nothing.
    #[inline]
    pub fn allow(&mut self, now_ns: u64) -> bool {
        let due = now_ns.saturating_sub(self.credited_ns) / self.every_ns;
        if due > 0 {
            self.tokens = self.tokens.saturating_add(due).min(self.burst);
            // Keep the fraction of a token already elapsed (a full bucket wastes it anyway).
            self.credited_ns += due * self.every_ns;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        const MS: u64 = 1_000_000;
        let mut b = TokenBucket::new(1000, 50);
        let t0 = 5_000 * MS;
        let granted = (0..200).filter(|_| b.allow(t0)).count();
        assert_eq!(granted, 50, "the burst, then nothing at the same instant");
        assert!(!b.allow(t0 + MS / 2), "half a token is none");
        assert!(b.allow(t0 + MS), "one per millisecond");
        assert!(!b.allow(t0 + MS));
        // 10 ms later: 10 tokens, not more.
        assert_eq!((0..20).filter(|_| b.allow(t0 + 11 * MS)).count(), 10);
        // A long pause fills the bucket to the burst only.
        assert_eq!((0..200).filter(|_| b.allow(t0 + 10_000 * MS)).count(), 50);
        // The clock going backwards gives nothing back.
        assert!(!b.allow(t0));
    }

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
