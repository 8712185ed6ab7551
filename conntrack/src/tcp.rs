//! TCP connection tracking: per-direction state and a window check.
//!
//! The model is the one pf, Open vSwitch's userspace conntrack and Linux share: each side keeps
//! the highest sequence number it has sent (`seq_end`), the highest it is allowed to send
//! (`seq_max`: the peer's last ACK plus its window) and the largest window it has advertised.
//! A segment is out of window when it starts beyond what the receiver allowed, ends before
//! what the receiver could still be waiting for (more than one max window back), or acknowledges
//! data that was never sent. The checks are deliberately loose (Linux's bounds, plus slack on
//! ACKs) so retransmits, window probes and scaled windows never turn invalid; and they only
//! start once both sides have spoken, so a half-seen handshake is never judged.

use super::timeouts::TimeoutClass;

pub const TCP_FIN: u16 = 0x01;
pub const TCP_SYN: u16 = 0x02;
pub const TCP_RST: u16 = 0x04;
pub const TCP_ACK: u16 = 0x10;

/// Slack allowed on acknowledgements (pf's MAXACKWINDOW: one full window plus a segment).
const MAX_ACK_WINDOW: u32 = 65_535 + 1_500;
/// Shift assumed when a side's window-scale option is unknown: the most liberal value.
const UNKNOWN_WSCALE_SHIFT: u8 = 14;

/// TCP states with the numbering and names of OVS `ct_dpif` (`CT_DPIF_TCPS_*`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[repr(u8)]
pub enum TcpState {
    #[default]
    Closed = 0,
    Listen,
    SynSent,
    SynRecv,
    Established,
    CloseWait,
    FinWait1,
    /// This side has sent a FIN.
    Closing,
    LastAck,
    /// This side's FIN has been acknowledged.
    FinWait2,
    TimeWait,
}

impl TcpState {
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::FinWait1 => "FIN_WAIT_1",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST_ACK",
            TcpState::FinWait2 => "FIN_WAIT_2",
            TcpState::TimeWait => "TIME_WAIT",
        }
    }
}

/// What the packet's SYN said about window scaling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WindowScale {
    /// The caller did not parse TCP options: conntrack assumes the most liberal scale.
    #[default]
    NotParsed,
    /// The SYN carried no window-scale option.
    Absent,
    /// The SYN carried this shift count (clamped to 14).
    Shift(u8),
}

/// The TCP header fields conntrack needs besides the flags (which come from `FlowKey`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSegment {
    pub flags: u16,
    pub seq: u32,
    pub ack: u32,
    /// The raw (unscaled) window field.
    pub window: u16,
    /// Window-scale option, meaningful on SYN segments only.
    pub wscale: WindowScale,
    /// TCP payload bytes in this packet.
    pub payload_len: u32,
}

/// Why a TCP segment was judged invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpInvalid {
    /// Impossible flag combination (SYN+RST, SYN+FIN, no ACK and no RST...).
    BadFlags,
    /// A segment that cannot open a connection (SYN+ACK, RST, FIN) and matches none.
    NotNew,
    /// Sequence or acknowledgement number outside the window.
    OutOfWindow,
}

/// Outcome of feeding one segment to an existing connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpVerdict {
    Valid,
    Invalid(TcpInvalid),
    /// A SYN on a closed connection: the caller drops the old connection and starts anew.
    Reopen,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Peer {
    state: TcpState,
    /// This side has sent at least one segment we accepted.
    seen: bool,
    /// Highest sequence end sent (snd_nxt).
    seq_end: u32,
    /// Highest sequence this side may start a segment at; valid when `seq_max_known`.
    seq_max: u32,
    seq_max_known: bool,
    /// Largest scaled window this side advertised (at least 1 once seen).
    max_win: u32,
    wscale: WindowScale,
    /// Sequence end of this side's FIN, when sent.
    fin_end: Option<u32>,
}

/// Per-connection TCP tracking state; index 0 is the original direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TcpConn {
    peer: [Peer; 2],
    /// Created from a mid-stream segment (no SYN seen).
    pickup: bool,
}

