//! Every place a packet can die has a name and a counter (`vswitchctl dump-drops BR`); so do
//! the few losses where the packet itself goes on (a learn request, a MAC address not learned),
//! counted alike but kept out of the packets dropped.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $help:literal;)*) => {
        /// Why a packet was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $($variant,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Short stable name, as printed by `dump-drops`.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
            /// One line saying what it means.
            pub fn help(self) -> &'static str {
                match self { $(DropReason::$variant => $help,)* }
            }
            /// False for the counted events whose packet went on (or, for a rate-limited ICMP
            /// reply, whose packet is counted under its own reason already): they are not in
            /// the total of packets dropped.
            pub fn drops_packet(self) -> bool {
                !matches!(
                    self,
                    DropReason::LearnQueueFull
                        | DropReason::MacTableFull
                        | DropReason::IcmpRateLimited
                )
            }
        }
    };
}

drop_reasons! {
    Runt => "runt", "frame shorter than an Ethernet header";
    RxTruncated => "rx_truncated", "a received frame longer than the port's buffer or ring slot (cut, so dropped)";
    RxBadVnet => "rx_bad_vnet", "a received frame whose virtio-net header asks for an offload the switch cannot follow";
    Malformed => "malformed", "a GSO super-frame that could not be segmented";
    NoMatch => "no_match", "no flow matched in a table (table-miss drop)";
    ExplicitDrop => "flow_drop", "the flows sent the packet nowhere (actions=drop, no output)";
    TtlExpired => "ttl_expired", "dec_ttl reached zero";
    TooBig => "too_big", "frame larger than the output port's MTU";
    TunnelTooBig => "tunnel_too_big", "frame too large for the underlay after tunnel (VXLAN, Geneve) encapsulation";
    VxlanShort => "vxlan_short", "tunnel datagram (VXLAN, Geneve) too short for its header and an inner frame";
    VxlanBadFlags => "vxlan_bad_flags", "VXLAN header without the I flag or with reserved bits set; Geneve header of another version or protocol, a control (O) packet or a critical option";
    VxlanUnknownTunnel => "vxlan_unknown_tunnel", "VXLAN or Geneve from a remote/VNI no tunnel port accepts";
    TunnelEcnCeNotEct => "tunnel_ecn_ce_not_ect", "a tunnel datagram whose outer ECN is CE around a packet that is not ECN-capable (RFC 6040: the mark cannot be passed on)";
    TunnelNoRoute => "tunnel_no_dst", "output to a flow-based tunnel without tun_dst set";
    NormalHairpin => "normal_hairpin", "NORMAL learned the destination MAC on the input port: not sent back";
    NormalVlanRefused => "normal_vlan_refused", "NORMAL got a frame of a VLAN its input port does not carry (a tagged frame on an access port, a VLAN outside a trunk's trunks=)";
    NormalReservedMac => "normal_reserved_mac", "NORMAL got a frame for a reserved address (STP, LACP, 802.1X, LLDP, Cisco CDP/PVST+...): not forwarded";
    PortDown => "port_down", "output port missing or down";
    TxQueueFull => "tx_full", "the output port's send queue was full";
    TxError => "tx_error", "the kernel refused to send the frame";
    LoopDetected => "loop", "resubmit/goto depth or recirculation limit exceeded";
    MeterDrop => "meter_drop", "a meter band dropped the packet (above its rate)";
    GroupMissing => "group_missing", "the group a flow names does not exist or has no live bucket";
    CtInvalid => "ct_invalid", "conntrack marked the packet invalid and a flow dropped it";
    CtTableFull => "ct_table_full", "conntrack table full: new connection refused";
    CtZoneLimit => "ct_zone_limit", "conntrack zone at its limit (ct-set-limits): new connection refused";
    CtSourceLimit => "ct_source_limit", "source (pod) at its connection limit in its zone: new connection refused";
    NatExhausted => "nat_exhausted", "no free NAT port or address for a new connection";
    AlgNoRoom => "alg_no_room", "an FTP ALG rewrite did not fit the frame (GSO super-frame or no tailroom); its retransmission is rewritten";
    MacTableFull => "mac_table_full", "MAC learning table full: address not learned";
    VlanMismatch => "vlan_error", "VLAN action on a frame without/with too many tags";
    ControllerNone => "controller_unreachable", "output to CONTROLLER with no controller connected";
    UnsupportedAction => "unsupported", "an action this datapath cannot execute on this packet";
    NoBuffer => "no_buffer", "the buffer pool was empty";
    PortNoRecv => "port_no_recv", "received on a port set down or no-receive (mod-port)";
    PortNoFwd => "port_no_fwd", "output to a port set no-forward (mod-port)";
    LearnQueueFull => "learn_queue_full", "a learn/fin_timeout request found the learn queue full (the packet went on; a later one asks again)";
    IcmpRateLimited => "icmp_rate_limited", "a frag-needed / Packet Too Big reply not sent: over the thread's limit (1000/s, burst 50); the frame is counted as tunnel_too_big";
}

