//! Named conntrack counters: every drop, invalid verdict and table event is counted.

/// One counter. `Counter::ALL` lists them in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Counter {
    /// Packets handed to `process`.
    Packets = 0,
    /// Connections created (committed).
    Committed,
    /// Connections removed by timeout.
    Expired,
    /// Connections removed by `flush`.
    Flushed,
    /// Closed TCP connections (TIME_WAIT) removed before their timeout to make room for a new
    /// connection in a full table.
    ClosedEvicted,
    /// Connections not yet established (a TCP handshake not completed; UDP or ICMP heard from
    /// the initiator only) removed before their timeout, oldest first, to make room in a full
    /// table with no closed TCP connection left (the kernel's `early_drop`).
    UnestablishedEvicted,
    /// Closed TCP connections replaced by a new SYN.
    Reopened,
    /// ICMP errors related to a connection.
    Related,
    /// New connection refused: the table is at `max_conns`.
    DropTableFull,
    /// New connection refused: no free NAT binding in the range.
    DropNatExhausted,
    /// New connection refused: its reply tuple is already another connection's key.
    DropTupleClash,
    /// New connection refused: its zone is at its limit (`ct-set-limits`).
    DropZoneLimit,
    /// New connection refused: its source address is at its limit in the zone.
    DropSourceLimit,
    InvalidNotIp,
    InvalidIcmpType,
    InvalidIcmpUnrelated,
    InvalidIcmpReplyNoConn,
    /// An ICMP echo request in a connection's reply direction, or an echo reply in its
    /// original direction (the same identifier the other way round).
    InvalidIcmpEchoDirection,
    InvalidTcpFlags,
    InvalidTcpNotNew,
    InvalidTcpWindow,
    InvalidFragment,
    /// Headers conntrack could not read (cut short or inconsistent): invalid without a lookup.
    InvalidMalformed,
    /// A TCP, UDP, ICMP or ICMPv6 checksum that does not verify: invalid without a lookup.
    InvalidL4Checksum,
    /// A fragment ahead of its first fragment was held.
    FragHeld,
    /// Held fragments handed back after their first fragment passed.
    FragReleased,
    /// A fragment could not be held (hold full): it was invalid instead.
    FragHoldFull,
    /// A fragment could not be held (frame larger than a hold slot): invalid instead.
    FragHoldTooBig,
    /// A fragment could not be held (its zone or its source holds its share of the hold):
    /// invalid instead.
    FragHoldOverShare,
    /// Held fragments dropped: their first fragment did not come in time.
    FragHoldExpired,
    /// ALG expectations stored (an FTP `PORT`/`227`/`EPRT`/`229`, a TFTP request).
    AlgExpected,
    /// ALG announcements not stored: the expectation table was full.
    AlgExpectFull,
    /// ALG expectations removed unused: expired, or their control connection ended.
    AlgExpectRemoved,
    /// Related data connections committed (their expectation is used up).
    AlgRelated,
    /// FTP control packets marked invalid: a malformed announcement, or one naming another
    /// host (an FTP bounce).
    AlgFtpInvalid,
}

impl Counter {
    pub const COUNT: usize = 35;
    pub const ALL: [Counter; Self::COUNT] = [
        Counter::Packets,
        Counter::Committed,
        Counter::Expired,
        Counter::Flushed,
        Counter::ClosedEvicted,
        Counter::UnestablishedEvicted,
        Counter::Reopened,
        Counter::Related,
        Counter::DropTableFull,
        Counter::DropNatExhausted,
        Counter::DropTupleClash,
        Counter::DropZoneLimit,
        Counter::DropSourceLimit,
        Counter::InvalidNotIp,
        Counter::InvalidIcmpType,
        Counter::InvalidIcmpUnrelated,
        Counter::InvalidIcmpReplyNoConn,
        Counter::InvalidIcmpEchoDirection,
        Counter::InvalidTcpFlags,
        Counter::InvalidTcpNotNew,
        Counter::InvalidTcpWindow,
        Counter::InvalidFragment,
        Counter::InvalidMalformed,
        Counter::InvalidL4Checksum,
        Counter::FragHeld,
        Counter::FragReleased,
        Counter::FragHoldFull,
        Counter::FragHoldTooBig,
        Counter::FragHoldOverShare,
        Counter::FragHoldExpired,
        Counter::AlgExpected,
        Counter::AlgExpectFull,
        Counter::AlgExpectRemoved,
        Counter::AlgRelated,
        Counter::AlgFtpInvalid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::Packets => "packets",
            Counter::Committed => "committed",
            Counter::Expired => "expired",
            Counter::Flushed => "flushed",
            Counter::ClosedEvicted => "tcp_closed_evicted",
            Counter::UnestablishedEvicted => "unestablished_evicted",
            Counter::Reopened => "tcp_reopened",
            Counter::Related => "related",
            Counter::DropTableFull => "drop_table_full",
            Counter::DropNatExhausted => "drop_nat_exhausted",
            Counter::DropTupleClash => "drop_tuple_clash",
            Counter::DropZoneLimit => "drop_zone_limit",
            Counter::DropSourceLimit => "drop_source_limit",
            Counter::InvalidNotIp => "invalid_not_ip",
            Counter::InvalidIcmpType => "invalid_icmp_type",
            Counter::InvalidIcmpUnrelated => "invalid_icmp_error_unrelated",
            Counter::InvalidIcmpReplyNoConn => "invalid_icmp_reply_without_request",
            Counter::InvalidIcmpEchoDirection => "invalid_icmp_echo_direction",
            Counter::InvalidTcpFlags => "invalid_tcp_flags",
            Counter::InvalidTcpNotNew => "invalid_tcp_cannot_open",
            Counter::InvalidTcpWindow => "invalid_tcp_out_of_window",
            Counter::InvalidFragment => "invalid_fragment_unknown",
            Counter::InvalidMalformed => "invalid_malformed",
            Counter::InvalidL4Checksum => "invalid_l4_checksum",
            Counter::FragHeld => "frag_held",
            Counter::FragReleased => "frag_released",
            Counter::FragHoldFull => "frag_hold_refused_full",
            Counter::FragHoldTooBig => "frag_hold_refused_too_big",
            Counter::FragHoldOverShare => "frag_hold_refused_share",
            Counter::FragHoldExpired => "drop_frag_hold_expired",
            Counter::AlgExpected => "alg_expectations",
            Counter::AlgExpectFull => "alg_expectation_table_full",
            Counter::AlgExpectRemoved => "alg_expectations_unused",
            Counter::AlgRelated => "alg_related",
            Counter::AlgFtpInvalid => "invalid_ftp_control",
        }
    }
}

/// The counter values, indexed by `Counter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters([u64; Counter::COUNT]);

impl Default for Counters {
    fn default() -> Self {
        Counters([0; Counter::COUNT])
    }
}

impl Counters {
    #[inline]
    pub(crate) fn bump(&mut self, c: Counter) {
        self.0[c as usize] += 1;
    }

    #[inline]
    pub(crate) fn add(&mut self, c: Counter, n: u64) {
        self.0[c as usize] += n;
    }

    pub(crate) fn sub(&mut self, c: Counter, n: u64) {
        self.0[c as usize] = self.0[c as usize].saturating_sub(n);
    }

    /// Adds `other`'s values to these.
    pub fn merge(&mut self, other: &Counters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// (name, value) pairs in display order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Counter::ALL.iter().map(|&c| (c.name(), self.get(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_complete_and_in_discriminant_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        let names: std::collections::HashSet<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Counter::COUNT);
    }
}