#[inline]
fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

#[inline]
fn seq_max(a: u32, b: u32) -> u32 {
    if seq_geq(a, b) { a } else { b }
}

/// True for flag combinations no TCP stack sends.
pub fn bad_flags(flags: u16) -> bool {
    if flags & TCP_SYN != 0 {
        flags & (TCP_RST | TCP_FIN) != 0
    } else {
        flags & (TCP_ACK | TCP_RST) == 0
    }
}

impl TcpConn {
    /// Starts tracking from the segment that creates the connection, or says why it can't.
    /// A bare SYN opens; a plain ACK (optionally with data) is picked up mid-stream when
    /// `allow_pickup`, as Linux and OVS do by default.
    pub fn new(seg: &TcpSegment, allow_pickup: bool) -> Result<TcpConn, TcpInvalid> {
        if bad_flags(seg.flags) {
            return Err(TcpInvalid::BadFlags);
        }
        let syn = seg.flags & TCP_SYN != 0;
        let plain_ack = seg.flags & (TCP_ACK | TCP_SYN | TCP_RST | TCP_FIN) == TCP_ACK;
        let opens = if syn {
            seg.flags & TCP_ACK == 0
        } else {
            plain_ack && allow_pickup
        };
        if !opens {
            return Err(TcpInvalid::NotNew);
        }
        let mut conn = TcpConn {
            pickup: !syn,
            ..TcpConn::default()
        };
        let p = &mut conn.peer[0];
        p.seen = true;
        p.seq_end = seg_end(seg);
        p.wscale = if syn {
            seg.wscale
        } else {
            WindowScale::NotParsed
        };
        // A SYN's window is never scaled; a picked-up segment's scale is unknown.
        let shift = if syn { 0 } else { UNKNOWN_WSCALE_SHIFT };
        p.max_win = ((seg.window as u32) << shift).max(1);
        p.state = if syn {
            TcpState::SynSent
        } else {
            TcpState::Established
        };
        Ok(conn)
    }

    /// Forgets both sides' sequence windows, keeping the states: the next segment of each
    /// side is taken as its new starting point, as for a connection picked up mid-stream.
    /// For connections restored from a periodic checkpoint, which may be seconds behind the
    /// peers' sequence numbers.
    pub fn relearn_windows(&mut self) {
        for p in &mut self.peer {
            p.seen = false;
            p.seq_max_known = false;
        }
    }

    /// Feeds a segment travelling in direction `reply` (false: original direction).
    pub fn update(&mut self, reply: bool, seg: &TcpSegment, seq_check: bool) -> TcpVerdict {
        if bad_flags(seg.flags) {
            return TcpVerdict::Invalid(TcpInvalid::BadFlags);
        }
        let (si, di) = if reply { (1, 0) } else { (0, 1) };
        let syn = seg.flags & TCP_SYN != 0;
        let ack = seg.flags & TCP_ACK != 0;
        let fin = seg.flags & TCP_FIN != 0;
        let rst = seg.flags & TCP_RST != 0;
        let (s, d) = (self.peer[si], self.peer[di]);

        if syn && !ack && !reply && s.state >= TcpState::FinWait2 && d.state >= TcpState::FinWait2 {
            return TcpVerdict::Reopen;
        }

        let end = seg_end(seg);
        let shift = if syn { 0 } else { self.shift_of(si) };
        let win = ((seg.window as u32) << shift).max(1);

        if seq_check && s.seen && d.seen && !self.in_window(si, seg, end) {
            return TcpVerdict::Invalid(TcpInvalid::OutOfWindow);
        }

        let pickup = self.pickup;
        let s = &mut self.peer[si];
        if !s.seen || (syn && !d.seen) {
            // First word from this side (or a SYN retransmitted with a new ISN).
            s.seen = true;
            s.seq_end = end;
            if syn {
                s.wscale = seg.wscale;
            }
            if pickup && !syn {
                s.state = TcpState::Established;
            }
        } else {
            s.seq_end = seq_max(s.seq_end, end);
        }
        s.max_win = s.max_win.max(win);
        if syn && s.state < TcpState::SynSent {
            s.state = TcpState::SynSent;
        }
        if fin {
            if s.state < TcpState::Closing {
                s.state = TcpState::Closing;
            }
            s.fin_end = Some(end);
        }
        if ack {
            let d = &mut self.peer[di];
            let allowed = seg.ack.wrapping_add(win);
            d.seq_max = if d.seq_max_known {
                seq_max(d.seq_max, allowed)
            } else {
                allowed
            };
            d.seq_max_known = true;
            if d.state == TcpState::SynSent {
                d.state = TcpState::Established;
            } else if d.state == TcpState::Closing && d.fin_end.is_none_or(|f| seq_geq(seg.ack, f))
            {
                d.state = TcpState::FinWait2;
            }
        }
        if rst {
            self.peer[0].state = TcpState::TimeWait;
            self.peer[1].state = TcpState::TimeWait;
        }
        TcpVerdict::Valid
    }