/// One counter per reason, shared by every thread's copy of a bridge: written by all forwarding
/// threads (and by the packet-in dispatch thread for `controller_unreachable`), read by the
/// control side.
pub struct DropCounters {
    counts: Vec<AtomicU64>,
}

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters {
            counts: DropReason::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl DropCounters {
    #[inline]
    pub fn add(&self, reason: DropReason, n: u64) {
        // Several threads add to the same counters: an atomic add loses none of their counts,
        // and Relaxed is enough because no other memory is published through a counter.
        self.counts[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason as usize].load(Ordering::Relaxed)
    }

    /// Packets dropped, all reasons together (not the events whose packet went on).
    pub fn total_dropped(&self) -> u64 {
        DropReason::ALL
            .iter()
            .filter(|r| r.drops_packet())
            .map(|r| self.get(*r))
            .sum()
    }

    /// `dump-drops` text: the total, one `name count help` line per reason that drops the
    /// packet, then the counted events whose packet went on under a heading of their own.
    pub fn format(&self) -> String {
        let mut out = format!("total dropped: {}\n", self.total_dropped());
        let line = |out: &mut String, r: &DropReason| {
            out.push_str(&format!(
                "  {:<22} {:>12}  {}\n",
                r.name(),
                self.get(*r),
                r.help()
            ));
        };
        for r in DropReason::ALL.iter().filter(|r| r.drops_packet()) {
            line(&mut out, r);
        }
        out.push_str("counted, packet not dropped:\n");
        for r in DropReason::ALL.iter().filter(|r| !r.drops_packet()) {
            line(&mut out, r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_counted() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        let c = DropCounters::default();
        c.add(DropReason::TtlExpired, 3);
        assert_eq!(c.get(DropReason::TtlExpired), 3);
        assert!(c.format().contains("ttl_expired"));
        assert!(c.format().starts_with("total dropped: 3\n"));
    }

    #[test]
    fn events_whose_packet_went_on_are_counted_but_not_dropped() {
        let c = DropCounters::default();
        c.add(DropReason::TtlExpired, 3);
        c.add(DropReason::LearnQueueFull, 5);
        c.add(DropReason::MacTableFull, 7);
        assert_eq!(c.total_dropped(), 3);
        assert_eq!(c.get(DropReason::LearnQueueFull), 5);
        let text = c.format();
        assert!(text.starts_with("total dropped: 3\n"), "{text}");
        let (drops, events) = text
            .split_once("counted, packet not dropped:\n")
            .expect("a section for the events");
        assert!(drops.contains("ttl_expired") && !drops.contains("learn_queue_full"));
        let count = |section: &str, name: &str| {
            section.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next()?.parse::<u64>().ok())?
            })
        };
        assert_eq!(count(events, "learn_queue_full"), Some(5), "{events}");
        assert_eq!(count(events, "mac_table_full"), Some(7), "{events}");
        assert!(!events.contains("ttl_expired"));
    }
}
