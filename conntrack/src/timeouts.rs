//! Per-state timeouts. Every connection sits in exactly one timeout class; because all
//! connections of a class share one timeout, a class's expiry list stays sorted simply by
//! appending on every refresh (see `slab`).

use std::time::Duration;

/// The timeout classes, with the names `ovs-appctl dpctl/ct-get-timeouts`-style tools use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum TimeoutClass {
    /// TCP, only the initiator has sent (a SYN).
    TcpFirst = 0,
    /// TCP handshake in progress.
    TcpOpening,
    TcpEstablished,
    /// One side has sent a FIN.
    TcpClosing,
    /// Both sides have sent a FIN.
    TcpFinWait,
    /// Both FINs acknowledged, or reset.
    TcpClosed,
    /// UDP / other: one packet from the initiator.
    OtherFirst,
    /// UDP / other: several packets, all from the initiator.
    OtherMultiple,
    /// UDP / other: packets seen both ways.
    OtherBidir,
    IcmpFirst,
    IcmpReply,
}

impl TimeoutClass {
    pub const COUNT: usize = 11;
    pub const ALL: [TimeoutClass; Self::COUNT] = [
        TimeoutClass::TcpFirst,
        TimeoutClass::TcpOpening,
        TimeoutClass::TcpEstablished,
        TimeoutClass::TcpClosing,
        TimeoutClass::TcpFinWait,
        TimeoutClass::TcpClosed,
        TimeoutClass::OtherFirst,
        TimeoutClass::OtherMultiple,
        TimeoutClass::OtherBidir,
        TimeoutClass::IcmpFirst,
        TimeoutClass::IcmpReply,
    ];

    /// The name `--ct-timeout` takes for this class.
    pub fn name(self) -> &'static str {
        Timeouts::NAMES[self as usize]
    }
}

/// Timeouts per class. `Default` is Open vSwitch's userspace datapath default policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_first: Duration,
    pub tcp_opening: Duration,
    pub tcp_established: Duration,
    pub tcp_closing: Duration,
    pub tcp_fin_wait: Duration,
    pub tcp_closed: Duration,
    pub other_first: Duration,
    pub other_multiple: Duration,
    pub other_bidir: Duration,
    pub icmp_first: Duration,
    pub icmp_reply: Duration,
}

impl Timeouts {
    /// The names `set` accepts, in the order of the fields.
    pub const NAMES: [&'static str; 11] = [
        "tcp_first",
        "tcp_opening",
        "tcp_established",
        "tcp_closing",
        "tcp_fin_wait",
        "tcp_closed",
        "other_first",
        "other_multiple",
        "other_bidir",
        "icmp_first",
        "icmp_reply",
    ];

    /// Sets one timeout by name (`tcp_established=3600` on the command line).
    pub fn set(&mut self, name: &str, value: Duration) -> Result<(), String> {
        let slot = match name {
            "tcp_first" => &mut self.tcp_first,
            "tcp_opening" => &mut self.tcp_opening,
            "tcp_established" => &mut self.tcp_established,
            "tcp_closing" => &mut self.tcp_closing,
            "tcp_fin_wait" => &mut self.tcp_fin_wait,
            "tcp_closed" => &mut self.tcp_closed,
            "other_first" => &mut self.other_first,
            "other_multiple" => &mut self.other_multiple,
            "other_bidir" => &mut self.other_bidir,
            "icmp_first" => &mut self.icmp_first,
            "icmp_reply" => &mut self.icmp_reply,
            _ => {
                return Err(format!(
                    "unknown conntrack timeout '{name}' (one of {})",
                    Self::NAMES.join(", ")
                ));
            }
        };
        *slot = value;
        Ok(())
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Timeouts {
            tcp_first: s(30),
            tcp_opening: s(30),
            tcp_established: s(24 * 60 * 60),
            tcp_closing: s(15 * 60),
            tcp_fin_wait: s(45),
            tcp_closed: s(30),
            other_first: s(60),
            other_multiple: s(60),
            other_bidir: s(30),
            icmp_first: s(60),
            icmp_reply: s(30),
        }
    }
}

impl Timeouts {
    pub fn get(&self, class: TimeoutClass) -> Duration {
        match class {
            TimeoutClass::TcpFirst => self.tcp_first,
            TimeoutClass::TcpOpening => self.tcp_opening,
            TimeoutClass::TcpEstablished => self.tcp_established,
            TimeoutClass::TcpClosing => self.tcp_closing,
            TimeoutClass::TcpFinWait => self.tcp_fin_wait,
            TimeoutClass::TcpClosed => self.tcp_closed,
            TimeoutClass::OtherFirst => self.other_first,
            TimeoutClass::OtherMultiple => self.other_multiple,
            TimeoutClass::OtherBidir => self.other_bidir,
            TimeoutClass::IcmpFirst => self.icmp_first,
            TimeoutClass::IcmpReply => self.icmp_reply,
        }
    }

    /// The timeouts in nanoseconds, indexed by class, for the fast path.
    pub(crate) fn to_nanos(&self) -> [u64; TimeoutClass::COUNT] {
        TimeoutClass::ALL.map(|c| u64::try_from(self.get(c).as_nanos()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A class's name is the one `--ct-timeout` takes for that class (they once differed:
    /// `tcp_fin_wait` named the 15-minute class here and the 45-second one on the command line).
    #[test]
    fn each_class_is_set_by_its_own_name() {
        for class in TimeoutClass::ALL {
            let mut t = Timeouts::default();
            t.set(class.name(), Duration::from_secs(12345)).unwrap();
            assert_eq!(t.get(class), Duration::from_secs(12345), "{}", class.name());
            for other in TimeoutClass::ALL.into_iter().filter(|c| *c != class) {
                assert_eq!(t.get(other), Timeouts::default().get(other));
            }
        }
    }
}