    /// Window-scale shift applied to the window field of segments sent by side `i`.
    fn shift_of(&self, i: usize) -> u8 {
        match (self.peer[0].wscale, self.peer[1].wscale) {
            (WindowScale::Shift(a), WindowScale::Shift(b)) => [a, b][i].min(14),
            (WindowScale::NotParsed, _) | (_, WindowScale::NotParsed) => UNKNOWN_WSCALE_SHIFT,
            _ => 0,
        }
    }

    fn in_window(&self, si: usize, seg: &TcpSegment, end: u32) -> bool {
        let s = &self.peer[si];
        let d = &self.peer[1 - si];
        // Starts no later than the receiver allowed (Linux: before(seq, td_maxend + 1)).
        if s.seq_max_known && !seq_geq(s.seq_max, seg.seq) {
            return false;
        }
        // Ends no earlier than one receiver max window before what was already sent.
        if !seq_geq(end, s.seq_end.wrapping_sub(d.max_win).wrapping_sub(1)) {
            return false;
        }
        if seg.flags & TCP_ACK != 0 {
            // Acks nothing that was never sent (with slack), and nothing absurdly old.
            let newest = d.seq_end.wrapping_add(MAX_ACK_WINDOW);
            let oldest = d.seq_end.wrapping_sub(s.max_win.max(MAX_ACK_WINDOW));
            if !seq_geq(newest, seg.ack) || !seq_geq(seg.ack, oldest) {
                return false;
            }
        }
        true
    }

    /// The timeout class, with OVS's rules: both FINs acked → closed; both FINs sent → fin-wait;
    /// not yet established both ways → first/opening; one FIN → closing.
    pub fn timeout_class(&self) -> TimeoutClass {
        let (a, b) = (self.peer[0].state, self.peer[1].state);
        if a >= TcpState::FinWait2 && b >= TcpState::FinWait2 {
            TimeoutClass::TcpClosed
        } else if a >= TcpState::Closing && b >= TcpState::Closing {
            TimeoutClass::TcpFinWait
        } else if a < TcpState::Established || b < TcpState::Established {
            if self.peer[1].seen {
                TimeoutClass::TcpOpening
            } else {
                TimeoutClass::TcpFirst
            }
        } else if a >= TcpState::Closing || b >= TcpState::Closing {
            TimeoutClass::TcpClosing
        } else {
            TimeoutClass::TcpEstablished
        }
    }

    /// The state `dpctl/dump-conntrack` shows: the further-along side, with OVS's coalescing
    /// (SYN_RECV shows as ESTABLISHED, FIN_WAIT_2 as TIME_WAIT).
    pub fn display_state(&self) -> TcpState {
        match self.peer[0].state.max(self.peer[1].state) {
            TcpState::SynRecv => TcpState::Established,
            TcpState::FinWait2 => TcpState::TimeWait,
            s => s,
        }
    }

    /// The state of each side: (original, reply).
    pub fn states(&self) -> (TcpState, TcpState) {
        (self.peer[0].state, self.peer[1].state)
    }
}

/// Sequence number just after the segment: SYN and FIN each take one.
fn seg_end(seg: &TcpSegment) -> u32 {
    let mut end = seg.seq.wrapping_add(seg.payload_len);
    if seg.flags & TCP_SYN != 0 {
        end = end.wrapping_add(1);
    }
    if seg.flags & TCP_FIN != 0 {
        end = end.wrapping_add(1);
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(flags: u16, seq: u32, ack: u32, len: u32) -> TcpSegment {
        TcpSegment {
            flags,
            seq,
            ack,
            window: 65_535,
            wscale: WindowScale::Absent,
            payload_len: len,
        }
    }

    /// Client ISN 1000, server ISN 5000, handshake done.
    fn established() -> TcpConn {
        let mut c = TcpConn::new(&seg(TCP_SYN, 1000, 0, 0), true).unwrap();
        assert_eq!(
            c.update(true, &seg(TCP_SYN | TCP_ACK, 5000, 1001, 0), true),
            TcpVerdict::Valid
        );
        assert_eq!(
            c.update(false, &seg(TCP_ACK, 1001, 5001, 0), true),
            TcpVerdict::Valid
        );
        c
    }

    #[test]
    fn handshake_walks_the_states() {
        let mut c = TcpConn::new(&seg(TCP_SYN, 1000, 0, 0), true).unwrap();
        assert_eq!(c.states(), (TcpState::SynSent, TcpState::Closed));
        assert_eq!(c.timeout_class(), TimeoutClass::TcpFirst);
        c.update(true, &seg(TCP_SYN | TCP_ACK, 5000, 1001, 0), true);
        assert_eq!(c.states(), (TcpState::Established, TcpState::SynSent));
        assert_eq!(c.timeout_class(), TimeoutClass::TcpOpening);
        c.update(false, &seg(TCP_ACK, 1001, 5001, 0), true);
        assert_eq!(c.states(), (TcpState::Established, TcpState::Established));
        assert_eq!(c.timeout_class(), TimeoutClass::TcpEstablished);
        assert_eq!(c.display_state(), TcpState::Established);
    }

    #[test]
    fn fin_teardown_walks_the_states() {
        let mut c = established();
        assert_eq!(
            c.update(false, &seg(TCP_FIN | TCP_ACK, 1001, 5001, 0), true),
            TcpVerdict::Valid
        );
        assert_eq!(c.states().0, TcpState::Closing);
        assert_eq!(c.timeout_class(), TimeoutClass::TcpClosing);
        c.update(true, &seg(TCP_FIN | TCP_ACK, 5001, 1002, 0), true);
        assert_eq!(c.states(), (TcpState::FinWait2, TcpState::Closing));
        assert_eq!(c.timeout_class(), TimeoutClass::TcpFinWait);
        c.update(false, &seg(TCP_ACK, 1002, 5002, 0), true);
        assert_eq!(c.states(), (TcpState::FinWait2, TcpState::FinWait2));
        assert_eq!(c.timeout_class(), TimeoutClass::TcpClosed);
        assert_eq!(c.display_state(), TcpState::TimeWait);
        assert_eq!(
            c.update(false, &seg(TCP_SYN, 9000, 0, 0), true),
            TcpVerdict::Reopen
        );
    }

    #[test]
    fn rst_closes_and_syn_reopens() {
        let mut c = established();
        assert_eq!(
            c.update(true, &seg(TCP_RST | TCP_ACK, 5001, 1001, 0), true),
            TcpVerdict::Valid
        );
        assert_eq!(c.timeout_class(), TimeoutClass::TcpClosed);
        assert_eq!(
            c.update(false, &seg(TCP_SYN, 77, 0, 0), true),
            TcpVerdict::Reopen
        );
    }

    #[test]
    fn syn_on_an_open_connection_is_not_a_reopen() {
        let mut c = established();
        assert_ne!(
            c.update(false, &seg(TCP_SYN, 1000, 0, 0), true),
            TcpVerdict::Reopen
        );
    }

    #[test]
    fn data_retransmits_and_probes_stay_valid() {
        let mut c = established();
        for i in 0..10u32 {
            let s = 1001 + i * 1000;
            assert_eq!(
                c.update(false, &seg(TCP_ACK, s, 5001, 1000), true),
                TcpVerdict::Valid
            );
        }
        // Retransmit of the first segment, a server ACK, then a zero-window probe.
        assert_eq!(
            c.update(false, &seg(TCP_ACK, 1001, 5001, 1000), true),
            TcpVerdict::Valid
        );
        assert_eq!(
            c.update(true, &seg(TCP_ACK, 5001, 11001, 0), true),
            TcpVerdict::Valid
        );
        let mut zero = seg(TCP_ACK, 5001, 11001, 0);
        zero.window = 0;
        assert_eq!(c.update(true, &zero, true), TcpVerdict::Valid);
        assert_eq!(
            c.update(false, &seg(TCP_ACK, 11001, 5001, 1), true),
            TcpVerdict::Valid
        );
    }

    #[test]
    fn out_of_window_is_invalid_unless_checks_are_off() {
        let mut c = established();
        let far = seg(TCP_ACK, 1001 + 10_000_000, 5001, 100);
        assert_eq!(
            c.update(false, &far, true),
            TcpVerdict::Invalid(TcpInvalid::OutOfWindow)
        );
        let old = seg(TCP_ACK, 1001u32.wrapping_sub(10_000_000), 5001, 100);
        assert_eq!(
            c.update(false, &old, true),
            TcpVerdict::Invalid(TcpInvalid::OutOfWindow)
        );
        let bad_ack = seg(TCP_ACK, 1001, 5001 + 10_000_000, 0);
        assert_eq!(
            c.update(false, &bad_ack, true),
            TcpVerdict::Invalid(TcpInvalid::OutOfWindow)
        );
        assert_eq!(c.update(false, &far, false), TcpVerdict::Valid);
    }

    #[test]
    fn window_scaling_allows_large_windows() {
        let mut syn = seg(TCP_SYN, 1000, 0, 0);
        syn.wscale = WindowScale::Shift(7);
        let mut c = TcpConn::new(&syn, true).unwrap();
        let mut synack = seg(TCP_SYN | TCP_ACK, 5000, 1001, 0);
        synack.wscale = WindowScale::Shift(7);
        c.update(true, &synack, true);
        c.update(false, &seg(TCP_ACK, 1001, 5001, 0), true);
        // Server advertises 65535 << 7 (~8 MB); the client may send 4 MB ahead.
        c.update(true, &seg(TCP_ACK, 5001, 1001, 0), true);
        let ahead = seg(TCP_ACK, 1001 + 4_000_000, 5001, 1400);
        assert_eq!(c.update(false, &ahead, true), TcpVerdict::Valid);
    }

    #[test]
    fn creation_rules() {
        assert_eq!(
            TcpConn::new(&seg(TCP_SYN | TCP_ACK, 1, 1, 0), true),
            Err(TcpInvalid::NotNew)
        );
        assert_eq!(
            TcpConn::new(&seg(TCP_RST, 1, 1, 0), true),
            Err(TcpInvalid::NotNew)
        );
        assert_eq!(
            TcpConn::new(&seg(TCP_SYN | TCP_FIN, 1, 1, 0), true),
            Err(TcpInvalid::BadFlags)
        );
        assert_eq!(
            TcpConn::new(&seg(0, 1, 1, 0), true),
            Err(TcpInvalid::BadFlags)
        );
        assert_eq!(
            TcpConn::new(&seg(TCP_ACK, 1, 1, 0), false),
            Err(TcpInvalid::NotNew)
        );
        let mut c = TcpConn::new(&seg(TCP_ACK, 1, 1, 10), true).unwrap();
        c.update(true, &seg(TCP_ACK, 1, 11, 10), true);
        assert_eq!(c.timeout_class(), TimeoutClass::TcpEstablished);
    }
}
